"""SemiDiscreteOT: a problem (:mod:`otgen.ot.problem`), its starts (:mod:`otgen.ot.warm_start`), and ``fit``,
whose output (:mod:`otgen.ot.output`) is a :class:`BrenierMap` carrying its :class:`Diagnostics`.

``SemiDiscreteOT(source, targets, weights).fit(key, tol=...)`` minimises
E(h) = E_mu[max_i <x, y_i> + h_i] - <nu, h> and returns a :class:`BrenierMap`.
In 2-D (box or Gaussian source) and 3-D (box) the cells are exact (:mod:`otgen.ot.exact`); otherwise the
gradient w(h) - nu is a Monte-Carlo estimate (:mod:`otgen.ot.estimate`) made of two independent
half-samples, so that its own noise is measured, not guessed, and the stopping test accounts
for it; the optimizers that step on it are :mod:`otgen.ot.optim`.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from otgen.ot import scores
from otgen.ot.brenier import BrenierMap
from otgen.ot.exact import EXACT_TOL, solve_exact, why_not_exact
from otgen.ot.optim import METRICS, certify_samples, error_of, noise_of
from otgen.ot.optim_newton import damped_newton
from otgen.ot.optim_sgd import averaged_sgd
from otgen.ot.output import Checks, Convergence, Diagnostics, History, NotConvergedWarning, StopReason, verdict
from otgen.ot.problem import SemiDiscreteProblem
from otgen.ot.warm_start import discrete_ot_heights, multiscale_heights

__all__ = ["SemiDiscreteOT", "DISCRETE_MAX_K"]

# Above this many targets the default start is multiscale instead of one exact discrete OT problem
# (its 4K x K cost matrix and network simplex: ~6 s at K = 2,000, ~12 s at 3,000 on 2 cores).  Measured
# on 8 Gaussian clusters, K = 2,000: the discrete start begins at L1 0.24 and converges in 3 steps
# (15 s); the multiscale start begins at 0.68 and takes 10 steps (46 s).
DISCRETE_MAX_K = 3000
# Up to this dimension damped Newton stays the default at every K (a cell has few facets, so the
# band samples estimate the facet Hessian well); see SemiDiscreteOT.default_optimizer.
NEWTON_MAX_DIM = 4


class SemiDiscreteOT(SemiDiscreteProblem):
    """Semi-discrete OT from a source measure onto weighted targets (Gu–Luo–Sun–Yau variational form).

    Args:
      source: ``UniformBox``, ``Gaussian``, ``Sampler`` or a function ``(key, n) -> (n, d)``.
      targets: (K, d) array of target points (distinct rows).
      weights: (K,) positive weights summing to 1 (default uniform).
      normalize_weights: rescale ``weights`` to sum 1 instead of raising.
      block_size, chunk_size: tile sizes of the scoring kernel (targets per block, samples per chunk).
      mesh: optional ``jax.sharding.Mesh`` with axes ("samples", "targets") (see
        :func:`otgen.ot.sharding.make_mesh`): Monte-Carlo batches are spread over the
        sample axis, target blocks over the target axis.  The samples drawn are the
        same as on one device, so cell counts are identical.
      normalise: solve in the normalised frame of :class:`~otgen.ot.problem.SemiDiscreteProblem`
        (default).  ``False`` keeps the user's frame, for baselines whose step sizes are tuned
        in it (``aeot_recipe``'s learning rate).

    The problem's frame (targets moved to the source's location and spread) and its Monte-Carlo
    estimates are :class:`~otgen.ot.problem.SemiDiscreteProblem`'s; heights going in and out
    (``h0``, ``initial_h``, ``estimate``, the returned map) are in the user's frame.
    """

    # -- starts ---------------------------------------------------------------
    def _initial_h(self, kind: str, key: jax.Array | None) -> tuple[jax.Array, str]:
        """(h in the solver's frame, note saying which start ran)."""
        k = self.num_targets
        if kind == "auto":
            kind = "discrete" if k <= DISCRETE_MAX_K else "multiscale"
        if kind in ("discrete", "multiscale") and key is None:
            raise ValueError(f"the {kind!r} initial h needs a PRNG key")
        if kind == "discrete":
            h = discrete_ot_heights(self.source, self._y, self.weights, key)
            if h is not None:
                return h, f"discrete-OT start ({4 * k} source samples, exact network simplex)"
            h, _ = self._initial_h("voronoi", None)
            return h, "discrete-OT start skipped (K too large for its cost matrix or simplex failed): Voronoi start"
        if kind == "multiscale":
            if k <= 16:  # nothing to coarsen
                return self._initial_h("discrete", key)
            def solve_coarse(centres, weights, k):
                return SemiDiscreteOT(self.source, centres, weights, normalize_weights=True).fit(
                    k, tol=0.05, max_steps=10, progress=False, warn=False)

            return multiscale_heights(self.source, self._y, self.weights, key, solve_coarse)
        if kind == "zero":
            return jnp.zeros(k, jnp.float32), "zero start"
        if kind == "voronoi":
            h = -0.5 * jnp.sum(self._y * self._y, axis=1)
            return h - jnp.mean(h), "Voronoi start (of the normalised targets)"
        raise ValueError(f"unknown initial h {kind!r}; use 'auto', 'discrete', 'multiscale', 'voronoi' or 'zero'")

    def initial_h(self, kind: str = "voronoi", key: jax.Array | None = None) -> jax.Array:
        """A start in the user's frame.  ``"voronoi"``: the Voronoi cells of the normalised
        targets; ``"zero"``: h = 0 in the solver's frame; ``"discrete"``: target duals of an exact
        discrete OT problem (:mod:`otgen.ot.warm_start`; needs ``key``); ``"multiscale"``: a
        coarse problem on k-means centres, solved first (needs ``key``); ``"auto"``: discrete
        for K <= ``DISCRETE_MAX_K``, else multiscale.
        """
        return self._initial_h(kind, key)[0] * self.scale

    def default_optimizer(self, metric: str | None = None):
        """What ``fit`` runs when no optimizer is given.

        :func:`~otgen.ot.optim_newton.damped_newton` where its facet Hessian is good and the exact
        discrete start applies: K <= ``DISCRETE_MAX_K`` or d <= ``NEWTON_MAX_DIM`` (or an L1
        tol is asked for).  Above, :func:`~otgen.ot.optim_sgd.averaged_sgd`, which stops on chi2:
        at K = 10,000, d = 16 damped Newton went from chi2 0.58 to 0.46 in 240 s (its facet
        Hessian, a few band samples per cell, is too rough there); on MNIST codes (K = 60,000)
        the averaged SGD's map reached chi2 0.0116 on 160 steps of 2^16 samples.
        """
        large = self.num_targets > DISCRETE_MAX_K and self.dim > NEWTON_MAX_DIM
        return averaged_sgd() if large and metric in (None, "chi2") else damped_newton()

    # -- the solve ------------------------------------------------------------
    def _fit_exact(self, tol, max_steps, h0, time_budget, callback, strict, warn, metric) -> BrenierMap:
        """The exact 2-D / 3-D path (:func:`otgen.ot.exact.solve_exact`), wrapped in the usual outputs."""
        if h0 is not None:
            h0 = np.asarray(h0, np.float64)
            if h0.shape != (self.num_targets,) or not np.all(np.isfinite(h0)):
                raise ValueError(f"h0 must be a finite array of shape ({self.num_targets},)")
        cb = None if callback is None else (lambda step, h, w: callback(step, h, None))
        res = solve_exact(self.source, np.asarray(self.targets, np.float64), np.asarray(self.weights, np.float64),
                          tol=min(float(tol), EXACT_TOL), max_steps=100 if max_steps is None else int(max_steps),
                          time_budget=time_budget, h0=h0, callback=cb)
        n = len(res.l1)
        zeros = (0.0,) * n
        # converged: the user's tol is met (the Newton runs on to EXACT_TOL, where float64 rounding may stall it)
        converged = (res.chi2 if metric == "chi2" else res.l1)[-1] <= tol
        reason = StopReason.CONVERGED if converged else res.stop_reason
        diag = Diagnostics(
            convergence=Convergence(converged=converged, stop_reason=str(reason), tol=float(tol), metric=metric or "l1",
                                    optimizer="exact-newton", best_step=n - 1),
            history=History(l1=res.l1, noise_l1=zeros, chi2=res.chi2, noise_chi2=zeros, max_rel=res.max_rel,
                            energy=res.energy, step_size=res.step_size, num_samples=(0,) * n, wall_time=res.wall_time),
            notes=res.notes)
        bmap = BrenierMap(self.targets, self.weights, res.h, self.source, diag, self.block_size, self.chunk_size)
        return verdict(bmap, strict, warn, stacklevel=4)

    def fit(self, key: jax.Array, *, tol: float = 0.01, max_steps: int | None = None,
            batch_size: int | None = None, optimizer=None, h0=None, progress: bool | None = None,
            callback=None, time_budget: float | None = None, strict: bool = False,
            warn: bool = True, metric: str | None = None, exact: bool | None = None) -> BrenierMap:
        """Minimise the energy; stop when the optimizer's test passes (the estimated error
        <= tol with noise <= tol/3), after ``max_steps``, after ``time_budget`` seconds, or
        when ``tol`` cannot be certified even at the optimizer's largest sample.

        ``optimizer``: default :meth:`default_optimizer` -- damped Newton on L1 for small K or
        d <= 4, averaged SGD on chi2 above (``metric="l1"`` keeps damped Newton).

        ``metric``: what ``tol`` bounds -- ``"l1"`` (the optimizer's default) or ``"chi2"``,
        the marginal chi-square error sum_i (w_i - nu_i)^2 / nu_i (sqrt(chi2) is the RMS
        relative error of a cell's mass, and L1 <= sqrt(chi2)).  L1 needs ~K / tol^2 samples
        merely to be measured; chi2's unbiased estimate has noise ~2 sqrt(K) / N, so it can
        be certified at any K.  When the L1 tol looks out of reach at the largest sample,
        a note (and a warning) says so before the first step.

        ``batch_size``: initial samples per step (optimizer default otherwise);
        ``callback(step, h, estimate)`` is called after each estimate (``h`` in the user's
        frame; benchmarks use it to snapshot iterates); returning True stops the fit there.
        Returns the :class:`BrenierMap` of the converged heights or, when the test never
        passed, of the step with the lowest estimated error; ``.diagnostics`` has the
        per-step history, the stop reason and every fallback taken.  Not converged: a
        :class:`NotConvergedWarning` names the error reached (``warn=False`` silences it,
        the diagnostics still say so), and ``strict=True`` raises :class:`NotConvergedError`.
        Heights are never NaN: a non-finite step is rejected and noted.

        ``exact``: in 2-D with a ``UniformBox`` or ``Gaussian`` source (at least 4 non-collinear
        targets) or in 3-D with a ``UniformBox`` (at least 5 non-coplanar), and no ``optimizer`` or
        ``mesh`` given, ``fit`` computes the cells exactly
        (:mod:`otgen.ot.exact`: power diagram + damped Newton) and runs to exact L1 <=
        ``min(tol, EXACT_TOL)``; its diagnostics say so.  ``exact=False`` forces Monte Carlo,
        ``exact=True`` raises where the exact path does not apply.
        """
        if not (isinstance(tol, (int, float)) and tol > 0 and math.isfinite(tol)):
            raise ValueError(f"tol must be a positive number, got {tol!r}")
        if time_budget is not None and not (time_budget > 0):
            raise ValueError(f"time_budget must be a positive number of seconds, got {time_budget!r}")
        if metric is not None and metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
        why = why_not_exact(self.source, self.targets)
        if optimizer is not None or self.mesh is not None:
            why = "an optimizer or a mesh was given (Monte-Carlo path)"
        if exact and why is not None:
            raise ValueError(f"fit(exact=True) does not apply: {why}")
        if exact is not False and why is None:
            return self._fit_exact(tol, max_steps, h0, time_budget, callback, strict, warn, metric)
        opt = self.default_optimizer(metric) if optimizer is None else optimizer
        if metric is not None:
            if metric not in METRICS:
                raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
            if not hasattr(opt, "metric"):
                raise ValueError(f"optimizer {opt.name!r} has no metric option (its stopping rule is its own)")
            opt = dataclasses.replace(opt, metric=metric)
        metric = getattr(opt, "metric", "l1")
        max_steps = opt.max_steps if max_steps is None else int(max_steps)
        if max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {max_steps}")
        n = batch_size if batch_size is not None else opt.batch_size
        if n is None:  # enough samples per cell for a usable facet-area estimate, within the optimizer's cap
            n = min(self.hessian_samples, getattr(opt, "max_batch_size", self.hessian_samples))
        n = int(n)
        if n < 2:
            raise ValueError(f"batch_size must be >= 2, got {n}")
        t0 = time.perf_counter()
        notes = []
        # the largest estimate the optimizer makes: its steps' largest sample, or its checks' (averaged SGD)
        largest = getattr(opt, "max_check_samples", getattr(opt, "max_batch_size", n))
        floor = self._noise_floor(metric, largest)
        if floor > tol:  # Monte-Carlo noise alone exceeds tol (RQMC does better, but not 3x in high d)
            note = (f"tol {tol:g} on {metric} is likely out of reach: at the largest sample "
                    f"({largest}) the Monte-Carlo noise of the estimate is ~{floor:.3g} "
                    f"(RQMC may do better); fit(metric='chi2') can be certified at any K")
            notes.append(note)
            if warn:
                warnings.warn(note, NotConvergedWarning, stacklevel=2)
        if self.mesh is not None:
            notes.append(f"Monte-Carlo samples spread over {self._shards} devices (the same samples as on one)")
        if h0 is None:
            key, k_init = jax.random.split(key)
            h, note = self._initial_h(opt.init_h, k_init)
            notes.append(note)
        else:
            h = jnp.asarray(h0, jnp.float32)
            if h.shape != (self.num_targets,) or not bool(jnp.all(jnp.isfinite(h))):
                raise ValueError(f"h0 must be a finite array of shape ({self.num_targets},)")
            h = h / self.scale
            notes.append("start: h0 given by the caller")
        h = h - jnp.mean(h)
        state = opt.init(h)
        sampling = opt.sampling
        # chi2's noise (2 / N) sqrt(K + N chi2) holds for i.i.d. samples.  Digitally shifted Sobol points make
        # the two-halves chi2 estimate *noisier* than that (measured at one h, 2^15-2^16 points: std 3.9x the
        # formula in 4-d, 1.6x in 8-d, 3x in 16-d), so a chi2 stop reached on RQMC samples is confirmed on
        # fresh i.i.d. samples before it counts (RQMC still drives the steps: far better in low d).
        confirm_iid = metric == "chi2" and self._sampling(sampling) == "rqmc"
        hist = {k: [] for k in History._fields}
        converged, reason = False, StopReason.MAX_STEPS
        # candidates are ranked by a pessimistic estimate, error + 2 noise: the lowest of many noisy estimates is
        # biased low, and a lucky iterate on one step's samples must not beat an average checked on many more
        # (K = 6,000, d = 100: an iterate picked that way scored chi2 0.057 independently)
        best_h, best_step, best_rank, best_check = h, 0, float("inf"), -1

        def rank_of(est) -> float:
            return error_of(est, metric) + 2 * noise_of(est, metric)

        checks = {k: [] for k in Checks._fields if k != "best"}
        show = sys.stderr.isatty() if progress is None else bool(progress)
        from tqdm.auto import tqdm

        # a step cap far above what a fit runs (averaged SGD's 100,000) would make tqdm's ETA meaningless;
        # an optimizer that knows its earliest stop (averaged SGD: 1.5 K / tol samples) counts to that
        total, desc = (max_steps if max_steps <= 10_000 else None), f"semi-discrete OT ({opt.name})"
        if hasattr(opt, "first_stop_step"):
            first = opt.first_stop_step(self.num_targets, tol, n)
            notes.append(f"no stop before step ~{first} ({opt.first_check_samples(self.num_targets, tol):.3g} samples drawn; "
                         f"expect 1-1.5x that)")
            if first < max_steps:
                total, desc = first, desc + ", ETA to the earliest stop"
        bar = tqdm(total=total, disable=not show, desc=desc, leave=False)
        rejected = stalled = 0
        candidate = getattr(opt, "candidate", None)  # optimizers whose output is not their iterate (an average)

        def check(final: bool) -> bool:
            """Estimate the optimizer's candidates (if it offers some now; averaged SGD: one average per
            averaging weight), each on fresh samples; keep the best.  Returns whether one passes the
            stopping test."""
            nonlocal state, key, best_h, best_step, best_rank, best_check
            state, h_c, n_c = candidate(state, self.num_targets, tol, final)
            if h_c is None:
                return False
            passed = False
            for j, h_j in enumerate(h_c):
                key, k_c = jax.random.split(key)
                est_c = self._estimate(k_c, h_j, n_c, sampling=sampling)
                for name, v in (("step", step), ("l1", float(est_c.l1)), ("noise_l1", float(est_c.noise_l1)),
                                ("chi2", float(est_c.chi2)),
                                ("noise_chi2", float(est_c.noise_chi2)), ("num_samples", est_c.num_samples),
                                ("wall_time", time.perf_counter() - t0), ("candidate", j)):
                    checks[name].append(v)
                bar.set_postfix({f"{metric} (average)": f"{error_of(est_c, metric):.4g}", "n": n_c})
                if rank_of(est_c) < best_rank:
                    best_h, best_step, best_rank, best_check = h_j, step, rank_of(est_c), len(checks["step"]) - 1
                    passed = opt.should_stop(est_c, tol, state)  # the fit stops when its best is certified
                    if passed:  # certified: the other candidates' checks would only cost time
                        break
            return passed

        def confirmed(h_now, n_now: int) -> bool:
            """The stopping test on fresh i.i.d. samples (at least enough to certify tol)."""
            nonlocal key
            key, k_c = jax.random.split(key)
            n_c = max(n_now, certify_samples(tol, self.num_targets, getattr(opt, "stop_noise", 1 / 3)))
            est_c = self._estimate(k_c, h_now, n_c, sampling="iid")
            ok = opt.should_stop(est_c, tol, state)
            notes.append(f"step {step}: chi2 stop on RQMC samples {'confirmed' if ok else 'NOT confirmed'} on "
                         f"{est_c.num_samples} i.i.d. samples (chi2 {float(est_c.chi2):.4g} +- "
                         f"{float(est_c.noise_chi2):.2g})")
            return ok

        step = 0
        try:
            for step in range(max_steps):
                key, sub = jax.random.split(key)
                est = self._estimate(sub, h, n, sampling=sampling, hessian=opt.needs_hessian,
                                     band=getattr(opt, "band", 0.1))
                l1 = float(est.l1)
                for name, v in (("l1", l1), ("noise_l1", float(est.noise_l1)), ("max_rel", float(est.max_rel)),
                                ("energy", self._user_energy(float(est.energy))),
                                ("wall_time", time.perf_counter() - t0), ("num_samples", est.num_samples),
                                ("chi2", float(est.chi2)), ("noise_chi2", float(est.noise_chi2))):
                    hist[name].append(v)
                err, rank = error_of(est, metric), rank_of(est)
                if rank < best_rank:
                    best_h, best_step, best_rank, best_check = h, step, rank, -1
                bar.update(1)
                bar.set_postfix({metric: f"{err:.4g}", "noise": f"{noise_of(est, metric):.3g}", "n": n})
                if callback is not None and callback(step, h * self.scale, est):
                    reason = StopReason.CALLBACK
                    break
                if opt.should_stop(est, tol, state) and (not confirm_iid or confirmed(h, n)):
                    converged, reason, best_h, best_step, best_check = True, StopReason.CONVERGED, h, step, -1
                    break
                if step == max_steps - 1:
                    break
                if time_budget is not None and hist["wall_time"][-1] >= time_budget:
                    reason = StopReason.TIME_BUDGET
                    break
                if opt.unreachable(est, n, tol):
                    reason = StopReason.NOISE_FLOOR
                    notes.append(f"tol {tol:g} cannot be certified: at the largest sample ({n}) the {metric} "
                                 f"estimate's noise is {noise_of(est, metric):.4g} > "
                                 f"{getattr(opt, 'stop_noise', 1):.3g} x tol")
                    break

                def probe(h_try, hessian=False, sub=sub, n=n):
                    return self._estimate(sub, h_try, n, sampling=sampling, hessian=hessian,
                                          band=getattr(opt, "band", 0.1))

                def capture(h_now, idx, sub=sub):
                    return self._capture_raise(sub, h_now, idx, sampling=sampling)

                def score_gap(h_now, sub=sub):
                    return self._score_gap(jax.random.fold_in(sub, 1), h_now)

                h_new, state, step_size = opt.update(est, state, h, self.weights, probe, capture, score_gap)
                if not bool(jnp.all(jnp.isfinite(h_new))):
                    notes.append(f"step {step}: non-finite heights proposed; step rejected")
                    h_new, step_size = h, 0.0
                if step_size == 0.0:
                    rejected += 1
                    stalled += 1
                    if stalled >= 3 and n >= getattr(opt, "max_batch_size", n):
                        reason = StopReason.STALLED
                        notes.append(f"stalled: 3 line searches in a row failed at the largest sample ({n})")
                        break
                else:
                    stalled = 0
                hist["step_size"].append(float(step_size))
                h = h_new
                state, n = opt.next_batch_size(est, state, n, tol, step_size)
                if candidate is not None and check(final=False):
                    converged, reason = True, StopReason.CONVERGED
                    break
            if candidate is not None and not converged and check(final=True):
                converged = True
        finally:
            bar.close()
        label = getattr(opt, "candidate_label", None)
        if best_check >= 0 and label is not None:
            notes.append(f"returned: {label(checks['candidate'][best_check])}, checked after step {checks['step'][best_check]}")
        if rejected:
            notes.append(f"{rejected} step(s) found no acceptable line-search point (h kept, samples grown)")
        hist["step_size"].extend([0.0] * (len(hist["l1"]) - len(hist["step_size"])))
        h_out = (best_h - jnp.mean(best_h)) * self.scale
        if self.mesh is not None:  # the heights leave as a plain array, not one replicated over the mesh's devices
            h_out = jnp.asarray(np.asarray(h_out))
        if not bool(jnp.all(jnp.isfinite(h_out))):  # unreachable by construction; never hand out NaN heights
            raise FloatingPointError("semi-discrete OT produced non-finite heights; please report this problem")
        diag = Diagnostics(
            convergence=Convergence(converged=converged, stop_reason=str(reason), tol=float(tol), metric=metric,
                                    optimizer=opt.name, best_step=best_step),
            history=History(**{k: tuple(v) for k, v in hist.items()}),
            checks=Checks(best=best_check, **{k: tuple(v) for k, v in checks.items()}), notes=tuple(notes))
        bmap = BrenierMap(self.targets, self.weights, h_out, self.source, diag, self.block_size, self.chunk_size)
        if self.mesh is None and self._y is self.targets:  # same frame: hand over the padded blocks, no copy
            bmap._blocks = (h_out, self.targets, scores.with_heights(self._blocks, h_out))
        return verdict(bmap, strict, warn, stacklevel=3)

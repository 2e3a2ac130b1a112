"""Flow matching generators with three couplings: ``fm``, ``otcfm``, ``sdfm``.

    gen = make("sdfm", "toy", shape=(2,), seed=0)
    gen.fit(data, key, workdir)          # resumable, like the GANs
    x = gen.sample(key, n)               # N(0, I) noise through the learnt ODE
    x = gen.sample(key, n, ode_steps=4)  # fewer velocity evaluations

A velocity field v(x, t) (:class:`~otgen.models.velocity.VelocityMLP`) is
regressed onto the straight-line velocity ``x1 - x0`` at ``x_t = (1 - t) x0 + t x1``
(plus ``sigma`` noise), t ~ U(0, 1), for pairs (x0, x1) of N(0, I) noise and data
drawn from a *coupling* (:mod:`otgen.ot.couplings`):

* ``fm``: independent pairs (Lipman et al. 2023; Tong et al.'s I-CFM);
* ``otcfm``: exact OT within each batch (Tong et al., TMLR 2024; TorchCFM's
  ``ExactOptimalTransportConditionalFlowMatcher``), by POT's ``ot.emd``;
* ``sdfm``: the semi-discrete OT map from N(0, I) onto the whole training set,
  solved once by :mod:`otgen.ot` (Mousavi-Hosseini et al. 2025, eps = 0), each
  noise draw paired with its power cell's point.

Everything runs in the frame of the data's PCA whitening (mean 0, identity
covariance, :func:`otgen.generators.aeot.fit_whitening`), shared by the three
couplings, so N(0, I) noise is on the data's scale.  Samples come from a
fixed-step ODE solve (:mod:`otgen.models.ode`); the number of velocity
evaluations (NFE) is recorded with every sample set.

A flow is a homeomorphism of R^d: it cannot carry the connected noise space onto
disconnected modes without a bridge of samples between them.  ``sdfm`` regresses
onto the discontinuous Brenier map itself, so the bridge it leaves is what the
network's smoothness costs; see ``between_modes_fraction`` in the toy metrics.

With a ``workdir`` the fit writes ``checkpoint.npz`` (atomic, pickle-free: the
network, optimiser state, PRNG key, whitening, history, learning curve) and, for
``sdfm``, the solved map (``whitening.npz``, ``brenier.npz``); a later fit on the
same data and configuration continues bit for bit, one on other data or settings
is refused.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from pathlib import Path
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from otgen.checkpoint import CheckpointError, array_fingerprint, check_training_metadata, load_pytree, save_pytree
from otgen.generators.aeot import MAP_FILE, WHITENING_FILE, OTOptions, Whitening, fit_whitening, solve_latent_ot
from otgen.models.ode import STAGES, integrate, nfe
from otgen.models.velocity import VelocityMLP
from otgen.ot import BrenierMap
from otgen.ot.couplings import minibatch_ot_pairs
from otgen.training.driver import curve_steps, drive, kept_checkpoint

__all__ = ["COUPLINGS", "PRESETS", "FlowConfig", "Flow", "FlowDivergedError", "make"]

COUPLINGS = ("fm", "otcfm", "sdfm")
CHECKPOINT_NAME = "checkpoint.npz"
_KIND = "otgen-flow-v1"
_CHUNK = 250  # training steps per jit-compiled scan (pairs for a chunk are drawn at once)

# One visible table of settings per suite.  Toys: TorchCFM's 2-D examples train 3 x 64 SELU MLPs with
# Adam at 1e-3 on batches of 256 for 20,000 steps (examples/2D_tutorials); the width is raised to 256
# here because the 25-mode grid needs it, and their path noise sigma = 0.1 is set to 0 because it would
# blur modes of std 0.01-0.05 (ring8, grid25) by several of their widths.  Images: the same recipe in the
# autoencoder's code space (16-d quick), twice as wide; the semi-discrete solve onto 60,000 codes gets
# AE-OT quick's 300 s OT budget (its chi2 is recorded, converged or not).
PRESETS: dict[str, dict] = {
    "toy": dict(steps=20_000, batch_size=256, lr=1e-3, width=256, depth=3, sigma=0.0,
                ode_method="rk4", ode_steps=16, ot_tol=0.0025, ot_time_budget=600.0),
    "images": dict(steps=20_000, batch_size=256, lr=1e-3, width=512, depth=3, sigma=0.0,
                   ode_method="rk4", ode_steps=16, ot_tol=0.0025, ot_time_budget=300.0),
}


class FlowDivergedError(FloatingPointError):
    """The flow-matching loss became non-finite; the last checkpoint is kept."""


@dataclasses.dataclass(frozen=True)
class FlowConfig:
    """One flow-matching model; ``steps`` and the ODE settings may change between fits of one
    workdir (the budget may grow, the sampler is free), the rest may not."""

    model: str
    steps: int
    batch_size: int
    lr: float
    width: int
    depth: int
    sigma: float  # std of the Gaussian path around the straight line (0: deterministic paths)
    ode_method: str  # euler, midpoint or rk4 (sampling only)
    ode_steps: int  # steps of the ODE solve (sampling only); NFE = ode_steps * stages
    ot_tol: float  # sdfm: chi2 tol of the semi-discrete solve
    ot_time_budget: float  # sdfm: seconds allowed for that solve
    seed: int = 0
    preset: str = "toy"

    SAMPLING_FIELDS = ("steps", "ode_method", "ode_steps")

    def __post_init__(self):
        if self.model not in COUPLINGS:
            raise ValueError(f"flow model must be one of {', '.join(COUPLINGS)}, got {self.model!r}")
        if self.ode_method not in STAGES:
            raise ValueError(f"ode_method must be one of {', '.join(STAGES)}, got {self.ode_method!r}")
        ints = {k: getattr(self, k) for k in ("steps", "batch_size", "width", "depth", "ode_steps")}
        if any(int(v) < 1 for v in ints.values()):
            raise ValueError(f"need positive {', '.join(ints)}, got {ints}")
        if not (self.lr > 0 and self.sigma >= 0 and self.ot_tol > 0 and self.ot_time_budget > 0):
            raise ValueError(f"need lr > 0, sigma >= 0, ot_tol > 0, ot_time_budget > 0; got {self.lr}, "
                             f"{self.sigma}, {self.ot_tol}, {self.ot_time_budget}")

    def compatibility_dict(self) -> dict:
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in self.SAMPLING_FIELDS}

    @property
    def nfe(self) -> int:
        return nfe(self.ode_steps, self.ode_method)


class FlowState(NamedTuple):
    params: dict
    opt_state: optax.OptState
    key: jax.Array  # the training steps' randomness (t, path noise), split once per step
    pair_key: jax.Array  # the pairs of step s come from fold_in(pair_key, s): chunking changes nothing
    step: jax.Array


def _loss(net: VelocityMLP, sigma: float, params, x0, x1, key):
    k_t, k_eps = jax.random.split(key)
    t = jax.random.uniform(k_t, (x0.shape[0], 1))
    xt = (1.0 - t) * x0 + t * x1
    if sigma > 0:
        xt = xt + sigma * jax.random.normal(k_eps, x0.shape)
    return jnp.mean(jnp.sum((net.apply(params, xt, t[:, 0]) - (x1 - x0)) ** 2, axis=-1))


def _make_chunk_runner(net: VelocityMLP, tx: optax.GradientTransformation, sigma: float):
    """jit: run one training step per leading slice of (x0s, x1s); returns (state, losses)."""
    grad_fn = jax.value_and_grad(lambda p, x0, x1, k: _loss(net, sigma, p, x0, x1, k))

    def step(state: FlowState, pair):
        key, k_loss = jax.random.split(state.key)
        loss, grads = grad_fn(state.params, pair[0], pair[1], k_loss)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        return state._replace(params=optax.apply_updates(state.params, updates), opt_state=opt_state, key=key,
                              step=state.step + 1), loss

    return jax.jit(lambda state, x0s, x1s: jax.lax.scan(step, state, (x0s, x1s)))


class Flow:
    """One flow-matching model (see the module docstring).  ``evaluate(model) -> dict``, if
    given, is the learning curve's record at :func:`otgen.training.curve_steps`."""

    def __init__(self, config: FlowConfig, *, progress: bool = True, evaluate: Callable | None = None):
        self.config = config
        self.progress, self.evaluate = progress, evaluate
        self.net = VelocityMLP(dim=0, width=config.width, depth=config.depth)  # dim set by the data
        self.tx = optax.adam(config.lr)
        self.state: FlowState | None = None
        self.whitening = None
        self.bmap = None  # sdfm's semi-discrete map (whitened frame)
        self.history: dict[str, list] = {}
        self.curve: list[dict] = []
        self.train_seconds = 0.0
        self.ot_seconds = 0.0
        self.data_digest = ""

    @property
    def name(self) -> str:
        return self.config.model

    # -- set-up ----------------------------------------------------------------
    def _init_state(self, dim: int, key: jax.Array) -> FlowState:
        self.net = VelocityMLP(dim=dim, width=self.config.width, depth=self.config.depth)
        k_init, k_train, k_pairs = jax.random.split(key, 3)
        params = self.net.init(k_init, jnp.zeros((1, dim)), jnp.zeros((1,)))
        return FlowState(params, self.tx.init(params), k_train, k_pairs, jnp.asarray(0, jnp.int32))

    def _metadata(self) -> dict:
        return {"kind": _KIND, "config": self.config.compatibility_dict(), "step": int(self.state.step),
                "data": self.data_digest, "history": self.history, "curve": self.curve,
                "seconds": self.train_seconds, "ot_seconds": self.ot_seconds, "dim": int(self.net.dim)}

    def _tree(self) -> dict:
        return {"state": self.state, "whitening": dict(self.whitening._asdict())}

    def _save(self, workdir) -> None:
        if workdir is not None:
            save_pytree(Path(workdir) / CHECKPOINT_NAME, self._tree(), self._metadata())

    def _restore(self, path: Path, dim: int | None, digest: str | None) -> None:
        _, meta = load_pytree(path)
        check_training_metadata(path, meta, kind=_KIND, what="flow-matching", config=self.config.compatibility_dict(),
                                data_digest=digest)
        dim = int(meta.get("dim", -1)) if dim is None else dim
        if int(meta.get("dim", -1)) != dim or dim < 1:
            raise CheckpointError(f"{path} holds a flow in dimension {meta.get('dim')}, not {dim}")
        like = {"state": self._init_state(dim, jax.random.key(0)), "whitening": Whitening.identity(dim)._asdict()}
        tree, _ = load_pytree(path, like=like)
        self.state = jax.tree_util.tree_map(jnp.asarray, tree["state"])
        self.whitening = Whitening(**{k: np.asarray(v, np.float32) for k, v in tree["whitening"].items()})
        self.history = {k: list(v) for k, v in meta.get("history", {}).items()}
        self.curve = [dict(r) for r in meta.get("curve", [])]
        self.train_seconds, self.ot_seconds = float(meta.get("seconds", 0.0)), float(meta.get("ot_seconds", 0.0))
        self.data_digest = str(meta.get("data", ""))

    def _solve_coupling(self, x: np.ndarray, key: jax.Array, workdir) -> None:
        """sdfm: the semi-discrete map from N(0, I) onto the whitened data (loaded if saved)."""
        wd = None if workdir is None else Path(workdir)
        if wd is not None and (wd / MAP_FILE).exists() and (wd / WHITENING_FILE).exists():
            whitening, bmap = Whitening.load(wd / WHITENING_FILE), BrenierMap.load(wd / MAP_FILE)
            if bmap.dim != x.shape[1] or bmap.num_targets > len(x):
                raise CheckpointError(f"{wd / MAP_FILE} does not map onto this data; use another directory")
        else:
            t0 = time.perf_counter()
            ot = OTOptions(source="gaussian", whiten=True, tol=self.config.ot_tol, metric="chi2",
                           time_budget=self.config.ot_time_budget)
            whitening, bmap = solve_latent_ot(x, ot, key, progress=self.progress)
            self.ot_seconds = time.perf_counter() - t0
            if wd is not None:
                wd.mkdir(parents=True, exist_ok=True)
                whitening.save(wd / WHITENING_FILE)
                bmap.save(wd / MAP_FILE)
        self.whitening, self.bmap = whitening, bmap

    # -- the coupling ------------------------------------------------------------
    def _pairs(self, y: jax.Array, first: int, n_steps: int) -> tuple[jax.Array, jax.Array]:
        """Noise and paired data for steps ``first + 1 .. first + n_steps``: two (n_steps, B, d) arrays."""
        x0, idx = _draw(self.state.pair_key, first, n_steps, self.config.batch_size, y.shape[1], y.shape[0])
        if self.config.model == "sdfm":
            d = y.shape[1]
            return x0, jnp.asarray(self.bmap(x0.reshape(-1, d))).reshape(x0.shape)
        x1 = y[idx]
        if self.config.model == "otcfm":
            x0_np, x1_np = np.asarray(x0), np.asarray(x1)
            x1 = jnp.asarray(np.stack([minibatch_ot_pairs(a, c) for a, c in zip(x0_np, x1_np)]))
        return x0, x1

    # -- training ------------------------------------------------------------------
    def fit(self, data, key: jax.Array | None = None, workdir=None) -> "Flow":
        """Train for ``config.steps`` steps (continuing ``workdir``'s checkpoint if any)."""
        cfg = self.config
        x = np.asarray(data, np.float32)
        if x.ndim != 2 or x.shape[0] < 2:
            raise ValueError(f"flow matching needs data of shape (n, d) with n >= 2, got {x.shape}")
        if not np.all(np.isfinite(x)):
            raise ValueError("data contain NaN or inf")
        key = jax.random.key(cfg.seed) if key is None else key
        k_ot, k_init = jax.random.split(key)
        digest = array_fingerprint(x)
        ckpt = None if workdir is None else Path(workdir) / CHECKPOINT_NAME
        if ckpt is not None and ckpt.exists():
            self._restore(ckpt, x.shape[1], digest)
        else:
            self.state, self.history, self.curve, self.train_seconds = None, {}, [], 0.0
        self.data_digest = digest
        if cfg.model == "sdfm":
            self._solve_coupling(x, k_ot, workdir)
        elif self.whitening is None or self.state is None:
            self.whitening = fit_whitening(x, "gaussian")
        if self.state is None:
            self.state = self._init_state(x.shape[1], k_init)
        y = jnp.asarray(self.whitening.apply(x))
        run_chunk = _make_chunk_runner(self.net, self.tx, cfg.sigma)
        t0, before = time.perf_counter(), self.train_seconds
        restored = ckpt is not None and ckpt.exists()

        def advance(state, step, n):
            state, losses = run_chunk(state, *self._pairs(y, step, n))
            return state, {"loss": losses}

        def save(state, step):
            self.state, self.train_seconds = state, before + time.perf_counter() - t0
            self._save(workdir)

        def diverged(at, metrics, saved):
            return FlowDivergedError(f"{cfg.model}: non-finite loss at step {at}; {kept_checkpoint(saved)}. Try a smaller lr "
                                     f"(lr={cfg.lr:g}).")

        def evaluate(state):
            self.state = state
            return self.evaluate(self)

        step = int(self.state.step)
        # checkpoints on multiples of the chunk, so every chunk has one of two compiled lengths at most
        every = _CHUNK * max(1, min(5000, cfg.steps // 10) // _CHUNK)
        self.state = drive(self.state, step, cfg.steps, advance, save=save, diverged=diverged, log_every=_CHUNK,
                           checkpoint_every=every, history=self.history, last_saved=step if restored else None,
                           curve=self.curve, eval_steps=curve_steps(cfg.steps) if self.evaluate is not None else (),
                           evaluate=evaluate if self.evaluate is not None else None, name=cfg.model,
                           progress=self.progress)
        return self

    # -- sampling ------------------------------------------------------------------
    def _require_fit(self) -> FlowState:
        if self.state is None:
            raise ValueError(f"this {self.name} model is not trained: call fit(data, key) first")
        return self.state

    def sample(self, key: jax.Array, n: int, *, ode_steps: int | None = None,
               ode_method: str | None = None) -> np.ndarray:
        """``n`` samples: N(0, I) noise integrated through the learnt field (the config's ODE
        solver unless ``ode_steps`` / ``ode_method`` are given), in the data's frame."""
        params = self._require_fit().params
        steps = int(ode_steps or self.config.ode_steps)
        method = ode_method or self.config.ode_method
        x0 = jax.random.normal(key, (int(n), self.net.dim))
        x1 = _integrator(self.net, steps, method)(params, x0)
        out = self.whitening.invert(np.asarray(x1))
        if not np.all(np.isfinite(out)):
            raise FlowDivergedError(f"{self.name}: the ODE solve produced non-finite samples "
                                    f"({method}, {steps} steps); try more ODE steps")
        return out

    def save(self, directory) -> None:
        self._require_fit()
        d = Path(directory)
        self._save(d)
        if self.bmap is not None:
            self.whitening.save(d / WHITENING_FILE)
            self.bmap.save(d / MAP_FILE)

    @classmethod
    def load(cls, directory, config: FlowConfig) -> "Flow":
        """The model trained into ``directory`` (refused if its checkpoint has another configuration)."""
        path = Path(directory) / CHECKPOINT_NAME
        if not path.exists():
            raise CheckpointError(f"{path} is missing: no trained {config.model} there")
        model = cls(config, progress=False)
        model._restore(path, None, None)
        if config.model == "sdfm":
            if (Path(directory) / MAP_FILE).exists():
                model.bmap = BrenierMap.load(Path(directory) / MAP_FILE)
        return model

    def info(self) -> dict:
        state = self._require_fit()
        out = {"train_seconds": self.train_seconds, "steps": int(state.step), "preset": self.config.preset,
               "coupling": self.config.model, "ode_method": self.config.ode_method,
               "ode_steps": self.config.ode_steps, "nfe": self.config.nfe}
        if self.bmap is not None:
            out.update(self.bmap.diagnostics.as_metrics())
            out["ot_seconds"] = self.ot_seconds
        return out


@functools.partial(jax.jit, static_argnums=(2, 3, 4, 5))
def _draw(pair_key, first: int, n_steps: int, batch: int, dim: int, n_data: int):
    """Step s's noise (B, d) and data indices (B,) from ``fold_in(pair_key, s)``, for ``n_steps`` steps."""
    def one(s):
        k_noise, k_data = jax.random.split(jax.random.fold_in(pair_key, s))
        return jax.random.normal(k_noise, (batch, dim)), jax.random.randint(k_data, (batch,), 0, n_data)

    return jax.vmap(one)(first + 1 + jnp.arange(n_steps))


@functools.lru_cache(maxsize=16)
def _integrator(net, steps: int, method: str):
    """The jit-compiled ODE sampler of ``net`` (params, x0) -> x1, one per (network, steps, method)."""
    return jax.jit(lambda p, x: integrate(lambda z, t: net.apply(p, z, t), x, steps=steps, method=method))


def make(model: str, suite: str, *, shape: tuple[int, ...], preset: str = "default", steps: int | None = None,
         seed: int = 0, progress: bool = True, evaluate: Callable | None = None, **options) -> Flow:
    """``model`` (fm, otcfm, sdfm) with :data:`PRESETS` ``[suite]``; ``options`` override single fields
    (batch_size, lr, width, depth, sigma, ode_method, ode_steps, ot_tol, ot_time_budget)."""
    if len(shape) != 1:
        raise ValueError(f"flows act on vectors (toy points or autoencoder codes), got sample shape {shape}")
    row = dict(PRESETS["images" if suite == "images" else "toy"])
    unknown = sorted(set(options) - set(row))
    if unknown:
        raise ValueError(f"{model} takes no option {', '.join(unknown)}; flow options are {', '.join(row)}")
    row.update(options)
    if steps is not None:
        row["steps"] = int(steps)
    config = FlowConfig(model=model, seed=seed, preset=preset, **row)
    return Flow(config, progress=progress, evaluate=evaluate)

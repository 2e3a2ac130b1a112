"""AE-OT's two extension rules on the 2-D toys, several seeds, beside the real and replay controls.

    python scripts/toy_rules.py --seeds 3 --out runs/toy_rules --report experiments/reports/toy_rules.md

For each (toy, seed): the training set and held-out sets of ``otgen toy`` (same draws), one AE-OT fit
(``otgen toy``'s settings; the fit is kept in ``--out`` and reused), samples under the angle rule
(``otgen toy``'s default) and the spacing rule (:mod:`otgen.ot.spacing`) from the same map, each
scored by :func:`otgen.eval.evaluate`; the controls (fresh draws, a replay of the training set) by
the same function.  Mean +- sample std over seeds.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from otgen.data import draw_toy, toys
from otgen.eval import evaluate
from otgen.generators.aeot import AEOT, ExtensionOptions
from otgen.pipelines.toy import TOY_TRAIN_SIZE, _keys, held_out_set

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: the harness, experiments/
from experiments.controls import toy_controls  # noqa: E402

DISTS = ("ring8", "grid25", "ring8_unequal", "nested_rings")
COLUMNS = (("modes", "modes_captured", "{:.1f}"), ("HQ %", "high_quality_fraction", "{:.1%}"),
           ("between %", "between_modes_fraction", "{:.2%}"), ("KL", "reverse_kl", "{:.3f}"),
           ("W2", "w2", "{:.3f}"), ("% copies", "copy_fraction", "{:.2%}"), ("C_T", "data_copying_ct", "{:.1f}"),
           ("global z", "nn_global_z", "{:.1f}"), ("NN ratio", "nn_distance_ratio", "{:.2f}"))
N_SAMPLES = 2500
# (row, rule, spacing-rule noise): the angle rule (otgen toy's default), the spacing rule with its noise along
# the admissible edges and with the codes' local covariance (otgen mnist's default)
RULE_ROWS = (("aeot (angle)", "angle", "local"), ("aeot (spacing, edge noise)", "spacing", "edges"),
             ("aeot (spacing, local noise)", "spacing", "local"))


def rows_for(dist: str, seed: int, out: Path, jitter_factors=()) -> list[dict]:
    """The control rows and every rule's row for one (toy, seed); ``jitter_factors``: extra rows of the
    spacing rule with the local noise at ``f`` times its calibrated jitter (the quality-novelty trade-off)."""
    toy = toys.get(dist)
    train = draw_toy(toy, "train", TOY_TRAIN_SIZE["default"], seed)
    held = held_out_set(toy, seed, N_SAMPLES)
    keys = _keys(seed)
    rows = [{"row": f"*{r['model']}*", **r} for r in toy_controls(dist, seed, train, N_SAMPLES)]
    calibrated = None
    extra = [(f"aeot (spacing, local noise, jitter x{f:g})", "spacing", "local", f) for f in jitter_factors]
    for label, rule, noise, *factor in [*RULE_ROWS, *extra]:
        t0 = time.perf_counter()
        if factor and calibrated is None:  # RULE_ROWS calibrates the local-noise rule before the extra rows
            raise RuntimeError("the jitter-factor rows need the calibrated local-noise spacing row first")
        jitter = factor[0] * calibrated if factor else None
        model = AEOT(extension=ExtensionOptions(rule=rule, noise=noise, jitter=jitter)).fit(
            train, keys["fit"], out / f"{dist}_s{seed}", progress=False)
        if rule == "spacing" and noise == "local" and not factor:
            calibrated = model.latent_map.spacing_rule.jitter
        x = model.sample_codes(keys["sample"], N_SAMPLES)
        rec = evaluate("toy", x, toy=toy, train=train, held_out=held, seed=seed)
        info = model.info()
        rows.append({"row": label, "seconds": time.perf_counter() - t0, **rec,
                     **{k: v for k, v in info.items() if k.startswith("rule_") or k == "ot_converged"}})
    return rows


def _fmt(values, fmt):
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], np.float64)
    if len(v) == 0:
        return "—"
    f = lambda a: fmt.format(a).replace("%", "")
    return f(v.mean()) + (f" ± {f(v.std(ddof=1))}" if len(v) > 1 else "")


def report(results: dict, seeds: int, command: str) -> str:
    lines = ["# AE-OT's extension rules on the 2-D toys", "", f"- Command: `{command}`",
             f"- Written: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by `scripts/toy_rules.py` "
             f"(nothing typed by hand); {seeds} seed(s), {TOY_TRAIN_SIZE['default']} training points, "
             f"{N_SAMPLES} samples; mean ± sample std over seeds.",
             "- Rows: *real* (fresh draws), *replay* (training points resampled), AE-OT under the angle rule "
             "(`otgen toy`'s default, 0.1 rad) and the spacing rule with noise along the admissible edges and "
             "with the local covariance of the 16 nearest codes (`otgen mnist`'s default), all from the same map "
             "of each seed. "
             "Percent columns are in percent; *global z*: Mann-Whitney z of nearest-training distances, "
             "samples vs held-out draws (|z| < 3 like fresh data).", ""]
    for dist, per_seed in results.items():
        lines += [f"## {dist}", "", "| row | " + " | ".join(c[0] for c in COLUMNS) + " |",
                  "|---" * (len(COLUMNS) + 1) + "|"]
        labels = [r["row"] for r in per_seed[0]]
        for label in labels:
            recs = [next(r for r in rows if r["row"] == label) for rows in per_seed]
            lines.append(f"| {label} | " + " | ".join(_fmt([r.get(k) for r in recs], f) for _, k, f in COLUMNS) + " |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--dists", default=",".join(DISTS))
    p.add_argument("--out", default="runs/toy_rules")
    p.add_argument("--report", default=None)
    p.add_argument("--jitter-factors", default="",
                   help="comma-separated f: extra rows of the local-noise spacing rule at f x its calibrated jitter")
    a = p.parse_args()
    factors = tuple(float(f) for f in a.jitter_factors.split(",") if f)
    if any(not f >= 0 for f in factors):
        raise SystemExit(f"--jitter-factors must be >= 0, got {a.jitter_factors}")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    store = out / "results.json"
    results = json.loads(store.read_text()) if store.exists() else {}
    for dist in a.dists.split(","):
        per_seed = results.setdefault(dist, [])
        for seed in range(len(per_seed), a.seeds):
            per_seed.append(rows_for(dist, seed, out, factors))
            tmp = store.with_suffix(".tmp")
            tmp.write_text(json.dumps(results, default=float))
            tmp.replace(store)  # atomic: a killed run resumes at the next (toy, seed)
            print(f"{dist} seed {seed}: " + "; ".join(
                f"{r['row']} HQ {r['high_quality_fraction']:.3f} z {r['nn_global_z']:.1f}" for r in per_seed[-1]),
                flush=True)
    text = report({d: results[d][:a.seeds] for d in a.dists.split(",")}, a.seeds,
                  f"python scripts/toy_rules.py --seeds {a.seeds} --out {a.out}"
                  + (f" --jitter-factors {a.jitter_factors}" if factors else "")
                  + (f" --report {a.report}" if a.report else ""))
    if a.report:
        Path(a.report).write_text(text)
    print(text)


if __name__ == "__main__":
    main()

"""The spacing rule's settings on one MNIST AE-OT run: FID, recall, KL and novelty for each variant.

    python scripts/spacing_variants.py runs/mnist_quick --data-dir DATA_DIR \
        --variants "spread=1e-6" "budget=0.005" "budget=0.1"

Each variant is a set of ``otgen.ot.extension.spacing_rule`` keywords (``budget``, ``kappa``, ``spread``,
``jitter``) applied to the run's map and barycentres; 10,000 codes are sampled, decoded and scored by
``otgen.eval.evaluate`` and the code-space novelty, as ``otgen ablation`` scores its rows.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import jax

from otgen.data.mnist import to_unit_float
from otgen.eval import evaluate
from otgen.eval.mnist import HELD_OUT, prefixed_novelty
from otgen.generators.aeot import ExtensionOptions
from otgen.models.autoencoder import encode_batched
from otgen.ot.spacing import spacing_rule
from otgen.pipelines.mnist_aeot import load_ae_params
from otgen.pipelines.mnist_evaluate import code_reference
from otgen.pipelines.mnist_rundir import LATENTS_FILE, load_images
from otgen.rundir import RunDir

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: the harness, experiments/
from experiments import ablation as ab  # noqa: E402

FIELDS = ("fid", "kl_uniform", "precision", "recall", "feature_data_copying_ct", "feature_nn_global_z",
          "code_data_copying_ct", "code_nn_global_z", "pixel_nn_global_z")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dir")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--variants", nargs="+", required=True, help='e.g. "budget=0.005" "spread=1e-6,budget=0.1"')
    p.add_argument("--n", type=int, default=10_000)
    a = p.parse_args()
    cfg = ab._stored_config(RunDir(a.run_dir), a.data_dir, False)
    rd = RunDir(cfg.out)
    model, params, _ = load_ae_params(rd, cfg)
    train = rd.load_array(LATENTS_FILE)
    test = load_images(cfg, "test")
    code_ref = code_reference(train, encode_batched(model, params, to_unit_float(test[HELD_OUT]), 1000))
    base = ab._load_aeot(cfg, ExtensionOptions(rule="angle"))
    angle_map = base.latent_map
    for variant in a.variants:
        kw = {k: float(v) for k, v in (item.split("=") for item in variant.split(","))}
        base.latent_map = spacing_rule(angle_map, jax.random.key(3), metric=base.whitening.unproj, **kw)
        codes = base.sample_codes(jax.random.key(4), a.n)
        rec = {**evaluate(cfg.dataset, ab._decode(model, params, codes), data_dir=cfg.data_dir),
               **prefixed_novelty("code_", codes, code_ref)}
        rule = {k: round(v, 3) for k, v in base.latent_map.spacing_rule.as_dict().items()}
        print(variant, rule, {k: round(rec[k], 4) for k in FIELDS}, flush=True)


if __name__ == "__main__":
    main()

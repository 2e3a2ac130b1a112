"""The run directory of ``otgen mnist`` and what every stage shares: the artefacts' file names, claiming
a directory for one configuration, the stage ledger (``stages.json``: which stages are done and what
they cost), the seed's keys, the dataset's images, the uint8 sample format and the progress log.
"""

from __future__ import annotations

import dataclasses
import time

import jax
import numpy as np

try:
    import resource
except ImportError:  # not on POSIX
    resource = None

from otgen.data import load
from otgen.generators.aeot import EXTENSION_FILE
from otgen.pipelines.mnist_config import MnistConfig
from otgen.rundir import claim_run_dir as _claim_dir  # this module's claim_run_dir is the mnist one
from otgen.training.decoder_gan import PARAMS_FILE as DECODER_GAN_FILE

__all__ = ["AE_FILE", "AE_STATE_FILE", "LATENTS_FILE", "GEN_LATENTS_FILE", "SAMPLES_FILE", "GAN_DIR", "FLOW_DIR",
           "CURVES_FILE", "METRICS_FILE", "STAGES_FILE", "OT_CHECK_FILE", "GENERATION_FILE", "NEIGHBOURS_FIGURE",
           "claim_run_dir", "record_stage", "stage_done", "keys", "load_images", "load_train_images", "to_uint8",
           "log"]

# Files that mark a stage as done (each written atomically, last thing the stage does).
AE_FILE, AE_STATE_FILE, LATENTS_FILE = "autoencoder.npz", "ae_train_state.npz", "latents.npy"
GEN_LATENTS_FILE, SAMPLES_FILE = "generated_latents.npy", "samples.npy"
GAN_DIR, FLOW_DIR = "gan", "flow"
DECODER_GAN_DIR = "decoder_gan"  # the tune-decoder stage's (AE-OT-GAN's decoder)
CURVES_FILE = "curves.json"  # a GAN's learning curve: records {"step": s, classes / modes, KL, FID}
METRICS_FILE, STAGES_FILE = "metrics.json", "stages.json"
OT_CHECK_FILE = "ot_check.json"  # the latent map's error measured on fresh i.i.d. samples (not the solver's)
GENERATION_FILE, NEIGHBOURS_FIGURE = "generation.json", "nearest_neighbours.png"


def log(cfg: MnistConfig, msg: str) -> None:
    if cfg.progress:
        print(f"[otgen mnist] {msg}", flush=True)


def to_uint8(images) -> np.ndarray:
    """float images in [0, 1], (n, 28, 28[, C]) -> uint8 (n, 28, 28) for grey, (n, 28, 28, C) otherwise."""
    x = np.asarray(images, np.float32)
    if x.ndim == 4 and x.shape[-1] == 1:
        x = x[..., 0]
    return np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)


def claim_run_dir(cfg: MnistConfig):
    """A run directory belongs to one configuration: resume it, or refuse to mix artefacts of two
    (``--overwrite`` replaces the other run)."""

    def stored(doc):
        # fields added since a run directory was made take their "off" value (what that run did)
        have = {**MnistConfig.LATER_FIELDS, **doc.get("config", {})}
        return {k: v for k, v in have.items() if k not in MnistConfig.RUNTIME_FIELDS}

    rd = _claim_dir(cfg.out, cfg.identity(), stored, cfg.overwrite)
    if not rd.has("config.json"):
        rd.write_config(dataclasses.asdict(cfg), seed=cfg.seed)
    return rd


def _peak_rss_mb() -> float | None:
    if resource is None:  # not on POSIX
        return None
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


def record_stage(rd, name: str, seconds: float, **extra) -> None:
    """stages.json: wall seconds per stage and the process's peak memory so far (the 4 GB budget)."""
    done = rd.read_json(STAGES_FILE) if rd.has(STAGES_FILE) else {}
    done[name] = {"seconds": round(seconds, 2), "peak_rss_mb_so_far": _peak_rss_mb(),
                  "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **extra}
    rd.write_json(STAGES_FILE, done)


def stage_done(rd, cfg: MnistConfig, stage: str) -> bool:
    """Done = its artefact exists *and* stages.json records it: a crash between the two (the artefact
    is written first) redoes the stage rather than leave it without its time."""
    if stage == "evaluate":
        return rd.has(METRICS_FILE)
    marker = {"train-ae": AE_FILE, "encode": LATENTS_FILE, "fit-ot": EXTENSION_FILE, "generate": SAMPLES_FILE,
              "tune-decoder": f"{DECODER_GAN_DIR}/{DECODER_GAN_FILE}", "train-gan": None, "train-flow": None}[stage]
    recorded = rd.has(STAGES_FILE) and stage in rd.read_json(STAGES_FILE)
    return recorded and (marker is None or rd.has(marker))


def keys(seed: int):
    """The seed's keys, one per use (the same whichever stages ran before)."""
    k = jax.random.split(jax.random.key(seed), 5)
    return {"ae_init": k[0], "ae_shuffle": k[1], "ot": k[2], "generate": k[3], "gan": k[4]}


def load_images(cfg: MnistConfig, split: str) -> np.ndarray:
    """uint8 images of ``split`` (:func:`otgen.data.load`): (n, 28, 28) MNIST, (n, 28, 28, 3) Stacked."""
    return load(cfg.dataset, split, cfg.data_dir)


def load_train_images(cfg: MnistConfig) -> np.ndarray:
    """The training images the run uses: the first ``cfg.limit`` (all when None)."""
    return load(cfg.dataset, "train", cfg.data_dir, n=cfg.limit)

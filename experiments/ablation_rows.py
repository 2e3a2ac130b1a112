"""The rows of ``otgen ablation``: sampler names, control rows, results files, and how a row name parses."""

from __future__ import annotations

from otgen.generators.latent import is_sampler

__all__ = ["SAMPLER_ROWS", "FLOW_ROWS", "CONTROL_ROWS", "RESULTS_FILE", "DECODERS", "jitter_factor", "check_rows"]

SAMPLER_ROWS = ("gaussian", "gmm10", "gmm100", "kde", "sd-map", "aeot-angle", "aeot-spacing")
FLOW_ROWS = ("fm", "sdfm")  # asked for by name: each trains a network (minutes), see ablation._flow_codes
CONTROL_ROWS = ("real (held-out test images)", "replay (training images)", "reconstructions of training images",
                "reconstructions of held-out test images")
RESULTS_FILE = "ablation.json"
DECODERS = {"autoencoder": RESULTS_FILE, "gan": "ablation_decoder_gan.json"}  # decoder -> its results file


def jitter_factor(name: str) -> float | None:
    """``f`` of a row ``aeot-spacing@<f>`` (1 for ``aeot-spacing``), None for other rows."""
    if name == "aeot-spacing":
        return 1.0
    if name.startswith("aeot-spacing@"):
        try:
            f = float(name[len("aeot-spacing@"):])
        except ValueError:
            return None
        return f if f >= 0 else None
    return None


def check_rows(rows) -> tuple[str, ...]:
    """``rows`` if every name is a known row, else a ValueError naming the unknown ones."""
    unknown = [r for r in rows if not (r in SAMPLER_ROWS + FLOW_ROWS or is_sampler(r) or jitter_factor(r) is not None)]
    if unknown:
        raise ValueError(f"unknown rows {unknown}; choose from {', '.join(SAMPLER_ROWS + FLOW_ROWS)}, gmm<k>, "
                         "kde@<scale>, aeot-spacing@<jitter factor>")
    return tuple(rows)

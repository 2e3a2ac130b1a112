"""The rows of ``otgen ablation``: sampler names, control rows, results files, and how a row name parses."""

from __future__ import annotations

from otgen.generators.latent import is_sampler

__all__ = ["SAMPLER_ROWS", "REPORT_ORDER", "FLOW_ROWS", "CONTROL_ROWS", "RESULTS_FILE", "DECODERS", "SPACING_ROWS", "jitter_factor",
           "spacing_noise", "check_rows", "check_decoder", "results_file"]

SAMPLER_ROWS = ("gaussian", "gmm10", "gmm100", "kde", "sd-map", "aeot-angle", "aeot-spacing")
# the order of a report's rows (SAMPLER_ROWS keeps its order: a row's index there salts its random draws)
REPORT_ORDER = ("gaussian", "gmm10", "gmm100", "kde", "local", "local-iso0.5", "local-iso1", "sd-map", "aeot-angle", "aeot-edges", "aeot-spacing")
FLOW_ROWS = ("fm", "sdfm")  # asked for by name: each trains a network (minutes), see ablation._flow_codes
CONTROL_ROWS = ("real (held-out test images)", "replay (training images)", "reconstructions of training images",
                "reconstructions of held-out test images")
RESULTS_FILE = "ablation.json"
# decoder -> its results file.  "gan": one decoder GAN tuned on AE-OT's codes decodes every row; "gan-own":
# each sampler row gets a decoder GAN tuned on that sampler's own codes (the controls: AE-OT's); "gan@<row>"
# (not listed): the decoder GAN tuned on sampler <row>'s codes decodes every row (cross-decoding)
DECODERS = {"autoencoder": RESULTS_FILE, "gan": "ablation_decoder_gan.json", "gan-own": "ablation_decoder_gan_own.json"}


# AE-OT's spacing rule, by its noise: "aeot-spacing" the local covariance (the default), "aeot-edges" along
# the admissible edges (the rule's noise before it); "<row>@<f>" at f times the calibrated jitter
SPACING_ROWS = {"aeot-spacing": "local", "aeot-edges": "edges"}


def _spacing_parts(name: str) -> tuple[str, float] | None:
    base, _, f = name.partition("@")
    if base not in SPACING_ROWS:
        return None
    if not f:
        return SPACING_ROWS[base], 1.0
    try:
        factor = float(f)
    except ValueError:
        return None
    return (SPACING_ROWS[base], factor) if factor >= 0 else None


def jitter_factor(name: str) -> float | None:
    """``f`` of a row ``aeot-spacing@<f>`` / ``aeot-edges@<f>`` (1 without ``@``), None for other rows."""
    parts = _spacing_parts(name)
    return None if parts is None else parts[1]


def spacing_noise(name: str) -> str | None:
    """The spacing rule's noise (``local`` / ``edges``) of an AE-OT spacing row, None for other rows."""
    parts = _spacing_parts(name)
    return None if parts is None else parts[0]


def check_decoder(decoder: str) -> str:
    """``decoder`` if it is one of :data:`DECODERS` or ``gan@<row>`` with a known sampler row, else a ValueError."""
    base, at, row = decoder.partition("@")
    if (decoder in DECODERS and not at) or (base == "gan" and at and row not in FLOW_ROWS and _known(row)):
        return decoder
    raise ValueError(f"decoder must be one of {', '.join(DECODERS)} or gan@<sampler row>, got {decoder!r}")


def results_file(decoder: str, gan_seed: int = 0) -> str:
    """The results file of ``decoder`` (:func:`check_decoder`'s), ``_seed<n>`` added for decoder GANs of seed n != 0."""
    name = DECODERS.get(decoder) or f"ablation_decoder_{decoder}.json"
    return name if not gan_seed else name.replace(".json", f"_seed{gan_seed}.json")


def _known(row: str) -> bool:
    return row in SAMPLER_ROWS + FLOW_ROWS or is_sampler(row) or jitter_factor(row) is not None


def check_rows(rows) -> tuple[str, ...]:
    """``rows`` if every name is a known row, else a ValueError naming the unknown ones."""
    unknown = [r for r in rows if not _known(r)]
    if unknown:
        raise ValueError(f"unknown rows {unknown}; choose from {', '.join(SAMPLER_ROWS + FLOW_ROWS)}, gmm<k>, "
                         "kde@<scale>, local-iso<share>, aeot-spacing[@<jitter factor>], aeot-edges[@<jitter factor>]")
    return tuple(rows)

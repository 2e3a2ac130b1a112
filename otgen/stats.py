"""Small statistics shared by the solver's calibration and the evaluation (no dependency on either)."""

from __future__ import annotations

import numpy as np

__all__ = ["mann_whitney_z"]


def mann_whitney_z(a, b) -> float:
    """Z-scored Mann-Whitney U of ``a`` against ``b`` (ties averaged), no continuity correction.

    Negative when ``a`` tends to be smaller than ``b``; ~N(0, 1) when both come
    from one continuous distribution.
    """
    from scipy.stats import rankdata

    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    m, n = len(a), len(b)
    if m == 0 or n == 0:
        return float("nan")
    ranks = rankdata(np.concatenate([a, b]))
    u = ranks[:m].sum() - m * (m + 1) / 2  # pairs (a_i, b_j) with a_i > b_j, ties counting 1/2
    return float((u - m * n / 2) / np.sqrt(m * n * (m + n + 1) / 12))

"""Plotting positions of censored life data and probability plots on each distribution's own paper.

Exact and right-censored data: Johnson's adjusted ranks with Benard's median-rank approximation
F = (AR - 0.3) / (n + 0.4), which spreads each suspension's share over the later failures. Data with left- or
interval-censored units: the nonparametric maximum-likelihood estimate of F (Turnbull 1976), found by the
self-consistency (EM) iteration on the innermost intervals; its F at the right end of each interval that
carries probability mass is plotted there.
"""

from __future__ import annotations

import numpy as np


def adjusted_ranks(t: np.ndarray, event: np.ndarray) -> np.ndarray:
    """Median-rank unreliability of each failure (in time order): Johnson's adjusted ranks, Benard's formula."""
    t = np.asarray(t, dtype=float)
    event = np.asarray(event, dtype=bool)
    order = np.lexsort((~event, t))  # by time; a failure before a suspension at the same time
    n = t.size
    prev = 0.0
    out = []
    for pos, i in enumerate(order):
        if event[i]:
            prev += (n + 1.0 - prev) / (1.0 + (n - pos))
            out.append((prev - 0.3) / (n + 0.4))
    return np.asarray(out)

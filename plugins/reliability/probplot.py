"""Plotting positions of censored life data and probability plots on each distribution's own paper.

Exact and right-censored data: Johnson's adjusted ranks with Benard's median-rank approximation
F = (AR - 0.3) / (n + 0.4), which spreads each suspension's share over the later failures. Data with left- or
interval-censored units: the nonparametric maximum-likelihood estimate of F (Turnbull 1976), found by the
self-consistency (EM) iteration on the innermost intervals; its F at the right end of each interval that
carries probability mass is plotted there.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from reflow.plotting import pyplot, save_figure

if TYPE_CHECKING:
    from .censoring import Censored
    from .distributions import Fit


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


def turnbull(data: Censored, tol: float = 1e-9, max_iter: int = 5000) -> tuple[np.ndarray, np.ndarray]:
    """(right ends of the innermost intervals, the NPMLE of F there): Turnbull's self-consistency iteration.

    Each unit's life lies in (lower, upper] ([t, t] for an exact failure, (lower, inf) for a suspension); the
    innermost intervals are the [left end, right end] pairs with no other end between them, the only places the
    NPMLE puts probability. Truncation is ignored (plotting positions only)."""
    eps = 1e-9 * max(float(np.max(data.midpoint)), 1.0)
    lo = np.where(data.exact, data.lower, data.lower + eps)
    up = data.upper
    ends = sorted([(v, 0) for v in lo] + [(v, 1) for v in up if np.isfinite(v)])
    inner = []
    for (a, kind_a), (b, kind_b) in zip(ends[:-1], ends[1:], strict=True):
        if kind_a == 0 and kind_b == 1:
            inner.append((a, b))
    if not inner or any(np.isinf(up)):
        inner.append((float(np.max(lo[np.isinf(up)])) if np.isinf(up).any() else ends[-1][0], np.inf))
    left = np.array([a for a, _ in inner])
    right = np.array([b for _, b in inner])
    alpha = (left[None, :] >= lo[:, None] - 1e-12) & (right[None, :] <= up[:, None] + 1e-12)
    alpha[~alpha.any(axis=1), -1] = True  # a unit no innermost interval fits (rounding): the last one
    s = np.full(left.size, 1.0 / left.size)
    a = alpha.astype(float)
    for _ in range(max_iter):
        denom = a @ s
        new = s * (a / denom[:, None]).mean(axis=0)
        if np.max(np.abs(new - s)) < tol:
            s = new
            break
        s = new
    f = np.cumsum(s)
    keep = np.isfinite(right)
    return right[keep], np.clip(f[keep], 0.0, 1.0)


def plotting_positions(data: Censored) -> tuple[np.ndarray, np.ndarray, str]:
    """(times, unreliability F, method name) of the points of a probability plot: Johnson's adjusted ranks of
    the failures for exact and right-censored data, Turnbull's NPMLE with left- or interval-censored units."""
    if (data.interval | data.left).any():
        t, f = turnbull(data)
        ok = (f > 0) & (f < 1)
        return t[ok], f[ok], "Turnbull NPMLE"
    t = data.lower
    event = data.exact
    return np.sort(t[event]), adjusted_ranks(t, event), "Johnson adjusted median ranks"


def paper_axis(paper: str, f: np.ndarray) -> np.ndarray:
    """F on the probability paper's vertical axis: -ln(1 - F) on exponential paper (a straight line through the
    origin against linear time), else the scale that straightens the distribution (see bounds.linearize)."""
    from .bounds import linearize

    if paper == "exponential":
        return -np.log1p(-np.clip(np.asarray(f, dtype=float), 0.0, 1 - 1e-16))
    return linearize(paper, np.asarray(f, dtype=float))


def weibull_y(p) -> np.ndarray:
    """The Weibull paper's ordinate ln(-ln(1 - F))."""
    return np.log(-np.log1p(-np.asarray(p, dtype=float)))


def finish_probability_plot(fig, ax, paper, *, xlabel: str, ylabel: str, title: str, path: Path) -> Path:
    """Log time axis, unreliability ticks in percent on the paper's ordinate ``paper(F)``, grid, labels and legend;
    the figure saved to ``path`` and closed (the life models' own probability plots)."""
    ax.set_xscale("log")
    ticks = [0.001, 0.01, 0.05, 0.1, 0.2, 0.5, 0.632, 0.9, 0.99]
    ax.set_yticks(paper(ticks))
    ax.set_yticklabels([f"{100 * p:g}" for p in ticks])
    ax.grid(True, which="both", alpha=0.3)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    save_figure(fig, path)
    return path


def probability_plot(fit: Fit, path: Path, *, confidence: float, one_sided: bool = False, time: str = "time",
                     marks: list[tuple[str, float, float]] | None = None, note: str = "") -> Path:
    """The fit on its own paper (Weibull, lognormal, normal, exponential, log-logistic), the data's plotting
    positions and the Fisher-matrix confidence band of F; ``marks``: (label, F, t) points such as B-lives."""
    from .bounds import fisher_reliability

    plt = pyplot()

    dist = fit.distribution
    paper = dist.paper
    loc = dist.loc(fit.params)
    t_pts, f_pts, how = plotting_positions(fit.data)
    log_x = paper not in ("normal", "exponential")
    x_pts = t_pts - loc
    data_hi = float(np.max(np.where(np.isfinite(fit.data.upper), fit.data.upper, fit.data.lower))) - loc
    q_hi = max(data_hi, fit.quantile(0.99) - loc) if np.isfinite(fit.quantile(0.99)) else data_hi
    if log_x:
        positive = x_pts[x_pts > 0]
        lo_x = max(float(np.min(positive)) * 0.3 if positive.size else 1e-3 * q_hi, fit.quantile(1e-3) - loc,
                   1e-9 * q_hi)
        grid = np.geomspace(lo_x, q_hi * 1.5, 240)
    else:
        lo_x = min(float(np.min(x_pts)) if x_pts.size else 0.0, fit.quantile(1e-3) - loc)
        grid = np.linspace(lo_x, q_hi * 1.2, 240)
    r, r_lo, r_hi = fisher_reliability(fit, grid + loc, confidence, one_sided)
    f = 1.0 - r
    keep = (f > 1e-4) & (f < 0.995)
    fig, ax = plt.subplots(figsize=(7, 5.2))
    if x_pts.size:
        ax.plot(x_pts, paper_axis(paper, f_pts), "o", ms=5, label=f"data ({how})")
    ax.plot(grid[keep], paper_axis(paper, f[keep]), "-", color="C3", lw=1.8, label="maximum-likelihood fit")
    band = keep & np.isfinite(r_lo) & np.isfinite(r_hi) & (1 - r_lo < 0.99999) & (1 - r_hi > 1e-6)
    if band.any():
        kind = "one-sided" if one_sided else "two-sided"
        ax.fill_between(grid[band], paper_axis(paper, 1 - r_hi[band]), paper_axis(paper, 1 - r_lo[band]),
                        color="C3", alpha=0.15, label=f"{confidence:.0%} {kind} Fisher-matrix bounds")
    for label, p, t in marks or []:
        ax.plot([t - loc], [paper_axis(paper, np.array(p))], "s", color="k", ms=5)
        ax.annotate(f"{label} = {t:.4g}", (t - loc, float(paper_axis(paper, np.array(p)))),
                    textcoords="offset points", xytext=(6, -12), fontsize=8)
    counts = fit.data.counts()
    censored = ", ".join(f"{v} {k}" for k, v in counts.items() if v and k != "exact")
    if censored:
        ax.plot([], [], " ", label=f"{counts['exact']} exact, {censored}")
    if log_x:
        ax.set_xscale("log")
    ticks = ([0.1, 0.3, 0.5, 0.7, 0.9, 0.99, 0.999] if paper == "exponential" else
             [0.001, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5] + ([0.632] if paper == "weibull" else [0.7]) + [0.9, 0.99])
    ymin, ymax = ax.get_ylim()
    shown = [p for p in ticks if ymin - 0.3 <= float(paper_axis(paper, np.array(p))) <= ymax + 0.3]
    ax.set_yticks([float(paper_axis(paper, np.array(p))) for p in shown])
    ax.set_yticklabels([f"{100 * p:g}" for p in shown])
    ax.set_ylim(ymin, ymax)
    ax.grid(True, which="both", alpha=0.3)
    ax.set_xlabel(time if loc == 0 else f"{time} - location ({loc:.4g})")
    ax.set_ylabel(f"unreliability F (%), {paper} scale")
    params = ", ".join(f"{k} = {v:.4g}" for k, v in fit.named().items())
    ax.set_title(f"{dist.title} MLE: {params}\n{fit.failures} failures of {fit.n} units{note}", fontsize=10)
    ax.legend(loc="upper left", fontsize=8)
    return save_figure(fig, path)

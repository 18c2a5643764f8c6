"""Outcome transforms for the Bayesian optimizers: chosen per output from the data, so that a few extreme
values (a stress of 1e7 next to a few hundred) do not dominate the Gaussian process.

For each output the GP models (an objective or an output an outcome constraint reads), from the values of
the trials that finished:

- ``bilog`` *at the bound* for an output that only a one-output constraint reads (``c0 >= 0``, ``mass_kg <= 5``,
  not an objective): ``sign(y - bound) log(1 + |y - bound|)`` in the output's own units, whatever its values
  (Ax's ``BilogY``, which adds back the bound). What the model must get right about a constraint is which side
  of its bound a design lies on: the map keeps that sign, is nearly linear within a unit of the bound and
  compresses the far values (a slack of 1e7 next to slacks of -1) that would otherwise flatten the GP where
  feasibility is decided. Measured on BoTorch's TensionCompressionString (four such constraints, 30
  evaluations, 5 seeds): median score 0.000 -> 0.737 (Ax 0.766); benchmarks/optimizers.py;

- ``log`` when every value is positive, they span at least ``LOG_DECADES`` decades (``max / min >= 100``) and
  their logarithm is less skewed than they are (a long tail of high values): a quantity that varies
  multiplicatively is smooth in its logarithm (BoTorch's ``Log`` outcome transform). Values that span decades
  only because some approach zero (an objective whose front lies near 0, DTLZ2's) are not logged: in log space
  their smallest values would become the extremes. (Also requiring values beyond the upper far-out fence was
  tried and dropped: BraninCurrin unchanged within noise, heavy-truss without references 0.865 -> 0.812);
- ``bilog`` otherwise, when some value lies beyond Tukey's far-out fences (more than 3 interquartile ranges
  outside the quartiles): ``sign(z) log(1 + |z|)`` (BoTorch's ``Bilog``) of the output centred on its median
  and scaled by its interquartile range, so the bulk stays nearly linear and the tails are compressed;
- ``none`` for benign outputs (and for too few values to judge, or an output in a linear outcome constraint
  of several outputs, whose linearity a nonlinear map would break).

After the transform, values still beyond the far-out fence on the *bad* side (large for a minimized output or
the upper bound of a ``<=`` constraint) are winsorized, for the model fit only, onto the fence; never past a
given reference or constraint bound, so the model keeps seeing which side of them each trial lies on (Ax's
winsorization makes the same choice). Ax's inner fence (1.5 interquartile ranges) was tried twice, for every
output and for objectives of several without a reference short of their Pareto front: each fixed ZDT2 and
cost as much elsewhere (docs/optimizer-benchmark.md).

Every map is monotone increasing: objectives keep their direction and references and constraint bounds are
mapped with the same function, so the acquisition works in the transformed space consistently.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

LOG_DECADES = 2.0
"""Decades (log10 of max/min) a positive output must span to be modelled in log space."""
FAR_OUT = 3.0
"""Tukey's far-out fence, in interquartile ranges beyond the quartiles: beyond it a value is an outlier."""
MIN_VALUES = 8
"""Values needed to judge an output's distribution."""


@dataclass
class OutcomeTransform:
    """The monotone map of one output into the space the GP models, and the reason it was chosen."""

    name: str
    kind: str = "none"  # none | log | bilog
    reason: str = "benign: no value beyond the far-out fences"
    center: float = 0.0
    scale: float = 1.0
    clip_low: float | None = None  # winsorization bounds in the transformed space (model fit only)
    clip_high: float | None = None
    winsorized: int = 0
    _botorch: object = field(default=None, repr=False, compare=False)

    def forward(self, values) -> np.ndarray:
        """The transformed values (monotone increasing), through BoTorch's own outcome transforms."""
        v = np.asarray(values, dtype=float)
        if self.kind == "none":
            return v.copy()
        import torch
        from botorch.models.transforms.outcome import Bilog, Log

        t = torch.as_tensor((v - self.center) / self.scale, dtype=torch.double).reshape(-1, 1)
        tf = Log() if self.kind == "log" else Bilog()
        tf.eval()
        with np.errstate(all="ignore"):
            out = tf(t)[0].reshape(v.shape).numpy()
        return out

    def inverse(self, z):
        """The raw value of transformed values ``z`` (a torch tensor, differentiable): qLogNEHVI measures a
        hypervolume bounded by given references in the user's units, whatever space the GP models."""
        import torch

        if self.kind == "none":
            return z
        if self.kind == "log":
            return torch.exp(z) * self.scale + self.center
        return torch.sign(z) * torch.expm1(z.abs()) * self.scale + self.center

    def for_fit(self, values) -> np.ndarray:
        """The transformed values, winsorized for the model fit."""
        out = self.forward(values)
        lo = -np.inf if self.clip_low is None else self.clip_low
        hi = np.inf if self.clip_high is None else self.clip_high
        return np.clip(out, lo, hi)

    def describe(self) -> str:
        """One line for the log and the trials attrs."""
        text = f"{self.kind} ({self.reason})"
        if self.winsorized:
            text += f", {self.winsorized} value(s) winsorized for the fit"
        return text


def _quartiles(v: np.ndarray) -> tuple[float, float, float]:
    q1, med, q3 = np.percentile(v, [25, 50, 75])
    return float(q1), float(med), float(q3)


def choose(name: str, values, worse: str | None = None, bounds: list[float] | tuple[float, ...] = (),
           linear: bool = False, constraint_only: bool = False) -> OutcomeTransform:
    """The transform of output ``name`` from its observed ``values``.

    ``worse`` is the bad side of the output (``"high"`` for a minimized objective or a ``<=`` constraint,
    ``"low"`` for the opposite, None when unknown); ``bounds`` the references and constraint bounds on it in raw
    units (mapped alike, so log needs them positive too; winsorization never crosses them); ``linear`` says the
    output enters a linear constraint of several outputs; ``constraint_only`` that only one-output constraints
    read it (then one bound means a bilog at that bound).
    """
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    tf = OutcomeTransform(name)
    if linear:
        tf.reason = "in a linear outcome constraint of several outputs: kept linear"
        return tf
    if constraint_only and len(bounds) == 1:
        tf.kind, tf.center = "bilog", float(bounds[0])
        tf.reason = f"constraint: bilog at its bound {tf.center:g} (Ax's BilogY)"
        if len(v) >= MIN_VALUES:
            _winsorize(tf, v, worse, tf.center)
        return tf
    if len(v) < MIN_VALUES:
        tf.reason = f"only {len(v)} values: too few to judge"
        return tf
    lo, hi = float(v.min()), float(v.max())
    if lo > 0 and np.log10(hi / lo) >= LOG_DECADES and all(b > 0 for b in bounds) and _log_reduces_skew(v):
        tf.kind, tf.reason = "log", f"positive, spans {np.log10(hi / lo):.1f} decades, skewed to high values"
    else:
        q1, med, q3 = _quartiles(v)
        iqr = q3 - q1
        if iqr > 0:
            beyond = int(np.sum((v < q1 - FAR_OUT * iqr) | (v > q3 + FAR_OUT * iqr)))
            if beyond:
                tf.kind = "bilog"
                tf.reason = f"heavy tails: {beyond} of {len(v)} values beyond the far-out fences"
                tf.center, tf.scale = med, iqr / 1.349  # the IQR of a normal distribution is 1.349 sigma
    bound = None
    if bounds and worse is not None:
        bound = max(bounds) if worse == "high" else min(bounds)
    _winsorize(tf, v, worse, bound)
    return tf


def _skewness(v: np.ndarray) -> float:
    """Moment skewness (0 for a constant)."""
    d = v - v.mean()
    sd = float(np.sqrt(np.mean(d * d)))
    return float(np.mean(d ** 3)) / sd ** 3 if sd > 0 else 0.0


def _log_reduces_skew(v: np.ndarray) -> bool:
    """True when the logarithm makes positive values less skewed: a long tail of high values (a stress of 1e7
    next to hundreds), not values that merely approach zero (an objective whose front lies near 0: in log space
    its few smallest values would become the extremes and the acquisition would chase them)."""
    return abs(_skewness(np.log(v))) < abs(_skewness(v))


def _winsorize(tf: OutcomeTransform, raw: np.ndarray, worse: str | None, bound: float | None) -> None:
    """Set the fit's clipping bound on the bad side: the far-out fence, never on the good side of ``bound``."""
    if worse is None:
        return
    t = tf.forward(raw)
    q1, _, q3 = _quartiles(t)
    iqr = q3 - q1
    if not iqr > 0:
        return
    b = float(tf.forward(np.array([bound]))[0]) if bound is not None else None
    if b is not None and not np.isfinite(b):
        b = None
    if worse == "high":
        cut = q3 + FAR_OUT * iqr
        if b is not None:
            cut = max(cut, b + 0.5 * iqr)  # values beyond the bound stay beyond it
        n = int(np.sum(t > cut))
        if n:
            tf.clip_high, tf.winsorized = cut, n
    else:
        cut = q1 - FAR_OUT * iqr
        if b is not None:
            cut = min(cut, b - 0.5 * iqr)
        n = int(np.sum(t < cut))
        if n:
            tf.clip_low, tf.winsorized = cut, n


def summary(transforms: list[OutcomeTransform]) -> str:
    """``name: kind (reason); ...`` for the log and attrs."""
    return "; ".join(f"{t.name}: {t.describe()}" for t in transforms)

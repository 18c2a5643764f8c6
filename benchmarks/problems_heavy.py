"""Benchmark problems with heavy-tailed outputs: structural designs whose stress spans 4-5 decades over the box.

Every problem has 3 variables and 2 objectives, both minimized, and a reference point (the worst acceptable
value of each objective, as a user would state it). A cross-section near zero makes the stress explode
(1e7 MPa next to 1e2), so a Gaussian process on the raw, standardized outputs is dominated by the extremes:
the case reflow's outcome transforms (plugins/optimize/transforms.py) are for.

- ``cantilever``: a tapered steel cantilever of rectangular section, tip load 5 kN, length 1 m; width
  ``b_mm`` [2, 60], root height ``h_root_mm`` [2, 120], tip height ``h_tip_mm`` [2, 120]; objectives
  ``mass_kg`` and ``stress_mpa`` (the largest bending stress along the beam, ~30 to 4e6 MPa); also returns
  ``deflection_mm`` (tip deflection) for a constraint. Reference: mass 20 kg, stress 250 MPa (about the yield
  stress of a structural steel).
- ``truss``: the two-bar truss of Deb et al. (cross-sections ``a1_m2``, ``a2_m2`` in [1e-5, 0.01] m2, node
  height ``y_m`` in [1, 3] m, 100 kN load); objectives ``volume_m3`` and ``stress_kpa`` (the larger bar stress,
  ~2e3 to 2.5e7 kPa). Reference: volume 0.05 m3, stress 1e5 kPa (the classic constraint).

Use from a benchmark::

    from problems_heavy import PROBLEMS
    p = PROBLEMS["cantilever"]
    y = p.evaluate(x)                 # x: (n, 3) in p.names order, in the problem's units -> (n, 2) objectives
    hv = p.hypervolume(y)             # hypervolume above p.reference (minimization)
    frac = hv / p.max_hypervolume()   # as a fraction of the best known front (dense grid, cached per process)

The functions ``cantilever`` and ``truss`` also serve as reflow ``python`` evaluators
(``function: problems_heavy:cantilever``): keyword arguments in, a dict of outputs out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

P_N, L_MM, E_MPA, RHO_KG_MM3 = 5000.0, 1000.0, 210_000.0, 7.85e-6
_XS = np.linspace(0.0, 1.0, 101)  # stations along the beam, from the tip (0) to the root (1)


def _out(values: dict[str, np.ndarray]) -> dict[str, np.ndarray | float]:
    return {k: float(v) if np.ndim(v) == 0 else v for k, v in values.items()}


def cantilever(b_mm, h_root_mm, h_tip_mm) -> dict[str, np.ndarray | float]:
    """Mass, largest bending stress and tip deflection of the tapered cantilever (vectorized over arrays)."""
    b, hr, ht = (np.asarray(v, dtype=float)[..., None] for v in (b_mm, h_root_mm, h_tip_mm))
    x = _XS * L_MM  # distance from the tip, where the load acts
    h = ht + (hr - ht) * _XS
    stress = np.max(6.0 * P_N * x / (b * h ** 2), axis=-1)
    inertia = b * h ** 3 / 12.0
    deflection = np.trapezoid(P_N * x ** 2 / (E_MPA * inertia), x, axis=-1)  # unit-load method
    mass = RHO_KG_MM3 * b[..., 0] * L_MM * (hr[..., 0] + ht[..., 0]) / 2.0
    return _out({"mass_kg": mass, "stress_mpa": stress, "deflection_mm": deflection})


def truss(a1_m2, a2_m2, y_m) -> dict[str, np.ndarray | float]:
    """Volume and larger bar stress of the two-bar truss (Deb, Pratap, Agarwal, Meyarivan 2002)."""
    a1, a2, y = (np.asarray(v, dtype=float) for v in (a1_m2, a2_m2, y_m))
    l1, l2 = np.sqrt(16.0 + y ** 2), np.sqrt(1.0 + y ** 2)
    s1, s2 = 20.0 * l1 / (y * a1), 80.0 * l2 / (y * a2)
    return _out({"volume_m3": a1 * l1 + a2 * l2, "stress_kpa": np.maximum(s1, s2)})


@dataclass(frozen=True)
class HeavyProblem:
    """A problem: its box, its minimized objectives with their reference, and a vectorized function."""

    name: str
    bounds: dict[str, tuple[float, float]]
    objectives: tuple[str, ...]
    reference: tuple[float, ...]
    function: Callable[..., dict] = field(repr=False)
    log_scale: tuple[str, ...] = ()  # variables a grid search samples in log space

    @property
    def names(self) -> list[str]:
        return list(self.bounds)

    @property
    def dim(self) -> int:
        return len(self.bounds)

    def evaluate(self, x) -> np.ndarray:
        """(n, 2) objective values of (n, dim) points given in the problem's units, in ``names`` order."""
        x = np.atleast_2d(np.asarray(x, dtype=float))
        out = self.function(**{n: x[:, j] for j, n in enumerate(self.names)})
        return np.column_stack([np.atleast_1d(out[o]) for o in self.objectives])

    def from_unit(self, u) -> np.ndarray:
        """Points of the unit cube mapped onto the box (linearly)."""
        u = np.atleast_2d(np.asarray(u, dtype=float))
        lo = np.array([b[0] for b in self.bounds.values()])
        hi = np.array([b[1] for b in self.bounds.values()])
        return lo + u * (hi - lo)

    def hypervolume(self, y) -> float:
        """Hypervolume (both objectives minimized) of the points ``y`` (n, 2) above the reference."""
        return hypervolume_2d(np.asarray(y, dtype=float), np.asarray(self.reference, dtype=float))

    def max_hypervolume(self) -> float:
        """The best known front's hypervolume: a dense grid (80^3 points) of the box."""
        return self._max_hv

    @cached_property
    def _max_hv(self) -> float:
        axes = []
        for n, (lo, hi) in self.bounds.items():
            axes.append(np.geomspace(lo, hi, 80) if n in self.log_scale else np.linspace(lo, hi, 80))
        grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, self.dim)
        return self.hypervolume(self.evaluate(grid))


def hypervolume_2d(y: np.ndarray, ref: np.ndarray) -> float:
    """Exact 2-objective hypervolume (minimization) by a sweep over the points better than ``ref``."""
    y = y[np.all(np.isfinite(y), axis=1) & np.all(y < ref, axis=1)] if len(y) else y
    if not len(y):
        return 0.0
    y = y[np.lexsort((y[:, 1], y[:, 0]))]
    hv, best = 0.0, ref[1]
    for f1, f2 in y:
        if f2 < best:
            hv += (ref[0] - f1) * (best - f2)
            best = f2
    return float(hv)


PROBLEMS: dict[str, HeavyProblem] = {
    "cantilever": HeavyProblem("cantilever", {"b_mm": (2.0, 60.0), "h_root_mm": (2.0, 120.0),
                                              "h_tip_mm": (2.0, 120.0)},
                               ("mass_kg", "stress_mpa"), (20.0, 250.0), cantilever),
    "truss": HeavyProblem("truss", {"a1_m2": (1e-5, 0.01), "a2_m2": (1e-5, 0.01), "y_m": (1.0, 3.0)},
                          ("volume_m3", "stress_kpa"), (0.05, 1e5), truss, log_scale=("a1_m2", "a2_m2")),
}

"""Problems of the optimizer benchmark (benchmarks/optimizers.py): BoTorch test problems and heavy-tailed ones.

Every problem is stated as minimization: ``objectives`` are minimized, ``constraints`` are outputs that must
be >= 0 (BoTorch's slack convention). ``ref`` is the reference point: the hypervolume reference of a
multi-objective problem (BoTorch's, where it has one) and the threshold given to the tools in the
``ref`` variant; for one objective it is the worst value that counts (the median of the function over 1024
Sobol points, the feasible ones where there are constraints). ``best`` is the maximum hypervolume (BoTorch's
``_max_hv``, or that of a 20 000-evaluation pymoo NSGA-II run, cached in benchmarks/optimizers_fronts.json)
or the optimal value.

Score of a run (``score``): the hypervolume of its feasible points against ``ref`` as a fraction of ``best``;
for one objective the 1-D analogue, (ref - best feasible value) / (ref - optimum), clipped at 0. Noisy
problems are scored on the noise-free values of the evaluated points.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
FRONTS = HERE / "optimizers_fronts.json"


@dataclass
class Param:
    """A continuous parameter [low, high], or a categorical one (``choices``)."""

    name: str
    low: float = 0.0
    high: float = 1.0
    choices: list[str] | None = None


@dataclass
class Problem:
    """A benchmark problem: ``fx`` maps an (n, d) array of inputs (categoricals as choice indices) to (n, k)
    outputs: the objectives first, then the constraint slacks; ``fx_true`` is its noise-free version."""

    name: str
    params: list[Param]
    objectives: list[str]
    constraints: list[str]
    fx: Callable[[np.ndarray], np.ndarray]
    ref: np.ndarray
    best: float = math.nan
    kind: str = "botorch"  # botorch | constrained | mixed | heavy | noisy
    fx_true: Callable[[np.ndarray], np.ndarray] | None = None
    note: str = ""
    outputs: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self.outputs = [*self.objectives, *self.constraints]

    @property
    def multi(self) -> bool:
        return len(self.objectives) > 1

    def row(self, inputs: dict) -> np.ndarray:
        """One input dict (categoricals by name) as a row of ``fx``'s input."""
        return np.array([float(p.choices.index(inputs[p.name])) if p.choices else float(inputs[p.name])
                         for p in self.params])

    def evaluate(self, inputs: dict) -> dict[str, float]:
        """One evaluation as the tools see it (noisy where the problem is)."""
        y = self.fx(self.row(inputs)[None])[0]
        return {n: float(v) for n, v in zip(self.outputs, y, strict=True)}

    def true_values(self, rows: np.ndarray) -> np.ndarray:
        return (self.fx_true or self.fx)(rows)

    def score(self, rows: np.ndarray) -> float:
        """HV fraction (or the 1-D analogue) of the evaluated rows, on noise-free values."""
        if len(rows) == 0:
            return 0.0
        y = self.true_values(np.asarray(rows, dtype=float))
        m = len(self.objectives)
        feasible = np.all(y[:, m:] >= 0, axis=1) if self.constraints else np.ones(len(y), bool)
        f = y[feasible, :m]
        if not self.multi:
            if not len(f):
                return 0.0
            return max(0.0, float(self.ref[0] - f[:, 0].min())) / float(self.ref[0] - self.best)
        return hypervolume(f, self.ref) / self.best


def hypervolume(points: np.ndarray, ref: np.ndarray) -> float:
    """Hypervolume (minimization) of ``points`` dominated region bounded by ``ref``."""
    from pymoo.indicators.hv import HV

    points = np.asarray(points, dtype=float).reshape(-1, len(ref))
    points = points[np.all(points < ref, axis=1)]
    return float(HV(ref_point=np.asarray(ref, dtype=float))(points)) if len(points) else 0.0


def _torch_fx(f, constrained: bool = False, noise_free: bool = False) -> Callable[[np.ndarray], np.ndarray]:
    import torch

    def fx(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            t = torch.as_tensor(np.asarray(x, dtype=float), dtype=torch.double)
            y = f.evaluate_true(t) if noise_free else f(t)
            if y.ndim == 1:
                y = y[:, None]
            if constrained:
                y = torch.cat([y, f.evaluate_slack_true(t)], dim=-1)
        return y.numpy()

    return fx


def _params(bounds, prefix: str = "x") -> list[Param]:
    b = np.asarray(bounds)
    return [Param(f"{prefix}{i}", float(b[0, i]), float(b[1, i])) for i in range(b.shape[1])]


def _mo(cls, **kw) -> Problem:
    f = cls(**kw)
    m, c = f.num_objectives, getattr(f, "num_constraints", 0)
    name = cls.__name__ + (f"-{f.dim}D" if "dim" in kw else "")
    p = Problem(name, _params(f.bounds), [f"f{j}" for j in range(m)], [f"c{j}" for j in range(c)],
                _torch_fx(f, constrained=c > 0), np.asarray(f._ref_point, dtype=float),
                kind="constrained" if c else "botorch")
    p.best = float(getattr(f, "_max_hv", None) or _reference_hv(p))
    return p


def _median_ref(fx: Callable[[np.ndarray], np.ndarray], params: list[Param]) -> float:
    from scipy.stats import qmc

    u = qmc.Sobol(len(params), scramble=True, seed=12345).random(1024)
    lo, hi = np.array([p.low for p in params]), np.array([p.high for p in params])
    y = fx(lo + u * (hi - lo))
    feasible = np.all(y[:, 1:] >= 0, axis=1)  # constrained: the median of the feasible points
    return float(np.median(y[feasible, 0] if feasible.any() else y[:, 0]))


def _so(cls, noise_std: float | None = None, **kw) -> Problem:
    f = cls(**kw)
    c = getattr(f, "num_constraints", 0)
    name = cls.__name__ + (f"-{f.dim}D" if "dim" in kw else "")
    true = _torch_fx(f, constrained=c > 0, noise_free=True)
    fx = true
    if noise_std:
        name = f"noisy-{name}"

        def fx(x: np.ndarray) -> np.ndarray:  # deterministic noise: a function of the point
            y = true(x).copy()
            for i, row in enumerate(np.atleast_2d(x)):
                seed = int.from_bytes(hashlib.sha256(np.ascontiguousarray(row).tobytes()).digest()[:8], "little")
                y[i, 0] += noise_std * np.random.default_rng(seed).standard_normal()
            return y

    params = _params(f.bounds)
    ref = _median_ref(true, params)
    return Problem(name, params, ["f0"], [f"c{j}" for j in range(c)], fx, np.array([ref]),
                   float(f._optimal_value), kind="constrained" if c else ("noisy" if noise_std else "botorch"),
                   fx_true=true if noise_std else None)


def mixed_branin() -> Problem:
    """Branin over (x0, x1) with a categorical 'variant' that rescales and shifts it (optimum 0.397887 for 'b')."""
    import torch
    from botorch.test_functions.synthetic import Branin

    f = Branin()
    scale, shift = np.array([1.6, 1.0, 2.3]), np.array([3.0, 0.0, 1.5])

    def fx(x: np.ndarray) -> np.ndarray:
        x = np.atleast_2d(np.asarray(x, dtype=float))
        k = x[:, 2].round().astype(int)
        y = f.evaluate_true(torch.as_tensor(x[:, :2], dtype=torch.double)).numpy()
        return (y * scale[k] + shift[k])[:, None]

    params = [Param("x0", -5.0, 10.0), Param("x1", 0.0, 15.0), Param("variant", choices=["a", "b", "c"])]
    u = np.random.default_rng(12345).random((1024, 3))
    ref = float(np.median(fx(np.c_[-5 + 15 * u[:, 0], 15 * u[:, 1], np.floor(3 * u[:, 2])])))
    return Problem("mixed-Branin", params, ["f0"], [], fx, np.array([ref]), 0.397887, kind="mixed")


# ---- heavy-tailed structural problems ----------------------------------------------------------------
_P_N, _L_MM, _RHO = 5000.0, 1000.0, 7.85e-6  # tip load (N), length (mm), steel density (kg/mm^3)


def _box_beam(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mass (kg) and bending stress at the root (MPa) of a tip-loaded hollow rectangular steel cantilever
    (width b, height h, wall t in mm; the wall is capped at 0.45 min(b, h))."""
    x = np.atleast_2d(np.asarray(x, dtype=float))
    b, h = x[:, 0], x[:, 1]
    t = np.minimum(x[:, 2], 0.45 * np.minimum(b, h))
    area = b * h - (b - 2 * t) * (h - 2 * t)
    inertia = (b * h**3 - (b - 2 * t) * (h - 2 * t) ** 3) / 12.0
    return area * _L_MM * _RHO, _P_N * _L_MM * (h / 2) / inertia


def cantilever_mo() -> Problem:
    """Heavy-tailed, 3 variables, 2 objectives: mass and root stress of a box cantilever (stress 1e1..1e5 MPa)."""
    params = [Param("b_mm", 10, 100), Param("h_mm", 10, 200), Param("t_mm", 0.1, 10)]

    def fx(x: np.ndarray) -> np.ndarray:
        mass, stress = _box_beam(x)
        return np.c_[mass, stress]

    p = Problem("cantilever-MO", params, ["mass_kg", "stress_mpa"], [], fx, np.array([20.0, 300.0]),
                kind="heavy", note="stress spans 4 decades; reference: 20 kg, 300 MPa")
    p.best = _reference_hv(p)
    return p


def cantilever_so() -> Problem:
    """Heavy-tailed, constrained, 1 objective: the least root stress of a box cantilever under 5 kg."""
    params = [Param("b_mm", 10, 100), Param("h_mm", 10, 200), Param("t_mm", 0.1, 10)]

    def fx(x: np.ndarray) -> np.ndarray:
        mass, stress = _box_beam(x)
        return np.c_[stress, 5.0 - mass]

    p = Problem("cantilever-stress", params, ["stress_mpa"], ["c0"], fx, np.array([_median_ref(fx, params)]),
                kind="heavy", note="stress spans 4 decades; mass <= 5 kg as an outcome constraint")
    p.best = _reference_so(p)
    return p


def _reference_so(p: Problem) -> float:
    """The optimum of a cheap constrained problem by differential evolution with a death penalty (cached)."""

    def compute() -> float:
        from scipy.optimize import differential_evolution

        def obj(x: np.ndarray) -> float:
            y = p.fx_true(x[None])[0] if p.fx_true else p.fx(x[None])[0]
            return float(y[0]) if np.all(y[1:] >= 0) else 1e12

        r = differential_evolution(obj, [(q.low, q.high) for q in p.params], seed=1, maxiter=2000, tol=1e-10,
                                   polish=False)
        return float(r.fun)

    return _cached(p.name, compute)


def _reference_hv(p: Problem) -> float:
    """The HV of a 200 x 100 pymoo NSGA-II run on the noise-free problem: the best front we know (cached)."""

    def compute() -> float:
        from pymoo.algorithms.moo.nsga2 import NSGA2
        from pymoo.core.problem import Problem as PymooProblem
        from pymoo.optimize import minimize

        m, c = len(p.objectives), len(p.constraints)
        fx = p.fx_true or p.fx

        class P(PymooProblem):
            def __init__(self) -> None:
                super().__init__(n_var=len(p.params), n_obj=m, n_ieq_constr=c,
                                 xl=np.array([q.low for q in p.params]), xu=np.array([q.high for q in p.params]))

            def _evaluate(self, x, out, *args, **kwargs):
                y = fx(x)
                out["F"] = y[:, :m]
                if c:
                    out["G"] = -y[:, m:]

        res = minimize(P(), NSGA2(pop_size=100), ("n_gen", 200), seed=1, verbose=False)
        return hypervolume(np.atleast_2d(res.F), p.ref)

    return _cached(p.name, compute)


def _cached(name: str, compute: Callable[[], float]) -> float:
    data = json.loads(FRONTS.read_text()) if FRONTS.exists() else {}
    if name not in data:
        data[name] = compute()
        data = {**(json.loads(FRONTS.read_text()) if FRONTS.exists() else {}), name: data[name]}
        FRONTS.write_text(json.dumps(data, indent=1))
    return float(data[name])


def _heavy_from_15a() -> dict[str, Callable[[], Problem]]:
    """The problems of benchmarks/problems_heavy.py (``heavy-cantilever``, ``heavy-truss``) where that file
    exists: its box, objectives and reference; the best known HV is the larger of its dense-grid front and
    our NSGA-II front."""
    try:
        import problems_heavy  # type: ignore[import-not-found]
    except ImportError:
        return {}

    def adapt(hp) -> Problem:
        p = Problem(f"heavy-{hp.name}", [Param(n, float(lo), float(hi)) for n, (lo, hi) in hp.bounds.items()],
                    list(hp.objectives), [], hp.evaluate, np.asarray(hp.reference, dtype=float), kind="heavy",
                    note="benchmarks/problems_heavy.py")
        p.best = max(float(hp.max_hypervolume()), _reference_hv(p))
        return p

    return {f"heavy-{name}": functools.partial(adapt, hp) for name, hp in problems_heavy.PROBLEMS.items()}


def _registry() -> dict[str, Callable[[], Problem]]:
    from botorch.test_functions import multi_objective as mo
    from botorch.test_functions import synthetic as so

    return {
        "branincurrin": lambda: _mo(mo.BraninCurrin),
        "dtlz2": lambda: _mo(mo.DTLZ2, dim=6, num_objectives=2),
        "zdt1": lambda: _mo(mo.ZDT1, dim=6, num_objectives=2),
        "zdt2": lambda: _mo(mo.ZDT2, dim=6, num_objectives=2),
        "zdt3": lambda: _mo(mo.ZDT3, dim=6, num_objectives=2),
        "vehiclesafety": lambda: _mo(mo.VehicleSafety),
        "carsideimpact": lambda: _mo(mo.CarSideImpact),
        "penicillin": lambda: _mo(mo.Penicillin),
        "discbrake": lambda: _mo(mo.DiscBrake),
        "weldedbeam": lambda: _mo(mo.WeldedBeam),
        "branin": lambda: _so(so.Branin),
        "hartmann6": lambda: _so(so.Hartmann, dim=6),
        "noisy-ackley": lambda: _so(so.Ackley, noise_std=1.0, dim=6),
        "tension-string": lambda: _so(so.TensionCompressionString),
        "mixed-branin": mixed_branin,
        "cantilever-mo": cantilever_mo,
        "cantilever-stress": cantilever_so,
        **_heavy_from_15a(),
    }


PROBLEM_NAMES = ["branincurrin", "dtlz2", "zdt1", "zdt2", "zdt3", "vehiclesafety", "carsideimpact", "penicillin",
                 "discbrake", "weldedbeam", "branin", "hartmann6", "noisy-ackley", "tension-string", "mixed-branin",
                 "cantilever-mo", "cantilever-stress", "heavy-cantilever", "heavy-truss"]


@functools.cache
def get_problem(name: str) -> Problem:
    """The problem ``name`` (built once per process)."""
    problems = _registry()
    if name not in problems:
        raise KeyError(f"unknown problem {name!r}; known: {', '.join(problems)}")
    return problems[name]()


def all_problem_names() -> list[str]:
    return list(_registry())

"""Space-filling points for an optimization problem, with or without linear parameter constraints.

Without constraints the registered design (sobol, lhs, random, ...) draws the points. With linear
constraints (a composition that sums to one, ``a + b <= 0.8``) a box design would miss the feasible set,
so the points come from BoTorch's hit-and-run sampler of the polytope (uniform inside it), thinned
greedily to the ``n`` points farthest from each other (maximin), which keeps them space-filling.
"""

from __future__ import annotations

import numpy as np
from reflow.components import Design
from reflow.problem import OptimizationProblem


def space_filling(problem: OptimizationProblem, n: int, seed: int, design: Design | None = None,
                  center: bool = False) -> np.ndarray:
    """``n`` points of the unit encoding (n, d) that fill the feasible set of ``problem``.

    ``center``: the first point is the centre of the space (projected onto the linear constraints), the
    classic centre run of a design of experiments; the others fill the space around it.
    """
    if n <= 0:
        return np.zeros((0, problem.dim))
    rng = np.random.default_rng(seed)
    if not problem.unit_constraints():
        if design is None:  # a scrambled Sobol sequence
            import warnings

            from scipy.stats import qmc

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # sizes that are not powers of two are fine
                points = qmc.Sobol(problem.dim, scramble=True, seed=rng).random(n)
        else:
            values = design.generate(problem.space, rng)
            points = problem.encode({name: values[name].values for name in problem.space.names})[:n]
    else:
        pool = polytope_samples(problem, max(16 * n, 256), seed)
        points = maximin_subset(pool, n, rng)
    if center:
        points = np.vstack([snap_to_constraints(problem, np.full((1, problem.dim), 0.5)), points[:n - 1]])
    return points


def polytope_samples(problem: OptimizationProblem, n: int, seed: int) -> np.ndarray:
    """``n`` points uniform in {x in [0, 1]^d: the linear constraints hold} (hit-and-run)."""
    import torch
    from reflow.device import quiet_torch_imports

    quiet_torch_imports()
    from botorch.utils.sampling import get_polytope_samples

    bounds = torch.stack([torch.zeros(problem.dim), torch.ones(problem.dim)]).double()
    ineq, eq = botorch_constraints(problem, torch.device("cpu"))
    points = get_polytope_samples(n, bounds, inequality_constraints=ineq or None, equality_constraints=eq or None,
                                  seed=seed, n_burnin=500, n_thinning=max(4, 2 * problem.dim))
    return np.clip(points.cpu().numpy(), 0.0, 1.0)


def botorch_constraints(problem: OptimizationProblem, device) -> tuple[list, list]:
    """The unit constraints as BoTorch ``(indices, coefficients, rhs)`` tuples: (inequalities, equalities)."""
    import torch

    ineq, eq = [], []
    for c in problem.unit_constraints():
        item = (torch.tensor(c.indices, dtype=torch.long, device=device),
                torch.tensor(c.coefficients, dtype=torch.double, device=device), float(c.rhs))
        (eq if c.equality else ineq).append(item)
    return ineq, eq


def maximin_subset(pool: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Greedily pick ``n`` rows of ``pool`` that are far from each other (each new one the farthest)."""
    if n >= len(pool):
        return pool
    chosen = [int(rng.integers(len(pool)))]
    dist = np.linalg.norm(pool - pool[chosen[0]], axis=1)
    for _ in range(n - 1):
        k = int(np.argmax(dist))
        chosen.append(k)
        dist = np.minimum(dist, np.linalg.norm(pool - pool[k], axis=1))
    return pool[chosen]


def snap_to_constraints(problem: OptimizationProblem, unit: np.ndarray) -> np.ndarray:
    """The nearest points (least squares) in the box that meet the linear constraints, for repairs.

    Each row is projected with SLSQP; a row that already satisfies everything is returned unchanged.
    """
    from scipy.optimize import minimize

    constraints = problem.unit_constraints()
    unit = np.clip(np.atleast_2d(np.asarray(unit, dtype=float)), 0.0, 1.0)
    if not constraints:
        return unit
    out = unit.copy()
    bad = ~problem.parameters_feasible(unit, tol=1e-9)
    cons = [{"type": "eq" if c.equality else "ineq", "fun": (lambda x, c=c: c.residual(x)[0])} for c in constraints]
    for i in np.flatnonzero(bad):
        x0 = unit[i]
        res = minimize(lambda x, x0=x0: float(np.sum((x - x0) ** 2)), x0, jac=lambda x, x0=x0: 2 * (x - x0),
                       bounds=[(0.0, 1.0)] * problem.dim, constraints=cons, method="SLSQP",
                       options={"ftol": 1e-12, "maxiter": 200})
        out[i] = np.clip(res.x, 0.0, 1.0)
    return out

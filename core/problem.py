"""An optimization problem: the space, the objectives, outcome constraints and linear parameter constraints.

Optimizers work in the *unit encoding* of the space: one column per free parameter, in [0, 1].
Continuous parameters map linearly (log-scaled ones in log space), integers map onto their levels and
categoricals onto their choice index. :meth:`OptimizationProblem.decode` turns unit points back into
parameter values; :meth:`OptimizationProblem.encode` does the reverse for stored trials.

Linear parameter constraints (``dgeba + tgddm + dds + pes == 1``) are restated on the unit encoding by
:meth:`OptimizationProblem.unit_constraints` in the ``(indices, coefficients, rhs)`` form of BoTorch's
``optimize_acqf`` (meaning ``sum(coefficients * x[indices]) >= rhs`` or ``== rhs``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from reflow.errors import UserInputError
from reflow.expressions import LinearConstraint
from reflow.tables import plain

if TYPE_CHECKING:
    import xarray as xr
    from reflow.space import Parameter, Space


@dataclass(frozen=True)
class Objective:
    """One objective: a metric to minimize or maximize, with an optional reference (worst acceptable) value."""

    name: str
    goal: Literal["min", "max"]
    reference: float | None = None

    @property
    def sign(self) -> float:
        """+1 for max, -1 for min: ``sign * value`` is always to be maximized."""
        return 1.0 if self.goal == "max" else -1.0


@dataclass(frozen=True)
class UnitConstraint:
    """``sum(coefficients * x[indices]) OP rhs`` on the unit encoding, OP one of ``>=`` and ``==``."""

    indices: tuple[int, ...]
    coefficients: tuple[float, ...]
    rhs: float
    equality: bool
    text: str

    def residual(self, unit: np.ndarray) -> np.ndarray:
        """lhs - rhs for every row of ``unit`` (n, d): >= 0 (or == 0) where the constraint holds."""
        unit = np.atleast_2d(unit)
        return unit[:, list(self.indices)] @ np.asarray(self.coefficients) - self.rhs


@dataclass
class OptimizationProblem:
    """What an optimizer is asked to solve. Built by the ``optimize`` task and handed to ``Optimizer.setup``."""

    space: Space
    objectives: list[Objective]
    outcome_constraints: list[LinearConstraint] = field(default_factory=list)
    parameter_constraints: list[LinearConstraint] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.objectives:
            raise UserInputError("an optimization needs at least one objective")
        names = set(self.space.names)
        for c in self.parameter_constraints:
            for n in c.names:
                p = self.space.by_name.get(n)
                if p is None:
                    raise UserInputError(f"constraint {c.text!r}: {n!r} is not a parameter of the space")
                if p.kind not in ("continuous", "fixed") or p.log:
                    raise UserInputError(f"constraint {c.text!r}: {n!r} is {p.kind}{' (log)' if p.log else ''}; "
                                         "linear parameter constraints take continuous, linear-scaled parameters")
        for c in self.outcome_constraints:
            if any(n in names for n in c.names):
                raise UserInputError(f"constraint {c.text!r} mixes parameters and outputs")
        if len({o.name for o in self.objectives}) != len(self.objectives):
            raise UserInputError("an objective is listed twice")

    # ---- the unit encoding -------------------------------------------------------------------------
    @property
    def free(self) -> list[Parameter]:
        return self.space.free

    @property
    def dim(self) -> int:
        return len(self.free)

    @property
    def categorical_dims(self) -> list[int]:
        return [j for j, p in enumerate(self.free) if p.kind == "categorical"]

    @property
    def metric_names(self) -> list[str]:
        """Objective names, then the outputs the outcome constraints read (each once)."""
        names = [o.name for o in self.objectives]
        for c in self.outcome_constraints:
            names += [n for n in c.names if n not in names]
        return names

    def decode(self, unit: np.ndarray) -> dict[str, np.ndarray]:
        """Unit points (n, d) -> every parameter's values (categorical choices by index, integers rounded)."""
        unit = np.atleast_2d(np.asarray(unit, dtype=float))
        fixed: list[np.ndarray] = []
        for j, p in enumerate(self.free):
            col = np.clip(unit[:, j], 0.0, 1.0)
            if p.kind == "categorical":  # index k sits at k / (K - 1); map back to the bin of from_unit
                k = np.rint(col * (len(p.choices) - 1))
                col = (k + 0.5) / len(p.choices)
            elif p.kind == "integer" and not p.log:
                k = np.rint(p.low + col * (p.high - p.low))
                col = (k - p.low + 0.5) / (p.high - p.low + 1)
            fixed.append(col)
        return self.space.from_unit(np.column_stack(fixed) if fixed else np.zeros((unit.shape[0], 0)))

    def encode(self, values: Any) -> np.ndarray:
        """Parameter values (a mapping or Dataset of columns) -> unit points (n, d)."""
        cols = []
        for p in self.free:
            v = np.asarray(values[p.name])
            if p.kind == "categorical":
                lookup = {str(c): i for i, c in enumerate(p.choices)}
                for i, c in enumerate(p.choices):  # numeric choices come back from a Dataset as floats (2 -> 2.0)
                    if isinstance(c, (int, float)):
                        lookup.setdefault(str(float(c)), i)
                idx = np.array([lookup.get(str(x), -1) for x in v], dtype=float)
                if (idx < 0).any():
                    bad = [plain(x) for x in v if str(x) not in lookup][0]
                    raise UserInputError(f"{p.name}: {bad!r} is not one of {list(p.choices)}")
                cols.append(idx / max(len(p.choices) - 1, 1))
            elif p.log:
                x = np.log(v.astype(float))
                hi = math.log(p.high + 1) - 1e-12 if p.kind == "integer" else math.log(p.high)
                cols.append((x - math.log(p.low)) / (hi - math.log(p.low)))
            else:
                cols.append((v.astype(float) - p.low) / (p.high - p.low))
        n = len(next(iter(values.values())) if isinstance(values, dict) else values[self.space.names[0]])
        return np.column_stack(cols) if cols else np.zeros((n, 0))

    def unit_constraints(self) -> list[UnitConstraint]:
        """The linear parameter constraints restated on the unit encoding, each as ``>=`` or ``==``."""
        index = {p.name: j for j, p in enumerate(self.free)}
        out: list[UnitConstraint] = []
        for c in self.parameter_constraints:
            idx, coef, rhs = [], [], c.rhs
            for name, a in c.coefficients.items():
                p = self.space.by_name[name]
                if p.kind == "fixed":
                    rhs -= a * float(p.value)
                    continue
                idx.append(index[name])
                coef.append(a * (p.high - p.low))
                rhs -= a * p.low
            if not idx:
                continue
            if c.op in ("<=", "<"):  # a.x <= b  <=>  -a.x >= -b
                coef, rhs = [-a for a in coef], -rhs
            out.append(UnitConstraint(tuple(idx), tuple(coef), float(rhs), c.op == "==", c.text))
        return out

    def parameters_feasible(self, unit: np.ndarray, tol: float = 1e-6) -> np.ndarray:
        """Which unit points satisfy every linear parameter constraint (within ``tol``)."""
        unit = np.atleast_2d(unit)
        ok = np.ones(unit.shape[0], dtype=bool)
        for c in self.unit_constraints():
            r = c.residual(unit)
            ok &= (np.abs(r) <= tol) if c.equality else (r >= -tol)
        return ok

    # ---- outcomes ------------------------------------------------------------------------------
    def objective_values(self, trials: xr.Dataset) -> np.ndarray:
        """(n, m) objective values of ``trials``, signed so that larger is better."""
        return np.column_stack([o.sign * np.asarray(trials[o.name].values, dtype=float) for o in self.objectives])

    def outcome_slack(self, trials: xr.Dataset) -> np.ndarray:
        """(n, k) slack of each outcome constraint, >= 0 where it holds."""
        if not self.outcome_constraints:
            return np.zeros((trials.sizes["trial"], 0))
        return np.column_stack([c.slack({n: trials[n].values for n in c.names}) for c in self.outcome_constraints])

    def feasible(self, trials: xr.Dataset) -> np.ndarray:
        """Trials that finished and meet every outcome constraint."""
        ok = np.asarray(trials["status"].values == "ok") if "status" in trials else np.ones(trials.sizes["trial"],
                                                                                               bool)
        if self.outcome_constraints and ok.any():
            slack = self.outcome_slack(trials)
            ok &= np.all(np.nan_to_num(slack, nan=-1.0) >= 0, axis=1)
        return ok

"""Design spaces: continuous, integer, categorical and fixed parameters.

In a study::

    space:
      die_thickness_mm: {low: 0.1, high: 0.8}              # continuous
      bumps: {low: 4, high: 12, type: int}                  # integer
      pitch_um: {low: 50, high: 400, log: true, units: um}  # continuous, log-scaled
      underfill: {choices: [UF-A, UF-B, UF-C]}              # categorical
      delta_t_k: {value: -200}                              # fixed
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, model_validator
from reflow.yamlio import brief

VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
"""A factor's name: usable in constraints (``a + b <= 1``) and stage values (``${stage.output.name}``)."""


def variable_name_problem(name: Any) -> str | None:
    """Why ``name`` cannot name a variable (matched whole, so a trailing newline fails), or None."""
    if isinstance(name, str) and VARIABLE_NAME.fullmatch(name):
        return None
    return f"variable names use letters, digits and '_' and start with a letter or '_', got {name!r}"


MAX_BOUND = 1e30
"""Largest magnitude of a float bound: beyond it ``high - low`` and the unit mapping lose all precision."""
MAX_INT_BOUND = 2**53
"""Largest magnitude of an integer bound: every integer up to it is exact as a float (and fits int64)."""
MAX_DESIGN_BYTES = 2**30
"""Memory a design and its trial records may take (1 GiB): far beyond any set of points that can be evaluated."""


def _finite_number(value: Any) -> bool:
    """Text, a bool, or a number within +-:data:`MAX_BOUND` (a 400-digit int does not even convert to float)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return True
    return abs(value) <= MAX_BOUND if isinstance(value, int) else math.isfinite(value) and abs(value) <= MAX_BOUND


def format_bytes(n: float) -> str:
    """``31_999_999_999_999`` -> ``29.1 TiB``."""
    if n >= 1024**6 * 10**6:  # beyond what a float holds or anyone reads as PiB
        return f"10^{len(str(int(n))) - 1} bytes"
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def design_bytes(points: int, space: Space) -> int:
    """An estimate of the memory ``points`` design points take: the unit-cube array (one float per free
    factor), the values and their dataset copy (two per factor) and a trial record (about eight more)."""
    return int(points) * 8 * (len(space.free) + 2 * len(space.parameters) + 8)


def design_size_problem(field: str, points: int, space: Space) -> str | None:
    """Why ``points`` design points over ``space`` cannot run (their memory estimate is over
    :data:`MAX_DESIGN_BYTES`), or None. Checked at validation, so the run does not fail on a MemoryError.

    ``field`` names what sets the number (``samples``) or, ending in "design", the design that has it."""
    need = design_bytes(points, space)
    if need <= MAX_DESIGN_BYTES:
        return None
    per = design_bytes(1, space)
    subject = f"{field} has {points:,} points, which" if field.endswith("design") else f"{field} = {points:,} points"
    return (f"{subject} need about {format_bytes(need)} of memory for the design and its "
            f"trials ({per} bytes a point with {len(space.parameters)} factors); at most "
            f"{MAX_DESIGN_BYTES // per:,} points fit in the {format_bytes(MAX_DESIGN_BYTES)} allowed")


class ParameterSpec(BaseModel):
    """One factor of a design space, as written in YAML."""

    model_config = ConfigDict(extra="forbid")

    low: float | None = None
    high: float | None = None
    type: Literal["float", "int"] | None = None
    log: bool = False
    choices: list[Any] | None = None
    value: Any = None
    units: str = ""
    description: str = ""

    @model_validator(mode="after")
    def _consistent(self) -> ParameterSpec:
        ranged = self.low is not None or self.high is not None
        given = [k for k, on in (("low/high", ranged), ("choices", self.choices is not None),
                                 ("value", self.value is not None)) if on]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of {low: .., high: ..} (a range), {choices: [..]} or {value: ..} (fixed); "
                f"got {', '.join(given) if given else 'none'}"
            )
        if ranged:
            if self.low is None or self.high is None:
                raise ValueError("a range needs both low and high")
            if not (math.isfinite(self.low) and math.isfinite(self.high)):
                raise ValueError(f"bounds must be finite numbers, got low={self.low}, high={self.high}")
            limit = MAX_INT_BOUND if self.type == "int" else MAX_BOUND
            if max(abs(self.low), abs(self.high)) > limit:
                kind = "integer bounds" if self.type == "int" else "bounds"
                raise ValueError(f"{kind} must lie within +-{limit:.6g} (rescale the units: mm, GPa, ...), "
                                 f"got low={self.low:g}, high={self.high:g}")
            if self.low >= self.high:
                raise ValueError(f"low must be below high, got low={self.low:g} >= high={self.high:g}")
            if self.log and self.low <= 0:
                raise ValueError(f"a log-scaled range needs low > 0, got low={self.low:g}")
            if self.type == "int" and (self.low != int(self.low) or self.high != int(self.high)):
                raise ValueError(f"an integer range needs whole bounds, got {self.low:g}..{self.high:g}")
        elif self.type is not None or self.log:
            raise ValueError("'type' and 'log' apply to ranges (low/high) only")
        if self.value is not None and not _finite_number(self.value):
            raise ValueError(f"a fixed value must be a text or a finite number within +-{MAX_BOUND:.6g}, "
                             f"got {brief(self.value)}")
        if self.choices is not None:
            bad = [c for c in self.choices if not _finite_number(c)]
            if bad:
                raise ValueError(f"choices must be texts or finite numbers within +-{MAX_BOUND:.6g}, "
                                 f"got {brief(bad[0])}")
            if len(self.choices) < 2:
                raise ValueError(f"choices needs at least two values, got {brief(self.choices)}")
            if len({repr(c) for c in self.choices}) != len(self.choices):
                raise ValueError(f"choices has duplicates: {brief(self.choices)}")
        return self


@dataclass(frozen=True)
class Parameter:
    """A validated factor; ``kind`` is continuous, integer, categorical or fixed."""

    name: str
    kind: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple[Any, ...] = ()
    value: Any = None
    units: str = ""

    @classmethod
    def from_spec(cls, name: str, spec: ParameterSpec) -> Parameter:
        if spec.choices is not None:
            return cls(name, "categorical", choices=tuple(spec.choices), units=spec.units)
        if spec.value is not None:
            return cls(name, "fixed", value=spec.value, units=spec.units)
        kind = "integer" if spec.type == "int" else "continuous"
        return cls(name, kind, low=spec.low, high=spec.high, log=spec.log, units=spec.units)

    @property
    def levels(self) -> int | None:
        """Number of distinct values for discrete factors (None for continuous)."""
        if self.kind == "categorical":
            return len(self.choices)
        if self.kind == "integer":
            return int(self.high) - int(self.low) + 1
        if self.kind == "fixed":
            return 1
        return None

    def from_unit(self, u: np.ndarray) -> np.ndarray:
        """Map points of [0, 1] onto this factor's values."""
        u = np.clip(np.asarray(u, dtype=float), 0.0, 1.0)
        if self.kind == "continuous":
            if self.log:
                lo, hi = math.log(self.low), math.log(self.high)
                return np.exp(lo + u * (hi - lo))
            return self.low + u * (self.high - self.low)
        if self.kind == "integer":
            if self.log:  # every integer k in [low, high] gets the log-width log((k+1)/k)
                lo, hi = math.log(self.low), math.log(self.high + 1)
                return np.clip(np.floor(np.exp(lo + u * (hi - lo))), self.low, self.high).astype(int)
            n = self.levels
            return (int(self.low) + np.minimum(np.floor(u * n), n - 1)).astype(int)
        if self.kind == "categorical":
            idx = np.minimum(np.floor(u * len(self.choices)), len(self.choices) - 1).astype(int)
            return self._choice_array()[idx]
        if isinstance(self.value, str):
            return np.full(u.shape[0], self.value, dtype=object)
        return np.full(u.shape[0], self.value, dtype=float)

    def as_choice(self, value: Any) -> Any:
        """A categorical value as the study wrote the choice (a Dataset hands numeric choices back as floats);
        other kinds as given."""
        if self.kind != "categorical":
            return value
        return next((c for c in self.choices if c == value or str(c) == str(value)), value)

    def _choice_array(self) -> np.ndarray:
        """The choices as an object array, indexed by level (a gather, not a Python loop per point)."""
        out = np.empty(len(self.choices), dtype=object)
        for i, choice in enumerate(self.choices):  # element by element: a list choice stays one element
            out[i] = choice
        return out

    def from_level(self, index: np.ndarray, n_levels: int) -> np.ndarray:
        """Map level indices 0..n_levels-1 (factorial designs) onto values spread over the factor."""
        index = np.asarray(index, dtype=float)
        if self.kind == "categorical" or self.kind == "integer":
            n = self.levels
            if n_levels != n and self.kind == "integer" and self.log:  # geometric levels
                t = index / max(n_levels - 1, 1)
                value = np.exp(math.log(self.low) + t * (math.log(self.high) - math.log(self.low)))
                return np.clip(np.round(value), self.low, self.high).astype(int)
            if n_levels != n:
                pos = np.round(index * (n - 1) / max(n_levels - 1, 1)).astype(int)
            else:
                pos = index.astype(int)
            if self.kind == "categorical":
                return self._choice_array()[pos]
            return int(self.low) + pos
        return self.from_unit(index / max(n_levels - 1, 1))

    def contains(self, value: Any) -> bool:
        if self.kind == "categorical":
            return value in self.choices
        if self.kind == "fixed":
            return value == self.value
        try:
            v = float(value)
        except (TypeError, ValueError):
            return False
        if self.kind == "integer" and v != int(v):
            return False
        return self.low - 1e-12 <= v <= self.high + 1e-12


class Space:
    """An ordered set of parameters."""

    def __init__(self, parameters: list[Parameter]):
        self.parameters = list(parameters)
        self.by_name = {p.name: p for p in self.parameters}

    @classmethod
    def from_specs(cls, specs: dict[str, ParameterSpec]) -> Space:
        return cls([Parameter.from_spec(n, s) for n, s in specs.items()])

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.parameters]

    @property
    def free(self) -> list[Parameter]:
        """Parameters a design varies (everything but fixed ones)."""
        return [p for p in self.parameters if p.kind != "fixed"]

    def __len__(self) -> int:
        return len(self.parameters)

    def from_unit(self, u: np.ndarray) -> dict[str, np.ndarray]:
        """Points in the unit cube of the free parameters (n, d) -> values of every parameter."""
        u = np.atleast_2d(np.asarray(u, dtype=float))
        free = self.free
        if u.shape[1] != len(free):
            raise ValueError(f"expected {len(free)} columns, got {u.shape[1]}")
        out: dict[str, np.ndarray] = {}
        j = 0
        for p in self.parameters:
            if p.kind == "fixed":
                out[p.name] = p.from_unit(np.zeros(u.shape[0]))
            else:
                out[p.name] = p.from_unit(u[:, j])
                j += 1
        return out

    def to_dataset(self, values: dict[str, np.ndarray], dim: str = "trial"):
        """Design values -> Dataset on ``dim`` with each parameter's units in attrs."""
        import xarray as xr

        data_vars = {}
        for p in self.parameters:
            arr = np.asarray(values[p.name])
            if arr.dtype == object:
                arr = arr.astype(str) if all(isinstance(v, str) for v in arr) else arr.astype(float)
            data_vars[p.name] = xr.Variable((dim,), arr, attrs={"units": p.units, "kind": p.kind})
        n = len(next(iter(values.values()))) if values else 0
        return xr.Dataset(data_vars, coords={dim: np.arange(n)})

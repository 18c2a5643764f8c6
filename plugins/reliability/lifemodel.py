"""What the life models share beyond reading the data: their inputs and their outputs.

Inputs: a model of one population takes no covariates (:func:`no_covariates`), Cox takes every numeric
variable by default (:func:`numeric_covariates`), and predictions read numeric columns with clear errors
(:func:`column`). Outputs: named after the time variable (``b10_cycles``, ``median_cycles``,
:func:`life_output_name`), each with its ``_lower``/``_upper`` confidence bounds (:func:`with_bounds`), on the
row dim of the data predicted (:func:`output_dim`); :class:`BLifeOutputs` gives the models that report B-lives
their targets, summaries and prediction columns.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from pydantic import Field, field_validator
from reflow.errors import DataError, UserInputError
from reflow.tables import row_dim, row_variables

from .lifedata import LifeParams, has_variable, variable_list


def life_output_name(kind: str, time: str, p: float | None = None) -> str:
    """``b10_cycles`` (B-life at p percent), ``median_cycles``: outputs named after the time variable."""
    if kind == "b":
        return f"b{p:g}".replace(".", "p").replace("-", "m") + f"_{time}"
    return f"{kind}_{time}"


def b_lives_field(description: str = "B-lives to report (percent)") -> Any:
    """The ``b_lives`` parameter of the models that report B-lives: percent of units failed, [1, 10] by default."""
    return Field(default_factory=lambda: [1.0, 10.0], description=description)


def b_lives_validator(*, list_bad: bool = False) -> Any:
    """A ``field_validator("b_lives")`` body: each B-life a percentage strictly between 0 and 100, at least one,
    duplicates dropped. ``list_bad``: the message names only the bad values (and says so apart when none is given)."""

    def _percent(cls, value: list[float]) -> list[float]:
        bad = [p for p in value if not 0.0 < p < 100.0]
        if list_bad:
            if bad:
                raise ValueError(f"B-lives are percentages failed, between 0 and 100 (exclusive); got {bad}")
            if not value:
                raise ValueError("give at least one B-life, e.g. [10]")
        elif bad or not value:
            raise ValueError(f"B-lives are percentages failed, between 0 and 100 (exclusive); got {value}")
        return list(dict.fromkeys(value))

    return field_validator("b_lives")(_percent)


def bounded_values(values: dict[str, tuple[float, float, float]]) -> dict[str, float]:
    """``{name: (value, lower, upper)}`` as the flat ``name``, ``name_lower``, ``name_upper`` of a summary."""
    out: dict[str, float] = {}
    for name, (value, lo, hi) in values.items():
        out.update({name: value, f"{name}_lower": lo, f"{name}_upper": hi})
    return out


def finite_values(out: dict) -> dict:
    """A summary without its NaN and infinite floats (a bound that could not be computed is left out)."""
    return {k: v for k, v in out.items() if not (isinstance(v, float) and not math.isfinite(v))}


class BLifeOutputs:
    """Mixin for the life models that report B-lives ``b<p>_<time>`` (with bounds) from ``params.b_lives``; the
    model gives ``b_life(percent) -> (value, lower, upper)`` (and ``reliability(t)`` for the time columns)."""

    params: LifeParams
    features: list[str]
    targets: list[str]

    def _b_names(self) -> list[str]:
        return [life_output_name("b", self.params.time, p) for p in self.params.b_lives]

    def outputs(self) -> list[str]:
        return with_bounds(self._b_names())

    def _z(self) -> float:
        from scipy.stats import norm

        c = self.params.confidence
        return float(norm.ppf(c if self.params.one_sided else 0.5 + c / 2.0))

    def _set_targets(self, who: str) -> list[str]:
        """The configured targets (every B-life with its bounds if none), checked against the outputs."""
        targets = list(self.targets) or with_bounds(self._b_names())
        check_targets(targets, self.outputs(), who)
        self.targets = targets
        return targets

    def _set_targets_and_time(self, who: str) -> None:
        """The targets as :meth:`_set_targets`; the time becomes the one input when the reliability or the
        unreliability at it is asked for (the models of one population without covariates)."""
        targets = self._set_targets(who)
        at_time = any(t.split("_")[0] in ("reliability", "unreliability") for t in targets)
        self.features = [self.params.time] if at_time else []

    def b_life_summary(self) -> dict[str, float]:
        """Each B-life with its bounds, as summary entries."""
        return bounded_values({name: self.b_life(p)  # type: ignore[attr-defined]
                               for p, name in zip(self.params.b_lives, self._b_names(), strict=True)})

    def b_life_columns(self, dim: str, n: int) -> dict[str, tuple[str, np.ndarray]]:
        """Each B-life's ``_mean``/``_lower``/``_upper`` prediction, the same on every one of ``n`` rows."""
        out: dict[str, tuple[str, np.ndarray]] = {}
        for p, name in zip(self.params.b_lives, self._b_names(), strict=True):
            for suffix, value in zip(("_mean", "_lower", "_upper"), self.b_life(p), strict=True):  # type: ignore[attr-defined]
                out[name + suffix] = (dim, np.full(n, value))
        return out

    def b_life_dataset(self, data: Any) -> Any:
        """The predictions of a one-population model without inputs: each B-life with its bounds on every row."""
        import xarray as xr

        dim, n = output_dim(data, None)
        coords = {dim: data[dim].values} if dim in data.coords else None
        return xr.Dataset(self.b_life_columns(dim, n), coords=coords)

    def reliability_columns(self, data: Any, dim: str, who: str) -> dict[str, tuple[str, np.ndarray]]:
        """Reliability and unreliability (with bounds) at each row's time, where the data has the time along
        ``dim``; a model trained to predict them (features = [time]) errors when the time is missing."""
        time = self.params.time
        has_time = has_variable(data, time)
        if self.features and not has_time:
            column(data, time, who, "the time variable")  # raises, naming it
        if not (has_time and data[time].dims == (dim,)):
            return {}
        r, lo, hi = self.reliability(column(data, time, who, "the time variable"))  # type: ignore[attr-defined]
        return {"reliability_mean": (dim, r), "reliability_lower": (dim, lo), "reliability_upper": (dim, hi),
                "unreliability_mean": (dim, 1.0 - r), "unreliability_lower": (dim, 1.0 - hi),
                "unreliability_upper": (dim, 1.0 - lo)}


def output_dim(data: Any, name: str | None) -> tuple[str, int]:
    """The dim and length predictions follow: ``name``'s dim if present, else trial/sample/the first dim."""
    if name is not None and has_variable(data, name) and data[name].ndim == 1:
        return str(data[name].dims[0]), int(data[name].size)
    if not data.dims:
        return "sample", 1
    dim = str(row_dim(data, prefer=("trial", "sample")))
    return dim, int(data.sizes[dim])


def column(data: Any, name: str, who: str, what: str) -> np.ndarray:
    """A numeric input variable for predictions, with a clear error when it is missing."""
    if not has_variable(data, name):
        raise DataError(f"{who}: predicting needs {what} {name!r}; the data has {variable_list(data)}")
    values = np.asarray(data[name].values, dtype=float).reshape(-1)
    if not np.all(np.isfinite(values)):
        raise DataError(f"{who}: {what} {name!r} has missing or infinite values")
    return values


def check_targets(targets: list[str], allowed: list[str], who: str) -> None:
    """Life models predict named outputs, not data columns: unknown ones are the user's mistake."""
    unknown = [t for t in targets if t not in allowed]
    if unknown:
        raise UserInputError(f"{who}: cannot predict {', '.join(map(repr, unknown))}; its outputs are "
                             f"{', '.join(allowed)}")


def no_covariates(features: list[str], time: str, who: str) -> None:
    """Weibull and Kaplan-Meier describe one population: a covariate given to them would be silently ignored."""
    extra = [f for f in features if f != time]
    if extra:
        raise UserInputError(f"{who} takes no covariates (got features {', '.join(map(repr, extra))}); the only "
                             f"input it takes is the time {time!r}; cox-ph models covariates")


def with_bounds(names: list[str]) -> list[str]:
    """Each output with its ``_lower`` and ``_upper`` confidence bounds."""
    return [n + s for n in names for s in ("", "_lower", "_upper")]


def numeric_covariates(data: Any, dim: str, exclude: set[str]) -> list[str]:
    """Default covariates: every numeric variable on ``dim`` that is not the time, the event or bookkeeping."""
    return row_variables(data, dim, numeric=True, exclude=exclude)

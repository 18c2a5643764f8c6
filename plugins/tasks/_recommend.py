"""What an ``optimize`` stage recommends and reports beyond its trials: the recommended design, the verified
headline, the time per suggestion, the given references and the optimizer's own report.

A stage that verifies its designs (``verify: {evaluate: ...}``) headlines the verified values, not the
optimizer's: an optimum found on a surrogate is the surrogate's optimum, and the number to build on is the one
the true evaluator gave (:func:`verified_headline`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from reflow.tables import plain

from ._pareto import pareto_mask

if TYPE_CHECKING:
    import reflow
    from reflow.context import RunContext
    from reflow.problem import OptimizationProblem


def recommend(trials: Any, problem: OptimizationProblem, objective: str, verified: Any = None) -> dict[str, Any]:
    """The feasible design best on ``objective`` as metrics: ``recommended_trial``, ``recommended_by``,
    ``recommended_<parameter>`` and ``recommended_<output>`` (objectives and constrained outputs).

    With ``verified`` (the verify output) only its successful rows compete, judged by their true values; ties on
    ``objective`` go to the design the other objectives rank best (the first non-dominated one)."""
    if verified is not None:
        table, source = _true_values(verified, problem), "verify"
    else:
        table, source = trials, "optimizer"
    out: dict[str, Any] = {"recommended_by": source}
    best = _best_row(table, problem, objective)
    if best is None:
        return out
    trial = int(table["trial"].values[best])
    out["recommended_trial"] = trial
    row = trials.sel(trial=trial)
    for prm in problem.free:
        out[f"recommended_{prm.name}"] = plain(row[prm.name].values[()])
    for name in problem.metric_names:
        out[f"recommended_{name}"] = float(table[name].values[best])
    return out


def _true_values(verified: Any, problem: OptimizationProblem) -> Any:
    """The successful rows of the verify output with each metric's true value under its own name."""
    import xarray as xr

    ok = verified["status"].values == "ok"
    rows = verified.isel(trial=np.flatnonzero(ok))
    return xr.Dataset({n: ("trial", np.asarray(rows[f"{n}_true"].values, dtype=float)) for n in problem.metric_names},
                      coords={"trial": rows["trial"].values})


def _best_row(table: Any, problem: OptimizationProblem, objective: str) -> int | None:
    """Position in ``table`` of the feasible row best on ``objective`` (ties: the first non-dominated), or None."""
    if not table.sizes.get("trial", 0):
        return None
    values = problem.objective_values(table)
    feasible = problem.feasible(table) & np.all(np.isfinite(values), axis=1)
    if not feasible.any():
        return None
    j = [o.name for o in problem.objectives].index(objective)
    candidates = np.flatnonzero(feasible & (values[:, j] == np.max(values[feasible, j])))
    return int(candidates[pareto_mask(values[candidates])][0])


def verified_headline(verified: Any, problem: OptimizationProblem, trial: int | None = None) -> dict[str, Any]:
    """The key numbers of a verified optimization: per objective ``verified_<objective>`` (the true evaluator's
    value) next to ``surrogate_<objective>`` (what the optimizer's evaluator predicted for the same design), then
    ``verified_trial``.

    The design is ``trial`` (the recommended one) or else the verified design best on the first objective by its
    true values, among the feasible ones; with none feasible the headline says so instead of leaving the
    optimizer's best to stand for the result."""
    objectives = [o.name for o in problem.objectives]
    if trial is None:
        table = _true_values(verified, problem)
        best = _best_row(table, problem, objectives[0])
        trial = None if best is None else int(table["trial"].values[best])
    if trial is None:
        n = int(verified.sizes.get("trial", 0))
        return {"verified_design": f"none of the {n} verified designs is feasible by its true values"}
    row = verified.sel(trial=trial)
    out: dict[str, Any] = {}
    for name in objectives:
        out[f"verified_{name}"] = float(row[f"{name}_true"].values)
        out[f"surrogate_{name}"] = float(row[f"{name}_surrogate"].values)
    out["verified_trial"] = int(trial)
    return out


def suggestion_metrics(seconds: np.ndarray) -> dict[str, float]:
    """Median, mean and max seconds per suggestion over every suggestion (the initial design's too): the median
    alone hides a slow first model-based ask. Trials asked before suggestions were timed (0 s) are left out."""
    s = np.asarray(seconds, dtype=float)
    s = s[np.isfinite(s) & (s > 0)]
    if not s.size:
        return {}
    return {"seconds_per_suggestion": float(np.median(s)), "seconds_per_suggestion_mean": float(np.mean(s)),
            "seconds_per_suggestion_max": float(np.max(s))}


def reference_report(problem: OptimizationProblem, values: np.ndarray, feasible: np.ndarray,
                     ctx: RunContext) -> dict[str, Any]:
    """Given references: ``trials_beating_reference`` (feasible trials better than every given reference),
    and a warning line while none does (the hypervolume is then 0: the reference is never replaced)."""
    objs = problem.objectives
    given = [(j, o) for j, o in enumerate(objs) if o.reference is not None]
    if not given:
        return {}
    beats = feasible.copy()
    for j, o in given:
        beats &= values[:, j] > o.sign * o.reference
    n = int(beats.sum())
    if not n and len(values):
        refs = ", ".join(f"{o.name} {'<' if o.goal == 'min' else '>'} {o.reference:g}" for _, o in given)
        ctx.logger.warning("stage %s: no feasible trial of %d beats the given reference (%s)%s; it is kept "
                           "as the reference and as the target the optimizer steers to", ctx.stage,
                           len(values), refs, ": hypervolume 0" if len(objs) > 1 else "")
    return {"trials_beating_reference": n}


def model_report(optimizer: reflow.Optimizer | None, trials: Any) -> dict[str, Any]:
    """The optimizer's :meth:`~reflow.Optimizer.report` as metrics: each output's outcome transform (metrics and
    the trials' attrs) and the count of numerical warnings (GPyTorch's "not p.d., added jitter" and the like).
    A design as the optimizer (``None``) reports nothing."""
    rep = optimizer.report() if optimizer is not None else {}
    out: dict[str, Any] = {}
    for name, t in rep.get("outcome_transforms", {}).items():
        out[f"outcome_transform_{name}"] = t["kind"]
        if name in trials:
            trials[name].attrs.update(outcome_transform=t["kind"], outcome_transform_reason=t["reason"],
                                      outcome_transform_winsorized=int(t.get("winsorized", 0)))
    if rep.get("outcome_transforms"):
        trials.attrs["outcome_transforms"] = "; ".join(
            f"{n}: {t['kind']} ({t['reason']})" for n, t in rep["outcome_transforms"].items())
    if "gp_numerical_warnings" in rep:
        out["gp_numerical_warnings"] = int(rep["gp_numerical_warnings"])
    return out

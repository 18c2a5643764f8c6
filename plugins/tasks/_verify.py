"""The ``verify`` step of the optimize task: re-evaluate the designs an optimization chose with the true evaluator.

An optimization run on a trained surrogate finds the optimum *of the surrogate*. Before anyone builds those
designs, ``verify: {evaluate: fea-package}`` evaluates them again with the simulation (or any evaluator or
pipeline) and reports how far the surrogate was off: per objective RMSE, MAE, largest relative error and R2.
A true evaluation that fails is kept as a failed row; it never stops the stage.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from reflow.errors import UserInputError
from reflow.evaluation import Pipeline, build_evaluator, evaluate_trials, failed_before
from reflow.plotting import pyplot, save_figure
from reflow.specs import EvaluatorPipeline

from ._pareto import pareto_mask
from ._scoring import regression_scores
from ._trials import pipeline_for_check

if TYPE_CHECKING:
    from reflow.context import RunContext
    from reflow.problem import OptimizationProblem

JOURNAL = "verify"
"""The stage's journal of finished true evaluations (``verify.jsonl``), read back on resume."""


class VerifySpec(BaseModel):
    """``verify: {evaluate: fea-package, designs: pareto, max: 20}``."""

    model_config = ConfigDict(extra="forbid")

    evaluate: EvaluatorPipeline = Field(description="the true evaluator (or pipeline) that checks the chosen designs")
    designs: Literal["pareto", "best", "all"] = Field(
        "pareto", description="pareto: the best trial (one objective) or the Pareto set; best: the best feasible "
                              "trials, front after front; all: successful trials spread over the whole run")
    max: int = Field(20, ge=1, description="at most this many designs are re-evaluated")


def check_verify(check: Any, verify: VerifySpec, space_names: list[str], objectives: list[str]) -> None:
    """Validation: the verify evaluator takes the space's parameters and produces every objective."""
    pipeline = pipeline_for_check(check, verify.evaluate)
    if pipeline is None:  # a trained {stage: ...} step: checked when the stage starts
        return
    if any(s.manual for s in pipeline.steps):
        check.problem(("verify", "evaluate"), "verify re-evaluates designs with code; a lab cannot be its evaluator")
        return
    if not pipeline.accepts_any_inputs:
        inputs = [v.name for v in pipeline.input_variables()]
        missing = [n for n in space_names if n not in inputs]
        if missing:
            check.problem(("verify", "evaluate"), f"the verify evaluator takes no {', '.join(map(repr, missing))} "
                                                  f"(its inputs: {', '.join(inputs)})")
    message = _missing_objectives(pipeline, objectives)
    if message:
        check.problem(("verify", "evaluate"), message)


def _missing_objectives(pipeline: Pipeline, objectives: list[str]) -> str | None:
    declared = [v.name for v in pipeline.output_variables()]
    missing = [o for o in objectives if o not in declared]
    if not missing or (not declared and pipeline.accepts_any_inputs):
        return None  # a python function without declared outputs: checked on every evaluation
    return (f"the verify evaluator must produce every objective; it gives no {', '.join(map(repr, missing))} "
            f"(its outputs: {', '.join(declared) or 'none declared'})")


def build_verifier(verify: VerifySpec, objectives: list[str], ctx: RunContext) -> Pipeline:
    """The verify pipeline, built (and checked) before the optimization starts, so a bad one costs no run."""
    pipeline = build_evaluator(verify.evaluate, ctx)
    message = _missing_objectives(pipeline, objectives)
    if message:
        raise UserInputError(f"stage {ctx.stage}: verify: {message}")
    return pipeline


def select_designs(trials: Any, problem: OptimizationProblem, mode: str, limit: int) -> np.ndarray:
    """Positions (in ``trials``) of the designs to verify, at most ``limit``.

    pareto: the non-dominated feasible trials (for one objective: the best); if more than ``limit``, evenly
    spaced along the first objective, ends included. best: feasible trials front after front (non-dominated
    sorting), best first. all: every successful trial, evenly spaced in evaluation order if more than ``limit``.
    """
    n = trials.sizes["trial"]
    if not n:
        return np.zeros(0, dtype=int)
    values = problem.objective_values(trials)
    ok = (trials["status"].values == "ok") & np.all(np.isfinite(values), axis=1)
    feasible = np.flatnonzero(problem.feasible(trials) & ok)
    if mode == "all":
        return _spread(np.flatnonzero(ok), limit)
    if mode == "pareto":
        front = feasible[pareto_mask(values[feasible])] if feasible.size else feasible
        front = front[np.argsort(-values[front, 0], kind="stable")]
        return _spread(front, limit)
    order: list[int] = []
    remaining = feasible
    while remaining.size and len(order) < limit:
        mask = pareto_mask(values[remaining])
        front = remaining[mask]
        order += front[np.argsort(-values[front, 0], kind="stable")].tolist()
        remaining = remaining[~mask]
    return np.asarray(order[:limit], dtype=int)


def _spread(positions: np.ndarray, limit: int) -> np.ndarray:
    if positions.size <= limit:
        return positions
    return positions[np.unique(np.round(np.linspace(0, positions.size - 1, limit)).astype(int))]


def verify_designs(pipeline: Pipeline, verify: VerifySpec, trials: Any, problem: OptimizationProblem,
                   ctx: RunContext, inputs_of: Callable[[int], dict[str, Any]]) -> Any:
    """Re-evaluate the chosen designs (journaled in :data:`JOURNAL`: a resumed stage repeats none); return the
    ``verify`` dataset: per design its parameters, the optimizer's and the true value of every objective and
    outcome-constraint metric, absolute and relative errors, status and error."""
    import xarray as xr

    positions = select_designs(trials, problem, verify.designs, verify.max)
    if not positions.size:
        ctx.logger.warning("stage %s: verify: no %s design to re-evaluate (no successful%s trial)", ctx.stage,
                           verify.designs, "" if verify.designs == "all" else " feasible")
    ids = [int(trials["trial"].values[i]) for i in positions]
    journal = ctx.store.journal(JOURNAL)
    retry = ctx.resuming and failed_before(ctx.folder, "verify")  # every design failed last time: verify again
    done = {} if retry else {r["trial"]: r for r in journal.read() if r["trial"] in ids}
    rows = [(tid, inputs_of(int(i))) for tid, i in zip(ids, positions, strict=True) if tid not in done]
    if rows:
        with ctx.progress(total=len(rows), description=f"{ctx.stage}: verifying") as bar:
            for rec in evaluate_trials(pipeline, rows, ctx, on_done=journal.append, bar=bar):
                done[rec["trial"]] = rec
    records = [done[t] for t in ids]
    names = problem.metric_names
    objectives = [o.name for o in problem.objectives]
    status, errors = [], []
    for rec in records:
        missing = [o for o in objectives if rec["status"] == "ok" and o not in rec["outputs"]]
        if missing:
            status.append("failed")
            errors.append(f"the verify evaluator gave no {', '.join(missing)} "
                          f"(it gave: {', '.join(rec['outputs']) or 'nothing'})")
        else:
            status.append(rec["status"])
            errors.append(rec["error"])
    data: dict[str, Any] = {}
    for prm in problem.space.parameters:
        data[prm.name] = ("trial", trials[prm.name].values[positions], {"units": prm.units, "role": "parameter"})
    failed = np.array(status) != "ok" if records else np.zeros(0, dtype=bool)
    true_units = {v.name: v.units for v in pipeline.output_variables()}
    for name in names:
        units = (trials[name].attrs.get("units", "") if name in trials else "") or true_units.get(name, "")
        surrogate = np.asarray(trials[name].values[positions], dtype=float) if name in trials else \
            np.full(len(ids), np.nan)
        true = np.array([float(r["outputs"].get(name, np.nan)) for r in records], dtype=float)
        true[failed] = np.nan
        err = np.abs(true - surrogate)
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = np.where(true != 0, err / np.abs(true), np.nan)
        data[f"{name}_surrogate"] = ("trial", surrogate, {"units": units, "description": "the optimizer's value"})
        data[f"{name}_true"] = ("trial", true, {"units": units, "description": "the verify evaluator's value"})
        data[f"{name}_abs_error"] = ("trial", err, {"units": units})
        data[f"{name}_rel_error"] = ("trial", rel, {"units": "1", "description": "|true - surrogate| / |true|"})
    data["status"] = ("trial", np.array(status, dtype=str))
    data["error"] = ("trial", np.array(errors, dtype=str))
    ds = xr.Dataset(data, coords={"trial": np.array(ids, dtype=int)})
    ds.attrs.update(designs=verify.designs, objectives=objectives,
                    evaluator=", ".join(s.label for s in verify.evaluate))
    return ds


def verify_metrics(ds: Any, objectives: list[str]) -> dict[str, Any]:
    """Per objective over the successful rows: RMSE, MAE, largest relative error, and R2 from 3 designs up."""
    ok = ds["status"].values == "ok"
    out: dict[str, Any] = {"verify_designs": int(ok.size), "verify_ok": int(ok.sum()),
                           "verify_failed": int((~ok).sum())}
    for o in objectives:
        true = np.asarray(ds[f"{o}_true"].values, dtype=float)[ok]
        sur = np.asarray(ds[f"{o}_surrogate"].values, dtype=float)[ok]
        if not true.size:
            continue
        scores = regression_scores(o, true, sur)
        out[f"verify_{o}_rmse"] = scores[f"{o}_rmse"]
        out[f"verify_{o}_mae"] = scores[f"{o}_mae"]
        rel = np.asarray(ds[f"{o}_rel_error"].values, dtype=float)[ok]
        out[f"verify_{o}_max_rel_error"] = float(np.nanmax(rel)) if np.isfinite(rel).any() else None
        if true.size >= 3 and np.isfinite(scores[f"{o}_r2"]):
            out[f"verify_{o}_r2"] = scores[f"{o}_r2"]
    return out


def plot_verify(ds: Any, objectives: list[str], folder: Path) -> Path | None:
    """Parity plot per objective: the optimizer's value against the true one; on the diagonal, the surrogate
    was right."""
    ok = ds["status"].values == "ok"
    if not ok.any():
        return None
    plt = pyplot()
    fig, axes = plt.subplots(1, len(objectives), figsize=(4.6 * len(objectives) + 0.4, 4.4), squeeze=False)
    for ax, o in zip(axes[0], objectives, strict=True):
        true = np.asarray(ds[f"{o}_true"].values, dtype=float)[ok]
        sur = np.asarray(ds[f"{o}_surrogate"].values, dtype=float)[ok]
        ax.scatter(true, sur, s=30, color="#4c72b0", edgecolor="k", linewidth=0.4)
        lo, hi = float(min(true.min(), sur.min())), float(max(true.max(), sur.max()))
        pad = 0.05 * (hi - lo if hi > lo else max(abs(hi), 1.0))
        ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], "k--", lw=1)
        units = ds[f"{o}_true"].attrs.get("units", "")
        u = f" [{units}]" if units else ""
        ax.set_xlabel(f"{o}{u}: true (verify evaluator)")
        ax.set_ylabel(f"{o}{u}: optimizer's value")
        scores = regression_scores(o, true, sur)
        ax.set_title(f"{o}: RMSE {scores[f'{o}_rmse']:.3g}" + (f", R2 {scores[f'{o}_r2']:.3f}"
                                                                 if true.size >= 3 else ""), fontsize=10)
        ax.grid(alpha=0.3)
    n_failed = int((~ok).sum())
    fig.suptitle(f"verification of {int(ok.sum())} designs ({ds.attrs.get('designs', '')})"
                 + (f"; {n_failed} true evaluations failed" if n_failed else ""), fontsize=10)
    return save_figure(fig, folder / "verify_parity.png")

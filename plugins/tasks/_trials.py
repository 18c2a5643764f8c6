"""What the trial-running tasks share: pipeline checks against a space, what a stage says about its failed
trials, and the trials figures."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field
from reflow.evaluation import MAX_FAILED, Pipeline, TrialsFailed, failure_note, write_failures
from reflow.plotting import pyplot, save_figure
from reflow.store import JOURNAL


def max_failed_field() -> Any:
    """The ``max_failed`` key of the stages that run trials (doe, evaluate, optimize; sensitivity needs them all)."""
    return Field(MAX_FAILED, ge=0.0, le=1.0,
                 description="share of failed evaluations above which the stage ends with a warning that lists "
                             "the errors (1: never warn); when every evaluation fails the stage fails")


def say_failures(trials, ctx, max_failed: float = MAX_FAILED, *, part: str = "trials", what: str = "evaluations",
                 journal: str = JOURNAL, fail_above: float | None = None, why: str = "",
                 resume_retries: bool = True) -> None:
    """Say the failed trials of a stage where the user looks: the console, ``run.log`` and the report.

    Every evaluation failed (or more than ``fail_above``): raise :class:`TrialsFailed`, so the run stops at
    this stage (exit 1) with the distinct errors, their counts and the plugin's file and line, instead of a
    later stage failing for lack of data. More than ``max_failed`` failed: a warning saying the same. The note
    goes to ``failures.json`` for the report. ``resume_retries``: a stage that failed so evaluates its failed
    trials again on ``reflow run --resume`` (``failed_before``); the message says what to do either way.
    """
    note = failure_note(trials, max_failed, what=what, fail_above=fail_above)
    write_failures(ctx.folder, part, note)
    if note is None:
        return
    message = f"stage {ctx.stage!r}: {note['message']}"
    if note["verdict"] == "failed":
        then = (f"continue with: reflow run --resume {ctx.run.dir} (the failed trials are evaluated again)"
                if resume_retries else "run the study again")
        raise TrialsFailed(f"{message}\n{why}The trials are in {ctx.folder / journal}. Fix the cause and {then}.")
    ctx.logger.warning("%s", message)
    _console_warning(message)


def _console_warning(message: str) -> None:
    """A warning on stderr, also with --quiet (which silences progress, not problems)."""
    from rich.console import Console
    from rich.markup import escape

    Console(stderr=True, highlight=False, soft_wrap=True).print(f"[bold yellow]warning:[/] {escape(message)}")


def pipeline_for_check(checker, specs) -> Pipeline | None:
    """Instantiate the evaluators of a pipeline for validation; None if a step is a trained stage or its params
    are not validated yet (they wait for stage values, ``${...}``, and are checked again when the stage starts:
    default params would declare other inputs and outputs)."""
    steps = []
    for spec in specs:
        cls = checker.component_class(spec)
        if cls is None or spec.validated is None:
            return None
        steps.append(cls(spec.validated))
    return Pipeline(steps, [s.label for s in specs])


def check_space_inputs(checker, space_names, specs, path=("space",), by_index: bool = False) -> None:
    """Every space factor must be an input of the pipeline (unless a step takes any input).

    ``by_index``: the names come from a YAML list, so a problem points at the item's index (and line).
    """
    pipeline = pipeline_for_check(checker, specs)
    if pipeline is None or pipeline.accepts_any_inputs:
        return
    inputs = [v.name for v in pipeline.input_variables()]
    for i, name in enumerate(space_names):
        if name not in inputs:
            close = difflib.get_close_matches(name, inputs, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            checker.problem(path + (i if by_index else name,), f"{name!r} is not an input of the evaluator{hint} "
                                           f"(inputs: {', '.join(inputs)})")


DENSE_TRIALS = 5000
"""Above this many successful trials a trials figure draws binned means or densities instead of one marker
per trial: a scatter of 10^6 points takes minutes to draw and a triangulated contour even longer, and the
figure would show ink, not the trend."""


RANKED_TRIALS = 200_000
"""Most trials an influence ranking correlates: above it a fixed random subset of this size (the sampling
error of a rank correlation, about 1/sqrt(200,000) = 0.002, is far below what the bar chart shows)."""


def influence_ranking(trials, inputs: list[str], output: str) -> list[tuple[str, float]]:
    """Inputs ordered by |Spearman rank correlation| with ``output`` over the successful trials.

    The output is ranked once and each input once (average ranks for ties, as ``scipy.stats.spearmanr``),
    over at most :data:`RANKED_TRIALS` of them: array operations, so a million trials take a fraction of a
    second.
    """
    ok = np.flatnonzero(trials["status"].values == "ok")
    if len(ok) > RANKED_TRIALS:  # the same subset every time: the figure does not change on a replot
        ok = np.sort(np.random.default_rng(0).choice(ok, RANKED_TRIALS, replace=False))
    y = np.asarray(trials[output].values, dtype=float)[ok]
    finite = np.isfinite(y)
    y_ranks = _centred_ranks(y[finite]) if finite.sum() >= 3 and np.ptp(y[finite]) > 0 else None
    scores = []
    for name in inputs:
        x = _numeric(trials[name].values[ok])[finite]
        if y_ranks is None or np.ptp(x) == 0:
            scores.append((name, 0.0))
            continue
        x_ranks = _centred_ranks(x)
        rho = float(x_ranks @ y_ranks / np.sqrt((x_ranks @ x_ranks) * (y_ranks @ y_ranks)))
        scores.append((name, abs(rho) if np.isfinite(rho) else 0.0))
    return sorted(scores, key=lambda t: -t[1])


def _centred_ranks(x: np.ndarray) -> np.ndarray:
    """Average ranks of ``x`` (ties share the mean of their ranks), less their mean."""
    order = np.argsort(x, kind="stable")
    xs = x[order]
    first = np.r_[True, xs[1:] != xs[:-1]]
    starts = np.flatnonzero(first)
    counts = np.diff(np.r_[starts, len(x)])
    ranks = np.empty(len(x))
    ranks[order] = np.repeat(starts + (counts + 1) / 2.0, counts)
    return ranks - ranks.mean()


def plot_trials(trials, inputs: list[str], outputs: list[str], folder: Path, prefix: str = "") -> list[Path]:
    """For each output: a map over its two most influential inputs, and its main effects.

    Up to :data:`DENSE_TRIALS` successful trials the map shows every trial over a filled contour; above it,
    the mean output in a grid of cells (one input: the trials' density in hexagonal bins), so the figure's
    size and drawing time do not grow with the number of trials.
    """
    paths: list[Path] = []
    ok = trials["status"].values == "ok"
    n_ok = int(ok.sum())
    if n_ok < 2:
        return paths
    dense = n_ok > DENSE_TRIALS
    plt = pyplot()
    numeric_inputs = [n for n in inputs if n in trials and np.ptp(_numeric(trials[n].values[ok])) > 0]
    for out in outputs:
        if out not in trials or not numeric_inputs:
            continue
        ranking = influence_ranking(trials, numeric_inputs, out)
        y = np.asarray(trials[out].values, dtype=float)[ok]
        label = axis_label(trials, out)
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.4), gridspec_kw={"width_ratios": [1.2, 1]})
        ax = axes[0]
        if len(ranking) >= 2:
            a, b = ranking[0][0], ranking[1][0]
            xa, xb = _numeric(trials[a].values[ok]), _numeric(trials[b].values[ok])
            if dense:
                art = _binned_mean(ax, xa, xb, y)
                fig.colorbar(art, ax=ax, label=f"mean {label}")
                ax.set_title(f"{out}: its two most influential factors (mean of {n_ok:,} trials per cell)",
                             fontsize=10)
            else:
                sc = ax.scatter(xa, xb, c=y, cmap="viridis", s=46, edgecolor="k", linewidth=0.4)
                if len(y) >= 6:
                    try:
                        ax.tricontourf(xa, xb, y, levels=12, cmap="viridis", alpha=0.35)
                    except (ValueError, RuntimeError):  # collinear points cannot be triangulated
                        pass  # the scatter alone still shows the trials
                fig.colorbar(sc, ax=ax, label=label)
                ax.set_title(f"{out}: its two most influential factors", fontsize=10)
            ax.set_xlabel(axis_label(trials, a))
            ax.set_ylabel(axis_label(trials, b))
        else:
            a = ranking[0][0]
            x = _numeric(trials[a].values[ok])
            if dense:
                finite = np.isfinite(y)
                art = ax.hexbin(x[finite], y[finite], gridsize=40, bins="log", cmap="Blues", linewidths=0.0)
                fig.colorbar(art, ax=ax, label="trials")
                ax.set_title(f"{out}: density of {n_ok:,} trials", fontsize=10)
            else:
                ax.scatter(x, y, s=30)
            ax.set_xlabel(axis_label(trials, a))
            ax.set_ylabel(label)
        ax = axes[1]
        names = [n for n, _ in ranking][::-1]
        ax.barh(names, [s for _, s in ranking][::-1], color="#4c72b0")
        ax.set_xlabel("|Spearman rank correlation|")
        ax.set_xlim(0, 1)
        ax.set_title(f"influence on {out}")
        paths.append(save_figure(fig, folder / f"{prefix}{out}_factors.png"))
    return paths


def _binned_mean(ax, x: np.ndarray, y: np.ndarray, c: np.ndarray, bins: int = 48):
    """The mean of ``c`` in a ``bins`` x ``bins`` grid over (x, y), drawn as a mesh (empty cells blank).

    Why not ``hexbin(C=...)``: matplotlib gathers C point by point in Python (seconds per million trials);
    ``np.bincount`` sums them in milliseconds.
    """
    finite = np.isfinite(x) & np.isfinite(y) & np.isfinite(c)
    x, y, c = x[finite], y[finite], c[finite]
    xe = np.linspace(x.min(), x.max(), bins + 1)
    ye = np.linspace(y.min(), y.max(), bins + 1)
    ix = np.clip(((x - xe[0]) * (bins / max(xe[-1] - xe[0], 1e-300))).astype(np.int64), 0, bins - 1)
    iy = np.clip(((y - ye[0]) * (bins / max(ye[-1] - ye[0], 1e-300))).astype(np.int64), 0, bins - 1)
    cell = iy * bins + ix
    count = np.bincount(cell, minlength=bins * bins)
    total = np.bincount(cell, weights=c, minlength=bins * bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, total / count, np.nan).reshape(bins, bins)
    return ax.pcolormesh(xe, ye, np.ma.masked_invalid(mean), cmap="viridis", shading="flat")


def _numeric(values) -> np.ndarray:
    values = np.asarray(values)
    if values.dtype.kind in "US":
        _, values = np.unique(values, return_inverse=True)
    return values.astype(float)


def axis_label(ds: Any, name: str) -> str:
    """``name [units]`` of a variable, or its name alone without units: the axis labels of stage figures."""
    units = ds[name].attrs.get("units", "")
    return f"{name} [{units}]" if units else name


def trial_metrics(trials, outputs: list[str]) -> dict:
    status = trials["status"].values
    metrics = {"trials": int(status.size), "ok": int((status == "ok").sum()),
               "failed": int((status == "failed").sum())}
    ok = status == "ok"
    for out in outputs:
        if out in trials and ok.any() and trials[out].dtype.kind == "f":
            vals = trials[out].values[ok]
            metrics[f"{out}_min"] = float(np.min(vals))
            metrics[f"{out}_max"] = float(np.max(vals))
    return metrics

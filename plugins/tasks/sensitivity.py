"""Task ``sensitivity``: variance-based (Sobol) sensitivity indices of an evaluator, a pipeline or a trained
surrogate over a space, with SALib (Saltelli's scheme on a scrambled Sobol sequence, bootstrap confidence intervals).

S1 (first order) is the share of an output's variance that one parameter explains alone; ST (total) adds every
interaction it takes part in. ST - S1 large: the parameter matters through interactions; ST near 0: it can be
fixed anywhere in its range without changing the output. The inputs are independent and uniform over their
ranges (log-uniform for ``log: true``, discrete uniform for integers); fixed parameters are passed through.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import reflow
from pydantic import Field, field_validator
from reflow.evaluation import build_evaluator, run_journaled
from reflow.plotting import pyplot, save_figure
from reflow.space import ParameterSpec, Space
from reflow.specs import EvaluatorPipeline

from ._trials import check_space_inputs, pipeline_for_check, say_failures

INDICES = ("S1", "S1_conf", "ST", "ST_conf")


class SensitivityTask(reflow.Task):
    """Sobol indices (S1, ST and optionally S2, each with its confidence half-width) of every output.

    Costs ``samples * (d + 2)`` evaluations (``samples * (2 d + 2)`` with ``second_order``) for ``d`` varying
    parameters: cheap on a trained surrogate (``evaluate: {stage: fit}``), planned with care on a simulation.
    Outputs: ``indices`` (dims output x parameter) and ``samples`` (every evaluated point, as trials; journaled,
    so ``reflow run --resume`` never repeats an evaluation).
    """

    outputs = ("indices", "samples")

    class Params(reflow.Params):
        space: dict[str, ParameterSpec] = Field(description="the parameters: {low, high} (optionally log or "
                                                            "type: int) or {value} (fixed); no choices")
        evaluate: EvaluatorPipeline = Field(description="an evaluator, a pipeline, or a trained model {stage: name}")
        outputs: list[str] | None = Field(None, description="outputs to analyse (default: every evaluator output)")
        samples: int = Field(256, ge=2, description="base sample size N, a power of 2")
        second_order: bool = Field(False, description="also the pairwise interaction indices S2")
        conf_level: float = Field(0.95, gt=0.0, lt=1.0, description="confidence level of the bootstrap intervals")
        resamples: int = Field(100, ge=10, description="bootstrap resamples for the confidence intervals")
        batch_size: int = Field(256, ge=1, description="evaluations per batch (journaled, reported to hooks)")

        @field_validator("samples")
        @classmethod
        def _power_of_two(cls, v: int) -> int:
            if v & (v - 1):
                lower = 1 << (v.bit_length() - 1)
                raise ValueError(f"samples must be a power of 2 (it keeps the Sobol sequence balanced), got {v}; "
                                 f"use {lower} or {lower * 2}")
            return v

    # ---- validation -----------------------------------------------------------------------------
    def check(self, check):
        p = self.params
        for name, spec in p.space.items():
            if spec.choices is not None:
                check.problem(("space", name), f"{name!r} is categorical ({spec.choices}); Sobol indices need "
                                               "numeric ranges: fix it ({value: ...}) and run one stage per choice")
        if not any(s.low is not None for s in p.space.values()):
            check.problem(("space",), "the space needs at least one parameter with a range {low, high}")
        check_space_inputs(check, list(p.space), p.evaluate)
        pipeline = pipeline_for_check(check, p.evaluate)
        if pipeline is None:
            return
        if any(s.manual for s in pipeline.steps):
            check.problem(("evaluate",), "a lab cannot run the hundreds of evaluations Sobol indices need; "
                                         "train a surrogate on its results and use {stage: NAME}")
        declared = [v.name for v in pipeline.output_variables()]  # empty: known only when it runs
        for i, name in enumerate(p.outputs or []):
            if declared and name not in declared:
                check.problem(("outputs", i), f"{name!r} is not an output of the evaluator "
                                              f"(outputs: {', '.join(declared)})")

    # ---- running --------------------------------------------------------------------------------
    def run(self, ctx):
        from SALib.analyze import sobol as sobol_analyze
        from SALib.sample import sobol as sobol_sample

        p = self.params
        space = Space.from_specs(p.space)
        free = space.free
        problem = {"num_vars": len(free), "names": [f.name for f in free], "bounds": [[0.0, 1.0]] * len(free)}
        unit = sobol_sample.sample(problem, p.samples, calc_second_order=p.second_order, scramble=True,
                                   seed=ctx.seed)
        designs = space.to_dataset(space.from_unit(unit))
        pipeline = build_evaluator(p.evaluate, ctx)
        units = {prm.name: prm.units for prm in space.parameters if prm.units}
        trials = run_journaled(pipeline, designs, ctx, batch_size=p.batch_size, units=units)
        say_failures(trials, ctx, fail_above=0.0, why="Sobol indices need every sample. ")
        declared = [v.name for v in pipeline.output_variables()]
        available = declared or [str(n) for n in trials.data_vars if trials[n].attrs.get("role") == "metric"]
        outputs = p.outputs or available
        missing = [o for o in outputs if o not in trials]
        if missing:
            raise reflow.UserInputError(f"sensitivity: outputs {', '.join(missing)} are not produced by the "
                                        f"evaluator (it gives: {', '.join(available) or 'nothing'})")
        trials.attrs.update(inputs=space.names, outputs=outputs)
        results = {}
        for out in outputs:
            y = np.asarray(trials[out].values, dtype=float)
            if np.ptp(y) == 0:
                ctx.logger.warning("stage %s: %s is constant over the space; its indices are undefined (NaN)",
                                   ctx.stage, out)
                results[out] = None
                continue
            results[out] = sobol_analyze.analyze(problem, y, calc_second_order=p.second_order,
                                                 num_resamples=p.resamples, conf_level=p.conf_level,
                                                 seed=ctx.seed)
        indices = _indices_dataset(results, problem["names"], p.second_order, trials)
        indices.attrs.update(samples=p.samples, evaluations=int(trials.sizes["trial"]), conf_level=p.conf_level,
                             second_order=int(p.second_order))
        return reflow.StageResult({"indices": indices, "samples": trials}, _metrics(indices, p.samples))

    # ---- plots ----------------------------------------------------------------------------------
    def plot(self, result, folder: Path):
        indices = result.outputs["indices"]
        paths = [_plot_indices(indices, folder)]
        if "S2" in indices:
            paths += [_plot_s2(indices, str(out), folder) for out in indices["output"].values]
        return [q for q in paths if q is not None]


def _indices_dataset(results: dict[str, Any], names: list[str], second_order: bool, trials):
    import xarray as xr

    outputs = list(results)
    d = len(names)
    data: dict[str, Any] = {}
    for key in INDICES:
        arr = np.full((len(outputs), d), np.nan)
        for i, out in enumerate(outputs):
            if results[out] is not None:
                arr[i] = results[out][key]
        data[key] = (("output", "parameter"), arr)
    if second_order:
        for key in ("S2", "S2_conf"):
            arr = np.full((len(outputs), d, d), np.nan)
            for i, out in enumerate(outputs):
                if results[out] is not None:
                    upper = np.asarray(results[out][key], dtype=float)  # SALib fills the upper triangle
                    arr[i] = np.where(np.isfinite(upper), upper, upper.T)
            data[key] = (("output", "parameter", "other"), arr)
    ok = trials["status"].values == "ok"
    data["variance"] = ("output", np.array([np.var(np.asarray(trials[o].values, dtype=float)[ok], ddof=1)
                                            for o in outputs]))
    data["mean"] = ("output", np.array([np.mean(np.asarray(trials[o].values, dtype=float)[ok]) for o in outputs]))
    coords = {"output": np.array(outputs, dtype=str), "parameter": np.array(names, dtype=str)}
    if second_order:
        coords["other"] = np.array(names, dtype=str)
    ds = xr.Dataset(data, coords=coords)
    for key in INDICES:
        ds[key].attrs["description"] = {"S1": "first-order index", "ST": "total-order index"}.get(
            key, "half-width of the bootstrap confidence interval")
    return ds


def _metrics(indices, samples: int) -> dict[str, Any]:
    out: dict[str, Any] = {"base_samples": samples, "evaluations": int(indices.attrs["evaluations"])}
    for o in indices["output"].values:
        st = indices["ST"].sel(output=o).values
        for j, prm in enumerate(indices["parameter"].values):
            for key in ("S1", "ST"):
                v = float(indices[key].sel(output=o).values[j])
                out[f"{o}_{key}_{prm}"] = v if np.isfinite(v) else None
        if np.isfinite(st).any():
            out[f"{o}_most_influential"] = str(indices["parameter"].values[int(np.nanargmax(st))])
    return out


def _plot_indices(indices, folder: Path) -> Path | None:
    outputs = [str(o) for o in indices["output"].values]
    names = [str(n) for n in indices["parameter"].values]
    if not outputs:
        return None
    plt = pyplot()
    longest = max(len(n) for n in names)
    rotate = longest * len(names) > 36  # labels that would run into each other are turned
    fig, axes = plt.subplots(len(outputs), 1, figsize=(max(6.0, 1.1 * len(names) + 3.5),
                                                       2.8 * len(outputs) + (0.06 * longest if rotate else 0) + 0.6),
                             squeeze=False)
    x = np.arange(len(names))
    level = float(indices.attrs.get("conf_level", 0.95))
    for ax, out in zip(axes[:, 0], outputs, strict=True):
        sel = indices.sel(output=out)
        for shift, key, colour in ((-0.2, "S1", "#4c72b0"), (0.2, "ST", "#c44e52")):
            ax.bar(x + shift, sel[key].values, width=0.4, yerr=np.nan_to_num(sel[f"{key}_conf"].values),
                   capsize=3, color=colour, label={"S1": "S1 (alone)", "ST": "ST (with interactions)"}[key])
        ax.set_xticks(x, names, rotation=25 if rotate else 0, ha="right" if rotate else "center")
        ax.axhline(0, color="0.3", lw=0.8)
        ax.set_ylim(min(-0.05, float(np.nanmin(sel["S1"].values - np.nan_to_num(sel["S1_conf"].values)))
                        if np.isfinite(sel["S1"].values).any() else -0.05), 1.05)
        ax.set_ylabel("share of variance")
        ax.set_title(f"{out}", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.suptitle(f"Sobol indices (bars: {level:.0%} confidence, N = {indices.attrs.get('samples', '?')})",
                 fontsize=10)
    return save_figure(fig, folder / "sobol_indices.png")


def _plot_s2(indices, out: str, folder: Path) -> Path | None:
    s2 = indices["S2"].sel(output=out).values
    if not np.isfinite(s2).any():
        return None
    plt = pyplot()
    names = [str(n) for n in indices["parameter"].values]
    fig, ax = plt.subplots(figsize=(0.7 * len(names) + 3, 0.7 * len(names) + 2.4))
    shown = np.where(np.isfinite(s2), s2, 0.0)
    im = ax.imshow(shown, cmap="Reds", vmin=0, vmax=max(float(np.nanmax(s2)), 1e-9))
    for i in range(len(names)):
        for j in range(len(names)):
            if i != j and np.isfinite(s2[i, j]):
                ax.text(j, i, f"{s2[i, j]:.2f}", ha="center", va="center", fontsize=8)
    ax.set_xticks(range(len(names)), names, rotation=30)
    ax.set_yticks(range(len(names)), names)
    fig.colorbar(im, ax=ax, label="S2 (pairwise interaction)")
    ax.set_title(f"{out}: second-order indices", fontsize=10)
    return save_figure(fig, folder / f"sobol_s2_{out}.png")

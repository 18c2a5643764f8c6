"""Task ``evaluate``: run an evaluator (or pipeline) on every row of an earlier stage's data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import reflow
from pydantic import Field
from reflow.evaluation import build_evaluator, run_journaled
from reflow.specs import EvaluatorPipeline, StageData
from reflow.tables import row_dim, row_variables

from ._trials import check_space_inputs, max_failed_field, plot_trials, say_failures, trial_metrics


class EvaluateTask(reflow.Task):
    """Evaluate given designs: each row of ``data`` (dim ``sample`` or ``trial``) is one trial.

    ``inputs`` picks the variables passed on (default: all one-dimensional variables).
    """

    outputs = ("trials",)

    class Params(reflow.Params):
        data: StageData = Field(description="the designs: an earlier stage's output")
        evaluate: EvaluatorPipeline = Field(description="an evaluator or a pipeline of them")
        inputs: list[str] | None = Field(None, description="variables of data to pass as inputs")
        batch_size: int = Field(16, ge=1, description="trials per batch reported to on_trial_batch")
        max_failed: float = max_failed_field()

    def check(self, check):
        if self.params.inputs:
            check_space_inputs(check, self.params.inputs, self.params.evaluate, path=("inputs",),
                               by_index=True)

    def run(self, ctx):
        data = ctx.data(self.params.data)
        dim = row_dim(data, prefer=("trial", "sample"))
        names = self.params.inputs or row_variables(data, dim)  # without the trial bookkeeping
        missing = [n for n in names if n not in data]
        if missing:
            raise reflow.DataError(f"stage {self.params.data}: no variables {', '.join(missing)} "
                                   f"(has: {', '.join(map(str, data.data_vars))})")
        designs = data[names].rename({dim: "trial"}) if dim != "trial" else data[names]
        designs = designs.assign_coords(trial=np.arange(designs.sizes["trial"]))
        pipeline = build_evaluator(self.params.evaluate, ctx)
        trials = run_journaled(pipeline, designs, ctx, batch_size=self.params.batch_size)
        outputs = [v.name for v in pipeline.output_variables()] or [
            n for n in trials.data_vars if trials[n].attrs.get("role") == "metric"]
        trials.attrs.update(inputs=names, outputs=outputs)
        say_failures(trials, ctx, self.params.max_failed)
        return reflow.StageResult({"trials": trials}, trial_metrics(trials, outputs))

    def plot(self, result, folder: Path):
        import json

        trials = result.outputs["trials"]
        inputs = _attr_list(trials, "inputs", json)
        outputs = _attr_list(trials, "outputs", json)
        return plot_trials(trials, inputs, outputs, folder)


def _attr_list(ds, key, json):
    value = ds.attrs.get(key, [])
    return json.loads(value) if isinstance(value, str) else list(value)

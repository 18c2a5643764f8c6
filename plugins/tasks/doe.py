"""Task ``doe``: evaluate every point of a design of experiments over a space."""

from __future__ import annotations

from pathlib import Path

import reflow
from pydantic import Field
from reflow.components import Design
from reflow.evaluation import build_evaluator, run_journaled
from reflow.space import ParameterSpec, Space
from reflow.specs import EvaluatorPipeline, OptimizerSpec

from ._trials import check_space_inputs, max_failed_field, plot_trials, say_failures, trial_metrics


class DoeTask(reflow.Task):
    """Design of experiments: generate a design over ``space`` and evaluate every point.

    Finished trials are journaled one by one, so ``reflow run --resume`` continues a killed DOE without
    repeating an evaluation. Outputs: ``trials`` (every trial with status and error) and ``design``.
    """

    outputs = ("trials", "design")

    class Params(reflow.Params):
        design: OptimizerSpec = Field(description="the design: lhs, sobol, halton, random, full-factorial, "
                                                  "fractional-factorial, central-composite, box-behnken")
        space: dict[str, ParameterSpec] = Field(description="the factors: {low, high} | {choices} | {value}")
        evaluate: EvaluatorPipeline = Field(description="an evaluator or a pipeline of them")
        batch_size: int = Field(16, ge=1, description="trials per batch reported to on_trial_batch")
        plot: list[str] | None = Field(None, description="outputs to plot (default: every declared output)")
        max_failed: float = max_failed_field()

    def check(self, check):
        p = self.params
        cls = check.component_class(p.design)
        if cls is not None and not issubclass(cls, Design):
            check.problem(("design",), f"{p.design.name!r} is an optimizer, not a design of experiments; "
                                       "use task: optimize for it")
        if not any(s.low is not None or s.choices is not None for s in p.space.values()):
            check.problem(("space",), "the space needs at least one factor that varies")
        if cls is not None and issubclass(cls, Design):
            design = cls(p.design.validated)
            for problem in design.space_problems(Space.from_specs(p.space)):
                check.problem(("design", p.design.name), problem)
        check_space_inputs(check, list(p.space), p.evaluate)

    def run(self, ctx):
        p = self.params
        space = Space.from_specs(p.space)
        design = ctx.store.read_cache("design")  # resuming: the design is fixed once drawn
        if design is None:
            design = p.design.create().generate(space, ctx.rng)
            ctx.store.write_cache("design", design)
        pipeline = build_evaluator(p.evaluate, ctx)
        units = {prm.name: prm.units for prm in space.parameters if prm.units}
        trials = run_journaled(pipeline, design, ctx, batch_size=p.batch_size, units=units)
        outputs = [v.name for v in pipeline.output_variables()] or [
            n for n in trials.data_vars if trials[n].attrs.get("role") == "metric"]
        trials.attrs.update(inputs=list(space.names), outputs=outputs, design=p.design.name)
        say_failures(trials, ctx, p.max_failed)
        return reflow.StageResult({"trials": trials, "design": design}, trial_metrics(trials, outputs))

    def plot(self, result, folder: Path):
        trials = result.outputs["trials"]
        inputs = [n for n in self.params.space if self.params.space[n].value is None]
        outputs = self.params.plot or [n for n in trials.data_vars if trials[n].attrs.get("role") == "metric"]
        return plot_trials(trials, inputs, outputs, folder)

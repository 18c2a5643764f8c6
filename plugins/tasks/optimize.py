"""Task ``optimize``: design optimization against a simulation, a trained surrogate or a lab.

The loop (pymoo's ask/tell template): evaluate an initial space-filling design, then ask the optimizer
for ``batch_size`` points at a time, evaluate them through the study's executor (in parallel), tell the
optimizer, until ``budget.evaluations`` points have been evaluated. Failed evaluations keep their error,
are left out of model fitting and count against the budget.

Crash safety: every asked point is journaled before it is evaluated and every finished trial as soon as it
finishes; ``reflow run --resume`` evaluates the points that were asked but never finished, tells the
optimizer what finished, and goes on: no point is evaluated twice and none is lost. Lab mode
(``evaluate: {lab: ...}``): the stage waits; ``reflow ask`` and ``reflow tell`` move experiments and
measurements in and out of the same two journals (the :class:`reflow.LabTask` protocol).

This module is the task (its params, validation, run and the lab protocol); the loop, the recommendation and
the figures live in ``_optimize_loop``, ``_recommend`` and ``_optimize_figures``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import reflow
from pydantic import BaseModel, ConfigDict, Field, model_validator
from reflow.components import Design, Optimizer
from reflow.errors import UserInputError, WaitingForResults
from reflow.evaluation import build_evaluator
from reflow.expressions import ExpressionError, parse_constraint
from reflow.problem import Objective, OptimizationProblem
from reflow.space import ParameterSpec, Space, design_size_problem
from reflow.specs import ComponentSpec, EvaluatorPipeline, OptimizerSpec
from reflow.tables import plain

from ._optimize_figures import plot_convergence, plot_front, plot_parameters
from ._optimize_loop import ASKED, OptimizeLoop, did_you_mean
from ._recommend import recommend, verified_headline
from ._trials import check_space_inputs, max_failed_field, pipeline_for_check, plot_trials, say_failures
from ._verify import JOURNAL as VERIFY_JOURNAL
from ._verify import VerifySpec, build_verifier, check_verify, plot_verify, verify_designs, verify_metrics

if TYPE_CHECKING:
    from reflow.context import RunContext

__all__ = ["Budget", "ObjectiveSpec", "OptimizeTask", "recommend"]


class ObjectiveSpec(BaseModel):
    """``{goal: min, reference: 100}``: the reference is the worst acceptable value (hypervolume reference)."""

    model_config = ConfigDict(extra="forbid")

    goal: Literal["min", "max"]
    reference: float | None = None


class Budget(BaseModel):
    """How many evaluations, and how they are spent."""

    model_config = ConfigDict(extra="forbid")

    initial: int = Field(8, ge=0, description="space-filling points evaluated before the optimizer's own")
    evaluations: int = Field(32, ge=1, description="total evaluations, failed ones included")
    batch_size: int = Field(1, ge=1, description="points asked at once and evaluated in parallel")
    initial_design: str = Field("sobol", description="the design of the initial points (sobol, lhs, random, ...)")
    center: bool = Field(True, description="make the first initial point the centre of the space (a centre run)")

    @model_validator(mode="after")
    def _fits(self) -> Budget:
        if self.initial > self.evaluations:
            raise ValueError(f"initial ({self.initial}) is more than evaluations ({self.evaluations})")
        return self


class OptimizeTask(reflow.LabTask):
    """Optimize objectives over a space with an optimizer (BoTorch, pymoo, a design) and an evaluator.

    Outputs: ``trials`` (every evaluation with status, error, batch and the acquisition that chose it),
    ``best`` (the best feasible trial, or the Pareto set for several objectives) and ``history``
    (best value or hypervolume after each evaluation). With ``verify: {evaluate: ...}`` the chosen designs are
    evaluated again with that (true) evaluator after the optimization: output ``verify`` and ``verify_*`` metrics.

    ``recommend: <objective>`` names the one design to build: the feasible trial best on that objective (with
    several objectives, the end of the Pareto front that the other objectives were traded for, under the
    constraints). With ``verify`` it is chosen among the verified designs by their true values, so a design the
    optimizer's evaluator only thought feasible is never recommended. Metrics ``recommended_trial``,
    ``recommended_by`` (verify or optimizer), ``recommended_<parameter>`` and ``recommended_<output>`` for every
    objective and constrained output.
    """

    outputs = ("trials", "best", "history", "verify")

    class Params(reflow.Params):
        space: dict[str, ParameterSpec] = Field(description="the parameters: {low, high} | {choices} | {value}")
        evaluate: EvaluatorPipeline = Field(description="an evaluator, a pipeline of them, or {lab: {outputs}}")
        optimizer: OptimizerSpec = Field(description="qlognei, qnehvi, qparego, active-learning, nsga2, nsga3, "
                                                     "or a design (sobol, lhs, random) as a baseline")
        objectives: dict[str, Literal["min", "max"] | ObjectiveSpec] = Field(
            description="outputs to minimize or maximize: {warpage_um: min} or {warpage_um: {goal: min, "
                        "reference: 80}}")
        constraints: list[str] = Field(default_factory=list, description="outcome constraints "
                                       "(max_stress_mpa <= 120) and linear parameter constraints (a + b + c == 1)")
        budget: Budget = Field(default_factory=Budget, description="initial, evaluations, batch_size, initial_design")
        verify: VerifySpec | None = Field(None, description="re-evaluate the chosen designs with a true evaluator: "
                                                            "{evaluate: ..., designs: pareto | best | all, max: 20}")
        recommend: str | None = Field(None, description="an objective: its best feasible design (among the verified "
                                                        "ones, by their true values, when verify is given) becomes "
                                                        "the recommended_* metrics")
        max_failed: float = max_failed_field()

    # ---- validation ---------------------------------------------------------------------------------
    def check(self, check: Any) -> None:
        p = self.params
        free = [n for n, s in p.space.items() if s.value is None]
        if not free:
            check.problem(("space",), "the space needs at least one parameter that varies")
        check_space_inputs(check, list(p.space), p.evaluate)
        too_big = design_size_problem("evaluations", p.budget.evaluations, Space.from_specs(p.space))
        if too_big:
            check.problem(("budget", "evaluations"), too_big)
        pipeline = pipeline_for_check(check, p.evaluate)
        outputs = [v.name for v in pipeline.output_variables()] if pipeline is not None else []
        if pipeline is not None and any(s.manual for s in pipeline.steps) and len(pipeline.steps) > 1:
            check.problem(("evaluate",), "a lab is the only step of its stage (its results come from people)")
        for i, text in enumerate(p.constraints):
            try:
                c = parse_constraint(text)
            except ExpressionError as exc:
                check.problem(("constraints", i), str(exc))
                continue
            in_space = [n for n in c.names if n in p.space]
            if in_space and len(in_space) != len(c.names):
                check.problem(("constraints", i), f"{text!r} mixes parameters ({', '.join(in_space)}) and outputs")
            elif not in_space:
                if c.op == "==":
                    check.problem(("constraints", i), f"{text!r}: an outcome constraint is an inequality (<=, >=)")
                unknown = [n for n in c.names if outputs and n not in outputs]
                if unknown:
                    check.problem(("constraints", i), f"{', '.join(unknown)} is not an output of the evaluator "
                                                      f"(outputs: {', '.join(outputs)}) nor a parameter of the "
                                                      f"space{did_you_mean(unknown[0], outputs + list(p.space))}")
        for name in p.objectives:  # an objective is an evaluator output or a space parameter (the trial's input)
            if outputs and name not in outputs and name not in p.space:
                check.problem(("objectives", name), f"{name!r} is not an output of the evaluator "
                                                    f"(outputs: {', '.join(outputs)}) nor a parameter of the "
                                                    f"space{did_you_mean(name, outputs + list(p.space))}")
        on_inputs = [n for n in p.objectives if n in p.space]
        if p.verify is not None and on_inputs:
            check.problem(("verify",), f"objective(s) {', '.join(on_inputs)} are parameters of the space: their "
                                       "values are exact, there is nothing to verify; leave verify out")
        cls = check.component_class(ComponentSpec("optimizer", p.budget.initial_design))
        if cls is None or not issubclass(cls, Design):
            check.problem(("budget", "initial_design"), f"{p.budget.initial_design!r} is not a design of "
                                                        "experiments (sobol, lhs, random, halton)")
        try:
            self.problem()
        except (UserInputError, ExpressionError) as exc:
            check.problem(("constraints",), str(exc))
        opt = check.component_class(p.optimizer)
        if opt is not None and issubclass(opt, Optimizer):  # a design as the optimizer needs neither check
            if p.budget.initial < opt.min_initial:
                check.problem(("budget", "initial"), f"{p.optimizer.name} needs at least {opt.min_initial} initial "
                                                     f"evaluations before its first ask (got {p.budget.initial})")
            if opt.max_objectives is not None and len(p.objectives) > opt.max_objectives:
                most = "one objective" if opt.max_objectives == 1 else f"at most {opt.max_objectives} objectives"
                several = "several" if opt.max_objectives == 1 else str(len(p.objectives))
                check.problem(("optimizer",), f"{p.optimizer.name} optimizes {most}; use qnehvi or qparego for "
                                              f"{several}")
        if p.recommend is not None and p.recommend not in p.objectives:
            check.problem(("recommend",), f"{p.recommend!r} is not an objective (objectives: "
                                          f"{', '.join(p.objectives)})")
        if p.verify is not None:
            if pipeline is not None and any(s.manual for s in pipeline.steps):
                check.problem(("verify",), "a lab stage measures true values already: there is nothing to verify")
            check_verify(check, p.verify, list(p.space), list(p.objectives))

    def problem(self) -> OptimizationProblem:
        """The objectives, outcome constraints and parameter constraints over the space, parsed."""
        p = self.params
        space = Space.from_specs(p.space)
        objectives = [Objective(n, o if isinstance(o, str) else o.goal, None if isinstance(o, str) else o.reference)
                      for n, o in p.objectives.items()]
        parsed = [parse_constraint(t) for t in p.constraints]
        params = [c for c in parsed if all(n in p.space for n in c.names)]
        outcomes = [c for c in parsed if c not in params]
        return OptimizationProblem(space, objectives, outcomes, params)

    # ---- running -----------------------------------------------------------------------------------
    def run(self, ctx: RunContext) -> reflow.StageResult:
        loop = OptimizeLoop(self, ctx)
        if loop.manual:
            told = len(loop.told)
            if told < self.params.budget.evaluations:
                run_dir = ctx.run.dir
                raise WaitingForResults(
                    f"stage {ctx.stage!r} waits for lab results ({told} of {self.params.budget.evaluations} "
                    f"measured). Next: reflow ask {run_dir} --stage {ctx.stage} -n {self.params.budget.batch_size}"
                    f" --out next.csv; fill in the measurements; reflow tell {run_dir} --stage {ctx.stage} "
                    f"next.csv; then reflow run --resume {run_dir}")
            result = loop.result()
            result.metrics.update(self._recommendation(result, loop.problem, ctx))
            return result
        verifier = build_verifier(self.params.verify, list(self.params.objectives), ctx) if self.params.verify \
            else None
        loop.run()
        result = loop.result()
        say_failures(result.outputs["trials"], ctx, self.params.max_failed, resume_retries=False)
        if verifier is None:
            result.metrics.update(self._recommendation(result, loop.problem, ctx))
            return result
        trials = result.outputs["trials"]
        space = loop.problem.space

        def inputs_of(i: int) -> dict[str, Any]:
            return {prm.name: prm.as_choice(plain(trials[prm.name].values[i])) for prm in space.parameters}

        checked = verify_designs(verifier, self.params.verify, trials, loop.problem, ctx, inputs_of)
        say_failures(checked, ctx, self.params.max_failed, part="verify", what="verify evaluations",
                     journal=ctx.store.journal_path(VERIFY_JOURNAL).name)
        result.outputs["verify"] = checked
        result.metrics.update(verify_metrics(checked, [o.name for o in loop.problem.objectives]))
        recommended = self._recommendation(result, loop.problem, ctx)
        result.metrics.update(recommended)
        # the verified values are the result: the optimizer's own best (a surrogate's) stays in the metrics below
        trial = recommended.get("recommended_trial") if recommended.get("recommended_by") == "verify" else None
        result.metrics = {"headline": verified_headline(checked, loop.problem, trial), **result.metrics}
        return result

    def _recommendation(self, result: reflow.StageResult, problem: OptimizationProblem,
                        ctx: RunContext) -> dict[str, Any]:
        """The ``recommended_*`` metrics (empty without ``recommend``)."""
        if self.params.recommend is None:
            return {}
        out = recommend(result.outputs["trials"], problem, self.params.recommend, result.outputs.get("verify"))
        if "recommended_trial" not in out:
            ctx.logger.warning("stage %s: no %sdesign is feasible: nothing to recommend", ctx.stage,
                               "verified " if out.get("recommended_by") == "verify" else "")
            out["recommended_by"] = "none"
        return out

    # ---- the lab protocol (reflow ask / reflow tell) ------------------------------------------------
    def lab_columns(self, ctx: RunContext) -> tuple[Space, dict[str, str]] | None:
        """The space and the measured outputs with their units (what a results CSV must hold); None when code,
        not people, produces this stage's results."""
        pipeline = build_evaluator(self.params.evaluate, ctx)
        if not any(s.manual for s in pipeline.steps):
            return None
        return Space.from_specs(self.params.space), {v.name: v.units for v in pipeline.output_variables()}

    def lab_ask(self, ctx: RunContext, n: int) -> Any:
        """The next ``n`` lab experiments (recorded as asked): a Dataset on dim ``trial``."""
        return OptimizeLoop(self, ctx).ask_lab(n)

    def lab_tell(self, ctx: RunContext, records: list[dict[str, Any]]) -> None:
        """Store measured trials (already validated against the asked experiments)."""
        ctx.store.journal().append(records)

    def lab_journals(self, ctx: RunContext) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """(asked, told) records of a lab stage."""
        return ctx.store.read_journal(ASKED), ctx.store.read_journal()

    def lab_budget(self) -> int:
        """The stage's evaluation budget: ``reflow tell`` says how many of them are measured."""
        return self.params.budget.evaluations

    # ---- plots -----------------------------------------------------------------------------------
    def plot(self, result: reflow.StageResult, folder: Path) -> list[Path]:
        trials = result.outputs["trials"]
        problem = self.problem()
        objectives = [o.name for o in problem.objectives]
        paths = [plot_convergence(result.outputs["history"], trials, problem, folder)]
        if len(problem.objectives) > 1:
            paths.append(plot_front(trials, problem, folder))
        paths.append(plot_parameters(trials, problem, folder))
        paths += plot_trials(trials, [prm.name for prm in problem.free], objectives, folder)
        if "verify" in result.outputs:
            paths.append(plot_verify(result.outputs["verify"], objectives, folder))
        return [p for p in paths if p is not None]

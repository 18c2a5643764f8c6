"""Task ``optimize``: design optimization against a simulation, a trained surrogate or a lab.

The loop (pymoo's ask/tell template): evaluate an initial space-filling design, then ask the optimizer
for ``batch_size`` points at a time, evaluate them through the study's executor (in parallel), tell the
optimizer, until ``budget.evaluations`` points have been evaluated. Failed evaluations keep their error,
are left out of model fitting and count against the budget.

Crash safety: every asked point is appended to ``asked.jsonl`` before it is evaluated and every finished
trial to ``trials.jsonl`` as soon as it finishes; ``reflow run --resume`` evaluates the points that were
asked but never finished, tells the optimizer what finished, and goes on: no point is evaluated twice and
none is lost. Lab mode (``evaluate: {lab: ...}``): the stage waits; ``reflow ask`` and ``reflow tell``
move experiments and measurements in and out of the same two journals.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
import reflow
from pydantic import BaseModel, ConfigDict, Field, model_validator
from reflow.components import Design
from reflow.errors import UserInputError, WaitingForResults
from reflow.evaluation import build_evaluator, evaluate_trials, records_to_dataset
from reflow.expressions import ExpressionError, parse_constraint
from reflow.problem import Objective, OptimizationProblem
from reflow.space import ParameterSpec, Space, design_size_problem
from reflow.specs import EvaluatorPipeline, OptimizerSpec
from reflow.store import TrialJournal, atomic_write_text

from ._pareto import best_history, hypervolume_history, pareto_mask, reference_point
from ._trials import check_space_inputs, max_failed_field, pipeline_for_check, plot_trials, say_failures
from ._verify import VerifySpec, build_verifier, check_verify, plot_verify, verify_designs, verify_metrics

ASKED = "asked.jsonl"
TOLD = "trials.jsonl"


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


class OptimizeTask(reflow.Task):
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
    def check(self, check):
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
                                                      f"space{_did_you_mean(unknown[0], outputs + list(p.space))}")
        for name in p.objectives:  # an objective is an evaluator output or a space parameter (the trial's input)
            if outputs and name not in outputs and name not in p.space:
                check.problem(("objectives", name), f"{name!r} is not an output of the evaluator "
                                                    f"(outputs: {', '.join(outputs)}) nor a parameter of the "
                                                    f"space{_did_you_mean(name, outputs + list(p.space))}")
        on_inputs = [n for n in p.objectives if n in p.space]
        if p.verify is not None and on_inputs:
            check.problem(("verify",), f"objective(s) {', '.join(on_inputs)} are parameters of the space: their "
                                       "values are exact, there is nothing to verify; leave verify out")
        cls = check.component_class(_spec(p.budget.initial_design))
        if cls is None or not issubclass(cls, Design):
            check.problem(("budget", "initial_design"), f"{p.budget.initial_design!r} is not a design of "
                                                        "experiments (sobol, lhs, random, halton)")
        try:
            self.problem()
        except (UserInputError, ExpressionError) as exc:
            check.problem(("constraints",), str(exc))
        opt = check.component_class(p.optimizer)
        if opt is not None and getattr(opt, "needs_initial_population", False) and p.budget.initial < 4:
            check.problem(("budget", "initial"), f"{p.optimizer.name} evolves a population: give at least 4 "
                                                 f"initial evaluations (got {p.budget.initial})")
        if opt is not None and opt.__name__ == "QLogNEI" and len(p.objectives) > 1:
            check.problem(("optimizer",), "qlognei optimizes one objective; use qnehvi or qparego for several")
        if p.recommend is not None and p.recommend not in p.objectives:
            check.problem(("recommend",), f"{p.recommend!r} is not an objective (objectives: "
                                          f"{', '.join(p.objectives)})")
        if p.verify is not None:
            if pipeline is not None and any(s.manual for s in pipeline.steps):
                check.problem(("verify",), "a lab stage measures true values already: there is nothing to verify")
            check_verify(check, p.verify, list(p.space), list(p.objectives))

    def problem(self) -> OptimizationProblem:
        p = self.params
        space = Space.from_specs(p.space)
        objectives = [Objective(n, o if isinstance(o, str) else o.goal, None if isinstance(o, str) else o.reference)
                      for n, o in p.objectives.items()]
        parsed = [parse_constraint(t) for t in p.constraints]
        params = [c for c in parsed if all(n in p.space for n in c.names)]
        outcomes = [c for c in parsed if c not in params]
        return OptimizationProblem(space, objectives, outcomes, params)

    # ---- running -----------------------------------------------------------------------------------
    def run(self, ctx):
        loop = _Loop(self, ctx)
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
        if verifier is not None:
            trials = result.outputs["trials"]
            space = loop.problem.space

            def inputs_of(i: int) -> dict[str, Any]:
                return {prm.name: _choice(prm, _py(trials[prm.name].values[i])) for prm in space.parameters}

            checked = verify_designs(verifier, self.params.verify, trials, loop.problem, ctx, inputs_of)
            say_failures(checked, ctx, self.params.max_failed, part="verify", what="verify evaluations",
                         journal="verify.jsonl")
            result.outputs["verify"] = checked
            result.metrics.update(verify_metrics(checked, [o.name for o in loop.problem.objectives]))
        result.metrics.update(self._recommendation(result, loop.problem, ctx))
        return result

    def _recommendation(self, result, problem: OptimizationProblem, ctx) -> dict[str, Any]:
        """The ``recommended_*`` metrics (empty without ``recommend``)."""
        if self.params.recommend is None:
            return {}
        out = recommend(result.outputs["trials"], problem, self.params.recommend, result.outputs.get("verify"))
        if "recommended_trial" not in out:
            ctx.logger.warning("stage %s: no %sdesign is feasible: nothing to recommend", ctx.stage,
                               "verified " if out.get("recommended_by") == "verify" else "")
            out["recommended_by"] = "none"
        return out

    def lab_ask(self, ctx, n: int) -> Any:
        """The next ``n`` lab experiments (recorded as asked): a Dataset on dim ``trial``."""
        return _Loop(self, ctx).ask_lab(n)

    def lab_tell(self, ctx, records: list[dict[str, Any]]) -> None:
        """Store measured trials (already validated against the asked experiments)."""
        TrialJournal(ctx.folder / TOLD).append(records)

    def lab_columns(self, ctx) -> tuple[Space, dict[str, str]] | None:
        """The space and the measured outputs with their units (what a results CSV must hold); None when code,
        not people, produces this stage's results."""
        pipeline = build_evaluator(self.params.evaluate, ctx)
        if not any(getattr(s, "manual", False) for s in pipeline.steps):
            return None
        return Space.from_specs(self.params.space), {v.name: v.units for v in pipeline.output_variables()}

    @staticmethod
    def lab_journals(ctx) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """(asked, told) records of a lab stage."""
        return TrialJournal(ctx.folder / ASKED).read(), TrialJournal(ctx.folder / TOLD).read()

    # ---- plots -----------------------------------------------------------------------------------
    def plot(self, result, folder: Path):
        trials = result.outputs["trials"]
        problem = self.problem()
        paths = [_plot_convergence(result.outputs["history"], trials, problem, folder)]
        if len(problem.objectives) > 1:
            paths.append(_plot_front(trials, problem, folder))
        paths.append(_plot_parameters(trials, problem, folder))
        inputs = [prm.name for prm in problem.free]
        paths += plot_trials(trials, inputs, [o.name for o in problem.objectives], folder)
        if "verify" in result.outputs:
            paths.append(plot_verify(result.outputs["verify"], [o.name for o in problem.objectives], folder))
        return [p for p in paths if p is not None]


def _spec(name: str):
    from reflow.specs import ComponentSpec

    return ComponentSpec("optimizer", name)


class _Loop:
    """One optimize stage's state: the problem, the optimizer, the evaluator and the two journals."""

    def __init__(self, task: OptimizeTask, ctx):
        from reflow.registry import get_registry

        self.task, self.ctx, self.p = task, ctx, task.params
        self.problem = task.problem()
        self.pipeline = build_evaluator(self.p.evaluate, ctx)
        self.manual = any(getattr(s, "manual", False) for s in self.pipeline.steps)
        _check_metric_names(self.problem, self.pipeline, ctx.stage)
        self.asked_journal = TrialJournal(ctx.folder / ASKED)
        self.told_journal = TrialJournal(ctx.folder / TOLD)
        self.asked = {r["trial"]: r for r in self.asked_journal.read()}
        self.told = {r["trial"]: r for r in self.told_journal.read()}
        for t, r in self.told.items():  # a told trial whose asked line was damaged was asked all the same
            self.asked.setdefault(t, {"trial": t, "inputs": r["inputs"], "batch": r.get("batch", 0),
                                      "acquisition": "", "seconds": 0.0})
        registry = get_registry()
        optimizer = self.p.optimizer.create(registry)
        initial = self.p.budget.initial
        if isinstance(optimizer, Design):  # a design as the optimizer: the whole budget is space-filling
            self.initial_design, self.optimizer, initial = optimizer, None, self.p.budget.evaluations
        else:
            self.initial_design = registry.get(self.p.budget.initial_design, "optimizer").cls()
            self.optimizer = optimizer
            optimizer.setup(self.problem, ctx.seed)
            state_path = ctx.folder / "optimizer.json"
            if state_path.exists():
                optimizer.restore(json.loads(state_path.read_text()))
        self.initial = initial
        self.units = {prm.name: prm.units for prm in self.problem.space.parameters}
        self.units.update({v.name: v.units for v in self.pipeline.output_variables()})
        if self.optimizer is not None and self.told:
            self.optimizer.tell(self.dataset(list(self.told.values())))

    # ---- datasets ----
    def dataset(self, records: list[dict[str, Any]]):
        # an objective or constraint on a space parameter reads the trial's input column, not an (absent) output
        inputs = set(self.problem.space.names)
        outputs = [n for n in dict.fromkeys([*(v.name for v in self.pipeline.output_variables()),
                                             *self.problem.metric_names]) if n not in inputs]
        ds = records_to_dataset(records, self.problem.space.names, outputs, self.units)
        ds["acquisition"] = ("trial", np.array([self.asked.get(int(t), {}).get("acquisition", "")
                                                for t in ds["trial"].values], dtype=str))
        ds["suggest_seconds"] = ("trial", np.array([self.asked.get(int(t), {}).get("seconds", 0.0)
                                                    for t in ds["trial"].values], dtype=float))
        return ds

    def _initial_rows(self, rows: list[int]) -> tuple[np.ndarray, str]:
        from reflow.sampling import space_filling

        design = self.initial_design
        if "samples" in type(design.params).model_fields:
            design = type(design)(design.params.model_copy(update={"samples": self.initial}))
        center = self.p.budget.center and self.optimizer is not None
        unit = space_filling(self.problem, self.initial, self.ctx.seed, design, center=center)
        return unit[rows], f"initial design ({self.p.budget.initial_design if self.optimizer else 'design'})"

    def _new_points(self, n: int, pending: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Ask for ``n`` points (initial design first) and record them as asked before anything runs."""
        start = len(self.asked)
        # ids are handed out densely from 0 (an initial point's id is its row of the design); an id missing from
        # both journals was asked on a line since damaged and never finished: it is handed out again, then new ones
        top = max(self.asked, default=-1) + 1
        ids = ([t for t in range(top) if t not in self.asked] + list(range(top, top + n)))[:n]
        batch = max((r["batch"] for r in self.asked.values()), default=-1) + 1
        records: list[dict[str, Any]] = []
        k = min(n, max(self.initial - start, 0))
        if k:
            t0 = time.perf_counter()
            unit, label = self._initial_rows(ids[:k])
            values = self.problem.decode(unit)
            seconds = (time.perf_counter() - t0) / k  # a suggestion too: the timing metrics count every one
            records += [{"inputs": {name: _py(values[name][i]) for name in values}, "acquisition": label,
                         "seconds": seconds} for i in range(k)]
        if n - k > 0:
            pend = self.dataset_of_inputs(pending + [{"trial": -1 - i, **r} for i, r in enumerate(records)])
            t0 = time.perf_counter()
            ds = self.optimizer.ask(n - k, self.ctx, pending=pend)
            seconds = (time.perf_counter() - t0) / (n - k)
            # the state after this ask (a GP's warm start) is what a resume needs to ask the next batch alike
            atomic_write_text(self.ctx.folder / "optimizer.json", json.dumps(self.optimizer.state()))
            label = str(ds.attrs.get("acquisition", self.p.optimizer.name))
            by_name = self.problem.space.by_name
            records += [{"inputs": {name: _choice(by_name[name], _py(ds[name].values[i]))
                                    for name in self.problem.space.names},
                         "acquisition": label, "seconds": seconds} for i in range(n - k)]
        for i, rec in enumerate(records):
            rec.update(trial=ids[i], batch=batch, asked=time.time())
        self.asked_journal.append(records)
        self.asked.update({r["trial"]: r for r in records})
        return records

    def dataset_of_inputs(self, records: list[dict[str, Any]]):
        if not records:
            return None
        return self.problem.space.to_dataset({n: np.array([r["inputs"][n] for r in records], dtype=object)
                                              for n in self.problem.space.names})

    def _evaluate(self, records: list[dict[str, Any]], bar) -> None:
        rows = [(r["trial"], dict(r["inputs"])) for r in records]
        done = evaluate_trials(self.pipeline, rows, self.ctx, on_done=self.told_journal.append,
                               batch=records[0]["batch"], bar=bar)
        self.told.update({r["trial"]: r for r in done})
        ds = self.dataset(done)
        if self.optimizer is not None:
            self.optimizer.tell(ds)
            atomic_write_text(self.ctx.folder / "optimizer.json", json.dumps(self.optimizer.state()))
        self.ctx.trial_batch(ds)

    def run(self) -> None:
        budget = self.p.budget
        with self.ctx.progress(total=budget.evaluations, description=f"{self.ctx.stage}: optimizing") as bar:
            bar.advance(len(self.told))
            outstanding = [self.asked[t] for t in sorted(self.asked) if t not in self.told]
            if outstanding:  # asked before a crash, never finished: evaluate them first, once
                self.ctx.logger.info("stage %s: %d asked points left unfinished; evaluating them", self.ctx.stage,
                                     len(outstanding))
                for b in sorted({r["batch"] for r in outstanding}):
                    self._evaluate([r for r in outstanding if r["batch"] == b], bar)
            while len(self.asked) < budget.evaluations:
                start = len(self.asked)
                n = self.initial - start if start < self.initial else budget.batch_size
                n = min(n, budget.evaluations - start)
                self._evaluate(self._new_points(n, []), bar)

    def ask_lab(self, n: int):
        budget = self.p.budget
        left = budget.evaluations - len(self.asked)
        if n < 1:
            raise UserInputError(f"-n must be at least 1, got {n}")
        if n > left:
            raise UserInputError(f"the budget is {budget.evaluations} evaluations and {len(self.asked)} were asked "
                                 f"already: ask for at most {left}" if left else
                                 f"the budget of {budget.evaluations} evaluations is asked for; tell the results and "
                                 "run reflow run --resume RUN_DIR")
        pending = [self.asked[t] for t in sorted(self.asked) if t not in self.told]
        records = self._new_points(n, pending)
        return self.dataset_of_inputs(records).assign_coords(trial=[r["trial"] for r in records])

    # ---- the result ----
    def result(self):
        records = [self.told[t] for t in sorted(self.told)]
        trials = self.dataset(records)
        problem = self.problem
        trials.attrs.update(inputs=problem.space.names, outputs=[o.name for o in problem.objectives],
                            optimizer=self.p.optimizer.name)
        values = problem.objective_values(trials) if len(records) else np.zeros((0, len(problem.objectives)))
        feasible = problem.feasible(trials) if len(records) else np.zeros(0, dtype=bool)
        feasible &= np.all(np.isfinite(values), axis=1)
        metrics: dict[str, Any] = {"evaluations": len(records), "failed": int((trials["status"] == "failed").sum()),
                                   "feasible": int(feasible.sum())}
        metrics.update(suggestion_metrics(trials["suggest_seconds"].values))
        metrics.update(self._model_report(trials))
        evaluation = np.arange(1, len(records) + 1)
        if len(problem.objectives) == 1:
            obj = problem.objectives[0]
            best = best_history(values[:, 0], feasible) * obj.sign
            history = {f"best_{obj.name}": ("evaluation", best)}
            if feasible.any():
                i = int(np.nanargmax(np.where(feasible, values[:, 0], np.nan)))
                chosen = trials.isel(trial=[i])
                metrics[f"best_{obj.name}"] = float(trials[obj.name].values[i])
                metrics["best_trial"] = int(trials["trial"].values[i])
            else:
                chosen = trials.isel(trial=[])
        else:
            given = [o.sign * o.reference if o.reference is not None else None for o in problem.objectives]
            ref = reference_point(values[feasible], given)
            hv = hypervolume_history(values, feasible, ref)
            history = {"hypervolume": ("evaluation", hv)}
            front = np.flatnonzero(feasible)[pareto_mask(values[feasible])] if feasible.any() else np.zeros(0, int)
            chosen = trials.isel(trial=front)
            metrics["hypervolume"] = float(hv[-1]) if len(hv) else 0.0
            metrics["pareto_points"] = int(len(front))
            trials.attrs["reference_point"] = [float(o.sign * r) for o, r in zip(problem.objectives, ref, strict=True)]
        metrics.update(self._reference_report(values, feasible))
        import xarray as xr

        hist = xr.Dataset(history, coords={"evaluation": evaluation})
        hist["trial"] = ("evaluation", trials["trial"].values)
        hist["initial"] = ("evaluation", np.array([a.startswith("initial design") for a in
                                                   trials["acquisition"].values], dtype=bool))
        return reflow.StageResult({"trials": trials, "best": chosen, "history": hist}, metrics)

    def _reference_report(self, values: np.ndarray, feasible: np.ndarray) -> dict[str, Any]:
        """Given references: ``trials_beating_reference`` (feasible trials better than every given reference),
        and a warning line while none does (the hypervolume is then 0: the reference is never replaced)."""
        objs = self.problem.objectives
        given = [(j, o) for j, o in enumerate(objs) if o.reference is not None]
        if not given:
            return {}
        beats = feasible.copy()
        for j, o in given:
            beats &= values[:, j] > o.sign * o.reference
        n = int(beats.sum())
        if not n and len(values):
            refs = ", ".join(f"{o.name} {'<' if o.goal == 'min' else '>'} {o.reference:g}" for _, o in given)
            self.ctx.logger.warning("stage %s: no feasible trial of %d beats the given reference (%s)%s; it is kept "
                                    "as the reference and as the target the optimizer steers to", self.ctx.stage,
                                    len(values), refs, ": hypervolume 0" if len(objs) > 1 else "")
        return {"trials_beating_reference": n}

    def _model_report(self, trials) -> dict[str, Any]:
        """The Bayesian optimizer's report: each output's outcome transform (metrics and the trials' attrs) and
        the count of numerical warnings (GPyTorch's "not p.d., added jitter" and the like)."""
        report = getattr(self.optimizer, "report", None)
        if not callable(report):
            return {}
        rep = report()
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


def suggestion_metrics(seconds: np.ndarray) -> dict[str, float]:
    """Median, mean and max seconds per suggestion over every suggestion (the initial design's too): the median
    alone hides a slow first model-based ask. Trials asked before suggestions were timed (0 s) are left out."""
    s = np.asarray(seconds, dtype=float)
    s = s[np.isfinite(s) & (s > 0)]
    if not s.size:
        return {}
    return {"seconds_per_suggestion": float(np.median(s)), "seconds_per_suggestion_mean": float(np.mean(s)),
            "seconds_per_suggestion_max": float(np.max(s))}


def recommend(trials, problem: OptimizationProblem, objective: str, verified=None) -> dict[str, Any]:
    """The feasible design best on ``objective`` as metrics: ``recommended_trial``, ``recommended_by``,
    ``recommended_<parameter>`` and ``recommended_<output>`` (objectives and constrained outputs).

    With ``verified`` (the verify output) only its successful rows compete, judged by their true values; ties on
    ``objective`` go to the design the other objectives rank best (the first non-dominated one)."""
    import xarray as xr

    names = problem.metric_names
    if verified is not None:
        ok = verified["status"].values == "ok"
        rows = verified.isel(trial=np.flatnonzero(ok))
        table = xr.Dataset({n: ("trial", np.asarray(rows[f"{n}_true"].values, dtype=float)) for n in names},
                           coords={"trial": rows["trial"].values})
        source = "verify"
    else:
        table, source = trials, "optimizer"
    out: dict[str, Any] = {"recommended_by": source}
    if not table.sizes.get("trial", 0):
        return out
    values = problem.objective_values(table)
    feasible = problem.feasible(table) & np.all(np.isfinite(values), axis=1)
    if not feasible.any():
        return out
    j = [o.name for o in problem.objectives].index(objective)
    candidates = np.flatnonzero(feasible & (values[:, j] == np.max(values[feasible, j])))
    best = int(candidates[pareto_mask(values[candidates])][0])
    trial = int(table["trial"].values[best])
    out["recommended_trial"] = trial
    row = trials.sel(trial=trial)
    for prm in problem.free:
        out[f"recommended_{prm.name}"] = _py(row[prm.name].values[()])
    for name in names:
        out[f"recommended_{name}"] = float(table[name].values[best])
    return out


def _py(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _check_metric_names(problem: OptimizationProblem, pipeline, stage: str) -> None:
    """Before any evaluation: every objective and constrained name is an output of the evaluator (a trained
    model's ``<target>_std`` included) or a space parameter. Validation checks this where it knows the outputs;
    a trained stage's (``{stage: ...}``) are known only here. An evaluator that declares no outputs (a python
    function without ``outputs``) is checked on every evaluation instead."""
    declared = [v.name for v in pipeline.output_variables()]
    if not declared:
        return
    known = set(declared) | {f"{n}_std" for n in declared} | set(problem.space.names)
    unknown = [n for n in problem.metric_names if n not in known]
    if unknown:
        raise UserInputError(f"stage {stage}: {unknown[0]!r} is not an output of the evaluator (outputs: "
                             f"{', '.join(declared)}) nor a parameter of the space"
                             f"{_did_you_mean(unknown[0], declared + list(problem.space.names))}")


def _did_you_mean(name: str, known: list[str]) -> str:
    import difflib

    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _choice(parameter, value: Any) -> Any:
    """A categorical value as the study wrote the choice (a Dataset hands numeric choices back as floats)."""
    if parameter.kind != "categorical":
        return value
    return next((c for c in parameter.choices if c == value or str(c) == str(value)), value)


# ---- figures -------------------------------------------------------------------------------------------
def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, path: Path, dpi: int = 110) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def _plot_convergence(history, trials, problem: OptimizationProblem, folder: Path) -> Path | None:
    if not history.sizes.get("evaluation"):
        return None
    plt = _figure()
    name = next(iter(n for n in history.data_vars if n not in ("trial", "initial")))
    fig, ax = plt.subplots(figsize=(6.5, 4))
    x = history["evaluation"].values
    ax.step(x, history[name].values, where="post", color="#c44e52", lw=2)
    n_initial = int(history["initial"].values.sum())
    if n_initial:
        ax.axvspan(0.5, n_initial + 0.5, color="0.9", label="initial design")
        ax.legend(loc="lower right")
    ax.set_xlabel("evaluations")
    ax.set_ylabel(name.replace("_", " "))
    ax.set_title("convergence: " + ("hypervolume of the feasible trials" if name == "hypervolume"
                                    else f"best feasible {problem.objectives[0].name} so far"))
    ax.grid(alpha=0.3)
    return _save(plt, fig, folder / "convergence.png", dpi=110)


def _plot_front(trials, problem: OptimizationProblem, folder: Path) -> Path | None:
    ok = trials["status"].values == "ok"
    if ok.sum() < 2:
        return None
    plt = _figure()
    names = [o.name for o in problem.objectives]
    raw = np.column_stack([trials[n].values.astype(float) for n in names])
    values = problem.objective_values(trials)
    feasible = problem.feasible(trials) & np.all(np.isfinite(values), axis=1)
    front = np.zeros(len(raw), dtype=bool)
    if feasible.any():
        front[np.flatnonzero(feasible)[pareto_mask(values[feasible])]] = True
    if len(names) == 2:
        fig, ax = plt.subplots(figsize=(6, 5))
        order = np.arange(len(raw))
        sc = ax.scatter(raw[feasible, 0], raw[feasible, 1], c=order[feasible], cmap="Blues", s=28,
                        edgecolor="0.4", linewidth=0.3, label="feasible")
        infeasible = ok & ~feasible
        if infeasible.any():
            ax.scatter(raw[infeasible, 0], raw[infeasible, 1], marker="x", color="0.5", label="infeasible")
        f = raw[front][np.argsort(raw[front, 0])]
        ax.plot(f[:, 0], f[:, 1], "o-", color="#c44e52", ms=7, label="Pareto front")
        fig.colorbar(sc, ax=ax, label="evaluation")
        ax.set_xlabel(f"{names[0]} ({problem.objectives[0].goal})")
        ax.set_ylabel(f"{names[1]} ({problem.objectives[1].goal})")
        ax.legend()
        ax.set_title(f"Pareto front: {int(front.sum())} of {int(ok.sum())} trials")
    else:  # parallel coordinates of every feasible trial, the Pareto set in colour
        fig, ax = plt.subplots(figsize=(1.8 * len(names) + 2, 4.5))
        lo, hi = np.nanmin(raw[ok], axis=0), np.nanmax(raw[ok], axis=0)
        scaled = (raw - lo) / np.where(hi > lo, hi - lo, 1.0)
        for i in np.flatnonzero(feasible & ~front):
            ax.plot(range(len(names)), scaled[i], color="0.8", lw=0.8)
        for i in np.flatnonzero(front):
            ax.plot(range(len(names)), scaled[i], color="#c44e52", lw=1.5)
        ax.set_xticks(range(len(names)), [f"{n}\n({o.goal})" for n, o in zip(names, problem.objectives,
                                                                             strict=True)])
        ax.set_ylabel("scaled value (0 = lowest seen)")
        ax.set_title(f"Pareto set (red, {int(front.sum())} trials) in parallel coordinates")
    return _save(plt, fig, folder / "pareto_front.png", dpi=110)


def _plot_parameters(trials, problem: OptimizationProblem, folder: Path) -> Path | None:
    ok = trials["status"].values == "ok"
    params = [prm for prm in problem.free]
    if ok.sum() < 1 or not params:
        return None
    plt = _figure()
    objs = problem.objectives
    fig, axes = plt.subplots(len(objs), len(params), figsize=(2.6 * len(params) + 1, 2.4 * len(objs) + 0.6),
                             squeeze=False)
    order = np.arange(trials.sizes["trial"])[ok]
    for i, o in enumerate(objs):
        y = trials[o.name].values[ok].astype(float)
        for j, prm in enumerate(params):
            ax = axes[i, j]
            x = trials[prm.name].values[ok]
            if prm.kind == "categorical":
                codes = {c: k for k, c in enumerate(prm.choices)}
                x = np.array([codes.get(v, codes.get(str(v), -1)) for v in x], dtype=float)
                ax.set_xticks(range(len(prm.choices)), [str(c) for c in prm.choices], rotation=30, fontsize=7)
            ax.scatter(x, y, c=order, cmap="viridis", s=12)
            if i == len(objs) - 1:
                ax.set_xlabel(f"{prm.name} [{prm.units}]" if prm.units else prm.name, fontsize=8)
            if j == 0:
                ax.set_ylabel(o.name, fontsize=8)
            ax.tick_params(labelsize=7)
    fig.suptitle("each parameter against each objective (colour: evaluation order)", fontsize=10)
    return _save(plt, fig, folder / "parameters_vs_objectives.png", dpi=100)

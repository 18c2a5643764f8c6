"""The ask/tell loop of the ``optimize`` task: initial design, optimizer, evaluations and the two journals.

Every asked point is appended to the stage's ``asked`` journal before it is evaluated and every finished trial
to its trials journal as soon as it finishes (both through :class:`reflow.store.StageStore`), so a resumed
stage evaluates the points asked but never finished, tells the optimizer what finished, and goes on: no point
is evaluated twice and none is lost. A lab stage moves points in and out of the same two journals through
``reflow ask``/``tell`` instead of :meth:`OptimizeLoop.run`.
"""

from __future__ import annotations

import difflib
import json
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import reflow
from reflow.components import Design
from reflow.errors import UserInputError
from reflow.evaluation import Pipeline, build_evaluator, evaluate_trials, records_to_dataset
from reflow.problem import OptimizationProblem
from reflow.store import atomic_write_text
from reflow.tables import plain

from ._pareto import best_history, hypervolume_history, pareto_mask, reference_point
from ._recommend import model_report, reference_report, suggestion_metrics

if TYPE_CHECKING:
    from reflow.context import RunContext

    from .optimize import OptimizeTask

ASKED = "asked"
"""The journal of asked points (``asked.jsonl``); finished trials go to the stage's default trials journal."""
OPTIMIZER_STATE = "optimizer.json"
"""The optimizer's :meth:`reflow.Optimizer.state` after its last ask or tell, restored on resume."""


class OptimizeLoop:
    """One optimize stage's state: the problem, the optimizer, the evaluator and the two journals."""

    def __init__(self, task: OptimizeTask, ctx: RunContext):
        from reflow.registry import get_registry

        self.task, self.ctx, self.p = task, ctx, task.params
        self.problem = task.problem()
        self.pipeline = build_evaluator(self.p.evaluate, ctx)
        self.manual = any(s.manual for s in self.pipeline.steps)
        check_metric_names(self.problem, self.pipeline, ctx.stage)
        self.asked_journal = ctx.store.journal(ASKED)
        self.told_journal = ctx.store.journal()
        self.asked = {r["trial"]: r for r in self.asked_journal.read()}
        self.told = {r["trial"]: r for r in self.told_journal.read()}
        for t, r in self.told.items():  # a told trial whose asked line was damaged was asked all the same
            self.asked.setdefault(t, {"trial": t, "inputs": r["inputs"], "batch": r.get("batch", 0),
                                      "acquisition": "", "seconds": 0.0})
        registry = get_registry()
        optimizer = self.p.optimizer.create(registry)
        initial = self.p.budget.initial
        self.optimizer: reflow.Optimizer | None
        if isinstance(optimizer, Design):  # a design as the optimizer: the whole budget is space-filling
            self.initial_design, self.optimizer, initial = optimizer, None, self.p.budget.evaluations
        else:
            self.initial_design = registry.get(self.p.budget.initial_design, "optimizer").cls()
            self.optimizer = optimizer
            optimizer.setup(self.problem, ctx.seed)
            state_path = ctx.folder / OPTIMIZER_STATE
            if state_path.exists():
                optimizer.restore(json.loads(state_path.read_text()))
        self.initial = initial
        self.units = {prm.name: prm.units for prm in self.problem.space.parameters}
        self.units.update({v.name: v.units for v in self.pipeline.output_variables()})
        if self.optimizer is not None and self.told:
            self.optimizer.tell(self.dataset(list(self.told.values())))

    # ---- datasets ----
    def dataset(self, records: list[dict[str, Any]]) -> Any:
        """Finished trial records as the trials Dataset, with the acquisition and seconds each was asked with."""
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

    def dataset_of_inputs(self, records: list[dict[str, Any]]) -> Any:
        """The parameter values of asked records as a Dataset on dim ``trial`` (None for no records)."""
        if not records:
            return None
        return self.problem.space.to_dataset({n: np.array([r["inputs"][n] for r in records], dtype=object)
                                              for n in self.problem.space.names})

    # ---- asking ----
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
            records += [{"inputs": {name: plain(values[name][i]) for name in values}, "acquisition": label,
                         "seconds": seconds} for i in range(k)]
        if n - k > 0:
            assert self.optimizer is not None  # a design as the optimizer spends the whole budget on initial rows
            pend = self.dataset_of_inputs(pending + [{"trial": -1 - i, **r} for i, r in enumerate(records)])
            t0 = time.perf_counter()
            ds = self.optimizer.ask(n - k, self.ctx, pending=pend)
            seconds = (time.perf_counter() - t0) / (n - k)
            # the state after this ask (a GP's warm start) is what a resume needs to ask the next batch alike
            self._save_state()
            label = str(ds.attrs.get("acquisition", self.p.optimizer.name))
            by_name = self.problem.space.by_name
            records += [{"inputs": {name: by_name[name].as_choice(plain(ds[name].values[i]))
                                    for name in self.problem.space.names},
                         "acquisition": label, "seconds": seconds} for i in range(n - k)]
        for i, rec in enumerate(records):
            rec.update(trial=ids[i], batch=batch, asked=time.time())
        self.asked_journal.append(records)
        self.asked.update({r["trial"]: r for r in records})
        return records

    def _save_state(self) -> None:
        assert self.optimizer is not None
        atomic_write_text(self.ctx.folder / OPTIMIZER_STATE, json.dumps(self.optimizer.state()))

    def ask_lab(self, n: int) -> Any:
        """The next ``n`` lab experiments, journaled as asked: a Dataset on dim ``trial``."""
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

    # ---- evaluating ----
    def _evaluate(self, records: list[dict[str, Any]], bar: Any) -> None:
        rows = [(r["trial"], dict(r["inputs"])) for r in records]
        done = evaluate_trials(self.pipeline, rows, self.ctx, on_done=self.told_journal.append,
                               batch=records[0]["batch"], bar=bar)
        self.told.update({r["trial"]: r for r in done})
        ds = self.dataset(done)
        if self.optimizer is not None:
            self.optimizer.tell(ds)
            self._save_state()
        self.ctx.trial_batch(ds)

    def run(self) -> None:
        """Evaluate what was asked and never finished, then ask and evaluate until the budget is spent."""
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

    # ---- the result ----
    def result(self) -> reflow.StageResult:
        """The stage's outputs (trials, best, history) and metrics from every told trial."""
        import xarray as xr

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
        metrics.update(model_report(self.optimizer, trials))
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
        metrics.update(reference_report(problem, values, feasible, self.ctx))
        hist = xr.Dataset(history, coords={"evaluation": evaluation})
        hist["trial"] = ("evaluation", trials["trial"].values)
        hist["initial"] = ("evaluation", np.array([a.startswith("initial design") for a in
                                                   trials["acquisition"].values], dtype=bool))
        return reflow.StageResult({"trials": trials, "best": chosen, "history": hist}, metrics)


def check_metric_names(problem: OptimizationProblem, pipeline: Pipeline, stage: str) -> None:
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
                             f"{did_you_mean(unknown[0], declared + list(problem.space.names))}")


def did_you_mean(name: str, known: list[str]) -> str:
    """``; did you mean 'x'?`` for the closest of ``known`` to a misspelt output or parameter name, or ``""``."""
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""

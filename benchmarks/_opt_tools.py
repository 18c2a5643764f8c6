"""The tools of the optimizer benchmark, each run sequentially (one point per suggestion) on a Problem.

Every runner evaluates through the same ``Recorder``, which stamps the time each evaluation starts and ends:
a step's optimizer time is the time from the end of the previous evaluation (or from the start of the
run, before the tool is even constructed) to the start of the next. So every tool is timed the same way
over ALL steps: its set-up, the initial design, every ask and tell, any compile stall, and (for reflow)
the study machinery around them (journals, datasets).

Information given alike (variant ``ref``, multi-objective problems): reflow gets each objective's
``reference``; Ax gets objective thresholds (outcome constraints on the objectives); Optuna TPE gets the
thresholds as constraints (``constraints_func``); BayBE and Sobol cannot use them. Outcome constraints of
the problem go to reflow (``c >= 0``), Ax (outcome constraints) and Optuna (``constraints_func``); BayBE and
Sobol do not model them.
"""

from __future__ import annotations

import logging
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from _opt_problems import Problem

HERE = Path(__file__).resolve().parent


LAST_RECORDER: Recorder | None = None
"""The recorder of the latest run started in this process, kept when its tool raises."""


class Recorder:
    """Evaluates the problem for a tool and stamps every evaluation."""

    def __init__(self, problem: Problem) -> None:
        self.problem = problem
        self.rows: list[np.ndarray] = []
        self.t_in: list[float] = []
        self.t_out: list[float] = []
        self.metrics: dict[str, Any] = {}
        self.t0 = time.perf_counter()
        global LAST_RECORDER
        LAST_RECORDER = self  # what a tool that fails had evaluated (benchmarks/optimizers.py scores it)

    def __call__(self, inputs: dict[str, Any]) -> dict[str, float]:
        self.t_in.append(time.perf_counter())
        out = self.problem.evaluate(inputs)
        self.rows.append(self.problem.row(inputs))
        self.t_out.append(time.perf_counter())
        return out

    def step_seconds(self) -> list[float]:
        """The optimizer's seconds before each evaluation (set-up included in the first)."""
        prev = [self.t0, *self.t_out[:-1]]
        return [a - b for a, b in zip(self.t_in, prev, strict=True)]


# ---- reflow, through the study path (validate_study -> start_run -> the optimize task) ------------------
_CURRENT: Recorder | None = None


def _reflow_evaluate(**inputs: Any) -> dict[str, float]:
    """The ``python`` evaluator's function (its module, written next to the study, forwards here)."""
    assert _CURRENT is not None
    return _CURRENT(inputs)


def default_optimizer(problem: Problem) -> str:
    """reflow's recommended optimizer for the problem type (README: qlognei for one objective, qnehvi for more)."""
    return "qnehvi" if problem.multi else "qlognei"


def run_reflow(problem: Problem, budget: int, seed: int, ref: bool, optimizer: str | None = None,
               initial: int | None = None, params: dict[str, Any] | None = None) -> Recorder:
    """reflow's default optimizer through the study path; ``initial`` overrides the size of its initial design
    (the default budget split when None) and ``params`` its optimizer's params (its defaults when None)."""
    global _CURRENT
    from reflow.plugins.tasks.optimize import Budget
    from reflow.runner import stage_context, start_run
    from reflow.study import validate_study

    rec = _CURRENT = Recorder(problem)
    name = optimizer or default_optimizer(problem)
    with tempfile.TemporaryDirectory(prefix="reflow-bench-") as tmp:
        folder = Path(tmp)
        (folder / "bench_eval.py").write_text(
            "from _opt_tools import _reflow_evaluate\n\n\n"
            "def evaluate(**inputs):\n    return _reflow_evaluate(**inputs)\n")
        space = {p.name: ({"choices": list(p.choices)} if p.choices else {"low": p.low, "high": p.high})
                 for p in problem.params}
        objectives = {o: ({"goal": "min", "reference": float(problem.ref[j])} if ref else "min")
                      for j, o in enumerate(problem.objectives)}
        budget_spec: dict[str, Any] = {"evaluations": budget}
        default_initial = Budget.model_fields["initial"].default
        if initial is not None:
            budget_spec["initial"] = initial
        elif default_initial >= budget:  # only tiny smoke-test budgets
            budget_spec["initial"] = max(budget // 2, 1)
        raw = {"study": "optimizer-benchmark", "seed": seed, "stages": {"opt": {
            "task": "optimize", "space": space,
            "evaluate": {"python": {"function": "bench_eval:evaluate", "outputs": problem.outputs}},
            "optimizer": {name: params} if params else name, "objectives": objectives,
            "constraints": [f"{c} >= 0" for c in problem.constraints], "budget": budget_spec}}}
        study = validate_study(raw, path=folder / "study.yaml")
        run = start_run(study, folder / "runs", quiet=True)
        try:
            ctx = stage_context(run, "opt")
            result = study.stages["opt"].create_task().run(ctx)
            rec.metrics = {k: v for k, v in result.metrics.items() if isinstance(v, (int, float, str))}
        finally:
            run.close()
    _CURRENT = None
    return rec


# ---- Ax ------------------------------------------------------------------------------------------------
def run_ax(problem: Problem, budget: int, seed: int, ref: bool) -> Recorder:
    rec = Recorder(problem)
    from ax import ChoiceParameterConfig, Client, RangeParameterConfig

    logging.getLogger("ax").setLevel(logging.WARNING)
    client = Client(random_seed=seed)
    client.configure_experiment(parameters=[
        ChoiceParameterConfig(name=p.name, values=list(p.choices), parameter_type="str", is_ordered=False)
        if p.choices else RangeParameterConfig(name=p.name, bounds=(p.low, p.high), parameter_type="float")
        for p in problem.params])
    constraints = [f"{c} >= 0" for c in problem.constraints]
    if ref and problem.multi:
        constraints += [f"{o} <= {float(problem.ref[j])!r}" for j, o in enumerate(problem.objectives)]
    client.configure_optimization(objective=", ".join(f"-{o}" for o in problem.objectives),
                                  outcome_constraints=constraints or None)
    for _ in range(budget):
        ((index, params),) = client.get_next_trials(max_trials=1).items()
        out = rec(params)
        client.complete_trial(trial_index=index, raw_data=out)
    return rec


# ---- Optuna TPE ----------------------------------------------------------------------------------------
def run_tpe(problem: Problem, budget: int, seed: int, ref: bool) -> Recorder:
    rec = Recorder(problem)
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    m = len(problem.objectives)
    thresholds = problem.ref if (ref and problem.multi) else None
    constrained = bool(problem.constraints) or thresholds is not None

    def constraints_func(trial: optuna.trial.FrozenTrial) -> list[float]:
        return trial.user_attrs["constraint"]

    sampler = optuna.samplers.TPESampler(seed=seed, multivariate=True,
                                         constraints_func=constraints_func if constrained else None)
    study = optuna.create_study(directions=["minimize"] * m, sampler=sampler)
    for _ in range(budget):
        trial = study.ask()
        params = {p.name: trial.suggest_categorical(p.name, p.choices) if p.choices else
                  trial.suggest_float(p.name, p.low, p.high) for p in problem.params}
        out = rec(params)
        if constrained:  # optuna: <= 0 is feasible
            c = [-out[n] for n in problem.constraints]
            if thresholds is not None:
                c += [out[o] - float(thresholds[j]) for j, o in enumerate(problem.objectives)]
            trial.set_user_attr("constraint", c)
        study.tell(trial, [out[o] for o in problem.objectives])
    return rec


# ---- Sobol ---------------------------------------------------------------------------------------------
def run_sobol(problem: Problem, budget: int, seed: int, ref: bool) -> Recorder:
    rec = Recorder(problem)
    from scipy.stats import qmc

    u = qmc.Sobol(len(problem.params), scramble=True, seed=seed).random(budget)
    for row in u:
        rec({p.name: p.choices[min(int(v * len(p.choices)), len(p.choices) - 1)] if p.choices else
             p.low + v * (p.high - p.low) for p, v in zip(problem.params, row, strict=True)})
    return rec


# ---- BayBE ---------------------------------------------------------------------------------------------
def run_baybe(problem: Problem, budget: int, seed: int, ref: bool) -> Recorder:
    rec = Recorder(problem)
    import pandas as pd
    from baybe import Campaign
    from baybe.objectives import ParetoObjective, SingleTargetObjective
    from baybe.parameters import CategoricalParameter, NumericalContinuousParameter
    from baybe.searchspace import SearchSpace
    from baybe.targets import NumericalTarget
    from baybe.utils.random import set_random_seed

    set_random_seed(seed)
    params = [CategoricalParameter(p.name, values=tuple(p.choices)) if p.choices else
              NumericalContinuousParameter(p.name, bounds=(p.low, p.high)) for p in problem.params]
    targets = [NumericalTarget(o, minimize=True) for o in problem.objectives]
    objective = ParetoObjective(targets) if problem.multi else SingleTargetObjective(targets[0])
    campaign = Campaign(SearchSpace.from_product(params), objective)
    for _ in range(budget):
        df = campaign.recommend(batch_size=1)
        params_row = {p.name: (str(df[p.name].iloc[0]) if p.choices else float(df[p.name].iloc[0]))
                      for p in problem.params}
        out = rec(params_row)
        campaign.add_measurements(pd.DataFrame([{**params_row, **{o: out[o] for o in problem.objectives}}]))
    return rec


TOOLS = {"reflow": run_reflow, "ax": run_ax, "tpe": run_tpe, "baybe": run_baybe, "sobol": run_sobol}


def run_tool(tool: str, problem: Problem, budget: int, seed: int, ref: bool, reflow_initial: int | None = None,
             reflow_params: dict[str, Any] | None = None) -> Recorder:
    """Run one cell with warnings silenced (they are the tools' own, not the benchmark's)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if tool == "reflow":  # None for both: its defaults
            return run_reflow(problem, budget, seed, ref, initial=reflow_initial, params=reflow_params)
        return TOOLS[tool](problem, budget, seed, ref)

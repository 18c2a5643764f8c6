"""Evolutionary multi-objective optimizers on pymoo: ``nsga2`` and ``nsga3``, driven through ask/tell.

pymoo's algorithm runs in the unit encoding of the space (integers and categoricals are rounded when a
point is decoded); linear parameter constraints are kept by a repair that projects each offspring onto
them; outcome constraints become pymoo inequality constraints (``G <= 0``) and a failed evaluation is an
infeasible individual, so it never becomes a parent. Each generation is one batch of the ``optimize``
task, evaluated in parallel through the study's executor; the evaluator can be a simulation or a trained
surrogate (``evaluate: {stage: NAME}``: surrogate-assisted optimization).

Resume is exact: the generation's random generator is derived from the seed and the generation number,
and the told trials are replayed generation by generation (by their ``batch``), so the algorithm after a
resume is the one that was interrupted.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import reflow
from pydantic import Field
from reflow.sampling import snap_to_constraints


class _Pymoo(reflow.Optimizer):
    min_initial = 4  # the initial design is the first population: the optimize task checks budget.initial

    class Params(reflow.Params):
        pop_size: int | None = Field(None, ge=4, description="population size (default: the initial design size)")
        crossover_eta: float = Field(15.0, gt=0, description="SBX crossover distribution index")
        mutation_eta: float = Field(20.0, gt=0, description="polynomial mutation distribution index")

    def setup(self, problem, seed):
        super().setup(problem, seed)
        self._algorithm = None
        self._batches: dict[int, list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = {}
        self._generation = 0

    def make_algorithm(self, pop_size: int) -> Any:
        """The pymoo algorithm for a population of ``pop_size``; each subclass's own."""
        raise NotImplementedError(f"{type(self).__name__} must implement make_algorithm(pop_size)")

    def tell(self, trials):
        """Buffer the finished trials; they reach pymoo as one generation (their batch) at the next ask."""
        p = self.problem
        ok = np.asarray(trials["status"].values == "ok")
        x = p.encode({n: trials[n].values for n in p.space.names})
        f = -p.objective_values(trials)  # pymoo minimizes
        g = -p.outcome_slack(trials)
        failed_g = np.where(ok, 0.0, 1.0)[:, None]  # a failed evaluation is infeasible
        f = np.where(ok[:, None], np.nan_to_num(f, nan=0.0), 0.0)
        g = np.hstack([np.where(ok[:, None], np.nan_to_num(g, nan=1.0), 1.0), failed_g])
        batches = trials["batch"].values if "batch" in trials else np.zeros(len(ok), dtype=int)
        for b in np.unique(batches):
            sel = batches == b
            self._batches.setdefault(int(b), []).append((x[sel], f[sel], g[sel]))

    def _advance(self) -> None:
        from pymoo.core.population import Population

        for b in sorted(self._batches):
            parts = self._batches.pop(b)
            x = np.vstack([q[0] for q in parts])
            f = np.vstack([q[1] for q in parts])
            g = np.vstack([q[2] for q in parts])
            if self._algorithm is None:
                self._algorithm = self._start(len(x))
            pop = Population.new(X=x, F=f, G=g)
            cv = np.maximum(g, 0.0).sum(axis=1)
            pop.set("CV", cv[:, None], "H", np.zeros((len(x), 0)))
            self._algorithm.random_state = np.random.default_rng([self.seed, self._generation, 2])
            self._algorithm.tell(infills=pop)
            self._generation += 1

    def _start(self, n_initial: int) -> Any:
        from pymoo.core.problem import Problem
        from pymoo.core.repair import Repair
        from pymoo.termination import get_termination

        p = self.problem
        optimizer = self

        class _Snap(Repair):
            def _do(self, problem, X, **kwargs):
                return snap_to_constraints(optimizer.problem, X)

        problem = Problem(n_var=p.dim, n_obj=len(p.objectives), n_ieq_constr=len(p.outcome_constraints) + 1,
                          xl=np.zeros(p.dim), xu=np.ones(p.dim))
        algorithm = self.make_algorithm(self.params.pop_size or max(n_initial, 4))
        algorithm.repair = _Snap()
        algorithm.mating.repair = algorithm.repair
        algorithm.setup(problem, termination=get_termination("n_gen", 10**9), seed=self.seed)
        algorithm._initialize()
        return algorithm

    def ask(self, n, ctx, pending=None):
        self._advance()
        if self._algorithm is None:
            raise reflow.EvaluationError(f"{type(self).__name__}: no evaluated initial population to evolve")
        algorithm = self._algorithm
        algorithm.n_offsprings = n
        algorithm.random_state = np.random.default_rng([self.seed, self._generation])
        off = algorithm.ask()
        x = off.get("X") if off is not None else np.zeros((0, self.problem.dim))
        if len(x) < n:  # duplicate elimination can leave fewer offspring than asked: fill at random
            rng = np.random.default_rng([self.seed, self._generation, 1])
            x = np.vstack([x, snap_to_constraints(self.problem, rng.random((n - len(x), self.problem.dim)))])
        values = self.problem.decode(x[:n])
        ds = self.problem.space.to_dataset(values)
        ds.attrs["acquisition"] = f"{type(self).__name__.lower()} generation {self._generation}"
        return ds


class NSGA2(_Pymoo):
    """NSGA-II (Deb et al. 2002) on pymoo: non-dominated sorting and crowding distance; one generation per batch."""

    def make_algorithm(self, pop_size):
        from pymoo.algorithms.moo.nsga2 import NSGA2 as PymooNSGA2
        from pymoo.operators.crossover.sbx import SBX
        from pymoo.operators.mutation.pm import PM

        return PymooNSGA2(pop_size=pop_size, crossover=SBX(eta=self.params.crossover_eta, prob=0.9),
                          mutation=PM(eta=self.params.mutation_eta), eliminate_duplicates=True)


class NSGA3(_Pymoo):
    """NSGA-III (Deb and Jain 2014) on pymoo: reference directions (Das-Dennis) for three or more objectives."""

    class Params(_Pymoo.Params):
        partitions: int = Field(12, ge=1, description="Das-Dennis partitions of the reference directions")

    def make_algorithm(self, pop_size):
        from pymoo.algorithms.moo.nsga3 import NSGA3 as PymooNSGA3
        from pymoo.operators.crossover.sbx import SBX
        from pymoo.operators.mutation.pm import PM
        from pymoo.util.ref_dirs import get_reference_directions

        ref_dirs = get_reference_directions("das-dennis", len(self.problem.objectives),
                                            n_partitions=self.params.partitions)
        return PymooNSGA3(ref_dirs=ref_dirs, pop_size=max(pop_size, len(ref_dirs)),
                          crossover=SBX(eta=self.params.crossover_eta, prob=1.0),
                          mutation=PM(eta=self.params.mutation_eta), eliminate_duplicates=True)

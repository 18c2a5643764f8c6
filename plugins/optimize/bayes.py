"""Bayesian optimization on BoTorch: ``qlognei``, ``qnehvi``, ``qparego`` and ``active-learning``.

Each ask fits a Gaussian process to the trials that finished (failed ones are left out of the fit but
still count against the budget), builds the acquisition function and maximizes it with
``optimize_acqf``, keeping the study's linear parameter constraints. The model:

- inputs are the problem's unit encoding (every free parameter mapped onto [0, 1], so inputs are already
  normalized); each output is first mapped by a monotone transform chosen from its data (``log`` for positive
  outputs spanning decades, ``bilog`` for heavy tails, winsorization of the worst values for the fit only:
  :mod:`.transforms`), then standardized (``Standardize``); the acquisition works in that transformed space,
  with references and constraint bounds mapped by the same functions;
- ``SingleTaskGP`` (one multi-output GP over every objective and every output an outcome constraint reads)
  or, when the space has categorical parameters, ``MixedSingleTaskGP`` (a categorical kernel on those
  dimensions, evaluated in one call by :mod:`.mixed_kernel`) with the acquisition maximized over each category
  combination (:func:`optimize_mixed_at_once`);
- hyperparameters by ``fit_gpytorch_mll``, warm-started from the previous ask's values;
- tensors in double precision on the study's device (a GPU when there is one).

Outcome constraints (``max_stress_mpa <= 120``) enter the acquisition as feasibility weights; objectives
to minimize are negated for BoTorch, which maximizes. A given objective reference (``{goal: min, reference:
80}``) is kept as is: the hypervolume reference of qLogNEHVI, and a feasibility weight (beat the reference)
for qLogNParEGO and the single-objective qLogNEI, as Ax's objective thresholds do. GPyTorch's numerical
warnings ("not p.d., added jitter") go to the run log and are counted (:meth:`_Bayes.report`).
Every random draw (Sobol MC samples, the raw samples of the acquisition optimizer) is seeded from the stage
seed and the number of told trials, so a resumed run asks the points the interrupted one would have asked.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import warnings
from typing import Any, Literal

import numpy as np
import reflow
from pydantic import Field
from reflow.device import quiet_torch_imports
from reflow.sampling import botorch_constraints, space_filling

from . import kernels
from .transforms import OutcomeTransform, choose, summary

quiet_torch_imports()

MAX_CATEGORY_COMBINATIONS = 32
"""Category combinations the mixed acquisition optimizer tries at most per ask (a random subset beyond)."""
FULL_EFFORT_UNTIL = 50
"""Trials up to which the acquisition search gets its full default budget; beyond, it shrinks as 1/sqrt(n)."""
DUPLICATE_TOLERANCE = 1e-6
"""A candidate closer than this (in every coordinate of the unit box) to a trial counts as a repeat of it."""
INIT_BATCH_LIMIT = 32
"""Raw samples scored per call when picking the starting points (Ax's value): per-call overhead, not
arithmetic, dominated the screen in batches of 8 (ZDT1 seed 0, 30 evaluations: 0.22 s per step at 8, 0.10 at
32, 0.08 at 128, the same points asked; benchmarks/ask_breakdown.py). 128 raised CarSideImpact's peak memory
from 0.94 to 1.17 GB (0.90 at 32) for no gain (its screen is arithmetic-bound), and the box decompositions
grow with the front: 32 keeps most of the gain."""
MIXED_STARTS_PER_RUN = 64
"""Starting points refined together by one L-BFGS-B run of the mixed search (:func:`optimize_mixed_at_once`)."""
NARROW_RAW_SAMPLES = 1024
"""Raw samples of the acquisition search when outcome constraints and a reference both bound the region it rewards
(Ax's value for every search).

There the acquisition is negligible outside the designs that are feasible *and* beat the reference, which can be
a sliver of the space: on BoTorch's WeldedBeam 0.6 % of 4096 Sobol points meet the four constraints and none of
them beats the benchmark's reference. With 256 raw samples (the default on 4 parameters) the starting points could
all lie where the acquisition is flat: 30 evaluations, 10 seeds, 4 found no design beyond the reference; with 1024
none did, and 9 of 10 seeds scored higher (median 0.837 -> 0.963, Wilcoxon p 0.004; docs/optimizer-benchmark.md).
Screened and not taken further: constraints alone (WeldedBeam without references 7 of 10 seeds lower, p 0.05;
DiscBrake, TensionCompressionString and cantilever-stress unchanged within noise) and references alone (ZDT1,
VehicleSafety and BraninCurrin with references 11 higher, 3 lower, but on 6 parameters the screen would take a
step from 0.28 to 0.42 s, near half of Ax's time)."""
WARM_FIT_MAXITER = 50
"""L-BFGS iterations of a warm-started GP fit. 25 cut the fit from 0.14-0.18 to 0.11 s per step (ZDT1 seed 0,
benchmarks/ask_breakdown.py --warm-fit-maxiter), but in a benchmark run with 25 (and 64 MC samples for 3+
objectives) CarSideImpact scored lower on every seed: not kept (docs/optimizer-benchmark.md)."""

log = logging.getLogger("reflow")


def _numerical(category: type) -> bool:
    """GPyTorch's/linear_operator's NumericalWarning, BoTorch's NumericsWarning and OptimizationWarning."""
    names = {c.__name__ for c in category.__mro__}
    return bool(names & {"NumericalWarning", "NumericsWarning", "OptimizationWarning"})


class _Warnings:
    """Catch the warnings of a GP fit or an acquisition search: numerical ones are logged (one line per distinct
    message per ask) and counted; the rest go to the log at debug level. Nothing reaches stderr."""

    def __init__(self, opt: _Bayes, where: str):
        self.opt, self.where = opt, where

    def __enter__(self):
        self._ctx = warnings.catch_warnings(record=True)
        self.caught = self._ctx.__enter__()
        warnings.simplefilter("always")
        return self

    def __exit__(self, *exc):
        self._ctx.__exit__(*exc)
        seen: dict[str, int] = {}
        for w in self.caught:
            text = str(w.message).splitlines()[0][:200]
            if _numerical(w.category):
                self.opt._numerical_warnings += 1
                seen[text] = seen.get(text, 0) + 1
            else:
                log.debug("%s: %s: %s", self.where, w.category.__name__, text)
        for text, count in seen.items():
            log.warning("%s: numerical warning%s: %s", self.where, f" (x{count})" if count > 1 else "", text)
        return False


class _Bayes(reflow.Optimizer):
    min_initial = 0  # with fewer than 2 successful trials an ask is space-filling: any initial design will do
    _n_train: int = 0
    """Trials in the last fit (the acquisition search shrinks as they grow, :meth:`effort`)."""

    class Params(reflow.Params):
        num_restarts: int | None = Field(None, ge=1, description="starting points of the acquisition optimizer "
                                                                 "(default: 2 + the number of parameters, up to 20)")
        raw_samples: int | None = Field(None, ge=8, description="random points scored to pick the starting points "
                                                                "(default: 64 per parameter, 128 to 1024; "
                                                                "1024 with outcome constraints and a reference)")
        mc_samples: int | None = Field(None, ge=16, description="quasi-Monte-Carlo samples of the posterior "
                                                                "(default: 64 up to 3 parameters, else 128)")
        maxiter: int = Field(100, ge=5, description="L-BFGS-B iterations per start")
        warm_start: bool = Field(True, description="start the GP fit from the previous hyperparameters")
        cpu_threads: int = Field(1, ge=1, description="torch threads on the CPU: small GPs run fastest on one, "
                                                      "and more oversubscribe the cores the evaluations use")
        repeats: bool = Field(False, description="allow asking a point already evaluated (replicates of a noisy "
                                                 "experiment); else a repeat is replaced by a space-filling point")
        outcome_transform: Literal["auto", "none"] = Field(
            "auto", description="auto: log, bilog or winsorization per output, chosen from the data (see the "
                                "optimization docs); none: model the raw outputs (standardized only)")

    def setup(self, problem, seed):
        super().setup(problem, seed)
        self._trials: list[Any] = []
        self._hyper: dict[str, Any] | None = None
        self.device = "cpu"
        self.transforms: list[OutcomeTransform] = []
        self._numerical_warnings = 0
        self._transform_text = ""

    def tell(self, trials):
        if trials.sizes.get("trial", 0):
            self._trials.append(trials)

    def state(self):
        """The GP hyperparameters of the last fit (the warm start of the next), so a resume fits the same GP,
        and the report so far (transforms, warnings), so a resumed stage reports the whole run."""
        out: dict[str, Any] = {}
        if self._hyper is not None:
            out["hyper"] = {k: [str(v.dtype).removeprefix("torch."), v.cpu().tolist()]
                            for k, v in self._hyper.items()}
        if self.transforms or self._numerical_warnings:
            out["report"] = self.report()
        return out

    def restore(self, state):
        import torch

        hyper = state.get("hyper")
        self._hyper = None if not hyper else {
            k: torch.tensor(values, dtype=getattr(torch, dtype)) for k, (dtype, values) in hyper.items()}
        report = state.get("report") or {}
        self._numerical_warnings = int(report.get("gp_numerical_warnings", 0))
        self.transforms = [OutcomeTransform(n, t["kind"], t["reason"], winsorized=int(t.get("winsorized", 0)))
                           for n, t in report.get("outcome_transforms", {}).items()]

    def report(self) -> dict[str, Any]:
        """What the stage reports about the model: the outcome transform of each output at the last ask (kind,
        reason, values winsorized for the fit) and the count of numerical warnings of every fit and search."""
        return {"outcome_transforms": {t.name: {"kind": t.kind, "reason": t.reason, "winsorized": t.winsorized}
                                       for t in self.transforms},
                "gp_numerical_warnings": self._numerical_warnings}

    # ---- data and model ------------------------------------------------------------------------
    def _told(self):
        """Every told trial as one Dataset; the concatenation is kept, so each ask concatenates only the trials
        told since the last one (concatenating 200 one-trial Datasets at every ask cost seconds)."""
        import xarray as xr

        if not self._trials:
            return None
        if len(self._trials) > 1:
            self._trials = [xr.concat(self._trials, dim="trial", data_vars="all", coords="minimal",
                                      compat="override", join="outer")]
        return self._trials[0]

    def _training(self):
        """(X unit, Y raw metric columns) of the trials that finished ok, as numpy arrays."""
        told = self._told()
        p = self.problem
        if told is None:
            return np.zeros((0, p.dim)), np.zeros((0, len(p.metric_names))), 0
        ok = np.asarray(told["status"].values == "ok")
        y = np.column_stack([np.asarray(told[n].values, dtype=float) for n in p.metric_names])
        ok &= np.all(np.isfinite(y), axis=1)
        x = p.encode({n: told[n].values for n in p.space.names})
        return x[ok], y[ok], told.sizes["trial"]

    def fit(self, x, y):
        """The GP of the metric columns (warm-started): one batched multi-output GP with independent outputs.

        BoTorch fits the outputs of a batched GP with one batched L-BFGS-B run, each output's hyperparameters
        optimized on its own (the same optimum as a separate fit per output), and a batched posterior is one call
        per acquisition evaluation where a ModelListGP makes one per output. Against fitting a ModelListGP one
        output after another, the fit's mean time per step (benchmarks/ask_breakdown.py, 30 evaluations) fell
        from 0.158 to 0.090 s on ZDT1 (2 outputs), 0.367 to 0.113 s on CarSideImpact with references (4) and
        0.468 to 0.125 s on WeldedBeam with references (6); tests/plugins/test_optimize.py checks that the
        posteriors agree with separate fits. The marginal likelihood it maximizes is GPyTorch's, computed in a
        few torch operations where the model is the default one (marginal_likelihood.py): the fit's time per
        step halves again (Hartmann6 0.079 -> 0.043 s, ZDT1 with references 0.089 -> 0.040 s). The models are
        lean_gp.py's, whose posterior in the acquisition search is computed the same way."""
        import torch
        from botorch.fit import fit_gpytorch_mll
        from botorch.models.transforms import Standardize

        from .lean_gp import LeanMixedSingleTaskGP, LeanSingleTaskGP
        from .marginal_likelihood import exact_mll

        tx = torch.as_tensor(x, dtype=torch.double, device=self.device)
        ty = torch.as_tensor(y, dtype=torch.double, device=self.device)
        cat = self.problem.categorical_dims

        def single(columns):
            standardize = Standardize(columns.shape[-1])
            if cat and len(cat) < self.problem.dim:
                from .mixed_kernel import FusedMixedKernel

                mixed = LeanMixedSingleTaskGP(tx, columns, cat_dims=cat, outcome_transform=standardize)
                mixed.covar_module = FusedMixedKernel(mixed.covar_module)
                return mixed
            return LeanSingleTaskGP(tx, columns, outcome_transform=standardize)

        model = single(ty)
        mll = exact_mll(model)
        options = {}
        if self.params.warm_start and self._hyper is not None:
            # a warm start that no longer fits the model (its shapes changed) is skipped
            with warnings.catch_warnings(), contextlib.suppress(RuntimeError):
                warnings.simplefilter("ignore")
                model.load_state_dict(self._hyper, strict=False)
            options = {"maxiter": WARM_FIT_MAXITER}
        with _Warnings(self, f"GP fit ({len(x)} trials)"):
            try:
                fit_gpytorch_mll(mll, optimizer_kwargs={"options": options} if options else None)
            except Exception as exc:  # keep the starting values: a rough GP still beats a failed ask
                log.warning("GP fit failed (%s: %s); asking with the starting hyperparameters",
                            type(exc).__name__, exc)
        self._hyper = {k: v.detach().clone() for k, v in model.state_dict().items()
                       if "outcome_transform" not in k and "input_transform" not in k}
        return model.eval()

    # ---- acquisition -----------------------------------------------------------------------------
    def objective(self, raw_units: bool = False):
        """The MC objective: signed objective columns (BoTorch maximizes), in the model's space or, with
        ``raw_units``, mapped back to the user's units.

        A monotone transform keeps one objective's improving region where it is, and a scalarization
        (qLogNParEGO) is better off with tails compressed; qLogNEHVI measures a hypervolume bounded by given
        references in raw units (:func:`raw_hypervolume`)."""
        import torch
        from botorch.acquisition.multi_objective.objective import (
            GenericMCMultiOutputObjective,
            WeightedMCMultiOutputObjective,
        )
        from botorch.acquisition.objective import GenericMCObjective

        objs = self.problem.objectives
        if len(objs) == 1:
            sign = objs[0].sign
            return GenericMCObjective(lambda z, X=None: sign * z[..., 0])
        if not raw_units:
            weights = torch.tensor([o.sign for o in objs], dtype=torch.double, device=self.device)
            return WeightedMCMultiOutputObjective(weights=weights, outcomes=list(range(len(objs))))
        maps = [(o.sign, j, self.transform_of(o.name).inverse) for j, o in enumerate(objs)]

        def signed_raw(z, X=None):
            return torch.stack([sign * inverse(z[..., j]) for sign, j, inverse in maps], dim=-1)

        return GenericMCMultiOutputObjective(signed_raw)

    def choose_transforms(self, y: np.ndarray) -> list[OutcomeTransform]:
        """The outcome transform of every metric column, from the raw values ``y`` of the finished trials.

        The bad side of each output (for winsorization) comes from its objective's goal or its constraint's
        direction; references and constraint bounds must map alike (so log needs them positive)."""
        p = self.problem
        names = p.metric_names
        worse: dict[str, str] = {}
        bounds: dict[str, list[float]] = {n: [] for n in names}
        linear: set[str] = set()
        for c in p.outcome_constraints:
            coef = {n: a for n, a in c.coefficients.items() if a != 0}
            if len(coef) != 1:
                linear |= set(coef)
                continue
            (n, a), = coef.items()
            worse.setdefault(n, "high" if (c.op in ("<=", "<")) == (a > 0) else "low")
            bounds[n].append(c.rhs / a)
        for o in p.objectives:
            worse[o.name] = "high" if o.goal == "min" else "low"
            if o.reference is not None:
                bounds[o.name].append(float(o.reference))
        if self.params.outcome_transform == "none":
            return [OutcomeTransform(n, reason="outcome_transform: none") for n in names]
        objectives = {o.name for o in p.objectives}
        return [choose(n, y[:, j], worse.get(n), bounds[n], n in linear, constraint_only=n not in objectives)
                for j, n in enumerate(names)]

    def transform_of(self, name: str) -> OutcomeTransform:
        """The current transform of output ``name`` (identity before the first model)."""
        return next((t for t in self.transforms if t.name == name), OutcomeTransform(name))

    def threshold(self, name: str, value: float) -> float:
        """A raw-unit bound or reference of ``name`` in the space the model works in."""
        return float(self.transform_of(name).forward(np.array([value]))[0])

    def reference_constraints(self) -> list:
        """Each given objective reference as a feasibility weight (feasible where the objective beats it): the
        threshold that steers qLogNParEGO and qLogNEI toward the region that beats the reference."""
        names = self.problem.metric_names
        out = []
        for o in self.problem.objectives:
            if o.reference is None:
                continue

            def g(z, j=names.index(o.name), thr=self.threshold(o.name, o.reference), sign=o.sign):
                return sign * (thr - z[..., j])

            out.append(g)
        return out

    def constraints(self) -> list:
        """Outcome constraints as callables on posterior samples (in the transformed space), feasible where <= 0."""
        names = self.problem.metric_names
        out = []
        for c in self.problem.outcome_constraints:
            coef = {n: a for n, a in c.coefficients.items() if a != 0}
            if len(coef) == 1:  # a bound on one output: mapped by that output's transform
                (n, a), = coef.items()
                upper = (c.op in ("<=", "<")) == (a > 0)

                def one(z, j=names.index(n), thr=self.threshold(n, c.rhs / a), upper=upper):
                    return z[..., j] - thr if upper else thr - z[..., j]

                out.append(one)
                continue
            # several outputs: they are modelled untransformed (see choose_transforms), so the raw form holds
            idx = [names.index(n) for n in c.coefficients]
            coef = list(c.coefficients.values())
            sign = 1.0 if c.op in ("<=", "<") else -1.0

            def g(z, idx=idx, coef=coef, rhs=c.rhs, sign=sign):
                total = sum(a * z[..., j] for a, j in zip(coef, idx, strict=True))
                return sign * (total - rhs)

            out.append(g)
        return out

    def sampler(self):
        import torch
        from botorch.sampling import SobolQMCNormalSampler

        return SobolQMCNormalSampler(sample_shape=torch.Size([self.effort()[2]]), seed=self._draw_seed)

    def acquisition(self, model, x, y, pending):
        """(acquisition function, label) for the fitted ``model`` on the told ``x``/``y``; each optimizer's own."""
        raise NotImplementedError(f"{type(self).__name__} must implement acquisition(model, x, y, pending)")

    def effort(self) -> tuple[int, int, int]:
        """(restarts, raw samples, MC samples): the acquisition search grows with the number of parameters and
        shrinks with the number of trials.

        A 2-D problem needs little search and gets answers in a fraction of a second; in 6-D the optimum of
        the acquisition is narrower and worth more starting points (measured in benchmarks/optimizers.py).
        Each acquisition evaluation costs more as trials accumulate (the posterior over the baseline, the
        box decomposition of a longer Pareto front), so beyond ``FULL_EFFORT_UNTIL`` trials the default
        restarts and raw samples shrink as ``sqrt(FULL_EFFORT_UNTIL / n)`` (at least 2 restarts and 64 raw
        samples): the time per suggestion then grows under linearly (benchmarks/optimizer_cost.py). Values
        given in the params are used as they are. With outcome constraints and a reference the raw samples start from
        ``NARROW_RAW_SAMPLES`` (designs feasible and beyond the reference may be a sliver of the space).
        """
        d = self.problem.dim
        p = self.params
        shrink = min(1.0, math.sqrt(FULL_EFFORT_UNTIL / max(self._n_train, 1)))
        restarts = p.num_restarts or max(2, round(min(20, 2 + d) * shrink))
        full_raw = NARROW_RAW_SAMPLES if self._narrow() else min(1024, max(128, 64 * d))
        raw = p.raw_samples or max(64, int(full_raw * shrink))
        return restarts, raw, p.mc_samples or (64 if d <= 3 else 128)

    def _narrow(self) -> bool:
        """Whether outcome constraints and a given reference both bound the region the acquisition rewards."""
        p = self.problem
        return bool(p.outcome_constraints) and any(o.reference is not None for o in p.objectives)

    def ask(self, n, ctx, pending=None):
        import torch

        self.device = torch.device(ctx.device or "cpu")
        p = self.problem
        x, y, told = self._training()
        self._n_train = len(x)
        self._draw_seed = int(np.random.default_rng([self.seed, told]).integers(2**31))
        if len(x) < 2:  # nothing to model yet (every trial so far failed): keep exploring
            unit = space_filling(p, n, self._draw_seed)
            ds = p.space.to_dataset(p.decode(unit))
            ds.attrs["acquisition"] = "space-filling (too few successful trials for a model)"
            return ds
        threads = torch.get_num_threads()
        if self.device.type == "cpu":
            torch.set_num_threads(self.params.cpu_threads)
        try:
            return self._model_ask(n, x, y, pending)
        finally:
            torch.set_num_threads(threads)

    def _model_ask(self, n, x, y, pending):
        import torch

        p = self.problem
        self.transforms = self.choose_transforms(y)
        key = repr([(t.name, t.kind, t.winsorized > 0) for t in self.transforms])
        if key != self._transform_text:  # a line when the choice changes, not at every ask
            log.info("outcome transforms (%d trials): %s", len(y), summary(self.transforms))
            self._transform_text = key
        yt = np.column_stack([t.forward(y[:, j]) for j, t in enumerate(self.transforms)])
        yfit = np.column_stack([t.for_fit(y[:, j]) for j, t in enumerate(self.transforms)])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self._draw_seed)
            model = self.fit(x, yfit)
            xp = None
            if pending is not None and pending.sizes.get("trial", 0):
                xp = torch.as_tensor(p.encode({k: pending[k].values for k in p.space.names}), dtype=torch.double,
                                     device=self.device)
            with _Warnings(self, "acquisition function"):
                acqf, label = self.acquisition(model, torch.as_tensor(x, dtype=torch.double, device=self.device),
                                               torch.as_tensor(yt, dtype=torch.double, device=self.device), xp)
            unit = self.optimize(acqf, n)
        replaced = 0
        if not self.params.repeats:
            seen = x if xp is None else np.vstack([x, xp.cpu().numpy()])
            unit, replaced = replace_duplicates(p, unit, seen, self._draw_seed)
        if replaced:
            label += f"; {replaced} already evaluated point(s) replaced by space-filling ones"
            log.info("%d asked point(s) repeated a trial or another point of the batch: replaced by the "
                     "space-filling point(s) farthest from them", replaced)
        ds = p.space.to_dataset(p.decode(unit))
        ds.attrs["acquisition"] = label
        return ds

    def optimize(self, acqf, q: int) -> np.ndarray:
        """Maximize ``acqf`` over the unit box under the linear constraints; (q, d) unit points."""
        import torch
        from botorch.optim import optimize_acqf, optimize_acqf_mixed

        p = self.problem
        bounds = torch.stack([torch.zeros(p.dim), torch.ones(p.dim)]).to(dtype=torch.double, device=self.device)
        ineq, eq = botorch_constraints(p, self.device)
        restarts, raw, _ = self.effort()
        kwargs = dict(q=q, num_restarts=restarts, raw_samples=raw,
                      options={"maxiter": self.params.maxiter, "batch_limit": 8, "init_batch_limit": INIT_BATCH_LIMIT},
                      inequality_constraints=ineq or None, equality_constraints=eq or None)
        with _Warnings(self, "acquisition search"):
            if p.categorical_dims:
                combos = self._category_combinations()
                if q == 1 and not (ineq or eq) and len(p.categorical_dims) < p.dim:
                    return optimize_mixed_at_once(acqf, bounds, combos, restarts, raw, kwargs["options"])
                candidates, _ = optimize_acqf_mixed(acqf, bounds, fixed_features_list=combos, **kwargs)
            else:
                candidates, _ = optimize_acqf(acqf, bounds, sequential=q > 1, **kwargs)
        return candidates.detach().cpu().numpy().reshape(q, p.dim)

    def _category_combinations(self) -> list[dict[int, float]]:
        p = self.problem
        dims = p.categorical_dims
        levels = [[k / max(len(p.free[j].choices) - 1, 1) for k in range(len(p.free[j].choices))] for j in dims]
        total = math.prod(len(v) for v in levels)
        if total <= MAX_CATEGORY_COMBINATIONS:
            combos = itertools.product(*levels)
        else:
            rng = np.random.default_rng(self._draw_seed)
            combos = {tuple(v[rng.integers(len(v))] for v in levels) for _ in range(4 * MAX_CATEGORY_COMBINATIONS)}
            combos = sorted(combos)[:MAX_CATEGORY_COMBINATIONS]
        return [dict(zip(dims, c, strict=True)) for c in combos]


def optimize_mixed_at_once(acqf, bounds, combos: list[dict[int, float]], restarts: int, raw: int,
                           options: dict[str, Any]) -> np.ndarray:
    """The best single point of ``acqf`` over every category combination of ``combos``, with the starting points
    of all combinations refined in one batched L-BFGS-B run over the continuous parameters; a (1, d) array.

    BoTorch's ``optimize_acqf_mixed`` runs one search per combination, and on a 3-parameter space its
    per-iteration overhead, paid once per combination, was most of an ask (mixed-branin, 3 combinations: 1.86x
    Ax's time per suggestion before, 0.73x after; benchmarks/optimizers.py). The starts and the restarts per
    combination are those of ``optimize_acqf_mixed`` (the best of ``raw`` random points with the categories
    fixed); every start converges on its own, in runs of at most ``MIXED_STARTS_PER_RUN`` starts."""
    import torch
    from botorch.generation.gen import gen_candidates_scipy
    from botorch.optim.initializers import gen_batch_initial_conditions

    d = bounds.shape[-1]
    fixed = sorted(combos[0])
    starts = torch.cat([gen_batch_initial_conditions(acqf, bounds, q=1, num_restarts=restarts, raw_samples=raw,
                                                     fixed_features=combo, options=options)
                        for combo in combos])
    # the categories of every start stay where they are: no gradient flows to them, so L-BFGS-B never moves them
    pinned = torch.zeros(d, dtype=starts.dtype, device=starts.device)
    pinned[fixed] = 1.0

    def restricted(x):
        return acqf(x * (1 - pinned) + x.detach() * pinned)

    best, best_value = None, -math.inf
    for lo in range(0, len(starts), MIXED_STARTS_PER_RUN):  # up to 32 combinations x 20 restarts: bound memory
        part = starts[lo:lo + MIXED_STARTS_PER_RUN]
        x, values = gen_candidates_scipy(part, restricted, lower_bounds=bounds[0], upper_bounds=bounds[1],
                                         options={"maxiter": options["maxiter"]})
        i = int(values.argmax())
        if not torch.equal(x[i][..., fixed], part[i][..., fixed]):
            raise RuntimeError("the acquisition search moved a categorical parameter")
        if float(values[i]) > best_value:
            best, best_value = x[i].detach(), float(values[i])
    return best.cpu().numpy().reshape(1, d)


def replace_duplicates(problem, unit: np.ndarray, seen: np.ndarray, seed: int) -> tuple[np.ndarray, int]:
    """``unit`` with every point that repeats one of ``seen`` (or an earlier one of ``unit``) replaced by the
    space-filling point farthest from all of them, and the number replaced.

    Where the acquisition is flat (no design is expected to improve on what was seen: a Pareto front collapsed
    onto one point), its search ends on a corner already evaluated, and a deterministic evaluation of the same
    design teaches nothing: ZDT2 without references asked (0, ..., 0) seven times in 30 evaluations, the flagship
    study ran one design three times in a batch of six FEA runs. This saves evaluations; it did not change a
    benchmark score (ZDT1/ZDT2 seeds 0-2, with the lone-point reference of :func:`reference_point`). Ax does the
    same: a candidate that repeats is asked again, then replaced by a Sobol point."""
    unit = np.array(unit, dtype=float, copy=True)
    known = np.asarray(seen, dtype=float).reshape(-1, unit.shape[1])
    pool = None
    replaced = 0
    for i in range(len(unit)):
        if len(known) and np.min(np.max(np.abs(known - unit[i]), axis=1)) < DUPLICATE_TOLERANCE:
            if pool is None:
                pool = space_filling(problem, 256, seed)
            far = np.min(np.linalg.norm(pool[:, None, :] - known[None, :, :], axis=2), axis=1)
            unit[i] = pool[int(np.argmax(far))]
            replaced += 1
        known = np.vstack([known, unit[i:i + 1]])
    return unit, replaced


def log_nei(opt: _Bayes, model, x, y, pending):
    """qLogNEI: the noisy expected improvement of the single objective (log form, Ament et al. 2023); a given
    reference is a feasibility weight, so while nothing beats it the search heads for the region that does."""
    from botorch.acquisition.logei import qLogNoisyExpectedImprovement

    constraints = opt.constraints() + opt.reference_constraints()
    acqf = qLogNoisyExpectedImprovement(model, X_baseline=x, sampler=opt.sampler(), objective=opt.objective(),
                                        constraints=constraints or None, X_pending=pending,
                                        prune_baseline=True, cache_root=True)
    return acqf, "qLogNEI"


def raw_hypervolume(opt: _Bayes) -> bool:
    """Whether qLogNEHVI measures the hypervolume in the user's units: when every objective has a reference.

    The references bound the box the user scores, and a hypervolume is not invariant under a nonlinear map (in
    log space a change of 0.5 to 0.4 weighs as much as 50 to 40), so the model's log/bilog values are mapped
    back (heavy-cantilever with references, 30 evaluations: 0.795 -> 0.879, Ax 0.686). Without references the
    whole front counts, and in raw units its long tail would dominate it (a stress of 1e5 MPa improving to 5e4
    outweighs every design an engineer would build: without references, cantilever-mo 0.890 -> 0.813 and
    heavy-cantilever 0.743 -> 0.585 when tried); the model's space keeps the tail compressed there."""
    return all(o.reference is not None for o in opt.problem.objectives)


def reference_point(opt: _Bayes, y, raw_units: bool = False) -> list[float]:
    """The hypervolume reference in the signed (maximized) objective space of ``opt.objective(raw_units)``: each
    given reference (kept even while no trial beats it: qLogNEHVI then rewards the posterior mass beyond it,
    which steers the search there) as it is with ``raw_units``, else mapped by its output's transform; the
    others inferred from the observed front of the told outputs ``y`` (in the model's space): BoTorch's
    ``infer_reference_point`` (the front's nadir less 10 % of its range) for two objectives; for three or more the
    wider, objective by objective, of the front's nadir less :func:`reference_margin` of its range and BayBE's
    reference (the worst value of all trials less 10 % of their range); for a front of one point the nadir of all
    trials less 10 % of their range.

    With three or more objectives a few trials barely sample the front, and a design beyond the worst value seen
    in one objective would count for nothing however much it gains in the others. Without references, 30
    evaluations, 5 seeds (docs/optimizer-benchmark.md): CarSideImpact 0.682 (BoTorch's 10 %) -> 0.799 (the lattice
    margin) -> 0.799 (the wider of the two), VehicleSafety 0.867 -> 0.903 -> 0.951, Penicillin 0.799 -> 0.785 ->
    0.785; Ax 0.778, 0.881 and 0.796."""
    import torch
    from botorch.utils.multi_objective.hypervolume import infer_reference_point
    from botorch.utils.multi_objective.pareto import is_non_dominated

    objs = opt.problem.objectives
    signed = opt.objective(raw_units)(y)
    given = [o.sign * (float(o.reference) if raw_units else opt.threshold(o.name, o.reference))
             if o.reference is not None else None for o in objs]
    if all(g is not None for g in given):
        return [float(g) for g in given]
    front = signed[is_non_dominated(signed)]
    low, high = signed.min(dim=0).values, signed.max(dim=0).values
    all_trials = low - 0.1 * (high - low).clamp_min(1e-12)  # the worst of all trials less 10 % of their range
    if len(front) == 1:
        # BoTorch's rule for a lone point (the point less 10 % of its absolute value) gives a box of zero width
        # in an objective whose best value is 0, where nothing can improve the hypervolume and the search
        # repeats that point: ZDT's fronts collapse onto f0 = 0. The nadir of every trial less 10 % of their
        # range credits any design that beats the lone point in one objective within the observed values.
        inferred = all_trials
    else:
        inferred = infer_reference_point(front, scale=reference_margin(len(front), front.shape[-1]))
        if front.shape[-1] >= 3:  # the wider, objective by objective, of that and BayBE's reference
            inferred = torch.minimum(inferred, all_trials)
    return [g if g is not None else float(inferred[i]) for i, g in enumerate(given)]


def reference_margin(points: int, objectives: int) -> float:
    """How far beyond the nadir of an observed front of ``points`` points the inferred hypervolume reference lies,
    as a fraction of the front's range in each objective.

    For two objectives BoTorch's 10 %. For three or more, Ishibuchi et al.'s rule (How to specify a reference
    point in hypervolume calculation, Evolutionary Computation 26(3), 2018): ``1 / H``, ``H`` the largest
    number of divisions of a simplex lattice of at most ``points`` points, ``C(H + m - 1, m - 1) <= points``
    (for ``m`` = 4 objectives and 7 points a whole range; 10 points half of it). A front of a few points
    barely samples a surface of three or more objectives, and with a 10 % margin every design heavier in one
    objective than the worst seen so far weighs nothing, however much it gains in the others: on CarSideImpact
    without references (four objectives) the search stayed among the lightest designs while Ax, BayBE and the
    best fronts trade weight for the other three (docs/optimizer-benchmark.md). For two objectives the same
    rule is 10 % at 11 points; applied there it lowered the median of 4 of the 10 two-objective rows of the
    benchmark and made two of them losses to TPE, so they keep BoTorch's fixed margin."""
    if objectives <= 2:
        return 0.1
    divisions = 1
    while math.comb(divisions + objectives, objectives - 1) <= points:  # C((H + 1) + m - 1, m - 1): H + 1 fits
        divisions += 1
    return 1.0 / divisions


def log_nehvi(opt: _Bayes, model, x, y, pending):
    """qLogNEHVI: the noisy expected hypervolume improvement over every objective (Daulton et al. 2021), in the
    user's units when every objective has a reference (:func:`raw_hypervolume`)."""
    from .partitioning import LogNEHVI

    kernels.fused_logehvi()  # BoTorch's C++ kernel when built; never a compile stall in an ask
    raw = raw_hypervolume(opt)
    acqf = LogNEHVI(  # BoTorch's qLogNEHVI, its box decompositions computed in NumPy (partitioning.py)
        model, ref_point=reference_point(opt, y, raw_units=raw),
        X_baseline=x, sampler=opt.sampler(), objective=opt.objective(raw_units=raw),
        constraints=opt.constraints() or None, X_pending=pending, prune_baseline=True, cache_root=True)
    return acqf, "qLogNEHVI"


class QLogNEI(_Bayes):
    """Single-objective Bayesian optimization with batch log noisy expected improvement (BoTorch qLogNEI)."""

    max_objectives = 1

    def acquisition(self, model, x, y, pending):
        if len(self.problem.objectives) != 1:
            raise reflow.UserInputError("qlognei optimizes one objective; use qnehvi or qparego for several")
        return log_nei(self, model, x, y, pending)


class QNEHVI(_Bayes):
    """Multi-objective Bayesian optimization with batch log noisy expected hypervolume improvement."""

    def acquisition(self, model, x, y, pending):
        if len(self.problem.objectives) == 1:
            return log_nei(self, model, x, y, pending)
        return log_nehvi(self, model, x, y, pending)


class QParEGO(_Bayes):
    """ParEGO: random Chebyshev scalarizations of the objectives, each optimized by qLogNEI (qLogNParEGO)."""

    def acquisition(self, model, x, y, pending):
        from botorch.acquisition.multi_objective.parego import qLogNParEGO

        if len(self.problem.objectives) == 1:
            return log_nei(self, model, x, y, pending)
        constraints = self.constraints() + self.reference_constraints()
        acqf = qLogNParEGO(model, X_baseline=x, sampler=self.sampler(), objective=self.objective(),
                           constraints=constraints or None, X_pending=pending, prune_baseline=True)
        return acqf, "qLogNParEGO"


class ActiveLearning(_Bayes):
    """Active learning then optimization (Pruksawan et al.): first shrink the model's uncertainty, then optimize.

    Exploration asks where the model is least sure: ``explore_with: variance`` (default) maximizes the
    posterior standard deviation (BoTorch's qPosteriorStandardDeviation, cheap); ``explore_with: nipv``
    asks the points that most reduce the integrated posterior variance over a space-filling set of points
    (qNegIntegratedPosteriorVariance: better spread, several times slower per ask). It switches to
    Bayesian optimization (qLogNEI for one objective, qLogNEHVI for several) after ``explore`` exploration
    evaluations, or earlier once the mean posterior standard deviation over the space, in units of the
    outputs' spread, falls below ``std_target``.
    """

    class Params(_Bayes.Params):
        explore: int = Field(10, ge=0, description="evaluations spent reducing uncertainty before optimizing")
        std_target: float | None = Field(None, gt=0, description="switch early below this mean posterior std "
                                                                 "(in standard deviations of the outputs)")
        explore_with: Literal["variance", "nipv"] = Field(
            "variance", description="exploration acquisition: max posterior std, or negative integrated variance")
        integration_points: int = Field(128, ge=16, description="points the posterior variance is integrated on")

    def _explored(self) -> int:
        told = self._told()
        if told is None or "acquisition" not in told:
            return 0
        return int(sum(str(a).startswith("explore") for a in told["acquisition"].values))

    def acquisition(self, model, x, y, pending):
        import torch
        from botorch.acquisition.active_learning import qNegIntegratedPosteriorVariance
        from botorch.acquisition.monte_carlo import qPosteriorStandardDeviation
        from botorch.acquisition.objective import ScalarizedPosteriorTransform

        m = len(self.problem.objectives)
        if self._explored() < self.params.explore:
            points = torch.as_tensor(space_filling(self.problem, self.params.integration_points, self.seed),
                                     dtype=torch.double, device=self.device)
            spread = y.std(dim=0).clamp_min(1e-12)
            weights = torch.zeros(y.shape[-1], dtype=torch.double, device=self.device)
            weights[:m] = 1.0 / spread[:m]
            with torch.no_grad():
                std = model.posterior(points).variance.clamp_min(0).sqrt()[..., :m] / spread[:m]
            mean_std = float(std.mean())
            if self.params.std_target is None or mean_std >= self.params.std_target:
                transform = ScalarizedPosteriorTransform(weights=weights)
                if self.params.explore_with == "nipv":
                    acqf = qNegIntegratedPosteriorVariance(model, mc_points=points, X_pending=pending,
                                                           posterior_transform=transform)
                else:
                    acqf = qPosteriorStandardDeviation(model, sampler=self.sampler(), X_pending=pending,
                                                       posterior_transform=transform)
                return acqf, f"explore: {self.params.explore_with} (mean posterior std {mean_std:.3g})"
        if m == 1:
            return log_nei(self, model, x, y, pending)
        return log_nehvi(self, model, x, y, pending)

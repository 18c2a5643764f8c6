"""Component contracts: the small base classes every plugin component derives from.

Each component has a nested pydantic ``Params`` model; the params a study gives with the component's
name are validated against it before anything runs. Keep the contracts small (scikit-learn style):

- :class:`DataSource`: ``load(ctx) -> Dataset``
- :class:`Model`: ``fit(data, ctx, validation=None) -> self``, ``predict(data, ctx) -> Dataset``, ``save(dir)``,
  classmethod ``load(dir)``; fitted state ends in ``_``; optional ``score``, ``plot``, ``summary``
- :class:`Generator`: a model that makes new samples: ``generate(n_per_class, seed, source, device)``
- :class:`Evaluator`: declares ``inputs``/``outputs``; ``evaluate_one(inputs) -> dict`` per trial, or
  ``evaluate(designs, ctx) -> Dataset`` for a whole batch
- :class:`Design`: ``generate(space, rng) -> Dataset`` (a design of experiments)
- :class:`Optimizer`: ``ask(n, ctx) -> Dataset``, ``tell(trials)``, ``state()``/``restore(state)``
- :class:`Task`: what a stage does: ``run(ctx) -> StageResult``; :class:`LabTask` adds the lab protocol

What a task may ask of a component is declared here, with a default, and nowhere else: tasks never reach
for an attribute a base class does not declare (scikit-learn's tags, BoTorch's small ABCs).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict
from reflow.errors import PluginError

if TYPE_CHECKING:
    import numpy as np
    import xarray as xr
    from reflow.context import RunContext
    from reflow.problem import OptimizationProblem
    from reflow.space import Space

KINDS = ("data_source", "model", "evaluator", "optimizer", "task")
"""The component kinds, one per registration hook."""


class Params(BaseModel):
    """Base for every component's ``Params``: unknown keys are errors, values are checked on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


class Component:
    """Base of all components: holds validated params."""

    kind: ClassVar[str] = ""
    Params: ClassVar[type[Params]] = Params

    def __init__(self, params: Params | dict[str, Any] | None = None, **kwargs: Any):
        if params is None:
            params = self.Params(**kwargs)
        elif isinstance(params, dict):
            params = self.Params(**{**params, **kwargs})
        elif kwargs:
            params = params.model_copy(update=kwargs)
        self.params = params

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.model_dump().items())
        return f"{type(self).__name__}({args})"


@dataclass(frozen=True)
class Variable:
    """An evaluator input or output: its name, units and, for inputs, its range and default."""

    name: str
    units: str = ""
    low: float | None = None
    high: float | None = None
    choices: tuple[Any, ...] | None = None
    default: Any = None
    description: str = ""


class DataSource(Component):
    """Produces a dataset: ``load(ctx) -> xarray.Dataset`` (tabular data on dim ``sample``)."""

    kind = "data_source"

    def load(self, ctx: RunContext) -> xr.Dataset:
        raise NotImplementedError(f"{type(self).__name__} must implement load(ctx)")

    def plot(self, data: xr.Dataset, folder: Path) -> list[Path]:
        """Figures of the loaded data this source draws itself (e.g. example images); the default draws none."""
        return []


class Model(Component):
    """A trainable model. ``family`` is one of :data:`MODEL_FAMILIES`.

    The base class implements :meth:`configure` (the ``train`` task names the features and targets) and saves
    them with the params: a subclass implements :meth:`fit`, :meth:`predict`, :meth:`save_state` and
    :meth:`load_state`, and may override :meth:`score`, :meth:`plot`, :meth:`summary` and the class flags.

    Saved models are a ``params.json`` plus state files (state dicts, safetensors, npz): never a pickled
    object. The default :meth:`save` and :meth:`load` handle the params; subclasses add their state with
    :meth:`save_state` and :meth:`load_state`.
    """

    kind = "model"
    family: ClassVar[str] = ""
    uses_images: ClassVar[bool] = False
    """True for models that read the ``image`` variable instead of numeric feature columns."""

    def __init__(self, params: Params | dict[str, Any] | None = None, **kwargs: Any):
        super().__init__(params, **kwargs)
        self.features: list[str] = []
        self.targets: list[str] = []

    def configure(self, features: list[str], targets: list[str]) -> Model:
        """Say which variables are inputs and which are predicted; the ``train`` task calls this."""
        self.features = list(features)
        self.targets = list(targets)
        return self

    def fit(self, data: xr.Dataset, ctx: RunContext, validation: xr.Dataset | None = None) -> Model:
        """Learn from ``data``; ``validation`` (rows held out by the study's split, or None) is for early
        stopping and model selection only, never for the fit itself."""
        raise NotImplementedError(f"{type(self).__name__} must implement fit(data, ctx, validation=None)")

    def predict(self, data: xr.Dataset, ctx: RunContext) -> xr.Dataset:
        raise NotImplementedError(f"{type(self).__name__} must implement predict(data, ctx)")

    def score(self, data: xr.Dataset, ctx: RunContext, predictions: xr.Dataset | None = None) -> dict[str, Any]:
        """Metrics of the fitted model on held-out ``data`` beyond the ``train`` task's per-target scores (a
        life model's likelihood, a detector's mAP); ``predictions`` is ``predict(data)`` when already made.
        The default adds none."""
        return {}

    def plot(self, folder: Path) -> list[Path]:
        """Figures the fitted model draws of itself into ``folder`` (a probability plot, a training curve);
        return the PNG paths. The default draws none."""
        return []

    def summary(self) -> dict[str, Any]:
        """Fitted constants worth reporting (numbers by name); the ``train`` task adds them to its metrics."""
        return {}

    def onnx_spec(self) -> dict[str, Any]:
        """Hints for the ``export`` task (input names and shapes, normalization); the default gives none."""
        return {}

    def is_fitted(self, *attributes: str) -> bool:
        """True when every fitted attribute named (each ends in ``_``) is set and not None."""
        return all(getattr(self, name, None) is not None for name in attributes)

    def require_fitted(self, *attributes: str) -> None:
        """Raise a clear error when a method that needs the fitted state is called before :meth:`fit`."""
        if not self.is_fitted(*attributes):
            from reflow.errors import ReflowError

            raise ReflowError(f"{type(self).__name__}: call fit before using the model "
                              f"(no fitted {', '.join(attributes)})")

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        meta = {"class": f"{type(self).__module__}.{type(self).__qualname__}",
                "params": self.params.model_dump(mode="json"),
                "features": self.features, "targets": self.targets}
        (directory / "params.json").write_text(json.dumps(meta, indent=2))
        self.save_state(directory)

    @classmethod
    def load(cls, directory: str | Path) -> Model:
        directory = Path(directory)
        meta = json.loads((directory / "params.json").read_text())
        model = cls(cls.Params(**meta["params"]))
        model.configure(meta.get("features", []), meta.get("targets", []))
        model.load_state(directory)
        return model

    def save_state(self, directory: Path) -> None:
        """Write the fitted state into ``directory`` (no pickles)."""
        raise NotImplementedError(f"{type(self).__name__} must implement save_state(directory)")

    def load_state(self, directory: Path) -> None:
        """Read the fitted state written by :meth:`save_state`."""
        raise NotImplementedError(f"{type(self).__name__} must implement load_state(directory)")


class Generator(Model):
    """A model that makes new samples of each class (an augmenter: seed 002's flips, a WGAN-GP).

    ``fit`` learns from real images (it may only remember them); :meth:`generate` returns new ones. The
    ``augment`` task uses it; ``predict`` is not part of a generator's contract.
    """

    family: ClassVar[str] = "generator"
    uses_images: ClassVar[bool] = True
    classes_: list[str] | None = None
    """The classes the fitted generator can make (set by ``fit``)."""

    def generate(self, n_per_class: dict[str, int], seed: int = 0, source: xr.Dataset | None = None,
                 device: str = "cpu") -> xr.Dataset:
        """``n_per_class[c]`` new samples of class ``c`` on dim ``sample`` (``source``: the real samples, for
        generators that transform them); the same seed gives the same samples."""
        raise NotImplementedError(f"{type(self).__name__} must implement generate(n_per_class, seed, source, device)")

    def predict(self, data: xr.Dataset, ctx: RunContext) -> xr.Dataset:
        from reflow.errors import UserInputError

        raise UserInputError(f"{type(self).__name__} is a generator: it makes samples (the augment task), it "
                             "does not predict")


MODEL_FAMILIES = ("classifier", "regressor", "detector", "generator", "surrogate", "life-model")


class Evaluator(Component):
    """Maps a design (named inputs) to named outputs: a simulator, an analytic model, a program, a lab.

    Declare ``inputs`` and ``outputs`` as tuples of :class:`Variable`. Inputs a design does not set take
    their ``default``. Implement :meth:`evaluate_one` for per-trial work (reflow runs trials through the
    study's executor, in parallel, each with a timeout, and marks an exception, NaN or timeout as that
    trial's failure), or override :meth:`evaluate` for a vectorized batch. A closed form can also give
    ``evaluate_arrays(inputs) -> outputs`` (dicts of name -> numpy array, one value per trial) next to
    :meth:`evaluate_one`: reflow then evaluates whole chunks of trials as arrays, and evaluates a row that comes
    out NaN or inf again through :meth:`evaluate_one`, so that trial fails alone with its own error.
    """

    kind = "evaluator"
    inputs: ClassVar[tuple[Variable, ...]] = ()
    outputs: ClassVar[tuple[Variable, ...]] = ()
    accepts_any_inputs: ClassVar[bool] = False
    """True for evaluators whose inputs are only known at run time (user functions, commands)."""
    manual: ClassVar[bool] = False
    """True for evaluators whose results come from people (a lab): the ``optimize`` task then works by
    ``reflow ask``/``reflow tell`` instead of calling :meth:`evaluate`."""

    any_batch_size: ClassVar[bool] = False
    """True for array evaluators whose cost does not grow with the chunk size (closed forms): reflow then
    hands them every trial at once instead of chunks of the executor's size."""

    def input_variables(self) -> tuple[Variable, ...]:
        return type(self).inputs

    def output_variables(self) -> tuple[Variable, ...]:
        return type(self).outputs

    def setup(self, ctx: RunContext) -> None:
        """Prepare to run in ``ctx`` (resolve paths, load models). Called once per stage, in the main process."""

    def evaluate_one(self, inputs: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError(f"{type(self).__name__} must implement evaluate_one(inputs) or evaluate()")

    def evaluate_arrays(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Optional vectorized form of :meth:`evaluate_one`: arrays in (one value per trial), arrays out."""
        raise NotImplementedError(f"{type(self).__name__} has no evaluate_arrays")

    def source_function(self) -> Any:
        """The user function behind this evaluator, if any (errors then point at its file and line)."""
        return None

    @property
    def is_batch(self) -> bool:
        """True when this evaluator overrides :meth:`evaluate` to work on a whole batch at once."""
        return type(self).evaluate is not Evaluator.evaluate

    @property
    def has_arrays(self) -> bool:
        """True when this evaluator implements :meth:`evaluate_arrays`."""
        return type(self).evaluate_arrays is not Evaluator.evaluate_arrays

    def evaluate(self, designs: xr.Dataset, ctx: RunContext) -> xr.Dataset:
        """Evaluate every trial of ``designs`` (dim ``trial``); one row per trial with status and error."""
        from reflow.evaluation import evaluate_trials, records_to_dataset

        dim = "trial" if "trial" in designs.dims else next(iter(designs.dims))
        names = [n for n in designs.data_vars if designs[n].dims == (dim,)]
        outputs = [v.name for v in self.output_variables()] or None
        units = {v.name: v.units for v in (*self.input_variables(), *self.output_variables())}
        return records_to_dataset(evaluate_trials(self, designs, ctx), names, outputs, units)


class Design(Component):
    """A design of experiments: ``generate(space, rng)`` returns every design point on dim ``trial``.

    Designs register through the same hook as optimizers (``register_optimizers``, kind ``optimizer``): a
    study names either as a stage's ``design`` or ``optimizer``; :attr:`role` tells them apart.
    """

    kind = "optimizer"
    role: ClassVar[str] = "design"
    supports_categorical: ClassVar[bool] = True
    """False for designs that only place numeric levels (factorials over ranges, CCD)."""

    def generate(self, space: Space, rng: np.random.Generator) -> xr.Dataset:
        raise NotImplementedError(f"{type(self).__name__} must implement generate(space, rng)")

    def space_problems(self, space: Space) -> list[str]:
        """Reasons this design cannot be built over ``space`` (checked at validation time)."""
        return []


class Optimizer(Component):
    """An ask/tell optimizer (pymoo's template): ``setup``, then ``ask``/``tell`` until the budget is spent.

    The ``optimize`` task calls :meth:`setup` with the :class:`reflow.problem.OptimizationProblem`, then
    :meth:`tell` with every trial finished so far (all of them at once when resuming), then alternates
    :meth:`ask` (``n`` new points: a Dataset of parameter values on dim ``trial``; ``pending`` holds points
    asked but not yet measured) and :meth:`tell` (the finished trials of that batch, failures included with
    ``status == "failed"``: leave them out of model fitting). ``state()`` returns JSON-able data that
    :meth:`restore` takes back; optimizers whose state is a function of the told trials return ``{}``.
    """

    kind = "optimizer"
    role: ClassVar[str] = "optimizer"
    max_objectives: ClassVar[int | None] = None
    """How many objectives it handles (1 for a single-objective method; None: any number)."""
    min_initial: ClassVar[int] = 1
    """How many initial (space-filling) trials it needs before its first ask (a genetic algorithm: 4)."""

    def setup(self, problem: OptimizationProblem, seed: int) -> None:
        """Take the problem to solve and the seed to draw from (the stage's seed)."""
        self.problem = problem
        self.seed = seed

    def ask(self, n: int, ctx: RunContext, pending: xr.Dataset | None = None) -> xr.Dataset:
        raise NotImplementedError(f"{type(self).__name__} must implement ask(n, ctx)")

    def tell(self, trials: xr.Dataset) -> None:
        raise NotImplementedError(f"{type(self).__name__} must implement tell(trials)")

    def state(self) -> dict[str, Any]:
        return {}

    def restore(self, state: dict[str, Any]) -> None:
        """Resume from :meth:`state`; the default has nothing to restore (the told trials are the state)."""

    def report(self) -> dict[str, Any]:
        """Facts about the last model fit worth putting in the stage's metrics (transforms chosen, warnings
        counted); the default reports none."""
        return {}


@dataclass
class StageResult:
    """What a task returns: named output datasets (the first is the stage's main output) and metrics."""

    outputs: dict[str, xr.Dataset] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)


class Task(Component):
    """What a stage of kind ``task: NAME`` does. ``Params`` validates the stage's other keys.

    ``outputs`` names the datasets the task produces, main output first; other stages refer to them as
    ``stage`` (main) or ``stage.name``.
    """

    kind = "task"
    outputs: ClassVar[tuple[str, ...]] = ("data",)
    produces_model: ClassVar[bool] = False
    """True for tasks that save a model other stages reuse as ``{stage: NAME}`` (train, compare, augment)."""

    def run(self, ctx: RunContext) -> StageResult:
        raise NotImplementedError(f"{type(self).__name__} must implement run(ctx)")

    def check(self, check: Any) -> None:
        """Cross-field checks needing the registry (space names vs evaluator inputs, ...).

        ``check`` is a :class:`reflow.study.StageChecker`; report problems with ``check.problem(...)``.
        """

    def plot(self, result: StageResult, folder: Path) -> list[Path]:
        """Draw this stage's figures from its stored outputs into ``folder``; return the PNG paths.

        Called after the stage runs and again by ``reflow report``, so it must rely on ``result`` only.
        """
        return []


class LabTask(Task):
    """A task whose trials may be measured by people: ``reflow ask`` and ``reflow tell`` drive it.

    ``lab_columns`` says whether this stage is a lab stage (None when its evaluators run themselves) and which
    columns the experiments sheet has; ``lab_ask`` hands out ``n`` new points and journals them as asked;
    ``lab_journals`` reads what was asked and told; ``lab_tell`` stores measured trials; ``lab_budget`` says how
    many measurements the stage wants in all (``reflow tell`` reports progress against it).
    """

    def lab_budget(self) -> int | None:
        """How many trials the stage measures in all; None when it sets no number."""
        return None

    def lab_columns(self, ctx: RunContext) -> tuple[Space, dict[str, str]] | None:
        raise NotImplementedError(f"{type(self).__name__} must implement lab_columns(ctx)")

    def lab_ask(self, ctx: RunContext, n: int) -> xr.Dataset:
        raise NotImplementedError(f"{type(self).__name__} must implement lab_ask(ctx, n)")

    def lab_tell(self, ctx: RunContext, records: list[dict[str, Any]]) -> None:
        raise NotImplementedError(f"{type(self).__name__} must implement lab_tell(ctx, records)")

    def lab_journals(self, ctx: RunContext) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        raise NotImplementedError(f"{type(self).__name__} must implement lab_journals(ctx)")


BASES: dict[str, tuple[type, ...]] = {
    "data_source": (DataSource,),
    "model": (Model,),
    "evaluator": (Evaluator,),
    "optimizer": (Optimizer, Design),
    "task": (Task,),
}


def check_component_class(kind: str, cls: Any, where: str) -> None:
    """Raise :class:`PluginError` unless ``cls`` is a valid component class of ``kind``."""
    bases = BASES[kind]
    if not isinstance(cls, type) or not issubclass(cls, bases):
        names = " or ".join(f"reflow.{b.__name__}" for b in bases)
        raise PluginError(f"{where}: {cls!r} is not a subclass of {names}")
    if not (isinstance(cls.Params, type) and issubclass(cls.Params, BaseModel)):
        raise PluginError(f"{where}: {cls.__name__}.Params must be a pydantic model")
    if kind == "model" and cls.family not in MODEL_FAMILIES:
        raise PluginError(
            f"{where}: {cls.__name__}.family is {cls.family!r}; allowed: {', '.join(MODEL_FAMILIES)}"
        )

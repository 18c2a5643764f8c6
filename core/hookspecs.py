"""The hooks a reflow plugin can implement: the plugin author's reference.

A plugin is a module (or any object) with functions marked ``@reflow.hookimpl`` whose names match the
specs below. reflow loads plugins from the entry-point group ``reflow``; its own built-in components come
the same way, so a third-party plugin has exactly the powers a built-in one has.

Registration hooks are called once, when the plugin manager loads. Each receives a ``register`` callback::

    import reflow

    @reflow.hookimpl
    def register_evaluators(register):
        register("cantilever", Cantilever)

``register(name, cls)`` takes a kebab-case name, unique across all plugins and families, and a component
class (a subclass of the matching base in :mod:`reflow.components`, with a nested pydantic ``Params``).
Registering a name that another plugin already registered is an error that names both plugins.

Lifecycle hooks are called while a study runs. They are for trackers, notifications and loggers: they
receive the run and must not change it. Every implementation is called; return values are ignored.
An exception raised in a lifecycle hook is logged and does not stop the run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import xarray as xr
    from reflow.runner import Run

hookspec = pluggy.HookspecMarker("reflow")

Register = Callable[[str, type], None]


# --------------------------------------------------------------------------------------------------
# Registration: called once when plugins load.
# --------------------------------------------------------------------------------------------------


@hookspec
def register_data_sources(register: Register) -> None:
    """Register data sources: components that produce an ``xarray.Dataset`` from files or generators.

    :param register: ``register(name, cls)`` with ``cls`` a subclass of
        :class:`reflow.components.DataSource` implementing ``load(ctx) -> Dataset``.
    """


@hookspec
def register_models(register: Register) -> None:
    """Register models: classifiers, regressors, detectors, generators, surrogates, life models.

    :param register: ``register(name, cls)`` with ``cls`` a subclass of :class:`reflow.components.Model`
        implementing ``fit(data, ctx, validation=None) -> self``, ``predict(data, ctx) -> Dataset``,
        ``save_state(dir)`` and ``load_state(dir)``, and setting the class attribute ``family`` (a generator
        subclasses :class:`reflow.components.Generator` and implements ``generate`` instead of ``predict``).
    """


@hookspec
def register_evaluators(register: Register) -> None:
    """Register evaluators: simulators, analytic models, external programs, labs.

    :param register: ``register(name, cls)`` with ``cls`` a subclass of
        :class:`reflow.components.Evaluator` that declares its ``inputs`` and ``outputs`` and implements
        ``evaluate_one(inputs) -> dict`` (one trial) or ``evaluate(designs, ctx) -> Dataset`` (a batch).
    """


@hookspec
def register_optimizers(register: Register) -> None:
    """Register optimizers and design-of-experiments designs.

    :param register: ``register(name, cls)`` with ``cls`` a subclass of
        :class:`reflow.components.Optimizer` (``ask``/``tell``/``state``/``restore``) or of
        :class:`reflow.components.Design` (a space-filling or factorial design of experiments).
    """


@hookspec
def register_tasks(register: Register) -> None:
    """Register tasks: what a stage with ``task: NAME`` does.

    :param register: ``register(name, cls)`` with ``cls`` a subclass of :class:`reflow.components.Task`.
        The task's ``Params`` model validates the stage's keys (everything but ``task``).
    """


# --------------------------------------------------------------------------------------------------
# Lifecycle: called while a study runs. All implementations are called; results are ignored. An
# implementation takes any subset of the arguments, by name (``def on_stage_end(stage, result)``), and one
# that raises is logged and never stops the run or the other implementations.
# --------------------------------------------------------------------------------------------------


@hookspec
def on_study_start(run: Run) -> None:
    """Called after the run folder is created and before the first stage runs.

    :param run: the run; ``run.dir`` is its folder, ``run.study`` the validated study, ``run.manifest``
        the manifest dict as it will be written.
    """


@hookspec
def on_stage_end(run: Run, stage: str, result: Any) -> None:
    """Called when a stage finishes, successfully or not.

    :param run: the run.
    :param stage: the stage name.
    :param result: the :class:`reflow.components.StageResult` on success, or the exception on failure.
    """


@hookspec
def on_trial_batch(run: Run, stage: str, trials: xr.Dataset) -> None:
    """Called after each batch of trials of a ``doe``, ``evaluate`` or ``optimize`` stage is stored.

    :param run: the run.
    :param stage: the stage name.
    :param trials: the trials of this batch (dim ``trial``), with ``status`` and ``error``.
    """

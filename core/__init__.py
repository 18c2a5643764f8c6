"""reflow: reliability and design optimization for electronic packaging.

The public API for plugin authors::

    import reflow

    class MyEvaluator(reflow.Evaluator):
        class Params(reflow.Params): ...

    @reflow.hookimpl
    def register_evaluators(register):
        register("my-evaluator", MyEvaluator)

Submodules import lazily, so ``import reflow`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "DataSource": "reflow.components", "Design": "reflow.components", "Evaluator": "reflow.components",
    "Generator": "reflow.components", "LabTask": "reflow.components", "Model": "reflow.components",
    "Optimizer": "reflow.components", "Params": "reflow.components",
    "StageResult": "reflow.components", "Task": "reflow.components", "Variable": "reflow.components",
    "DataError": "reflow.errors", "EvaluationError": "reflow.errors", "PluginError": "reflow.errors",
    "Problem": "reflow.errors", "ReflowError": "reflow.errors", "RunError": "reflow.errors",
    "StudyError": "reflow.errors", "UserInputError": "reflow.errors",
    "hookimpl": "reflow.registry",
    "Objective": "reflow.problem", "OptimizationProblem": "reflow.problem",
}
__all__ = [
    "DataError", "DataSource", "Design", "EvaluationError", "Evaluator", "Generator", "LabTask", "Model", "Objective",
    "OptimizationProblem",
    "Optimizer", "Params",
    "PluginError", "Problem", "ReflowError", "RunError", "StageResult", "StudyError", "Task", "UserInputError",
    "Variable", "__version__", "hookimpl",
]

if TYPE_CHECKING:
    from reflow.components import (
        DataSource,
        Design,
        Evaluator,
        Generator,
        LabTask,
        Model,
        Optimizer,
        Params,
        StageResult,
        Task,
        Variable,
    )
    from reflow.errors import (
        DataError,
        EvaluationError,
        PluginError,
        Problem,
        ReflowError,
        RunError,
        StudyError,
        UserInputError,
    )
    from reflow.problem import Objective, OptimizationProblem
    from reflow.registry import hookimpl


def __getattr__(name: str) -> Any:
    """Import the public names on first use, so that ``reflow --help`` does not pay for pydantic."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'reflow' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value

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

from reflow.components import DataSource, Design, Evaluator, Model, Optimizer, Params, StageResult, Task, Variable
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
from reflow.registry import hookimpl

__version__ = "0.1.0"

__all__ = [
    "DataError", "DataSource", "Design", "EvaluationError", "Evaluator", "Model", "Optimizer", "Params",
    "PluginError", "Problem", "ReflowError", "RunError", "StageResult", "StudyError", "Task",
    "UserInputError", "Variable", "hookimpl", "__version__",
]

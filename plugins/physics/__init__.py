"""Built-in evaluators: bilayer-warpage (closed form), python (a user's function), command (a program)."""

import reflow

from .bilayer import BilayerWarpage
from .command import CommandEvaluator
from .python_function import PythonEvaluator


@reflow.hookimpl
def register_evaluators(register):
    register("bilayer-warpage", BilayerWarpage)
    register("python", PythonEvaluator)
    register("command", CommandEvaluator)

"""Built-in evaluators: bilayer-warpage, junction-temperature, python (a user's function), command (a program)."""

import reflow

from .bilayer import BilayerWarpage
from .command import CommandEvaluator
from .python_function import PythonEvaluator
from .thermal import JunctionTemperature


@reflow.hookimpl
def register_evaluators(register):
    register("bilayer-warpage", BilayerWarpage)
    register("python", PythonEvaluator)
    register("command", CommandEvaluator)
    register("junction-temperature", JunctionTemperature)

"""Built-in tasks: data, doe, evaluate, optimize, train."""

import reflow

from .data import DataTask
from .doe import DoeTask
from .evaluate import EvaluateTask
from .optimize import OptimizeTask
from .train import TrainTask


@reflow.hookimpl
def register_tasks(register):
    register("data", DataTask)
    register("doe", DoeTask)
    register("evaluate", EvaluateTask)
    register("optimize", OptimizeTask)
    register("train", TrainTask)

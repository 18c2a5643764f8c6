"""Built-in tasks: data, doe, evaluate, train."""

import reflow

from .data import DataTask
from .doe import DoeTask
from .evaluate import EvaluateTask
from .train import TrainTask


@reflow.hookimpl
def register_tasks(register):
    register("data", DataTask)
    register("doe", DoeTask)
    register("evaluate", EvaluateTask)
    register("train", TrainTask)

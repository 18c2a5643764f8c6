"""Built-in tasks: compare, data, doe, evaluate, optimize, predict, sensitivity, train."""

import reflow

from .compare import CompareTask
from .data import DataTask
from .doe import DoeTask
from .evaluate import EvaluateTask
from .optimize import OptimizeTask
from .predict import PredictTask
from .sensitivity import SensitivityTask
from .train import TrainTask


@reflow.hookimpl
def register_tasks(register):
    register("compare", CompareTask)
    register("data", DataTask)
    register("doe", DoeTask)
    register("evaluate", EvaluateTask)
    register("optimize", OptimizeTask)
    register("predict", PredictTask)
    register("sensitivity", SensitivityTask)
    register("train", TrainTask)

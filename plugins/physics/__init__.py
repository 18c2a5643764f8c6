"""Built-in simulators: bilayer-warpage, fea-package, junction-temperature, epoxy-lab, python, command.

Data source: igbt-junction-samples (Liu-style Vce(sat), Ic, aging cycles -> Tj samples).
"""

import reflow

from .bilayer import BilayerWarpage
from .command import CommandEvaluator
from .epoxy import EpoxyLab
from .fea import FlipChipFEA
from .igbt import IgbtJunctionSamples
from .python_function import PythonEvaluator
from .thermal import JunctionTemperature


@reflow.hookimpl
def register_evaluators(register):
    register("bilayer-warpage", BilayerWarpage)
    register("python", PythonEvaluator)
    register("command", CommandEvaluator)
    register("junction-temperature", JunctionTemperature)
    register("epoxy-lab", EpoxyLab)
    register("fea-package", FlipChipFEA)


@reflow.hookimpl
def register_data_sources(register):
    register("igbt-junction-samples", IgbtJunctionSamples)

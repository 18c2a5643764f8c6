"""Built-in reliability models: physics-of-failure closed forms usable as evaluators in pipelines."""

import reflow

from .imc import ImcGrowth
from .pof import Arrhenius, Black, CoffinManson, Engelmaier, NorrisLandzberg


@reflow.hookimpl
def register_evaluators(register):
    register("arrhenius", Arrhenius)
    register("black", Black)
    register("coffin-manson", CoffinManson)
    register("engelmaier", Engelmaier)
    register("norris-landzberg", NorrisLandzberg)


@reflow.hookimpl
def register_models(register):
    register("imc-growth", ImcGrowth)

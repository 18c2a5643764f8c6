"""Built-in designs of experiments, optimizers (BoTorch, pymoo, active learning) and the ``lab`` evaluator."""

import reflow

from .bayes import QNEHVI, ActiveLearning, QLogNEI, QParEGO
from .designs import (
    BoxBehnken,
    CentralComposite,
    FractionalFactorial,
    FullFactorial,
    Halton,
    LatinHypercube,
    RandomDesign,
    Sobol,
)
from .genetic import NSGA2, NSGA3
from .lab import Lab


@reflow.hookimpl
def register_optimizers(register):
    register("lhs", LatinHypercube)
    register("sobol", Sobol)
    register("halton", Halton)
    register("random", RandomDesign)
    register("full-factorial", FullFactorial)
    register("fractional-factorial", FractionalFactorial)
    register("central-composite", CentralComposite)
    register("box-behnken", BoxBehnken)
    register("qlognei", QLogNEI)
    register("qnehvi", QNEHVI)
    register("qparego", QParEGO)
    register("active-learning", ActiveLearning)
    register("nsga2", NSGA2)
    register("nsga3", NSGA3)


@reflow.hookimpl
def register_evaluators(register):
    register("lab", Lab)

"""Built-in designs of experiments (and, later, optimizers)."""

import reflow

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

"""Built-in reliability models: physics-of-failure closed forms usable as evaluators in pipelines, and life
models (Weibull, Kaplan-Meier, Cox PH) fitted to censored life tests."""

import reflow

from .alt import LifeStress
from .competing import CompetingModes
from .imc import ImcGrowth
from .lifedist import LifeDistribution
from .lifetest import SyntheticAltTest, SyntheticLifeTest, SyntheticReadoutTest
from .mixture import WeibullMixture
from .pof import Arrhenius, Black, CoffinManson, Engelmaier, NorrisLandzberg
from .survival import CoxPH, KaplanMeier
from .weibull import Weibull


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
    register("weibull", Weibull)
    register("life-distribution", LifeDistribution)
    register("kaplan-meier", KaplanMeier)
    register("cox-ph", CoxPH)
    register("life-stress", LifeStress)
    register("weibull-mixture", WeibullMixture)
    register("competing-modes", CompetingModes)


@reflow.hookimpl
def register_data_sources(register):
    register("synthetic-life-test", SyntheticLifeTest)
    register("synthetic-readout-test", SyntheticReadoutTest)
    register("synthetic-alt-test", SyntheticAltTest)

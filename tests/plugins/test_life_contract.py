"""The life models under the one Model contract: fit takes the held-out rows as an argument (and does not fit
them), score takes the predictions already made, predict before fit is a clear error, an optional fitted count
has its default, and trial bookkeeping is never a covariate."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from reflow.errors import ReflowError
from reflow.plugins.reliability.alt import LifeStress
from reflow.plugins.reliability.competing import CompetingModes
from reflow.plugins.reliability.imc import ImcGrowth
from reflow.plugins.reliability.lifedist import LifeDistribution
from reflow.plugins.reliability.lifemodel import numeric_covariates
from reflow.plugins.reliability.mixture import WeibullMixture
from reflow.plugins.reliability.survival import CoxPH, KaplanMeier
from reflow.plugins.reliability.weibull import Weibull
from reflow.tables import TRIAL_COLUMNS
from reflow.testing import test_context


def _life(n: int = 40, seed: int = 0) -> xr.Dataset:
    rng = np.random.default_rng(seed)
    void = rng.uniform(0.0, 0.3, n)
    life = 1000.0 * np.exp(-3.0 * void) * rng.weibull(2.0, n)
    end = float(np.quantile(life, 0.8))
    return xr.Dataset({"cycles": ("sample", np.minimum(life, end)), "failed": ("sample", (life <= end).astype(int)),
                       "void_fraction": ("sample", void)}, coords={"sample": np.arange(n)})


@pytest.mark.parametrize("cls", [Weibull, LifeDistribution, KaplanMeier, CoxPH, LifeStress, WeibullMixture,
                                 CompetingModes, ImcGrowth])
def test_predict_before_fit_is_a_clear_error(cls, tmp_path):
    model = cls()
    with pytest.raises(ReflowError, match="call fit"):
        model.predict(xr.Dataset(), test_context(tmp_path))


@pytest.mark.parametrize("cls", [Weibull, LifeDistribution, KaplanMeier, CoxPH])
def test_validation_rows_do_not_change_the_fit(cls, tmp_path):
    ctx = test_context(tmp_path)
    data, held_out = _life(seed=1), _life(seed=2)
    plain = cls().fit(data, ctx)
    given = cls().fit(data, ctx, validation=held_out)
    assert plain.summary() == given.summary()


@pytest.mark.parametrize("cls", [Weibull, LifeDistribution, CoxPH])
def test_score_takes_the_predictions_already_made(cls, tmp_path):
    ctx = test_context(tmp_path)
    model = cls().fit(_life(seed=1), ctx)
    test = _life(seed=3)
    scores = model.score(test, ctx, predictions=model.predict(test, ctx))
    assert scores and scores == model.score(test, ctx)
    assert all(isinstance(v, float) for v in scores.values())


def test_models_without_excluded_units_report_none(tmp_path):
    ctx = test_context(tmp_path)
    for cls in (Weibull, LifeDistribution):
        model = cls().fit(_life(seed=1), ctx)
        assert model.excluded_units_ == 0
        assert "units_excluded_at_start" not in model.summary()


def test_trial_bookkeeping_is_never_a_default_covariate(tmp_path):
    data = _life(seed=1)
    n = data.sizes["sample"]
    for name in TRIAL_COLUMNS:
        data[name] = ("sample", np.linspace(0.1, 1.0, n))
    assert numeric_covariates(data, "sample", {"cycles", "failed"}) == ["void_fraction"]
    model = CoxPH().fit(data, test_context(tmp_path))
    assert model.covariates_ == ["void_fraction"]


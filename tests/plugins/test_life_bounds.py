"""Confidence bounds: likelihood-ratio bounds against profile likelihoods computed here independently (closed
forms and scipy.stats + scipy.optimize directly, not through reflow's likelihood), Fisher against the
``reliability`` library's published bounds (in test_lifedist.py), one- against two-sided, and Fisher against
likelihood-ratio on a large sample."""

from __future__ import annotations

import math

import numpy as np
import pytest
from reflow.plugins.reliability import bounds
from reflow.plugins.reliability.censoring import Censored
from reflow.plugins.reliability.distributions import fit_distribution
from scipy import optimize, stats

# reliability docs' Fit_Weibull_2P example (30 failures, see test_lifedist.py)
WEIBULL_30 = np.array([58, 75, 36, 52, 63, 65, 22, 17, 28, 64, 23, 40, 73, 45, 52, 36, 52, 60, 13, 55, 82, 55, 34, 57,
                       23, 42, 66, 35, 34, 25], dtype=float)


def _exact(t) -> Censored:
    return Censored.from_times(t, np.ones(len(t), bool))


def _weibull_ll(beta: float, eta: float, t: np.ndarray) -> float:
    return float(np.sum(stats.weibull_min.logpdf(t, beta, scale=eta)))


def _profile_root(profile, start: float, target: float, step: float) -> tuple[float, float]:
    """Both solutions of profile(v) = target around the maximum at ``start`` (bracketing, then brentq)."""
    ends = []
    for sign in (-1, 1):
        d = step
        while profile(start + sign * d) > target:
            d *= 1.5
        a, b = sorted((start + sign * d / 1.5 if d > step else start, start + sign * d))
        ends.append(optimize.brentq(lambda v: profile(v) - target, a, b, xtol=1e-13, rtol=1e-13))
    return ends[0], ends[1]


@pytest.mark.parametrize(("confidence", "one_sided"), [(0.95, False), (0.9, True)])
def test_exponential_lr_bounds_equal_the_closed_form(confidence, one_sided):
    """Complete exponential data: ln L(lambda) = r ln lambda - lambda T, no nuisance parameter."""
    t = np.array([27.0, 64.0, 3.0, 18.0, 8.0])
    r, total = t.size, t.sum()
    hat = r / total
    chi = stats.chi2.ppf(1 - 2 * (1 - confidence) if one_sided else confidence, 1)

    def ll(lam):
        return r * math.log(lam) - lam * total

    target = ll(hat) - chi / 2
    lo = optimize.brentq(lambda x: ll(x) - target, 1e-9, hat, xtol=1e-15)
    hi = optimize.brentq(lambda x: ll(x) - target, hat, 10 * hat, xtol=1e-15)
    fit = fit_distribution("exponential", _exact(t))
    got = bounds.parameter_bounds(fit, "likelihood-ratio", confidence, one_sided)["lambda"]
    assert got == pytest.approx((hat, lo, hi), rel=1e-6)
    # the B10 of an exponential is -ln(0.9) / lambda: its LR bounds are the mapped lambda bounds
    b10 = bounds.b_life(fit, 10, "likelihood-ratio", confidence, one_sided)
    k = -math.log(0.9)
    assert b10 == pytest.approx((k / hat, k / hi, k / lo), rel=1e-6)


def test_weibull_lr_bounds_on_beta_equal_the_profile_likelihood():
    """For complete data the profile over eta has a closed form: eta(beta) = (mean t^beta)^(1/beta)."""
    t = WEIBULL_30
    fit = fit_distribution("weibull", _exact(t))

    def profile(beta):
        return _weibull_ll(beta, float(np.mean(t**beta)) ** (1 / beta), t)

    target = fit.loglik - stats.chi2.ppf(0.95, 1) / 2
    lo, hi = _profile_root(profile, fit.params[1], target, 0.2)
    got = bounds.parameter_bounds(fit, "likelihood-ratio", 0.95)
    assert got["beta"] == pytest.approx((fit.params[1], lo, hi), rel=1e-6)

    def profile_eta(eta):  # eta fixed: the best beta by a bounded scalar search
        res = optimize.minimize_scalar(lambda b: -_weibull_ll(b, eta, t), bounds=(0.2, 20), method="bounded",
                                       options={"xatol": 1e-12})
        return -res.fun

    lo, hi = _profile_root(profile_eta, fit.params[0], target, 2.0)
    assert got["eta"] == pytest.approx((fit.params[0], lo, hi), rel=1e-5)


@pytest.mark.parametrize("one_sided", [False, True])
def test_weibull_lr_bounds_on_b10_equal_the_constrained_maximum(one_sided):
    """B10 = eta k^(1/beta), k = -ln 0.9: for a given B10 the best beta (eta follows), by a scalar search."""
    t = WEIBULL_30
    fit = fit_distribution("weibull", _exact(t))
    k = -math.log(0.9)

    def profile(b10):
        res = optimize.minimize_scalar(lambda b: -_weibull_ll(b, b10 / k ** (1 / b), t), bounds=(0.2, 20),
                                       method="bounded", options={"xatol": 1e-12})
        return -res.fun

    confidence = 0.9
    chi = stats.chi2.ppf(0.8 if one_sided else 0.9, 1)
    value = fit.quantile(0.1)
    lo, hi = _profile_root(profile, value, fit.loglik - chi / 2, 1.0)
    assert bounds.b_life(fit, 10, "likelihood-ratio", confidence, one_sided) == pytest.approx((value, lo, hi),
                                                                                               rel=1e-5)


def test_weibull_lr_bounds_on_reliability_equal_the_constrained_maximum():
    """R(40) = r: eta = 40 / (-ln r)^(1/beta); the best beta for each r, by a scalar search."""
    t = WEIBULL_30
    fit = fit_distribution("weibull", _exact(t))

    def profile(r):
        res = optimize.minimize_scalar(lambda b: -_weibull_ll(b, 40.0 / (-math.log(r)) ** (1 / b), t),
                                       bounds=(0.2, 20), method="bounded", options={"xatol": 1e-12})
        return -res.fun

    r_hat = float(stats.weibull_min.sf(40.0, fit.params[1], scale=fit.params[0]))
    lo, hi = _profile_root(profile, r_hat, fit.loglik - stats.chi2.ppf(0.9, 1) / 2, 0.02)
    got = bounds.reliability(fit, np.array([40.0]), "likelihood-ratio", 0.9)
    assert [float(g[0]) for g in got] == pytest.approx([r_hat, lo, hi], rel=1e-5)


def test_one_sided_bound_is_the_end_of_the_two_sided_interval_at_twice_the_tail():
    fit = fit_distribution("lognormal", Censored.from_times(WEIBULL_30, WEIBULL_30 < 70))
    for method in bounds.METHODS:
        one = bounds.b_life(fit, 10, method, 0.95, one_sided=True)
        two = bounds.b_life(fit, 10, method, 0.90)
        assert one == pytest.approx(two, rel=1e-7), method
        r_one = bounds.reliability(fit, np.array([30.0]), method, 0.9, one_sided=True)
        r_two = bounds.reliability(fit, np.array([30.0]), method, 0.8)
        assert np.allclose(r_one, r_two, rtol=1e-7), method
    assert bounds.z_value(0.95, True) == pytest.approx(bounds.z_value(0.9, False))
    assert bounds.chi2_value(0.95, True) == pytest.approx(stats.norm.ppf(0.95) ** 2)


@pytest.mark.parametrize("name", ["weibull", "lognormal", "gamma", "loglogistic", "normal", "weibull-3p"])
def test_fisher_and_lr_agree_on_a_large_sample(name):
    """With 600 units the likelihood is nearly quadratic: the two methods' B10 bounds agree within a few %."""
    rng = np.random.default_rng(4)
    life = 100 + 1000 * rng.weibull(2.0, 600)
    data = Censored.from_times(np.minimum(life, 1400), life <= 1400)
    fit = fit_distribution(name, data)
    fisher = bounds.b_life(fit, 10, "fisher", 0.9)
    lr = bounds.b_life(fit, 10, "likelihood-ratio", 0.9)
    assert fisher[0] == lr[0]
    assert lr[1] == pytest.approx(fisher[1], rel=0.03) and lr[2] == pytest.approx(fisher[2], rel=0.03)
    assert lr[1] < lr[0] < lr[2]
    r = bounds.reliability(fit, np.array([300.0]), "likelihood-ratio", 0.9)
    rf = bounds.reliability(fit, np.array([300.0]), "fisher", 0.9)
    assert np.allclose(r, rf, atol=0.01)


def test_interval_data_lr_bounds_bracket_and_match_the_profile():
    """Readout data: the LR lower bound of B10 is where the profile log-likelihood (computed here with scipy's
    weibull_min cdf directly) drops by chi2 / 2."""
    rng = np.random.default_rng(8)
    life = 1000 * rng.weibull(2.5, 60)
    lower = np.floor(life / 200) * 200
    upper = np.where(life > 1400, np.inf, lower + 200)
    lower = np.minimum(lower, 1400)
    data = Censored.from_bounds(lower, upper)
    fit = fit_distribution("weibull", data)
    k = -math.log(0.9)

    def ll(beta, eta):
        cdf = stats.weibull_min.cdf
        right = np.isinf(upper)
        terms = np.where(right, stats.weibull_min.logsf(lower, beta, scale=eta),
                         np.log(np.maximum(cdf(np.where(right, 1.0, upper), beta, scale=eta)
                                           - cdf(lower, beta, scale=eta), 1e-300)))
        return float(np.sum(terms))

    def profile(b10):
        res = optimize.minimize_scalar(lambda b: -ll(b, b10 / k ** (1 / b)), bounds=(0.3, 15), method="bounded",
                                       options={"xatol": 1e-12})
        return -res.fun

    value, lo, hi = bounds.b_life(fit, 10, "likelihood-ratio", 0.9)
    target = fit.loglik - stats.chi2.ppf(0.9, 1) / 2
    assert profile(lo) == pytest.approx(target, abs=1e-6) and profile(hi) == pytest.approx(target, abs=1e-6)
    assert lo < value < hi

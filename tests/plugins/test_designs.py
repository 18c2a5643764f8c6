"""Designs of experiments: sizes, bounds, factor kinds, stratification, reproducibility, space problems."""

from __future__ import annotations

import math

import numpy as np
import pytest
from reflow.plugins.optimize.designs import (
    BoxBehnken,
    CentralComposite,
    FractionalFactorial,
    FullFactorial,
    Halton,
    LatinHypercube,
    RandomDesign,
    Sobol,
)
from reflow.space import ParameterSpec, Space


def make_space(**specs: dict) -> Space:
    return Space.from_specs({name: ParameterSpec(**spec) for name, spec in specs.items()})


MIXED = dict(
    thickness_mm={"low": 0.1, "high": 0.8},
    bumps={"low": 4, "high": 12, "type": "int"},
    pitch_um={"low": 50, "high": 400, "log": True},
    underfill={"choices": ["UF-A", "UF-B", "UF-C"]},
    delta_t_k={"value": -200},
)

NUMERIC3 = dict(
    a_mm={"low": 0.0, "high": 1.0},
    b_mpa={"low": 10.0, "high": 20.0},
    c={"low": -5.0, "high": 5.0},
)

SPACE_FILLING = [LatinHypercube, Sobol, Halton, RandomDesign]


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def check_values(ds, space: Space) -> None:
    """Every value inside its factor: bounds, integrality, choices, fixed values."""
    for p in space.parameters:
        values = ds[p.name].values
        assert ds[p.name].dims == ("trial",)
        if p.kind == "continuous":
            assert values.dtype.kind == "f"
            assert np.all(values >= p.low - 1e-12) and np.all(values <= p.high + 1e-12), p.name
        elif p.kind == "integer":
            assert values.dtype.kind in "iu" or np.all(values == np.round(values)), p.name
            assert np.all(values >= p.low) and np.all(values <= p.high), p.name
        elif p.kind == "categorical":
            assert set(values.tolist()) <= set(p.choices), p.name
        else:
            assert np.all(values == p.value), p.name
        assert all(p.contains(v) for v in values.tolist()), p.name


# ---- sizes --------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", SPACE_FILLING)
@pytest.mark.parametrize("samples", [1, 7, 16])
def test_space_filling_sample_count(cls, samples):
    space = make_space(**MIXED)
    ds = cls(samples=samples).generate(space, rng())
    assert ds.sizes["trial"] == samples
    assert list(ds["trial"].values) == list(range(samples))
    assert set(ds.data_vars) == set(space.names)


def test_full_factorial_count_is_product_of_levels():
    space = make_space(
        x={"low": 0.0, "high": 1.0},                       # 3 levels (params)
        n={"low": 1, "high": 2, "type": "int"},            # 2 integer values (fewer than 3 levels)
        m={"low": 0, "high": 10, "type": "int"},           # 11 values, capped at 3 levels
        uf={"choices": ["A", "B", "C", "D"]},              # all 4 choices
        fixed={"value": 1.5},                              # not a factor
    )
    ds = FullFactorial(levels=3).generate(space, rng())
    assert ds.sizes["trial"] == 3 * 2 * 3 * 4
    check_values(ds, space)
    assert set(ds["uf"].values.tolist()) == {"A", "B", "C", "D"}
    assert sorted(set(ds["x"].values.tolist())) == pytest.approx([0.0, 0.5, 1.0])
    assert sorted(set(ds["n"].values.tolist())) == [1, 2]
    assert sorted(set(ds["m"].values.tolist())) == [0, 5, 10]
    # every combination once
    combos = {(float(a), int(b), int(c), str(d)) for a, b, c, d in
              zip(ds["x"].values, ds["n"].values, ds["m"].values, ds["uf"].values, strict=True)}
    assert len(combos) == ds.sizes["trial"]


def test_full_factorial_levels_param():
    space = make_space(x={"low": 0.0, "high": 1.0}, y={"low": 0.0, "high": 1.0})
    assert FullFactorial(levels=5).generate(space, rng()).sizes["trial"] == 25
    assert FullFactorial(levels=2).generate(space, rng()).sizes["trial"] == 4


def test_fractional_factorial_res3_of_4_factors_has_8_runs():
    space = make_space(a={"low": 0.0, "high": 1.0}, b={"low": 2.0, "high": 3.0},
                       c={"low": 1, "high": 9, "type": "int"}, d={"choices": ["x", "y"]})
    ds = FractionalFactorial(resolution=3).generate(space, rng())
    assert ds.sizes["trial"] == 8
    check_values(ds, space)
    # two levels: each factor only at its bounds, each level in half the runs (balanced)
    for name, lo, hi in (("a", 0.0, 1.0), ("b", 2.0, 3.0), ("c", 1, 9)):
        vals = ds[name].values.tolist()
        assert sorted(set(vals)) == [lo, hi]
        assert vals.count(lo) == 4
    assert sorted(set(ds["d"].values.tolist())) == ["x", "y"]


def test_central_composite_faced_two_factors():
    space = make_space(a={"low": 0.0, "high": 1.0}, b={"low": 10.0, "high": 20.0})
    ds = CentralComposite(face="faced", center=(1, 1)).generate(space, rng())
    # 4 corners + 1 centre + 4 axial (on the faces) + 1 centre = 10
    assert ds.sizes["trial"] == 10
    check_values(ds, space)
    pts = np.column_stack([ds["a"].values, ds["b"].values])
    for corner in ([0, 10], [0, 20], [1, 10], [1, 20]):
        assert any(np.allclose(p, corner) for p in pts)
    assert sum(np.allclose(p, [0.5, 15]) for p in pts) == 2
    for axial in ([0, 15], [1, 15], [0.5, 10], [0.5, 20]):
        assert any(np.allclose(p, axial) for p in pts)


def test_central_composite_circumscribed_axial_points_reach_the_bounds():
    space = make_space(a={"low": 0.0, "high": 1.0}, b={"low": 10.0, "high": 20.0})
    ds = CentralComposite(face="circumscribed").generate(space, rng())
    check_values(ds, space)
    a = ds["a"].values
    assert a.min() == pytest.approx(0.0) and a.max() == pytest.approx(1.0)
    # the factorial corners sit strictly inside (alpha > 1 in coded units)
    assert len(np.unique(np.round(a, 9))) == 5


def test_box_behnken_three_factors():
    space = make_space(**NUMERIC3)
    ds = BoxBehnken().generate(space, rng())
    # 12 edge midpoints + pyDOE3's default 3 centre points for 3 factors
    assert ds.sizes["trial"] == 15
    check_values(ds, space)
    coded = np.column_stack([(ds[n].values - s["low"]) / (s["high"] - s["low"]) * 2 - 1
                             for n, s in NUMERIC3.items()])
    coded = np.round(coded, 9)
    assert set(np.unique(coded)) == {-1.0, 0.0, 1.0}
    assert not any(np.all(np.abs(row) == 1) for row in coded)  # no corner points
    assert sum(np.all(row == 0) for row in coded) == 3
    assert BoxBehnken(center=1).generate(space, rng()).sizes["trial"] == 13


# ---- values -------------------------------------------------------------------------------------


ALL = [LatinHypercube(samples=20), Sobol(samples=16), Halton(samples=20), RandomDesign(samples=20),
       FullFactorial(levels=3)]


@pytest.mark.parametrize("design", ALL, ids=lambda d: type(d).__name__)
def test_values_inside_factors(design):
    space = make_space(**MIXED)
    ds = design.generate(space, rng(3))
    check_values(ds, space)
    assert ds["bumps"].values.dtype.kind in "iu"
    assert np.all(ds["delta_t_k"].values == -200)
    assert ds["thickness_mm"].attrs["kind"] == "continuous"
    assert ds["underfill"].attrs["kind"] == "categorical"


@pytest.mark.parametrize("design", [CentralComposite(face="faced"), CentralComposite(face="inscribed"),
                                    BoxBehnken()], ids=lambda d: f"{type(d).__name__}-{d.params}")
def test_classical_designs_with_integer_and_fixed_factors(design):
    space = make_space(a={"low": 0.0, "high": 1.0}, n={"low": 2, "high": 8, "type": "int"},
                       c={"low": 1.0, "high": 100.0, "log": True}, t={"value": 25.0})
    ds = design.generate(space, rng())
    check_values(ds, space)
    assert np.all(ds["t"].values == 25.0)
    assert set(ds["n"].values.tolist()) >= {2, 8}


def test_categorical_choices_all_used():
    space = make_space(uf={"choices": ["A", "B", "C"]}, x={"low": 0.0, "high": 1.0})
    ds = LatinHypercube(samples=30).generate(space, rng(1))
    values = ds["uf"].values.tolist()
    assert set(values) == {"A", "B", "C"}
    assert all(values.count(c) == 10 for c in "ABC")  # LHS strata fall evenly onto the choices


def test_units_carried_into_attrs():
    space = make_space(t_mm={"low": 0.1, "high": 1.0, "units": "mm"}, d={"value": 3, "units": "K"})
    ds = Sobol(samples=4).generate(space, rng())
    assert ds["t_mm"].attrs["units"] == "mm"
    assert ds["d"].attrs["units"] == "K"


def test_log_scaled_factor_is_spread_in_log_space():
    space = make_space(p={"low": 1.0, "high": 10_000.0, "log": True})
    n = 40
    ds = LatinHypercube(samples=n).generate(space, rng(5))
    x = ds["p"].values
    assert np.all((x >= 1.0) & (x <= 10_000.0))
    # one point per log-stratum: each decade holds a quarter of the points
    strata = np.floor(np.log10(x) / 4 * n).astype(int)
    assert sorted(strata.tolist()) == list(range(n))
    for decade in range(4):
        assert np.sum((x >= 10**decade) & (x < 10 ** (decade + 1))) == n // 4
    # on a linear scale the points would crowd the top decade; here the median is near the geometric middle
    assert 30 < np.median(x) < 300


def test_log_scaled_integer_factor_is_spread_in_log_space():
    space = make_space(bumps={"low": 1, "high": 9999, "type": "int", "log": True})
    n = 40
    x = LatinHypercube(samples=n).generate(space, rng(5))["bumps"].values
    assert x.dtype.kind in "iu"
    assert np.all((x >= 1) & (x <= 9999))
    for decade in range(4):  # [1, 10), [10, 100), ...: a quarter of the points each
        assert np.sum((x >= 10**decade) & (x < 10 ** (decade + 1))) == n // 4, decade
    levels = FullFactorial(levels=5).generate(space, rng())["bumps"].values.tolist()
    assert levels == [1, 10, 100, 1000, 9999]


def test_log_scaled_full_factorial_levels_are_geometric():
    space = make_space(p={"low": 1.0, "high": 100.0, "log": True})
    values = sorted(FullFactorial(levels=3).generate(space, rng())["p"].values.tolist())
    assert values == pytest.approx([1.0, 10.0, 100.0])


@pytest.mark.parametrize("optimization", ["random-cd", None])
@pytest.mark.parametrize("n", [5, 23])
def test_lhs_stratification(n, optimization):
    space = make_space(a={"low": 0.0, "high": 1.0}, b={"low": -3.0, "high": 7.0}, c={"low": 100.0, "high": 101.0})
    ds = LatinHypercube(samples=n, optimization=optimization).generate(space, rng(11))
    for name in ("a", "b", "c"):
        p = space.by_name[name]
        u = (ds[name].values - p.low) / (p.high - p.low)
        strata = np.minimum(np.floor(u * n), n - 1).astype(int)
        assert sorted(strata.tolist()) == list(range(n)), name


def test_lhs_unscrambled_points_are_centred_in_strata():
    space = make_space(a={"low": 0.0, "high": 1.0})
    n = 8
    x = np.sort(LatinHypercube(samples=n, scramble=False, optimization=None).generate(space, rng())["a"].values)
    assert x == pytest.approx((np.arange(n) + 0.5) / n)


def test_sobol_power_of_two_is_balanced():
    space = make_space(a={"low": 0.0, "high": 1.0}, b={"low": 0.0, "high": 1.0})
    ds = Sobol(samples=16).generate(space, rng(2))
    for name in ("a", "b"):
        strata = np.floor(ds[name].values * 16).astype(int)
        assert sorted(strata.tolist()) == list(range(16))


def test_only_fixed_factors_give_constant_rows():
    space = make_space(t={"value": 3.0}, s={"value": "UF-A"})
    ds = LatinHypercube(samples=4).generate(space, rng())
    assert ds.sizes["trial"] == 4
    assert ds["t"].values.tolist() == [3.0] * 4
    assert ds["s"].values.tolist() == ["UF-A"] * 4


# ---- reproducibility ----------------------------------------------------------------------------


@pytest.mark.parametrize("cls", SPACE_FILLING)
def test_same_seed_same_design(cls):
    space = make_space(**MIXED)
    a = cls(samples=12).generate(space, rng(42))
    b = cls(samples=12).generate(space, rng(42))
    c = cls(samples=12).generate(space, rng(43))
    for name in space.names:
        assert a[name].values.tolist() == b[name].values.tolist()
    assert not np.array_equal(a["thickness_mm"].values, c["thickness_mm"].values)


def test_random_design_is_uniform():
    space = make_space(a={"low": 0.0, "high": 1.0})
    x = RandomDesign(samples=4000).generate(space, rng(0))["a"].values
    assert abs(x.mean() - 0.5) < 0.02
    assert abs(np.mean(x < 0.25) - 0.25) < 0.03


# ---- params and space problems ------------------------------------------------------------------


def test_params_validation():
    with pytest.raises(ValueError):
        LatinHypercube(samples=0)
    with pytest.raises(ValueError):
        FullFactorial(levels=1)
    with pytest.raises(ValueError):
        CentralComposite(face="sideways")
    with pytest.raises(ValueError):
        LatinHypercube(sample=4)  # misspelt key


def test_box_behnken_needs_three_factors():
    problems = BoxBehnken().space_problems(make_space(a={"low": 0.0, "high": 1.0}, b={"low": 0.0, "high": 1.0}))
    assert any("at least 3 varying factors" in p for p in problems), problems
    assert BoxBehnken().space_problems(make_space(**NUMERIC3)) == []


def test_box_behnken_fixed_factors_do_not_count():
    space = make_space(a={"low": 0.0, "high": 1.0}, b={"low": 0.0, "high": 1.0}, t={"value": 3.0})
    assert any("at least 3" in p for p in BoxBehnken().space_problems(space))


def test_central_composite_rejects_categorical():
    space = make_space(a={"low": 0.0, "high": 1.0}, b={"low": 0.0, "high": 1.0}, uf={"choices": ["A", "B"]})
    problems = CentralComposite().space_problems(space)
    assert any("'uf' is categorical" in p for p in problems), problems
    assert CentralComposite().space_problems(make_space(**NUMERIC3)) == []


def test_central_composite_needs_two_factors():
    problems = CentralComposite().space_problems(make_space(a={"low": 0.0, "high": 1.0}))
    assert any("at least 2" in p for p in problems), problems


def test_fractional_factorial_rejects_three_choice_categorical():
    space = make_space(a={"low": 0.0, "high": 1.0}, b={"low": 0.0, "high": 1.0}, c={"low": 0.0, "high": 1.0},
                       uf={"choices": ["A", "B", "C"]})
    problems = FractionalFactorial().space_problems(space)
    assert any("'uf' has 3 choices" in p for p in problems), problems


def test_fractional_factorial_accepts_two_choice_categorical():
    space = make_space(a={"low": 0.0, "high": 1.0}, b={"low": 0.0, "high": 1.0}, c={"low": 0.0, "high": 1.0},
                       uf={"choices": ["A", "B"]})
    assert FractionalFactorial().space_problems(space) == []


def test_fractional_factorial_too_few_factors_for_resolution():
    space = make_space(a={"low": 0.0, "high": 1.0}, b={"low": 0.0, "high": 1.0})
    assert FractionalFactorial(resolution=3).space_problems(space)


@pytest.mark.parametrize("design", [FullFactorial(), FractionalFactorial(), CentralComposite(), BoxBehnken()],
                         ids=lambda d: type(d).__name__)
def test_classical_designs_need_a_varying_factor(design):
    problems = design.space_problems(make_space(t={"value": 1.0}))
    assert any("no varying factor" in p for p in problems), problems


def test_full_factorial_too_large_is_a_problem():
    space = make_space(**{f"x{i}": {"low": 0.0, "high": 1.0} for i in range(13)})
    problems = FullFactorial(levels=3).space_problems(space)
    assert any(f"{3**13:,}" in p for p in problems), problems
    assert FullFactorial(levels=2).space_problems(space) == []


def test_space_filling_designs_accept_any_space():
    for cls in SPACE_FILLING:
        assert cls().space_problems(make_space(**MIXED)) == []


def test_doe_study_reports_design_problems(write_study):
    """A design that cannot be built over the space is a validation error, before anything runs."""
    from reflow.errors import StudyError
    from reflow.study import load_study

    path = write_study("""
        study: bad-bbd
        stages:
          doe:
            task: doe
            design: box-behnken
            space:
              die_thickness_mm: {low: 0.1, high: 0.8}
              length_mm: {low: 5, high: 20}
            evaluate: bilayer-warpage
    """)
    with pytest.raises(StudyError) as err:
        load_study(path)
    assert "at least 3 varying factors" in str(err.value)
    assert "line" in str(err.value)


def test_design_metadata():
    ds = LatinHypercube(samples=3).generate(make_space(a={"low": 0.0, "high": 1.0}), rng())
    assert ds.attrs["design"] == "LatinHypercube"
    assert math.isfinite(float(ds["a"].values.sum()))


# ---- designs that scale -------------------------------------------------------------------------


def lhs_strata_ok(u: np.ndarray) -> bool:
    """One point per stratum per column of points in the unit cube."""
    n = len(u)
    strata = np.minimum(np.floor(u * n), n - 1).astype(np.int64)
    return all(np.bincount(strata[:, j], minlength=n).max() == 1 for j in range(u.shape[1]))


@pytest.mark.parametrize("design", [Sobol(samples=10**6), Halton(samples=10**6), RandomDesign(samples=10**6),
                                    LatinHypercube(samples=10**6)], ids=lambda d: type(d).__name__)
def test_a_million_points(design):
    """Every space-filling design draws 10^6 points over a mixed space (no per-point Python loop, no n^2
    optimization: it used to take minutes for LHS)."""
    space = make_space(**MIXED)
    ds = design.generate(space, rng(4))
    assert ds.sizes["trial"] == 10**6
    assert set(ds["underfill"].values[:1000].tolist()) == {"UF-A", "UF-B", "UF-C"}
    assert ds["underfill"].dtype.kind == "U"
    assert np.all(ds["delta_t_k"].values == -200)
    x = ds["thickness_mm"].values
    assert x.min() >= 0.1 and x.max() <= 0.8 and abs(x.mean() - 0.45) < 0.01
    if isinstance(design, LatinHypercube):
        p = space.by_name["thickness_mm"]
        assert lhs_strata_ok(((x - p.low) / (p.high - p.low))[:, None])


def test_full_factorial_of_a_million_points():
    """A factorial is sized by its factors: 10 levels of 6 factors is 10^6 points, built as arrays."""
    space = make_space(**{f"x{i}": {"low": 0.0, "high": 1.0} for i in range(5)}, uf={"choices": list("ABCDEFGHIJ")})
    design = FullFactorial(levels=10)
    assert design.space_problems(space) == []
    ds = design.generate(space, rng())
    assert ds.sizes["trial"] == 10**6
    assert ds["uf"].values[:11].tolist() == list("ABCDEFGHIJA")  # the last factor varies fastest
    assert ds["x4"].values[::10][:11].tolist() == pytest.approx([i / 9 for i in range(10)] + [0.0])
    assert len(np.unique(np.column_stack([ds[f"x{i}"].values for i in range(5)]), axis=0)) == 10**5


def test_lhs_above_the_limit_is_decorrelated_not_optimized(monkeypatch):
    """Above optimize_limit scipy's n^2 random-cd is not called; the cheap decorrelation keeps a valid LHS."""
    from scipy.stats import qmc

    asked = []
    real = qmc.LatinHypercube

    def spy(*args, **kwargs):
        asked.append(kwargs.get("optimization"))
        return real(*args, **kwargs)

    monkeypatch.setattr(qmc, "LatinHypercube", spy)
    space = make_space(**NUMERIC3)
    big = LatinHypercube(samples=3000).generate(space, rng(8))
    small = LatinHypercube(samples=40).generate(space, rng(8))
    assert asked == ["random-cd"]  # the large design never reaches scipy
    assert big.attrs["optimization"] == "decorrelate" and small.attrs["optimization"] == "random-cd"
    assert LatinHypercube(samples=3000, optimize_limit=5000).method == "random-cd"
    assert LatinHypercube(samples=600, optimization="lloyd").method == "decorrelate"
    assert LatinHypercube(samples=30, optimization=None).method is None
    u = np.column_stack([(big[n].values - s["low"]) / (s["high"] - s["low"]) for n, s in NUMERIC3.items()])
    assert lhs_strata_ok(u)


def test_decorrelate_keeps_the_strata_and_removes_correlation():
    from reflow.plugins.optimize.designs import decorrelate
    from scipy.stats import qmc

    for seed in range(3):
        u = qmc.LatinHypercube(5, optimization=None, seed=seed).random(2000)
        v = decorrelate(u)
        assert lhs_strata_ok(v)
        for j in range(5):  # the same values in each column, paired differently
            assert np.array_equal(np.sort(u[:, j]), np.sort(v[:, j]))
        off = ~np.eye(5, dtype=bool)
        before = np.abs(np.corrcoef(u, rowvar=False)[off]).max()
        after = np.abs(np.corrcoef(v, rowvar=False)[off]).max()
        assert after < 0.5 * before and after < 0.02, (before, after)
    with pytest.raises(ValueError, match="Latin hypercube"):
        decorrelate(np.random.default_rng(0).random((100, 3)))


def test_decorrelated_lhs_is_reproducible():
    space = make_space(**NUMERIC3)
    a = LatinHypercube(samples=800).generate(space, rng(1))
    b = LatinHypercube(samples=800).generate(space, rng(1))
    assert a.attrs["optimization"] == "decorrelate"
    assert all(np.array_equal(a[n].values, b[n].values) for n in NUMERIC3)

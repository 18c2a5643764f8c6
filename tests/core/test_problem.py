"""OptimizationProblem (unit encoding, linear constraints, outcomes) and the space-filling samplers."""

from __future__ import annotations

import itertools
import math
import re

import numpy as np
import pytest
import xarray as xr
from reflow.errors import UserInputError
from reflow.expressions import parse_constraint
from reflow.plugins.optimize.designs import LatinHypercube
from reflow.problem import Objective, OptimizationProblem
from reflow.sampling import maximin_subset, polytope_samples, snap_to_constraints, space_filling
from reflow.space import ParameterSpec, Space


def make_space(**specs: dict) -> Space:
    return Space.from_specs({name: ParameterSpec(**spec) for name, spec in specs.items()})


def make_problem(space: Space, constraints: tuple[str, ...] = (), objectives=("f",)) -> OptimizationProblem:
    parsed = [parse_constraint(c) for c in constraints]
    params = [c for c in parsed if all(n in space.names for n in c.names)]
    outcomes = [c for c in parsed if c not in params]
    return OptimizationProblem(space, [Objective(o, "min") for o in objectives], outcomes, params)


MIXED = dict(
    thickness_mm={"low": 0.1, "high": 0.8, "units": "mm"},
    pitch_um={"low": 50, "high": 400, "log": True, "units": "um"},
    bumps={"low": 4, "high": 12, "type": "int"},
    layers={"low": 1, "high": 64, "type": "int", "log": True},
    delta_t_k={"value": -200, "units": "K"},
    underfill={"choices": ["UF-A", "UF-B", "UF-C"]},
)

# a composition on boxes that are not [0, 1], so the restatement on the unit encoding has to scale and shift
COMPOSITION = dict(
    a={"low": 0.0, "high": 1.0},
    b={"low": 0.0, "high": 0.6},
    c={"low": 0.1, "high": 0.9},
)


# ---- the unit encoding ---------------------------------------------------------------------------


def test_free_parameters_and_dims():
    problem = make_problem(make_space(**MIXED))
    assert [p.name for p in problem.free] == ["thickness_mm", "pitch_um", "bumps", "layers", "underfill"]
    assert problem.dim == 5
    assert problem.categorical_dims == [4]


def test_encode_decode_round_trip_of_values():
    problem = make_problem(make_space(**MIXED))
    values = {
        "thickness_mm": np.array([0.1, 0.8, 0.333, 0.45]),
        "pitch_um": np.array([50.0, 400.0, 123.4, 77.0]),
        "bumps": np.array([4, 12, 7, 9]),
        "layers": np.array([1, 64, 2, 37]),
        "delta_t_k": np.array([-200, -200, -200, -200]),
        "underfill": np.array(["UF-A", "UF-C", "UF-B", "UF-A"], dtype=object),
    }
    unit = problem.encode(values)
    assert unit.shape == (4, 5)
    assert np.all(unit >= -1e-12) and np.all(unit <= 1 + 1e-12)
    back = problem.decode(unit)
    np.testing.assert_allclose(back["thickness_mm"], values["thickness_mm"], rtol=1e-12)
    np.testing.assert_allclose(back["pitch_um"], values["pitch_um"], rtol=1e-12)
    assert back["bumps"].tolist() == values["bumps"].tolist()
    assert back["layers"].tolist() == values["layers"].tolist()
    assert back["underfill"].tolist() == values["underfill"].tolist()
    assert back["delta_t_k"].tolist() == [-200] * 4


def test_every_integer_and_choice_survives_the_round_trip():
    problem = make_problem(make_space(bumps={"low": 4, "high": 12, "type": "int"},
                                      layers={"low": 1, "high": 64, "type": "int", "log": True},
                                      uf={"choices": ["A", "B", "C", "D"]}))
    ints = np.arange(4, 13)
    logs = np.arange(1, 65)
    n = 64
    values = {"bumps": np.resize(ints, n), "layers": logs, "uf": np.resize(np.array(list("ABCD"), dtype=object), n)}
    back = problem.decode(problem.encode(values))
    assert back["bumps"].tolist() == values["bumps"].tolist()
    assert back["layers"].tolist() == values["layers"].tolist()
    assert back["uf"].tolist() == values["uf"].tolist()


def test_log_parameter_encodes_in_log_space():
    problem = make_problem(make_space(pitch_um={"low": 10, "high": 1000, "log": True}))
    unit = problem.encode({"pitch_um": np.array([10.0, 100.0, 1000.0])})
    np.testing.assert_allclose(unit[:, 0], [0.0, 0.5, 1.0], atol=1e-12)


def test_decode_of_any_unit_point_is_in_the_space_and_stable():
    space = make_space(**MIXED)
    problem = make_problem(space)
    unit = np.random.default_rng(0).random((200, problem.dim))
    unit[:5] = [0.0, 1.0, 0.5, 0.999999, 1e-9]  # edges
    values = problem.decode(unit)
    for p in space.parameters:
        assert all(p.contains(v) for v in values[p.name].tolist()), p.name
    # decoding snaps discrete dims; encoding the decoded values and decoding again changes nothing
    again = problem.decode(problem.encode(values))
    for p in space.parameters:
        if p.kind in ("categorical", "integer", "fixed"):
            assert again[p.name].tolist() == values[p.name].tolist(), p.name
        else:
            np.testing.assert_allclose(again[p.name], values[p.name], rtol=1e-12)
    # continuous dims map linearly (or log-linearly) and are not snapped
    np.testing.assert_allclose(values["thickness_mm"], 0.1 + unit[:, 0] * 0.7, rtol=1e-12)


def test_categorical_decode_picks_the_nearest_encoded_choice():
    problem = make_problem(make_space(uf={"choices": ["A", "B", "C"]}))
    # choices sit at 0, 0.5, 1 in the encoding; decode rounds to the nearest
    unit = np.array([[0.0], [0.24], [0.26], [0.5], [0.74], [0.76], [1.0]])
    assert problem.decode(unit)["uf"].tolist() == ["A", "A", "B", "B", "B", "C", "C"]
    np.testing.assert_allclose(problem.encode({"uf": np.array(["A", "B", "C"])})[:, 0], [0.0, 0.5, 1.0])


def test_numeric_choices_are_found_when_a_dataset_hands_them_back_as_floats():
    problem = make_problem(make_space(layers={"choices": [2, 4, 8]}, flag={"choices": [True, False]}))
    ds = problem.space.to_dataset({"layers": np.array([8, 2], dtype=object), "flag": np.array([False, True],
                                                                                               dtype=object)})
    assert ds["layers"].dtype.kind == "f"  # what makes the lookup by text miss: "8.0" is not "8"
    unit = problem.encode(ds)
    np.testing.assert_allclose(unit, [[1.0, 1.0], [0.0, 0.0]])
    assert problem.decode(unit)["layers"].tolist() == [8, 2]


def test_encode_refuses_a_value_that_is_not_a_choice():
    problem = make_problem(make_space(uf={"choices": ["A", "B"]}))
    with pytest.raises(UserInputError, match=r"'Z' is not one of \['A', 'B'\]"):
        problem.encode({"uf": np.array(["A", "Z"])})


# ---- linear parameter constraints on the unit encoding ---------------------------------------------


def _real_lhs(text: str, values: dict[str, np.ndarray]) -> np.ndarray:
    c = parse_constraint(text)
    return c.lhs(values) - c.rhs


@pytest.mark.parametrize("text,equality,sign", [
    ("a + b + c == 1", True, 1.0),
    ("a + b <= 0.8", False, -1.0),
    ("2*a - b >= 0.1", False, 1.0),
    ("a + 3 b < 1.2", False, -1.0),
])
def test_unit_constraints_restate_the_constraint_exactly(text, equality, sign):
    space = make_space(**COMPOSITION)
    problem = make_problem(space, (text,))
    (uc,) = problem.unit_constraints()
    assert uc.equality is equality
    assert uc.text == text
    unit = np.random.default_rng(1).random((500, 3))
    values = problem.decode(unit)
    # the residual on the unit encoding is the real-space gap (lhs - rhs), negated for <= (BoTorch wants >=)
    np.testing.assert_allclose(uc.residual(unit), sign * _real_lhs(text, values), atol=1e-12)


def test_parameters_feasible_agrees_with_the_constraints_in_real_units():
    space = make_space(**COMPOSITION)
    problem = make_problem(space, ("a + b <= 0.8", "a - c >= -0.5"))
    unit = np.random.default_rng(2).random((2000, 3))
    values = problem.decode(unit)
    expected = parse_constraint("a + b <= 0.8").holds(values) & parse_constraint("a - c >= -0.5").holds(values)
    assert 0.1 < expected.mean() < 0.9, "the test points should fall on both sides"
    np.testing.assert_array_equal(problem.parameters_feasible(unit), expected)


def test_equality_constraint_points_on_and_off_the_plane():
    space = make_space(**COMPOSITION)
    problem = make_problem(space, ("a + b + c == 1",))
    on = problem.encode({"a": np.array([0.5, 0.0, 0.2]), "b": np.array([0.3, 0.6, 0.0]),
                         "c": np.array([0.2, 0.4, 0.8])})
    off = problem.encode({"a": np.array([0.5, 0.0]), "b": np.array([0.3, 0.6]), "c": np.array([0.3, 0.1])})
    assert problem.parameters_feasible(on).all()
    assert not problem.parameters_feasible(off).any()
    (uc,) = problem.unit_constraints()
    np.testing.assert_allclose(uc.residual(on), 0.0, atol=1e-12)
    np.testing.assert_allclose(uc.residual(off), [0.1, -0.3], atol=1e-12)


def test_fixed_parameter_moves_into_the_right_hand_side():
    space = make_space(a={"low": 0.0, "high": 1.0}, b={"low": 0.0, "high": 0.6}, c={"value": 0.25})
    problem = make_problem(space, ("a + b + c == 1",))
    (uc,) = problem.unit_constraints()
    assert len(uc.indices) == 2 and uc.equality
    # a + b == 0.75: a = 0.45, b = 0.3 is on it; a = 0.7, b = 0.3 is not
    unit = problem.encode({"a": np.array([0.45, 0.7]), "b": np.array([0.3, 0.3]), "c": np.array([0.25, 0.25])})
    assert problem.parameters_feasible(unit).tolist() == [True, False]
    np.testing.assert_allclose(uc.residual(unit), [0.0, 0.25], atol=1e-12)


def test_no_constraints_everything_is_feasible():
    problem = make_problem(make_space(**COMPOSITION))
    assert problem.unit_constraints() == []
    assert problem.parameters_feasible(np.random.default_rng(0).random((10, 3))).all()


@pytest.mark.parametrize("spec,kind", [
    ({"low": 1, "high": 100, "log": True}, "continuous (log)"),
    ({"low": 1, "high": 10, "type": "int"}, "integer"),
    ({"choices": ["x", "y"]}, "categorical"),
])
def test_linear_constraints_take_continuous_linear_parameters_only(spec, kind):
    space = make_space(a={"low": 0.0, "high": 1.0}, q=spec)
    with pytest.raises(UserInputError, match=rf"'q' is {re.escape(kind)}"):
        make_problem(space, ("a + q <= 5",))


def test_parameter_constraint_on_an_unknown_name_is_refused():
    space = make_space(a={"low": 0.0, "high": 1.0})
    with pytest.raises(UserInputError, match="'zz' is not a parameter"):
        OptimizationProblem(space, [Objective("f", "min")], [], [parse_constraint("a + zz <= 1")])


def test_outcome_constraint_mixing_parameters_and_outputs_is_refused():
    space = make_space(a={"low": 0.0, "high": 1.0})
    with pytest.raises(UserInputError, match="mixes parameters and outputs"):
        OptimizationProblem(space, [Objective("f", "min")], [parse_constraint("a + stress_mpa <= 3")])


def test_problem_needs_distinct_objectives():
    space = make_space(a={"low": 0.0, "high": 1.0})
    with pytest.raises(UserInputError, match="at least one objective"):
        OptimizationProblem(space, [])
    with pytest.raises(UserInputError, match="listed twice"):
        OptimizationProblem(space, [Objective("f", "min"), Objective("f", "max")])


# ---- outcomes --------------------------------------------------------------------------------------


def _trials(**columns) -> xr.Dataset:
    n = len(next(iter(columns.values())))
    return xr.Dataset({k: ("trial", np.asarray(v)) for k, v in columns.items()}, coords={"trial": np.arange(n)})


def test_objective_values_are_signed_for_maximization():
    space = make_space(a={"low": 0.0, "high": 1.0})
    problem = OptimizationProblem(space, [Objective("f", "min"), Objective("g", "max")])
    trials = _trials(f=[1.0, 2.0], g=[3.0, -4.0])
    np.testing.assert_array_equal(problem.objective_values(trials), [[-1.0, 3.0], [-2.0, -4.0]])


def test_feasible_needs_ok_status_and_every_outcome_constraint():
    space = make_space(a={"low": 0.0, "high": 1.0})
    problem = make_problem(space, ("stress <= 10", "gap - stress >= -2"))
    assert problem.metric_names == ["f", "stress", "gap"]
    trials = _trials(f=[0.0] * 5, stress=[5.0, 12.0, 10.0, 5.0, np.nan], gap=[4.0, 20.0, 7.0, 1.0, 9.0],
                     status=["ok", "ok", "ok", "ok", "ok"])
    assert problem.feasible(trials).tolist() == [True, False, False, False, False]
    slack = problem.outcome_slack(trials)
    np.testing.assert_allclose(slack[:4], [[5, 1], [-2, 10], [0, -1], [5, -2]])
    trials["status"] = ("trial", np.array(["failed", "ok", "ok", "ok", "ok"]))
    assert not problem.feasible(trials)[0]


# ---- sampling ------------------------------------------------------------------------------------------


def _min_distance(points: np.ndarray) -> float:
    return min(float(np.linalg.norm(p - q)) for p, q in itertools.combinations(points, 2))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_space_filling_on_a_composition_meets_the_equality_and_spreads(seed):
    space = make_space(a={"low": 0.0, "high": 1.0}, b={"low": 0.0, "high": 1.0}, c={"low": 0.0, "high": 1.0})
    problem = make_problem(space, ("a + b + c == 1",))
    unit = space_filling(problem, 12, seed)
    assert unit.shape == (12, 3)
    values = problem.decode(unit)
    total = values["a"] + values["b"] + values["c"]
    np.testing.assert_allclose(total, 1.0, atol=1e-6)
    assert np.all(unit >= 0) and np.all(unit <= 1)
    # every corner of the simplex gets a point near it (uniform or clustered points would leave some out)
    for corner in np.eye(3):
        assert np.min(np.linalg.norm(unit - corner, axis=1)) < 0.35, corner
    # maximin thinning: farther apart than the same number of uniform points from the sampler
    uniform = polytope_samples(problem, 12, seed + 100)
    assert _min_distance(unit) > _min_distance(uniform)
    # the same seed gives the same points
    np.testing.assert_array_equal(space_filling(problem, 12, seed), unit)


def test_space_filling_can_start_at_the_centre():
    box = make_problem(make_space(**COMPOSITION))
    points = space_filling(box, 5, 0, center=True)
    np.testing.assert_array_equal(points[0], [0.5, 0.5, 0.5])
    np.testing.assert_array_equal(points[1:], space_filling(box, 5, 0)[:4])
    # with a composition the centre is projected onto a + b + c == 1
    problem = make_problem(make_space(**COMPOSITION), ("a + b + c == 1",))
    points = space_filling(problem, 6, 0, center=True)
    assert points.shape == (6, 3) and problem.parameters_feasible(points).all()
    np.testing.assert_allclose(points[0], snap_to_constraints(problem, np.full((1, 3), 0.5))[0])
    centre = problem.decode(points[:1])
    assert centre["a"][0] + centre["b"][0] + centre["c"][0] == pytest.approx(1.0, abs=1e-6)


def test_space_filling_with_inequalities_stays_inside():
    space = make_space(**COMPOSITION)
    problem = make_problem(space, ("a + b <= 0.8", "a - c >= -0.5"))
    unit = space_filling(problem, 20, 3)
    assert unit.shape == (20, 3)
    assert problem.parameters_feasible(unit).all()
    values = problem.decode(unit)
    assert np.all(values["a"] + values["b"] <= 0.8 + 1e-9)
    assert np.all(values["a"] - values["c"] >= -0.5 - 1e-9)
    # the points reach towards the boundary a + b = 0.8 (it is a face of the feasible set)
    assert np.max(values["a"] + values["b"]) > 0.65


def test_space_filling_without_constraints_uses_the_design():
    space = make_space(**MIXED)
    problem = make_problem(space)
    sobol = space_filling(problem, 8, 0)
    assert sobol.shape == (8, problem.dim)
    lhs = space_filling(problem, 8, 0, LatinHypercube(samples=8))
    assert lhs.shape == (8, problem.dim)
    # latin hypercube: one point in each eighth of every continuous dim
    for j in (0, 1):
        assert sorted(np.floor(lhs[:, j] * 8).astype(int).tolist()) == list(range(8))
    assert space_filling(problem, 0, 0).shape == (0, problem.dim)


def test_maximin_subset_prefers_spread_points():
    rng = np.random.default_rng(0)
    cluster = 0.5 + 0.01 * rng.standard_normal((50, 2))
    corners = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    pool = np.vstack([cluster, corners])
    chosen = maximin_subset(pool, 5, np.random.default_rng(1))
    assert len(chosen) == 5
    # whatever the start, the 4 corners are among the 5
    assert sum(any(np.allclose(c, row) for row in chosen) for c in corners) == 4


def test_snap_projects_onto_an_equality():
    space = make_space(a={"low": 0.0, "high": 1.0}, b={"low": 0.0, "high": 1.0}, c={"low": 0.0, "high": 1.0})
    problem = make_problem(space, ("a + b + c == 1",))
    points = np.array([[0.5, 0.5, 0.5], [0.1, 0.2, 0.1], [0.2, 0.3, 0.5], [0.9, 0.6, 0.0]])
    snapped = snap_to_constraints(problem, points)
    assert problem.parameters_feasible(snapped, tol=1e-6).all()
    np.testing.assert_allclose(snapped.sum(axis=1), 1.0, atol=1e-6)
    # inside the box the nearest point of the plane is the orthogonal projection x - (sum x - 1) / 3
    for i in (0, 1):
        np.testing.assert_allclose(snapped[i], points[i] - (points[i].sum() - 1) / 3, atol=1e-5)
    np.testing.assert_array_equal(snapped[2], points[2])  # a feasible point is left exactly as it was
    # the last one projects to (0.65, 0.35, -0.0) outside the box; the nearest feasible point is on its face
    np.testing.assert_allclose(snapped[3], [0.65, 0.35, 0.0], atol=1e-5)
    assert np.all(snapped >= 0) and np.all(snapped <= 1)


def test_snap_projects_onto_an_inequality_and_leaves_feasible_points():
    space = make_space(**COMPOSITION)
    problem = make_problem(space, ("a + b <= 0.8",))
    feasible = problem.encode({"a": np.array([0.1, 0.4]), "b": np.array([0.2, 0.4]), "c": np.array([0.5, 0.9])})
    infeasible = problem.encode({"a": np.array([0.9]), "b": np.array([0.5]), "c": np.array([0.3])})
    points = np.vstack([feasible, infeasible])
    snapped = snap_to_constraints(problem, points)
    np.testing.assert_array_equal(snapped[:2], feasible)
    assert problem.parameters_feasible(snapped).all()
    values = problem.decode(snapped)
    assert math.isclose(values["a"][2] + values["b"][2], 0.8, abs_tol=1e-6), "projected onto the face"
    assert values["c"][2] == pytest.approx(0.3, abs=1e-6), "a dim outside the constraint does not move"
    # the projection is the nearest point on the face (in the unit encoding): moving along the face costs more
    (uc,) = problem.unit_constraints()
    normal = np.zeros(3)
    normal[list(uc.indices)] = uc.coefficients
    move = snapped[2] - infeasible[0]
    assert abs(abs(move @ normal) - np.linalg.norm(move) * np.linalg.norm(normal)) < 1e-5, "moves along the normal"


def test_snap_without_constraints_only_clips():
    problem = make_problem(make_space(**COMPOSITION))
    points = np.array([[-0.2, 0.5, 1.3]])
    np.testing.assert_array_equal(snap_to_constraints(problem, points), [[0.0, 0.5, 1.0]])

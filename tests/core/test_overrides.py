"""``--set key.path=value`` overrides, on raw data and through ``load_study``."""

from __future__ import annotations

import copy

import pytest
from reflow.errors import StudyError
from reflow.overrides import apply_overrides, parse_override
from reflow.study import load_study

QUICKSTART = """
study: quickstart
seed: 7
stages:
  warpage:
    task: doe
    design: {lhs: {samples: 32}}
    space:
      die_thickness_mm: {low: 0.1, high: 0.8, units: mm}
      length_mm: {low: 5, high: 20, units: mm}
    evaluate: bilayer-warpage
    plot: [warpage_um, die_interface_stress_mpa]
"""

DATA_EVALUATE = """
study: lab
stages:
  points:
    task: data
    source: csv
  warp:
    task: evaluate
    data: points
    evaluate: {bilayer-warpage: {biaxial: false}}
"""


def _raw():
    return {
        "study": "s",
        "seed": 1,
        "stages": {
            "points": {"task": "data", "source": "csv"},
            "train": {"task": "train", "model": {"mlp": {"epochs": 5}}, "data": "points", "target": "y"},
            "doe": {"task": "doe", "design": "lhs", "evaluate": "bilayer-warpage", "plot": ["a", "b"]},
        },
    }


@pytest.mark.parametrize(
    ("text", "parts", "value"),
    [
        ("seed=3", ["seed"], 3),
        ("a.b.c=0.5", ["a", "b", "c"], 0.5),
        ("x=1e-3", ["x"], 1e-3),
        ("x=true", ["x"], True),
        ("x=no", ["x"], False),
        ("x=null", ["x"], None),
        ("x=hello world", ["x"], "hello world"),
        ("x='3'", ["x"], "3"),
        ("x=[1, 2.5, a]", ["x"], [1, 2.5, "a"]),
        ("x={lhs: {samples: 8}}", ["x"], {"lhs": {"samples": 8}}),
        ("x=", ["x"], ""),
        ("x=a=b", ["x"], "a=b"),
        ("x=[1", ["x"], "[1"),  # not YAML: kept as text
        (" stages.a.params.epochs = 50", ["stages", "a", "params", "epochs"], 50),
    ],
)
def test_parse_override(text, parts, value):
    assert parse_override(text) == (parts, value)


def test_value_types():
    out = apply_overrides(_raw(), ["seed=11", "description=a study", "stages.doe.batch_size=4",
                                   "stages.doe.space={x: {low: 0, high: 1}}", "device=cpu",
                                   "stages.train.split={test: 0.3}", "stages.doe.plot=[warpage_um]",
                                   "stages.train.model.mlp.lr=1.5e-4", "stages.train.model.mlp.bias=false"])
    assert out["seed"] == 11
    assert out["description"] == "a study"
    assert out["device"] == "cpu"
    assert out["stages"]["doe"]["batch_size"] == 4
    assert out["stages"]["doe"]["space"] == {"x": {"low": 0, "high": 1}}
    assert out["stages"]["doe"]["plot"] == ["warpage_um"]
    assert out["stages"]["train"]["split"] == {"test": 0.3}
    assert out["stages"]["train"]["model"] == {"mlp": {"epochs": 5, "lr": 1.5e-4, "bias": False}}


def test_the_input_is_not_modified():
    raw = _raw()
    before = copy.deepcopy(raw)
    apply_overrides(raw, ["seed=2", "stages.train.params.epochs=9", "stages.doe.design.lhs.samples=4"])
    assert raw == before


def test_missing_intermediate_mappings_are_created():
    out = apply_overrides({"study": "s"}, ["executor.local.workers=4"])
    assert out["executor"] == {"local": {"workers": 4}}
    assert apply_overrides(None, ["study=x"]) == {"study": "x"}


def test_list_index():
    out = apply_overrides(_raw(), ["stages.doe.plot.1=warpage_um", "stages.doe.plot.-2=curvature_1_per_m"])
    assert out["stages"]["doe"]["plot"] == ["curvature_1_per_m", "warpage_um"]


def test_list_index_into_nested_mapping():
    raw = {"stages": {"d": {"evaluate": [{"python": {"function": "m:f"}}, "bilayer-warpage"]}}}
    out = apply_overrides(raw, ["stages.d.evaluate.0.python.batch=true"])
    assert out["stages"]["d"]["evaluate"][0] == {"python": {"function": "m:f", "batch": True}}


def test_params_shorthand_reaches_the_single_component():
    out = apply_overrides(_raw(), ["stages.train.params.epochs=50"])
    assert out["stages"]["train"]["model"] == {"mlp": {"epochs": 50}}


def test_params_shorthand_expands_a_bare_component():
    out = apply_overrides(_raw(), ["stages.points.params.path=data/points.csv"])
    assert out["stages"]["points"]["source"] == {"csv": {"path": "data/points.csv"}}


def test_params_shorthand_with_null_params():
    raw = {"stages": {"p": {"task": "data", "source": {"csv": None}}}}
    out = apply_overrides(raw, ["stages.p.params.path=x.csv"])
    assert out["stages"]["p"]["source"] == {"csv": {"path": "x.csv"}}


def test_a_full_path_to_a_bare_component_expands_it():
    out = apply_overrides(_raw(), ["stages.doe.design.lhs.samples=8"])
    assert out["stages"]["doe"]["design"] == {"lhs": {"samples": 8}}


def test_stage_with_a_real_params_key_is_left_alone():
    raw = {"stages": {"s": {"task": "custom", "params": {"a": 1}, "model": "m"}}}
    out = apply_overrides(raw, ["stages.s.params.a=2"])
    assert out["stages"]["s"]["params"] == {"a": 2}
    assert out["stages"]["s"]["model"] == "m"


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("seed", "--set takes key.path=value, got 'seed'"),
        ("=3", "bad key path"),
        ("a..b=1", "bad key path 'a..b'"),
        ("stages.doe.params.samples=8", "ambiguous or empty: the stage has 2 components (design, evaluate)"),
        ("stages.doe.plot.5=x", "index 5 is out of range (the list has 2 items)"),
        ("stages.doe.plot.-3=x", "index -3 is out of range"),
        ("stages.doe.plot.first=x", "'first' indexes a list; use a number"),
        ("seed.value=1", "cannot set seed.value: seed is not a mapping"),
        ("stages.doe.plot.0.name=x", "is not a mapping"),
    ],
)
def test_override_errors(override, fragment):
    with pytest.raises(StudyError) as info:
        apply_overrides(_raw(), [override], source="s.yaml")
    (problem,) = info.value.problems
    assert problem.path == "--set"
    assert fragment in problem.message
    assert info.value.source == "s.yaml"


def test_params_shorthand_on_a_stage_without_components_is_an_error():
    raw = {"stages": {"e": {"task": "evaluate", "data": "p", "evaluate": ["a", "b"]}}}
    with pytest.raises(StudyError, match="ambiguous or empty: the stage has 0 components"):
        apply_overrides(raw, ["stages.e.params.x=1"])


def test_all_override_errors_are_reported_together():
    with pytest.raises(StudyError) as info:
        apply_overrides(_raw(), ["nokey", "seed=2", "stages.doe.plot.9=x", "a..b=1"])
    assert len(info.value.problems) == 3
    assert "3 problems" in str(info.value)


# --- through load_study ----------------------------------------------------------------------------


def test_load_study_applies_overrides(write_study):
    path = write_study(QUICKSTART)
    study = load_study(path, ["seed=3", "stages.warpage.design.lhs.samples=8", "device=cpu",
                              "stages.warpage.space.length_mm.high=30", "stages.warpage.plot.0=curvature_1_per_m",
                              "executor={local: {workers: 2}}"])
    assert study.seed == 3
    assert study.device == "cpu"
    assert study.executor.kind == "local" and study.executor.workers == 2
    stage = study.stages["warpage"]
    assert stage.params.design.name == "lhs"
    assert stage.params.design.validated.samples == 8
    assert stage.params.space["length_mm"].high == 30
    assert stage.params.plot == ["curvature_1_per_m", "die_interface_stress_mpa"]
    resolved = study.resolved()
    assert resolved["seed"] == 3
    assert resolved["stages"]["warpage"]["design"]["lhs"]["samples"] == 8


def test_load_study_swaps_a_component(write_study):
    study = load_study(write_study(QUICKSTART), ["stages.warpage.design={sobol: {samples: 16}}"])
    assert study.stages["warpage"].params.design.name == "sobol"
    assert study.stages["warpage"].params.design.validated.samples == 16


def test_load_study_params_shorthand(write_study):
    study = load_study(write_study(DATA_EVALUATE), ["stages.points.params.path=points.csv",
                                                    "stages.warp.params.biaxial=true"])
    assert study.stages["points"].params.source.validated.path == "points.csv"
    assert study.stages["warp"].params.evaluate[0].validated.biaxial is True


def test_load_study_override_value_is_validated_with_the_original_line(write_study):
    path = write_study(QUICKSTART)
    with pytest.raises(StudyError) as info:
        load_study(path, ["stages.warpage.design.lhs.samples=many", "seed=-1"])
    problems = {p.path: p for p in info.value.problems}
    assert problems["seed"].line == 2
    assert "greater than or equal to 0" in problems["seed"].message
    assert problems["stages.warpage.design.lhs.samples"].line == 6
    assert "valid integer" in problems["stages.warpage.design.lhs.samples"].message


def test_load_study_override_that_breaks_bounds(write_study):
    with pytest.raises(StudyError) as info:
        load_study(write_study(QUICKSTART), ["stages.warpage.space.length_mm.low=25"])
    (problem,) = info.value.problems
    assert problem.path == "stages.warpage.space.length_mm"
    assert "low must be below high" in problem.message
    assert problem.line == 9


def test_load_study_override_errors_are_study_errors(write_study):
    path = write_study(QUICKSTART)
    with pytest.raises(StudyError) as info:
        load_study(path, ["stages.warpage.params.samples=8"])
    assert "ambiguous" in info.value.problems[0].message
    assert info.value.source == str(path)


def test_load_study_missing_file(tmp_path):
    with pytest.raises(StudyError, match="study file not found"):
        load_study(tmp_path / "nope.yaml", ["seed=1"])

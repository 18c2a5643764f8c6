"""Mutated studies always give a valid Study or a clean StudyError: never a traceback.

Valid studies are mutated the ways people break YAML by hand (deleted and misspelt keys, values of the
wrong type, numbers written as strings, junk keys, empty or null values) and fed to ``validate_study``.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reflow.errors import StudyError
from reflow.study import Study, validate_study
from reflow.yamlio import load_with_lines

QUICKSTART: dict[str, Any] = {
    "study": "quickstart",
    "description": "Warpage of a die on a substrate.",
    "seed": 7,
    "stages": {
        "warpage": {
            "task": "doe",
            "design": {"lhs": {"samples": 32}},
            "space": {
                "die_thickness_mm": {"low": 0.1, "high": 0.8, "units": "mm"},
                "substrate_thickness_mm": {"low": 0.4, "high": 1.6, "units": "mm"},
                "substrate_cte_ppm": {"low": 12, "high": 18, "units": "ppm/K"},
                "length_mm": {"low": 5, "high": 20, "type": "int"},
                "delta_t_k": {"value": -200, "units": "K"},
            },
            "evaluate": "bilayer-warpage",
            "plot": ["warpage_um", "die_interface_stress_mpa"],
        }
    },
}

DATA_EVALUATE: dict[str, Any] = {
    "study": "lab-points",
    "seed": 3,
    "device": "cpu",
    "executor": {"local": {"workers": 2, "timeout": 30}},
    "stages": {
        "points": {"task": "data", "source": {"csv": {"path": "points.csv", "categorical": ["lot"]}}},
        "warp": {
            "task": "evaluate",
            "data": "points",
            "inputs": ["die_thickness_mm", "length_mm"],
            "evaluate": ["bilayer-warpage"],
        },
        "again": {"task": "evaluate", "data": "warp.trials", "evaluate": {"bilayer-warpage": {"biaxial": True}}},
    },
}

FACTORIAL: dict[str, Any] = {
    "study": "factorial",
    "executor": {"dask": "local", "workers": 2},
    "stages": {
        "grid": {
            "task": "doe",
            "design": {"box-behnken": {"center": 2}},
            "space": {
                "die_thickness_mm": {"low": 0.1, "high": 0.8},
                "substrate_thickness_mm": {"low": 0.4, "high": 1.6},
                "die_cte_ppm": {"low": 2, "high": 4},
            },
            "evaluate": [{"python": {"function": "model:run", "outputs": ["y"]}}],
            "batch_size": 4,
        },
        "check": {"task": "evaluate", "data": "grid.design", "evaluate": "bilayer-warpage"},
    },
}

BASES = [QUICKSTART, DATA_EVALUATE, FACTORIAL]

WORDS = ["task", "stage", "stages", "study", "data", "source", "design", "space", "evaluate", "low", "high",
         "choices", "value", "type", "log", "int", "float", "lhs", "sobol", "box-behnken", "central-composite",
         "bilayer-warpage", "python", "csv", "doe", "train", "points", "warp", "warpage", "grid", "dask", "local",
         "workers", "timeout", "auto", "cuda:1", "points.data", "warp.trials", "a <= 1", "", "-1", "1e400"]

keys = st.one_of(st.sampled_from(WORDS), st.text(max_size=8), st.integers(-3, 3), st.none(), st.booleans(),
                 st.floats(allow_nan=False))
scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**20, 10**20), st.floats(allow_nan=True),
                    st.text(max_size=10), st.sampled_from(WORDS))
junk = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(keys, inner, max_size=3), max_leaves=8)

OPS = ["delete", "rename", "replace", "swap-type", "stringify", "insert", "empty", "null", "wrap", "duplicate"]


def _paths(node: Any, path: tuple = ()) -> list[tuple]:
    out = [path]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, path + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, path + (i,))
    return out


def _get(node: Any, path: tuple) -> Any:
    for p in path:
        node = node[p]
    return node


def _swap_type(value: Any) -> Any:
    if isinstance(value, bool):
        return "yes" if value else 0
    if isinstance(value, (int, float)):
        return [value] if isinstance(value, int) else {"value": value}
    if isinstance(value, str):
        return len(value)
    if isinstance(value, list):
        return {str(i): v for i, v in enumerate(value)}
    if isinstance(value, dict):
        return list(value.values()) or list(value)
    return 0


def _mutate(raw: Any, path: tuple, op: str, draw) -> Any:
    """Apply one mutation at ``path``; returns the (possibly new) root."""
    value = _get(raw, path)
    if op == "insert" and isinstance(value, dict):
        value[draw(keys)] = draw(junk)
        return raw
    if op == "duplicate" and isinstance(value, list) and value:
        value.append(copy.deepcopy(value[0]))
        return raw
    if not path:
        if op in ("replace", "null", "empty", "wrap"):
            return {"replace": draw(junk), "null": None, "empty": {}, "wrap": [raw]}[op]
        return raw
    parent, last = _get(raw, path[:-1]), path[-1]
    if op == "delete":
        del parent[last]
    elif op == "rename" and isinstance(parent, dict):
        new = draw(st.one_of(keys, st.just(str(last)[:-1]), st.just(str(last) + "s"), st.just(str(last).upper())))
        parent.pop(last)
        parent[new] = value
    elif op == "replace":
        parent[last] = draw(junk)
    elif op == "swap-type":
        parent[last] = _swap_type(value)
    elif op == "stringify":
        parent[last] = str(value)
    elif op == "empty":
        parent[last] = type(value)() if isinstance(value, (dict, list, str)) else ""
    elif op == "null":
        parent[last] = None
    elif op == "wrap":
        parent[last] = [value] if not isinstance(value, list) else {"x": value}
    return raw


@st.composite
def mutated_studies(draw):
    raw = copy.deepcopy(draw(st.sampled_from(BASES)))
    for _ in range(draw(st.integers(1, 4))):
        paths = _paths(raw)
        path = draw(st.sampled_from(paths))
        raw = _mutate(raw, path, draw(st.sampled_from(OPS)), draw)
    return raw


def _check_outcome(raw: Any, lines: dict | None = None) -> None:
    try:
        study = validate_study(raw, lines=lines, source="fuzz.yaml")
    except StudyError as exc:
        assert exc.problems, "a StudyError must list at least one problem"
        for p in exc.problems:
            assert isinstance(p.message, str) and p.message.strip(), p
            assert isinstance(p.path, str), p
            assert p.line is None or (isinstance(p.line, int) and p.line >= 1), p
        assert str(exc)
        return
    assert isinstance(study, Study)
    resolved = study.resolved()
    again = validate_study(resolved, source="resolved.yaml")
    assert again.resolved() == resolved


FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(mutated_studies())
def test_mutated_study_validates_or_fails_cleanly(raw):
    _check_outcome(raw)


@FUZZ
@given(mutated_studies())
def test_mutated_study_through_yaml_text_keeps_lines(raw):
    """The same, through YAML text and load_with_lines, so problems carry real line numbers."""
    try:
        text = yaml.safe_dump(raw, sort_keys=False, allow_unicode=True)
    except yaml.YAMLError:
        return
    try:
        data, lines = load_with_lines(text, "fuzz.yaml")
    except StudyError as exc:  # e.g. keys that only differ in type, like 1 and 1.0
        assert all(p.message for p in exc.problems)
        return
    n_lines = text.count("\n") + 1
    try:
        validate_study(data, lines=lines, source="fuzz.yaml")
    except StudyError as exc:
        for p in exc.problems:
            assert p.message.strip()
            assert p.line is not None and 1 <= p.line <= n_lines, p


def test_unmutated_bases_are_valid():
    for base in BASES:
        study = validate_study(copy.deepcopy(base))
        assert study.resolved()["stages"].keys() == base["stages"].keys()


def test_nan_and_infinite_bounds_are_clean_errors():
    raw = copy.deepcopy(QUICKSTART)
    raw["stages"]["warpage"]["space"]["die_thickness_mm"] = {"low": math.nan, "high": 1.0}
    raw["stages"]["warpage"]["space"]["length_mm"] = {"low": 0, "high": math.inf}
    _check_outcome(raw)

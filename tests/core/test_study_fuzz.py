"""Mutated studies always give a valid Study or a clean StudyError: never a traceback.

Valid studies are mutated the ways people break YAML by hand (deleted and misspelt keys, values of the
wrong type, numbers written as strings, junk keys, empty or null values) and fed to ``validate_study``.
The example studies in studies/ are also mutated as text (binary junk, unicode, huge and non-finite
numbers, aliases and alias bombs, tags, deep nesting, broken indentation, structural edits) and go through
``reflow validate``: every mutant ends with exit 0 or 2, without a traceback, in under 5 s.
"""

from __future__ import annotations

import copy
import math
import re
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from _cli import cli
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


def _paths(node: Any, path: tuple = (), limit: int = 5000) -> list[tuple]:
    """The paths of ``node``'s values, breadth first, at most ``limit``: an alias bomb loads as shared lists
    that would expand to 10**8 paths (a "bomb" then a "structure" mutation once ran out of time and memory)."""
    out, queue = [], [(node, path)]
    while queue and len(out) < limit:
        value, where = queue.pop(0)
        out.append(where)
        if isinstance(value, dict):
            queue += [(v, where + (k,)) for k, v in value.items()]
        elif isinstance(value, list):
            queue += [(v, where + (i,)) for i, v in enumerate(value)]
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


# ---- the example studies, mutated as text, through `reflow validate` --------------------------------------

STUDIES = Path(__file__).resolve().parents[2] / "studies"
EXAMPLES = {p.name: p.read_bytes() for p in sorted(STUDIES.glob("*.yaml"))}

_VALUE_LINE = re.compile(rb"^(\s*-?\s*[\w.-]+:[ ]+)(\S.*)$", re.M)
_NUMBER = re.compile(rb"(?<![\w.])-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?(?![\w.])")
HUGE = [b"1e308", b"-1e308", b"1e400", b"-1e400", b".nan", b".inf", b"-.inf", b"1e12", b"1e18",
        b"99999999999999999999999999", b"0x7fffffff", b"1_000", b"-0", b"1e-400", b"2**64", b"9" * 400,
        b"-" + b"9" * 400]
TAGS = [b"!!python/object/apply:os.system ['true']", b"!!python/name:os.system", b"!!binary", b"!!set",
        b"!custom", b"!!timestamp", b"!!float", b"!!str", b"!!int", b"!!map", b"!!omap", b"!!seq", b"!<tag:x>"]
TEXT_OPS = ["junk", "unicode", "truncate", "drop-line", "repeat-line", "number", "alias", "bomb", "tag", "nest",
            "indent", "structure"]


def _value_spans(text: bytes) -> list[tuple[int, int]]:
    return [(m.start(2), m.end(2)) for m in _VALUE_LINE.finditer(text)]


def _mutate_text(text: bytes, op: str, draw) -> bytes:
    """One textual mutation of a study file, the ways files get damaged or crafted."""
    at = draw(st.integers(0, len(text)))
    spans = _value_spans(text)
    start, end = draw(st.sampled_from(spans)) if spans else (at, at)
    lines = text.split(b"\n")
    row = draw(st.integers(0, len(lines) - 1))
    if op == "junk":
        return text[:at] + draw(st.binary(min_size=1, max_size=16)) + text[at:]
    if op == "unicode":
        return text[:at] + draw(st.text(min_size=1, max_size=8)).encode("utf-8", "surrogatepass") + text[at:]
    if op == "truncate":
        return text[:at]
    if op == "drop-line":
        return b"\n".join(lines[:row] + lines[row + 1:])
    if op == "repeat-line":
        return b"\n".join(lines[:row + 1] + lines[row:])
    if op == "number":
        numbers = list(_NUMBER.finditer(text))
        if not numbers:
            return text
        m = draw(st.sampled_from(numbers))
        return text[:m.start()] + draw(st.sampled_from(HUGE)) + text[m.end():]
    if op == "alias":  # an anchor on one value, an alias (maybe undefined, maybe to itself) on another
        other = draw(st.sampled_from(spans)) if spans else (start, end)
        name = draw(st.sampled_from([b"x", b"undefined"]))
        if other[0] < start:
            start, end, other = other[0], other[1], (start, end)
        return text[:start] + b"&x " + text[start:other[0]] + b"*" + name + text[other[1]:]
    if op == "bomb":  # a small nest of aliases in front of a value: up to 10**k values when expanded
        levels = draw(st.integers(1, 8))
        bomb = b"&l0 [a, b, c, d, e, f, g, h, i, j]"
        for k in range(1, levels):
            bomb = b"&l%d [%s" % (k, bomb) + b", *l%d" % (k - 1) * 9 + b"]"
        return text[:start] + bomb + text[end:]
    if op == "tag":
        return text[:start] + draw(st.sampled_from(TAGS)) + b" " + text[start:]
    if op == "nest":
        depth = draw(st.integers(1, 700))
        opener, closer = draw(st.sampled_from([(b"[", b"]"), (b"{a: ", b"}"), (b"- ", b"")]))
        if opener == b"- ":
            return text[:start] + b"\n" + b" " * 8 + opener * depth + text[start:end] + text[end:]
        return text[:start] + opener * depth + text[start:end] + closer * depth + text[end:]
    if op == "indent":
        lines[row] = b" " * draw(st.integers(0, 9)) + lines[row].lstrip()
        return b"\n".join(lines)
    # "structure": parse, apply one of the structural mutations above, write YAML again
    try:
        raw = yaml.safe_load(text)
    except (yaml.YAMLError, ValueError, AttributeError, OverflowError):  # e.g. an earlier op's "!!timestamp x"
        return text
    paths = _paths(raw) if isinstance(raw, dict) else []
    if not paths or len(paths) >= 5000:  # not a mapping, or an alias bomb (the "bomb" op is its own test)
        return text
    raw = _mutate(raw, draw(st.sampled_from(paths)), draw(st.sampled_from(OPS)), draw)
    try:
        return yaml.safe_dump(raw, sort_keys=False, allow_unicode=True).encode()
    except (yaml.YAMLError, UnicodeEncodeError):
        return text


@st.composite
def mutated_files(draw) -> tuple[str, bytes]:
    name = draw(st.sampled_from(sorted(EXAMPLES)))
    text = EXAMPLES[name]
    for _ in range(draw(st.integers(1, 3))):
        text = _mutate_text(text, draw(st.sampled_from(TEXT_OPS)), draw)
    return name, text


def _validate_file(path: Path) -> tuple[int, str, float]:
    start = time.perf_counter()
    result = cli("validate", path)  # raises, with the traceback, if an exception escapes the CLI
    seconds = time.perf_counter() - start
    assert "Traceback" not in result.output, result.output
    return result.exit_code, result.output, seconds


@pytest.fixture(scope="module")
def warm_examples(tmp_path_factory) -> Path:
    """Validate every example once, so one-off plugin imports (timm, ...) are not charged to a mutant."""
    folder = tmp_path_factory.mktemp("fuzz")
    for name, text in EXAMPLES.items():
        (folder / name).write_bytes(text)
        code, output, _ = _validate_file(folder / name)
        assert code == 0, output
    return folder


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(mutated_files())
def test_mutated_example_files_exit_0_or_2_fast_without_a_traceback(warm_examples, case):
    name, text = case
    path = warm_examples / f"mutant-{name}"
    path.write_bytes(text)
    code, output, seconds = _validate_file(path)
    assert code in (0, 2), output
    assert seconds < 5.0, f"{seconds:.1f} s for a mutant of {name}"
    if code == 2:
        assert output.startswith("error:") and "problem" in output, output


@pytest.mark.parametrize("op", ["junk", "bomb", "nest"])
def test_mutants_in_a_real_process(tmp_path, run_cli, op):
    """A few mutants through a real ``reflow`` process: the exit code and the absence of a traceback hold there
    too (no CliRunner in between)."""
    text = EXAMPLES["quickstart.yaml"]
    spans = _value_spans(text)
    start, end = spans[len(spans) // 2]
    mutant = {
        "junk": text[:start] + b"\xff\xfe\x00\x1b" + text[start:],
        "bomb": text[:start] + _BOMB + text[end:],
        "nest": text[:start] + b"[" * 700 + text[start:end] + b"]" * 700 + text[end:],
    }[op]
    path = tmp_path / "mutant.yaml"
    path.write_bytes(mutant)
    started = time.perf_counter()
    proc = run_cli("validate", path, timeout=60)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and proc.stderr.startswith("error:")
    assert time.perf_counter() - started < 30  # start-up included, on a busy machine


_BOMB = b"&l0 [a, b, c, d, e, f, g, h, i, j]"
for _k in range(1, 8):
    _BOMB = b"&l%d [%s" % (_k, _BOMB) + b", *l%d" % (_k - 1) * 9 + b"]"


_SET_KEYS = ["study", "seed", "device", "executor", "stages.warpage.design.lhs.samples",
             "stages.warpage.params.samples",
             "stages.warpage.space.die_thickness_mm.low", "stages.warpage.space", "stages.warpage.plot.0",
             "stages.warpage.evaluate", "stages.nowhere.params.x", "stages.warpage.space.new_factor"]
_SET_VALUES = st.one_of(
    st.text(max_size=30),
    st.sampled_from([v.decode() for v in HUGE] + [t.decode() for t in TAGS]),
    st.integers(1, 700).map(lambda k: "[" * k + "]" * k),
    st.integers(1, 8).map(lambda k: _BOMB_TEXT[k]),
    st.sampled_from(["{low: 1e308, high: -1e308}", "{choices: [.nan, .nan]}", "*x", "&x [*x]", "{", "- a\n- b"]),
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(key=st.one_of(st.sampled_from(_SET_KEYS), st.text(max_size=12)), value=_SET_VALUES)
def test_fuzzed_set_values_exit_0_or_2_fast_without_a_traceback(warm_examples, key, value):
    start = time.perf_counter()
    result = cli("validate", warm_examples / "quickstart.yaml", "--set", f"{key}={value}")
    assert result.exit_code in (0, 2) and "Traceback" not in result.output, result.output
    assert time.perf_counter() - start < 5.0


def _bomb_text(levels: int) -> str:
    text = "&l0 [a, b, c, d, e, f, g, h, i, j]"
    for k in range(1, levels):
        text = f"&l{k} [{text}" + f", *l{k - 1}" * 9 + "]"
    return text


_BOMB_TEXT = {k: _bomb_text(k) for k in range(1, 9)}

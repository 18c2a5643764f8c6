"""YAML loading: safe_load semantics plus the line of every key and list item."""

from __future__ import annotations

import textwrap

import pytest
import yaml
from reflow.errors import StudyError
from reflow.yamlio import dotted, line_of, load_with_lines


def load(text: str):
    return load_with_lines(textwrap.dedent(text).lstrip("\n"), "test.yaml")


def problems_of(text: str):
    with pytest.raises(StudyError) as info:
        load(text)
    assert info.value.source == "test.yaml"
    return info.value.problems


def test_lines_of_nested_keys_and_list_items():
    data, lines = load("""
        study: s
        stages:
          doe:
            space:
              x: {low: 0, high: 1}
            evaluate:
              - bilayer-warpage
              - python:
                  function: "m:f"
            plot: [a, b]
    """)
    assert data["stages"]["doe"]["evaluate"][1] == {"python": {"function": "m:f"}}
    assert lines[()] == 1
    assert lines[("study",)] == 1
    assert lines[("stages",)] == 2
    assert lines[("stages", "doe")] == 3
    assert lines[("stages", "doe", "space", "x")] == 5
    assert lines[("stages", "doe", "space", "x", "high")] == 5
    assert lines[("stages", "doe", "evaluate")] == 6
    assert lines[("stages", "doe", "evaluate", 0)] == 7
    assert lines[("stages", "doe", "evaluate", 1)] == 8
    assert lines[("stages", "doe", "evaluate", 1, "python", "function")] == 9
    assert lines[("stages", "doe", "plot", 1)] == 10


def test_line_of_falls_back_to_the_nearest_ancestor():
    _, lines = load("""
        a:
          b:
            c: 1
    """)
    assert line_of(lines, ("a", "b", "c")) == 3
    assert line_of(lines, ("a", "b", "missing", 4)) == 2
    assert line_of(lines, ("nope",)) == 1
    assert line_of({}, ("x",)) is None


def test_dotted_paths():
    assert dotted(("stages", "doe", "space", 0, "low")) == "stages.doe.space[0].low"
    assert dotted(()) == ""


def test_values_match_safe_load():
    text = textwrap.dedent("""
        a: 1
        b: 2.5e+3
        c: [true, null, "x", 0x10]
        d: {e: ~, f: 'g'}
        h: 2024-01-02
        base: &b {low: 1, high: 2}
        merged:
          <<: *b
          high: 3
        alias: *b
    """)
    data, _ = load_with_lines(text)
    assert data == yaml.safe_load(text)
    assert data["merged"] == {"low": 1, "high": 3}


def test_empty_document_is_none():
    assert load_with_lines("") == (None, {})
    assert load_with_lines("# only a comment\n")[0] is None


def test_duplicate_key_is_reported_with_its_line():
    problems = problems_of("""
        study: s
        stages:
          a:
            task: doe
            task: data
    """)
    assert len(problems) == 1
    assert problems[0].path == "stages.a.task"
    assert "duplicate key" in problems[0].message
    assert problems[0].line == 5


def test_every_duplicate_key_is_reported():
    problems = problems_of("""
        seed: 1
        seed: 2
        x: {a: 1, a: 2}
    """)
    assert [(p.path, p.line) for p in problems] == [("seed", 2), ("x.a", 3)]


def test_merge_key_override_is_not_a_duplicate_but_a_repeated_key_is():
    problems = problems_of("""
        base: &b {low: 1, high: 2}
        x:
          <<: *b
          high: 3
          high: 4
    """)
    assert [(p.path, p.line) for p in problems] == [("x.high", 5)]


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("a: [1, 2\nb: 3\n", 2),
        ("a:\n  b: 1\n c: 2\n", 3),
        ("a: 'unterminated\n", 2),
        ("a: 1\n\tb: 2\n", 2),
    ],
)
def test_invalid_yaml_is_a_study_error_with_a_line(text, line):
    with pytest.raises(StudyError) as info:
        load_with_lines(text, "bad.yaml")
    (problem,) = info.value.problems
    assert problem.message.startswith("invalid YAML")
    assert problem.line == line
    assert "bad.yaml" in str(info.value)


def test_two_documents_are_rejected():
    with pytest.raises(StudyError, match="invalid YAML"):
        load_with_lines("a: 1\n---\nb: 2\n")


@pytest.mark.parametrize(
    "text",
    [
        "x: 1\ncmd: !!python/object/apply:os.system [echo hacked]\n",
        "x: 1\ncmd: !!python/object:os.system {}\n",
        "x: 1\ncmd: !!python/name:os.system\n",
        "x: 1\ncmd: !!python/object/new:os.system {args: [echo hacked]}\n",
        "x: 1\ncmd: !custom 3\n",
    ],
)
def test_python_tags_are_rejected_like_safe_load(text, capfd):
    with pytest.raises(yaml.constructor.ConstructorError):
        yaml.safe_load(text)
    with pytest.raises(StudyError) as info:
        load_with_lines(text)
    (problem,) = info.value.problems
    assert "invalid YAML" in problem.message and "tag" in problem.message
    assert problem.line == 2
    assert "hacked" not in capfd.readouterr().out


def test_safe_tags_still_work():
    data, _ = load_with_lines("a: !!str 12\nb: !!float 3\nc: !!set {x, y}\n")
    assert data == {"a": "12", "b": 3.0, "c": {"x", "y"}}


def test_non_scalar_keys_are_problems():
    problems = problems_of("""
        a:
          ? [1, 2]
          : x
    """)
    assert problems[0].message == "keys must be plain names"
    assert problems[0].line == 2


def test_recursive_alias_is_a_problem_not_a_crash():
    with pytest.raises(StudyError) as info:
        load_with_lines("a: &x\n  b: *x\n")
    assert "alias" in info.value.problems[0].message
    assert info.value.problems[0].line == 2


def test_alias_bomb_is_cheap():
    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 20):
        levels.append(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]")
    # refused while composing: validation would walk (and copy) all 10**20 values of the expanded tree
    with pytest.raises(StudyError, match="expands to more than"):
        load_with_lines("\n".join(levels) + "\n")
    data, lines = load_with_lines("\n".join(levels[:3]) + "\n")  # 10**3 values: within the limit
    assert len(data["a2"]) == 10
    assert len(lines) < 1000


def test_exponent_floats_without_a_dot_are_numbers():
    """YAML 1.1 (plain safe_load) reads ``1e-3`` as text; studies read it as the number people mean."""
    data, _ = load_with_lines("lr: 1e-3\nn: 1E5\nm: -2.5e+2\nnot_numbers: [1e, e1, 1e-3x]\n")
    assert data == {"lr": 0.001, "n": 100000.0, "m": -250.0, "not_numbers": ["1e", "e1", "1e-3x"]}
    assert isinstance(data["n"], float)

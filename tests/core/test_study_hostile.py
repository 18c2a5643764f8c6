"""Hostile and damaged study files are refused fast and cleanly: exit 2, a message with the line, no traceback.

Each case here failed before the limits of ``reflow.yamlio`` and the size checks of ``reflow.space`` existed:
an alias bomb ran for minutes at gigabytes, non-UTF-8 bytes, NUL and 600 levels of nesting ended in a
traceback, and absurd sizes and bounds passed validation only to fail at run time.
"""

from __future__ import annotations

import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from _cli import cli
from reflow import yamlio
from reflow.errors import StudyError
from reflow.runner import run_study
from reflow.study import load_study

QUICKSTART = """\
study: quickstart
seed: 7
stages:
  warpage:
    task: doe
    design: {lhs: {samples: 8}}
    space:
      die_thickness_mm: {low: 0.1, high: 0.8, units: mm}
      substrate_thickness_mm: {low: 0.4, high: 1.6, units: mm}
      delta_t_k: {value: -200, units: K}
    evaluate: bilayer-warpage
"""

LAUGHS = """\
study: laughs
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
stages:
  s: {task: doe, design: lhs, evaluate: bilayer-warpage, space: {x: {low: 0, high: 1}}, plot: *i}
"""


@pytest.fixture(scope="module", autouse=True)
def _warm(tmp_path_factory):
    """One valid study first, so the plugin registry's one-off loading is not counted in a refusal's time."""
    path = tmp_path_factory.mktemp("warm") / "study.yaml"
    path.write_text(QUICKSTART)
    code, output, _ = validate(path)
    assert code == 0, output


def validate(path: Path, *args: str):
    """``reflow validate`` in-process; returns (exit code, output, seconds) and asserts no traceback."""
    start = time.perf_counter()
    result = cli("validate", path, *args)  # raises if a Python exception escapes the CLI
    seconds = time.perf_counter() - start
    assert "Traceback" not in result.output, result.output
    return result.exit_code, result.output, seconds


def refused(tmp_path: Path, content: str | bytes, *args: str, name: str = "study.yaml") -> str:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    code, output, seconds = validate(path, *args)
    assert code == 2, output
    assert seconds < 5.0, f"refusal took {seconds:.2f} s"  # well under 1 s on an idle machine; a hang fails
    return output


# ---- the file itself ------------------------------------------------------------------------------------


def test_billion_laughs_is_refused_fast_in_a_real_process(tmp_path):
    """The 9 x 9 alias bomb (10**9 values) through ``reflow validate``: exit 2 in well under a second of
    work and under 200 MB of memory (it took minutes and 2 to 4.5 GB before)."""
    path = tmp_path / "laughs.yaml"
    path.write_text(LAUGHS)
    start = time.perf_counter()
    with pytest.raises(StudyError, match="expands to more than 10,000 values"):
        yamlio.load_with_lines(LAUGHS, str(path))
    assert time.perf_counter() - start < 5.0  # milliseconds on an idle machine
    probe = ("import resource, sys, time\nimport reflow.study\nfrom reflow.cli import main\n"
             "sys.argv = ['reflow', 'validate', sys.argv[1]]\nstart = time.perf_counter()\n"
             "try:\n    main()\nfinally:\n"
             "    print('SECONDS', time.perf_counter() - start, file=sys.stderr)\n"
             "    hwm = [l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')]\n"
             "    print('MAXRSS_KB', hwm[0] if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,"
             " file=sys.stderr)\n")
    # VmHWM is the peak of this process image: ru_maxrss keeps the peak of the forking pytest process across exec
    import subprocess

    proc = subprocess.run([sys.executable, "-c", probe, str(path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "expands to more than" in proc.stderr and "line 6" in proc.stderr  # e: the first anchor too big
    seconds = float(proc.stderr.split("SECONDS")[1].split()[0])  # the command, after the interpreter's start-up
    rss_mb = int(proc.stderr.split("MAXRSS_KB")[1].split()[0]) / 1024
    assert seconds < 5.0, f"{seconds:.2f} s"  # about 0.05 s idle; generous for a busy CI machine
    assert rss_mb < 200, f"{rss_mb:.0f} MB"


def test_a_bomb_in_a_set_value_is_refused(tmp_path):
    text = "&a0 [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]"  # each level holds the one before ten times: 10**6 values
    for k in range(1, 6):
        text = f"&a{k} [{text}" + f", *a{k - 1}" * 9 + "]"
    output = refused(tmp_path, QUICKSTART, "--set", f"stages.warpage.plot={text}")
    assert "--set" in output and "expands to more than" in output


def test_not_utf8_is_refused_with_its_line(tmp_path):
    output = refused(tmp_path, QUICKSTART.encode() + b"description: caf\xe9\n")
    assert "not UTF-8" in output and "0xe9" in output and "line 12" in output


def test_nul_byte_is_refused_with_its_line(tmp_path):
    output = refused(tmp_path, QUICKSTART.replace("seed: 7", "seed: 7\x00"))
    assert "NUL byte" in output and "line 2" in output and "column 8" in output


@pytest.mark.parametrize("char", ["\x07", "\x1b", "\x7f", "\ufffe"])
def test_control_characters_are_refused(tmp_path, char):
    output = refused(tmp_path, QUICKSTART.replace("quickstart", f"quick{char}start"))
    assert "control character" in output and "line 1" in output


def test_utf8_bom_and_unicode_text_are_fine(tmp_path):
    path = tmp_path / "study.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + QUICKSTART.replace("seed: 7", "description: Wärme, 応力 ✓\nseed: 7").encode())
    code, output, _ = validate(path)
    assert code == 0, output


@pytest.mark.parametrize("style", ["flow", "block", "mapping"])
def test_600_levels_of_nesting_are_refused(tmp_path, style):
    if style == "flow":
        deep = "[" * 600 + "]" * 600
    elif style == "block":
        deep = "\n  " + "- " * 600 + "x"  # block sequences inside each other on one line
    else:
        deep = "{a: " * 600 + "1" + "}" * 600
    output = refused(tmp_path, QUICKSTART + f"description: {deep}\n")
    assert "nesting deeper than 64 levels" in output


@pytest.mark.parametrize("opener", ["[", "{", "{a: "])
def test_a_long_run_of_brackets_is_refused_at_once(opener):
    """The scanner looks ahead through ``[[[[...`` in quadratic time; it is stopped at the limit (0.8 s before)."""
    text = "x: " + opener * (200_000 // len(opener))
    start = time.perf_counter()
    with pytest.raises(StudyError, match="nesting deeper than 64 levels"):
        yamlio.load_with_lines(text, "t.yaml")
    assert time.perf_counter() - start < 3.0  # milliseconds now; 0.8 s and growing as n^2 before


def test_a_long_flat_list_is_refused_while_composing():
    """125,000 values written out (250 kB) took 9.5 s to compose before the count stopped it."""
    text = "x: [" + "1," * 125_000 + "]"
    start = time.perf_counter()
    with pytest.raises(StudyError, match="more than 10,000 values"):
        yamlio.load_with_lines(text, "t.yaml")
    assert time.perf_counter() - start < 5.0  # about 0.3 s on an idle machine; 9.5 s before


def test_nesting_within_the_limit_still_loads():
    data, _ = yamlio.load_with_lines("x: " + "[" * 60 + "]" * 60 + "\n")
    depth, node = 0, data["x"]
    while node:
        node, depth = node[0], depth + 1
    assert depth == 59


def test_a_file_over_the_size_limit_is_refused_without_reading_it_all(tmp_path):
    output = refused(tmp_path, QUICKSTART + "# " + "x" * (yamlio.MAX_BYTES + 10) + "\n")
    assert "larger than 256 KiB" in output


def test_a_folder_or_a_missing_file_is_a_clean_error(tmp_path):
    (tmp_path / "dir.yaml").mkdir()
    code, output, _ = validate(tmp_path / "dir.yaml")
    assert code == 2 and "is a folder" in output
    code, output, _ = validate(tmp_path / "absent.yaml")
    assert code == 2


@pytest.mark.parametrize("text, message", [
    ("a: &a [*a]\n", "an alias refers to a node that contains it"),
    ("a: *nowhere\n", "found undefined alias"),
    ("a: !!python/object/apply:os.system ['true']\n", "invalid YAML"),
    ("a: !!binary 'not base64!'\n", "invalid YAML"),
])
def test_alias_and_tag_tricks_are_study_errors(text, message):
    with pytest.raises(StudyError, match=message):
        yamlio.load_with_lines(text, "t.yaml")


@pytest.mark.parametrize("value", ["\x00", "[" * 100 + "]" * 100])
def test_set_values_go_through_the_same_limits(tmp_path, value):
    output = refused(tmp_path, QUICKSTART, "--set", f"description={value}")
    assert "--set" in output


# ---- sizes and bounds that cannot run ----------------------------------------------------------------


def test_1e12_samples_are_refused_with_the_memory_estimate(tmp_path):
    output = refused(tmp_path, QUICKSTART.replace("samples: 8", "samples: 1e12"))
    assert "samples = 1,000,000,000,000 points need about" in output and "TiB" in output
    assert "at most" in output and "stages.warpage.design.lhs" in output and "line 6" in output


def test_a_400_digit_sample_count_is_refused(tmp_path):
    output = refused(tmp_path, QUICKSTART.replace("samples: 8", "samples: 1" + "0" * 400))
    assert "need about 10^" in output and "bytes of memory" in output


def test_1e12_samples_through_set_are_refused(tmp_path):
    output = refused(tmp_path, QUICKSTART, "--set", "stages.warpage.design.lhs.samples=1e12")
    assert "TiB" in output


def test_a_large_but_runnable_design_passes(tmp_path):
    path = tmp_path / "study.yaml"
    path.write_text(QUICKSTART.replace("samples: 8", "samples: 100000"))
    code, output, _ = validate(path)
    assert code == 0, output


def test_optimize_budget_beyond_the_memory_estimate_is_refused(tmp_path):
    study = textwrap.dedent("""\
        study: big-budget
        stages:
          opt:
            task: optimize
            optimizer: random
            space:
              die_thickness_mm: {low: 0.1, high: 0.8}
            evaluate: bilayer-warpage
            objectives: {warpage_um: min}
            budget: {initial: 8, evaluations: 1e10}
    """)
    output = refused(tmp_path, study)
    assert "evaluations = 10,000,000,000 points need about" in output and "stages.opt.budget.evaluations" in output


@pytest.mark.parametrize("bounds, message", [
    ("{low: -1e308, high: 1e308}", "bounds must lie within +-1e+30"),
    ("{low: 0, high: 1e31}", "bounds must lie within +-1e+30"),
    ("{low: 0, high: .inf}", "bounds must be finite"),
    ("{low: .nan, high: 1}", "bounds must be finite"),
    ("{low: 0, high: 1e17, type: int}", "integer bounds must lie within"),
    ("{low: 0, high: 1" + "0" * 400 + "}", "Input should be a valid number"),
    ("{value: .inf}", "a fixed value must be a text or a finite number"),
    ("{value: 1" + "0" * 400 + "}", "a fixed value must be a text or a finite number"),
    ("{choices: [1, .nan]}", "choices must be texts or finite numbers"),
    ("{choices: [1, 1" + "0" * 400 + "]}", "choices must be texts or finite numbers"),
])
def test_absurd_or_non_finite_bounds_are_refused(tmp_path, bounds, message):
    output = refused(tmp_path, QUICKSTART.replace("{low: 0.4, high: 1.6, units: mm}", bounds))
    assert message in output and "stages.warpage.space.substrate_thickness_mm" in output, output


def test_centre_points_are_bounded(tmp_path):
    study = QUICKSTART.replace("{lhs: {samples: 8}}", "{box-behnken: {center: 1000000000}}")
    study = study.replace("delta_t_k: {value: -200, units: K}", "length_mm: {low: 5, high: 20}")
    output = refused(tmp_path, study)
    assert "stages.warpage.design.box-behnken.center" in output and "1000" in output


# ---- names are matched whole -------------------------------------------------------------------------


@pytest.mark.parametrize("old, new, where", [
    ("study: quickstart", 'study: "quickstart\\n"', "study:"),
    ("  warpage:\n", '  "warpage\\n":\n', "stages['warpage\\n']"),
    ("      die_thickness_mm:", '      "die_thickness_mm\\n":', "space['die_thickness_mm\\n']"),
    ("seed: 7", 'seed: 7\ndevice: "cpu\\n"', "device:"),
])
def test_names_ending_in_a_newline_are_refused(tmp_path, old, new, where):
    output = refused(tmp_path, QUICKSTART.replace(old, new))
    assert where in output and "\\n'" in output, output


def test_space_names_must_be_variable_names(tmp_path):
    output = refused(tmp_path, QUICKSTART.replace("die_thickness_mm:", "die thickness:"))
    assert "variable names use letters, digits and '_'" in output


# ---- paths relative to the study ---------------------------------------------------------------------


def test_python_module_path_with_dot_dot_in_a_study_that_imports_a_helper(tmp_path):
    """``../shared/model:evaluate`` from a study in its own folder, the module importing a helper next to it."""
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "hostile_helper_r17.py").write_text("def square(x):\n    return x * x\n")
    (tmp_path / "shared" / "model.py").write_text(
        "import hostile_helper_r17\n\ndef evaluate(x):\n    return {'y': hostile_helper_r17.square(x)}\n")
    (tmp_path / "study").mkdir()
    path = tmp_path / "study" / "study.yaml"
    path.write_text(textwrap.dedent("""\
        study: shared-model
        stages:
          doe:
            task: doe
            design: {lhs: {samples: 3}}
            space:
              x: {low: 0, high: 1}
            evaluate: {python: {function: "../shared/model:evaluate", outputs: [y]}}
    """))
    before = list(sys.path)
    try:
        run = run_study(load_study(path), out=tmp_path / "runs", quiet=True)
    finally:
        sys.modules.pop("hostile_helper_r17", None)
    trials = run.output("doe")
    assert trials["status"].values.tolist() == ["ok"] * 3, trials["error"].values
    np.testing.assert_allclose(trials["y"].values, trials["x"].values ** 2)
    assert sys.path == before


@pytest.mark.parametrize("design, factors", [("central-composite", 40), ("box-behnken", 3000)])
def test_response_surface_designs_over_too_many_factors_are_refused(design, factors):
    """A central composite design has 2**d factorial points: 40 factors would be 10**12 rows at run time."""
    from reflow.study import validate_study

    raw = {"study": "wide", "stages": {"rsm": {
        "task": "doe", "design": design, "evaluate": {"python": {"function": "model:f"}},
        "space": {f"x{i}": {"low": 0, "high": 1} for i in range(factors)}}}}
    with pytest.raises(StudyError, match=r"this \S+.* design has [\d,]+ points, which need about .* at most"):
        validate_study(raw)
    raw["stages"]["rsm"]["space"] = {f"x{i}": {"low": 0, "high": 1} for i in range(5)}
    validate_study(raw)


def test_a_400_digit_number_in_an_image_transform_is_refused(tmp_path):
    """Found by replacing every number of the example studies with a 400-digit one: the only traceback left."""
    text = (Path(__file__).resolve().parents[2] / "studies" / "ic_material_cti.yaml").read_text()
    assert "{rotate: [-30, -15, 0, 15, 30]}" in text
    path = tmp_path / "study.yaml"
    path.write_text(text.replace("{rotate: [-30, -15, 0, 15, 30]}", "{rotate: [-30, 1" + "0" * 400 + "]}", 1))
    code, output, _ = validate(path)
    assert code == 2 and "too large a number" in output, output

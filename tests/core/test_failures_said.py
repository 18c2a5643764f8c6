"""Failures said where they happen: on the console, in run.log and in the report, at the plugin's file and line.

A stage whose every evaluation failed fails (exit 1) instead of handing an empty table to the next stage; one
where more than ``max_failed`` failed warns; a trial's error points at the plugin's code, not reflow's.
"""

from __future__ import annotations

import html
import importlib.util
import json

import pytest
from reflow.evaluation import FAILURES, TrialsFailed
from reflow.runner import resume_run, run_study
from reflow.store import TrialJournal, read_dataset, read_manifest
from reflow.study import load_study

# ---- a python evaluator that raises KeyError, and a later stage that needs its results ----------------------

MODEL = '''
import os

FLAG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "broken")


def evaluate(x):
    table = {"warpage": 2.0 * x}
    if os.path.exists(FLAG):
        return {"y": table["thickness"]}
    return {"y": table["warpage"]}
'''
RAISING_LINE = 10  # the line of table["thickness"] in MODEL

CHAIN = """
study: said
stages:
  doe:
    task: doe
    design: {lhs: {samples: 8}}
    space: {x: {low: 0, high: 1}}
    evaluate: {python: {function: "model:evaluate", outputs: [y]}}
  again:
    task: evaluate
    data: doe
    inputs: [x]
    evaluate: {python: {function: "model:evaluate", outputs: [y]}}
"""


@pytest.fixture
def broken_model(tmp_path):
    (tmp_path / "model.py").write_text(MODEL)
    (tmp_path / "broken").write_text("")
    assert MODEL.splitlines()[RAISING_LINE - 1].strip() == 'return {"y": table["thickness"]}'
    return tmp_path


def test_a_doe_whose_every_evaluation_failed_fails_and_says_why(broken_model, write_study, run_cli):
    study = write_study(CHAIN)
    done = run_cli("run", study, "--out", broken_model / "runs", "--quiet", cwd=broken_model)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    where = f"model.py:{RAISING_LINE}"
    console = " ".join(done.stderr.split())  # rich may wrap long lines
    assert "all 8 evaluations failed" in console and "8 x" in console
    assert "KeyError: 'thickness'" in console and where in console, done.stderr
    assert "0 groups" not in console

    run_dir = next((broken_model / "runs" / "said").iterdir())
    manifest = read_manifest(run_dir)
    assert manifest["status"] == "failed"
    assert manifest["stages"]["doe"]["status"] == "failed"
    assert manifest["stages"]["again"]["status"] == "pending", "the run must stop at the stage that failed"
    log = (run_dir / "run.log").read_text()
    assert "all 8 evaluations failed" in log and "KeyError: 'thickness'" in log and where in log
    page = html.unescape((run_dir / "report.html").read_text())
    assert "all 8 evaluations failed" in page and "KeyError: 'thickness'" in page and where in page
    note = json.loads((run_dir / "doe" / FAILURES).read_text())["trials"]
    assert note["verdict"] == "failed" and note["failed"] == 8 and note["errors"][0]["count"] == 8


def test_a_stage_that_failed_for_its_failures_evaluates_them_again_on_resume(broken_model, write_study):
    study = write_study(CHAIN)
    with pytest.raises(TrialsFailed, match="all 8 evaluations failed"):
        run_study(load_study(study), broken_model / "runs", quiet=True)
    run_dir = next((broken_model / "runs" / "said").iterdir())
    (broken_model / "broken").unlink()  # the user fixes the cause

    run = resume_run(run_dir, quiet=True)
    manifest = read_manifest(run.dir)
    assert manifest["status"] == "done"
    trials = read_dataset(run.dir / "doe" / "trials.nc")
    assert trials.sizes["trial"] == 8 and set(trials["status"].values.tolist()) == {"ok"}
    assert sorted(trials["trial"].values.tolist()) == list(range(8)), "one row per trial, none repeated"
    journal = TrialJournal(run.dir / "doe" / "trials.jsonl").read()
    assert len(journal) == 16 and [r["status"] for r in journal[8:]] == ["ok"] * 8
    assert not (run.dir / "doe" / FAILURES).exists()
    assert read_dataset(run.dir / "again" / "trials.nc").sizes["trial"] == 8


CHECK = '''
import os

FLAG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "verify-broken")


def evaluate(x):
    if os.path.exists(FLAG):
        raise RuntimeError("licence server down")
    return {"y": 2.0 * x}
'''


def test_an_optimize_stage_whose_every_verification_failed_fails_and_resumes(tmp_path, write_study):
    (tmp_path / "model.py").write_text(MODEL)
    (tmp_path / "check.py").write_text(CHECK)
    (tmp_path / "verify-broken").write_text("")
    study = write_study("""
        study: verify-resume
        stages:
          opt:
            task: optimize
            space: {x: {low: 0, high: 1}}
            evaluate: {python: {function: "model:evaluate", outputs: [y]}}
            optimizer: {sobol: {samples: 4}}
            objectives: {y: min}
            budget: {initial: 0, evaluations: 4}
            verify: {evaluate: {python: {function: "check:evaluate", outputs: [y]}}, designs: all}
        """)
    with pytest.raises(TrialsFailed) as err:
        run_study(load_study(study), tmp_path / "runs", quiet=True)
    message = str(err.value)
    assert "all 4 verify evaluations failed" in message and "4 x" in message
    assert "RuntimeError: licence server down" in message and "check.py:9)" in message and "verify.jsonl" in message
    run_dir = next((tmp_path / "runs" / "verify-resume").iterdir())
    (tmp_path / "verify-broken").unlink()

    run = resume_run(run_dir, quiet=True)
    verify = read_dataset(run.dir / "opt" / "verify.nc")
    assert verify["status"].values.tolist() == ["ok"] * 4
    assert len(TrialJournal(run.dir / "opt" / "verify.jsonl").read()) == 8
    assert len(TrialJournal(run.dir / "opt" / "trials.jsonl").read()) == 4, "the optimization is not repeated"


# ---- a throwaway plugin: a library error, NaN, a misspelled output --------------------------------------------

PLUGIN = '''
import numpy as np
import reflow


class Singular(reflow.Evaluator):
    """Fails in three ways, by the value of x."""

    inputs = (reflow.Variable("x"),)
    outputs = (reflow.Variable("warpage_um"),)

    class Params(reflow.Params):
        pass

    def evaluate_one(self, inputs):
        x = inputs["x"]
        if x < 0.2:
            return {"warpage_um": float(np.linalg.inv(np.zeros((2, 2)))[0, 0])}
        if x < 0.4:
            return {"warpage_um": float("nan")}
        if x < 0.6:
            return {"warpage": 1.0, "stress_mpa": 3.0}
        return {"warpage_um": 10.0 * x}


@reflow.hookimpl
def register_evaluators(register):
    register("singular-fea", Singular)
'''
DEF_LINE = 15  # def evaluate_one
INV_LINE = 18  # np.linalg.inv


@pytest.fixture
def singular(tmp_path, register_plugin):
    path = tmp_path / "singular_plugin.py"
    path.write_text(PLUGIN)
    lines = PLUGIN.splitlines()
    assert lines[DEF_LINE - 1].strip().startswith("def evaluate_one") and "inv(" in lines[INV_LINE - 1]
    spec = importlib.util.spec_from_file_location("singular_plugin", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    register_plugin(module, "singular-plugin")
    return path


def _run_singular(write_study, tmp_path, max_failed: str = ""):
    study = write_study(f"""
        study: singular
        stages:
          doe:
            task: doe
            design: {{full-factorial: {{levels: 5}}}}
            space: {{x: {{low: 0, high: 1}}}}
            evaluate: singular-fea
            {max_failed}
        """)
    run = run_study(load_study(study), tmp_path / "runs", quiet=True)
    trials = read_dataset(run.dir / "doe" / "trials.nc")
    errors = {round(float(x), 2): str(e) for x, e in zip(trials["x"].values, trials["error"].values, strict=True)}
    return run, errors


def test_an_error_raised_in_a_library_points_at_the_plugin_line(singular, write_study, tmp_path):
    _, errors = _run_singular(write_study, tmp_path)
    assert "LinAlgError" in errors[0.0]
    assert errors[0.0].endswith(f"singular_plugin.py:{INV_LINE})"), errors[0.0]
    assert "numpy" not in errors[0.0].rsplit("(at", 1)[1]


def test_nan_points_at_the_plugin_not_at_reflow(singular, write_study, tmp_path):
    _, errors = _run_singular(write_study, tmp_path)
    assert "'warpage_um' is nan" in errors[0.25]
    assert errors[0.25].endswith(f"singular_plugin.py:{DEF_LINE})"), errors[0.25]
    assert "evaluation.py" not in errors[0.25]


def test_a_misspelled_output_lists_what_was_returned_and_suggests(singular, write_study, tmp_path):
    _, errors = _run_singular(write_study, tmp_path)
    error = errors[0.5]
    assert "missing outputs: warpage_um" in error
    assert "the evaluator returned: warpage, stress_mpa" in error and "did you mean 'warpage'?" in error
    assert error.endswith(f"singular_plugin.py:{DEF_LINE})"), error


def test_more_failures_than_max_failed_warn_everywhere(singular, write_study, tmp_path, capsys):
    run, _ = _run_singular(write_study, tmp_path)  # 3 of 5 fail: 60 % > 20 %
    manifest = read_manifest(run.dir)
    assert manifest["status"] == "done" and manifest["stages"]["doe"]["status"] == "done"
    console = " ".join(capsys.readouterr().err.split())
    head = "3 of 5 evaluations failed (60%, more than max_failed 20%)"
    assert "warning:" in console and head in console
    for text in ("1 x EvaluationError: step 'singular-fea': LinAlgError", f"singular_plugin.py:{INV_LINE}",
                 "'warpage_um' is nan", "did you mean 'warpage'?"):
        assert text in console, text
    log = (run.dir / "run.log").read_text()
    assert "WARNING" in log and head in log and f"singular_plugin.py:{INV_LINE}" in log
    page = html.unescape((run.dir / "report.html").read_text())
    assert "Warning: failed evaluations" in page and head in page and "did you mean 'warpage'?" in page


def test_max_failed_is_settable(singular, write_study, tmp_path, capsys):
    run, _ = _run_singular(write_study, tmp_path, "max_failed: 0.6")  # 60 % is not more than 60 %
    assert "warning" not in capsys.readouterr().err
    assert not (run.dir / "doe" / FAILURES).exists()
    assert "Warning: failed" not in (run.dir / "report.html").read_text()
    assert run.study.stages["doe"].params.max_failed == 0.6


def test_max_failed_out_of_range_is_a_study_error(write_study, run_cli):
    study = write_study("""
        study: bad-share
        stages:
          doe:
            task: doe
            design: {lhs: {samples: 4}}
            space: {x: {low: 0, high: 1}}
            evaluate: {python: {function: "model:evaluate"}}
            max_failed: 20
        """)
    done = run_cli("validate", study)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "max_failed" in done.stderr and "less than or equal to 1" in done.stderr, done.stderr

"""Evaluators ``python`` (a user's function next to the study) and ``command`` (an external program)."""

from __future__ import annotations

import json
import os
import sys
import textwrap
import time

import numpy as np
import pytest
from reflow.context import RunContext
from reflow.errors import EvaluationError, ReflowError, StudyError, UserInputError
from reflow.plugins.physics.command import CommandEvaluator
from reflow.plugins.physics.python_function import PythonEvaluator
from reflow.runner import run_study
from reflow.study import load_study


@pytest.fixture
def ctx(tmp_path):
    folder = tmp_path / "run" / "s"
    folder.mkdir(parents=True)
    return RunContext(run=None, stage="s", seed=1, device="cpu", folder=folder, study_dir=tmp_path, quiet=True)


def write(path, text: str):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip())
    return path


# ---- python: per trial --------------------------------------------------------------------------

BEAM = """
    def evaluate(load_n, length_mm, width_mm=2.0):
        return {"deflection_um": load_n * length_mm ** 3 / width_mm, "ratio": length_mm / width_mm}

    def takes_all(**inputs):
        return {"n": float(len(inputs)), "total": float(sum(inputs.values()))}

    def broken(x):
        raise RuntimeError(f"solver diverged at x={x}")

    not_callable = 3
"""


def test_python_per_trial_passes_only_its_parameters(ctx, tmp_path):
    write(tmp_path / "beam.py", BEAM)
    ev = PythonEvaluator(function="beam:evaluate", outputs=["deflection_um"])
    ev.setup(ctx)
    out = ev.evaluate_one({"load_n": 2.0, "length_mm": 3.0, "unrelated": "ignored", "width_mm": 4.0})
    assert out == {"deflection_um": 2.0 * 27.0 / 4.0, "ratio": 0.75}
    # a default of the function is used when the design does not set it
    assert ev.evaluate_one({"load_n": 1.0, "length_mm": 2.0})["deflection_um"] == 4.0
    assert not ev.is_batch
    assert [v.name for v in ev.output_variables()] == ["deflection_um"]


def test_python_var_keyword_function_gets_every_input(ctx, tmp_path):
    write(tmp_path / "beam.py", BEAM)
    ev = PythonEvaluator(function="beam:takes_all")
    ev.setup(ctx)
    assert ev.evaluate_one({"a": 1.0, "b": 2.0, "c": 3.0}) == {"n": 3.0, "total": 6.0}


def test_python_module_in_a_subfolder_and_explicit_file(ctx, tmp_path):
    write(tmp_path / "models" / "plate.py", "def f(x):\n    return {'y': x + 1}\n")
    dotted = PythonEvaluator(function="models.plate:f")
    dotted.setup(ctx)
    assert dotted.evaluate_one({"x": 1.0}) == {"y": 2.0}
    by_file = PythonEvaluator(function="models/plate.py:f")
    by_file.setup(ctx)
    assert by_file.evaluate_one({"x": 2.0}) == {"y": 3.0}


def test_python_function_errors_fail_the_trial(ctx, tmp_path):
    from reflow.evaluation import run_step

    write(tmp_path / "beam.py", BEAM)
    ev = PythonEvaluator(function="beam:broken")
    ev.setup(ctx)
    with pytest.raises(RuntimeError, match="diverged at x=1.5"):
        run_step(ev, {"x": 1.5})


def test_python_declared_output_missing_is_an_error(ctx, tmp_path):
    from reflow.evaluation import run_step

    write(tmp_path / "beam.py", BEAM)
    ev = PythonEvaluator(function="beam:evaluate", outputs=["stress_mpa"])
    ev.setup(ctx)
    with pytest.raises(EvaluationError, match="missing outputs: stress_mpa"):
        run_step(ev, {"load_n": 1.0, "length_mm": 1.0})


def test_python_missing_module_file(ctx):
    ev = PythonEvaluator(function="nowhere:evaluate")
    with pytest.raises(UserInputError) as err:
        ev.setup(ctx)
    assert "nowhere.py" in str(err.value)
    assert "next to the study" in str(err.value)


def test_python_missing_function(ctx, tmp_path):
    write(tmp_path / "beam.py", BEAM)
    with pytest.raises(UserInputError, match="beam.py has no function 'evaluat'"):
        PythonEvaluator(function="beam:evaluat").setup(ctx)


def test_python_name_that_is_not_a_function(ctx, tmp_path):
    write(tmp_path / "beam.py", BEAM)
    with pytest.raises(UserInputError, match="no function 'not_callable'"):
        PythonEvaluator(function="beam:not_callable").setup(ctx)


@pytest.mark.parametrize("bad", ["beam", "beam:", ":evaluate", "beam:not-an-identifier", "beam:1st"])
def test_python_bad_reference_string(bad):
    with pytest.raises(ValueError, match="module:function"):
        PythonEvaluator(function=bad)


def test_python_used_before_setup():
    with pytest.raises(UserInputError, match="before setup"):
        PythonEvaluator(function="beam:evaluate").evaluate_one({})


def test_python_bad_reference_is_a_study_error(write_study):
    path = write_study("""
        study: bad-python
        stages:
          doe:
            task: doe
            design: {lhs: {samples: 2}}
            space:
              x: {low: 0, high: 1}
            evaluate: {python: {function: "beam.evaluate"}}
    """)
    with pytest.raises(StudyError) as err:
        load_study(path)
    msg = str(err.value)
    assert "module:function" in msg
    assert "line " in msg


def test_python_missing_module_fails_the_stage_clearly(write_study, tmp_path):
    path = write_study("""
        study: missing-module
        stages:
          doe:
            task: doe
            design: {lhs: {samples: 2}}
            space:
              x: {low: 0, high: 1}
            evaluate: {python: {function: "absent:evaluate"}}
    """)
    with pytest.raises(UserInputError, match="absent.py"):
        run_study(load_study(path), out=tmp_path / "runs", quiet=True)


# ---- python: batch and per-trial through full studies -------------------------------------------


def test_python_batch_mode_in_a_study(write_study, tmp_path):
    write(tmp_path / "surface.py", """
        from pathlib import Path

        import numpy as np

        def batch(ds):
            with open(Path(__file__).with_name("calls.txt"), "a") as fh:
                fh.write(f"{ds.sizes['trial']}\\n")
            out = ds.copy()
            out["y"] = ds["x"] * 2 + ds["z"]
            out["flag"] = ("trial", np.where(ds["x"] > 0.5, 1.0, 0.0))
            return out
    """)
    path = write_study("""
        study: batch-python
        seed: 3
        stages:
          doe:
            task: doe
            design: {lhs: {samples: 10}}
            space:
              x: {low: 0, high: 1}
              z: {low: 10, high: 20}
            evaluate: {python: {function: "surface:batch", batch: true, outputs: [y], units: {y: mm}}}
            batch_size: 4
    """)
    run = run_study(load_study(path), out=tmp_path / "runs", quiet=True)
    trials = run.output("doe")
    assert trials.sizes["trial"] == 10
    assert set(trials["status"].values.tolist()) == {"ok"}
    np.testing.assert_allclose(trials["y"].values, trials["x"].values * 2 + trials["z"].values)
    assert trials["y"].attrs["units"] == "mm"
    assert (tmp_path / "calls.txt").read_text().split() == ["4", "4", "2"]  # once per batch
    assert run.manifest["stages"]["doe"]["status"] == "done"


BATCH_VARIANTS = """
    import xarray as xr

    def bare(ds):  # a new dataset without the trial coordinate: rows in the order given
        return xr.Dataset({"y": ("trial", ds["x"].values * 2)})

    def short(ds):
        return xr.Dataset({"y": ("trial", ds["x"].values[:-1] * 2)})

    def as_dict(ds):
        return {"y": ds["x"].values * 2}
"""


def _batch_study(write_study, function: str) -> str:
    return write_study(f"""
        study: batch-variants
        stages:
          doe:
            task: doe
            design: {{lhs: {{samples: 10}}}}
            space:
              x: {{low: 0, high: 1}}
            evaluate: {{python: {{function: "variants:{function}", batch: true, outputs: [y]}}}}
            batch_size: 4
    """)


def test_python_batch_result_without_trial_coordinate(write_study, tmp_path):
    """Rows of a coordinate-less result belong to the batch's trials in order, in every batch."""
    write(tmp_path / "variants.py", BATCH_VARIANTS)
    run = run_study(load_study(_batch_study(write_study, "bare")), out=tmp_path / "runs", quiet=True)
    trials = run.output("doe")
    assert trials["status"].values.tolist() == ["ok"] * 10, trials["error"].values
    np.testing.assert_allclose(trials["y"].values, 2 * trials["x"].values)


@pytest.mark.parametrize(("function", "message"), [("short", "3 rows on dim 'trial' for 4 trials"),
                                                    ("as_dict", "must return an xarray.Dataset, got dict")])
def test_python_batch_result_malformed(write_study, tmp_path, function, message):
    write(tmp_path / "variants.py", BATCH_VARIANTS)
    with pytest.raises(ReflowError) as err:  # every trial failed: the stage fails and says why (issue 17)
        run_study(load_study(_batch_study(write_study, function)), out=tmp_path / "runs", quiet=True)
    assert "all 10 evaluations failed" in str(err.value) and message in str(err.value)


def test_python_per_trial_in_a_pipeline_study(write_study, tmp_path):
    """A per-trial function after bilayer-warpage gets the upstream outputs it names, and may fail a trial."""
    write(tmp_path / "post.py", """
        def score(warpage_um, die_thickness_mm):
            if die_thickness_mm > 0.7:
                raise ValueError("die too thick for this package")
            return {"score": warpage_um / die_thickness_mm}
    """)
    path = write_study("""
        study: pipeline-python
        stages:
          doe:
            task: doe
            design: {full-factorial: {levels: 4}}
            space:
              die_thickness_mm: {low: 0.1, high: 0.8}
            evaluate: [bilayer-warpage, {python: {function: "post:score", outputs: [score]}}]
    """)
    run = run_study(load_study(path), out=tmp_path / "runs", quiet=True)
    trials = run.output("doe")
    thick = trials["die_thickness_mm"].values
    status = trials["status"].values
    assert status.tolist() == ["ok", "ok", "ok", "failed"]
    ok = status == "ok"
    np.testing.assert_allclose(trials["score"].values[ok], trials["warpage_um"].values[ok] / thick[ok])
    assert "die too thick" in str(trials["error"].values[3])
    assert np.isnan(trials["score"].values[3])


def test_python_per_trial_in_worker_processes(write_study, tmp_path):
    """With ``workers: 2`` each worker process imports the user's module from its file by itself."""
    write(tmp_path / "beam.py", """
        import os

        def evaluate(x):
            return {"y": 2 * x, "pid": float(os.getpid())}
    """)
    path = write_study("""
        study: python-workers
        executor: {local: {workers: 2}}
        stages:
          doe:
            task: doe
            design: {lhs: {samples: 6}}
            space:
              x: {low: 0, high: 1}
            evaluate: {python: {function: "beam:evaluate"}}
    """)
    run = run_study(load_study(path), out=tmp_path / "runs", quiet=True)
    trials = run.output("doe")
    assert trials["status"].values.tolist() == ["ok"] * 6, trials["error"].values
    np.testing.assert_allclose(trials["y"].values, 2 * trials["x"].values)
    assert os.getpid() not in set(trials["pid"].values.astype(int).tolist())


# ---- command ------------------------------------------------------------------------------------

SIM = """
    import json
    import os
    import sys

    inputs_path, outputs_path = sys.argv[1], sys.argv[2]
    x = json.load(open(inputs_path))
    if x.get("fail"):
        sys.stderr.write("preamble " * 200 + "FATAL: mesh did not converge\\n")
        sys.exit(3)
    json.dump({"y": x["a"] * 10 + x["b"], "cwd": os.getcwd(), "study": os.environ["REFLOW_STUDY_DIR"],
               "extra": os.environ.get("EXTRA", "")}, open(outputs_path, "w"))
"""


def test_command_runs_a_script_and_reads_outputs(ctx, tmp_path):
    script = write(tmp_path / "sim.py", SIM)
    ev = CommandEvaluator(argv=[sys.executable, str(script), "{inputs}", "{outputs}"], outputs=["y"],
                          env={"EXTRA": "yes"})
    ev.setup(ctx)
    out = ev.evaluate_one({"a": 1.5, "b": 2.0})
    assert out["y"] == 17.0
    assert out["study"] == str(tmp_path)
    assert out["extra"] == "yes"
    work = out["cwd"]
    assert os.path.basename(work).startswith("trial-")  # ran in its own fresh folder...
    assert not os.path.exists(work)  # ...removed afterwards
    assert [v.name for v in ev.output_variables()] == ["y"]


def test_command_script_next_to_the_study(ctx, tmp_path):
    """The README's form: a script named relative to the study, run in the trial's own folder."""
    write(tmp_path / "sim.py", SIM)
    ev = CommandEvaluator(argv=[sys.executable, "sim.py", "{inputs}", "{outputs}"])
    ev.setup(ctx)
    assert ev.evaluate_one({"a": 1.0, "b": 0.0})["y"] == 10.0


def test_command_substitutes_inputs_outputs_and_workdir(ctx, tmp_path):
    script = write(tmp_path / "echo_args.py", """
        import json
        import sys

        inputs, outputs, workdir = sys.argv[1:4]
        json.dump({"argv": sys.argv[1:], "inputs": json.load(open(inputs))}, open(outputs, "w"))
    """)
    ev = CommandEvaluator(argv=[sys.executable, str(script), "{inputs}", "{outputs}", "{workdir}", "literal"])
    ev.setup(ctx)
    out = ev.evaluate_one({"a": 1, "name": "UF-A"})
    inputs, outputs, workdir, literal = out["argv"]
    assert inputs == os.path.join(workdir, "inputs.json")
    assert outputs == os.path.join(workdir, "outputs.json")
    assert literal == "literal"
    assert out["inputs"] == {"a": 1, "name": "UF-A"}


def test_command_nonzero_exit_reports_stderr_tail(ctx, tmp_path):
    script = write(tmp_path / "sim.py", SIM)
    ev = CommandEvaluator(argv=[sys.executable, str(script), "{inputs}", "{outputs}"])
    ev.setup(ctx)
    with pytest.raises(EvaluationError) as err:
        ev.evaluate_one({"a": 1.0, "b": 2.0, "fail": True})
    msg = str(err.value)
    assert "exited with code 3" in msg
    assert "FATAL: mesh did not converge" in msg
    assert len(msg) < 700  # only the tail of a long stderr


def test_command_timeout_kills_the_program(ctx, tmp_path):
    marker = tmp_path / "finished.txt"
    script = write(tmp_path / "slow.py", f"""
        import time

        time.sleep(2)
        open({str(marker)!r}, "w").write("not killed")
    """)
    ev = CommandEvaluator(argv=[sys.executable, str(script)], timeout=0.3)
    ev.setup(ctx)
    t0 = time.monotonic()
    with pytest.raises(EvaluationError, match=r"timed out after 0.3 s and was killed"):
        ev.evaluate_one({})
    assert time.monotonic() - t0 < 1.8
    time.sleep(max(0.0, 2.5 - (time.monotonic() - t0)))
    assert not marker.exists()


def test_command_timeout_kills_child_processes_too(ctx, tmp_path):
    """Solver wrappers start the solver as a child; the timeout must not wait for it."""
    marker = tmp_path / "child_finished.txt"
    child = write(tmp_path / "child.py", f"""
        import time

        time.sleep(2)
        open({str(marker)!r}, "w").write("child survived")
    """)
    script = write(tmp_path / "wrapper.py", f"""
        import subprocess
        import sys
        import time

        subprocess.Popen([sys.executable, {str(child)!r}])
        time.sleep(30)
    """)
    ev = CommandEvaluator(argv=[sys.executable, str(script)], timeout=0.6)
    ev.setup(ctx)
    t0 = time.monotonic()
    with pytest.raises(EvaluationError, match="timed out"):
        ev.evaluate_one({})
    assert time.monotonic() - t0 < 1.8
    time.sleep(max(0.0, 2.6 - (time.monotonic() - t0)))
    assert not marker.exists()


def test_command_missing_outputs_file(ctx, tmp_path):
    script = write(tmp_path / "quiet.py", "print('done')\n")
    ev = CommandEvaluator(argv=[sys.executable, str(script)])
    ev.setup(ctx)
    with pytest.raises(EvaluationError, match="wrote no outputs.json"):
        ev.evaluate_one({})


@pytest.mark.parametrize(("content", "match"), [("{not json", "not valid JSON"),
                                                 ("[1, 2]", "JSON object")])
def test_command_malformed_outputs(ctx, tmp_path, content, match):
    script = write(tmp_path / "bad.py", f"""
        import sys

        open(sys.argv[1], "w").write({content!r})
    """)
    ev = CommandEvaluator(argv=[sys.executable, str(script), "{outputs}"])
    ev.setup(ctx)
    with pytest.raises(EvaluationError, match=match):
        ev.evaluate_one({})


def test_command_keep_leaves_trial_folders(ctx, tmp_path):
    script = write(tmp_path / "sim.py", SIM)
    ev = CommandEvaluator(argv=[sys.executable, str(script), "{inputs}", "{outputs}"], keep=True)
    ev.setup(ctx)
    out = ev.evaluate_one({"a": 1.0, "b": 1.0})
    kept = ctx.folder / "evaluations"
    folders = list(kept.iterdir())
    assert len(folders) == 1 and str(folders[0]) == out["cwd"]
    assert json.loads((folders[0] / "inputs.json").read_text()) == {"a": 1.0, "b": 1.0}
    assert json.loads((folders[0] / "outputs.json").read_text())["y"] == 11.0


def test_command_program_not_on_path(ctx):
    with pytest.raises(UserInputError, match="not on PATH"):
        CommandEvaluator(argv=["no-such-program-xyz", "{inputs}"]).setup(ctx)


def test_command_program_path_not_found(ctx):
    with pytest.raises(UserInputError, match=r"program not found: .*bin/solve"):
        CommandEvaluator(argv=["./bin/solve", "{inputs}"]).setup(ctx)


def test_command_params_validated():
    with pytest.raises(ValueError, match="argv needs at least the program"):
        CommandEvaluator(argv=[])
    with pytest.raises(ValueError):
        CommandEvaluator(argv=["x"], timeout=0)


def test_command_in_a_study_failures_do_not_stop_it(write_study, tmp_path):
    write(tmp_path / "sim.py", """
        import json
        import sys

        x = json.load(open(sys.argv[1]))
        if x["a"] > 0.75:
            sys.exit("a too large: " + str(x["a"]))
        json.dump({"y": x["a"] * 10 + x["b"]}, open(sys.argv[2], "w"))
    """)
    path = write_study(f"""
        study: command-doe
        stages:
          doe:
            task: doe
            design: {{full-factorial: {{levels: 5}}}}
            space:
              a: {{low: 0, high: 1}}
              b: {{value: 2}}
            evaluate: {{command: {{argv: [{sys.executable!r}, sim.py, "{{inputs}}", "{{outputs}}"],
                                   outputs: [y], timeout: 60}}}}
    """)
    run = run_study(load_study(path), out=tmp_path / "runs", quiet=True)
    trials = run.output("doe")
    assert trials["status"].values.tolist() == ["ok"] * 4 + ["failed"]
    np.testing.assert_allclose(trials["y"].values[:4], [2.0, 4.5, 7.0, 9.5])
    assert "a too large: 1.0" in str(trials["error"].values[4])
    assert run.manifest["stages"]["doe"]["metrics"]["failed"] == 1


def test_python_batch_without_declared_outputs_keeps_inputs_as_parameters(write_study, tmp_path):
    from reflow.runner import run_study
    from reflow.study import load_study

    (tmp_path / "echo.py").write_text(
        "def batch(ds):\n"
        "    out = ds.copy()\n"
        "    out['y'] = ds['x'] * 3.0\n"
        "    return out\n"
    )
    study = write_study("""
        study: echo
        stages:
          d:
            task: doe
            design: {lhs: {samples: 4}}
            space: {x: {low: 0, high: 1}}
            evaluate: {python: {function: "echo:batch", batch: true}}
    """)
    run = run_study(load_study(study), out=tmp_path / "runs", quiet=True)
    trials = run.result("d").outputs["trials"]
    assert trials["x"].attrs["role"] == "parameter"  # the echoed input is not taken for an output
    assert trials["y"].attrs["role"] == "metric"
    assert (trials["y"].values == 3.0 * trials["x"].values).all()


# ---- paths relative to the study, and imports next to the module ---------------------------------


@pytest.fixture
def nested_ctx(tmp_path):
    """A study in tmp_path/studies/beam with shared code in tmp_path/shared (``../../shared`` from it)."""
    study_dir = tmp_path / "studies" / "beam"
    folder = study_dir / "run" / "s"
    folder.mkdir(parents=True)
    return RunContext(run=None, stage="s", seed=1, device="cpu", folder=folder, study_dir=study_dir, quiet=True)


@pytest.mark.parametrize("reference", ["../shared/model:evaluate", "../shared/model.py:evaluate",
                                       "./../shared/model:evaluate"])
def test_python_module_path_with_dot_dot(reference, tmp_path):
    """``../shared/model`` is a path relative to the study (its dots are not turned into slashes)."""
    study_dir = tmp_path / "study"
    study_dir.mkdir()
    write(tmp_path / "shared" / "model.py", "def evaluate(x):\n    return {'y': 3 * x}\n")
    ctx = RunContext(run=None, stage="s", seed=1, device="cpu", folder=study_dir, study_dir=study_dir, quiet=True)
    ev = PythonEvaluator(function=reference)
    ev.setup(ctx)
    assert ev._module_path == str(tmp_path / "shared" / "model.py")
    assert ev.evaluate_one({"x": 2.0}) == {"y": 6.0}


def test_python_missing_module_shows_the_resolved_path(nested_ctx, tmp_path):
    with pytest.raises(UserInputError) as err:
        PythonEvaluator(function="../../lib/absent:evaluate").setup(nested_ctx)
    assert f"module file not found: {tmp_path / 'lib' / 'absent.py'}" in str(err.value)
    assert str(tmp_path / "studies" / "beam") in str(err.value)


def test_python_module_imports_a_helper_next_to_it_and_next_to_the_study(nested_ctx, tmp_path):
    """``import helper`` works for a helper beside the module and one beside the study, at load and call
    time, and the folders are off ``sys.path`` again afterwards."""
    write(tmp_path / "shared" / "mathhelp_r17.py", "def triple(x):\n    return 3 * x\n")
    write(nested_ctx.study_dir / "units_r17.py", "SCALE = 10.0\n")
    write(tmp_path / "shared" / "model.py", """
        import mathhelp_r17

        def evaluate(x):
            import units_r17  # imported while the function runs

            return {"y": mathhelp_r17.triple(x) * units_r17.SCALE}
    """)
    before = list(sys.path)
    try:
        ev = PythonEvaluator(function="../../shared/model:evaluate")
        ev.setup(nested_ctx)
        assert ev.evaluate_one({"x": 2.0}) == {"y": 60.0}
        assert sys.path == before
    finally:
        for name in ("mathhelp_r17", "units_r17"):
            sys.modules.pop(name, None)


def test_python_error_while_importing_the_module_is_a_clean_error(ctx, tmp_path):
    write(tmp_path / "needs.py", "import no_such_helper_r17\n\ndef f(x):\n    return {'y': x}\n")
    with pytest.raises(UserInputError) as err:
        PythonEvaluator(function="needs:f").setup(ctx)
    msg = str(err.value)
    assert "importing" in msg and "No module named 'no_such_helper_r17'" in msg
    assert "needs.py, line 1" in msg
    assert str(tmp_path) not in sys.path


def test_python_helper_import_in_worker_processes(write_study, tmp_path):
    """Process-pool workers load the module themselves: its helper import works there too."""
    write(tmp_path / "code" / "beamhelp_r17.py", "def double(x):\n    return 2 * x\n")
    write(tmp_path / "code" / "beam.py", """
        import os

        import beamhelp_r17

        def evaluate(x):
            return {"y": beamhelp_r17.double(x), "pid": float(os.getpid())}
    """)
    path = write_study("""
        study: python-helper-workers
        executor: {local: {workers: 2}}
        stages:
          doe:
            task: doe
            design: {lhs: {samples: 4}}
            space:
              x: {low: 0, high: 1}
            evaluate: {python: {function: "code/beam:evaluate"}}
    """)
    try:
        run = run_study(load_study(path), out=tmp_path / "runs", quiet=True)
    finally:
        sys.modules.pop("beamhelp_r17", None)
    trials = run.output("doe")
    assert trials["status"].values.tolist() == ["ok"] * 4, trials["error"].values
    np.testing.assert_allclose(trials["y"].values, 2 * trials["x"].values)
    assert os.getpid() not in set(trials["pid"].values.astype(int).tolist())


def test_command_program_relative_to_the_study_from_another_folder(nested_ctx, tmp_path, monkeypatch):
    """A program path like ``../../bin/sim.py`` is resolved against the study's folder, not the working
    directory, and the message of a missing one shows the resolved path."""
    write(tmp_path / "bin" / "sim.py", "#!" + sys.executable + "\n" + textwrap.dedent(SIM))
    (tmp_path / "bin" / "sim.py").chmod(0o755)
    monkeypatch.chdir(tmp_path / "bin")  # a working directory where the relative path means something else
    ev = CommandEvaluator(argv=["../../bin/sim.py", "{inputs}", "{outputs}"])
    ev.setup(nested_ctx)
    assert ev.evaluate_one({"a": 2.0, "b": 1.0})["y"] == 21.0
    with pytest.raises(UserInputError) as err:
        CommandEvaluator(argv=["../../bin/absent", "{inputs}"]).setup(nested_ctx)
    assert f"program not found: {tmp_path / 'bin' / 'absent'}" in str(err.value)

"""The CLI end to end, in subprocesses: run, show, report, validate, plugins, --set, --help."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from _cli import run_cli
from reflow.store import read_dataset, read_manifest
from reflow.study import load_study

REPO = Path(__file__).resolve().parents[2]
QUICKSTART = REPO / "studies" / "quickstart.yaml"


reflow = run_cli  # these tests run reflow as a real process: exit codes, stderr, start-up


def only_run(out: Path, study: str) -> Path:
    runs = list((out / study).iterdir())
    assert len(runs) == 1, runs
    return runs[0]


def assert_clean_user_error(res: subprocess.CompletedProcess) -> None:
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    assert "Traceback" not in res.stderr + res.stdout
    assert "error:" in res.stderr


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory) -> Path:
    """The quickstart run once through the CLI, shared by the tests that read its run folder."""
    out = tmp_path_factory.mktemp("quickstart") / "runs"
    res = reflow("run", QUICKSTART, "--out", out, "-q", cwd=out.parent)
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr
    assert res.stderr == "", "--quiet prints nothing on success"
    return only_run(out, "quickstart")


def test_quickstart_run_folder(quickstart):
    run_dir = quickstart
    assert re.fullmatch(r"\d{8}-\d{6}-[0-9a-f]{6}", run_dir.name)
    for name in ("study.resolved.yaml", "manifest.json", "run.log", "report.html"):
        assert (run_dir / name).is_file(), name
    stage = run_dir / "warpage"
    for name in ("trials.nc", "design.nc", "metrics.json", "trials.jsonl", "warpage_um_factors.png",
                 "die_interface_stress_mpa_factors.png"):
        assert (stage / name).is_file(), name
    assert not list(run_dir.rglob("*.tmp")), "a temporary file was left behind"

    trials = read_dataset(stage / "trials.nc")
    assert trials.sizes["trial"] == 32
    assert set(trials["status"].values.tolist()) == {"ok"}
    assert (trials["warpage_um"].values > 0).all()
    assert trials["die_thickness_mm"].attrs["units"] == "mm"
    metrics = json.loads((stage / "metrics.json").read_text())
    assert (metrics["trials"], metrics["ok"], metrics["failed"]) == (32, 32, 0)
    assert "stage warpage" in (run_dir / "run.log").read_text()


def test_quickstart_manifest(quickstart):
    from reflow.device import resolve_device

    manifest = read_manifest(quickstart)
    assert manifest["study"] == "quickstart"
    assert manifest["status"] == "done"
    assert manifest["seed"] == 7
    assert manifest["device_requested"] == "auto"
    # no stage of the quickstart reads ctx.device, so "auto" is resolved only if torch was imported already
    assert manifest["device"] in ("auto", resolve_device("auto"))
    versions = manifest["versions"]
    for pkg in ("python", "reflow", "numpy", "xarray", "pydantic", "pluggy"):
        assert versions.get(pkg), pkg
    assert manifest["git_sha"] is None or re.fullmatch(r"[0-9a-f]{40}", manifest["git_sha"])
    assert {"doe", "lhs", "bilayer-warpage"} <= set(manifest["plugins"])
    assert manifest["plugins"]["bilayer-warpage"]["kind"] == "evaluator"
    assert manifest["study_file"] == str(QUICKSTART)
    stage = manifest["stages"]["warpage"]
    assert stage["status"] == "done" and stage["task"] == "doe"
    assert isinstance(stage["seconds"], float) and stage["seconds"] > 0
    assert isinstance(stage["seed"], int)
    assert stage["outputs"] == ["trials", "design"]
    assert stage["metrics"]["ok"] == 32
    assert sorted(stage["plots"]) == ["die_interface_stress_mpa_factors.png", "warpage_um_factors.png"]


def test_resolved_study_revalidates(quickstart):
    study = load_study(quickstart / "study.resolved.yaml")
    original = load_study(QUICKSTART)
    assert study.name == original.name == "quickstart"
    assert study.seed == 7
    assert list(study.stages) == ["warpage"]
    assert study.resolved() == original.resolved()
    res = reflow("validate", quickstart / "study.resolved.yaml")
    assert res.returncode == 0, res.stderr
    assert "valid study 'quickstart'" in res.stdout


def test_show(quickstart):
    res = reflow("show", quickstart)
    assert res.returncode == 0, res.stderr
    assert "warpage" in res.stdout and "doe" in res.stdout and "done" in res.stdout
    assert "trials=32" in res.stdout and "ok=32" in res.stdout
    inside = reflow("show", ".", cwd=quickstart)  # the run id, not an empty name
    assert inside.returncode == 0, inside.stderr
    assert f"quickstart · {quickstart.name} · done" in inside.stdout


def test_report_rebuilds_page_and_plots(quickstart, tmp_path):
    run_dir = tmp_path / quickstart.name
    shutil.copytree(quickstart, run_dir)  # leave the shared run folder as it was
    (run_dir / "report.html").unlink()
    for png in (run_dir / "warpage").glob("*.png"):
        png.unlink()
    res = reflow("report", run_dir)
    assert res.returncode == 0, res.stderr
    assert Path(res.stdout.strip()) == run_dir / "report.html"
    assert sorted(p.name for p in (run_dir / "warpage").glob("*.png")) == [
        "die_interface_stress_mpa_factors.png", "warpage_um_factors.png"]
    page = (run_dir / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 2
    assert "stage-warpage" in page and "<h1>quickstart</h1>" in page
    assert "<img" in page and 'src="warpage' not in page, "images must be embedded, not linked"


def test_show_and_report_on_a_missing_folder(tmp_path):
    for cmd in ("show", "report"):
        res = reflow(cmd, tmp_path / "nowhere")
        assert_clean_user_error(res)
        assert "not a run folder" in res.stderr


def test_set_overrides_reach_the_run(tmp_path):
    out = tmp_path / "runs"
    res = reflow("run", QUICKSTART, "--out", out, "-q", "--set", "stages.warpage.design.lhs.samples=5",
                 "--set", "seed=11", "--device", "cpu")
    assert res.returncode == 0, res.stderr
    run_dir = only_run(out, "quickstart")
    trials = read_dataset(run_dir / "warpage" / "trials.nc")
    assert trials.sizes["trial"] == 5
    manifest = read_manifest(run_dir)
    assert manifest["seed"] == 11
    assert manifest["device"] == manifest["device_requested"] == "cpu"
    resolved = load_study(run_dir / "study.resolved.yaml")
    assert resolved.seed == 11
    assert resolved.resolved()["stages"]["warpage"]["design"]["lhs"]["samples"] == 5


def test_bad_override_is_a_user_error(tmp_path):
    res = reflow("run", QUICKSTART, "--out", tmp_path / "runs", "-q",
                 "--set", "stages.warpage.design.lhs.sample=5")
    assert_clean_user_error(res)
    assert "sample" in res.stderr and "did you mean 'samples'" in res.stderr
    assert not (tmp_path / "runs").exists(), "no run folder for a study that does not validate"


BAD_STUDY = """\
study: broken
seeed: 3
stages:
  doe:
    task: doe
    design: {lhss: {samples: 10}}
    space:
      die_thickness_mm: {low: 0.8, high: 0.1}
      length_mm: {low: 5, high: 20}
    evaluate: bilayer-warpage
  post:
    task: evaluate
    data: nowhere
    evaluate: bilayer-warpge
"""


def _line(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def test_validate_lists_every_mistake_with_its_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(BAD_STUDY)
    res = reflow("validate", path)
    assert_clean_user_error(res)
    err = res.stderr
    assert "5 problems" in err
    expected = [
        ("seeed:", ["'seeed'", "did you mean 'seed'"]),
        ("lhss", ["'lhss'", "did you mean 'lhs'"]),
        ("die_thickness_mm", ["low", "high"]),
        ("data: nowhere", ["'nowhere'"]),
        ("bilayer-warpge", ["'bilayer-warpge'", "did you mean 'bilayer-warpage'"]),
    ]
    lines = err.splitlines()
    for needle, words in expected:
        line_no = _line(BAD_STUDY, needle)
        hits = [ln for ln in lines if f"line {line_no}:" in ln]
        assert hits, f"no problem reported at line {line_no} ({needle}):\n{err}"
        for word in words:
            assert any(word in h for h in hits), f"{word!r} not in {hits}"
    # run refuses the same study the same way, before creating anything
    res = reflow("run", path, "--out", tmp_path / "runs", "-q")
    assert_clean_user_error(res)
    assert "5 problems" in res.stderr
    assert not (tmp_path / "runs").exists()


def test_broken_yaml_is_a_user_error(tmp_path):
    path = tmp_path / "torn.yaml"
    path.write_text("study: x\nstages:\n  a: {task: doe\n")
    res = reflow("validate", path)
    assert_clean_user_error(res)
    assert "line" in res.stderr


def test_missing_study_file(tmp_path):
    res = reflow("run", tmp_path / "no-such-study.yaml", "--out", tmp_path / "runs")
    assert_clean_user_error(res)
    assert "no-such-study.yaml" in res.stderr
    res = reflow("validate", tmp_path / "no-such-study.yaml")
    assert_clean_user_error(res)


def test_run_argument_mistakes(tmp_path):
    assert_clean_user_error(reflow("run", "--out", tmp_path))  # neither a study nor --resume
    res = reflow("run", QUICKSTART, "--resume", tmp_path)
    assert_clean_user_error(res)
    assert "--resume" in res.stderr


def test_plugins_lists_components():
    res = reflow("plugins")
    assert res.returncode == 0, res.stderr
    names = {line.split("│")[1].strip() for line in res.stdout.splitlines() if line.count("│") > 2}
    assert {"bilayer-warpage", "python", "command", "lhs", "sobol", "full-factorial", "doe", "data", "evaluate",
            "csv"} <= names
    row = next(line for line in res.stdout.splitlines() if "│ lhs " in line)
    assert "optimizer" in row and "reflow.optimize" in row


def test_plugins_show_params_with_defaults():
    res = reflow("plugins", "show", "lhs")
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "Latin hypercube" in out
    rows = {line.split("│")[1].strip(): line for line in out.splitlines() if line.count("│") > 3}
    assert {"samples", "optimization", "scramble"} <= set(rows)
    assert "int" in rows["samples"] and "16" in rows["samples"]
    assert "true" in rows["scramble"]  # defaults read as YAML, as in the YAML reference
    res = reflow("plugins", "show", "bilayer-warpage")
    assert res.returncode == 0, res.stderr
    assert "die_thickness_mm" in res.stdout and "warpage_um" in res.stdout


def test_plugins_show_unknown_name():
    res = reflow("plugins", "show", "lhss")
    assert_clean_user_error(res)
    assert "did you mean 'lhs'" in res.stderr


def test_help():
    res = reflow("--help")
    assert res.returncode == 0, res.stderr
    for cmd in ("run", "validate", "plugins", "show", "report"):
        assert re.search(rf"│ {cmd}\b", res.stdout), cmd
    res = reflow("run", "--help")
    assert res.returncode == 0
    for opt in ("--set", "--out", "--device", "--resume", "--quiet"):
        assert opt in res.stdout

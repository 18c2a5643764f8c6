"""Stage values: ``${stage.output.variable:stat}`` and ``${stage.metric}`` carry results into later stages."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest
from reflow import stagevalues
from reflow.errors import DataError, StudyError
from reflow.runner import execute, start_run
from reflow.store import read_dataset
from reflow.study import load_study

VOIDS = [0.02, 0.05, 0.08, 0.11, 0.30, 0.04, 0.06, float("nan")]

STUDY = """
study: stage-values
seed: 1
stages:
  lot:
    task: data
    source: {csv: {path: lot.csv, allow_missing: true}}
  life:
    task: doe
    design: {lhs: {samples: 4}}
    space:
      shear_strain_range: {low: 0.005, high: 0.02}
      void_fraction: {value: "VOID"}
    evaluate: {engelmaier: {fatigue_ductility: "DUCTILITY"}}
"""


def write(tmp_path, void="${lot.void_fraction:p95}", ductility="${lot.ductility:mean}", ductilities=None):
    ductilities = ductilities or [0.3, 0.35] * 4
    rows = "\n".join(f"{v},{d}" for v, d in zip(VOIDS, ductilities, strict=True))
    (tmp_path / "lot.csv").write_text("void_fraction,ductility\n" + rows.replace("nan", "") + "\n")
    path = tmp_path / "study.yaml"
    path.write_text(textwrap.dedent(STUDY).replace("VOID", void).replace("DUCTILITY", ductility))
    return path


def test_parse_the_three_forms():
    assert stagevalues.parse("${life.b10_cycles}").metric == "b10_cycles"
    ref = stagevalues.parse("${inspect.predictions.void_fraction_mean:p95}")
    assert (ref.stage, ref.output, ref.variable, ref.stat) == ("inspect", "predictions", "void_fraction_mean", "p95")
    ref = stagevalues.parse("${ lot.void_fraction : median }")
    assert (ref.stage, ref.output, ref.variable, ref.stat) == ("lot", None, "void_fraction", "median")


@pytest.mark.parametrize("text, message", [
    ("${lot}", "cannot read the stage value"),
    ("${lot.a.b}", "a variable needs a statistic"),
    ("${lot.a:p101}", "unknown statistic 'p101'"),
    ("${lot.a:average}", "unknown statistic 'average'"),
    ("${lot.a:mean} + 1", "cannot read"),
])
def test_malformed_references_say_what_is_allowed(text, message):
    with pytest.raises(ValueError, match=message):
        stagevalues.parse(text)


def test_statistics_leave_out_nan():
    v = np.array([1.0, 2.0, 3.0, np.nan, 10.0])
    assert stagevalues.statistic(v, "mean") == 4.0
    assert stagevalues.statistic(v, "p50") == 2.5
    assert stagevalues.statistic(v, "count") == 4.0
    assert stagevalues.statistic(v, "max") == 10.0


def test_numbers_flow_into_a_fixed_space_value_and_a_component_param(tmp_path):
    study = load_study(write(tmp_path))
    assert study.stages["life"].depends_on == ["lot"]
    run = execute(start_run(study, tmp_path / "runs", quiet=True))
    trials = read_dataset(run.dir / "life" / "trials.nc")
    p95 = float(np.nanpercentile(VOIDS, 95))
    assert np.allclose(trials["void_fraction"].values, p95)
    recorded = json.loads((run.dir / "life" / "stage_values.json").read_text())
    assert recorded == {"${lot.void_fraction:p95}": pytest.approx(p95), "${lot.ductility:mean}": pytest.approx(0.325)}
    # Engelmaier with eps_f' = 0.325 and the voided strain: N_f = 0.5 (strain / (2 eps_f')) ^ (1/c)
    strain = trials["shear_strain_range"].values / (1 - p95)
    c = trials["fatigue_exponent"].values
    assert np.allclose(trials["cycles_to_failure"].values, 0.5 * (strain / (2 * 0.325)) ** (1 / c), rtol=1e-9)


def test_a_missing_stage_or_output_is_found_at_validation(tmp_path):
    with pytest.raises(StudyError) as err:
        load_study(write(tmp_path, void="${lto.void_fraction:p95}", ductility="${lot.trials.ductility:mean}"))
    text = str(err.value)
    assert "no stage named 'lto'; did you mean 'lot'?" in text
    assert "stage 'lot' has no output 'trials'" in text


def test_a_missing_variable_fails_the_stage_and_names_what_exists(tmp_path):
    run = start_run(load_study(write(tmp_path, void="${lot.voids:p95}")), tmp_path / "runs", quiet=True)
    with pytest.raises(DataError, match=r"has no variable 'voids' \(it has: void_fraction, ductility\)"):
        execute(run)
    manifest = json.loads((run.dir / "manifest.json").read_text())
    assert manifest["stages"]["lot"]["status"] == "done" and manifest["stages"]["life"]["status"] == "failed"


def test_a_number_the_component_rejects_names_the_field_and_the_value(tmp_path):
    path = write(tmp_path, ductilities=[-0.3, -0.35] * 4)
    run = start_run(load_study(path), tmp_path / "runs", quiet=True)
    with pytest.raises(StudyError) as err:
        execute(run)
    text = str(err.value)
    assert "stages.life.evaluate[0].engelmaier.fatigue_ductility" in text and "greater than 0" in text
    assert "${lot.ductility:mean} = -0.325" in text


def test_a_metric_of_an_earlier_stage(tmp_path):
    path = write(tmp_path, void="${first.failed}")  # 0 failures: a void fraction every trial accepts
    first = ("  first:\n    task: doe\n    design: {lhs: {samples: 3}}\n"
             "    space: {shear_strain_range: {low: 0.005, high: 0.02}}\n    evaluate: engelmaier\n")
    path.write_text(path.read_text().replace("stages:\n", "stages:\n" + first, 1))
    run = execute(start_run(load_study(path), tmp_path / "runs", quiet=True))
    metrics = json.loads((run.dir / "first" / "metrics.json").read_text())
    trials = read_dataset(run.dir / "life" / "trials.nc")
    assert metrics["ok"] == 3 and metrics["failed"] == 0
    assert np.allclose(trials["void_fraction"].values, 0.0)
    assert (trials["status"].values == "ok").all()


def test_the_numbers_used_are_read_back_and_a_damaged_record_reads_as_none(tmp_path):
    stagevalues.write_used(tmp_path, {"${lot.ductility:mean}": 0.325})
    assert stagevalues.read_used(tmp_path) == {"${lot.ductility:mean}": 0.325}
    (tmp_path / stagevalues.STAGE_VALUES).write_text('{"${lot.ductility:mean}": 0.3')  # cut short
    assert stagevalues.read_used(tmp_path) == {}
    assert stagevalues.read_used(tmp_path / "no-such-stage") == {}

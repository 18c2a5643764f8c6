"""Lab ask/tell through the CLI: experiments out as CSV with units, measurements back in, checked first.

A run of the study below stops at stage ``lab`` (exit 0, "waiting"); it is made once per module and each
test works on its own copy of the run folder. Every CLI call is a separate ``CliRunner`` invocation that
knows only the run folder and the CSV, as a user coming back days later would; one ``tell`` runs in a
subprocess to show that nothing is kept in memory between the commands.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import textwrap
from pathlib import Path

import numpy as np
import pytest
from _cli import REFLOW, cli, process_env
from reflow.store import RunLock, TrialJournal, read_dataset, read_manifest

STUDY = """
study: epoxy-lab
seed: 3
stages:
  sim:
    task: doe
    design: {lhs: {samples: 2}}
    space:
      die_thickness_mm: {low: 0.1, high: 0.8}
    evaluate: bilayer-warpage
  lab:
    task: optimize
    space:
      cure_temperature_c: {low: 120, high: 180, units: degC}
      cure_time_min: {low: 30, high: 120, type: int, units: min}
      hardener: {choices: [amine, anhydride]}
      layers: {choices: [2, 4, 8]}
      atmosphere: {value: N2}
      pressure_bar: {value: 2, units: bar}
    evaluate: {lab: {outputs: {tg_c: degC, strength_mpa: MPa}}}
    optimizer: {qlognei: {num_restarts: 2, raw_samples: 32, mc_samples: 32}}
    objectives: {tg_c: max}
    constraints: [strength_mpa >= 50]
    budget: {initial: 3, evaluations: 5}
  opt:
    task: optimize
    space:
      die_thickness_mm: {low: 0.1, high: 0.8}
    evaluate: bilayer-warpage
    optimizer: sobol
    objectives: {warpage_um: min}
    budget: {initial: 2, evaluations: 2}
"""

HEADER = ["trial", "cure_temperature_c [degC]", "cure_time_min [min]", "hardener", "layers", "atmosphere",
          "pressure_bar [bar]", "tg_c [degC]", "strength_mpa [MPa]", "error"]


def measure(row: dict[str, str]) -> dict[str, str]:
    """The 'lab': Tg and strength from the recipe."""
    t, minutes = float(row["cure_temperature_c [degC]"]), float(row["cure_time_min [min]"])
    tg = 100 + 0.5 * (t - 120) + 0.1 * minutes + (10 if row["hardener"] == "anhydride" else 0)
    strength = 40 + 0.3 * minutes - float(row["layers"])
    return {**row, "tg_c [degC]": repr(tg), "strength_mpa [MPa]": repr(strength)}


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        return list(reader.fieldnames or []), list(reader)


def write_csv(path: Path, header: list[str], rows: list[dict[str, str]]) -> Path:
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=header, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture(scope="module")
def waiting_run(tmp_path_factory) -> Path:
    """A run that stopped at the lab stage: ``reflow run`` exits 0 and says it is waiting."""
    folder = tmp_path_factory.mktemp("lab-study")
    study = folder / "study.yaml"
    study.write_text(textwrap.dedent(STUDY).lstrip())
    code, out = cli("run", study, "--out", folder / "runs")
    assert code == 0, out
    assert "waiting: stage 'lab' waits for lab results (0 of 5 measured)" in out
    assert "reflow ask" in out and "reflow tell" in out and "reflow run --resume" in out
    (run_dir,) = (folder / "runs" / "epoxy-lab").iterdir()
    return run_dir


@pytest.fixture
def run_dir(waiting_run, tmp_path) -> Path:
    """This test's own copy of the waiting run."""
    target = tmp_path / "run"
    shutil.copytree(waiting_run, target)
    return target


def ask(run_dir: Path, n: int, out: Path) -> list[dict[str, str]]:
    code, text = cli("ask", run_dir, "--stage", "lab", "-n", n, "--out", out)
    assert code == 0, text
    assert f"{n} experiment(s) written to {out}" in text
    header, rows = read_csv(out)
    assert header == HEADER
    return rows


def tell(run_dir: Path, path: Path) -> tuple[int, str]:
    return cli("tell", run_dir, path, "--stage", "lab")


def journals(run_dir: Path) -> tuple[list[dict], list[dict]]:
    folder = run_dir / "lab"
    return TrialJournal(folder / "asked.jsonl").read(), TrialJournal(folder / "trials.jsonl").read()


# ---- waiting and asking ------------------------------------------------------------------------------------


def test_run_stops_at_the_lab_stage(waiting_run):
    manifest = read_manifest(waiting_run)
    assert manifest["status"] == "waiting"
    stages = manifest["stages"]
    assert stages["sim"]["status"] == "done"
    assert stages["lab"]["status"] == "waiting" and "0 of 5 measured" in stages["lab"]["waiting"]
    assert stages["opt"]["status"] == "pending", "stages after the lab wait too"
    assert not (waiting_run / "lab" / "asked.jsonl").exists(), "nothing is asked until someone asks"


def test_ask_writes_the_experiments_with_units(run_dir, tmp_path):
    rows = ask(run_dir, 3, tmp_path / "next.csv")
    assert [r["trial"] for r in rows] == ["0", "1", "2"]
    asked, told = journals(run_dir)
    assert [r["trial"] for r in asked] == [0, 1, 2] and told == []
    for row, rec in zip(rows, asked, strict=True):
        v = rec["inputs"]
        written = float(row["cure_temperature_c [degC]"])  # rounded to 1/10 000 of the 60 K range
        assert abs(written - v["cure_temperature_c"]) <= 0.003
        assert len(row["cure_temperature_c [degC]"].split(".")[1]) == 3
        assert 120 <= v["cure_temperature_c"] <= 180
        assert row["cure_time_min [min]"] == str(v["cure_time_min"]) and 30 <= v["cure_time_min"] <= 120
        assert row["hardener"] == v["hardener"] in ("amine", "anhydride")
        assert row["layers"] == str(v["layers"]) and v["layers"] in (2, 4, 8)
        assert row["atmosphere"] == "N2" and row["pressure_bar [bar]"] == "2"
        assert row["tg_c [degC]"] == row["strength_mpa [MPa]"] == row["error"] == ""
        assert rec["acquisition"] == "initial design (sobol)"
    # printing instead of writing a file; the next experiments continue the numbering
    code, text = cli("ask", run_dir, "--stage", "lab", "-n", 1)
    assert code == 0 and text.startswith(",".join(HEADER) + " 3,"), text
    assert [r["trial"] for r in journals(run_dir)[0]] == [0, 1, 2, 3]


def test_ask_does_not_overwrite_a_file(run_dir, tmp_path):
    out = tmp_path / "next.csv"
    out.write_text("results not told yet")
    code, text = cli("ask", run_dir, "--stage", "lab", "-n", 1, "--out", out)
    assert code == 2 and "the file exists" in text
    assert out.read_text() == "results not told yet"
    assert journals(run_dir)[0] == [], "nothing was asked"


def test_ask_beyond_the_budget(run_dir, tmp_path):
    code, text = cli("ask", run_dir, "--stage", "lab", "-n", 6)
    assert code == 2 and "the budget is 5 evaluations and 0 were asked already: ask for at most 5" in text
    code, text = cli("ask", run_dir, "--stage", "lab", "-n", 0)
    assert code == 2 and "-n must be at least 1" in text
    ask(run_dir, 3, tmp_path / "a.csv")
    code, text = cli("ask", run_dir, "--stage", "lab", "-n", 3)
    assert code == 2 and "ask for at most 2" in text
    rows = ask(run_dir, 2, tmp_path / "b.csv")  # too few told for a model: more space-filling points
    assert [r["trial"] for r in rows] == ["3", "4"]
    code, text = cli("ask", run_dir, "--stage", "lab", "-n", 1)
    assert code == 2 and "the budget of 5 evaluations is asked for" in text
    assert len(journals(run_dir)[0]) == 5


def test_ask_and_tell_on_other_stages(run_dir, tmp_path):
    results = write_csv(tmp_path / "r.csv", HEADER, [])
    for command in (["ask", run_dir, "--stage", "lba", "-n", 1], ["tell", run_dir, results, "--stage", "lba"]):
        code, text = cli(*command)
        assert code == 2 and "--stage 'lba': the study has no such stage; did you mean 'lab'?" in text, text
    code, text = cli("ask", run_dir, "--stage", "nothing-like-it")
    assert code == 2 and "(stages: sim, lab, opt)" in text
    code, text = cli("ask", run_dir, "--stage", "sim")
    assert code == 2 and "--stage 'sim' is a 'doe' stage; ask and tell work on an optimize stage" in text
    for command in (["ask", run_dir, "--stage", "opt"], ["tell", run_dir, results, "--stage", "opt"]):
        code, text = cli(*command)
        assert code == 2 and "stage 'opt' evaluates with code, not a lab" in text, text
    code, text = cli("ask", tmp_path / "no-run", "--stage", "lab")
    assert code == 2 and "not a run folder" in text
    assert journals(run_dir) == ([], [])


# ---- the whole loop ---------------------------------------------------------------------------------------


@pytest.mark.slow
def test_ask_tell_round_trip_to_the_end(run_dir, tmp_path, run_cli):
    rows = ask(run_dir, 3, tmp_path / "batch1.csv")
    filled = write_csv(tmp_path / "batch1-done.csv", HEADER, [measure(r) for r in rows])
    # days later, in another process: only the files are there
    res = run_cli("tell", run_dir, filled, "--stage", "lab", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "stored 3 result(s); 3 of 5 evaluations measured; ask for more" in " ".join(res.stdout.split())
    asked, told = journals(run_dir)
    assert [r["trial"] for r in told] == [0, 1, 2] and all(r["status"] == "ok" for r in told)
    assert told[0]["inputs"] == asked[0]["inputs"]

    # not measured yet: --resume waits again
    code, text = cli("run", "--resume", run_dir)
    assert code == 0 and "waiting: stage 'lab' waits for lab results (3 of 5 measured)" in text

    rows2 = ask(run_dir, 2, tmp_path / "batch2.csv")
    assert [r["trial"] for r in rows2] == ["3", "4"]
    asked, _ = journals(run_dir)
    assert [r["acquisition"] for r in asked[3:]] == ["qLogNEI", "qLogNEI"], "the model asks once 2 are told"
    assert [r["batch"] for r in asked] == [0, 0, 0, 1, 1]
    measured = [measure(r) for r in rows2]
    code, text = tell(run_dir, write_csv(tmp_path / "batch2-done.csv", HEADER, measured))
    assert code == 0, text
    assert "stored 2 result(s); 5 of 5 evaluations measured; the budget is measured" in text

    code, text = cli("run", "--resume", run_dir)
    assert code == 0 and "done:" in text, text
    manifest = read_manifest(run_dir)
    assert manifest["status"] == "done"
    assert {n: s["status"] for n, s in manifest["stages"].items()} == {"sim": "done", "lab": "done", "opt": "done"}
    trials = read_dataset(run_dir / "lab" / "trials.nc")
    assert trials["trial"].values.tolist() == list(range(5))
    assert set(trials["status"].values.tolist()) == {"ok"}
    everything = [measure(r) for r in rows] + measured
    np.testing.assert_array_equal(trials["tg_c"].values, [float(r["tg_c [degC]"]) for r in everything])
    np.testing.assert_array_equal(trials["cure_temperature_c"].values,
                                  [float(r["cure_temperature_c [degC]"]) for r in everything])
    assert trials["hardener"].values.tolist() == [r["hardener"] for r in everything]
    assert trials["tg_c"].attrs["units"] == "degC" and trials["cure_time_min"].attrs["units"] == "min"
    best = read_dataset(run_dir / "lab" / "best.nc")
    feasible = trials["strength_mpa"].values >= 50
    assert float(best["tg_c"].values[0]) == trials["tg_c"].values[feasible].max()

    # finished: nothing more to ask or tell
    code, text = cli("ask", run_dir, "--stage", "lab")
    assert code == 2 and "stage 'lab' is finished" in text


def test_rows_without_results_are_skipped_and_errors_are_failed_trials(run_dir, tmp_path):
    rows = ask(run_dir, 3, tmp_path / "next.csv")
    part = [measure(rows[0]), rows[1], {**rows[2], "error": "sample cracked in the mould"}]
    code, text = tell(run_dir, write_csv(tmp_path / "part.csv", HEADER, part))
    assert code == 0 and "stored 2 result(s); 1 row(s) without results skipped; 2 of 5" in text, text
    _, told = journals(run_dir)
    by_trial = {r["trial"]: r for r in told}
    assert sorted(by_trial) == [0, 2]
    assert by_trial[2]["status"] == "failed" and by_trial[2]["error"] == "sample cracked in the mould"
    assert by_trial[2]["outputs"] == {}
    # the skipped row comes back later on its own
    code, text = tell(run_dir, write_csv(tmp_path / "rest.csv", HEADER, [measure(rows[1])]))
    assert code == 0 and "3 of 5" in text
    rows2 = ask(run_dir, 2, tmp_path / "next2.csv")
    code, text = tell(run_dir, write_csv(tmp_path / "done2.csv", HEADER, [measure(r) for r in rows2]))
    assert code == 0 and "5 of 5" in text, "the failed experiment counts against the budget"
    code, text = cli("run", "--resume", run_dir)
    assert code == 0, text
    trials = read_dataset(run_dir / "lab" / "trials.nc")
    assert trials["status"].values.tolist() == ["ok", "ok", "failed", "ok", "ok"]
    assert trials["error"].values[2] == "sample cracked in the mould"
    assert np.isnan(trials["tg_c"].values[2])
    assert json.loads((run_dir / "lab" / "metrics.json").read_text())["failed"] == 1


# ---- rejections ---------------------------------------------------------------------------------------------


def _drop_column(name):
    def edit(header, rows):
        return [h for h in header if h != name], [{k: v for k, v in r.items() if k != name} for r in rows]
    return edit


def _rename_column(old, new):
    def edit(header, rows):
        return [new if h == old else h for h in header], [{(new if k == old else k): v for k, v in r.items()}
                                                           for r in rows]
    return edit


def _set(column, value, row=0):
    def edit(header, rows):
        rows[row] = {**rows[row], column: value(rows[row]) if callable(value) else value}
        return header, rows
    return edit


def _extra_column(header, rows):
    return header + ["operator"], [{**r, "operator": "JS"} for r in rows]


def _duplicate_row(header, rows):
    return header, rows + [dict(rows[0])]


def _told_row(header, rows):
    """A row for trial 0, told by the setup."""
    return header, rows + [{**rows[0], "trial": "0"}]


REJECTIONS = {
    "missing column": (_drop_column("strength_mpa [MPa]"), "missing columns: 'strength_mpa [MPa]'"),
    "missing parameter column": (_drop_column("hardener"), "missing columns: 'hardener'"),
    "extra column": (_extra_column, "column 'operator' is not part of this stage"),
    "misspelt column": (_rename_column("tg_c [degC]", "tgc [degC]"),
                        "column 'tgc [degC]' is not part of this stage; did you mean 'tg_c'?"),
    "wrong units": (_rename_column("tg_c [degC]", "tg_c [K]"),
                    "column 'tg_c [K]': the units must be degC, not K (reflow never converts units"),
    "units left out": (_rename_column("cure_time_min [min]", "cure_time_min"),
                       "column 'cure_time_min': the units must be min, not none"),
    "units where there are none": (_rename_column("hardener", "hardener [kg]"),
                                   "column 'hardener [kg]': the units must be none, not kg"),
    "value outside the space": (_set("cure_temperature_c [degC]", "250.0"),
                                "cure_temperature_c = '250.0' is outside the space (allowed: 120 to 180)"),
    "choice outside the space": (_set("hardener", "epoxy"),
                                 "hardener = 'epoxy' is outside the space (allowed: one of ['amine', 'anhydride'])"),
    "not a whole number": (_set("cure_time_min [min]", lambda r: str(int(r["cure_time_min [min]"]) - 0.5)),
                           "is outside the space (allowed: 30 to 120)"),
    "fixed value changed": (_set("atmosphere", "Ar"), "atmosphere = 'Ar' is outside the space (allowed: N2)"),
    "parameter unlike the asked one": (
        _set("cure_temperature_c [degC]", lambda r: repr(float(r["cure_temperature_c [degC]"]) + 0.5)),
        "but the experiment asked for"),
    "choice unlike the asked one": (
        _set("hardener", lambda r: "amine" if r["hardener"] == "anhydride" else "anhydride"),
        "but the experiment asked for"),
    "non-number output": (_set("tg_c [degC]", "high"), "tg_c = 'high' is not a number"),
    "infinite output": (_set("tg_c [degC]", "inf"), "tg_c = 'inf' is not a finite number"),
    "one output left empty": (_set("strength_mpa [MPa]", ""),
                              "strength_mpa is empty (fill in every output, or write why the experiment failed"),
    "duplicate trial row": (_duplicate_row, "trial 2 appears twice (also on line 2)"),
    "trial never asked": (_set("trial", "7"), "trial 7 was never asked (asked: 0, 1, 2)"),
    "trial not a number": (_set("trial", "two"), "trial 'two' is not a whole number"),
    "trial already told": (_told_row, "trial 0 was told already with other results; its stored results stay"),
    # results and an error in one row: once stored as failed with the results dropped silently
    "results and an error": (_set("error", "sample cracked in the mould"),
                             "line 2 (trial 2): the row has results (tg_c, strength_mpa) and an error ('sample "
                             "cracked in the mould'): give one or the other"),
    # numbers are read strictly: Python's float() and int() take 1_5_0 as 150 and Arabic-Indic digits as 150
    "underscores in an output": (_set("tg_c [degC]", "1_5_0"), "line 2 (trial 2): tg_c = '1_5_0' is not a number"),
    "underscores in a parameter": (_set("cure_time_min [min]", lambda r: "_".join(r["cure_time_min [min]"])),
                                   "is not a number"),
    "non-ASCII digits": (_set("strength_mpa [MPa]", "\u0661\u0665\u0660"),
                         "strength_mpa = '\u0661\u0665\u0660' is not a number"),
    "underscores in the trial": (_set("trial", "0_2"), "line 2: trial '0_2' is not a whole number"),
    # a 200 kB cell: once a csv "field larger than field limit" traceback
    "a 200 kB cell": (_set("error", "x" * 200_000),
                      "line 2, column 'error': the cell holds 200000 characters; at most 2000 are allowed"),
    "a 200 kB output cell": (_set("tg_c [degC]", "1" * 200_000),
                             "line 2, column 'tg_c [degC]': the cell holds 200000 characters"),
}


@pytest.fixture
def one_told(run_dir, tmp_path) -> tuple[Path, list[dict[str, str]]]:
    """Trials 0 and 1 told, trial 2 asked and measured (rows of its filled-in CSV)."""
    rows = ask(run_dir, 2, tmp_path / "first.csv")
    code, text = tell(run_dir, write_csv(tmp_path / "first-done.csv", HEADER, [measure(r) for r in rows]))
    assert code == 0, text
    rows = ask(run_dir, 1, tmp_path / "second.csv")
    assert rows[0]["trial"] == "2"
    return run_dir, [measure(r) for r in rows]


@pytest.mark.parametrize("case", list(REJECTIONS))
def test_a_bad_results_file_is_refused_and_nothing_is_stored(one_told, tmp_path, case):
    run_dir, rows = one_told
    edit, message = REJECTIONS[case]
    header, rows = edit(list(HEADER), [dict(r) for r in rows])
    path = write_csv(tmp_path / "bad.csv", header, rows)
    told_before = (run_dir / "lab" / "trials.jsonl").read_bytes()
    asked_before = (run_dir / "lab" / "asked.jsonl").read_bytes()
    code, text = tell(run_dir, path)
    assert code == 2, text
    assert message in text, text
    assert "nothing was stored" in text and "Traceback" not in text
    assert (run_dir / "lab" / "trials.jsonl").read_bytes() == told_before
    assert (run_dir / "lab" / "asked.jsonl").read_bytes() == asked_before


def test_every_problem_is_reported_at_once(one_told, tmp_path):
    run_dir, rows = one_told
    bad = [{**rows[0], "tg_c [degC]": "n/a", "cure_temperature_c [degC]": "999"},
           {**rows[0], "trial": "12"}]
    code, text = tell(run_dir, write_csv(tmp_path / "bad.csv", HEADER, bad))
    assert code == 2
    assert "3 problem(s); nothing was stored" in text
    assert "line 2 (trial 2): cure_temperature_c = '999' is outside the space" in text
    assert "line 2 (trial 2): tg_c = 'n/a' is not a number" in text
    assert "line 3 (trial 12): trial 12 was never asked" in text


def test_ragged_and_empty_files_are_refused(one_told, tmp_path):
    run_dir, rows = one_told
    told_before = (run_dir / "lab" / "trials.jsonl").read_bytes()
    ragged = tmp_path / "ragged.csv"
    ragged.write_text(",".join(HEADER) + "\n" + "2,150.0,60\n")
    code, text = tell(run_dir, ragged)
    assert code == 2 and "line 2: 3 cells for 10 columns" in text
    empty = tmp_path / "empty.csv"
    empty.write_text("\n")
    code, text = tell(run_dir, empty)
    assert code == 2 and "the file is empty" in text
    code, text = tell(run_dir, tmp_path / "missing.csv")
    assert code == 2 and "cannot read the results file" in text
    assert (run_dir / "lab" / "trials.jsonl").read_bytes() == told_before


def test_a_spreadsheet_csv_with_a_byte_order_mark_is_read(one_told, tmp_path):
    run_dir, rows = one_told
    path = write_csv(tmp_path / "excel.csv", HEADER, rows)
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes().replace(b"\n", b"\r\n"))
    code, text = tell(run_dir, path)
    assert code == 0 and "stored 1 result(s); 3 of 5" in text, text


def test_the_same_csv_is_told_again_after_more_rows_are_filled(run_dir, tmp_path):
    rows = ask(run_dir, 2, tmp_path / "batch.csv")
    path = write_csv(tmp_path / "batch-filled.csv", HEADER, [measure(rows[0]), rows[1]])
    code, text = tell(run_dir, path)
    assert code == 0 and "stored 1 result(s); 1 row(s) without results skipped" in text, text
    write_csv(path, HEADER, [measure(rows[0]), measure(rows[1])])
    code, text = tell(run_dir, path)
    assert code == 0 and ("stored 1 result(s); 1 row(s) were already stored by an earlier tell, unchanged; "
                          "2 of 5") in text, text
    told = [json.loads(line) for line in (run_dir / "lab" / "trials.jsonl").read_text().splitlines()]
    assert sorted(r["trial"] for r in told) == [0, 1]
    # the whole file told once more: the message says the rows are stored already (once: "rows without results")
    code, text = tell(run_dir, path)
    assert code == 0 and ("stored 0 result(s); 2 row(s) were already stored by an earlier tell, unchanged; "
                          "2 of 5") in text, text
    assert "without results" not in text
    assert (run_dir / "lab" / "trials.jsonl").read_text().count("\n") == 2


def test_a_parameter_rounded_by_the_lab_is_stored_as_run(one_told, tmp_path):
    run_dir, rows = one_told
    asked = float(rows[0]["cure_temperature_c [degC]"])
    rounded = round(asked, 1)  # at most 0.05 K off on a 60 K range: inside the 0.1 % a lab may round
    assert rounded != asked
    code, text = tell(run_dir, write_csv(tmp_path / "rounded.csv", HEADER,
                                         [{**rows[0], "cure_temperature_c [degC]": str(rounded)}]))
    assert code == 0, text
    last = json.loads((run_dir / "lab" / "trials.jsonl").read_text().splitlines()[-1])
    assert last["trial"] == 2 and last["inputs"]["cure_temperature_c"] == rounded


# ---- one writer ---------------------------------------------------------------------------------------------


def test_ask_and_tell_are_refused_while_another_command_holds_the_run_folder(run_dir, tmp_path):
    rows = ask(run_dir, 1, tmp_path / "first.csv")
    filled = write_csv(tmp_path / "first-done.csv", HEADER, [measure(r) for r in rows])
    before = {name: (run_dir / "lab" / name).read_bytes() for name in ("asked.jsonl",)}
    with RunLock(run_dir, "reflow ask --stage lab"):  # another ask, still at work
        code, text = cli("ask", run_dir, "--stage", "lab", "-n", 1, "--out", tmp_path / "second.csv")
        assert code == 2, text
        assert f"is in use by `reflow ask --stage lab` (PID {os.getpid()}, since " in text, text
        assert "`reflow ask --stage lab` changed nothing" in text
        assert not (tmp_path / "second.csv").exists()
        code, text = tell(run_dir, filled)
        assert code == 2 and f"(PID {os.getpid()}, since " in text and "`reflow tell --stage lab` changed" in text
    assert {name: (run_dir / "lab" / name).read_bytes() for name in before} == before
    assert not (run_dir / "lab" / "trials.jsonl").exists()
    # the lock released, both work again and the ids go on
    assert [r["trial"] for r in ask(run_dir, 1, tmp_path / "second.csv")] == ["1"]
    code, text = tell(run_dir, filled)
    assert code == 0 and "stored 1 result(s)" in text


def test_two_asks_at_once_never_hand_out_the_same_trial(run_dir, tmp_path):
    """Two ``reflow ask`` started together: each one either hands out its own trials or is refused (exit 2)."""
    procs = [subprocess.Popen([*REFLOW, "ask", str(run_dir), "--stage", "lab", "-n", "2", "--out",
                               str(tmp_path / f"ask{i}.csv")], cwd=tmp_path, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=process_env())
             for i in range(2)]
    results = [(p.wait(timeout=120), " ".join(p.stderr.read().split())) for p in procs]
    for p in procs:
        p.stdout.close()
        p.stderr.close()
    assert all(code == 0 or (code == 2 and "is in use by `reflow ask --stage lab`" in err) for code, err in results), \
        results
    handed = [r["trial"] for i, (code, _) in enumerate(results) if code == 0
              for r in read_csv(tmp_path / f"ask{i}.csv")[1]]
    asked, _ = journals(run_dir)
    assert [r["trial"] for r in asked] == list(range(len(asked))), "a trial id handed out twice"
    assert sorted(map(int, handed)) == list(range(len(asked))) and len(asked) in (2, 4)

"""The CLI's tables in an 80-column terminal, and units from what variables declare (in process: fast)."""

from __future__ import annotations

import json

import pytest
import xarray as xr
from _cli import cli
from reflow.cli import _fitted_columns
from reflow.registry import get_registry
from reflow.store import StageStore, write_json
from reflow.units import metric_units


def _invoke(*args: str, columns: int = 80):
    res = cli(*args, columns=columns)
    assert res.exit_code == 0, res.output
    return res.output


def _assert_fits(output: str, width: int = 80) -> None:
    wide = [line for line in output.splitlines() if len(line) > width]
    assert not wide, f"{len(wide)} line(s) wider than {width}: {wide[:2]}"


def _row(output: str, name: str) -> str:
    return next(line for line in output.splitlines() if line.startswith(f"│ {name} "))


def test_plugins_at_80_columns_keeps_names_and_summaries_on_one_line():
    out = _invoke("plugins")
    _assert_fits(out)
    registry = get_registry()
    for name in ("bilayer-warpage", "synthetic-readout-test", "lhs", "weibull"):
        row = _row(out, name)
        words = " ".join(registry.get(name).cls.__doc__.split()[:2])
        assert words.replace("``", "`") in row, row  # the summary starts on the name's line
        assert row.rstrip().endswith("│")
    assert "design" in _row(out, "lhs") and "life-model" in _row(out, "weibull")
    # one line a component: the table is as long as the registry, plus its frame
    assert sum(line.startswith("│ ") for line in out.splitlines()) == len(registry.entries)


def test_plugins_at_200_columns_shows_every_column():
    out = _invoke("plugins", columns=200)
    _assert_fits(out, 200)
    row = _row(out, "lhs")
    assert "optimizer" in row and "design" in row and "reflow.optimize" in row


def test_narrow_tables_drop_optional_columns_before_squeezing_a_word():
    cells = {"name": ["bilayer-warpage"], "kind": ["evaluator"], "plugin": ["reflow.physics"],
             "summary": ["Closed-form warpage of a die on a substrate"]}
    assert list(_fitted_columns(200, cells, ("plugin", "kind"), "summary", 30)) == list(cells)
    narrow = _fitted_columns(60, cells, ("plugin", "kind"), "summary", 30)
    assert list(narrow) == ["name", "summary"] and narrow["name"] == len("bilayer-warpage")
    assert 1 + sum(w + 3 for w in narrow.values()) <= 60


@pytest.mark.parametrize("name", ["lhs", "bilayer-warpage", "optimize", "weibull"])
def test_plugins_show_fits_80_columns_without_breaking_words(name):
    out = _invoke("plugins", "show", name)
    _assert_fits(out)
    assert out.splitlines()[0].startswith(name)
    entry = get_registry().get(name)
    for field in entry.cls.Params.model_fields:  # param names are never cut
        assert any(line.startswith(f"│ {field} ") for line in out.splitlines()), field


def test_plugins_show_reads_params_as_the_yaml_reference_does():
    out = _invoke("plugins", "show", "doe", columns=200)
    rows = {line.split("│")[1].strip(): line for line in out.splitlines() if line.count("│") > 3}
    assert "optimizer or design" in rows["design"] and "required" in rows["design"]
    cells = [c.strip() for c in rows["batch_size"].split("│")]
    assert cells[2:4] == ["int", "16"] and cells[4].endswith("(>= 1)")  # bounds after the description
    assert "null" in rows["plot"] and "None" not in rows["plot"]


def _run_folder(tmp_path, metrics, units):
    """A finished run with one stage whose output declares ``units`` for its variables."""
    run = tmp_path / "run"
    trials = xr.Dataset({name: ("trial", [1.0, 2.0], {"units": u} if u else {}) for name, u in units.items()})
    StageStore(run / "thermal").write_output("trials", trials)
    write_json(run / "manifest.json", {"study": "units", "status": "done", "stages": {
        "thermal": {"task": "doe", "status": "done", "seconds": 1.5, "outputs": ["trials"], "metrics": metrics}}})
    return run


def test_show_takes_units_from_the_declared_variable_not_the_name(tmp_path):
    run = _run_folder(tmp_path, {"trials": 2, "r_ja_k_w_max": 1.5, "delay_s_min": 3.0, "best_r_ja_k_w": 1.25},
                      {"r_ja_k_w": "K/W", "delay_s": ""})
    out = _invoke("show", str(run))
    _assert_fits(out)
    assert "r_ja_k_w_max=1.5 K/W" in out and "best_r_ja_k_w=1.25 K/W" in out
    assert "delay_s_min=3 s" in out  # no units declared: its name states them (as in the report)
    assert "trials=2 " in out


def test_metric_units():
    units = {"r_ja_k_w": "K/W", "warpage_um": "um"}
    assert metric_units("r_ja_k_w", units) == "K/W"
    assert metric_units("warpage_um_rmse", units) == "um"
    assert metric_units("best_warpage_um", units) == "um"
    assert metric_units("warpage_um_r2", units) == ""  # a ratio, not in the variable's units
    assert metric_units("warpage_um_mse", units) == ""  # squared units
    assert metric_units("length_mm_max", units) == "mm"  # declared nowhere: the name's suffix says it
    assert metric_units("length_mm_max", units, guess=False) == ""
    assert metric_units("delta_bmax_rmse", {"delta_bmax": "1"}) == ""  # a pure number: declared, shown as none
    assert metric_units("ratio_w_max", {"ratio_w": "1"}) == ""  # and its name's suffix is not taken instead
    assert metric_units("verified_r_ja_k_w", units) == "K/W" and metric_units("r_ja_k_w_upper", units) == "K/W"


def test_show_at_80_columns_with_a_long_error(tmp_path):
    run = _run_folder(tmp_path, {}, {"x": ""})
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["stages"]["thermal"].update(status="failed", error="evaluator bilayer-warpage: " + "word " * 40)
    write_json(run / "manifest.json", manifest)
    out = _invoke("show", str(run))
    _assert_fits(out)
    assert "│ thermal " in out and "failed" in out

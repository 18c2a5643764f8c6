"""report.html: summary, key numbers, stage links, embedded figures, failed stages, self-containment."""

from __future__ import annotations

import base64
import copy
import json
import re
import shutil
import textwrap
from pathlib import Path

import pytest
from _report_studies import FAILING_STUDY, run_keeping_failures
from reflow.report import (
    caption,
    format_value,
    key_numbers,
    png_size,
    render,
    stage_links,
    units_of,
    write_report,
)

REPO = Path(__file__).resolve().parents[2]



EXTERNAL = re.compile(r"""(?:src|href|action|poster)\s*=\s*["']?(?!#|data:image/png;base64,)[^"'\s>]""", re.I)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("report")
    failing = base / "failing.yaml"
    failing.write_text(textwrap.dedent(FAILING_STUDY).lstrip())
    return {
        "quickstart": run_keeping_failures(REPO / "studies" / "quickstart.yaml", base / "runs",
                           ["stages.warpage.design.lhs.samples=12"]),
        "failing": run_keeping_failures(failing, base / "runs"),
    }


def _copy(run_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(run_dir, tmp_path / run_dir.name))


def _section(page: str, stage: str) -> str:
    start = page.index(f"id='stage-{stage}'")
    end = page.find("<section", start)
    return page[start:end if end > 0 else len(page)]


# ---- summary ------------------------------------------------------------------------------------------


def test_summary_has_the_study_and_every_stage(runs):
    page = (runs["quickstart"] / "report.html").read_text()
    manifest = json.loads((runs["quickstart"] / "manifest.json").read_text())
    assert "<h1>quickstart</h1>" in page
    assert "Warpage of a die on a substrate after the reflow cool-down" in page  # the description
    summary = page[: page.index("<section")]
    for label, value in (("seed", "7"), ("device", manifest["device"]), ("status", "done"),
                         ("started", manifest["created"][:10])):
        assert re.search(rf"<span class='label'>{label}</span><span class='value'>[^<]*(<span[^>]*>)?{value}",
                         summary), f"no {label} {value} in the summary"
    assert "total stage time" in summary
    row = re.search(r"<tr><td><a href='#stage-warpage'>warpage</a></td><td>doe</td>.*?</tr>", summary).group(0)
    assert "status-done" in row
    assert "12 (12 ok, 0 failed)" in row  # the trial counts are the first key number
    assert "warpage_um" in row and "µm" in row


def test_summary_of_a_failed_run(runs):
    page = (runs["failing"] / "report.html").read_text()  # written by the runner although the run failed
    summary = page[: page.index("<section")]
    assert "status-failed" in summary
    assert re.search(r"#stage-fit'>fit</a></td><td>train</td><td><span class='status status-failed'>", summary)
    assert re.search(r"#stage-field'>field</a></td><td>doe</td><td><span class='status status-pending'>not run",
                     summary)
    assert "3 (1 done)" in summary
    assert "no_such_factor_mm" in summary  # the error's first line stands in for the key numbers


# ---- stage sections -----------------------------------------------------------------------------------


def test_failed_stage_shows_its_error_and_traceback(runs):
    page = (runs["failing"] / "report.html").read_text()
    fit = _section(page, "fit")
    assert "class='error'" in fit and "This stage failed" in fit
    manifest = json.loads((runs["failing"] / "manifest.json").read_text())
    error = manifest["stages"]["fit"]["error"]
    assert error.startswith("DataError") and "no_such_factor_mm" in error
    from html import escape

    assert escape(error) in fit
    assert "Traceback (from run.log)" in fit and "Traceback (most recent call last)" in fit
    assert "did not run" in _section(page, "field")
    assert "class='error'" not in _section(page, "warpage")


def test_links_between_stages_follow_data_and_models(runs):
    page = (runs["failing"] / "report.html").read_text()
    assert "reads the data of <a href='#stage-warpage'>warpage</a>" in _section(page, "fit")
    assert "uses the model trained in <a href='#stage-fit'>fit</a>" in _section(page, "field")
    assert "<a href='#stage-fit'>fit</a> uses its data" in _section(page, "warpage")
    assert "<a href='#stage-field'>field</a> uses its model" in _section(page, "fit")
    ids = set(re.findall(r"id='([^']+)'", page))
    assert {h[1:] for h in re.findall(r"href='(#[^']+)'", page)} <= ids
    links = {(lk.source, lk.target, lk.what) for lk in stage_links(runs["failing"])}
    assert links == {("warpage", "fit", "data"), ("fit", "field", "model")}


def test_links_come_from_the_manifest_even_when_the_study_no_longer_validates(runs, tmp_path):
    run_dir = _copy(runs["failing"], tmp_path)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["stages"]["fit"]["reads"] == [{"stage": "warpage", "what": "data", "output": None}]
    assert manifest["stages"]["field"]["reads"] == [{"stage": "fit", "what": "model", "output": None}]
    resolved = run_dir / "study.resolved.yaml"
    resolved.write_text(resolved.read_text().replace("bilayer-warpage", "uninstalled-evaluator"))
    links = {(lk.source, lk.target, lk.what) for lk in stage_links(run_dir)}
    assert links == {("warpage", "fit", "data"), ("fit", "field", "model")}
    assert "reads the data of <a href='#stage-warpage'>" in _section(render(run_dir), "fit")


def test_an_older_manifest_gets_its_links_from_the_resolved_study(runs, tmp_path):
    run_dir = _copy(runs["failing"], tmp_path)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    for info in manifest["stages"].values():  # written before the runner recorded reads
        del info["reads"]
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    links = {(lk.source, lk.target, lk.what) for lk in stage_links(run_dir)}
    assert links == {("warpage", "fit", "data"), ("fit", "field", "model")}
    resolved = run_dir / "study.resolved.yaml"  # and without a study that validates, none: the page still comes
    resolved.write_text(resolved.read_text().replace("bilayer-warpage", "uninstalled-evaluator"))
    assert stage_links(run_dir) == []
    assert "class='links'" not in render(run_dir)


def test_a_damaged_metrics_file_is_named_on_the_page(runs, tmp_path):
    run_dir = _copy(runs["quickstart"], tmp_path)
    (run_dir / "warpage" / "metrics.json").write_text("{not json")
    section = _section(render(run_dir), "warpage")
    assert re.search(r"<p class='warn'>[^<]*warpage/metrics.json cannot be read", section)
    assert "Key numbers" not in section and "All metrics" not in section
    assert "<code>warpage_um_factors.png</code>" in section  # the figures are still there


def test_units_come_from_the_declared_variable_not_the_name(runs, tmp_path):
    """``r_ja_k_w`` (a thermal resistance) declared in K/W reads in K/W, although its name ends in ``_w``."""
    from reflow.store import StageStore

    run_dir = _copy(runs["quickstart"], tmp_path)
    store = StageStore(run_dir / "warpage")
    trials = store.read_output("trials")
    trials["r_ja_k_w"] = ("trial", trials["warpage_um"].values / 100, {"units": "K/W"})
    trials["p_loss_w"] = ("trial", trials["warpage_um"].values, {"units": ""})  # not declared: the name's W
    store.write_output("trials", trials)
    metrics = store.read_metrics()
    metrics.update(r_ja_k_w_min=0.25, r_ja_k_w_max=1.75, p_loss_w_min=2.0, p_loss_w_max=3.0, best_r_ja_k_w=0.25)
    store.write_metrics(metrics)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["stages"]["warpage"]["units"]["warpage_um"] == "um"  # recorded by the runner
    manifest["stages"]["warpage"]["units"]["r_ja_k_w"] = "K/W"  # as the runner records a declared variable
    older = copy.deepcopy(manifest)
    del older["stages"]["warpage"]["units"]  # a run from before units were recorded: read from the outputs
    for record in (manifest, older):
        (run_dir / "manifest.json").write_text(json.dumps(record))
        section = _section(render(run_dir), "warpage")
        assert "<span class='label'>r_ja_k_w</span><span class='value'>0.25 … 1.75 K/W</span>" in section
        assert "<code>best_r_ja_k_w</code></th><td class='num'>0.25 K/W</td>" in section
        assert "<span class='label'>p_loss_w</span><span class='value'>2 … 3 W</span>" in section
        assert "µm" in section  # warpage_um, declared in um
    keys = {k.label: k.text for k in key_numbers({"r_ja_k_w_min": 1.0, "r_ja_k_w_max": 2.0},
                                                  declared={"r_ja_k_w": "K/W"})}
    assert keys == {"r_ja_k_w": "1 … 2 K/W"}
    assert units_of("r_ja_k_w") == "W" and units_of("r_ja_k_w_upper", {"r_ja_k_w": "K/W"}) == "K/W"


def test_every_figure_is_embedded_once_with_a_caption(runs):
    for run_dir in runs.values():
        page = (run_dir / "report.html").read_text()
        pngs = sorted(run_dir.glob("*/*.png"))
        assert pngs
        embedded = re.findall(r'<img alt="([^"]*)" width="(\d+)" height="(\d+)" src="data:image/png;base64,([^"]+)"',
                              page)
        assert len(embedded) == len(pngs) == page.count("<img")
        assert sorted(base64.b64decode(e[3]) for e in embedded) == sorted(p.read_bytes() for p in pngs)
        for alt, width, height, data in embedded:
            assert alt and (int(width), int(height)) == png_size(base64.b64decode(data))
        for png in pngs:
            assert f"<code>{png.name}</code></figcaption>" in page


def test_the_report_is_self_contained(runs):
    for run_dir in runs.values():
        page = (run_dir / "report.html").read_text()
        assert not EXTERNAL.findall(page), EXTERNAL.findall(page)[:3]
        for needle in ("<script", "<link", "@import", "url(", "<iframe", "<object"):
            assert needle not in page.lower()
        assert "<style>" in page


def test_text_from_the_run_is_escaped(runs, tmp_path):
    run_dir = _copy(runs["failing"], tmp_path)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    manifest["stages"]["fit"]["error"] = "ValueError: <script>alert(1)</script> & <img src=x>"
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    page = render(run_dir)
    assert "<script>" not in page and "<img src=x>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &lt;img src=x&gt;" in page


def test_headline_and_stage_values_come_first(runs, tmp_path):
    run_dir = _copy(runs["quickstart"], tmp_path)
    metrics_path = run_dir / "warpage" / "metrics.json"
    metrics = json.loads(metrics_path.read_text())
    metrics["headline"] = {"worst_warpage_um": 173.94, "verdict": "too much warpage"}
    metrics_path.write_text(json.dumps(metrics))
    (run_dir / "warpage" / "stage_values.json").write_text(json.dumps({"${life.b10_cycles}": 2057.5}))
    page = write_report(run_dir).read_text()
    summary_row = re.search(r"<tr><td><a href='#stage-warpage'>.*?</tr>", page).group(0)
    keys = re.findall(r"<code>([^<]+)</code>", summary_row)
    assert keys[:2] == ["worst_warpage_um", "verdict"]
    assert "173.9 µm" in summary_row and "too much warpage" in summary_row
    section = _section(page, "warpage")
    assert "Stage values used" in section and "${life.b10_cycles}" in section and "2058" in section
    assert "<code>headline.verdict</code>" in section  # the full table has it too


def test_reflow_report_rebuilds_the_page_and_the_figures(runs, tmp_path, run_cli):
    run_dir = _copy(runs["quickstart"], tmp_path)
    pngs = sorted(p.name for p in run_dir.glob("*/*.png"))
    for p in run_dir.glob("*/*.png"):
        p.unlink()
    (run_dir / "report.html").unlink()
    res = run_cli("report", run_dir)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == str(run_dir / "report.html")
    assert sorted(p.name for p in run_dir.glob("*/*.png")) == pngs
    assert (run_dir / "report.html").read_text().count("data:image/png;base64,") == len(pngs)
    missing = run_cli("report", tmp_path / "no-such-run")
    assert missing.returncode == 2 and "not a run folder" in missing.stderr


# ---- key numbers and formatting ----------------------------------------------------------------------


def test_key_numbers_pick_counts_best_scores_and_bounds():
    metrics = {
        "train_samples": 40, "val_samples": 0, "test_samples": 10, "x_r2": 0.9876, "x_rmse": 1.25, "x_mae": 1.0,
        "beta": 5.03, "beta_lower": 3.7, "beta_upper": 6.84, "b10_cycles": 2057.5, "b10_cycles_lower": 1816.5,
        "b10_cycles_upper": 2330.4, "confidence": 0.9, "units": 48, "failures": 24, "log_likelihood": -208.6,
    }
    keys = key_numbers(metrics)
    labels = [k.label for k in keys]
    assert labels == ["units", "x_r2", "x_rmse", "b10_cycles", "test_samples", "x_mae", "beta"]
    text = {k.label: k.text for k in keys}
    assert text["units"] == "48 (24 failed, 24 suspended)"
    assert text["b10_cycles"] == "2058 cycles (90 % bounds 1816 … 2330)"
    assert text["x_r2"] == "0.9876"


def test_key_numbers_headline_first_and_failures_flagged():
    metrics = {"trials": 20, "ok": 17, "failed": 3, "warpage_um_min": 8.2, "warpage_um_max": 174.0,
               "tg_c_min": 150.0, "tg_c_max": 150.0, "headline": {"best_design": "UF-B, 0.3 mm"}}
    keys = key_numbers(metrics)
    assert [k.label for k in keys] == ["best_design", "trials", "warpage_um", "tg_c"]
    assert keys[1].text == "20 (17 ok, 3 failed)" and keys[1].warn
    assert keys[2].text == "8.2 … 174 µm"
    assert keys[3].text == "150 °C"  # a constant output is shown as one value, after the ones that varied
    opt = key_numbers({"evaluations": 24, "failed": 0, "feasible": 0, "hypervolume": 8853.6, "pareto_points": 1,
                       "seconds_per_suggestion": 2.29})
    assert [k.label for k in opt] == ["evaluations", "hypervolume", "pareto_points"]
    assert opt[0].warn  # nothing feasible
    assert len(key_numbers({f"m{i}_r2": 0.5 for i in range(20)})) == 8
    assert [k.label for k in key_numbers({"alpha": 1.0, "gamma": 2, "delta": 3, "eps": 4})] == ["alpha", "gamma",
                                                                                               "delta"]


def test_units_and_numbers_are_formatted_for_reading():
    assert units_of("warpage_um") == "µm" and units_of("tg_c_max") == "°C"
    assert units_of("b10_cycles_lower") == "cycles" and units_of("best_lap_shear_mpa") == "MPa"
    assert units_of("seconds_per_suggestion") == "s" and units_of("elongation_pct") == "%"
    assert units_of("pareto_points") == "" and units_of("hypervolume") == ""
    assert format_value("field_b10_cycles", 184042.468) == "184\u2009042 cycles"
    assert format_value("solder_shear_strain_range", 0.0010640) == "0.001064"
    assert format_value("x", 1.5e-7) == "1.500e-07"
    assert format_value("x", float("nan")) == "n/a"
    assert format_value("trials", 1234) == "1\u2009234"
    assert format_value("ok", True) == "yes"


def test_captions_come_from_file_names():
    assert caption(Path("warpage_um_factors.png")) == "warpage_um: against each factor"
    assert caption(Path("tj_c_vs_vce_sat_v_by_aging_cycles.png")) == "tj_c vs vce_sat_v, coloured by aging_cycles"
    assert caption(Path("tj_c_parity.png")) == "tj_c: predicted against held-out truth"
    assert caption(Path("pareto_front.png")) == "Pareto front"
    assert png_size(b"not a png at all, not a png at all") is None

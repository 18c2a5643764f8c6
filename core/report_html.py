"""The report's HTML: the style sheet, the page and the pieces it is made of, from facts already gathered.

Nothing here reads the run folder: :mod:`reflow.report` gathers a :class:`RunView` with one
:class:`StageView` per stage and :func:`page` turns it into one self-contained page (inline CSS, figures as
base64 PNGs, no script). Every piece of text from the run goes through :func:`esc`.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from string import Template
from typing import Any

from reflow.report_figures import caption, is_wide, png_size
from reflow.report_links import Link
from reflow.report_summary import SUMMARY_KEY_NUMBERS, KeyNumber, flat_metrics, format_number, format_value, is_number
from reflow.store import MODEL_DIR

CSS = """
:root{--ink:#1d2330;--muted:#5b6475;--line:#d9dde6;--soft:#f3f5f9;--ok:#18794e;--bad:#c62828;--warn:#a06200;
--accent:#1f5fbf}
*{box-sizing:border-box}
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:0;color:var(--ink);
line-height:1.45;background:#fff}
main{max-width:1280px;margin:0 auto;padding:1.5rem 1.2rem 3rem}
h1{margin:.2rem 0 .1rem;font-size:1.7rem} h2{font-size:1.3rem;margin:.2rem 0 .6rem}
h3{font-size:1rem;margin:1rem 0 .4rem;color:var(--muted);text-transform:uppercase;letter-spacing:.04em}
.description{font-size:1.05rem;margin:.2rem 0 .8rem;color:#2d3445}
a{color:var(--accent)}
code{background:var(--soft);padding:0 .25rem;border-radius:3px;font-size:.92em}
.facts{display:grid;grid-template-columns:repeat(auto-fill,minmax(150px,1fr));gap:.5rem;margin:.8rem 0 1.2rem}
.fact{background:var(--soft);border-radius:6px;padding:.45rem .7rem}
.fact .label{display:block;color:var(--muted);font-size:.78rem;text-transform:uppercase;letter-spacing:.04em}
.fact .value{font-weight:600;font-variant-numeric:tabular-nums;word-break:break-word}
table{border-collapse:collapse;margin:.4rem 0 1rem;width:100%}
td,th{border:1px solid var(--line);padding:.32rem .6rem;text-align:left;vertical-align:top;
font-variant-numeric:tabular-nums}
th{background:var(--soft);font-weight:600}
td.num{text-align:right;white-space:nowrap}
.status{font-weight:700;white-space:nowrap}
.status-done{color:var(--ok)} .status-failed,.status-interrupted{color:var(--bad)}
.status-running,.status-waiting,.status-pending,.status-created{color:var(--warn)}
.keys{list-style:none;padding:0;margin:0}
.keys li{margin:.1rem 0}
.keynums{display:grid;grid-template-columns:repeat(auto-fill,minmax(230px,1fr));gap:.5rem;margin:.4rem 0 1rem}
.keynum{border:1px solid var(--line);border-radius:6px;padding:.45rem .7rem}
.keynum .label{display:block;color:var(--muted);font-size:.82rem;word-break:break-all}
.keynum .value{font-size:1.12rem;font-weight:650;font-variant-numeric:tabular-nums}
.warn{color:var(--warn)} .keynum.warn{border-color:#e6b85c;background:#fff8e8}
section.stage{border-top:3px solid var(--line);margin-top:2rem;padding-top:.8rem}
section.stage.failed{border-top-color:var(--bad)}
.task{color:var(--muted);font-weight:400;font-size:1rem}
.links{margin:.2rem 0 .8rem;padding-left:1.2rem}
.error{border-left:4px solid var(--bad);background:#fdeeee;padding:.6rem .9rem;margin:.6rem 0 1rem;
border-radius:0 6px 6px 0}
.error pre,.note pre,details pre{white-space:pre-wrap;word-break:break-word;font-size:.85rem;margin:.4rem 0 0}
.note{border-left:4px solid var(--warn);background:#fff8e8;padding:.5rem .9rem;margin:.6rem 0 1rem;
border-radius:0 6px 6px 0}
.figs{display:grid;grid-template-columns:repeat(auto-fill,minmax(min(100%,460px),1fr));gap:1rem;margin:.4rem 0 1rem}
.figs{align-items:start} figure.wide{grid-column:1/-1}
.scroll{overflow-x:auto;max-width:100%}
figure{margin:0;border:1px solid var(--line);border-radius:6px;padding:.5rem;background:#fff}
figure img{display:block;max-width:100%;height:auto;margin:0 auto}
figcaption{font-size:.9rem;color:var(--muted);margin-top:.35rem}
details{margin:.4rem 0 1rem} summary{cursor:pointer;font-weight:600;color:var(--accent)}
.muted{color:var(--muted)} footer{margin-top:2.5rem;color:var(--muted);font-size:.85rem}
@media print{details{display:block} .figs{grid-template-columns:1fr 1fr}}
"""

_STATUS_TEXT = {"pending": "not run", "created": "not started"}


@dataclass
class StageView:
    """What the report shows of one stage, read from its folder, the manifest and run.log."""

    name: str
    info: dict[str, Any]
    """The stage's entry in the manifest (task, status, seconds, error, ...)."""
    metrics: dict[str, Any] = field(default_factory=dict)
    metrics_problem: str = ""
    numbers: list[KeyNumber] = field(default_factory=list)
    declared_units: Mapping[str, str] = field(default_factory=dict)
    notes: list[dict[str, Any]] = field(default_factory=list)
    traceback: str = ""
    used_values: dict[str, Any] = field(default_factory=dict)
    figures: list[Path] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    has_model: bool = False

    @property
    def status(self) -> str:
        return str(self.info.get("status", ""))


@dataclass
class RunView:
    """What the report shows of the whole run."""

    run_dir: Path
    manifest: dict[str, Any]
    study: str
    description: str
    stages: list[StageView]
    links: list[Link]
    written: str
    """When the page was written (``YYYY-mm-dd HH:MM:SS``)."""


# ---- small pieces -------------------------------------------------------------------------------------


def esc(value: Any) -> str:
    """Any text from the run, safe in HTML text and attributes."""
    return html.escape(str(value), quote=True)


def status_badge(status: str) -> str:
    return f"<span class='status status-{esc(status)}'>{esc(_STATUS_TEXT.get(status, status))}</span>"


def stage_link(name: str) -> str:
    return f"<a href='#stage-{esc(name)}'>{esc(name)}</a>"


def duration(value: Any) -> str:
    """Seconds as a reader takes them in: ``12.3 s``, ``4 min 05 s``, ``2 h 03 min``; ``""`` for no number."""
    if not is_number(value):
        return ""
    value = float(value)
    if value < 60:
        return f"{value:.1f} s"
    minutes, seconds = divmod(value, 60)
    if minutes < 60:
        return f"{int(minutes)} min {seconds:02.0f} s"
    hours, minutes = divmod(minutes, 60)
    return f"{int(hours)} h {int(minutes):02d} min"


def first_line(text: Any) -> str:
    """The first line of a message, cut to 160 characters (a summary cell)."""
    line = str(text).strip().splitlines()[0] if str(text).strip() else ""
    return line if len(line) <= 160 else line[:157] + "..."


def keynum_grid(numbers: list[KeyNumber]) -> str:
    if not numbers:
        return ""
    cells = "".join(
        f"<div class='keynum{' warn' if k.warn else ''}'><span class='label'>{esc(k.label)}</span>"
        f"<span class='value'>{esc(k.text)}</span></div>" for k in numbers)
    return f"<div class='keynums'>{cells}</div>"


def metrics_table(metrics: dict[str, Any], declared: Mapping[str, str] | None = None) -> str:
    """Every metric (nested ones by dotted name) in a collapsed table."""
    rows = flat_metrics(metrics)
    if not rows:
        return ""
    body = "".join(
        f"<tr><th><code>{esc(name)}</code></th><td class='{'num' if is_number(v) else ''}'>"
        f"{esc(format_value(name.rsplit('.', 1)[-1], v, declared))}</td></tr>" for name, v in rows)
    return (f"<details><summary>All metrics ({len(rows)})</summary><div class='scroll'><table><tr><th>metric</th>"
            f"<th>value</th></tr>{body}</table></div></details>")


def links_list(name: str, links: list[Link]) -> str:
    """What stage ``name`` reads from the others, then who reads from it."""
    items = []
    for link in links:
        if link.target == name:
            if link.what == "model":
                items.append(f"uses the model trained in {stage_link(link.source)}")
            elif link.what == "value":
                value = f" <code>{esc(link.output)}</code>" if link.output else ""
                items.append(f"takes the value{value} from {stage_link(link.source)}")
            else:
                out = f" (output <code>{esc(link.output)}</code>)" if link.output else ""
                items.append(f"reads the data of {stage_link(link.source)}{out}")
    for link in links:
        if link.source == name:
            if link.what == "model":
                what = "its model"
            elif link.what == "value":
                what = f"the value <code>{esc(link.output)}</code>" if link.output else "a value from it"
            else:
                what = f"its output <code>{esc(link.output)}</code>" if link.output else "its data"
            items.append(f"{stage_link(link.target)} uses {what}")
    return "<ul class='links'>" + "".join(f"<li>{i}</li>" for i in items) + "</ul>" if items else ""


def figure(path: Path) -> str:
    """One figure, embedded; a file that is not a PNG gets a note instead."""
    data = path.read_bytes()
    size = png_size(data)
    if size is None:
        return (f"<figure><p class='warn'>{esc(path.name)} is not a PNG image and is left out.</p>"
                "</figure>")
    encoded = base64.b64encode(data).decode("ascii")
    cap = caption(path)
    wide = " class='wide'" if is_wide(size) else ""
    return (f"<figure{wide}><img alt=\"{esc(cap)}\" width=\"{size[0]}\" height=\"{size[1]}\" "
            f"src=\"data:image/png;base64,{encoded}\"><figcaption>{esc(cap)} "
            f"<code>{esc(path.name)}</code></figcaption></figure>")


# ---- the summary table and the stage sections ---------------------------------------------------------


def summary_row(stage: StageView, links: list[Link]) -> str:
    """The stage's row in the summary: status, time, what it reads, and its first key numbers (or its error)."""
    info, status = stage.info, stage.status
    deps = sorted({lk.source for lk in links if lk.target == stage.name})
    if status == "failed":
        key_cell = f"<span class='warn'>{esc(first_line(info.get('error') or 'failed'))}</span>"
    elif status == "waiting":
        key_cell = f"<span class='warn'>{esc(first_line(info.get('waiting') or 'waiting'))}</span>"
    else:
        key_cell = "<ul class='keys'>" + "".join(
            f"<li class=warn>warning: {esc(first_line(n['message']))}</li>" for n in stage.notes) + "".join(
            f"<li{' class=warn' if k.warn else ''}><code>{esc(k.label)}</code> {esc(k.text)}</li>"
            for k in stage.numbers[:SUMMARY_KEY_NUMBERS]) + "</ul>"
    return (f"<tr><td>{stage_link(stage.name)}</td><td>{esc(info.get('task', ''))}</td><td>{status_badge(status)}"
            f"</td><td class='num'>{esc(duration(info.get('seconds')))}</td>"
            f"<td>{', '.join(stage_link(d) for d in deps)}</td><td>{key_cell}</td></tr>")


def _state(stage: StageView) -> str:
    """The box that says why a stage has no results: its error, what it waits for, or that it did not run."""
    info, status = stage.info, stage.status
    if status == "failed":
        trace = (f"<details><summary>Traceback (from run.log)</summary><pre>{esc(stage.traceback)}</pre></details>"
                 if stage.traceback else "")
        return f"<div class='error'><b>This stage failed.</b><pre>{esc(info.get('error') or '')}</pre>{trace}</div>"
    if status == "waiting":
        return f"<div class='note'><b>Waiting for results.</b><pre>{esc(info.get('waiting', ''))}</pre></div>"
    if status in ("pending", "created"):
        return "<p class='muted'>This stage did not run (the run stopped before it).</p>"
    if status == "running":
        return ("<p class='note'>This stage was running when the run stopped: "
                "<code>reflow run --resume RUN_DIR</code> continues it.</p>")
    return ""


def _used_values(values: dict[str, Any]) -> str:
    if not values:
        return ""
    rows = "".join(f"<tr><td><code>{esc(ref)}</code></td><td class='num'>{esc(format_number(v))}</td></tr>"
                   for ref, v in values.items())
    return ("<h3>Stage values used</h3><div class='scroll'><table><tr><th>reference</th><th>value</th></tr>"
            f"{rows}</table></div>")


def _files(stage: StageView) -> str:
    files = [f"<code>{esc(o)}</code>" for o in stage.files]
    if stage.has_model:
        files.append(f"<code>{esc(MODEL_DIR)}/</code> (saved model)")
    return f"<p class='muted'>Files in <code>{esc(stage.name)}/</code>: {', '.join(files)}</p>" if files else ""


def stage_section(stage: StageView, links: list[Link]) -> str:
    """One stage's section: heading, links, warnings, its state, values used, key numbers, figures, metrics."""
    info, status = stage.info, stage.status
    took = (f" <span class='task'>in {esc(duration(info.get('seconds')))}</span>"
            if info.get("seconds") is not None else "")
    part = [f"<section class='stage {esc(status)}' id='stage-{esc(stage.name)}'><h2>{esc(stage.name)} "
            f"<span class='task'>task {esc(info.get('task', ''))}</span> · {status_badge(status)}{took}</h2>",
            links_list(stage.name, links)]
    part += [f"<div class='note'><b>Warning: failed {esc(note.get('what', 'evaluations'))}.</b>"
             f"<pre>{esc(note['message'])}</pre></div>" for note in stage.notes]
    part.append(_state(stage))
    part.append(_used_values(stage.used_values))
    if stage.metrics_problem:
        part.append(f"<p class='warn'>{esc(stage.metrics_problem)}</p>")
    if stage.numbers:
        part.append("<h3>Key numbers</h3>" + keynum_grid(stage.numbers))
    if stage.figures:
        part.append(f"<h3>Figures ({len(stage.figures)})</h3><div class='figs'>"
                    + "".join(figure(p) for p in stage.figures) + "</div>")
    part.append(metrics_table(stage.metrics, stage.declared_units))
    part.append(_files(stage))
    part.append("</section>")
    return "".join(part)


# ---- the page -----------------------------------------------------------------------------------------

PAGE = Template(
    "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
    "<meta name='viewport' content='width=device-width, initial-scale=1'>"
    "<title>$study: reflow report</title><style>$css</style></head><body><main>"
    "<p class='muted'>reflow report · run <code>$run_name</code></p>"
    "<h1>$study</h1>"
    "$description"
    "<div class='facts'>$facts</div>"
    "<h2>Stages</h2><div class='scroll'><table><tr><th>stage</th><th>task</th><th>status</th><th>time</th>"
    "<th>reads from</th><th>key numbers</th></tr>$summary_rows</table></div>"
    "<details><summary>Run details: versions, plugins</summary><div class='scroll'><table>"
    "$run_info</table>$plugins</div></details>"
    "$sections"
    "<footer>Written by reflow $version at $written. Rebuild it with <code>reflow report $run_dir</code>.</footer>"
    "</main></body></html>"
)
"""The page: the summary (facts, the stages table, run details) and then one section per stage."""


def _facts(view: RunView) -> str:
    manifest = view.manifest
    done = sum(1 for s in view.stages if s.info.get("status") == "done")
    total = sum(float(s.info["seconds"]) for s in view.stages if is_number(s.info.get("seconds")))
    facts = [
        ("status", status_badge(str(manifest.get("status", "")))),
        ("stages", esc(f"{len(view.stages)} ({done} done)")), ("seed", esc(manifest.get("seed", ""))),
        ("device", esc(_device(manifest))), ("started", esc(_when(manifest.get("created", "")))),
        ("total stage time", esc(duration(total))), ("figures", esc(sum(len(s.figures) for s in view.stages))),
    ]
    return "".join(f"<div class='fact'><span class='label'>{esc(label)}</span><span class='value'>{value}</span>"
                   "</div>" for label, value in facts)


def _run_info(view: RunView) -> str:
    manifest = view.manifest
    versions = manifest.get("versions", {})
    rows = [("run folder", view.run_dir.name), ("study file", manifest.get("study_file") or ""),
            ("git sha", manifest.get("git_sha") or ""), ("executor", json.dumps(manifest.get("executor"))),
            ("platform", manifest.get("platform", ""))] + list(versions.items())
    return "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in rows)


def _plugins(manifest: dict[str, Any]) -> str:
    rows = "".join(f"<tr><td><code>{esc(n)}</code></td><td>{esc(p.get('kind', ''))}</td>"
                   f"<td>{esc(p.get('plugin', ''))}</td></tr>" for n, p in manifest.get("plugins", {}).items())
    return f"<table><tr><th>component</th><th>kind</th><th>plugin</th></tr>{rows}</table>" if rows else ""


def page(view: RunView) -> str:
    """The whole report page for ``view``."""
    return PAGE.substitute(
        study=esc(view.study), css=CSS, run_name=esc(view.run_dir.name),
        description=f"<p class='description'>{esc(view.description)}</p>" if view.description else "",
        facts=_facts(view), summary_rows="".join(summary_row(s, view.links) for s in view.stages),
        run_info=_run_info(view), plugins=_plugins(view.manifest),
        sections="".join(stage_section(s, view.links) for s in view.stages),
        version=esc(view.manifest.get("versions", {}).get("reflow", "")), written=esc(view.written),
        run_dir=esc(view.run_dir),
    )


def _device(manifest: dict[str, Any]) -> str:
    device = str(manifest.get("device", ""))
    requested = manifest.get("device_requested")
    return f"{device} (asked: {requested})" if requested and requested != device else device


def _when(stamp: str) -> str:
    """``2026-11-23T16:03:15+0000`` -> ``2026-11-23 16:03:15 +0000``."""
    return stamp.replace("T", " ", 1)[:19] + (f" {stamp[19:]}" if len(stamp) > 19 else "")

"""report.html: one self-contained page per run, written for the engineer who reads the results.

The page starts with a summary (study, description, seed, device, start, total time, and every stage's
status with its key numbers), then one section per stage: its key numbers, the links to the stages it
reads from and that read from it, its error if it failed, every figure (PNG, embedded as base64), and
the full metrics table (collapsed). Everything is inline (CSS and images): the file can be mailed or
archived on its own, and it loads nothing from anywhere.

Key numbers: a stage may name its own in ``metrics.json`` under ``headline`` (a dict shown first);
otherwise the most telling ones are picked by name (trial counts, best objectives, R2/RMSE, B-lives
with their bounds, output ranges).
"""

from __future__ import annotations

import base64
import html
import json
import logging
import math
import re
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reflow.store import RESOLVED, atomic_write_text, read_manifest
from reflow.units import units_from_name

log = logging.getLogger("reflow")

REPORT = "report.html"
MAX_KEY_NUMBERS = 8
"""Key numbers per stage section; the summary table shows the first :data:`SUMMARY_KEY_NUMBERS`."""
SUMMARY_KEY_NUMBERS = 4
WIDE_FIGURE = 1.7
"""Figures at least this much wider than high span the whole row of the figure grid."""

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_VALUE_REF = re.compile(r"^\s*\$\{\s*([A-Za-z_][A-Za-z0-9_-]*)\.")
_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}")

_CSS = """
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


# ---- numbers and units ---------------------------------------------------------------------------------

_QUALIFIERS = ("_min", "_max", "_lower", "_upper", "_mean", "_std")
_DISPLAY_UNITS = {"um": "µm", "degC": "°C"}


def units_of(name: str) -> str:
    """The units a metric's name states, for display: ``b10_cycles_lower`` -> ``cycles``, ``warpage_um`` -> ``µm``."""
    base = name
    for q in _QUALIFIERS:
        if base.endswith(q):
            base = base[: -len(q)]
            break
    if "seconds" in base.split("_") or base.endswith("_seconds"):
        return "s"
    if base.startswith("best_"):
        base = base[5:]
    units = units_from_name(base)
    return _DISPLAY_UNITS.get(units, units)


def format_number(value: Any) -> str:
    """A number as an engineer reads it: 4 significant digits, no exponent between 1e-3 and 1e9."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}".replace(",", "\u2009")
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        if math.isinf(value):
            return "∞" if value > 0 else "−∞"
        magnitude = abs(value)
        if magnitude == 0:
            return "0"
        if 1e4 <= magnitude < 1e9:
            return f"{value:,.0f}".replace(",", "\u2009")
        if 1e-3 <= magnitude < 1e4:
            return f"{value:.4g}"
        return f"{value:.3e}"
    return str(value)


def format_value(name: str, value: Any) -> str:
    """``value`` with the units its ``name`` carries (plain text; the caller escapes it)."""
    if isinstance(value, bool):
        return format_number(value)
    if isinstance(value, (int, float)):
        units = units_of(name)
        text = format_number(value)
        if not units or text in ("n/a", "∞", "−∞"):
            return text
        return f"{text} {units}" if units != "%" else f"{text} %"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


# ---- key numbers --------------------------------------------------------------------------------------


@dataclass
class KeyNumber:
    """One key number of a stage: a label (the metric's name) and its formatted value."""

    label: str
    text: str
    warn: bool = False
    priority: int = 0


_PRIORITY = (
    (1, re.compile(r"^(trials|evaluations|samples|units)$")),
    (2, re.compile(r"^(best_.+|hypervolume|pareto_points)$")),
    (3, re.compile(r".+_(r2|rmse|accuracy|f1|auc|map)$")),
    (4, re.compile(r"^(.+_)?b\d+(_.+)?$")),
    (5, re.compile(r"^(mean_life|mttf.*|median_.+)$")),
    (6, re.compile(r"^(beta|eta|shape|scale)$|.+_mae$|^test_samples$")),
)
_RANGE_PRIORITY = 7
_OTHER_PRIORITY = 9
_HIDDEN = {"ok", "failed", "feasible", "failures", "train_samples", "val_samples", "confidence", "best_trial"}


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _priority(name: str) -> int:
    for prio, pattern in _PRIORITY:
        if pattern.match(name):
            return prio
    return _OTHER_PRIORITY


def key_numbers(metrics: dict[str, Any], limit: int = MAX_KEY_NUMBERS) -> list[KeyNumber]:
    """The few numbers that say how a stage went, most telling first.

    ``headline`` (a dict in ``metrics.json``) comes first and whole. Then, by name: trial counts (with the
    failed ones), best objectives, hypervolume, R2/RMSE/accuracy, B-lives and life-model constants (with
    their ``_lower``/``_upper`` bounds), and the ``_min``/``_max`` ranges of outputs.
    """
    out: list[KeyNumber] = []
    headline = metrics.get("headline")
    if isinstance(headline, dict):
        for name, value in headline.items():
            out.append(KeyNumber(str(name), format_value(str(name), value), priority=0))
    scalars = {k: v for k, v in metrics.items() if k != "headline" and (_is_number(v) or isinstance(v, str))}
    used: set[str] = set()
    candidates: list[KeyNumber] = []

    counted = _counts(scalars)
    if counted is not None:
        candidates.append(counted)
        used.update(("trials", "ok", "failed", "evaluations", "feasible", "units", "failures"))
    if scalars.get("test_samples") == 0:
        used.add("test_samples")
    confidence = scalars.get("confidence")
    for name, value in scalars.items():
        if name in used or name in _HIDDEN or not _is_number(value):
            continue
        for q in ("_lower", "_upper"):
            if name.endswith(q) and name[: -len(q)] in scalars:
                break
        else:
            if name.endswith("_min") and _is_number(scalars.get(name[:-4] + "_max")):
                base = name[:-4]
                lo, hi = value, scalars[base + "_max"]
                text = format_value(name, lo) if lo == hi else (
                    f"{format_number(lo)} … {format_value(base + '_max', hi)}")
                # what varied over the trials says more than a constant or a bound of a constant
                telling = lo != hi and not base.endswith(("_lower", "_upper"))
                candidates.append(KeyNumber(base, text, priority=_RANGE_PRIORITY if telling else _OTHER_PRIORITY))
                used.update((name, base + "_max"))
                continue
            if name.endswith("_max") and _is_number(scalars.get(name[:-4] + "_min")):
                continue
            text = format_value(name, value)
            lower, upper = scalars.get(name + "_lower"), scalars.get(name + "_upper")
            if _is_number(lower) and _is_number(upper):
                level = f"{format_number(confidence * 100)} % " if _is_number(confidence) and confidence < 1 else ""
                text += f" ({level}bounds {format_number(lower)} … {format_number(upper)})"
            elif _is_number(lower):
                text += f" (lower bound {format_number(lower)})"
            candidates.append(KeyNumber(name, text, priority=_priority(name)))
            used.add(name)
    ranked = sorted(candidates, key=lambda k: k.priority)  # stable: metrics.json order within a priority
    chosen = [k for k in ranked if k.priority < _OTHER_PRIORITY]
    if len(chosen) < 3:  # nothing recognised: show the first few numbers as they come
        chosen += [k for k in ranked if k.priority == _OTHER_PRIORITY][: 3 - len(chosen)]
    return (out + chosen)[: max(limit, len(out))]


def _counts(m: dict[str, Any]) -> KeyNumber | None:
    """``trials: 32 (32 ok, 0 failed)``, flagged when any failed."""
    failed = m.get("failed")
    if _is_number(m.get("trials")):
        parts = [f"{format_number(m[k])} {k}" for k in ("ok", "failed") if _is_number(m.get(k))]
        text = format_number(m["trials"]) + (f" ({', '.join(parts)})" if parts else "")
        return KeyNumber("trials", text, warn=_is_number(failed) and failed > 0, priority=1)
    if _is_number(m.get("evaluations")):
        parts = [f"{format_number(m[k])} {k}" for k in ("failed", "feasible") if _is_number(m.get(k))]
        text = format_number(m["evaluations"]) + (f" ({', '.join(parts)})" if parts else "")
        warn = (_is_number(failed) and failed > 0) or m.get("feasible") == 0
        return KeyNumber("evaluations", text, warn=bool(warn), priority=1)
    if _is_number(m.get("units")) and _is_number(m.get("failures")):  # a life test
        units, failures = m["units"], m["failures"]
        return KeyNumber("units", f"{format_number(units)} ({format_number(failures)} failed, "
                                  f"{format_number(units - failures)} suspended)", priority=1)
    return None


def flat_metrics(metrics: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Every metric as (dotted name, value); nested dicts are flattened, lists kept whole."""
    rows: list[tuple[str, Any]] = []
    for name, value in metrics.items():
        key = f"{prefix}{name}"
        if isinstance(value, dict) and value:
            rows.extend(flat_metrics(value, key + "."))
        else:
            rows.append((key, value))
    return rows


# ---- stage links --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Link:
    """Stage ``target`` reads ``what`` (``data`` or ``model``) of stage ``source``; ``output`` names it."""

    source: str
    target: str
    what: str
    output: str | None = None


def stage_links(run_dir: Path) -> list[Link]:
    """Which stage reads which other stage's data or model, from the run's resolved study.

    The stored study is validated again (as ``reflow report`` does); if that fails (a plugin it used is
    gone), its YAML is scanned for ``{stage: NAME}`` models and ``stage``/``stage.output`` references.
    """
    path = Path(run_dir) / RESOLVED
    if not path.exists():
        return []
    try:
        return _validated_links(path)
    except Exception as exc:  # the report must still come out: fall back to the raw YAML
        log.info("report: stage links from the raw study (it does not validate now: %s)", exc)
    return _raw_links(path)


def _validated_links(path: Path) -> list[Link]:
    from reflow.specs import ComponentSpec, DataRef
    from reflow.study import _walk, validate_study
    from reflow.yamlio import load_with_lines

    raw, lines = load_with_lines(path.read_text(), str(path))
    study = validate_study(raw, lines=lines, source=str(path), path=path)
    links: list[Link] = []
    for name, stage in study.stages.items():
        for _, item in _walk(stage.params, (), raw["stages"][name]):
            if isinstance(item, DataRef):
                links.append(Link(item.stage, name, "data", item.output))
            elif isinstance(item, ComponentSpec) and item.stage is not None:
                links.append(Link(item.stage, name, "model"))
        for _, ref in getattr(stage, "values", None) or []:  # ${stage.metric} and the like
            links.append(Link(ref.stage, name, "value", getattr(ref, "text", None)))
        linked = {lk.source for lk in links if lk.target == name}
        links.extend(Link(dep, name, "data") for dep in stage.depends_on if dep not in linked)
    return _unique(links)


def _raw_links(path: Path) -> list[Link]:
    import yaml

    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return []
    stages = raw.get("stages") if isinstance(raw, dict) else None
    if not isinstance(stages, dict):
        return []
    names = set(stages)
    links: list[Link] = []

    def walk(obj: Any, target: str) -> None:
        if isinstance(obj, dict):
            if len(obj) == 1 and obj.get("stage") in names:
                links.append(Link(obj["stage"], target, "model"))
                return
            for key, value in obj.items():
                if key == "task":
                    continue
                walk(value, target)
        elif isinstance(obj, list):
            for value in obj:
                walk(value, target)
        elif isinstance(obj, str):
            value = _VALUE_REF.match(obj)
            if value and value.group(1) in names:
                links.append(Link(value.group(1), target, "value", obj.strip()))
                return
            stage, _, output = obj.partition(".")
            if stage in names and stage != target and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", output or "x"):
                links.append(Link(stage, target, "data", output or None))

    for name, body in stages.items():
        walk(body, name)
    return _unique(links)


def _unique(links: list[Link]) -> list[Link]:
    return list(dict.fromkeys(links))


# ---- figures ------------------------------------------------------------------------------------------


def png_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG's header, or None when ``data`` is not a PNG."""
    if len(data) < 24 or not data.startswith(_PNG_SIGNATURE) or data[12:16] != b"IHDR":
        return None
    return struct.unpack(">II", data[16:24])


_CAPTION_WORDS = {
    "factors": "against each factor",
    "parity": "predicted against held-out truth",
    "probability": "probability plot",
    "convergence": "convergence",
}


def caption(path: Path) -> str:
    """A caption from a figure's file name: ``tj_c_vs_ic_a_by_age`` -> ``tj_c vs ic_a, coloured by age``."""
    stem = path.stem
    by = ""
    if "_by_" in stem:
        stem, by = stem.split("_by_", 1)
    if "_vs_" in stem:
        y, x = stem.split("_vs_", 1)
        text = f"{y} vs {x}"
    else:
        head, _, tail = stem.rpartition("_")
        if head and tail in _CAPTION_WORDS:
            text = f"{head}: {_CAPTION_WORDS[tail]}"
        else:
            text = stem.replace("_", " ")
            text = text[:1].upper() + text[1:]
    return text + (f", coloured by {by}" if by else "")


def stage_figures(folder: Path, planned: list[str] | None = None) -> list[Path]:
    """Every PNG in a stage's folder: the task's own order first (the manifest's ``plots``), then by name."""
    found = {p.name: p for p in sorted(Path(folder).glob("*.png"))}
    ordered = [found.pop(n) for n in (planned or []) if n in found]
    return ordered + list(found.values())


def _figure(path: Path) -> str:
    data = path.read_bytes()
    size = png_size(data)
    if size is None:
        return (f"<figure><p class='warn'>{html.escape(path.name)} is not a PNG image and is left out.</p>"
                "</figure>")
    encoded = base64.b64encode(data).decode("ascii")
    cap = caption(path)
    wide = " class='wide'" if size[0] >= WIDE_FIGURE * size[1] else ""
    return (f"<figure{wide}><img alt=\"{html.escape(cap)}\" width=\"{size[0]}\" height=\"{size[1]}\" "
            f"src=\"data:image/png;base64,{encoded}\"><figcaption>{html.escape(cap)} "
            f"<code>{html.escape(path.name)}</code></figcaption></figure>")


# ---- errors -------------------------------------------------------------------------------------------


def stage_traceback(run_dir: Path, stage: str) -> str:
    """The last traceback that ``run.log`` holds for ``stage``, or ``""``."""
    path = Path(run_dir) / "run.log"
    if not path.exists():
        return ""
    lines = path.read_text(errors="replace").splitlines()
    marker = f"stage {stage} failed:"
    found = ""
    for i, line in enumerate(lines):
        if _TIMESTAMP.match(line) and line.rstrip().endswith(marker):
            body = []
            for following in lines[i + 1:]:
                if _TIMESTAMP.match(following):
                    break
                body.append(following)
            found = "\n".join(body).strip()
    return found


def failure_notes(folder: Path, status: str = "done") -> list[dict[str, Any]]:
    """The warnings a stage gave about its failed evaluations (``failures.json``), to show on the page.

    A note whose verdict is ``failed`` is the stage's own error, shown as such when the stage failed.
    """
    from reflow.evaluation import read_failures

    notes = [n for n in read_failures(folder).values() if isinstance(n, dict) and n.get("message")]
    return [n for n in notes if n.get("verdict") == "warning" or status != "failed"]


# ---- the page -----------------------------------------------------------------------------------------


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _status(status: str) -> str:
    return f"<span class='status status-{_e(status)}'>{_e(_STATUS_TEXT.get(status, status))}</span>"


def _stage_link(name: str) -> str:
    return f"<a href='#stage-{_e(name)}'>{_e(name)}</a>"


def _seconds(value: Any) -> str:
    if not _is_number(value):
        return ""
    value = float(value)
    if value < 60:
        return f"{value:.1f} s"
    minutes, seconds = divmod(value, 60)
    if minutes < 60:
        return f"{int(minutes)} min {seconds:02.0f} s"
    hours, minutes = divmod(minutes, 60)
    return f"{int(hours)} h {int(minutes):02d} min"


def _read_metrics(folder: Path) -> tuple[dict[str, Any], str]:
    path = folder / "metrics.json"
    if not path.exists():
        return {}, ""
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        return {}, f"metrics.json cannot be read: {exc}"
    return (data, "") if isinstance(data, dict) else ({}, "metrics.json is not a mapping")


def _stage_values(folder: Path) -> dict[str, Any]:
    """The ``${...}`` numbers a stage ran with (``stage_values.json``), or ``{}``."""
    path = folder / "stage_values.json"
    try:
        data = json.loads(path.read_text()) if path.exists() else {}
    except (OSError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def _resolved_header(run_dir: Path) -> dict[str, Any]:
    import yaml

    path = run_dir / RESOLVED
    try:
        raw = yaml.safe_load(path.read_text()) if path.exists() else {}
    except (OSError, yaml.YAMLError):
        return {}
    return raw if isinstance(raw, dict) else {}


def _keynum_grid(numbers: list[KeyNumber]) -> str:
    if not numbers:
        return ""
    cells = "".join(
        f"<div class='keynum{' warn' if k.warn else ''}'><span class='label'>{_e(k.label)}</span>"
        f"<span class='value'>{_e(k.text)}</span></div>" for k in numbers)
    return f"<div class='keynums'>{cells}</div>"


def _metrics_table(metrics: dict[str, Any]) -> str:
    rows = flat_metrics(metrics)
    if not rows:
        return ""
    body = "".join(
        f"<tr><th><code>{_e(name)}</code></th><td class='{'num' if _is_number(v) else ''}'>"
        f"{_e(format_value(name.rsplit('.', 1)[-1], v))}</td></tr>" for name, v in rows)
    return (f"<details><summary>All metrics ({len(rows)})</summary><div class='scroll'><table><tr><th>metric</th>"
            f"<th>value</th></tr>{body}</table></div></details>")


def _links_html(name: str, links: list[Link]) -> str:
    items = []
    for link in links:
        if link.target == name:
            if link.what == "model":
                items.append(f"uses the model trained in {_stage_link(link.source)}")
            elif link.what == "value":
                value = f" <code>{_e(link.output)}</code>" if link.output else ""
                items.append(f"takes the value{value} from {_stage_link(link.source)}")
            else:
                out = f" (output <code>{_e(link.output)}</code>)" if link.output else ""
                items.append(f"reads the data of {_stage_link(link.source)}{out}")
    for link in links:
        if link.source == name:
            if link.what == "model":
                what = "its model"
            elif link.what == "value":
                what = f"the value <code>{_e(link.output)}</code>" if link.output else "a value from it"
            else:
                what = f"its output <code>{_e(link.output)}</code>" if link.output else "its data"
            items.append(f"{_stage_link(link.target)} uses {what}")
    return "<ul class='links'>" + "".join(f"<li>{i}</li>" for i in items) + "</ul>" if items else ""


def render(run_dir: Path) -> str:
    """The report's HTML for ``run_dir``: summary, then one section per stage, figures embedded."""
    run_dir = Path(run_dir)
    manifest = read_manifest(run_dir)
    header = _resolved_header(run_dir)
    stages: dict[str, dict[str, Any]] = manifest.get("stages", {})
    links = stage_links(run_dir)
    study = manifest.get("study") or header.get("study", "")
    description = header.get("description", "")

    sections: list[str] = []
    summary_rows: list[str] = []
    total_seconds = 0.0
    figure_count = 0
    for name, info in stages.items():
        folder = run_dir / name
        status = str(info.get("status", ""))
        metrics, metrics_problem = _read_metrics(folder)
        numbers = key_numbers(metrics)
        if _is_number(info.get("seconds")):
            total_seconds += float(info["seconds"])
        deps = sorted({lk.source for lk in links if lk.target == name})
        notes = failure_notes(folder, status)
        if status == "failed":
            key_cell = f"<span class='warn'>{_e(_first_line(info.get('error') or 'failed'))}</span>"
        elif status == "waiting":
            key_cell = f"<span class='warn'>{_e(_first_line(info.get('waiting') or 'waiting'))}</span>"
        else:
            key_cell = "<ul class='keys'>" + "".join(
                f"<li class=warn>warning: {_e(_first_line(n['message']))}</li>" for n in notes) + "".join(
                f"<li{' class=warn' if k.warn else ''}><code>{_e(k.label)}</code> {_e(k.text)}</li>"
                for k in numbers[:SUMMARY_KEY_NUMBERS]) + "</ul>"
        summary_rows.append(
            f"<tr><td>{_stage_link(name)}</td><td>{_e(info.get('task', ''))}</td><td>{_status(status)}</td>"
            f"<td class='num'>{_e(_seconds(info.get('seconds')))}</td>"
            f"<td>{', '.join(_stage_link(d) for d in deps)}</td><td>{key_cell}</td></tr>")

        part = [f"<section class='stage {_e(status)}' id='stage-{_e(name)}'><h2>{_e(name)} "
                f"<span class='task'>task {_e(info.get('task', ''))}</span> · {_status(status)}"
                + (f" <span class='task'>in {_e(_seconds(info.get('seconds')))}</span>" if info.get("seconds")
                   is not None else "") + "</h2>"]
        part.append(_links_html(name, links))
        for note in notes:
            part.append(f"<div class='note'><b>Warning: failed {_e(note.get('what', 'evaluations'))}.</b>"
                        f"<pre>{_e(note['message'])}</pre></div>")
        if status == "failed":
            trace = stage_traceback(run_dir, name)
            part.append(f"<div class='error'><b>This stage failed.</b><pre>{_e(info.get('error') or '')}</pre>"
                        + (f"<details><summary>Traceback (from run.log)</summary><pre>{_e(trace)}</pre></details>"
                           if trace else "") + "</div>")
        elif status == "waiting":
            part.append(f"<div class='note'><b>Waiting for results.</b><pre>{_e(info.get('waiting', ''))}</pre>"
                        "</div>")
        elif status in ("pending", "created"):
            part.append("<p class='muted'>This stage did not run (the run stopped before it).</p>")
        elif status == "running":
            part.append("<p class='note'>This stage was running when the run stopped: "
                        "<code>reflow run --resume RUN_DIR</code> continues it.</p>")
        used_values = _stage_values(folder)
        if used_values:
            part.append("<h3>Stage values used</h3><div class='scroll'><table><tr><th>reference</th><th>value</th>"
                        "</tr>" + "".join(
                            f"<tr><td><code>{_e(ref)}</code></td><td class='num'>{_e(format_number(v))}</td></tr>"
                            for ref, v in used_values.items()) + "</table></div>")
        if metrics_problem:
            part.append(f"<p class='warn'>{_e(metrics_problem)}</p>")
        if numbers:
            part.append("<h3>Key numbers</h3>" + _keynum_grid(numbers))
        figures = stage_figures(folder, info.get("plots"))
        if figures:
            figure_count += len(figures)
            part.append(f"<h3>Figures ({len(figures)})</h3><div class='figs'>"
                        + "".join(_figure(p) for p in figures) + "</div>")
        part.append(_metrics_table(metrics))
        outputs = sorted(p.name for p in folder.glob("*.nc")) if folder.is_dir() else []
        extras = [n for n in ("model",) if (folder / n).is_dir()]
        if outputs or extras:
            files = [f"<code>{_e(o)}</code>" for o in outputs] + [f"<code>{_e(x)}/</code> (saved model)"
                                                                  for x in extras]
            part.append(f"<p class='muted'>Files in <code>{_e(name)}/</code>: {', '.join(files)}</p>")
        part.append("</section>")
        sections.append("".join(part))

    done = sum(1 for info in stages.values() if info.get("status") == "done")
    facts = [
        ("status", None), ("stages", f"{len(stages)} ({done} done)"), ("seed", manifest.get("seed", "")),
        ("device", _device(manifest)), ("started", _when(manifest.get("created", ""))),
        ("total stage time", _seconds(total_seconds)), ("figures", str(figure_count)),
    ]
    fact_html = "".join(
        f"<div class='fact'><span class='label'>{_e(label)}</span><span class='value'>"
        f"{_status(str(manifest.get('status', ''))) if value is None else _e(value)}</span></div>"
        for label, value in facts)
    versions = manifest.get("versions", {})
    run_info = [("run folder", run_dir.name), ("study file", manifest.get("study_file") or ""),
                ("git sha", manifest.get("git_sha") or ""), ("executor", json.dumps(manifest.get("executor"))),
                ("platform", manifest.get("platform", ""))] + [(k, v) for k, v in versions.items()]
    plugins = manifest.get("plugins", {})
    plugin_rows = "".join(f"<tr><td><code>{_e(n)}</code></td><td>{_e(p.get('kind', ''))}</td>"
                          f"<td>{_e(p.get('plugin', ''))}</td></tr>" for n, p in plugins.items())
    page = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>{_e(study)}: reflow report</title><style>{_CSS}</style></head><body><main>",
        f"<p class='muted'>reflow report · run <code>{_e(run_dir.name)}</code></p>",
        f"<h1>{_e(study)}</h1>",
        f"<p class='description'>{_e(description)}</p>" if description else "",
        f"<div class='facts'>{fact_html}</div>",
        "<h2>Stages</h2><div class='scroll'><table><tr><th>stage</th><th>task</th><th>status</th><th>time</th>"
        "<th>reads from</th><th>key numbers</th></tr>", "".join(summary_rows), "</table></div>",
        "<details><summary>Run details: versions, plugins</summary><div class='scroll'><table>",
        "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in run_info),
        "</table>",
        (f"<table><tr><th>component</th><th>kind</th><th>plugin</th></tr>{plugin_rows}</table>"
         if plugin_rows else ""),
        "</div></details>",
        "".join(sections),
        f"<footer>Written by reflow {_e(versions.get('reflow', ''))} at {_e(time.strftime('%Y-%m-%d %H:%M:%S'))}"
        f". Rebuild it with <code>reflow report {_e(run_dir)}</code>.</footer>",
        "</main></body></html>",
    ]
    return "".join(page)


def _first_line(text: str) -> str:
    line = str(text).strip().splitlines()[0] if str(text).strip() else ""
    return line if len(line) <= 160 else line[:157] + "..."


def _device(manifest: dict[str, Any]) -> str:
    device = str(manifest.get("device", ""))
    requested = manifest.get("device_requested")
    return f"{device} (asked: {requested})" if requested and requested != device else device


def _when(stamp: str) -> str:
    """``2026-11-23T16:03:15+0000`` -> ``2026-11-23 16:03:15 +0000``."""
    return stamp.replace("T", " ", 1)[:19] + (f" {stamp[19:]}" if len(stamp) > 19 else "")


def write_report(run_dir: Path, replot: bool = False) -> Path:
    """(Re)build ``report.html``; with ``replot`` redraw every finished stage's figures first."""
    run_dir = Path(run_dir)
    if replot:
        from reflow.runner import load_result, open_run

        run = open_run(run_dir, quiet=True)
        for name, stage in run.study.stages.items():
            if run.manifest["stages"].get(name, {}).get("status") != "done":
                continue
            stage.create_task().plot(load_result(run_dir, name, run.study), run_dir / name)
    path = run_dir / REPORT
    atomic_write_text(path, render(run_dir))
    return path

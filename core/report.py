"""report.html: one self-contained page per run with every stage's status, metrics and figures."""

from __future__ import annotations

import base64
import html
import json
import time
from pathlib import Path
from typing import Any

from reflow.store import atomic_write_text, read_manifest

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;
color:#1d2330;padding:0 1rem}
h1{margin-bottom:.2rem} .sub{color:#5b6475;margin-top:0}
table{border-collapse:collapse;margin:.6rem 0 1rem} td,th{border:1px solid #d7dbe3;padding:.3rem .6rem;
text-align:left;font-variant-numeric:tabular-nums} th{background:#f2f4f8}
section{border-top:2px solid #e5e8ef;margin-top:1.6rem;padding-top:.4rem}
.done{color:#18794e}.failed{color:#c62828}.running,.pending,.waiting{color:#a06200}
img{max-width:100%;border:1px solid #e5e8ef;margin:.4rem 0} code{background:#f2f4f8;padding:0 .2rem}
"""


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (dict, list)):
        return html.escape(json.dumps(v)[:200])
    return html.escape(str(v))


def _table(rows: list[tuple[str, Any]]) -> str:
    if not rows:
        return ""
    body = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{_fmt(v)}</td></tr>" for k, v in rows)
    return f"<table>{body}</table>"


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<figure><img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}"></figure>'


def render(run_dir: Path) -> str:
    """The report's HTML for ``run_dir`` (figures embedded as base64 PNGs)."""
    run_dir = Path(run_dir)
    manifest = read_manifest(run_dir)
    stages = manifest.get("stages", {})
    summary = "".join(
        f'<tr><td><a href="#stage-{html.escape(n)}">{html.escape(n)}</a></td><td>{html.escape(s.get("task", ""))}'
        f'</td><td class="{html.escape(s.get("status", ""))}">{html.escape(s.get("status", ""))}</td>'
        f'<td>{_fmt(s.get("seconds", ""))}</td></tr>'
        for n, s in stages.items()
    )
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>reflow: {html.escape(manifest.get('study', ''))}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(manifest.get('study', ''))}</h1>",
        f"<p class='sub'>run {html.escape(run_dir.name)} · status <b>{html.escape(manifest.get('status', ''))}"
        f"</b> · seed {manifest.get('seed')} · device {html.escape(str(manifest.get('device')))} · reflow "
        f"{html.escape(manifest.get('versions', {}).get('reflow', '?'))}</p>",
        "<h2>Summary</h2><table><tr><th>stage</th><th>task</th><th>status</th><th>seconds</th></tr>",
        summary, "</table>",
    ]
    for name, info in stages.items():
        folder = run_dir / name
        parts.append(f"<section id='stage-{html.escape(name)}'><h2>{html.escape(name)} "
                     f"<small>({html.escape(info.get('task', ''))})</small></h2>")
        if info.get("error"):
            parts.append(f"<p class='failed'>error: <code>{html.escape(str(info['error']))}</code></p>")
        metrics_path = folder / "metrics.json"
        if metrics_path.exists():
            metrics = json.loads(metrics_path.read_text())
            parts.append(_table([(k, v) for k, v in metrics.items() if not isinstance(v, (dict, list))]))
        for png in sorted(folder.glob("*.png")):
            parts.append(_img(png))
        outputs = sorted(p.name for p in folder.glob("*.nc"))
        if outputs:
            parts.append("<p>outputs: " + ", ".join(f"<code>{html.escape(o)}</code>" for o in outputs) + "</p>")
        parts.append("</section>")
    parts.append(f"<p class='sub'>written {time.strftime('%Y-%m-%d %H:%M:%S')}</p></body></html>")
    return "".join(parts)


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
    path = run_dir / "report.html"
    atomic_write_text(path, render(run_dir))
    return path

"""The one place reflow meets matplotlib: a headless pyplot and a figure saver every plot goes through.

Stages draw figures in worker processes and on machines without a display, so the backend is always Agg; it
is chosen here once, not in every module that draws. matplotlib is imported on first use only, so the CLI
starts fast::

    from reflow.plotting import pyplot, save_figure

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 4))
    ...
    paths.append(save_figure(fig, folder / "parity.png"))
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

DPI = 110
"""Resolution of every stage figure (small enough for the HTML report, sharp enough to read)."""


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the headless Agg backend."""
    import matplotlib

    if matplotlib.get_backend().lower() != "agg":
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: str | Path, dpi: int = DPI, tight: bool = True) -> Path:
    """Lay out ``fig``, write it to ``path`` (its folder is made) and close it, so long runs hold no figures."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if tight:
        fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    pyplot().close(fig)
    return path

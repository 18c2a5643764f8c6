"""Task ``data``: load or generate a dataset with a data source."""

from __future__ import annotations

import logging
from pathlib import Path

import reflow
from pydantic import BaseModel, ConfigDict, Field
from reflow.plotting import pyplot, save_figure
from reflow.specs import DataSourceSpec

from ._trials import axis_label

log = logging.getLogger("reflow")


class ScatterPlot(BaseModel):
    """One scatter plot of the loaded data: ``y`` against ``x``, optionally coloured by ``color``."""

    model_config = ConfigDict(extra="forbid")

    x: str = Field(description="variable on the x axis")
    y: str = Field(description="variable on the y axis")
    color: str | None = Field(None, description="variable that colours the points (default: none)")


class DataTask(reflow.Task):
    """Load or generate a dataset (``source: {csv: {path: doe.csv}}``); its output feeds later stages.

    The source's ``plot(data, folder)`` draws its own figures into the stage folder (``synthetic-sam``: example
    images by cycle count; ``image-folder``: examples of every class; most sources draw none).
    """

    outputs = ("data",)

    class Params(reflow.Params):
        source: DataSourceSpec = Field(description="the data source and its params")
        plot: list[ScatterPlot] = Field(default_factory=list,
                                        description="scatter plots to draw, e.g. [{x: vce_sat_v, y: tj_c, "
                                                    "color: aging_cycles}] (default: none)")

    def run(self, ctx):
        source = self.params.source.create()
        ds = source.load(ctx)
        ds.attrs.setdefault("source", self.params.source.name)
        n = ds.sizes.get("sample", next(iter(ds.sizes.values()), 0))
        return reflow.StageResult({"data": ds}, {"samples": int(n), "variables": len(ds.data_vars)})

    def plot(self, result, folder: Path):
        ds = result.outputs["data"]
        source = self.params.source.create()
        paths = [Path(p) for p in source.plot(ds, Path(folder))]  # e.g. example images; most sources draw none
        if not self.params.plot:
            return paths
        plt = pyplot()

        for spec in self.params.plot:
            names = [n for n in (spec.x, spec.y, spec.color) if n is not None]
            missing = [n for n in names if n not in ds or ds[n].ndim != 1]
            if missing:  # the data exists by now: a plot typo must not fail the stage
                log.warning("data plot %s vs %s skipped: no 1-d variable(s) %s (variables: %s)", spec.y, spec.x,
                            ", ".join(missing), ", ".join(map(str, ds.data_vars)))
                continue
            fig, ax = plt.subplots(figsize=(6, 4.6))
            kwargs = {"c": ds[spec.color].values, "cmap": "viridis"} if spec.color else {}
            sc = ax.scatter(ds[spec.x].values, ds[spec.y].values, s=12, alpha=0.8, **kwargs)
            if spec.color:
                fig.colorbar(sc, ax=ax, label=axis_label(ds, spec.color))
            ax.set_xlabel(axis_label(ds, spec.x))
            ax.set_ylabel(axis_label(ds, spec.y))
            ax.set_title(f"{spec.y} vs {spec.x}" + (f" by {spec.color}" if spec.color else ""), fontsize=10)
            paths.append(save_figure(fig, Path(folder) / (f"{spec.y}_vs_{spec.x}"
                                                          + (f"_by_{spec.color}" if spec.color else "") + ".png")))
        return paths

"""Task ``data``: load or generate a dataset with a data source."""

from __future__ import annotations

import reflow
from pydantic import Field
from reflow.specs import DataSourceSpec


class DataTask(reflow.Task):
    """Load or generate a dataset (``source: {csv: {path: doe.csv}}``); its output feeds later stages."""

    outputs = ("data",)

    class Params(reflow.Params):
        source: DataSourceSpec = Field(description="the data source and its params")

    def run(self, ctx):
        source = self.params.source.create()
        ds = source.load(ctx)
        ds.attrs.setdefault("source", self.params.source.name)
        n = ds.sizes.get("sample", next(iter(ds.sizes.values()), 0))
        return reflow.StageResult({"data": ds}, {"samples": int(n), "variables": len(ds.data_vars)})

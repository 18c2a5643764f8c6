"""Task ``predict``: apply a model an earlier stage trained to new data (a new lot, new designs)."""

from __future__ import annotations

import numpy as np
import reflow
from pydantic import Field
from reflow.plotting import pyplot, save_figure
from reflow.specs import ModelSpec, StageData
from reflow.tables import row_dim

from ._predictions import carry_units, variable_units


class PredictTask(reflow.Task):
    """Predict with ``model: {stage: NAME}`` on ``data``; output ``predictions``.

    The predictions keep the data's one-dimensional variables (labels, ids, known truths) and add the model's
    ``<target>_mean`` (and ``_std``, ``_pred``, ``_prob``...) in the units of the model's training data (else those
    of the truth in ``data``). Images are left out unless ``keep_images``. Where the data also hold a target's
    truth, the metrics score the predictions against it (new data the model never saw).
    """

    outputs = ("predictions",)

    class Params(reflow.Params):
        model: ModelSpec = Field(description="the trained model: {stage: NAME}")
        data: StageData = Field(description="the data to predict: an earlier stage's output")
        keep_images: bool = Field(False, description="copy the images into the predictions")

    def check(self, check):
        if self.params.model.stage is None:
            check.problem(("model",), "predict uses a model an earlier stage trained: write {stage: NAME}")

    def run(self, ctx):
        from reflow.metrics import regression_metrics

        model = ctx.model(self.params.model.stage)
        data = ctx.data(self.params.data)
        dim = row_dim(data)
        missing = [f for f in model.features if f not in data]
        if missing:
            raise reflow.DataError(f"predict: the model of stage {self.params.model.stage!r} needs "
                                   f"{', '.join(missing)}, which {self.params.data} lacks "
                                   f"(it has: {', '.join(map(str, data.data_vars))})")
        pred = model.predict(data, ctx)
        keep = [n for n in data.data_vars if data[n].dims == (dim,)]
        out = data[keep + (["image"] if self.params.keep_images and "image" in data else [])].copy()
        for name in pred.data_vars:
            values = pred[name]
            if model.family == "detector" and values.dims == ("box",):  # its box table: own dim
                out[name] = values
                continue
            out[name] = values.rename({values.dims[0]: dim}) if values.dims and values.dims[0] != dim else values
        trained = (ctx.run.store(self.params.model.stage).model_info() or {}).get("units", {})
        carry_units(out, {**variable_units(data, model.targets), **trained}, model.targets, pred.data_vars)
        metrics: dict = {"samples": int(data.sizes[dim])}
        for t in model.targets:
            mean = f"{t}_mean" if f"{t}_mean" in out else None
            if mean and t in data and data[t].dtype.kind in "fi":
                for key, value in regression_metrics(data[t].values, out[mean].values).items():
                    metrics[f"{t}_{key}"] = value
        return reflow.StageResult({"predictions": out}, metrics)

    def plot(self, result, folder):
        plt = pyplot()
        pred = result.outputs["predictions"]
        paths = []
        for name in pred.data_vars:
            if not str(name).endswith("_mean"):
                continue
            t = str(name)[: -len("_mean")]
            fig, ax = plt.subplots(figsize=(5, 4))
            if t in pred and pred[t].dtype.kind in "fi":
                y, p = pred[t].values.astype(float), pred[name].values.astype(float)
                ax.scatter(y, p, s=14, alpha=0.7)
                lo, hi = float(np.nanmin([y.min(), p.min()])), float(np.nanmax([y.max(), p.max()]))
                ax.plot([lo, hi], [lo, hi], "k--", lw=1)
                ax.set_xlabel(f"{t} (truth)")
                ax.set_ylabel(f"{t} (predicted)")
            else:
                ax.hist(pred[name].values.astype(float), bins=30)
                ax.set_xlabel(f"{t} (predicted)")
                ax.set_ylabel("samples")
            ax.set_title(f"{t}: predictions on {pred.sizes[next(iter(pred.dims))]} samples")
            paths.append(save_figure(fig, folder / f"{t}_predicted.png"))
        return paths

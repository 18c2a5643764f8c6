"""Task ``explain``: where does a trained vision model look? Grad-CAM maps (and MAE reconstructions).

Grad-CAM (Selvaraju et al. 2017) weights a layer's feature maps by the gradient of the model's output (the
regression value, or the predicted class's score) averaged over each map, keeps the positive part and scales it to
[0, 1]: bright regions are those that push the prediction up. For ViTs the layer is the first norm of the last
block (seed 003) and the patch tokens are reshaped into a grid; for CNNs it is the last conv stage.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import reflow
from pydantic import Field
from reflow.specs import ModelSpec, StageData

CAMS = "cams.png"
RECONSTRUCTIONS = "mae_reconstructions.png"


class ExplainTask(reflow.Task):
    """Grad-CAM overlays for a sample of images, with truth and prediction; for ``vit-mae`` also the original,
    masked and reconstructed images. Output ``cams``: ``cam`` and ``image`` (sample, y, x), the truth and the
    prediction per sample (and ``mae_masked``, ``mae_reconstruction`` for vit-mae)."""

    outputs = ("cams",)

    class Params(reflow.Params):
        model: ModelSpec = Field(description="the trained vision model: {stage: NAME}")
        data: StageData = Field(description="an earlier stage's image dataset (variable 'image')")
        samples: int = Field(8, ge=1, le=64, description="how many images to explain")
        target: str | None = Field(None, description="the truth to show in the titles (default: the model's target)")

    def check(self, check: Any) -> None:
        if self.params.model.stage is None:
            check.problem(("model",), "explain a trained model: {stage: NAME} of a train stage")

    def run(self, ctx: Any) -> reflow.StageResult:
        import xarray as xr
        from reflow.imaging import image_array

        from .base import VisionModel

        model = ctx.model(self.params.model.stage)
        if not isinstance(model, VisionModel):
            raise reflow.UserInputError(f"explain: stage {self.params.model.stage!r} trained a "
                                        f"{type(model).__name__}, not a vision model (vit, vit-mae, cnn)")
        data = ctx.data(self.params.data)
        images = image_array(data)
        dim = images.dims[0]
        target = self.params.target or (model.targets[0] if model.targets else None)
        n = min(self.params.samples, images.shape[0])
        rows = np.sort(ctx.rng.choice(images.shape[0], size=n, replace=False))
        if target is not None and target in data and data[target].dtype.kind in "fiub":
            rows = rows[np.argsort(np.asarray(data[target].values)[rows], kind="stable")]
        subset = data.isel({dim: rows})
        cams, shown = model.grad_cam(subset, ctx)
        pred = model.predict(subset, ctx)
        out = xr.Dataset({"cam": (("sample", "y", "x"), cams), "image": (("sample", "y", "x"), shown[:, 0])},
                         coords={"sample": np.asarray(subset[dim].values) if dim in subset.coords else rows})
        out["source_index"] = ("sample", rows.astype(np.int64))
        if target is not None and target in subset:
            out["truth"] = ("sample", np.asarray(subset[target].values))
            out["truth"].attrs["name"] = target
        for name in pred.data_vars:
            if name.endswith(("_mean", "_pred")):
                out["prediction"] = ("sample", np.asarray(pred[name].values))
                out["prediction"].attrs["name"] = str(name)
                break
        metrics: dict[str, Any] = {"samples": int(n), "model": type(model).__name__}
        if model.reconstructs:
            rec = model.reconstruct(subset, ctx)
            out["mae_masked"] = (("sample", "y", "x"), rec["masked"][:, 0])
            out["mae_reconstruction"] = (("sample", "y", "x"), rec["reconstruction"][:, 0])
            mask = rec["mask"]
            err = ((rec["reconstruction"] - rec["original"]) ** 2).mean(axis=1) * mask
            metrics["mae_masked_mse"] = float(err.sum() / max(mask.sum(), 1.0))
        out.attrs.update({"model_stage": self.params.model.stage, "target": target or ""})
        return reflow.StageResult({"cams": out}, metrics)

    def plot(self, result: reflow.StageResult, folder: Path) -> list[Path]:
        ds = result.outputs.get("cams")
        if ds is None:
            return []
        from .figures import cam_grid, reconstruction_grid

        paths = [cam_grid(ds, Path(folder) / CAMS)]
        if "mae_reconstruction" in ds:
            paths.append(reconstruction_grid(ds, Path(folder) / RECONSTRUCTIONS))
        return paths

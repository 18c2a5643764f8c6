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
        if hasattr(model, "reconstruct") and getattr(model, "pretrain_history_", None):
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
        paths = [_cam_grid(ds, Path(folder) / CAMS)]
        if "mae_reconstruction" in ds:
            paths.append(_reconstruction_grid(ds, Path(folder) / RECONSTRUCTIONS))
        return paths


def _fmt(value: Any) -> str:
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.3g}"
    return str(value)


def _grid(n: int, max_cols: int = 4) -> tuple[int, int]:
    cols = min(n, max_cols)
    return (n + cols - 1) // cols, cols


def _cam_grid(ds: Any, path: Path) -> Path:
    """Each image in gray with its Grad-CAM as a translucent heat map; truth and prediction in the title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = ds.sizes["sample"]
    rows, cols = _grid(n)
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.8 * rows), squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k >= n:
            continue
        ax.imshow(ds["image"].values[k], cmap="gray", vmin=0, vmax=1)
        ax.imshow(ds["cam"].values[k], cmap="jet", alpha=0.4, vmin=0, vmax=1)
        title = []
        if "truth" in ds:
            title.append(f"true {_fmt(ds['truth'].values[k])}")
        if "prediction" in ds:
            title.append(f"pred {_fmt(ds['prediction'].values[k])}")
        ax.set_title(", ".join(title), fontsize=9)
    target = ds.attrs.get("target") or "output"
    fig.suptitle(f"Grad-CAM of {target} (stage {ds.attrs.get('model_stage', '?')})", fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _reconstruction_grid(ds: Any, path: Path) -> Path:
    """One row per image: original, masked input, MAE reconstruction (visible patches pasted back)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = ds.sizes["sample"]
    fig, axes = plt.subplots(n, 3, figsize=(7.0, 2.3 * n), squeeze=False)
    for k in range(n):
        for j, (name, label) in enumerate((("image", "original"), ("mae_masked", "masked"),
                                           ("mae_reconstruction", "reconstruction"))):
            ax = axes[k, j]
            ax.imshow(np.clip(ds[name].values[k], 0, 1), cmap="gray", vmin=0, vmax=1)
            ax.axis("off")
            if k == 0:
                ax.set_title(label, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

"""What every vision model shares: params, target encoding, fit/predict through reflow.training, save/load,
learning-curve plots and Grad-CAM.

A subclass says only how to build its network (:meth:`VisionModel.build_module`), which layer Grad-CAM looks at,
and, optionally, what to do before supervised training (:meth:`VisionModel.before_fit`: MAE pre-training).
"""

from __future__ import annotations

import json
import logging
import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
import reflow
from pydantic import Field
from reflow.imaging import BatchTransform, Transforms, TransformStep, image_array, image_shape, parse_transform
from reflow.training import TrainingConfig, count_parameters

from .figures import loss_plot
from .weights import load_module, save_module

if TYPE_CHECKING:
    import torch
    import xarray as xr
    from reflow.context import RunContext

log = logging.getLogger("reflow.vision")

WEIGHTS = "model.safetensors"
STATE = "state.json"


class VisionParams(TrainingConfig):
    """Params shared by the vision models: the training loop's (epochs, batch_size, lr, ...) and these."""

    task: Literal["auto", "regression", "classification"] = Field(
        "auto", description="auto: regression for a float target, classification for integer, text or bool labels")
    transforms: Transforms | None = Field(
        None, description="training augmentations and evaluation preprocessing, e.g. [hflip, vflip, {crop: 56}, "
                          "{rotate: [0, 90, 180, 270]}, {normalize: {mean: 0.5, std: 0.25}}]; null: hflip, vflip and "
                          "a fixed-size crop of 7/8 of the image side (56 for 64x64 SAM images)")
    scale_target: bool = Field(True, description="standardize each regression target with its training mean and "
                                                 "std (predictions are returned in the target's own units)")
    eval_batch_size: int = Field(256, ge=1, description="images per batch when predicting")


def training_config(params: TrainingConfig, **overrides: Any) -> TrainingConfig:
    """The training loop's settings from a model's params (which extend :class:`TrainingConfig`), with
    ``overrides`` (MAE pre-training's epochs and learning rate)."""
    values = params.model_dump(include=set(TrainingConfig.model_fields))
    return TrainingConfig(**{**values, **overrides})


def training_summary(n_params: int, history: list[dict[str, Any]], best_epoch: int, seconds: float,
                     stopped_early: bool) -> dict[str, Any]:
    """What every trained network reports in its stage's metrics: size, epochs, time and the last training loss."""
    last = history[-1] if history else {}
    return {"params": n_params, "best_epoch": best_epoch, "epochs_run": len(history),
            "train_seconds": round(seconds, 3), "stopped_early": stopped_early,
            "final_train_loss": last.get("train_loss", math.nan)}


class _FamilyFromTask:
    """``family`` follows the task: the class says ``regressor``; a model fit (or set) for classification says
    ``classifier``, so the ``train`` task scores it with accuracy."""

    def __get__(self, obj: Any, owner: type | None = None) -> str:
        if obj is None:
            return "regressor"
        task = obj.task_ or obj.params.task
        return "classifier" if task == "classification" else "regressor"


def _safe_name(value: Any) -> str:
    return re.sub(r"[^0-9A-Za-z_]+", "_", str(value)).strip("_") or "class"


def _divisors(n: int) -> list[int]:
    return [d for d in range(2, n + 1) if n % d == 0]


class VisionModel(reflow.Model):
    """Base of the image models: reads the ``image`` variable (sample, channel, y, x) and learns its targets.

    ``configure``'s features are ignored (the input is the image). One target: regression (standardized) or
    classification (int, text or bool labels become class indices). Several targets: multi-output regression,
    one network output per target, each standardized, so that they weigh equally in the loss (the mean of the
    per-target MSEs); ``predict`` gives ``<target>_mean`` for each. Per-epoch metrics go to ``epochs.csv`` in the
    stage folder; ``plot(folder)`` draws the learning curve.
    """

    family: ClassVar[str] = _FamilyFromTask()  # type: ignore[assignment]
    uses_images: ClassVar[bool] = True
    """Marks image models: the input is the ``image`` variable, not the feature columns."""
    Params = VisionParams
    task_: str | None = None
    """``regression`` or ``classification`` once fitted; before, ``family`` follows ``params.task``."""

    # --- what subclasses provide -------------------------------------------------------------------------------

    def patch_multiple(self) -> int:
        """Image sides after the transforms must be a multiple of this (a ViT's patch size)."""
        return 1

    def build_module(self, in_chans: int, img_size: tuple[int, int], n_out: int) -> torch.nn.Module:
        raise NotImplementedError(f"{type(self).__name__} must implement build_module")

    def before_fit(self, train: Any, ctx: RunContext) -> None:
        """Runs after the module is built and before supervised training (``train`` is the ImageDataset)."""

    def cam_layer(self) -> torch.nn.Module:
        return self.module_.cam_layer()

    def cam_reshape(self) -> Any:
        """Grad-CAM's reshape_transform (None for conv feature maps)."""
        return None

    def save_extra(self, directory: Path) -> dict[str, Any]:
        """Write extra state files; return extra JSON state."""
        return {}

    def load_extra(self, directory: Path, state: dict[str, Any]) -> None:
        """Read what :meth:`save_extra` wrote (after the module is built)."""

    @property
    def reconstructs(self) -> bool:
        """True when :meth:`reconstruct` can show what the model learned of the images (a pre-trained masked
        autoencoder): the ``explain`` task then draws reconstructions next to Grad-CAM. The default: False."""
        return False

    def reconstruct(self, data: xr.Dataset, ctx: RunContext, seed: int | None = None) -> dict[str, np.ndarray]:
        """Masked and reconstructed images (``original``, ``masked``, ``reconstruction`` (n, C, H, W) and
        ``mask`` (n, H, W)) for models whose :attr:`reconstructs` is True."""
        raise NotImplementedError(f"{type(self).__name__} does not reconstruct images")

    # --- shared machinery ------------------------------------------------------------------------------------

    def training_config(self, **overrides: Any) -> TrainingConfig:
        return training_config(self.params, **overrides)

    def _target(self) -> str:
        if len(self.targets) != 1:
            raise reflow.UserInputError(f"{type(self).__name__} learns exactly one target; "
                                        f"got {self.targets or 'none'}")
        return self.targets[0]

    def _target_values(self, data: xr.Dataset) -> np.ndarray:
        """The targets' training values: (n,) for one target, (n, k) for several (regression only)."""
        if not self.targets:
            raise reflow.UserInputError(f"{type(self).__name__} needs a target: configure(features, [target, ...])")
        missing = [t for t in self.targets if t not in data]
        if missing:
            raise reflow.DataError(f"the training data has no target {', '.join(map(repr, missing))} "
                                   f"(has: {', '.join(map(str, data.data_vars))})")
        if len(self.targets) == 1:
            return np.asarray(data[self.targets[0]].values)
        if self.params.task == "classification":
            raise reflow.UserInputError(f"{type(self).__name__}: classification learns exactly one target; got "
                                        f"{self.targets} (several targets are learned together as regression)")
        columns = []
        for t in self.targets:
            values = np.asarray(data[t].values)
            allowed = "fiub" if self.params.task == "regression" else "f"
            if values.dtype.kind not in allowed:
                raise reflow.DataError(
                    f"{type(self).__name__}: several targets are learned together as regression of continuous "
                    f"values; target {t!r} holds {values.dtype} (labels: train a classifier on it alone; integer "
                    "counts: set task: regression)")
            columns.append(values.astype(np.float64))
        return np.column_stack(columns)

    def _scaling(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-output mean and std of the regression targets (arrays of n_out)."""
        return np.atleast_1d(np.asarray(self.target_mean_, dtype=np.float64)), \
            np.atleast_1d(np.asarray(self.target_std_, dtype=np.float64))

    def _resolve_task(self, values: np.ndarray) -> str:
        if self.params.task != "auto":
            return self.params.task
        return "regression" if values.dtype.kind == "f" else "classification"

    def _learn_target(self, values: np.ndarray) -> None:
        """Task, classes or per-target scaling from the training values (:meth:`_target_values`)."""
        target = self.targets[0]
        several = values.ndim == 2
        self.task_ = "regression" if several else self._resolve_task(values)
        if self.task_ != "regression":
            self.classes_ = class_list(values, target)
            self.target_mean_, self.target_std_ = 0.0, 1.0
            return
        if values.dtype.kind not in "fiub":
            raise reflow.DataError(f"regression target {target!r} must be numeric, got {values.dtype}; "
                                   "set task: classification for labels")
        means, stds = [], []
        for j, name in enumerate(self.targets):
            y = values.astype(np.float64)[:, j] if several else values.astype(np.float64)
            finite = y[np.isfinite(y)]
            if finite.size == 0:
                raise reflow.DataError(f"target {name!r} has no finite values")
            std = float(finite.std()) if self.params.scale_target else 1.0
            means.append(float(finite.mean()) if self.params.scale_target else 0.0)
            stds.append(std if std > 0 else 1.0)
        # one target: plain floats (as saved by earlier versions); several: one per network output
        self.target_mean_ = means if several else means[0]
        self.target_std_ = stds if several else stds[0]
        self.classes_ = []

    def _steps(self, height: int, width: int) -> list[TransformStep]:
        if self.params.transforms is not None:
            return list(self.params.transforms)
        multiple = self.patch_multiple()
        side = min(height, width)
        crop = (side * 7 // 8) // multiple * multiple
        steps = [parse_transform("hflip"), parse_transform("vflip")]
        if 0 < crop < side:
            steps.append(parse_transform({"crop": crop}))
        return steps

    def _encode(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Targets in the network's terms and a mask of the samples that can be used (known class, finite; with
        several targets, every one finite)."""
        if self.task_ == "regression":
            y = np.asarray(values, dtype=np.float64)
            ok = np.isfinite(y) if y.ndim == 1 else np.all(np.isfinite(y), axis=1)
            return ((y - self.target_mean_) / self.target_std_).astype(np.float32), ok
        index = {c: i for i, c in enumerate(self.classes_)}
        codes = np.array([index.get(_label(v), -1) for v in values], dtype=np.int64)
        return codes, codes >= 0

    def _check_size(self, height: int, width: int) -> None:
        m = self.patch_multiple()
        if height % m or width % m:
            hint = ", ".join(map(str, sorted(set(_divisors(height)) & set(_divisors(width))))) or "none"
            raise reflow.UserInputError(
                f"{type(self).__name__}: patch size {m} does not divide the {height}x{width} images (after the "
                f"transforms); use a patch size that divides both sides ({hint}) or change the crop")

    def fit(self, data: xr.Dataset, ctx: RunContext, validation: xr.Dataset | None = None) -> VisionModel:
        import torch
        from reflow.imaging import ImageDataset
        from reflow.training import fit_module

        values = self._target_values(data)
        target = self.targets[0]
        channels, height, width = image_shape(data)
        self._learn_target(values)
        steps = self._steps(height, width)
        train_tf, eval_tf = BatchTransform(steps, train=True), BatchTransform(steps, train=False)
        train_tf.check(channels, height, width)
        self.transforms_ = [s.to_spec() for s in steps]
        self.in_chans_ = channels
        self.img_size_ = list(train_tf.output_size(height, width))
        self._check_size(*self.img_size_)
        n_out = len(self.targets) if self.task_ == "regression" else len(self.classes_)
        self.n_out_ = n_out

        codes, ok = self._encode(values)
        rows = np.flatnonzero(ok)
        if rows.size < len(values):
            log.warning("%s: %d training samples without a usable %s are left out", type(self).__name__,
                        len(values) - rows.size, " or ".join(self.targets))
        train = ImageDataset(data.isel({data[target].dims[0]: rows}), codes[rows], train_tf, seed=ctx.seed)
        val = None
        val_data = validation
        if (val_data is not None and all(t in val_data for t in self.targets)
                and val_data.sizes.get(val_data[target].dims[0], 0)):
            vcodes, vok = self._encode(self._target_values(val_data))
            vrows = np.flatnonzero(vok)
            if vrows.size:
                val = ImageDataset(val_data.isel({val_data[target].dims[0]: vrows}), vcodes[vrows], eval_tf)

        torch.manual_seed(ctx.seed)
        self.module_ = self.build_module(channels, tuple(self.img_size_), n_out)
        self.n_params_ = count_parameters(self.module_)
        self.before_fit(train, ctx)
        history = fit_module(self.module_, self._loss, train, val=val, config=self.training_config(),
                             device=ctx.device, seed=ctx.seed, folder=ctx.folder, quiet=ctx.quiet,
                             description=f"{type(self).__name__} training")
        self.history_ = [dict(row) for row in history.epochs]
        self.best_epoch_ = int(history.best_epoch)
        self.train_seconds_ = float(history.seconds)
        self.stopped_early_ = bool(history.stopped_early)
        return self

    def _loss(self, module: Any, batch: Any) -> torch.Tensor:
        import torch.nn.functional as F

        images, targets = batch
        out = module(images).float()
        if self.task_ == "regression":  # several targets: (batch, k), each standardized: the mean of their MSEs
            return F.mse_loss(out[:, 0] if targets.ndim == 1 else out, targets.float())
        return F.cross_entropy(out, targets.long())

    def eval_transform(self, normalize: bool = True) -> BatchTransform:
        """The evaluation preprocessing (centre crop, normalize); without normalize for display."""
        steps = [parse_transform(s) for s in self.transforms_]
        return BatchTransform([s for s in steps if normalize or s.op != "normalize"], train=False)

    def denormalize(self, images: torch.Tensor) -> torch.Tensor:
        """Undo the normalize steps (for showing network inputs and reconstructions as pixels)."""
        import torch

        for step in reversed([parse_transform(s) for s in self.transforms_]):
            if step.op == "normalize":
                mean = torch.tensor(step.mean, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
                std = torch.tensor(step.std, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
                images = images * std + mean
        return images

    def raw_outputs(self, data: xr.Dataset, ctx: RunContext) -> np.ndarray:
        """The network's outputs (n, n_out) on ``data``'s images (evaluation preprocessing)."""
        from reflow.imaging import ImageDataset
        from reflow.training import predict_batches

        self.require_fitted("module_")
        _, height, width = image_shape(data)
        tf = self.eval_transform()
        if list(tf.output_size(height, width)) != list(self.img_size_):
            raise reflow.DataError(f"{type(self).__name__} was trained on images that became "
                                   f"{self.img_size_[0]}x{self.img_size_[1]} after the transforms; these give "
                                   f"{tf.output_size(height, width)}")
        if image_shape(data)[0] != self.in_chans_:
            raise reflow.DataError(f"{type(self).__name__} was trained on {self.in_chans_}-channel images; these "
                                   f"have {image_shape(data)[0]}")
        dataset = ImageDataset(data, transform=tf)
        out = predict_batches(self.module_, lambda m, b: m(b), dataset, batch_size=self.params.eval_batch_size,
                              device=ctx.device, precision=self.params.precision)
        return out.numpy()

    def predict(self, data: xr.Dataset, ctx: RunContext) -> xr.Dataset:
        """``<target>_mean`` for each target (regression) or ``<target>_pred``, ``<target>_prob`` (its
        probability) and ``<target>_prob_<class>`` per class (classification), on the sample dim."""
        import xarray as xr
        from scipy.special import softmax

        images = image_array(data)
        dim = images.dims[0]
        out = self.raw_outputs(data, ctx)
        coords = {dim: data[dim].values} if dim in data.coords else {}
        if self.task_ == "regression":
            means, stds = self._scaling()
            return xr.Dataset({f"{t}_mean": (dim, out[:, j].astype(np.float64) * stds[j] + means[j])
                               for j, t in enumerate(self.targets)}, coords=coords)
        prob = softmax(out.astype(np.float64), axis=1)
        return class_predictions(prob, self.classes_, self._target(), dim, coords)

    def summary(self) -> dict[str, Any]:
        if not self.is_fitted("module_"):
            return {}
        return training_summary(self.n_params_, self.history_, self.best_epoch_, self.train_seconds_,
                                self.stopped_early_)

    # --- persistence -----------------------------------------------------------------------------------------

    def save_state(self, directory: Path) -> None:
        self.require_fitted("module_")
        state = {"task": self.task_, "classes": self.classes_, "target_mean": self.target_mean_,
                 "target_std": self.target_std_, "in_chans": self.in_chans_, "img_size": self.img_size_,
                 "n_out": self.n_out_, "transforms": self.transforms_, "n_params": self.n_params_,
                 "history": self.history_, "best_epoch": self.best_epoch_, "train_seconds": self.train_seconds_,
                 "stopped_early": self.stopped_early_}
        state.update(self.save_extra(directory))
        save_module(self.module_, directory / WEIGHTS)
        (directory / STATE).write_text(json.dumps(state, indent=2, default=_json_float))

    def load_state(self, directory: Path) -> None:
        state = json.loads((directory / STATE).read_text())
        self.task_ = state["task"]
        self.classes_ = state["classes"]
        self.target_mean_, self.target_std_ = state["target_mean"], state["target_std"]
        self.in_chans_, self.img_size_, self.n_out_ = state["in_chans"], state["img_size"], state["n_out"]
        self.transforms_ = state["transforms"]
        self.n_params_ = state["n_params"]
        self.history_ = state["history"]
        self.best_epoch_, self.train_seconds_ = state["best_epoch"], state["train_seconds"]
        self.stopped_early_ = state["stopped_early"]
        self.module_ = self.build_module(self.in_chans_, tuple(self.img_size_), self.n_out_)
        load_module(self.module_, directory / WEIGHTS)
        self.load_extra(directory, state)

    # --- figures ---------------------------------------------------------------------------------------------

    def plot(self, folder: str | Path) -> list[Path]:
        """The learning curve (train and validation loss per epoch) as ``learning_curve.png``."""
        self.require_fitted("module_")
        return [loss_plot(self.history_, Path(folder) / "learning_curve.png",
                           f"{type(self).__name__}: best epoch {self.best_epoch_}")]

    # --- Grad-CAM --------------------------------------------------------------------------------------------

    def grad_cam(self, data: xr.Dataset, ctx: RunContext) -> tuple[np.ndarray, np.ndarray]:
        """Grad-CAM maps (n, H, W) in [0, 1] for the model's output (regression) or predicted class, and the
        network inputs shown as pixels (n, C, H, W). Runs in float32 on ``ctx.device``."""
        import torch
        from pytorch_grad_cam import GradCAM
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
        from reflow.imaging import ImageDataset

        self.require_fitted("module_")
        dataset = ImageDataset(data, transform=self.eval_transform())
        inputs = dataset.batch(range(len(dataset)))
        module = self.module_.to(ctx.device).float().eval()
        with torch.no_grad():
            outputs = module(inputs.to(ctx.device)).float().cpu()
        if self.task_ == "regression":
            categories = [0] * len(dataset)
        else:
            categories = outputs.argmax(dim=1).tolist()
        with GradCAM(model=module, target_layers=[self.cam_layer()], reshape_transform=self.cam_reshape()) as cam:
            maps = cam(input_tensor=inputs.to(ctx.device), targets=[ClassifierOutputTarget(c) for c in categories])
        module.eval()
        return np.asarray(maps, dtype=np.float32), self.denormalize(inputs).numpy()


def _label(value: Any) -> Any:
    """A class label as a plain JSON-able Python value."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bytes):
        value = value.decode()
    return value


def class_list(values: Any, target: str) -> list[Any]:
    """The classes of a classification target's training labels, in a stable order (by type, then value); a
    DataError unless there are at least two."""
    classes = sorted({_label(v) for v in values}, key=lambda c: (str(type(c)), c))
    if len(classes) < 2:
        raise reflow.DataError(f"classification target {target!r} has {len(classes)} class in the training data; "
                               "it needs at least 2")
    return classes


def class_predictions(prob: np.ndarray, classes: list[Any], target: str, dim: str,
                      coords: dict[str, Any]) -> xr.Dataset:
    """A classifier's outputs from its class probabilities (n, classes): ``<target>_pred``, ``<target>_prob`` (its
    probability) and ``<target>_prob_<class>`` per class."""
    import xarray as xr

    names = np.asarray(classes)
    variables = {f"{target}_pred": (dim, names[prob.argmax(axis=1)]), f"{target}_prob": (dim, prob.max(axis=1))}
    for j, c in enumerate(classes):
        variables[f"{target}_prob_{_safe_name(c)}"] = (dim, prob[:, j])
    return xr.Dataset(variables, coords=coords)


def _json_float(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")

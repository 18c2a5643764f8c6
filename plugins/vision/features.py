"""``timm-features``: a frozen timm backbone as feature extractor and an MLP head (seed 004, transfer learning on
SEM images of laser-sintered copper).

The paper's pipeline, in order: crop the image borders, equalize the histogram, sample 40 random patches per image
(random crops, flips and rotations), convert them to grayscale and normalize, extract features once with a
pretrained ConvNeXt whose classifier is removed (eval mode, frozen), and train an MLP with three hidden layers
(ReLU, dropout, batch norm, weight decay) on the features. Here:

- data side (numpy/torch, before the network): ``border`` crop, ``equalize`` (torchvision's histogram
  equalization per channel), ``patches`` per image of side ``patch_size`` (training: random positions, random
  flips and 90-degree turns; evaluation: an evenly spaced k x k grid, k = ceil(sqrt(patches)));
- network side (inside the saved module, so an ONNX export includes it): RGB -> grayscale when ``grayscale``,
  one channel -> three, resize to ``input_size``, normalization with the backbone's mean/std (ImageNet's for
  ConvNeXt), the frozen backbone, the MLP head.

Patches are cut from the images ``fit`` is given: in a ``train`` stage the split is made on whole images first, so
patches of one image never straddle training and test. An image's prediction averages its patches' class
probabilities (or regression outputs). Features are computed once per patch, kept in memory, and the head is
trained on them for all its epochs (the backbone never runs during the head's training).

Backbone weights: ``weights: PATH`` (a local .safetensors, or .pt/.pth read with ``torch.load(weights_only=True)``),
or ``pretrained: true`` to fetch timm's weights from the Hugging Face hub (needs a network connection), else a
random initialization, which the summary reports loudly: a random backbone is a random-feature baseline, not
transfer learning.
"""

from __future__ import annotations

import difflib
import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import reflow
from pydantic import Field, field_validator, model_validator
from reflow.imaging import image_shape
from reflow.training import TrainingConfig, count_parameters

from .base import VisionModel
from .weights import check_weights_suffix, read_state_dict

if TYPE_CHECKING:
    import torch
    import xarray as xr
    from reflow.context import RunContext

log = logging.getLogger("reflow.vision")

RANDOM = "random"


def check_timm_name(name: str) -> str:
    """A timm model name, or a ValueError that lists the closest names."""
    import timm

    if timm.is_model(name):
        return name
    close = difflib.get_close_matches(name, timm.list_models(), n=6, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise ValueError(f"unknown timm backbone {name!r}{hint} (timm.list_models() lists them, e.g. convnext_tiny, "
                     "resnet50, efficientnet_b0)")


class TimmFeaturesParams(TrainingConfig):
    """The head's training loop (reflow.training) plus the backbone and the preprocessing."""

    epochs: int = Field(100, ge=1, description="passes of the head over the cached features")
    batch_size: int = Field(32, ge=2, description="patches per step of the head (32 in seed 004)")
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay of the head")
    task: Literal["auto", "regression", "classification"] = Field(
        "auto", description="auto: regression for a float target, classification for integer, text or bool labels")
    scale_target: bool = Field(True, description="standardize a regression target with the training mean and std")
    eval_batch_size: int = Field(64, ge=1, description="patches per backbone batch (feature extraction and "
                                                       "prediction)")
    backbone: str = Field("convnext_tiny", description="timm model name of the frozen feature extractor")
    pretrained: bool = Field(False, description="fetch timm's pretrained weights from the Hugging Face hub (needs "
                                                "a network connection); false: random weights unless `weights`")
    weights: str | None = Field(None, description="local backbone weights (.safetensors, .pt, .pth, .bin; relative "
                                                  "to the study file), read with weights_only=True")
    hidden: list[int] = Field([512, 256, 128], min_length=1, max_length=8,
                              description="widths of the head's hidden layers (3 in seed 004), each Linear-BatchNorm-"
                                          "ReLU-Dropout")
    dropout: float = Field(0.3, ge=0, lt=1, description="dropout after each hidden layer of the head")
    border: float = Field(0.0, ge=0, lt=0.5, description="fraction of the side cropped from each border first "
                                                         "(SEM data bars, frames)")
    equalize: bool = Field(True, description="histogram-equalize each image (per channel) after the border crop")
    patches: int = Field(1, ge=1, le=1024, description="patches per image (40 in seed 004); evaluation uses a k x k "
                                                       "grid, k = ceil(sqrt(patches))")
    patch_size: int | None = Field(None, ge=8, description="patch side in pixels (null: the whole cropped image, "
                                                           "then patches must be 1)")
    augment: bool = Field(True, description="random flips and 90-degree turns of the training patches")
    grayscale: bool = Field(False, description="convert RGB to grayscale (then 3 equal channels) as seed 004 does "
                                               "for SEM images; 1-channel images are always repeated to 3")
    input_size: int | None = Field(None, ge=8, description="resize patches to this side before the backbone "
                                                           "(e.g. 224 for ImageNet weights; null: as cut)")

    @field_validator("backbone")
    @classmethod
    def _known_backbone(cls, value: str) -> str:
        return check_timm_name(value)

    @field_validator("weights")
    @classmethod
    def _weights_suffix(cls, value: str | None) -> str | None:
        return check_weights_suffix(value)

    @model_validator(mode="after")
    def _consistent(self) -> TimmFeaturesParams:
        if self.patch_size is None and self.patches > 1:
            raise ValueError(f"patches: {self.patches} needs a patch_size (null patch_size uses the whole image)")
        if self.pretrained and self.weights is not None:
            raise ValueError("give either pretrained: true (the hub) or weights: PATH (a local file), not both")
        if any(h < 1 for h in self.hidden):
            raise ValueError(f"hidden widths must be >= 1, got {self.hidden}")
        return self


class TimmFeatures(VisionModel):
    """A frozen timm backbone's features (computed once per patch) + an MLP head; patch predictions are averaged
    per image. Classifier for text/int labels, regressor for float targets."""

    Params = TimmFeaturesParams

    # --- the network -------------------------------------------------------------------------------------------

    def create_backbone(self, pretrained: bool = False) -> torch.nn.Module:
        import timm

        name = self.params.backbone
        try:
            return timm.create_model(name, pretrained=pretrained, num_classes=0)
        except Exception as err:  # no network, no hub weights for this name, ...
            if not pretrained:
                raise
            raise reflow.UserInputError(
                f"timm-features: could not fetch pretrained weights for {name!r} from the Hugging Face hub ({err}); "
                "use weights: PATH with a local file, or pretrained: false") from err

    def build_module(self, in_chans: int, img_size: tuple[int, int], n_out: int) -> torch.nn.Module:
        from .features_net import FeatureClassifier

        return FeatureClassifier(self.create_backbone(), n_out, self.params.hidden, self.params.dropout,
                                 grayscale=self.params.grayscale, input_size=self.params.input_size)

    def cam_layer(self) -> torch.nn.Module:
        """Grad-CAM's layer: the backbone's last feature stage (timm's feature_info), else its last convolution."""
        import torch

        backbone = self.module_.backbone
        info = getattr(backbone, "feature_info", None)
        if info:
            return backbone.get_submodule(info[-1]["module"])
        convs = [m for m in backbone.modules() if isinstance(m, torch.nn.Conv2d)]
        if not convs:
            raise reflow.UserInputError(f"timm-features: {self.params.backbone} has no convolution for Grad-CAM")
        return convs[-1]

    # --- preprocessing -----------------------------------------------------------------------------------------

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """Border crop and histogram equalization of a batch (n, C, H, W) in [0, 1]."""
        from torchvision.transforms.v2 import functional as tvf

        h, w = images.shape[-2:]
        dy, dx = int(round(self.params.border * h)), int(round(self.params.border * w))
        images = images[..., dy:h - dy, dx:w - dx]
        if self.params.equalize:
            images = tvf.equalize(images.contiguous())
        return images

    def cut_patches(self, images: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Patches (n * P, C, s, s), image-major: ``patches`` random ones per image (and random flips/turns when
        ``augment``) with a generator, an evenly spaced k x k grid without one. Whole images if no patch_size."""
        import torch

        size = self.params.patch_size
        if size is None:
            return images
        n, _, h, w = images.shape
        if size > h or size > w:
            raise reflow.DataError(f"timm-features: patch_size {size} is larger than the {h}x{w} images after the "
                                   f"border crop ({self.params.border} of each side)")
        if generator is None:
            k = math.ceil(math.sqrt(self.params.patches))
            ys = np.linspace(0, h - size, k).round().astype(int) if k > 1 else [(h - size) // 2]  # 1: the centre
            xs = np.linspace(0, w - size, k).round().astype(int) if k > 1 else [(w - size) // 2]
            spots = [(int(y), int(x)) for y in ys for x in xs]
            return torch.stack([img[:, y:y + size, x:x + size] for img in images for y, x in spots])
        count = self.params.patches
        ys = torch.randint(0, h - size + 1, (n, count), generator=generator)
        xs = torch.randint(0, w - size + 1, (n, count), generator=generator)
        out = torch.stack([images[i, :, y:y + size, x:x + size] for i in range(n)
                           for y, x in zip(ys[i].tolist(), xs[i].tolist(), strict=True)])
        if self.params.augment:
            flips = torch.rand(out.shape[0], 2, generator=generator) < 0.5
            out = torch.where(flips[:, 0, None, None, None], out.flip(-1), out)
            out = torch.where(flips[:, 1, None, None, None], out.flip(-2), out)
            turns = torch.randint(0, 4, (out.shape[0],), generator=generator)  # square patches: 0/90/180/270
            out = torch.stack([torch.rot90(p, int(t), dims=(-2, -1)) for p, t in zip(out, turns.tolist(),
                                                                                     strict=True)])
        return out

    def patches_per_image(self, train: bool) -> int:
        if self.params.patch_size is None:
            return 1
        return self.params.patches if train else math.ceil(math.sqrt(self.params.patches)) ** 2

    def _patch_batches(self, data: xr.Dataset, generator: torch.Generator | None) -> Any:
        """Yield patch batches (m, C, s, s) of ``data``'s images, in image order (m = images x patches per image)."""
        from reflow.imaging import ImageDataset

        dataset = ImageDataset(data)
        per_image = self.patches_per_image(generator is not None)
        step = max(1, self.params.eval_batch_size // per_image)
        for start in range(0, len(dataset), step):
            images = dataset.batch(range(start, min(start + step, len(dataset))))
            yield self.cut_patches(self.prepare(images), generator)

    def extract_features(self, data: xr.Dataset, ctx: RunContext, generator: torch.Generator | None) -> Any:
        """Backbone features (n_images * patches, D) of ``data``, computed in eval mode without gradients."""
        import torch
        from reflow.training import autocast

        backbone = self.module_.backbone_input_and_features
        device = torch.device(ctx.device)
        self.module_.to(device).eval()
        chunks = []
        with torch.inference_mode(), ctx.progress(None, "timm-features: backbone features") as bar:
            for patches in self._patch_batches(data, generator):
                with autocast(ctx.device, self.params.precision):
                    chunks.append(backbone(patches.to(device)).float().cpu())
                self.feature_passes_ += int(patches.shape[0])
                bar.advance()
        return torch.cat(chunks)

    # --- fit / predict -----------------------------------------------------------------------------------------

    def fit(self, data: xr.Dataset, ctx: RunContext, validation: xr.Dataset | None = None) -> TimmFeatures:
        import torch
        from reflow.training import fit_module

        target = self._target()
        if target not in data:
            raise reflow.DataError(f"the training data has no target {target!r} "
                                   f"(has: {', '.join(map(str, data.data_vars))})")
        channels, height, width = image_shape(data)
        values = np.asarray(data[target].values)
        self._learn_target(values)
        self.transforms_ = []  # no BatchTransform: the preprocessing is prepare() + cut_patches() + the module
        self.in_chans_ = channels
        self.n_out_ = 1 if self.task_ == "regression" else len(self.classes_)
        torch.manual_seed(ctx.seed)
        self.module_ = self.build_module(channels, (height, width), self.n_out_)
        self.backbone_weights_ = self._load_backbone(ctx)
        if self.backbone_weights_ == RANDOM:
            log.warning("timm-features: the %s backbone has RANDOM weights (no `weights` file, pretrained: false): "
                        "the features are random projections, not transfer learning", self.params.backbone)
        self.module_.backbone.requires_grad_(False)
        self.n_params_ = count_parameters(self.module_)
        self.feature_passes_ = 0

        codes, ok = self._encode(values)
        rows = np.flatnonzero(ok)
        train = data.isel({data[target].dims[0]: rows})
        generator = torch.Generator().manual_seed(int(ctx.seed))
        sample = next(self._patch_batches(train.isel({data[target].dims[0]: [0]}), None))
        self.img_size_ = [int(sample.shape[-2]), int(sample.shape[-1])]  # the network's input: one patch
        self._check_backbone_runs(sample[:1], ctx)
        features = self.extract_features(train, ctx, generator)
        per = self.patches_per_image(True)
        labels = torch.from_numpy(np.repeat(codes[rows], per))
        val = None
        val_data = validation
        if val_data is not None and target in val_data and val_data.sizes.get(val_data[target].dims[0], 0):
            vcodes, vok = self._encode(np.asarray(val_data[target].values))
            vrows = np.flatnonzero(vok)
            if vrows.size:
                vfeatures = self.extract_features(val_data.isel({val_data[target].dims[0]: vrows}), ctx, None)
                val = (vfeatures, torch.from_numpy(np.repeat(vcodes[vrows], self.patches_per_image(False))))
        self.feature_dim_ = int(features.shape[1])
        features, labels = _avoid_single_sample_batch(features, labels, self.params.batch_size)
        head = self.module_.head
        history = fit_module(head, self._loss, (features, labels), val=val, config=self.training_config(),
                             device=ctx.device, seed=ctx.seed, folder=ctx.folder, quiet=ctx.quiet,
                             description="timm-features head")
        self.module_.eval()
        self.history_ = [dict(row) for row in history.epochs]
        self.best_epoch_ = int(history.best_epoch)
        self.train_seconds_ = float(history.seconds)
        self.stopped_early_ = bool(history.stopped_early)
        return self

    def _load_backbone(self, ctx: RunContext) -> str:
        """Put the chosen weights into the backbone; return where they came from."""
        if self.params.weights is not None:
            path = ctx.resolve_path(self.params.weights)
            load_backbone_weights(self.module_.backbone, path)
            return f"file {path.name}"
        if self.params.pretrained:
            self.module_.backbone.load_state_dict(self.create_backbone(pretrained=True).state_dict())
            return "pretrained (timm, Hugging Face hub)"
        return RANDOM

    def _check_backbone_runs(self, patch: torch.Tensor, ctx: RunContext) -> None:
        import torch

        try:
            with torch.inference_mode():
                self.module_.to(ctx.device).eval().backbone_input_and_features(patch.to(ctx.device))
        except RuntimeError as err:
            raise reflow.UserInputError(
                f"timm-features: the {self.params.backbone} backbone cannot take {tuple(patch.shape[1:])} patches "
                f"({err}); set input_size to its native size (e.g. 224) or change patch_size") from err

    def _loss(self, module: Any, batch: Any) -> torch.Tensor:
        import torch.nn.functional as F

        features, targets = batch
        out = module(features).float()
        if self.task_ == "regression":
            return F.mse_loss(out[:, 0], targets.float())
        return F.cross_entropy(out, targets.long())

    def raw_outputs(self, data: xr.Dataset, ctx: RunContext) -> np.ndarray:
        """Per image: the log of the mean patch class probabilities (classification; its softmax is that mean) or
        the mean patch output (regression), (n, n_out)."""
        import torch
        from reflow.training import autocast

        self.require_fitted("module_")
        if image_shape(data)[0] != self.in_chans_:
            raise reflow.DataError(f"timm-features was trained on {self.in_chans_}-channel images; these have "
                                   f"{image_shape(data)[0]}")
        device = torch.device(ctx.device)
        module = self.module_.to(device).eval()
        per = self.patches_per_image(False)
        rows = []
        with torch.inference_mode():
            for patches in self._patch_batches(data, None):
                with autocast(ctx.device, self.params.precision):
                    out = module(patches.to(device)).float().cpu()
                out = out.reshape(-1, per, out.shape[-1])
                if self.task_ == "regression":
                    rows.append(out.mean(dim=1))
                else:
                    rows.append(torch.log(torch.softmax(out, dim=-1).mean(dim=1).clamp(min=1e-30)))
        return torch.cat(rows).numpy()

    def grad_cam(self, data: xr.Dataset, ctx: RunContext) -> tuple[np.ndarray, np.ndarray]:
        """Grad-CAM of the whole (border-cropped, equalized) images through backbone and head."""
        import xarray as xr
        from reflow.imaging import ImageDataset

        self.require_fitted("module_")
        dataset = ImageDataset(data)
        images = self.prepare(dataset.batch(range(len(dataset))))
        prepared = xr.Dataset({"image": (("sample", "channel", "y", "x"), images.numpy())})
        backbone = self.module_.backbone
        backbone.requires_grad_(True)  # Grad-CAM needs gradients at the backbone's feature maps; no step is taken
        try:
            return super().grad_cam(prepared, ctx)
        finally:
            backbone.requires_grad_(False)
            backbone.zero_grad(set_to_none=True)

    def onnx_spec(self) -> dict[str, Any]:
        """What reflow.plugins.vision.onnx exports: the module on one patch in [0, 1] (after border crop and
        equalization, which stay data-side)."""
        import torch

        return {"module": self.module_, "input_shape": (self.in_chans_, *self.img_size_),
                "inputs": lambda data: torch.cat(list(self._patch_batches(data, None))),
                "note": "image: one patch in [0, 1] after the border crop and histogram equalization; an image's "
                        "prediction averages the probabilities of its evaluation patches"}

    # --- persistence and report --------------------------------------------------------------------------------

    def save_extra(self, directory: Path) -> dict[str, Any]:
        return {"backbone_weights": self.backbone_weights_, "feature_dim": self.feature_dim_,
                "feature_passes": self.feature_passes_}

    def load_extra(self, directory: Path, state: dict[str, Any]) -> None:
        self.backbone_weights_ = state["backbone_weights"]
        self.feature_dim_ = state["feature_dim"]
        self.feature_passes_ = state["feature_passes"]

    def summary(self) -> dict[str, Any]:
        out = super().summary()
        if out:
            random = self.backbone_weights_ == RANDOM
            out.update({
                "backbone": self.params.backbone,
                "backbone_weights": ("RANDOM init: not pretrained, these are random-feature results, not transfer "
                                     "learning") if random else self.backbone_weights_,
                "backbone_pretrained": not random,
                "feature_dim": self.feature_dim_,
                "trainable_params": count_parameters(self.module_.head),
                "patches_per_image": self.patches_per_image(True),
                "backbone_patch_passes": self.feature_passes_,
            })
        return out


def _avoid_single_sample_batch(features: Any, labels: Any, batch_size: int) -> tuple[Any, Any]:
    """BatchNorm cannot train on a batch of one: if the last batch would hold one sample, repeat one sample."""
    import torch

    if features.shape[0] % batch_size == 1:
        features = torch.cat([features, features[:1]])
        labels = torch.cat([labels, labels[:1]])
    return features, labels


def load_backbone_weights(backbone: torch.nn.Module, path: Path) -> None:
    """Load a local state dict into ``backbone``; every backbone tensor must be there (a classifier in the file is
    ignored). Safetensors, or torch files read with ``weights_only=True``."""
    state = read_state_dict(path)
    own = backbone.state_dict()
    missing = sorted(k for k in own if k not in state)
    wrong = sorted(k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape))
    if missing or wrong:
        names = ", ".join((missing + wrong)[:6]) + (" ..." if len(missing) + len(wrong) > 6 else "")
        raise reflow.DataError(f"weights: {path} does not fit the backbone ({len(missing)} tensors missing, "
                               f"{len(wrong)} of another shape: {names}); is it a checkpoint of this architecture?")
    backbone.load_state_dict({k: state[k] for k in own}, strict=True)

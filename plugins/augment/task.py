"""Task ``augment``: more training images for rare classes, from a GAN (``wgan-gp``) or classic transforms
(``classic``), with checks of how real the generated images look.

The held-out images never reach the augmenter: the task splits the data first (or takes ``heldout`` from another
stage), fits the augmenter on the training part only, and hands it only the training part as the source of
classic transforms. The held-out images leave the stage unchanged as output ``test``, for later evaluation.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import reflow
from pydantic import Field, model_validator
from reflow.specs import ModelSpec, StageData
from reflow.splits import SplitSpec, split_indices
from reflow.store import StageStore
from reflow.tables import safe_name

from .common import (
    LABEL,
    SYNTHETIC,
    check_request,
    class_order,
    label_values,
    resize_images,
    sample_dim,
    unit_images,
)

log = logging.getLogger("reflow.augment")

SAMPLES_PLOT = "real_vs_generated.png"
QUALITY_PLOT = "augment_quality.png"


class AugmentTask(reflow.Task):
    """Fit an augmenter on the training images and add generated images of the classes that need them.

    Outputs: ``train`` (the training images, ``synthetic`` = False for real ones, then the generated ones,
    ``synthetic`` = True; ``real_index`` is a training image's position in ``data``, -1 for the images generated
    here), ``test`` (the held-out real images, unchanged) and ``generated`` (the generated images alone, with what
    the augmenter records about each, e.g. ``source_index`` and ``angle`` for classic). Generated images take the
    size of the real ones. Data that already hold generated images (``synthetic``, from an earlier augment stage)
    keep them in ``train``; the augmenter learns from the real ones only (``real_only``).

    How many: ``target_per_class: N`` brings every class up to N training images (classes with N or more get
    none); ``per_class: {class: n}`` generates n images of each class named.

    Quality (metrics and ``augment_quality.png``), from a probe fit on the real training images only (PCA of
    downsampled pixels + logistic regression, see docs/augmentation.md): ``probe_accuracy_<class>``, the fraction
    of generated images the probe assigns to their intended class (compare with ``probe_test_accuracy`` on real
    held-out images and with chance, ``probe_chance``); ``probe_in_distribution_<class>``, the share of generated
    images no further from the probe's PCA subspace than 95 % of real held-out ones (real images: about 0.95);
    ``frechet_generated_<class>``, the Frechet distance on the
    probe's PCA features between generated and held-out real images, next to its floor ``frechet_real_<class>``
    (real training vs held-out). ``real_vs_generated.png`` shows real and generated images side by side per class.
    A newly trained augmenter is saved in the stage folder, so later stages can reuse it as ``{stage: NAME}``.
    """

    outputs = ("train", "test", "generated")
    produces_model = True

    class Params(reflow.Params):
        data: StageData = Field(description="an earlier stage's image dataset ('image' and a class variable)")
        augmenter: ModelSpec = Field(description="the generator: wgan-gp, classic (with params), or {stage: NAME} "
                                                 "of one trained earlier")
        label: str = Field(LABEL, description="the class variable")
        split: SplitSpec | None = Field(None, description="held-out part, as in train (grouped by `by`), stratified "
                                                          "by the class variable unless `stratify` names another "
                                                          "variable; no `val` (default: test 0.2)")
        heldout: StageData | None = Field(None, description="held-out images from another stage: then `data` is "
                                                            "all training data and no split is made")
        target_per_class: int | None = Field(None, ge=1, description="bring every class up to this many training "
                                                                     "images")
        per_class: dict[str, Annotated[int, Field(ge=0)]] | None = Field(
            None, description="images to generate per class, e.g. {crack: 200, void: 50}")
        real_only: bool = Field(True, description="fit the augmenter and draw classic's sources from real images "
                                                  "only (synthetic == False) when the data already holds generated "
                                                  "ones; those stay in `train` as they are")
        probe_size: int = Field(32, ge=4, le=256, description="side in pixels the quality probe averages images "
                                                              "down to")
        probe_components: int = Field(32, ge=1, le=512, description="principal components of the quality probe's "
                                                                    "features")

        @model_validator(mode="after")
        def _consistent(self) -> AugmentTask.Params:
            if (self.target_per_class is None) == (self.per_class is None):
                raise ValueError("give exactly one of target_per_class (bring every class up to N training images) "
                                 "and per_class ({class: n} images to generate)")
            if self.split is not None and self.split.val > 0:
                raise ValueError(f"augment splits into train and test only: split.val must be 0, got "
                                 f"{self.split.val}")
            if self.heldout is not None and self.split is not None:
                raise ValueError("give either heldout (a separate held-out stage) or split, not both")
            return self

    def check(self, check: Any) -> None:
        spec = self.params.augmenter
        cls = check.component_class(spec) if spec.stage is None else None
        if cls is not None and not issubclass(cls, reflow.Generator):
            check.problem(("augmenter",), f"{spec.name!r} is a {cls.family or 'model'}, not a generator; use "
                                          "wgan-gp, classic or another generator")

    # --- running -----------------------------------------------------------------------------------------------

    def _parts(self, ctx: Any) -> tuple[Any, Any, np.ndarray]:
        """(training data, held-out data, positions of the training samples in ``data``)."""
        p = self.params
        data = ctx.data(p.data)
        dim = sample_dim(data)
        label_values(data, p.label)  # fail early, naming the variable
        if p.heldout is not None:
            return data, ctx.data(p.heldout), np.arange(data.sizes[dim])
        split = p.split or SplitSpec()
        if split.stratify is None:
            split = split.model_copy(update={"stratify": p.label})
        for name in (split.by, split.stratify):
            if name and name not in data:
                raise reflow.DataError(f"augment: split variable {name!r} is not in {p.data} (it has: "
                                       f"{', '.join(map(str, data.data_vars))})")
        groups = data[split.by].values if split.by else None
        strata = label_values(data, split.stratify) if split.stratify else None
        try:
            parts = split_indices(data.sizes[dim], split, ctx.rng, groups, strata)
        except ValueError as exc:
            raise reflow.UserInputError(f"augment: split: {exc}") from None
        return data.isel({dim: parts["train"]}), data.isel({dim: parts["test"]}), parts["train"]

    def _request(self, classes: list[str], counts: dict[str, int], sources: dict[str, int]
                 ) -> tuple[dict[str, int], list[str]]:
        """Images to generate per class, and the classes that need images but have no source images to learn from.

        ``counts``: training images per class (earlier synthetic ones included); ``sources``: those the augmenter
        learns from.
        """
        p = self.params
        if p.per_class is not None:
            request = check_request(p.per_class, classes, "augment")
            empty = [c for c, n in request.items() if n and not sources[c]]
            if empty:
                raise reflow.DataError(f"augment: per_class asks for class(es) {', '.join(empty)}, which have no real "
                                       "training images to generate from")
        else:
            request = {c: max(0, p.target_per_class - counts[c]) for c in classes}
        unfilled = [c for c, n in request.items() if n and not sources[c]]
        if unfilled:
            log.warning("augment: no training images of class(es) %s: nothing to generate them from", unfilled)
        return {c: n for c, n in request.items() if n and sources[c]}, unfilled

    def _augmenter(self, ctx: Any) -> tuple[reflow.Generator, str, bool]:
        """(the augmenter, its registered name for the saved model, whether it still has to be fit)."""
        spec = self.params.augmenter
        if spec.stage is not None:
            model = ctx.model(spec.stage)
            if not isinstance(model, reflow.Generator):
                raise reflow.UserInputError(f"augment: stage {spec.stage!r} trained a {type(model).__name__} "
                                            f"({model.family or 'model'}), not a generator; use wgan-gp, classic "
                                            "or another generator")
            # the name it was saved under there: {stage: ...} names no component itself
            return model, ctx.run.store(spec.stage).model_info()["name"], False
        model = spec.create()
        field = type(model).Params.model_fields.get("label")
        # decided by value, not by "was it set": a resolved study (and so a resume) writes the default out
        if field is not None and model.params.label == field.default:
            model.params = model.params.model_copy(update={"label": self.params.label})  # not the study's copy
        return model, str(spec.name), True

    def run(self, ctx: Any) -> reflow.StageResult:
        p = self.params
        train, test, train_rows = self._parts(ctx)
        dim = sample_dim(train)
        labels = label_values(train, p.label)
        classes = class_order(train, p.label)
        if labels.size == 0:
            raise reflow.DataError("augment: the training part holds no images")
        earlier = (np.asarray(train[SYNTHETIC].values, dtype=bool) if SYNTHETIC in train
                   else np.zeros(labels.size, dtype=bool))
        use = ~earlier if p.real_only else np.ones(labels.size, dtype=bool)
        if not use.any():
            raise reflow.DataError("augment: the training part holds generated images only (real_only is on)")
        source = train if use.all() else train.isel({dim: np.flatnonzero(use)})
        counts = {c: int((labels == c).sum()) for c in classes}
        real_counts = {c: int((labels[~earlier] == c).sum()) for c in classes}
        request, unfilled = self._request(classes, counts, {c: int((labels[use] == c).sum()) for c in classes})

        model, name, needs_fit = self._augmenter(ctx)
        model.configure([p.label], ["image"])
        if needs_fit:
            model.fit(source, ctx)
        known = model.classes_ if model.classes_ is not None else classes  # None: a generator that names none
        unknown = [c for c in request if c not in known]
        if unknown:
            raise reflow.UserInputError(f"augment: the augmenter was trained without class(es) {unknown}")
        generated = model.generate(request, seed=ctx.seed, source=source, device=ctx.device)

        real_images = unit_images(train)
        _, channels, height, width = real_images.shape
        fake_images = np.asarray(generated["image"].values, dtype=np.float32)
        if fake_images.shape[0] and fake_images.shape[1] != channels:
            raise reflow.DataError(f"augment: the augmenter makes {fake_images.shape[1]}-channel images, the data has "
                                   f"{channels}")
        if fake_images.shape[0] and fake_images.shape[-2:] != (height, width):
            fake_images = resize_images(fake_images, height, width)
        generated = generated.drop_vars("image").assign(image=(("sample", "channel", "y", "x"), fake_images))
        generated = generated[["image", *[n for n in generated.data_vars if n != "image"]]]
        if p.label != LABEL:  # the generated images name their class like the data do
            generated = generated.rename({LABEL: p.label})

        out_train = _merge(train, dim, real_images, earlier, train_rows, generated, p.label, classes)
        ctx.store.save_model(model, name)

        metrics: dict[str, Any] = {"train_real": int((~earlier).sum()), "train_synthetic_before": int(earlier.sum()),
                                   "test_real": int(test.sizes.get(sample_dim(test), 0)),
                                   "generated": int(generated.sizes["sample"]), "classes": len(classes),
                                   "unfilled_classes": ", ".join(unfilled)}
        for c in classes:
            metrics[f"real_train_{safe_name(c)}"] = real_counts[c]
            if earlier.any():
                metrics[f"synthetic_before_{safe_name(c)}"] = counts[c] - real_counts[c]
            metrics[f"generated_{safe_name(c)}"] = int(request.get(c, 0))
        real = np.flatnonzero(~earlier)
        metrics.update(self._quality(ctx, classes, (real_images[real], labels[real]), test, generated))
        metrics.update({f"augmenter_{k}": v for k, v in model.summary().items()})
        return reflow.StageResult({"train": out_train, "test": test, "generated": generated}, metrics)

    def _quality(self, ctx: Any, classes: list[str], train: tuple[np.ndarray, np.ndarray], test: Any,
                 generated: Any) -> dict[str, Any]:
        from .quality import QualityProbe, quality_metrics

        p = self.params
        if test.sizes.get(sample_dim(test), 0):
            test_pair = (unit_images(test), label_values(test, p.label))
        else:
            log.warning("augment: no held-out images: the Frechet distances need them and are left out")
            test_pair = (train[0][:0], np.zeros(0, str))
        probe = QualityProbe(p.probe_size, p.probe_components, seed=ctx.seed).fit(*train)
        gen_pair = (np.asarray(generated["image"].values), label_values(generated, p.label))
        return quality_metrics(probe, classes, train, test_pair, gen_pair, key=safe_name)

    # --- figures -----------------------------------------------------------------------------------------------

    def plot(self, result: reflow.StageResult, folder: Path) -> list[Path]:
        from .plots import quality_bars, real_vs_generated

        folder = Path(folder)
        store = StageStore(folder)
        # the augmenter's own figures (the GAN's samples and loss curves), from the model this stage saved
        paths = [Path(q) for q in store.load_model().plot(folder)] if store.model_info() is not None else []
        train, generated = result.outputs.get("train"), result.outputs.get("generated")
        if train is None or generated is None:
            return paths
        real_labels = label_values(train, self.params.label)
        real = ~np.asarray(train[SYNTHETIC].values, dtype=bool)
        fake_labels = label_values(generated, self.params.label)
        classes = [c for c in class_order(train, self.params.label) if (fake_labels == c).any()]
        if classes:
            rows = []
            for c in classes:
                r = np.flatnonzero(real & (real_labels == c))[:6]
                g = np.flatnonzero(fake_labels == c)[:6]
                rows.append((c, unit_images(train.isel(sample=r)), unit_images(generated.isel(sample=g))))
            m = result.metrics
            title = (f"real vs generated ({m.get('generated', '?')} generated; probe puts "
                     f"{m.get('probe_generated_accuracy', float('nan')):.0%} in their class)")
            paths.append(real_vs_generated(rows, folder / SAMPLES_PLOT, title))
            keys = [safe_name(c) for c in classes]
            paths.append(quality_bars(classes, [m.get(f"probe_accuracy_{k}", np.nan) for k in keys],
                                      [m.get(f"probe_test_accuracy_{k}", np.nan) for k in keys],
                                      [m.get(f"probe_in_distribution_{k}", np.nan) for k in keys],
                                      [m.get(f"frechet_generated_{k}", np.nan) for k in keys],
                                      [m.get(f"frechet_real_{k}", np.nan) for k in keys],
                                      float(m.get("probe_chance", np.nan)), folder / QUALITY_PLOT))
        return paths


def _merge(train: Any, dim: str, real_images: np.ndarray, earlier: np.ndarray, rows: np.ndarray, generated: Any,
           label: str, classes: list[str]) -> Any:
    """The training images (every per-sample variable kept; ``earlier`` marks those generated by an earlier
    stage) followed by the new generated ones; per-sample variables the generated images lack are NaN (numbers),
    -1 (integers), False (bools) or '' (text) for them."""
    import xarray as xr

    n_real, n_fake = real_images.shape[0], generated.sizes["sample"]
    index = {c: i for i, c in enumerate(classes)}
    real_labels = label_values(train, label)
    fake_labels = label_values(generated, label)
    columns: dict[str, Any] = {
        "image": (("sample", "channel", "y", "x"),
                  np.concatenate([real_images, np.asarray(generated["image"].values, np.float32)])),
        label: ("sample", np.concatenate([real_labels, fake_labels]).astype(str)),
        "label_index": ("sample", np.array([index[c] for c in [*real_labels, *fake_labels]], dtype=np.int64)),
        SYNTHETIC: ("sample", np.concatenate([earlier, np.ones(n_fake, bool)])),
        "real_index": ("sample", np.concatenate([np.asarray(rows, np.int64), np.full(n_fake, -1, np.int64)])),
    }
    for name in train.data_vars:
        if name in columns or train[name].dims != (dim,):
            continue
        values = np.asarray(train[name].values)
        columns[name] = ("sample", np.concatenate([values, _missing(values.dtype, n_fake)]))
    out = xr.Dataset(columns, coords={"sample": np.arange(n_real + n_fake)})
    out[label].attrs["classes"] = list(classes)
    out.attrs.update({k: v for k, v in train.attrs.items()
                      if isinstance(v, (str, int, float)) and k not in ("stage", "task")})  # the runner sets those
    out.attrs["classes"] = list(classes)
    return out


def _missing(dtype: np.dtype, n: int) -> np.ndarray:
    if dtype.kind == "f":
        return np.full(n, np.nan, dtype)
    if dtype.kind in "iu":
        return np.full(n, -1, np.int64)
    if dtype.kind == "b":
        return np.zeros(n, bool)
    if dtype.kind == "M":
        return np.full(n, np.datetime64("NaT"), dtype)
    return np.full(n, "", dtype=object).astype(str)


"""``pca-logistic``: the simple baseline of seed 004: principal components of the (downsampled) pixels and a
logistic regression on them (scikit-learn). For a float target the same components feed a ridge regression.

Images are resized to ``size`` x ``size`` by area averaging, flattened (channels too), projected on the first
``components`` principal components of the training images (optionally whitened) and classified by a multinomial
logistic regression (inverse regularization ``C``). Saved as arrays, not pickles: ``pca.npz`` holds the PCA mean,
components and explained variance and the linear model's coefficients and intercepts; prediction is rebuilt from
them with numpy (the same numbers as scikit-learn's ``transform`` and ``predict_proba``; the tests check it).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
import reflow
from pydantic import Field
from reflow.imaging import image_array, image_shape

from .base import _FamilyFromTask, _label, class_list, class_predictions

if TYPE_CHECKING:
    import xarray as xr
    from reflow.context import RunContext

ARRAYS = "pca.npz"
STATE = "state.json"


class PCALogisticParams(reflow.Params):
    task: Literal["auto", "regression", "classification"] = Field(
        "auto", description="auto: ridge regression for a float target, logistic regression for labels")
    size: int | None = Field(32, ge=2, description="resize images to size x size (area averaging) before "
                                                   "flattening; null keeps them as they are")
    components: int = Field(50, ge=1, description="principal components kept (at most the number of training "
                                                  "images and of pixels)")
    whiten: bool = Field(False, description="scale the components to unit variance")
    C: float = Field(1.0, gt=0, description="inverse regularization strength (logistic C; ridge alpha = 1/C)")
    max_iter: int = Field(2000, ge=10, description="iterations of the logistic regression's solver (lbfgs)")


class PCALogistic(reflow.Model):
    """PCA of the flattened, downsampled pixels + logistic regression (classes) or ridge regression (float)."""

    family: ClassVar[str] = _FamilyFromTask()  # type: ignore[assignment]
    uses_images: ClassVar[bool] = True
    Params = PCALogisticParams
    task_: str | None = None
    """``regression`` or ``classification`` once fitted; before, ``family`` follows ``params.task``."""

    def _target(self) -> str:
        if len(self.targets) != 1:
            raise reflow.UserInputError(f"pca-logistic learns exactly one target; got {self.targets or 'none'}")
        return self.targets[0]

    def pixels(self, data: xr.Dataset) -> np.ndarray:
        """The images as rows of flattened, resized pixels (n, C * size * size), float64."""
        import torch
        import torch.nn.functional as F
        from reflow.imaging import ImageDataset

        dataset = ImageDataset(data)
        rows = []
        for start in range(0, len(dataset), 256):
            block = torch.from_numpy(dataset.read(range(start, min(start + 256, len(dataset)))))
            if self.params.size is not None and tuple(block.shape[-2:]) != (self.params.size,) * 2:
                block = F.interpolate(block, size=(self.params.size, self.params.size), mode="area")
            rows.append(block.reshape(block.shape[0], -1).numpy().astype(np.float64))
        return np.concatenate(rows)

    def fit(self, data: xr.Dataset, ctx: RunContext, validation: xr.Dataset | None = None) -> PCALogistic:
        """Fit the PCA and the linear head in closed form; ``validation`` is not needed (no epochs to stop)."""
        from sklearn.decomposition import PCA
        from sklearn.linear_model import LogisticRegression, Ridge

        target = self._target()
        if target not in data:
            raise reflow.DataError(f"the training data has no target {target!r} "
                                   f"(has: {', '.join(map(str, data.data_vars))})")
        values = np.asarray(data[target].values)
        task = self.params.task
        self.task_ = task if task != "auto" else ("regression" if values.dtype.kind == "f" else "classification")
        if self.task_ == "regression":
            y = values.astype(np.float64)
            rows = np.flatnonzero(np.isfinite(y))
            self.classes_ = []
        else:
            labels = [_label(v) for v in values]
            self.classes_ = class_list(labels, target)
            index = {c: i for i, c in enumerate(self.classes_)}
            y = np.array([index[c] for c in labels])
            rows = np.arange(len(y))
        dim = image_array(data).dims[0]
        x = self.pixels(data.isel({dim: rows}))
        y = y[rows]
        self.in_shape_ = list(image_shape(data))
        n_components = min(self.params.components, x.shape[0], x.shape[1])
        pca = PCA(n_components=n_components, whiten=self.params.whiten, svd_solver="full", random_state=ctx.seed)
        z = pca.fit_transform(x)
        if self.task_ == "regression":
            linear = Ridge(alpha=1.0 / self.params.C).fit(z, y)
            coef, intercept = np.atleast_2d(linear.coef_), np.atleast_1d(linear.intercept_)
        else:
            linear = LogisticRegression(C=self.params.C, max_iter=self.params.max_iter, random_state=ctx.seed)
            linear.fit(z, y)
            coef, intercept = linear.coef_, linear.intercept_
        self.pca_, self.linear_ = pca, linear  # the scikit-learn estimators of this fit (not saved)
        self.mean_ = pca.mean_.copy()
        self.components_ = pca.components_.copy()
        self.explained_variance_ = pca.explained_variance_.copy()
        self.explained_variance_ratio_ = float(pca.explained_variance_ratio_.sum())
        self.coef_, self.intercept_ = np.asarray(coef, dtype=np.float64), np.asarray(intercept, dtype=np.float64)
        self.train_samples_ = int(x.shape[0])
        return self

    def transform(self, data: xr.Dataset) -> np.ndarray:
        """The principal-component scores (n, components), as scikit-learn's ``PCA.transform``."""
        self.require_fitted("components_")
        if list(image_shape(data))[0] != self.in_shape_[0]:
            raise reflow.DataError(f"pca-logistic was trained on {self.in_shape_[0]}-channel images; these have "
                                   f"{image_shape(data)[0]}")
        x = self.pixels(data)
        if x.shape[1] != self.mean_.shape[0]:
            raise reflow.DataError(f"pca-logistic was trained on {self.mean_.shape[0]} pixel values per image; these "
                                   f"images give {x.shape[1]} (set size to resize them alike)")
        z = (x - self.mean_) @ self.components_.T
        if self.params.whiten:
            z /= np.sqrt(self.explained_variance_)
        return z

    def predict_proba(self, data: xr.Dataset) -> np.ndarray:
        """Class probabilities (n, classes), as scikit-learn's ``LogisticRegression.predict_proba``."""
        from scipy.special import expit, softmax

        scores = self.transform(data) @ self.coef_.T + self.intercept_
        if scores.shape[1] == 1:  # binary: one logit for the second class
            p = expit(scores[:, 0])
            return np.column_stack([1.0 - p, p])
        return softmax(scores, axis=1)

    def predict(self, data: xr.Dataset, ctx: RunContext) -> xr.Dataset:
        """``<target>_mean`` (regression) or ``<target>_pred``, ``<target>_prob`` and ``<target>_prob_<class>``."""
        import xarray as xr

        target = self._target()
        dim = image_array(data).dims[0]
        coords = {dim: data[dim].values} if dim in data.coords else {}
        if self.task_ == "regression":
            mean = self.transform(data) @ self.coef_[0] + self.intercept_[0]
            return xr.Dataset({f"{target}_mean": (dim, mean)}, coords=coords)
        return class_predictions(self.predict_proba(data), self.classes_, target, dim, coords)

    def summary(self) -> dict[str, Any]:
        if not self.is_fitted("components_"):
            return {}
        return {"components": int(self.components_.shape[0]), "pixels_per_image": int(self.components_.shape[1]),
                "explained_variance_ratio": round(self.explained_variance_ratio_, 6),
                "train_samples": self.train_samples_}

    def save_state(self, directory: Path) -> None:
        self.require_fitted("components_")
        np.savez(directory / ARRAYS, mean=self.mean_, components=self.components_,
                 explained_variance=self.explained_variance_, coef=self.coef_, intercept=self.intercept_)
        state = {"task": self.task_, "classes": self.classes_, "in_shape": self.in_shape_,
                 "explained_variance_ratio": self.explained_variance_ratio_, "train_samples": self.train_samples_}
        (directory / STATE).write_text(json.dumps(state, indent=2))

    def load_state(self, directory: Path) -> None:
        state = json.loads((directory / STATE).read_text())
        with np.load(directory / ARRAYS, allow_pickle=False) as arrays:
            self.mean_, self.components_ = arrays["mean"], arrays["components"]
            self.explained_variance_ = arrays["explained_variance"]
            self.coef_, self.intercept_ = arrays["coef"], arrays["intercept"]
        self.task_, self.classes_, self.in_shape_ = state["task"], state["classes"], state["in_shape"]
        self.explained_variance_ratio_ = state["explained_variance_ratio"]
        self.train_samples_ = state["train_samples"]

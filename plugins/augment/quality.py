"""How good are generated images? A small probe trained on real training images only.

The probe (scikit-learn): images averaged down to ``size`` x ``size`` pixels (area averaging), flattened, projected
on their first ``components`` principal components (PCA fitted on the real training images), standardized, and a
multinomial logistic regression on those scores. It gives two checks:

- *class consistency*: the fraction of generated images of class c that the probe assigns to c (chance is
  1 / number of classes); read it next to the probe's accuracy on held-out real images, its ceiling.
- *in-distribution share*: the fraction of generated images of class c whose distance from the probe's PCA
  subspace (the pixel residual the principal components cannot express) is at most the 95th percentile of that
  distance over the held-out real images of c (over all held-out images when c has fewer than
  :data:`MIN_REFERENCE`; over the training images, which sit closer to their own components, when nothing is
  held out). Images unlike any real one (noise, artefacts) fail it even where the linear classifier happens to
  assign them to the right class, so read class consistency together with it; new real images score about
  0.95.
- *Frechet distance* per class on the probe's PCA features (not Inception features: no pretrained weights are
  downloaded): ``||mu_g - mu_r||^2 + tr(S_g + S_r - 2 (S_g^1/2 S_r S_g^1/2)^1/2)`` between the Gaussians fitted to
  the generated and the held-out real images of c. Its floor is the same distance between the *real training*
  images of c and the held-out ones (finite samples never give 0): generated images close to that floor look, to
  these features, like new real images.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .common import resize_images

MIN_REFERENCE = 5
"""Held-out images a class needs for its own in-distribution threshold (else the pooled one is used)."""


def downsampled(images: np.ndarray, size: int) -> np.ndarray:
    """Images (n, C, H, W) averaged down to at most ``size`` pixels a side and flattened to (n, C*h*w)."""
    n, _, height, width = images.shape
    h, w = min(size, height), min(size, width)
    if n == 0:
        return np.zeros((0, images.shape[1] * h * w))
    out = [resize_images(images[lo:lo + 256], h, w) for lo in range(0, n, 256)]
    return np.concatenate(out).reshape(n, -1).astype(np.float64)


class QualityProbe:
    """PCA features and a logistic-regression classifier of downsampled pixels, fit on real training images."""

    def __init__(self, size: int = 32, components: int = 32, seed: int = 0):
        self.size = size
        self.components = components
        self.seed = seed

    def fit(self, images: np.ndarray, labels: Sequence[str]) -> QualityProbe:
        from sklearn.decomposition import PCA
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        pixels = downsampled(images, self.size)
        labels = np.asarray(labels, dtype=str)
        k = max(1, min(self.components, pixels.shape[0] - 1, pixels.shape[1]))
        self.pca_ = PCA(n_components=k, random_state=self.seed).fit(pixels)
        self.classes_ = sorted(set(labels.tolist()))
        self.classifier_ = None
        if len(self.classes_) >= 2:
            self.classifier_ = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
            self.classifier_.fit(self.pca_.transform(pixels), labels)
        return self

    @property
    def n_features(self) -> int:
        return int(self.pca_.n_components_)

    def features(self, images: np.ndarray) -> np.ndarray:
        """PCA scores (n, k) of the images."""
        if images.shape[0] == 0:
            return np.zeros((0, self.n_features))
        return self.pca_.transform(downsampled(images, self.size))

    def residual(self, images: np.ndarray) -> np.ndarray:
        """Per image, the norm of its downsampled pixels minus their projection on the principal components."""
        if images.shape[0] == 0:
            return np.zeros(0)
        pixels = downsampled(images, self.size)
        rebuilt = self.pca_.inverse_transform(self.pca_.transform(pixels))
        return np.linalg.norm(pixels - rebuilt, axis=1)

    def predict(self, images: np.ndarray) -> np.ndarray:
        """The probe's class of each image (text); needs two or more training classes."""
        if self.classifier_ is None:
            raise ValueError("the probe saw one class only: it cannot classify")
        if images.shape[0] == 0:
            return np.zeros(0, dtype=str)
        return np.asarray(self.classifier_.predict(self.features(images)), dtype=str)


def _sqrt_psd(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2.0)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def frechet_from_moments(mu_a: np.ndarray, cov_a: np.ndarray, mu_b: np.ndarray, cov_b: np.ndarray) -> float:
    """Frechet (2-Wasserstein) distance squared between N(mu_a, cov_a) and N(mu_b, cov_b).

    ``tr((A^1/2 B A^1/2)^1/2)`` equals ``tr((A B)^1/2)`` and is computed from the eigenvalues of the symmetric
    positive semi-definite ``A^1/2 B A^1/2``, so singular covariances (fewer samples than features) stay real.
    """
    mu_a, mu_b = np.atleast_1d(mu_a).astype(np.float64), np.atleast_1d(mu_b).astype(np.float64)
    cov_a, cov_b = np.atleast_2d(cov_a).astype(np.float64), np.atleast_2d(cov_b).astype(np.float64)
    root_a = _sqrt_psd(cov_a)
    middle = np.linalg.eigvalsh((root_a @ cov_b @ root_a + (root_a @ cov_b @ root_a).T) / 2.0)
    cross = float(np.sum(np.sqrt(np.clip(middle, 0.0, None))))
    return float(np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2.0 * cross)


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to feature rows ``a`` (n, k) and ``b`` (m, k); NaN with fewer
    than 2 rows on either side."""
    if a.shape[0] < 2 or b.shape[0] < 2:
        return float("nan")
    return frechet_from_moments(a.mean(axis=0), np.cov(a, rowvar=False), b.mean(axis=0), np.cov(b, rowvar=False))


def quality_metrics(probe: QualityProbe, classes: Sequence[str], train: tuple[np.ndarray, np.ndarray],
                    test: tuple[np.ndarray, np.ndarray], generated: tuple[np.ndarray, np.ndarray],
                    key: Any = str) -> dict[str, Any]:
    """The checks as flat metrics. ``train``, ``test``, ``generated`` are (images, labels); ``key(c)`` names a class
    in the metric keys. Per class: ``probe_accuracy_<c>``, ``probe_in_distribution_<c>``,
    ``frechet_generated_<c>``, ``frechet_real_<c>``."""
    (x_train, y_train), (x_test, y_test), (x_gen, y_gen) = train, test, generated
    if not len(y_train):
        raise ValueError("quality_metrics needs real training images")
    y_train, y_test, y_gen = (np.asarray(y, dtype=str) for y in (y_train, y_test, y_gen))
    f_train, f_test, f_gen = probe.features(x_train), probe.features(x_test), probe.features(x_gen)
    nan = float("nan")
    out: dict[str, Any] = {"probe_size": int(min(probe.size, x_train.shape[-1])), "probe_features": probe.n_features,
                           "probe_chance": 1.0 / max(len(probe.classes_), 1)}
    can_classify = probe.classifier_ is not None
    p_test = probe.predict(x_test) if can_classify and len(y_test) else np.zeros(0, str)
    p_gen = probe.predict(x_gen) if can_classify and len(y_gen) else np.zeros(0, str)
    out["probe_test_accuracy"] = float(np.mean(p_test == y_test)) if p_test.size else nan
    out["probe_generated_accuracy"] = float(np.mean(p_gen == y_gen)) if p_gen.size else nan
    ref_labels = y_test if len(y_test) else y_train
    reference = probe.residual(x_test if len(y_test) else x_train)
    pooled = float(np.quantile(reference, 0.95))
    limits = {c: float(np.quantile(reference[ref_labels == c], 0.95))
              if (ref_labels == c).sum() >= MIN_REFERENCE else pooled for c in classes}
    residual = probe.residual(x_gen)
    inside = np.array([r <= limits.get(c, pooled) for r, c in zip(residual, y_gen, strict=True)], dtype=bool)
    out["probe_generated_in_distribution"] = float(np.mean(inside)) if inside.size else nan
    fd_gen, fd_real = [], []
    for c in classes:
        k = key(c)
        gen, real_test, real_train = y_gen == c, y_test == c, y_train == c
        out[f"probe_accuracy_{k}"] = float(np.mean(p_gen[gen] == c)) if p_gen.size and gen.any() else nan
        out[f"probe_test_accuracy_{k}"] = (float(np.mean(p_test[real_test] == c))
                                           if p_test.size and real_test.any() else nan)
        out[f"probe_in_distribution_{k}"] = float(np.mean(inside[gen])) if gen.any() else nan
        out[f"frechet_generated_{k}"] = frechet_distance(f_gen[gen], f_test[real_test])
        out[f"frechet_real_{k}"] = frechet_distance(f_train[real_train], f_test[real_test])
        if np.isfinite(out[f"frechet_generated_{k}"]) and np.isfinite(out[f"frechet_real_{k}"]):
            fd_gen.append(out[f"frechet_generated_{k}"])
            fd_real.append(out[f"frechet_real_{k}"])
    out["frechet_generated_mean"] = float(np.mean(fd_gen)) if fd_gen else nan
    out["frechet_real_mean"] = float(np.mean(fd_real)) if fd_real else nan
    return out

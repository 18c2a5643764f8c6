"""The input normalizations of seed 000 that scikit-learn lacks, as scikit-learn transformers.

Seed 000 lists the normalizations used on packaging data (its refs 77-89; the tanh-estimator and the median/MAD
scores follow Jain, Nandakumar and Ross 2005, "Score normalization in multimodal biometric systems"):

- decimal scaling: ``x / 10^k`` with ``k`` the smallest integer for which every ``|x / 10^k| < 1`` (per column);
- median and median absolute deviation: ``(x - median) / MAD`` with ``MAD = median(|x - median|)``;
- tanh-estimator: ``0.5 * (tanh(0.01 * (x - mean) / std) + 1)`` (mean and standard deviation of the training
  column stand in for Jain et al.'s Hampel estimates; the 0.01 spread is theirs and squeezes values near 0.5);
- sigmoid: ``1 / (1 + exp(-(x - mean) / std))``.

z-score and min-max are scikit-learn's ``StandardScaler`` and ``MinMaxScaler``. Every fitted statistic is a
numpy array ending in ``_`` (the scikit-learn convention), so the fitted state is plain arrays.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, OneToOneFeatureMixin, TransformerMixin
from sklearn.utils.validation import check_is_fitted, validate_data


class DecimalScaler(OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    """Decimal scaling: divide each column by ``10^k``, ``k`` the smallest integer with ``max |x| / 10^k < 1``.

    ``k`` may be negative (a column of values below 0.1 is scaled up); an all-zero column keeps ``k = 0``.
    """

    def fit(self, X: Any, y: Any = None) -> DecimalScaler:
        X = validate_data(self, X, dtype=np.float64)
        peak = np.max(np.abs(X), axis=0)
        with np.errstate(divide="ignore"):
            k = np.where(peak > 0, np.floor(np.log10(np.where(peak > 0, peak, 1.0))) + 1, 0.0)
        # log10 can land a hair off an exact power of ten: settle k by the definition itself
        k = np.where(peak / 10.0**k >= 1.0, k + 1, k)
        k = np.where((peak > 0) & (peak / 10.0 ** (k - 1) < 1.0), k - 1, k)
        self.exponent_ = k.astype(int)
        self.scale_ = 10.0 ** self.exponent_.astype(float)
        return self

    def transform(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "scale_")
        return validate_data(self, X, dtype=np.float64, reset=False) / self.scale_

    def inverse_transform(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "scale_")
        return np.asarray(X, dtype=np.float64) * self.scale_


class MedianMADScaler(OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    """``(x - median) / MAD``, ``MAD = median(|x - median|)`` (no 1.4826 factor); a zero MAD becomes 1."""

    def fit(self, X: Any, y: Any = None) -> MedianMADScaler:
        X = validate_data(self, X, dtype=np.float64)
        self.center_ = np.median(X, axis=0)
        mad = np.median(np.abs(X - self.center_), axis=0)
        self.scale_ = np.where(mad > 0, mad, 1.0)
        return self

    def transform(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "scale_")
        return (validate_data(self, X, dtype=np.float64, reset=False) - self.center_) / self.scale_

    def inverse_transform(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "scale_")
        return np.asarray(X, dtype=np.float64) * self.scale_ + self.center_


class _MomentSquash(OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    """Base of the squashing normalizations: a z-score ``(x - mean) / std`` fed through a squashing function."""

    def fit(self, X: Any, y: Any = None) -> _MomentSquash:
        X = validate_data(self, X, dtype=np.float64)
        self.mean_ = X.mean(axis=0)
        std = X.std(axis=0)
        self.scale_ = np.where(std > 0, std, 1.0)
        return self

    def _z(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "scale_")
        return (validate_data(self, X, dtype=np.float64, reset=False) - self.mean_) / self.scale_


class TanhEstimatorScaler(_MomentSquash):
    """The tanh-estimator: ``0.5 * (tanh(0.01 * z) + 1)`` with ``z`` the column's z-score; values lie in (0, 1)."""

    spread = 0.01

    def transform(self, X: Any) -> np.ndarray:
        return 0.5 * (np.tanh(self.spread * self._z(X)) + 1.0)

    def inverse_transform(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "scale_")
        z = np.arctanh(2.0 * np.asarray(X, dtype=np.float64) - 1.0) / self.spread
        return z * self.scale_ + self.mean_


class SigmoidScaler(_MomentSquash):
    """Sigmoid normalization: ``1 / (1 + exp(-z))`` with ``z`` the column's z-score; values lie in (0, 1)."""

    def transform(self, X: Any) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-self._z(X)))

    def inverse_transform(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "scale_")
        p = np.asarray(X, dtype=np.float64)
        return np.log(p / (1.0 - p)) * self.scale_ + self.mean_

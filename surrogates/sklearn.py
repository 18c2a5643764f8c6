"""scikit-learn regressors as surrogates: the baselines seed 000 compares for FEA stress prediction.

``estimator`` picks one of ordinary least squares, lasso, ridge, Poisson regression, bagging, support vector
regression, k-nearest neighbours, random forest and gradient boosting (Wu et al., cited by seed 000, found the
random forest best for the maximum first principal stress of a chip package). Estimators that predict one output
only (svr, poisson, gradient-boosting) are wrapped in ``MultiOutputRegressor``. Targets are standardized before
fitting (so ``alpha``, ``epsilon`` and the like are relative to the target's spread) except for ``poisson``, whose
log link needs the raw, non-negative counts or rates. ``random-forest`` and ``bagging`` report the standard
deviation of the predictions across their trees as ``std``; the others have none.

Saving: a fitted scikit-learn estimator cannot be stored without pickle, so the training arrays are stored instead
and the estimator is refit on load with the same ``random_state`` (the surrogate's seed), which gives the same
model. A fingerprint (predictions at the first training points) is stored too and checked after the refit, so a
scikit-learn upgrade that changes the fit is reported instead of silently giving other predictions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, ValidationInfo, field_validator
from reflow.components import Params
from reflow.errors import DataError, ReflowError, UserInputError
from reflow.surrogates.base import Surrogate, load_arrays, save_arrays, standardize_stats

ESTIMATORS: dict[str, tuple[str, str]] = {
    "ols": ("sklearn.linear_model", "LinearRegression"),
    "lasso": ("sklearn.linear_model", "Lasso"),
    "ridge": ("sklearn.linear_model", "Ridge"),
    "poisson": ("sklearn.linear_model", "PoissonRegressor"),
    "bagging": ("sklearn.ensemble", "BaggingRegressor"),
    "svr": ("sklearn.svm", "SVR"),
    "knn": ("sklearn.neighbors", "KNeighborsRegressor"),
    "random-forest": ("sklearn.ensemble", "RandomForestRegressor"),
    "gradient-boosting": ("sklearn.ensemble", "GradientBoostingRegressor"),
}
"""Estimator name -> (module, class)."""

SINGLE_OUTPUT = {"svr", "poisson", "gradient-boosting"}
WITH_STD = {"random-forest", "bagging"}
FINGERPRINT_ROWS = 32

Option = bool | int | float | str | None


def estimator_class(name: str) -> type:
    import importlib

    module, cls = ESTIMATORS[name]
    return getattr(importlib.import_module(module), cls)


class SklearnParams(Params):
    """Params of the ``sklearn`` family."""

    estimator: Literal["ols", "lasso", "ridge", "poisson", "bagging", "svr", "knn", "random-forest",
                       "gradient-boosting"] = Field("random-forest", description="the scikit-learn regressor")
    options: dict[str, Option] = Field(default_factory=dict, description="constructor arguments of the estimator, "
                                       "e.g. {n_estimators: 200} or {alpha: 0.1} (names as in scikit-learn)")

    @field_validator("options")
    @classmethod
    def _known_options(cls, options: dict[str, Option], info: ValidationInfo) -> dict[str, Option]:
        name = info.data.get("estimator")
        if not options or name is None:
            return options
        allowed = sorted(estimator_class(name)().get_params(deep=False))
        unknown = sorted(set(options) - set(allowed))
        if unknown:
            raise ValueError(f"{name} has no option(s) {', '.join(unknown)}; its options: {', '.join(allowed)}")
        return options


class SklearnSurrogate(Surrogate):
    """A scikit-learn regressor; ``std`` across trees for random-forest and bagging, None otherwise."""

    family = "sklearn"
    has_std = False
    Params = SklearnParams

    def __init__(self, params: Any = None, *, device: str = "cpu", seed: int = 0, **kwargs: Any):
        super().__init__(params, device=device, seed=seed, **kwargs)
        self.has_std = self.params.estimator in WITH_STD

    def make_estimator(self) -> Any:
        """The unfitted estimator (``random_state`` = the seed where it has one), wrapped for several outputs."""
        name = self.params.estimator
        cls = estimator_class(name)
        options = dict(self.params.options)
        if "random_state" in cls().get_params(deep=False):
            options.setdefault("random_state", self.seed)
        try:
            est = cls(**options)
        except TypeError as err:
            raise UserInputError(f"sklearn: options: {err}") from None
        return est

    def _wrap(self, est: Any, m: int) -> Any:
        if m > 1 and self.params.estimator in SINGLE_OUTPUT:
            from sklearn.multioutput import MultiOutputRegressor

            return MultiOutputRegressor(est)
        return est

    def _refit(self, X: np.ndarray, Y: np.ndarray) -> None:
        poisson = self.params.estimator == "poisson"
        if poisson and np.any(Y < 0):
            raise DataError("sklearn: estimator 'poisson' needs non-negative targets (counts or rates); "
                            f"the smallest is {float(Y.min())}")
        if poisson:
            self.y_mean_, self.y_std_ = np.zeros(Y.shape[1]), np.ones(Y.shape[1])
        else:
            self.y_mean_, self.y_std_ = standardize_stats(Y)
        T = (Y - self.y_mean_) / self.y_std_
        est = self._wrap(self.make_estimator(), Y.shape[1])
        try:
            est.fit(X, T[:, 0] if T.shape[1] == 1 else T)
        except (ValueError, TypeError) as err:
            if "InvalidParameterError" in type(err).__name__:
                raise UserInputError(f"sklearn: options of {self.params.estimator}: {err}") from None
            raise
        self.estimator_ = est
        self.train_X_, self.train_Y_ = X, Y

    def _fit(self, X, Y, validation):
        self._refit(X, Y)

    def _std(self, X: np.ndarray) -> np.ndarray:
        est = self.estimator_
        if self.params.estimator == "bagging":
            per_member = [e.predict(X[:, cols]) for e, cols in zip(est.estimators_, est.estimators_features_,
                                                                   strict=True)]
        else:
            per_member = [tree.predict(X) for tree in est.estimators_]
        stack = np.asarray(per_member).reshape(len(per_member), X.shape[0], -1)
        return stack.std(axis=0) * self.y_std_

    def _predict(self, X):
        T = np.asarray(self.estimator_.predict(X)).reshape(X.shape[0], -1)
        mean = T * self.y_std_ + self.y_mean_
        return mean, (self._std(X) if self.has_std else None)

    def _save_state(self, directory: Path):
        import sklearn

        fingerprint = self._predict(self.train_X_[:FINGERPRINT_ROWS])[0]
        save_arrays(directory / "state.npz", {"train_X": self.train_X_, "train_Y": self.train_Y_,
                                              "fingerprint": fingerprint})
        return {"refit_on_load": True, "sklearn_version": sklearn.__version__}

    def _load_state(self, directory: Path, state: dict[str, Any]) -> None:
        import sklearn

        arrays = load_arrays(directory / "state.npz")
        self._refit(arrays["train_X"], arrays["train_Y"])
        again = self._predict(self.train_X_[:FINGERPRINT_ROWS])[0]
        if not np.allclose(again, arrays["fingerprint"], rtol=1e-9, atol=1e-12 * float(np.abs(self.y_std_).max())):
            raise ReflowError(
                f"{directory}: the {self.params.estimator} refit on load predicts differently from the saved model "
                f"(saved with scikit-learn {state.get('sklearn_version')}, now {sklearn.__version__}); "
                "retrain the model")

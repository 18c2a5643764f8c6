"""Input preprocessing from seed 000 (normalization, feature selection, feature extraction), composable with any family.

Three optional steps, in this order, built as one scikit-learn ``Pipeline``:

1. ``scale``: ``zscore`` (mean/std, ``StandardScaler``), ``minmax`` (onto [0, 1], ``MinMaxScaler``), ``decimal``
   (decimal scaling), ``robust`` (median/MAD), ``tanh`` (tanh-estimator), ``sigmoid``, or ``none``; the last four
   are in :mod:`reflow.surrogates.transformers`;
2. ``select``: keep ``k`` inputs, by a filter (``mutual-info``: ``SelectKBest`` on the mutual information with the
   targets, the largest over the outputs) or a wrapper (``rfe``: recursive feature elimination around a random
   forest or a linear model);
3. ``pca``: principal components: an int keeps that many, a float in (0, 1) keeps as many as explain that
   fraction of the variance.

Targets are not touched here: each family standardizes its targets itself where it needs to.

Saving: a fitted scikit-learn pipeline cannot be stored without pickle, so :class:`Preprocessor` stores the
training arrays (``preprocess.npz``) and refits on load. Every step is deterministic for a seed (the mutual
information estimate and the RFE forest take ``random_state`` = the seed), and the stored transformed training
inputs are compared with the refit's, so a refit that differs (a scikit-learn upgrade) is an error, not a quiet
change in predictions.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator
from reflow.components import Params
from reflow.errors import DataError, ReflowError, UserInputError
from reflow.surrogates.base import Surrogate, as_inputs, as_targets, load_arrays, save_arrays, validate_params

SCALERS = ("zscore", "minmax", "decimal", "robust", "tanh", "sigmoid", "none")
PREPROCESS_FILE = "preprocess.npz"
PREPROCESS_META = "preprocess.json"


class SelectParams(Params):
    """Feature selection: keep the ``k`` most informative inputs."""

    method: Literal["mutual-info", "rfe"] = Field(description="mutual-info: filter by mutual information with the "
                                                              "targets; rfe: recursive feature elimination (wrapper)")
    k: int = Field(ge=1, description="inputs to keep")
    estimator: Literal["random-forest", "linear"] = Field(
        "random-forest", description="rfe only: the model whose importances rank the inputs (random-forest "
                                     "sees nonlinear effects; linear only straight-line ones)")


class PreprocessParams(Params):
    """Input preprocessing: scaling, then feature selection, then PCA."""

    scale: Literal["zscore", "minmax", "decimal", "robust", "tanh", "sigmoid", "none"] = Field(
        "zscore", description="input normalization: zscore (mean/std), minmax ([0, 1]), decimal (x / 10^k), "
                              "robust (median/MAD), tanh (tanh-estimator), sigmoid, none")
    select: SelectParams | None = Field(None, description="feature selection, e.g. {method: mutual-info, k: 3} "
                                                          "or {method: rfe, k: 3}; null keeps every input")
    pca: int | float | None = Field(None, description="principal components: an int keeps that many, a float in "
                                                      "(0, 1) the fraction of variance to explain; null: no PCA")

    @field_validator("pca")
    @classmethod
    def _pca_range(cls, value: int | float | None) -> int | float | None:
        if value is None:
            return value
        if isinstance(value, int):
            if value < 1:
                raise ValueError(f"{value} components: keep at least 1")
            return value
        if not 0.0 < value < 1.0:
            raise ValueError(f"{value}: a float is the fraction of variance to explain, in (0, 1); "
                             "use an int for a number of components")
        return value


def mutual_info_scores(X: np.ndarray, y: np.ndarray, random_state: int = 0) -> np.ndarray:
    """Mutual information of each input with the targets: the largest over the outputs (a SelectKBest score)."""
    from sklearn.feature_selection import mutual_info_regression

    Y = np.asarray(y, dtype=float).reshape(len(X), -1)
    return np.max([mutual_info_regression(X, Y[:, j], random_state=random_state) for j in range(Y.shape[1])],
                  axis=0)


def make_scaler(name: str) -> Any:
    """The scikit-learn transformer for scaling ``name`` (``"passthrough"`` for none)."""
    if name == "none":
        return "passthrough"
    if name == "zscore":
        from sklearn.preprocessing import StandardScaler

        return StandardScaler()
    if name == "minmax":
        from sklearn.preprocessing import MinMaxScaler

        return MinMaxScaler()
    from reflow.surrogates import transformers

    classes = {"decimal": transformers.DecimalScaler, "robust": transformers.MedianMADScaler,
               "tanh": transformers.TanhEstimatorScaler, "sigmoid": transformers.SigmoidScaler}
    if name not in classes:
        raise UserInputError(f"scale: unknown scaling {name!r}; allowed: {', '.join(SCALERS)}")
    return classes[name]()


def build_pipeline(params: PreprocessParams, n_features: int, seed: int = 0) -> Any:
    """The unfitted scikit-learn ``Pipeline`` for ``params`` on data with ``n_features`` inputs."""
    from sklearn.pipeline import Pipeline

    steps: list[tuple[str, Any]] = [("scale", make_scaler(params.scale))]
    remaining = n_features
    if params.select is not None:
        k = params.select.k
        if k > n_features:
            raise UserInputError(f"select.k: {k} inputs to keep, but the data has only {n_features}")
        if params.select.method == "mutual-info":
            from sklearn.feature_selection import SelectKBest

            steps.append(("select", SelectKBest(functools.partial(mutual_info_scores, random_state=seed), k=k)))
        else:
            from sklearn.feature_selection import RFE

            if params.select.estimator == "linear":
                from sklearn.linear_model import LinearRegression

                ranker: Any = LinearRegression()
            else:
                from sklearn.ensemble import RandomForestRegressor

                ranker = RandomForestRegressor(n_estimators=100, random_state=seed)
            steps.append(("select", RFE(ranker, n_features_to_select=k)))
        remaining = k
    if params.pca is not None:
        from sklearn.decomposition import PCA

        if isinstance(params.pca, int) and params.pca > remaining:
            raise UserInputError(f"pca: {params.pca} components, but only {remaining} inputs are left to combine")
        steps.append(("pca", PCA(n_components=params.pca, svd_solver="full", random_state=seed)))
    return Pipeline(steps)


class Preprocessor:
    """A fitted preprocessing pipeline with pickle-free save/load (training arrays + deterministic refit).

    Attributes (after fit):
        pipeline_: the fitted scikit-learn Pipeline.
        n_features_in_, n_features_out_: input widths before and after.
        selected_: indices of the inputs feature selection kept (all inputs without selection).
        explained_variance_ratio_: variance share of each kept principal component (None without PCA).
    """

    pipeline_: Any = None
    """The fitted pipeline (None until :meth:`fit`)."""

    def __init__(self, params: PreprocessParams | dict[str, Any] | None = None, seed: int = 0):
        self.params = validate_params(PreprocessParams, params, "preprocess")
        self.seed = int(seed)

    def fit(self, X: Any, Y: Any) -> Preprocessor:
        X = as_inputs(X, "preprocess")
        Y = as_targets(Y, X.shape[0], "preprocess")
        pipeline = build_pipeline(self.params, X.shape[1], self.seed)
        if self.params.pca is not None and isinstance(self.params.pca, int) and self.params.pca > X.shape[0]:
            raise DataError(f"pca: {self.params.pca} components need at least as many samples, got {X.shape[0]}")
        pipeline.fit(X, Y[:, 0] if Y.shape[1] == 1 else Y)
        self.pipeline_ = pipeline
        self.train_X_, self.train_Y_ = X, Y
        self.n_features_in_ = X.shape[1]
        self.n_features_out_ = int(self.transform(X[:1]).shape[1])
        select = pipeline.named_steps.get("select")
        self.selected_ = (np.flatnonzero(select.get_support()) if select is not None
                          else np.arange(X.shape[1]))
        pca = pipeline.named_steps.get("pca")
        self.explained_variance_ratio_ = None if pca is None else np.asarray(pca.explained_variance_ratio_)
        return self

    def transform(self, X: Any) -> np.ndarray:
        if self.pipeline_ is None:
            raise ReflowError("preprocess: transform before fit")
        X = as_inputs(X, "preprocess", self.n_features_in_)
        return np.asarray(self.pipeline_.transform(X), dtype=np.float64)

    def summary(self) -> dict[str, float]:
        out = {"inputs_after_preprocessing": float(self.n_features_out_)}
        if self.explained_variance_ratio_ is not None:
            out["pca_explained_variance"] = float(self.explained_variance_ratio_.sum())
        return out

    def save(self, directory: str | Path) -> None:
        """``preprocess.npz`` (training arrays and their transform) and ``preprocess.json`` (params, facts)."""
        import sklearn

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_arrays(directory / PREPROCESS_FILE, {"train_X": self.train_X_, "train_Y": self.train_Y_,
                                                  "transformed": self.transform(self.train_X_)})
        meta = {"params": self.params.model_dump(mode="json"), "seed": self.seed, "refit_on_load": True,
                "sklearn_version": sklearn.__version__, "selected": self.selected_.tolist(),
                "n_features_out": self.n_features_out_}
        (directory / PREPROCESS_META).write_text(json.dumps(meta, indent=2))

    @classmethod
    def load(cls, directory: str | Path) -> Preprocessor:
        """Refit on the stored training arrays and check the refit transforms them as the saved one did."""
        import sklearn

        directory = Path(directory)
        meta = json.loads((directory / PREPROCESS_META).read_text())
        arrays = load_arrays(directory / PREPROCESS_FILE)
        pre = cls(meta["params"], seed=meta["seed"]).fit(arrays["train_X"], arrays["train_Y"])
        again = pre.transform(arrays["train_X"])
        if again.shape != arrays["transformed"].shape or not np.allclose(again, arrays["transformed"], rtol=1e-9,
                                                                         atol=1e-12):
            raise ReflowError(f"{directory}: the preprocessing refit on load differs from the saved one (saved with "
                              f"scikit-learn {meta.get('sklearn_version')}, now {sklearn.__version__}); retrain")
        return pre


class PreprocessedSurrogate(Surrogate):
    """Preprocessing (:class:`Preprocessor`) in front of any surrogate family: one surrogate to fit and save.

    ``PreprocessedSurrogate({"scale": "robust", "pca": 0.95}, make_surrogate("gp"))``. Its ``device`` and
    ``has_std`` are the inner surrogate's. Saved as this folder's ``preprocess.*`` plus the inner surrogate in
    ``model/``.
    """

    family = "preprocessed"
    Params = PreprocessParams

    def __init__(self, params: PreprocessParams | dict[str, Any] | None = None, surrogate: Surrogate | None = None,
                 *, device: str | None = None, seed: int | None = None, **kwargs: Any):
        if not isinstance(surrogate, Surrogate):
            raise UserInputError("preprocessed: give the surrogate to put the preprocessing in front of "
                                 f"(got {surrogate!r})")
        self.surrogate = surrogate
        super().__init__(params, device=device or surrogate.device, seed=surrogate.seed if seed is None else seed,
                         **kwargs)
        self.has_std = surrogate.has_std
        self.uses_torch = surrogate.uses_torch

    @property
    def device(self) -> str:
        return self.surrogate.device

    @device.setter
    def device(self, value: str) -> None:
        self.surrogate.device = value

    @property
    def quiet(self) -> bool:
        return self.surrogate.quiet

    @quiet.setter
    def quiet(self, value: bool) -> None:
        self.surrogate.quiet = value

    def _fit(self, X, Y, validation):
        self.preprocessor_ = Preprocessor(self.params, self.seed).fit(X, Y)
        if validation is not None:
            validation = (self.preprocessor_.transform(validation[0]), validation[1])
        self.surrogate.fit(self.preprocessor_.transform(X), Y, validation=validation)

    def _predict(self, X):
        return self.surrogate.predict(self.preprocessor_.transform(X))

    def _summary(self):
        return {**self.surrogate._summary(), **self.preprocessor_.summary()}

    def _save_state(self, directory: Path):
        self.preprocessor_.save(directory)
        self.surrogate.save(directory / "model")
        return {"inner_family": self.surrogate.family}

    @classmethod
    def _restore(cls, meta: dict[str, Any], directory: Path, device: str) -> PreprocessedSurrogate:
        inner = Surrogate.load(directory / "model", device=device)
        return cls(meta["params"], inner, seed=meta["seed"])

    def _load_state(self, directory: Path, state: dict[str, Any]) -> None:
        self.preprocessor_ = Preprocessor.load(directory)

"""The one interface every surrogate family implements: ``fit(X, Y)``, ``predict(X) -> (mean, std)``, save/load.

A surrogate maps ``n`` design points with ``d`` inputs to ``m`` outputs (numpy float arrays ``(n, d)`` and
``(n, m)``). Families with a notion of uncertainty (``has_std``) return the standard deviation of each prediction
next to the mean; the others return ``None`` in its place.

Saved surrogates are a folder with ``surrogate.json`` (family, params, seed, shapes and family-specific facts) and
the fitted state as arrays (``state.npz``, read with ``allow_pickle=False``): torch families store their state
dicts there, scikit-learn families their training arrays (they are refit on load, deterministically). Nothing is
ever pickled.

This module stays light (numpy and pydantic): torch, BoTorch and scikit-learn are imported where they are used.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ValidationError
from reflow.components import Params
from reflow.errors import DataError, ReflowError, UserInputError

SAVE_FORMAT = 1
"""Version of the folder layout written by :meth:`Surrogate.save`."""

META_FILE = "surrogate.json"
STATE_FILE = "state.npz"


def validate_params(params_class: type[BaseModel], params: BaseModel | dict[str, Any] | None,
                    where: str) -> BaseModel:
    """``params`` checked against ``params_class``; a bad value raises :class:`UserInputError` naming the field."""
    if isinstance(params, params_class):
        return params
    if isinstance(params, BaseModel):
        params = params.model_dump()
    try:
        return params_class(**(params or {}))
    except ValidationError as err:
        lines = []
        for e in err.errors():
            field = ".".join(str(p) for p in e["loc"]) or "<params>"
            lines.append(f"{where}: {field}: {e['msg']} (got {e.get('input')!r})")
        raise UserInputError("\n".join(lines)) from None


def as_inputs(X: Any, where: str, n_features: int | None = None) -> np.ndarray:
    """``X`` as a finite float64 array ``(n, d)``; a clear :class:`DataError` otherwise."""
    try:
        X = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise DataError(f"{where}: inputs X must be numbers: {err}") from None
    if X.ndim != 2:
        raise DataError(f"{where}: inputs X must be a 2-D array (samples, inputs), got shape {X.shape}")
    if X.shape[0] == 0:
        raise DataError(f"{where}: inputs X have no samples")
    if n_features is not None and X.shape[1] != n_features:
        raise DataError(f"{where}: inputs X have {X.shape[1]} columns; the surrogate was fit on {n_features}")
    if not np.all(np.isfinite(X)):
        bad = sorted({int(j) for j in np.argwhere(~np.isfinite(X))[:, 1]})
        raise DataError(f"{where}: inputs X hold NaN or infinite values in column(s) {bad}")
    return X


def as_targets(Y: Any, n: int, where: str) -> np.ndarray:
    """``Y`` as a finite float64 array ``(n, m)`` (a 1-D ``Y`` is one output)."""
    try:
        Y = np.asarray(Y, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise DataError(f"{where}: targets Y must be numbers: {err}") from None
    if Y.ndim == 1:
        Y = Y[:, None]
    if Y.ndim != 2 or Y.shape[1] == 0:
        raise DataError(f"{where}: targets Y must be a 2-D array (samples, outputs), got shape {Y.shape}")
    if Y.shape[0] != n:
        raise DataError(f"{where}: X has {n} samples but Y has {Y.shape[0]}")
    if not np.all(np.isfinite(Y)):
        bad = sorted({int(j) for j in np.argwhere(~np.isfinite(Y))[:, 1]})
        raise DataError(f"{where}: targets Y hold NaN or infinite values in column(s) {bad}")
    return Y


def standardize_stats(Y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Column means and standard deviations of ``Y`` (a constant column gets std 1, so it is only centred)."""
    mean = Y.mean(axis=0)
    std = Y.std(axis=0)
    return mean, np.where(std > 1e-12 * np.maximum(1.0, np.abs(mean)), std, 1.0)


@contextlib.contextmanager
def torch_seeded(seed: int) -> Iterator[None]:
    """Seed torch's CPU generator inside the block and restore the caller's generator state after."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        yield


def save_arrays(path: Path, arrays: dict[str, Any]) -> None:
    """Arrays (numpy or torch tensors) into an ``.npz``: the pickle-free store of every family's state."""
    out = {}
    for key, value in arrays.items():
        if hasattr(value, "detach"):
            value = value.detach().cpu().numpy()
        out[key] = np.asarray(value)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **out)
    tmp.replace(path)


def load_arrays(path: Path) -> dict[str, np.ndarray]:
    """The arrays :func:`save_arrays` wrote (``allow_pickle=False``)."""
    if not path.exists():
        raise ReflowError(f"{path}: missing; the saved surrogate is incomplete")
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


class Surrogate:
    """Base of every surrogate family.

    Subclasses set ``family``, ``has_std`` and a pydantic ``Params``, and implement ``_fit``, ``_predict``,
    ``_save_state`` and ``_load_state``. The public methods validate shapes, time the fit and write/read the
    folder layout, so families only deal with clean float64 arrays.

    Attributes:
        params: the validated params.
        device: where torch families compute ("cpu", "cuda", "cuda:1"); others ignore it. Set it any time
            before :meth:`fit` or :meth:`predict`.
        quiet: no progress bars while training (torch families draw one per network when False).
        seed: seeds every random draw (initial weights, subsampling, scikit-learn ``random_state``).
        n_features_in_, n_outputs_: the fitted input and output widths.
        fit_seconds_: wall time of the last fit.
    """

    family: ClassVar[str] = ""
    has_std: ClassVar[bool] = False
    uses_torch: ClassVar[bool] = False
    Params: ClassVar[type[BaseModel]] = Params
    n_outputs_: int | None = None
    """The fitted output width (None until :meth:`fit` or :meth:`load`)."""

    def __init__(self, params: BaseModel | dict[str, Any] | None = None, *, device: str = "cpu", seed: int = 0,
                 **kwargs: Any):
        if kwargs:
            base = params.model_dump() if isinstance(params, BaseModel) else dict(params or {})
            params = {**base, **kwargs}
        self.params = validate_params(self.Params, params, self.family or type(self).__name__)
        self.device = device
        self.seed = int(seed)
        self.quiet = True

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.model_dump().items())
        return f"{type(self).__name__}({args})"

    # ---- the interface ------------------------------------------------------------------------------
    def fit(self, X: Any, Y: Any, *, validation: tuple[Any, Any] | None = None) -> Surrogate:
        """Fit to inputs ``X`` (n, d) and targets ``Y`` (n, m); returns self.

        Args:
            X: inputs, shape (n, d).
            Y: targets, shape (n, m) (a 1-D array is one output).
            validation: optional held-out ``(X_val, Y_val)``; torch families stop early on it, others ignore it.
        """
        where = self.family or type(self).__name__
        X = as_inputs(X, where)
        Y = as_targets(Y, X.shape[0], where)
        if X.shape[0] < 2:
            raise DataError(f"{where}: needs at least 2 samples to fit, got {X.shape[0]}")
        if validation is not None:
            Xv = as_inputs(validation[0], f"{where} (validation)", X.shape[1])
            validation = (Xv, as_targets(validation[1], Xv.shape[0], f"{where} (validation)"))
            if validation[1].shape[1] != Y.shape[1]:
                raise DataError(f"{where}: validation Y has {validation[1].shape[1]} outputs, training Y "
                                f"{Y.shape[1]}")
        start = time.perf_counter()
        self._fit(X, Y, validation)
        self.n_features_in_ = int(X.shape[1])
        self.n_outputs_ = int(Y.shape[1])
        self.fit_seconds_ = time.perf_counter() - start
        return self

    def predict(self, X: Any) -> tuple[np.ndarray, np.ndarray | None]:
        """Predict at ``X`` (n, d): ``(mean (n, m), std (n, m))``, ``std`` None for families without it."""
        self._check_fitted()
        X = as_inputs(X, self.family or type(self).__name__, self.n_features_in_)
        mean, std = self._predict(X)
        mean = np.asarray(mean, dtype=np.float64).reshape(X.shape[0], self.n_outputs_)
        if std is not None:
            std = np.asarray(std, dtype=np.float64).reshape(X.shape[0], self.n_outputs_)
        return mean, std

    def summary(self) -> dict[str, float]:
        """Numbers worth reporting about the fit (seconds, sizes, fitted constants)."""
        self._check_fitted()
        return {"fit_seconds": float(self.fit_seconds_), **self._summary()}

    @property
    def is_fitted(self) -> bool:
        return self.n_outputs_ is not None

    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise ReflowError(f"{self.family or type(self).__name__}: predict before fit")

    # ---- persistence --------------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        """Write the fitted surrogate into ``directory`` (JSON + npz, no pickles); returns the folder."""
        self._check_fitted()
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        extra = self._save_state(directory) or {}
        meta = {"format": SAVE_FORMAT, "family": self.family, "params": self.params.model_dump(mode="json"),
                "seed": self.seed, "n_features_in": self.n_features_in_, "n_outputs": self.n_outputs_,
                "fit_seconds": self.fit_seconds_, "state": extra}
        tmp = directory / (META_FILE + ".tmp")
        tmp.write_text(json.dumps(meta, indent=2))
        tmp.replace(directory / META_FILE)
        return directory

    @classmethod
    def load(cls, directory: str | Path, *, device: str = "cpu") -> Surrogate:
        """Read a surrogate written by :meth:`save`; ``Surrogate.load`` picks the family from the folder."""
        directory = Path(directory)
        path = directory / META_FILE
        if not path.exists():
            raise ReflowError(f"{directory}: no {META_FILE}; not a saved surrogate")
        meta = json.loads(path.read_text())
        if meta.get("format") != SAVE_FORMAT:
            raise ReflowError(f"{path}: save format {meta.get('format')!r}; this reflow reads {SAVE_FORMAT}")
        from reflow.surrogates import surrogate_class

        klass = surrogate_class(meta["family"])
        if cls is not Surrogate and not issubclass(klass, cls):
            raise ReflowError(f"{directory}: holds a {meta['family']!r} surrogate, not a {cls.family!r} one")
        obj = klass._restore(meta, directory, device)
        obj.n_features_in_ = int(meta["n_features_in"])
        obj.n_outputs_ = int(meta["n_outputs"])
        obj.fit_seconds_ = float(meta["fit_seconds"])
        obj._load_state(directory, meta.get("state", {}))
        return obj

    @classmethod
    def _restore(cls, meta: dict[str, Any], directory: Path, device: str) -> Surrogate:
        """An unfitted instance with the saved params (composites override this to rebuild their parts)."""
        return cls(meta["params"], device=device, seed=meta["seed"])

    # ---- what a family implements -------------------------------------------------------------------
    def _fit(self, X: np.ndarray, Y: np.ndarray, validation: tuple[np.ndarray, np.ndarray] | None) -> None:
        raise NotImplementedError(f"{type(self).__name__} must implement _fit(X, Y, validation)")

    def _predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        raise NotImplementedError(f"{type(self).__name__} must implement _predict(X)")

    def _summary(self) -> dict[str, float]:
        return {}

    def _save_state(self, directory: Path) -> dict[str, Any] | None:
        """Write the fitted state into ``directory``; return JSON-able facts for ``surrogate.json``."""
        raise NotImplementedError(f"{type(self).__name__} must implement _save_state(directory)")

    def _load_state(self, directory: Path, state: dict[str, Any]) -> None:
        raise NotImplementedError(f"{type(self).__name__} must implement _load_state(directory, state)")

    # ---- helpers for torch families -----------------------------------------------------------------
    def _torch_device(self) -> Any:
        import torch

        return torch.device(self.device)

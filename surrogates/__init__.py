"""Surrogate families behind one interface: GP, deep ensemble, BP-NN (MLP), extreme learning machine, scikit-learn.

Each family is a :class:`reflow.surrogates.base.Surrogate`::

    from reflow.surrogates import make_surrogate, load_surrogate

    gp = make_surrogate("gp", {"kernel": "matern52"}, device="cuda", seed=1).fit(X, Y)
    mean, std = gp.predict(X_new)             # (n, m) each; std is None for families without it
    gp.save("gp-model")
    again = load_surrogate("gp-model")

Input preprocessing (scaling, feature selection, PCA) composes with any family through
:class:`reflow.surrogates.preprocess.PreprocessedSurrogate`; the reflow models ``gp``, ``mlp``, ``ensemble``,
``elm`` and ``sklearn`` (module :mod:`reflow.surrogates.plugin`) wrap both for studies.

Importing this package is cheap: each family module imports torch or scikit-learn only when it fits.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reflow.errors import UserInputError

if TYPE_CHECKING:
    from reflow.surrogates.base import Surrogate

FAMILIES: dict[str, tuple[str, str]] = {
    "gp": ("reflow.surrogates.gp", "GPSurrogate"),
    "mlp": ("reflow.surrogates.mlp", "MLPSurrogate"),
    "ensemble": ("reflow.surrogates.ensemble", "EnsembleSurrogate"),
    "elm": ("reflow.surrogates.elm", "ELMSurrogate"),
    "sklearn": ("reflow.surrogates.sklearn", "SklearnSurrogate"),
    "preprocessed": ("reflow.surrogates.preprocess", "PreprocessedSurrogate"),
}
"""Family name -> (module, class). ``preprocessed`` is the composite of preprocessing and a family."""


def surrogate_class(family: str) -> type[Surrogate]:
    """The class of surrogate ``family``; an unknown name lists the known ones."""
    if family not in FAMILIES:
        raise UserInputError(f"unknown surrogate family {family!r}; known: {', '.join(FAMILIES)}")
    module, name = FAMILIES[family]
    return getattr(importlib.import_module(module), name)


def make_surrogate(family: str, params: Any = None, *, device: str = "cpu", seed: int = 0) -> Surrogate:
    """A new, unfitted surrogate of ``family`` with ``params`` (a dict or the family's Params)."""
    return surrogate_class(family)(params, device=device, seed=seed)


def load_surrogate(directory: str | Path, *, device: str = "cpu") -> Surrogate:
    """A surrogate saved with ``Surrogate.save`` (any family)."""
    from reflow.surrogates.base import Surrogate

    return Surrogate.load(directory, device=device)


__all__ = ["FAMILIES", "load_surrogate", "make_surrogate", "surrogate_class"]

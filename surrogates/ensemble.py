"""Deep ensemble: ``members`` MLPs that differ only in their seed (initial weights, batch order); mean and spread.

Each member is the ``mlp`` family's network trained by :func:`reflow.training.fit_module` with seed ``seed + k``;
the prediction is the members' mean and ``std`` their standard deviation (population form), which grows where the
members disagree: away from the training data. This is the epistemic part of Lakshminarayanan et al.'s deep
ensembles; the members fit the mean squared error, so there is no separate noise term.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field
from reflow.surrogates.base import Surrogate, load_arrays, save_arrays
from reflow.surrogates.mlp import MLPParams, load_network, network_predict, state_arrays, train_network


class EnsembleParams(MLPParams):
    """Params of the ``ensemble`` family: every ``mlp`` param plus the number of members."""

    members: int = Field(5, ge=2, description="networks in the ensemble, each from its own seed")


class EnsembleSurrogate(Surrogate):
    """Deep ensemble of MLPs; ``std`` is the standard deviation across members."""

    family = "ensemble"
    has_std = True
    uses_torch = True
    Params = EnsembleParams

    def _fit(self, X, Y, validation):
        self.nets_, self.histories_ = [], []
        for k in range(self.params.members):
            net, history = train_network(X, Y, validation, self.params, self.device, self.seed + k,
                                         quiet=self.quiet, description=f"ensemble member {k + 1}/{self.params.members}")
            self.nets_.append(net)
            self.histories_.append(history)

    def member_predictions(self, X: np.ndarray) -> np.ndarray:
        """Every member's prediction, shape (members, n, m)."""
        return np.stack([network_predict(net, X, self.device, self.params.precision) for net in self.nets_])

    def _predict(self, X):
        each = self.member_predictions(X)
        return each.mean(axis=0), each.std(axis=0)

    def _summary(self):
        return {"members": float(len(self.nets_)),
                "mean_epochs_run": float(np.mean([h["epochs_run"] for h in self.histories_]))}

    def _save_state(self, directory: Path):
        arrays: dict[str, Any] = {}
        for k, net in enumerate(self.nets_):
            arrays.update(state_arrays(net, prefix=f"member{k}."))
        save_arrays(directory / "state.npz", arrays)
        return {"histories": self.histories_}

    def _load_state(self, directory: Path, state: dict[str, Any]) -> None:
        arrays = load_arrays(directory / "state.npz")
        self.nets_ = [load_network(arrays, self.n_features_in_, self.n_outputs_, self.params, prefix=f"member{k}.")
                      for k in range(self.params.members)]
        self.histories_ = state.get("histories", [])

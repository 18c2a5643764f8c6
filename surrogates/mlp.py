"""BP-NN baseline: a fully connected network trained by back-propagation (the "BP neural network" of seed 000).

A torch MLP (``hidden`` layer sizes, ``activation``) on the (preprocessed) inputs, predicting standardized
targets with a mean-squared-error loss, trained by the shared loop :func:`reflow.training.fit_module` (AdamW,
cosine schedule, early stopping on a validation set when there is one). The target mean and standard deviation
are buffers of the network, so the saved state dict is the whole fitted model. Inputs are not scaled here:
that is the preprocessing's job (``scale``), so the normalization methods of seed 000 can be compared.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import Field, field_validator
from reflow.surrogates.base import Surrogate, load_arrays, save_arrays, standardize_stats, torch_seeded
from reflow.training import TrainingConfig

if TYPE_CHECKING:
    import torch

ACTIVATIONS = ("tanh", "sigmoid", "relu", "gelu", "silu")


class MLPParams(TrainingConfig):
    """Params of the ``mlp`` family: the network and how to train it (the shared TrainingConfig)."""

    hidden: list[int] = Field(default_factory=lambda: [64, 64], description="units of each hidden layer")
    activation: Literal["tanh", "sigmoid", "relu", "gelu", "silu"] = Field("tanh", description="hidden activation")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="dropout after each hidden layer")
    val_fraction: float = Field(0.0, ge=0.0, lt=0.9, description="share of the training set held out for early "
                                                                  "stopping when no validation set is given (0: none)")
    epochs: int = Field(300, ge=1, description="passes over the training set")
    batch_size: int = Field(32, ge=1, description="samples per step")
    lr: float = Field(3e-3, gt=0, description="peak learning rate of AdamW")
    weight_decay: float = Field(1e-4, ge=0, description="AdamW weight decay")
    patience: int | None = Field(50, ge=1, description="stop after this many epochs without a better validation "
                                                        "loss (null: never stop early)")
    precision: Literal["auto", "bf16", "fp32"] = Field(
        "fp32", description="fp32 (default: regression targets need the digits), bf16, or auto (bf16 on CUDA)")

    @field_validator("hidden")
    @classmethod
    def _positive_layers(cls, value: list[int]) -> list[int]:
        if not value or any(int(u) < 1 for u in value):
            raise ValueError(f"{value}: give at least one hidden layer, each with >= 1 unit")
        return value

    def training_config(self) -> TrainingConfig:
        """The shared loop's settings from these params."""
        return TrainingConfig(**{name: getattr(self, name) for name in TrainingConfig.model_fields})


def build_network(n_in: int, n_out: int, params: MLPParams) -> torch.nn.Module:
    """The MLP with target-standardization buffers ``y_mean`` and ``y_std`` (so its state dict is complete)."""
    import torch
    from torch import nn

    acts = {"tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU}

    class MLP(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            layers: list[nn.Module] = []
            width = n_in
            for units in params.hidden:
                layers += [nn.Linear(width, units), acts[params.activation]()]
                if params.dropout > 0:
                    layers.append(nn.Dropout(params.dropout))
                width = units
            layers.append(nn.Linear(width, n_out))
            self.body = nn.Sequential(*layers)
            self.register_buffer("y_mean", torch.zeros(n_out))
            self.register_buffer("y_std", torch.ones(n_out))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            """Standardized predictions."""
            return self.body(x)

        def predict(self, x: torch.Tensor) -> torch.Tensor:
            """Predictions in target units."""
            return self.body(x) * self.y_std + self.y_mean

    return MLP()


def train_network(X: np.ndarray, Y: np.ndarray, validation: tuple[np.ndarray, np.ndarray] | None,
                  params: MLPParams, device: str, seed: int, *, quiet: bool = True,
                  description: str = "mlp") -> tuple[Any, dict[str, Any]]:
    """Build and train one MLP; returns the network (on CPU, eval mode) and its training history."""
    import torch
    from reflow.training import fit_module

    y_mean, y_std = standardize_stats(Y)
    if validation is None and params.val_fraction > 0 and X.shape[0] >= 4:
        order = np.random.default_rng([seed, 2]).permutation(X.shape[0])
        n_val = min(max(1, int(round(params.val_fraction * X.shape[0]))), X.shape[0] - 2)
        validation = (X[order[:n_val]], Y[order[:n_val]])
        X, Y = X[order[n_val:]], Y[order[n_val:]]

    def tensors(x: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        return (torch.as_tensor(x, dtype=torch.float32),
                torch.as_tensor((y - y_mean) / y_std, dtype=torch.float32))

    with torch_seeded(seed):
        net = build_network(X.shape[1], Y.shape[1], params)
    net.y_mean.copy_(torch.as_tensor(y_mean, dtype=torch.float32))
    net.y_std.copy_(torch.as_tensor(y_std, dtype=torch.float32))

    def loss_fn(module: Any, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x, y = batch
        return torch.nn.functional.mse_loss(module(x).float(), y)

    history = fit_module(net, loss_fn, tensors(X, Y), val=None if validation is None else tensors(*validation),
                         config=params.training_config(), device=device, seed=seed, quiet=quiet,
                         description=description)
    info = {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in history.as_dict().items()}
    return net.cpu().eval(), info


def network_predict(net: Any, X: np.ndarray, device: str, precision: str) -> np.ndarray:
    """Predictions of a trained network in target units, float64 (n, m)."""
    import torch
    from reflow.training import predict_batches

    out = predict_batches(net, lambda m, x: m.predict(x), torch.as_tensor(X, dtype=torch.float32), device=device,
                          precision=precision, batch_size=4096)
    net.cpu()
    return out.double().numpy()


def state_arrays(net: Any, prefix: str = "") -> dict[str, Any]:
    return {f"{prefix}{k}": v for k, v in net.state_dict().items()}


def load_network(arrays: dict[str, np.ndarray], n_in: int, n_out: int, params: MLPParams, prefix: str = "") -> Any:
    """A network rebuilt from :func:`state_arrays` (strict: every weight must be there)."""
    import torch

    net = build_network(n_in, n_out, params)
    state = {k.removeprefix(prefix): torch.as_tensor(v) for k, v in arrays.items() if k.startswith(prefix)}
    net.load_state_dict(state, strict=True)
    return net.eval()


class MLPSurrogate(Surrogate):
    """BP-NN: one MLP trained by back-propagation; no std."""

    family = "mlp"
    has_std = False
    uses_torch = True
    Params = MLPParams

    def _fit(self, X, Y, validation):
        self.net_, self.history_ = train_network(X, Y, validation, self.params, self.device, self.seed,
                                                   quiet=self.quiet)

    def _predict(self, X):
        return network_predict(self.net_, X, self.device, self.params.precision), None

    def _summary(self):
        return {"epochs_run": float(self.history_["epochs_run"]), "best_epoch": float(self.history_["best_epoch"])}

    def _save_state(self, directory: Path):
        save_arrays(directory / "state.npz", state_arrays(self.net_))
        return {"history": self.history_}

    def _load_state(self, directory: Path, state: dict[str, Any]) -> None:
        self.net_ = load_network(load_arrays(directory / "state.npz"), self.n_features_in_, self.n_outputs_,
                                 self.params)
        self.history_ = state.get("history", {})

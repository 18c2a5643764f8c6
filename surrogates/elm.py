"""Extreme learning machine (ELM): a random hidden layer and output weights from one regularized linear solve.

The hidden layer ``H = g(X W + b)`` has ``n_hidden`` units whose weights and biases are drawn once, uniformly in
``[-weight_scale, weight_scale]``; only the output weights ``beta`` are learned, by ridge regression on the
standardized targets (``alpha = 0``: the minimum-norm least-squares solution, ``pinv(H) T``), in double precision
with ``torch.linalg`` on ``device``. That single solve is what makes ELMs fast to train.

Optional ``tune`` plays the role the improved cuckoo search plays in ICS-ELM (Liu et al. 2021, IGBT junction
temperature, cited by seed 000): a population method from pymoo (differential evolution or a genetic algorithm)
searches the hidden weights and biases, each candidate scored by the RMSE on an inner held-out part of the
training set of the ELM solved on the rest. The untuned draw is in the first population, and both algorithms keep
their best, so tuning never ends with a worse inner-validation RMSE than the untuned ELM. The output weights of
the winner are then solved on the whole training set.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field
from reflow.components import Params
from reflow.surrogates.base import Surrogate, load_arrays, save_arrays, standardize_stats


class ELMTuning(Params):
    """How the hidden layer is tuned (ICS-ELM style); all draws follow the surrogate's seed."""

    algorithm: Literal["de", "ga"] = Field("de", description="de: differential evolution (DE/rand/1/bin); "
                                                             "ga: pymoo's real-coded genetic algorithm")
    population: int = Field(20, ge=4, description="candidates per generation")
    generations: int = Field(15, ge=1, description="generations to run")
    validation_fraction: float = Field(0.25, gt=0.0, lt=0.9, description="share of the training set held out to "
                                                                          "score candidates")


class ELMParams(Params):
    """Params of the ``elm`` family."""

    n_hidden: int = Field(50, ge=1, description="hidden units")
    activation: Literal["sigmoid", "tanh", "relu", "sin", "gaussian"] = Field(
        "sigmoid", description="hidden activation g; gaussian is exp(-z^2)")
    alpha: float = Field(1e-6, ge=0.0, description="ridge regularization of the output weights (0: least squares "
                                                   "by pseudo-inverse)")
    weight_scale: float = Field(1.0, gt=0.0, description="hidden weights and biases are drawn (and tuned) in "
                                                         "[-weight_scale, weight_scale]")
    tune: ELMTuning | None = Field(None, description="tune the hidden layer with a population method, e.g. "
                                                     "{population: 20, generations: 15}; null: keep the random draw")


def activate(Z: Any, activation: str) -> Any:
    """The hidden activation ``g`` applied to a torch tensor."""
    import torch

    if activation == "sigmoid":
        return torch.sigmoid(Z)
    if activation == "tanh":
        return torch.tanh(Z)
    if activation == "relu":
        return torch.relu(Z)
    if activation == "sin":
        return torch.sin(Z)
    if activation == "gaussian":
        return torch.exp(-Z * Z)
    raise ValueError(f"unknown activation {activation!r}")


def solve_output_weights(H: Any, T: Any, alpha: float) -> Any:
    """Ridge solution ``argmin ||H beta - T||^2 + alpha ||beta||^2`` (``alpha = 0``: ``pinv(H) T``).

    Works on one problem (``H`` (n, L), ``T`` (n, m)) or a batch (``H`` (P, n, L)). Uses the primal normal
    equations ``(H'H + aI) beta = H'T`` when n >= L and the dual form ``beta = H'(HH' + aI)^-1 T`` when n < L,
    which give the same solution with the smaller system.
    """
    import torch

    if alpha == 0.0:
        return torch.linalg.pinv(H) @ T
    n, L = H.shape[-2], H.shape[-1]
    Ht = H.transpose(-1, -2)
    if n >= L:
        eye = torch.eye(L, dtype=H.dtype, device=H.device)
        return torch.linalg.solve(Ht @ H + alpha * eye, Ht @ T)
    eye = torch.eye(n, dtype=H.dtype, device=H.device)
    return Ht @ torch.linalg.solve(H @ Ht + alpha * eye, T.expand(*H.shape[:-2], *T.shape[-2:]))


def inner_split(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The (train, validation) indices tuning uses: a seeded random share ``fraction`` of ``n`` held out."""
    order = np.random.default_rng(seed).permutation(n)
    n_val = min(max(1, int(round(fraction * n))), n - 2)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


class ELMSurrogate(Surrogate):
    """Extreme learning machine with optional population-based tuning of its hidden layer (ICS-ELM style)."""

    family = "elm"
    has_std = False
    uses_torch = True
    Params = ELMParams

    # ---- pieces --------------------------------------------------------------------------------------
    def _tensor(self, a: Any) -> Any:
        import torch

        return torch.as_tensor(a, dtype=torch.float64, device=self._torch_device())

    def hidden(self, X: Any, W: Any, b: Any) -> Any:
        """Hidden-layer outputs ``g(X W + b)``: (n, L), or (P, n, L) for a batch of weights (P, d, L)."""
        return activate(X @ W + b.unsqueeze(-2), self.params.activation)

    def draw_hidden(self, n_features: int) -> tuple[np.ndarray, np.ndarray]:
        """The untuned hidden weights (d, L) and biases (L,), uniform in ``[-weight_scale, weight_scale]``."""
        rng = np.random.default_rng(self.seed)
        s, L = self.params.weight_scale, self.params.n_hidden
        return rng.uniform(-s, s, (n_features, L)), rng.uniform(-s, s, L)

    def validation_rmse(self, weights: np.ndarray, X: np.ndarray, T: np.ndarray, train: np.ndarray,
                        val: np.ndarray) -> np.ndarray:
        """Inner-validation RMSE (standardized targets) of ELMs with hidden layers ``weights`` (P, d*L + L)."""
        d, L = X.shape[1], self.params.n_hidden
        Wb = self._tensor(np.atleast_2d(weights))
        W, b = Wb[:, :d * L].reshape(-1, d, L), Wb[:, d * L:]
        Xt, Tt = self._tensor(X), self._tensor(T)
        beta = solve_output_weights(self.hidden(Xt[train], W, b), Tt[train], self.params.alpha)
        err = self.hidden(Xt[val], W, b) @ beta - Tt[val]
        return err.pow(2).mean(dim=(-2, -1)).sqrt().cpu().numpy()

    def _tune(self, X: np.ndarray, T: np.ndarray, W0: np.ndarray, b0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        from pymoo.core.callback import Callback
        from pymoo.core.problem import Problem
        from pymoo.optimize import minimize

        tune = self.params.tune
        d, L = W0.shape
        if X.shape[0] < 4:
            from reflow.errors import DataError

            raise DataError(f"elm: tuning holds out part of the training set and needs at least 4 samples, "
                            f"got {X.shape[0]}")
        train, val = inner_split(X.shape[0], tune.validation_fraction, self.seed)
        s = self.params.weight_scale
        surrogate = self

        class HiddenLayer(Problem):
            def __init__(self) -> None:
                super().__init__(n_var=d * L + L, n_obj=1, xl=-s, xu=s)

            def _evaluate(self, x, out, *args, **kwargs):
                out["F"] = surrogate.validation_rmse(x, X, T, train, val)[:, None]

        class Best(Callback):
            def __init__(self) -> None:
                super().__init__()
                self.best: list[float] = []

            def notify(self, algorithm):
                self.best.append(float(algorithm.opt.get("F").min()))

        start = np.concatenate([W0.ravel(), b0])
        rng = np.random.default_rng([self.seed, 1])
        population = np.vstack([start, rng.uniform(-s, s, (tune.population - 1, start.size))])
        if tune.algorithm == "de":
            from pymoo.algorithms.soo.nonconvex.de import DE

            algorithm = DE(pop_size=tune.population, sampling=population, variant="DE/rand/1/bin", CR=0.9, F=0.5)
        else:
            from pymoo.algorithms.soo.nonconvex.ga import GA

            algorithm = GA(pop_size=tune.population, sampling=population, eliminate_duplicates=True)
        callback = Best()
        result = minimize(HiddenLayer(), algorithm, ("n_gen", tune.generations), seed=self.seed, verbose=False,
                          callback=callback)
        best = np.asarray(result.X, dtype=float).ravel()
        untuned = float(self.validation_rmse(start, X, T, train, val)[0])
        tuned = float(self.validation_rmse(best, X, T, train, val)[0])
        if tuned > untuned:  # cannot happen with elitist algorithms; keep the guarantee explicit
            best, tuned = start, untuned
        self.tuning_ = {"untuned_val_rmse": untuned, "tuned_val_rmse": tuned, "best_per_generation": callback.best,
                        "evaluations": int(result.algorithm.evaluator.n_eval)}
        return best[:d * L].reshape(d, L), best[d * L:]

    # ---- the interface ---------------------------------------------------------------------------------
    def _fit(self, X, Y, validation):
        self.y_mean_, self.y_std_ = standardize_stats(Y)
        T = (Y - self.y_mean_) / self.y_std_
        W, b = self.draw_hidden(X.shape[1])
        self.tuning_ = None
        if self.params.tune is not None:
            W, b = self._tune(X, T, W, b)
        self.W_, self.b_ = W, b
        H = self.hidden(self._tensor(X), self._tensor(W), self._tensor(b))
        self.beta_ = solve_output_weights(H, self._tensor(T), self.params.alpha).cpu().numpy()

    def _predict(self, X):
        H = self.hidden(self._tensor(X), self._tensor(self.W_), self._tensor(self.b_))
        T = (H @ self._tensor(self.beta_)).cpu().numpy()
        return T * self.y_std_ + self.y_mean_, None

    def _summary(self):
        out = {"elm_hidden": float(self.params.n_hidden)}
        if self.tuning_:
            out["elm_untuned_val_rmse"] = self.tuning_["untuned_val_rmse"]
            out["elm_tuned_val_rmse"] = self.tuning_["tuned_val_rmse"]
        return out

    def _save_state(self, directory: Path):
        save_arrays(directory / "state.npz", {"W": self.W_, "b": self.b_, "beta": self.beta_,
                                              "y_mean": self.y_mean_, "y_std": self.y_std_})
        return {"tuning": self.tuning_}

    def _load_state(self, directory: Path, state: dict[str, Any]) -> None:
        arrays = load_arrays(directory / "state.npz")
        self.W_, self.b_, self.beta_ = arrays["W"], arrays["b"], arrays["beta"]
        self.y_mean_, self.y_std_ = arrays["y_mean"], arrays["y_std"]
        self.tuning_ = state.get("tuning")

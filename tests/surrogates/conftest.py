"""Shared data for the surrogate tests: a smooth 3-input, 2-output function, train and held-out points."""

from __future__ import annotations

import numpy as np
import pytest


def smooth(X: np.ndarray) -> np.ndarray:
    """Two smooth outputs of three inputs in [0, 1]: the truth every family learns."""
    return np.column_stack([np.sin(3.0 * X[:, 0]) + X[:, 1] ** 2,
                            np.exp(-X[:, 2]) * X[:, 0] + 0.5 * X[:, 1]])


def r2(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Coefficient of determination per output column."""
    return 1.0 - ((y - p) ** 2).sum(axis=0) / ((y - y.mean(axis=0)) ** 2).sum(axis=0)


@pytest.fixture(autouse=True)
def _one_thread():
    """Two shared cores: torch on one thread, and every test starts from the same global seed."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def smooth_data():
    """(X, Y) 100 training points and (Xt, Yt) 200 held-out points of :func:`smooth`, inputs in [0, 1]^3."""
    rng = np.random.default_rng(0)
    X = rng.uniform(0.0, 1.0, (100, 3))
    Xt = rng.uniform(0.0, 1.0, (200, 3))
    return X, smooth(X), Xt, smooth(Xt)

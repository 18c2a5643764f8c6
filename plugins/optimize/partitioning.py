"""BoTorch's exact box decomposition for three or more objectives, computed in NumPy.

qLogNEHVI caches, for each of its quasi-Monte-Carlo samples of the baseline's outcomes, a partition of the
space that sample's Pareto front does not dominate into boxes (BoTorch's ``FastNondominatedPartitioning``:
Lacour et al. 2017, Algorithm 1, applied twice). For two objectives BoTorch has a vectorized formula; for three
or more it inserts the front's points one at a time, each insertion a dozen operations on tensors of a few
rows. At that size the time is PyTorch's per-operation dispatch, not arithmetic: on VehicleSafety (three
objectives, 128 samples) building the partitions was 29 of the 57 s of 24 asks, more than the GP fits and the
acquisition search together.

:class:`NumpyNondominatedPartitioning` is ``FastNondominatedPartitioning`` with the two insertion passes and the
cell bounds done by the same algorithm on NumPy arrays (same operations in the same order, so the same cells in
the same order, bit for bit: tests/plugins/test_optimize.py compares them). Everything else (the Pareto
filter, the hypervolume, the incremental ``update``) is BoTorch's. :class:`LogNEHVI` is qLogNEHVI using it.
"""

from __future__ import annotations

import numpy as np
import torch
from botorch.acquisition.multi_objective.logei import qLogNoisyExpectedHypervolumeImprovement
from botorch.utils.multi_objective.box_decompositions.non_dominated import FastNondominatedPartitioning


def local_upper_bounds(U: np.ndarray, Z: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Insert the point ``z`` (m,) into the local upper bounds ``U`` (n, m) and their defining points ``Z``
    (n, m, m) of a minimization front: BoTorch's ``compute_local_upper_bounds`` (Lacour et al. 2017, Alg. 1)."""
    inside = (U > z).all(axis=1)
    if not inside.any():
        return U, Z
    A, A_Z = U[inside], Z[inside]
    m = U.shape[1]
    # z splits the search zone of u in direction j when z[j] is at least every other defining point's j-th value
    others = A_Z.copy()
    others[:, np.arange(m), np.arange(m)] = -np.inf
    split = z >= others.max(axis=1)  # (k, m)
    direction, zone = np.nonzero(split.T)  # direction-major, as BoTorch concatenates them
    rows = np.arange(len(zone))
    new_U = A[zone]
    new_U[rows, direction] = z[direction]
    new_Z = A_Z[zone]
    new_Z[rows, direction] = z
    keep = ~inside
    return np.concatenate([U[keep], new_U]), np.concatenate([Z[keep], new_Z])


def first_zone(upper: np.ndarray, others: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The one search zone before any point is inserted: local upper bound ``upper`` (m,), its j-th defining point
    ``others`` (m,) but for its own j-th value, which is ``upper[j]`` (Lacour et al. 2017, Sec. 2.1)."""
    m = len(upper)
    Z = np.repeat(others.reshape(1, 1, m), m, axis=1)
    Z[0, np.arange(m), np.arange(m)] = upper
    return upper.reshape(1, m).copy(), Z


def insert_all(points: np.ndarray, U: np.ndarray, Z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Insert each row of ``points`` in turn (BoTorch's ``update_local_upper_bounds_incremental``)."""
    for z in points:
        U, Z = local_upper_bounds(U, Z, z)
    return U, Z


def cell_bounds(Z: np.ndarray, U: np.ndarray, ref_point: np.ndarray) -> np.ndarray:
    """(2, cells, m) lower and upper corners of the boxes, empty ones dropped (BoTorch's
    ``get_partition_bounds``, Lacour et al. 2017, Eq. 2)."""
    n, m = U.shape
    bounds = np.empty((2, n, m), dtype=U.dtype)
    bounds[0, :, 0] = Z[:, 0, 0]
    bounds[1, :, 0] = ref_point[0]
    for j in range(1, m):
        bounds[0, :, j] = Z[:, :j, j].max(axis=1)
        bounds[1, :, j] = U[:, j]
    empty = (bounds[1] <= bounds[0]).any(axis=-1)
    return bounds[:, ~empty]


class NumpyNondominatedPartitioning(FastNondominatedPartitioning):
    """``FastNondominatedPartitioning`` whose insertion passes run on NumPy arrays (module docstring)."""

    def _partition_space(self) -> None:
        if len(self.batch_shape) > 0:  # BoTorch's own error for a batch in this path
            super()._partition_space()
            return
        upper = self._neg_ref_point.detach().cpu().numpy()
        U, Z = insert_all(self._neg_pareto_Y.detach().cpu().numpy(), *first_zone(upper, np.full_like(upper, -np.inf)))
        self.register_buffer("_U", self._tensor(U))
        self._Z = self._tensor(Z)
        self._get_partitioning()

    def _get_partitioning(self) -> None:
        # the second pass: the first pass's local upper bounds as a front, with the reference as the ideal point
        ref = self.ref_point.detach().cpu().numpy()
        infinity = np.full_like(ref, np.inf)
        U2, Z2 = insert_all(-self._U.detach().cpu().numpy(), *first_zone(infinity, ref))
        self._U2, self._Z2 = self._tensor(U2), self._tensor(Z2)
        self.hypercell_bounds = self._tensor(cell_bounds(Z2, U2, infinity))

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(array, dtype=self._neg_ref_point.dtype, device=self._neg_ref_point.device)


class LogNEHVI(qLogNoisyExpectedHypervolumeImprovement):
    """BoTorch's qLogNEHVI with exact partitions built by :class:`NumpyNondominatedPartitioning`."""

    def _set_cell_bounds(self, num_new_points: int) -> None:
        if self.p_class is FastNondominatedPartitioning:  # exact partitions (alpha = 0), the default
            self.p_class = NumpyNondominatedPartitioning
        super()._set_cell_bounds(num_new_points)

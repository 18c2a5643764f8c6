"""Train/validation/test splits that keep related samples together (all images of one LED on one side) and,
with ``stratify``, keep the class proportions (or those of a binned continuous target) in every part."""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

PARTS = ("test", "val", "train")


class SplitSpec(BaseModel):
    """``split: {by: led_id, test: 0.2, val: 0.2, stratify: defective}``: fractions of groups (or samples) held
    out; with ``stratify`` every part gets about the same share of each class of that variable."""

    model_config = ConfigDict(extra="forbid")

    by: str | None = Field(None, description="group variable: samples sharing a value stay on one side")
    test: float = Field(0.2, ge=0.0, lt=1.0, description="fraction held out for testing")
    val: float = Field(0.0, ge=0.0, lt=1.0, description="fraction held out for validation")
    stratify: str | None = Field(None, description="variable whose class proportions every part keeps (a "
                                                    "continuous one is cut into `bins` quantile bins)")
    bins: int = Field(4, ge=2, le=100, description="quantile bins for a continuous stratify variable")
    seed: int | None = Field(None, description="draw the split from this seed instead of the stage's, so that "
                                               "stages comparing models on the same data get the same split")

    def generator(self, stage_rng: np.random.Generator) -> np.random.Generator:
        """The generator that shuffles: from ``seed`` when given, else the stage's own."""
        return np.random.default_rng(self.seed) if self.seed is not None else stage_rng

    @model_validator(mode="after")
    def _fractions(self) -> SplitSpec:
        if self.test + self.val >= 1.0:
            raise ValueError(f"test + val must leave data to train on, got test={self.test}, val={self.val}")
        return self


def split_indices(n: int, spec: SplitSpec, rng: np.random.Generator,
                  groups: np.ndarray | None = None, strata: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Indices of ``train``, ``val`` and ``test`` samples; groups never straddle two parts.

    Args:
        n: number of samples.
        spec: the fractions (of groups, or of samples without groups).
        rng: the generator that shuffles.
        groups: (n,) group key per sample, or None (every sample its own group).
        strata: (n,) values of ``spec.stratify`` per sample, or None for a plain random split.
    """
    keys = np.asarray(groups) if groups is not None else np.arange(n)
    unique = np.unique(keys)
    n_test = int(round(spec.test * len(unique)))
    n_val = int(round(spec.val * len(unique)))
    if spec.test > 0 and n_test == 0:
        n_test = 1
    if spec.val > 0 and n_val == 0:
        n_val = 1
    if n_test + n_val >= len(unique):
        raise ValueError(f"{len(unique)} groups are too few for test={spec.test} and val={spec.val}")
    if strata is not None:
        codes = strata_codes(np.asarray(strata), spec.bins)
        parts = _stratified_groups(keys, unique, codes, spec, rng)
    else:
        order = rng.permutation(len(unique))
        parts = {
            "test": unique[order[:n_test]],
            "val": unique[order[n_test:n_test + n_val]],
            "train": unique[order[n_test + n_val:]],
        }
    return {name: np.flatnonzero(np.isin(keys, parts[name])) for name in ("test", "val", "train")}


def strata_codes(values: np.ndarray, bins: int = 4) -> np.ndarray:
    """Integer class codes of ``values``: classes as they are (text, bool, integers), floats with more than
    ``bins`` distinct values cut at their quantiles into ``bins`` bins (NaN its own class)."""
    values = np.asarray(values)
    if values.dtype.kind == "f":
        finite = np.isfinite(values)
        if len(np.unique(values[finite])) > bins:
            edges = np.unique(np.quantile(values[finite], np.linspace(0.0, 1.0, bins + 1)[1:-1]))
            codes = np.searchsorted(edges, values, side="right")
            return np.where(finite, codes, len(edges) + 1)
        values = np.where(finite, values, np.inf)  # few distinct values: each a class, NaN together
    return np.unique(values, return_inverse=True)[1].reshape(-1)


def _stratified_groups(keys: np.ndarray, unique: np.ndarray, codes: np.ndarray, spec: SplitSpec,
                       rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Assign whole groups to parts so that each part's class counts come close to its fraction of the totals.

    Greedy, like scikit-learn's StratifiedGroupKFold but for unequal parts: groups in random order, the most
    class-concentrated first, each to the part where it lowers the squared relative shortfall
    sum_k (count_pk - target_pk)^2 / (target_pk + 1) the most. Every asked-for part gets at least one group.
    """
    group_of = np.searchsorted(unique, keys)
    n_classes = int(codes.max()) + 1
    counts = np.zeros((len(unique), n_classes))
    np.add.at(counts, (group_of, codes), 1.0)
    fractions = {"test": spec.test, "val": spec.val, "train": 1.0 - spec.test - spec.val}
    names = [p for p in PARTS if fractions[p] > 0]
    target = np.array([fractions[p] for p in names])[:, None] * counts.sum(axis=0)[None, :]
    scale = 1.0 / (target + 1.0)
    shuffled = rng.permutation(len(unique))
    share = counts[shuffled] / counts[shuffled].sum(axis=1, keepdims=True)
    order = shuffled[np.argsort(-share.std(axis=1), kind="stable")]
    filled = np.zeros_like(target)
    part_of = np.empty(len(unique), dtype=int)
    for g in order:
        before = ((filled - target) ** 2 * scale).sum(axis=1)
        after = ((filled + counts[g] - target) ** 2 * scale).sum(axis=1)
        best = int(np.argmin(after - before))
        part_of[g] = best
        filled[best] += counts[g]
    for j in range(len(names)):  # tiny data: give an empty part the smallest group of a part that has several
        while not (part_of == j).any():
            donors = np.flatnonzero(np.bincount(part_of, minlength=len(names))[part_of] > 1)
            g = donors[np.argmin(counts[donors].sum(axis=1))]
            filled[part_of[g]] -= counts[g]
            part_of[g] = j
            filled[j] += counts[g]
    return {name: unique[part_of == names.index(name)] if name in names else unique[:0] for name in PARTS}

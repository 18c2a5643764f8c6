"""Train/validation/test splits that keep related samples together (all images of one LED on one side)."""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator


class SplitSpec(BaseModel):
    """``split: {by: led_id, test: 0.2, val: 0.2}``: fractions of groups (or samples) held out."""

    model_config = ConfigDict(extra="forbid")

    by: str | None = Field(None, description="group variable: samples sharing a value stay on one side")
    test: float = Field(0.2, ge=0.0, lt=1.0, description="fraction held out for testing")
    val: float = Field(0.0, ge=0.0, lt=1.0, description="fraction held out for validation")

    @model_validator(mode="after")
    def _fractions(self) -> SplitSpec:
        if self.test + self.val >= 1.0:
            raise ValueError(f"test + val must leave data to train on, got test={self.test}, val={self.val}")
        return self


def split_indices(n: int, spec: SplitSpec, rng: np.random.Generator,
                  groups: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Indices of ``train``, ``val`` and ``test`` samples; groups never straddle two parts."""
    keys = np.asarray(groups) if groups is not None else np.arange(n)
    unique = np.unique(keys)
    order = rng.permutation(len(unique))
    n_test = int(round(spec.test * len(unique)))
    n_val = int(round(spec.val * len(unique)))
    if spec.test > 0 and n_test == 0:
        n_test = 1
    if spec.val > 0 and n_val == 0:
        n_val = 1
    if n_test + n_val >= len(unique):
        raise ValueError(f"{len(unique)} groups are too few for test={spec.test} and val={spec.val}")
    parts = {
        "test": unique[order[:n_test]],
        "val": unique[order[n_test:n_test + n_val]],
        "train": unique[order[n_test + n_val:]],
    }
    return {name: np.flatnonzero(np.isin(keys, members)) for name, members in parts.items()}

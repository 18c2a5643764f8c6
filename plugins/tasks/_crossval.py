"""The cross-validation engine of ``compare``: which samples each fold holds out, and the scores and
out-of-fold predictions of every (model, repeat, fold).

The folds are scikit-learn's (KFold, GroupKFold and their stratified versions) or repeated random splits
(:func:`reflow.splits.split_indices`, the split of ``train``), drawn from the stage seed, so every candidate
sees the same assignment. :class:`CrossValidation` fits a fresh model per fold and records a failing fit as
that fold's error instead of raising: one candidate failing never ends the comparison of the others.
"""

from __future__ import annotations

import time
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
import reflow

from ._scoring import (
    REGRESSION_METRICS,
    class_probabilities,
    class_score_matrix,
    declared_classes,
    prediction_mean,
    regression_scores,
)

if TYPE_CHECKING:
    import xarray as xr
    from reflow.context import RunContext
    from reflow.specs import ModelSpec

CLASSIFICATION_METRICS = ("accuracy", "macro_f1", "macro_precision", "macro_recall", "roc_auc_ovr")
"""Per-target scores of a class-label target, as ``<target>_<metric>``; all larger-is-better."""
TIMES = ("fit_seconds", "predict_seconds", "predict_seconds_per_sample")


def lower_is_better(metric: str) -> bool:
    """Errors and times are better small; R2 is better large."""
    return metric.endswith(("_rmse", "_mae")) or "seconds" in metric


def fold_assignment(n: int, folds: int, repeats: int, shuffle: bool, seed: int,
                    groups: np.ndarray | None = None, strata: np.ndarray | None = None) -> np.ndarray:
    """The held-out fold of every sample in every repeat, (repeats, n): scikit-learn's KFold, or GroupKFold
    when ``groups`` are given (every sample of a group in the same fold); with class labels ``strata`` their
    stratified versions (StratifiedKFold, StratifiedGroupKFold), which keep the class shares in every fold."""
    from sklearn.model_selection import GroupKFold, KFold, StratifiedGroupKFold, StratifiedKFold

    out = np.full((repeats, n), -1, dtype=int)
    states = np.random.SeedSequence(seed).generate_state(repeats)
    for r in range(repeats):
        state = int(states[r]) if shuffle else None
        if groups is None and strata is None:
            splits = KFold(folds, shuffle=shuffle, random_state=state).split(np.zeros(n))
        elif strata is None:
            splits = GroupKFold(folds, shuffle=shuffle, random_state=state).split(np.zeros(n), groups=groups)
        elif groups is None:
            splits = StratifiedKFold(folds, shuffle=shuffle, random_state=state).split(np.zeros(n), strata)
        else:
            splits = StratifiedGroupKFold(folds, shuffle=shuffle, random_state=state).split(np.zeros(n), strata,
                                                                                            groups=groups)
        with warnings.catch_warnings():  # "the least populated class has only k members": the user's data
            warnings.simplefilter("ignore", UserWarning)
            for k, (_, test) in enumerate(splits):
                out[r, test] = k
    return out


def random_assignment(n: int, test: float, repeats: int, seed: int, groups: np.ndarray | None = None,
                      strata: np.ndarray | None = None) -> np.ndarray:
    """Repeated random splits, (repeats, n): 0 for the samples held out in that repeat, -1 for the ones trained on.

    Each repeat holds out ``test`` of the groups (every sample of a group on one side) or samples, stratified by
    ``strata`` when given (reflow.splits.split_indices, the split of ``train``), from its own seed."""
    from reflow.splits import SplitSpec, split_indices

    out = np.full((repeats, n), -1, dtype=int)
    states = np.random.SeedSequence(seed).generate_state(repeats)
    for r in range(repeats):
        try:
            parts = split_indices(n, SplitSpec(test=test), np.random.default_rng(int(states[r])), groups, strata)
        except ValueError as exc:
            raise reflow.DataError(f"compare: splits: random: {exc}") from None
        out[r, parts["test"]] = 0
    return out


def class_order(values: xr.DataArray) -> list[str]:
    """The classes of a label variable as text: the data source's order (``attrs["classes"]``) of the classes
    present, then any others sorted."""
    present = sorted({str(v) for v in np.asarray(values.values).reshape(-1)} - {"", "nan"})
    order = [str(c) for c in declared_classes(values.attrs.get("classes")) or []]
    return [c for c in order if c in present] + [c for c in present if c not in order]


def known_values(values: np.ndarray) -> np.ndarray:
    """Samples with a target value: finite numbers, any bool, non-empty text."""
    values = np.asarray(values)
    if values.dtype.kind in "fiu":
        return np.isfinite(values.astype(float))
    if values.dtype.kind == "b":
        return np.ones(values.shape, dtype=bool)
    text = values.astype(str)
    return (text != "") & (text != "nan")


def class_fold_scores(t: str, y: Any, p: Any, order: list[str],
                      probabilities: dict[str, np.ndarray] | None = None) -> dict[str, float]:
    """``<t>_accuracy``, ``_macro_f1``, ``_macro_precision``, ``_macro_recall`` (means over the classes in the
    fold's truth or predictions) and ``_roc_auc_ovr`` (NaN without class probabilities) of one held-out fold."""
    from reflow.metrics import classification_metrics

    y, p = np.asarray(y).astype(str).reshape(-1), np.asarray(p).astype(str).reshape(-1)
    seen = set(y.tolist()) | set(p.tolist())
    labels = [c for c in order if c in seen] + sorted(seen - set(order))
    scores = class_score_matrix(probabilities or {}, labels)
    m = classification_metrics(y, p, classes=labels, scores=scores)
    per_class = m["per_class"].values()
    return {f"{t}_accuracy": m["accuracy"], f"{t}_macro_f1": m["macro_f1"],
            f"{t}_macro_precision": float(np.mean([c["precision"] for c in per_class])),
            f"{t}_macro_recall": float(np.mean([c["recall"] for c in per_class])),
            f"{t}_roc_auc_ovr": float(m.get("roc_auc_ovr", np.nan))}

class CrossValidation:
    """The scores and out-of-fold predictions of every (model, repeat, fold), filled in fold by fold."""

    def __init__(self, labels: list[str], targets: list[str], classes: dict[str, list[str] | None], repeats: int,
                 folds: int, n: int):
        """``classes[t]``: the class order of a class-label target, None for a numeric one."""
        self.labels, self.targets, self.classes = labels, targets, classes
        shape = (len(labels), repeats, folds)
        self.names = [f"{t}_{m}" for t in targets
                      for m in (REGRESSION_METRICS if classes[t] is None else CLASSIFICATION_METRICS)] + list(TIMES)
        self.values = {name: np.full(shape, np.nan) for name in self.names}
        self.train_samples = np.zeros(shape, dtype=int)
        self.test_samples = np.zeros(shape, dtype=int)
        self.errors = np.full(shape, "", dtype=object)
        numeric = [t for t in targets if classes[t] is None]
        self.mean = {t: np.full((len(labels), repeats, n), np.nan) for t in numeric}
        self.std = {t: np.full((len(labels), repeats, n), np.nan) for t in numeric}
        self.predicted = {t: np.full((len(labels), repeats, n), "", dtype=object) for t in targets if t not in numeric}

    def fold(self, m: int, r: int, k: int, spec: ModelSpec, data: xr.Dataset, dim: str, features: list[str],
             images: bool, held_out: np.ndarray, ctx: RunContext) -> None:
        """Fit a fresh model on every fold but ``k`` and score it on fold ``k``; a failure is recorded, not raised.

        An image model (``images``) is handed the held-out samples without the targets, others their features."""
        test_idx, train_idx = np.flatnonzero(held_out), np.flatnonzero(~held_out)
        self.train_samples[m, r, k], self.test_samples[m, r, k] = train_idx.size, test_idx.size
        train, test = data.isel({dim: train_idx}), data.isel({dim: test_idx})
        try:
            model = spec.create()
            model.configure(features, self.targets)
            t0 = time.perf_counter()
            model.fit(train, ctx)
            fit_seconds = time.perf_counter() - t0
            t0 = time.perf_counter()
            inputs = test.drop_vars([t for t in self.targets if t in test]) if images else test[features]
            pred = model.predict(inputs, ctx)
            predict_seconds = time.perf_counter() - t0
            means, fold_scores = {}, {}
            for t in self.targets:
                if self.classes[t] is not None:
                    v = np.asarray(class_prediction(pred, t)).reshape(-1)
                    if v.size != test_idx.size:
                        raise reflow.DataError(f"predicted {v.size} labels of {t} for {test_idx.size} held-out "
                                               "samples")
                    means[t] = v
                    fold_scores[t] = class_fold_scores(t, test[t].values, v, self.classes[t],
                                                       class_probabilities(pred, t))
                    continue
                if model.family == "classifier":
                    raise reflow.DataError(f"the model treats {t!r} as class labels, but its values are numbers "
                                           "and not every candidate is a classifier: give the labels as text, or "
                                           "set the model's task to regression")
                v = np.asarray(prediction_mean(pred, t), dtype=float).reshape(-1)
                if v.size != test_idx.size:
                    raise reflow.DataError(f"predicted {v.size} values of {t} for {test_idx.size} held-out samples")
                if not np.isfinite(v).all():
                    raise reflow.DataError(f"predicted {int((~np.isfinite(v)).sum())} non-finite values of {t}")
                means[t] = v
                fold_scores[t] = regression_scores(t, np.asarray(test[t].values, dtype=float), v)
        except Exception as exc:  # one candidate failing must not end the comparison of the others
            self.errors[m, r, k] = f"{type(exc).__name__}: {exc}"
            ctx.logger.warning("stage %s: %s failed on repeat %d fold %d: %s", ctx.stage, self.labels[m], r, k,
                               self.errors[m, r, k])
            return
        for t in self.targets:
            for name, value in fold_scores[t].items():
                self.values[name][m, r, k] = value
            if t in self.predicted:
                self.predicted[t][m, r, test_idx] = means[t].astype(str)
                continue
            self.mean[t][m, r, test_idx] = means[t]
            if f"{t}_std" in pred:
                self.std[t][m, r, test_idx] = np.asarray(pred[f"{t}_std"].values, dtype=float).reshape(-1)
        self.values["fit_seconds"][m, r, k] = fit_seconds
        self.values["predict_seconds"][m, r, k] = predict_seconds
        self.values["predict_seconds_per_sample"][m, r, k] = predict_seconds / max(test_idx.size, 1)

    def first_error(self, m: int) -> str:
        errs = [e for e in self.errors[m].ravel() if e]
        if errs:
            return f"failed on {len(errs)} folds, first: {errs[0]}"
        return ("the score is undefined on every fold (R2 needs held-out folds of at least 2 different values, "
                "ROC AUC class probabilities: use fewer folds, or rank by an error such as rmse or by accuracy)")

    def scores(self) -> xr.Dataset:
        import xarray as xr

        dims = ("model", "repeat", "fold")
        ds = xr.Dataset({name: (dims, v) for name, v in self.values.items()},
                        coords={"model": np.array(self.labels, dtype=str),
                                "repeat": np.arange(self.errors.shape[1]), "fold": np.arange(self.errors.shape[2])})
        ds["train_samples"] = (dims, self.train_samples)
        ds["test_samples"] = (dims, self.test_samples)
        ds["error"] = (dims, self.errors.astype(str))
        for name in TIMES:
            ds[name].attrs["units"] = "s"
        return ds

    def summary(self, rank_by: str) -> xr.Dataset:
        """Mean and std (ddof 1) over every repeat and fold; rank 1 is the best model that failed no fold."""
        import xarray as xr

        failed = (self.errors != "").reshape(len(self.labels), -1).sum(axis=1)
        data: dict[str, Any] = {}
        for name, v in self.values.items():
            flat = v.reshape(len(self.labels), -1)
            with warnings.catch_warnings():  # a model that failed every fold has NaN scores, as intended
                warnings.simplefilter("ignore", RuntimeWarning)
                data[f"{name}_mean"] = ("model", np.nanmean(flat, axis=1))
                data[f"{name}_std"] = ("model", np.nanstd(flat, axis=1, ddof=1) if flat.shape[1] > 1
                                       else np.zeros(len(self.labels)))
        data["folds_failed"] = ("model", failed.astype(int))
        key = data[f"{rank_by}_mean"][1]
        eligible = (failed == 0) & np.isfinite(key)
        sign = 1.0 if lower_is_better(rank_by) else -1.0
        order = [i for i in np.argsort(sign * np.where(eligible, key, np.inf), kind="stable") if eligible[i]]
        rank = np.zeros(len(self.labels), dtype=int)  # 0: not ranked (a fold failed)
        rank[order] = np.arange(1, len(order) + 1)
        data["rank"] = ("model", rank)
        return xr.Dataset(data, coords={"model": np.array(self.labels, dtype=str)})

    def predictions(self, data: xr.Dataset, dim: str, targets: list[str], assignment: np.ndarray,
                    group_by: str | None) -> xr.Dataset:
        import xarray as xr

        ids = np.asarray(data[dim].values)
        ds = xr.Dataset(coords={"model": np.array(self.labels, dtype=str), "repeat": np.arange(assignment.shape[0]),
                                "sample": ids})
        for t in targets:
            if t in self.predicted:  # class labels, as text ("" where a sample was not held out)
                ds[t] = ("sample", np.asarray(data[t].values).astype(str), dict(data[t].attrs))
                ds[f"{t}_pred"] = (("model", "repeat", "sample"), self.predicted[t].astype(str))
                continue
            ds[t] = ("sample", np.asarray(data[t].values, dtype=float), dict(data[t].attrs))
            ds[f"{t}_mean"] = (("model", "repeat", "sample"), self.mean[t])
            if np.isfinite(self.std[t]).any():
                ds[f"{t}_std"] = (("model", "repeat", "sample"), self.std[t])
        ds["fold"] = (("repeat", "sample"), assignment)
        if group_by:
            ds[group_by] = ("sample", np.asarray(data[group_by].values))
        return ds


def class_prediction(pred: Any, t: str) -> np.ndarray:
    """The predicted class of target ``t``: ``<t>_pred`` (classifiers), else ``<t>``."""
    for name in (f"{t}_pred", t):
        if name in pred:
            return np.asarray(pred[name].values)
    raise reflow.DataError(f"the model's predictions have no {t}_pred (has: {', '.join(map(str, pred.data_vars))})")

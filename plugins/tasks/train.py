"""Task ``train``: fit a model on an earlier stage's data, test it on held-out samples, save it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import reflow
from pydantic import Field, field_validator
from reflow.expressions import parse_constraint, validate_condition
from reflow.metrics import (
    classification_metrics,
    confusion_matrix_figure,
    flatten,
    regression_metrics,
    roc_auc,
    roc_curve_figure,
    threshold_metrics,
)
from reflow.plotting import pyplot, save_figure
from reflow.specs import ModelSpec, StageData
from reflow.splits import SplitSpec, split_indices
from reflow.store import StageStore
from reflow.tables import row_dim, row_variables, successful_rows

from ._predictions import carry_units, variable_units
from ._scoring import class_probabilities as _probabilities
from ._scoring import class_score_matrix as _class_scores
from ._scoring import declared_classes
from ._scoring import prediction_mean as _mean
from ._scoring import r2 as _r2
from ._scoring import scores as _scores

LIFE = "life-model"
DETECTOR = "detector"


class TrainTask(reflow.Task):
    """Train a model: split (grouped by ``split.by``), fit on train, score on test, save the model.

    The saved model can be used by later stages, for example as an evaluator: ``{stage: NAME}``.
    Output ``predictions``: the test samples with ``<target>_mean`` (and ``_std``) next to the truth.

    Life models (family ``life-model``: weibull, kaplan-meier, cox-ph) name their time and event variables in
    their own params: ``target`` is optional and names their outputs (default: each model's own), the features
    default to none (cox-ph then takes every other numeric variable), and without a ``split`` they are fit on
    every unit; with a held-out part the test metrics come from the model's ``score(data, ctx, predictions)``.
    Every model's own ``score`` is added to the metrics and its ``plot(folder)`` draws its own figures into the
    stage folder (both add nothing by default). Image models
    (``uses_images``) read the `image` variable; their predictions keep the images and every per-sample variable,
    so that `explain` and later stages can use them.

    Test metrics (reflow.metrics): MSE, RMSE, MAE, R2 for continuous targets; accuracy, macro F1, per-class
    precision/recall/F1 and a confusion matrix (``<target>_confusion.png``) for classifier and text/bool
    targets. ``threshold: {delta_bmax: 0.2}`` also judges a continuous target as "above the threshold":
    precision, recall, F1, accuracy, the confusion matrix and ROC AUC of the prediction as a score, with
    ``<target>_confusion.png`` and ``<target>_roc.png``.

    Detectors (family ``detector``) are scored on the image label as classifiers and by their own
    ``score(test, ctx, predictions=...)``: the boxes' mAP; their predictions keep the box table on dim ``box``.
    Predictions keep the units of the training data: a target's ``<t>_mean``, ``_std`` and ``_pred`` carry its
    ``units`` (saved with the model, for ``predict``).

    ``where: "synthetic == 0"`` keeps only the rows of ``data`` where the condition holds (the constraint grammar
    of reflow.expressions, never eval'd), e.g. the real images of an ``augment`` stage's ``train``.
    ``test_data: aug.test`` tests on that stage's output instead of a held-out part of ``data``: ``split`` then
    only makes the validation part. Two stages trained on different rows of one set (with and without generated
    images) and tested on the same ``test_data`` compare like with like.
    """

    outputs = ("predictions",)
    produces_model = True

    class Params(reflow.Params):
        model: ModelSpec = Field(description="the model and its params")
        data: StageData = Field(description="the training data: an earlier stage's output")
        target: str | list[str] | None = Field(None, description="variable(s) to predict (required except for "
                                                                   "life models, whose outputs it names)")
        features: list[str] | None = Field(None, description="inputs (default: every other numeric variable)")
        split: SplitSpec | None = Field(None, description="held-out fractions and grouping; null (the default): "
                                                          "test 0.2 for a learned model, every unit for a life "
                                                          "model")
        threshold: dict[str, float] = Field(default_factory=dict,
                                            description="continuous targets also scored as classes: value > "
                                                        "threshold, e.g. {delta_bmax: 0.2}")
        test_data: StageData | None = Field(None, description="an explicit held-out set (an earlier stage's "
                                                              "output) to test on; `split` then only makes the "
                                                              "validation part (split.test is not used)")
        where: str | None = Field(None, description="keep only the rows of `data` where this condition holds, "
                                                    "e.g. 'synthetic == 0' (parsed, never eval'd)")

        @field_validator("where")
        @classmethod
        def _condition(cls, value: str | None) -> str | None:
            return validate_condition(value)

    def check(self, check):
        if (self.params.test_data is not None and self.params.split is not None
                and self.params.split.test not in (0.0, SplitSpec().test)):
            check.problem(("split", "test"), f"the test set comes from test_data ({self.params.test_data}); "
                                             "split only makes the validation part: leave split.test out")
        if self.params.model.stage is not None:
            check.problem(("model",), "train a new model here; {stage: ...} reuses a trained one elsewhere")
        cls = check.component_class(self.params.model) if self.params.model.stage is None else None
        if cls is not None and self.params.target is None and cls.family != LIFE:
            check.problem(("target",), f"{self.params.model.name!r} is a {cls.family or 'model'}: "
                                       "name the variable(s) it learns to predict")
        for name in self.params.threshold:
            if name not in self._targets():
                check.problem(("threshold", name), f"{name!r} is not a target (targets: "
                                                   f"{', '.join(self._targets()) or 'none'})")

    def _targets(self) -> list[str]:
        t = self.params.target
        if t is None:
            return []
        return [t] if isinstance(t, str) else list(t)

    def run(self, ctx):
        data = ctx.data(self.params.data)
        dim = row_dim(data)
        data = successful_rows(data, dim)  # trials: train on the successful ones only
        selected: dict = {}
        if self.params.where is not None:
            data, selected = _rows_where(data, dim, self.params.where, self.params.data)
        targets = self._targets()
        model = self.params.model.create()
        life = model.family == LIFE
        # a life test is fit on every unit unless a split is asked for; `split: null` (the default, which the
        # resolved study writes out) means exactly that, so a resumed run fits on the same rows
        split = self.params.split if self.params.split is not None else (SplitSpec(test=0.0) if life else SplitSpec())
        if self.params.test_data is not None:  # the test set is given: the split only holds out validation
            split = split.model_copy(update={"test": 0.0})
        if not targets and not life:
            raise reflow.UserInputError(f"train: {self.params.model.name!r} needs a target")
        images = model.uses_images  # image models read `image`, not numeric columns
        features = self.params.features or ([] if life or images else row_variables(
            data, dim, numeric=True, exclude={*targets, split.by}))
        columns = features + ([] if life else targets)  # a life model's targets are its outputs, not columns
        missing = [n for n in columns + [v for v in (split.by, split.stratify) if v] if n not in data]
        if missing:
            raise reflow.DataError(f"stage {self.params.data}: no variables {', '.join(missing)} "
                                   f"(has: {', '.join(map(str, data.data_vars))})")
        groups = data[split.by].values if split.by else None
        strata = data[split.stratify].values if split.stratify else None
        parts = split_indices(data.sizes[dim], split, split.generator(ctx.rng), groups, strata)
        train = data.isel({dim: parts["train"]})
        test = data.isel({dim: parts["test"]})
        if self.params.test_data is not None:
            test = _held_out(ctx.data(self.params.test_data), dim, self.params.test_data,
                             columns + (["image"] if images else []))
            parts["test"] = np.arange(test.sizes[dim])
        model.configure(features, targets)
        model.fit(train, ctx, validation=data.isel({dim: parts["val"]}) if parts["val"].size else None)
        units = variable_units(data, features + targets)  # predict labels its predictions with them
        ctx.store.save_model(model, self.params.model.name, **({"units": units} if units else {}))
        metrics: dict = {"train_samples": int(parts["train"].size), "val_samples": int(parts["val"].size),
                         "test_samples": int(parts["test"].size), **selected}
        metrics.update(model.summary())
        outputs = {}
        if parts["test"].size:
            pred = model.predict(test, ctx)
            every = [n for n in test.data_vars if test[n].dims == (dim,)]
            keep = every if life else (every + (["image"] if "image" in test else []) if images
                                       else features + targets)
            merged = test[keep].copy()
            for name in pred.data_vars:  # per sample, except a detector's box table (dim `box`)
                side = model.family == DETECTOR and pred[name].dims == ("box",)
                merged[name] = (pred[name].dims if side else dim, np.asarray(pred[name].values))
            carry_units(merged, units, targets, pred.data_vars)
            outputs["predictions"] = merged
            if not life:
                for t in targets:
                    metrics.update(_target_scores(t, test[t].values, _mean(pred, t), model.family,
                                                  classes=declared_classes(test[t].attrs.get("classes")),
                                                  probabilities=_probabilities(pred, t)))
                    if t in self.params.threshold:
                        metrics.update(flatten(t, threshold_metrics(test[t].values, _mean(pred, t),
                                                                    self.params.threshold[t])))
            # the model's own scores: a life model's likelihood, a detector's mAP of the boxes; most add none
            metrics.update(model.score(test, ctx, predictions=pred))
        return reflow.StageResult(outputs, metrics)

    def plot(self, result, folder: Path):
        plt = pyplot()
        paths = _model_plots(folder)
        pred = result.outputs.get("predictions")
        if pred is None:
            return paths
        for t in self._targets():
            name = f"{t}_mean" if f"{t}_mean" in pred else (t + "_pred" if t + "_pred" in pred else None)
            if name is None or t not in pred:
                continue
            if f"{t}_classes" in result.metrics:  # a classifier's target: its confusion matrix
                m = result.metrics
                fig = confusion_matrix_figure(m[f"{t}_confusion"], m[f"{t}_classes"],
                                              f"{t}: accuracy {m.get(f'{t}_accuracy', float('nan')):.3f}, "
                                              f"macro F1 {m.get(f'{t}_macro_f1', float('nan')):.3f}")
                paths.append(save_figure(fig, folder / f"{t}_confusion.png"))
                scores = _class_scores(_probabilities(pred, t), [str(c) for c in m[f"{t}_classes"]])
                if scores is not None:  # one-vs-rest ROC curves from the class probabilities
                    paths.append(save_figure(_class_roc_figure(pred[t].values, scores, m[f"{t}_classes"], t),
                                             folder / f"{t}_roc.png"))
                continue
            if pred[t].dtype.kind not in "fi":
                continue
            y, p = pred[t].values.astype(float), pred[name].values.astype(float)
            fig, ax = plt.subplots(figsize=(5, 5))
            if f"{t}_std" in pred:
                ax.errorbar(y, p, yerr=pred[f"{t}_std"].values, fmt="o", ms=4, alpha=0.7)
            else:
                ax.scatter(y, p, s=18)
            lo, hi = float(min(y.min(), p.min())), float(max(y.max(), p.max()))
            ax.plot([lo, hi], [lo, hi], "k--", lw=1)
            ax.set_xlabel(f"{t} (held-out truth)")
            ax.set_ylabel(f"{t} (predicted)")
            ax.set_title(f"{t}: R2 = {_r2(y, p):.3f} on {len(y)} test samples")
            paths.append(save_figure(fig, folder / f"{t}_parity.png"))
            if t in self.params.threshold:
                thr = self.params.threshold[t]
                m = threshold_metrics(y, p, thr)
                fig = confusion_matrix_figure(m["confusion"], [f"<= {thr:g}", f"> {thr:g}"],
                                              f"{t} > {thr:g}: precision {m['precision']:.2f}, "
                                              f"recall {m['recall']:.2f}, F1 {m['f1']:.2f}")
                paths.append(save_figure(fig, folder / f"{t}_confusion.png"))
                paths.append(save_figure(roc_curve_figure(y > thr, p, f"{t} > {thr:g}: ROC of the prediction"),
                                         folder / f"{t}_roc.png"))
        return paths


def _model_plots(folder: Path) -> list[Path]:
    """Figures the trained model draws itself (``plot(folder)``), e.g. a Weibull probability plot; a model
    whose class keeps the base's ``plot`` (none) is not loaded for it."""
    store = StageStore(folder)
    cls = store.model_class()
    if cls is None or cls.plot is reflow.Model.plot:
        return []
    return [Path(p) for p in store.load_model().plot(folder)]


def _rows_where(data, dim: str, condition: str, ref) -> tuple:
    """The rows of ``data`` where ``condition`` holds, and metrics saying how many were kept and dropped."""
    constraint = parse_constraint(condition)
    for name in constraint.names:
        if name not in data:
            raise reflow.DataError(f"train: where {condition!r} names {name!r}, which stage {ref} does not have "
                                   f"(has: {', '.join(map(str, data.data_vars))})")
        if data[name].dims != (dim,) or data[name].dtype.kind not in "fiub":
            raise reflow.DataError(f"train: where {condition!r}: {name!r} must be a number per {dim} "
                                   f"(it is {data[name].dtype} on {data[name].dims})")
    keep = np.asarray(constraint.holds({n: np.asarray(data[n].values, dtype=float) for n in constraint.names}),
                      dtype=bool).reshape(-1)
    if not keep.any():
        raise reflow.DataError(f"train: no row of stage {ref} satisfies where {condition!r} "
                               f"({keep.size} rows)")
    return data.isel({dim: np.flatnonzero(keep)}), {"where": condition, "where_kept": int(keep.sum()),
                                                    "where_dropped": int((~keep).sum())}


def _held_out(test, dim: str, ref, needed: list[str]):
    """The explicit test set (``test_data``): its successful rows, with every variable the model needs."""
    if dim not in test.dims:
        raise reflow.DataError(f"train: test_data {ref} has no dim {dim!r} like the training data "
                               f"(dims: {', '.join(map(str, test.dims))})")
    test = successful_rows(test, dim)
    missing = [n for n in needed if n not in test]
    if missing:
        raise reflow.DataError(f"train: test_data {ref} has no variables {', '.join(missing)} "
                               f"(has: {', '.join(map(str, test.data_vars))})")
    if not test.sizes[dim]:
        raise reflow.DataError(f"train: test_data {ref} holds no samples to test on")
    return test


def _class_roc_figure(y, scores: np.ndarray, classes: list, t: str):
    """One-vs-rest ROC curves of a classifier's class probabilities (two classes: the second class's curve)."""
    from sklearn.metrics import roc_curve

    plt = pyplot()
    truth = np.asarray(y).astype(str)
    fig, ax = plt.subplots(figsize=(5.2, 4.8))
    shown = list(enumerate(classes))[1:] if len(classes) == 2 else list(enumerate(classes))
    for j, c in shown:
        positive = truth == str(c)
        if positive.all() or not positive.any():
            continue  # undefined without both positives and negatives
        fpr, tpr, _ = roc_curve(positive, scores[:, j])
        ax.plot(fpr, tpr, lw=1.6, label=f"{c}: AUC {roc_auc(positive, scores[:, j]):.3f}")
    ax.plot([0, 1], [0, 1], "k--", lw=1)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    if len(ax.lines) > 1:
        ax.legend(loc="lower right", fontsize=7)
    else:
        ax.text(0.5, 0.5, "undefined: the test samples hold one class only", ha="center", va="center", fontsize=9)
    ax.set_title(f"{t}: ROC, one class vs the rest ({truth.size} test samples)", fontsize=10)
    return fig


def _target_scores(t: str, y, p, family: str, classes: list | None = None,
                   probabilities: dict[str, np.ndarray] | None = None) -> dict:
    """Test metrics of target ``t``: per-class ones (reflow.metrics) for a classifier's, a text or a bool
    target, else the shared regression scores (R2, RMSE, MAE) and the MSE.

    A float prediction of a bool truth is read as the probability of True: labels at 0.5, ROC AUC from it.
    With class probabilities (``probabilities``, by class name) the one-vs-rest ROC AUC is added.
    """
    y, p = np.asarray(y), np.asarray(p)
    if family == "classifier" or y.dtype.kind in "USb":
        score = None
        if y.dtype.kind == "b" and p.dtype.kind == "f":
            score, p = p, p > 0.5
        if classes is not None and not set(np.unique(y).tolist()) <= set(classes):
            classes = None
        if classes is not None:  # the source's order, without classes neither in the truth nor predicted
            seen = set(np.unique(y).tolist()) | set(np.unique(p).tolist())
            classes = [c for c in classes if c in seen]
        out = flatten(t, classification_metrics(y, p, classes=classes))
        names = [str(c) for c in out[f"{t}_classes"]]
        scores = _class_scores(probabilities or {}, names)
        if scores is not None:
            out[f"{t}_roc_auc_ovr"] = classification_metrics(y, p, classes=out[f"{t}_classes"],
                                                             scores=scores)["roc_auc_ovr"]
        if score is not None:
            out[f"{t}_roc_auc"] = roc_auc(y, score)
        return out
    return {**_scores(t, y, p, family), f"{t}_mse": regression_metrics(y, p)["mse"]}

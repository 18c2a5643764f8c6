"""Task ``train``: fit a model on an earlier stage's data, test it on held-out samples, save it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import reflow
from pydantic import Field
from reflow.metrics import (
    classification_metrics,
    confusion_matrix_figure,
    flatten,
    regression_metrics,
    roc_auc,
    roc_curve_figure,
    threshold_metrics,
)
from reflow.specs import ModelSpec, StageData
from reflow.splits import SplitSpec, split_indices
from reflow.store import write_json

from ._scoring import prediction_mean as _mean
from ._scoring import r2 as _r2
from ._scoring import scores as _scores

LIFE = "life-model"


class TrainTask(reflow.Task):
    """Train a model: split (grouped by ``split.by``), fit on train, score on test, save the model.

    The saved model can be used by later stages, for example as an evaluator: ``{stage: NAME}``.
    Output ``predictions``: the test samples with ``<target>_mean`` (and ``_std``) next to the truth.

    Life models (family ``life-model``: weibull, kaplan-meier, cox-ph) name their time and event variables in
    their own params: ``target`` is optional and names their outputs (default: each model's own), the features
    default to none (cox-ph then takes every other numeric variable), and without a ``split`` they are fit on
    every unit; with a held-out part the test metrics come from the model's ``score(data, ctx)``, if it has one.
    A model with a ``plot(folder) -> list[Path]`` method draws its own figures into the stage folder. Image models
    (``uses_images``) read the `image` variable; their predictions keep the images and every per-sample variable,
    so that `explain` and later stages can use them.

    Test metrics (reflow.metrics): MSE, RMSE, MAE, R2 for continuous targets; accuracy, macro F1, per-class
    precision/recall/F1 and a confusion matrix (``<target>_confusion.png``) for classifier and text/bool
    targets. ``threshold: {delta_bmax: 0.2}`` also judges a continuous target as "above the threshold":
    precision, recall, F1, accuracy, the confusion matrix and ROC AUC of the prediction as a score, with
    ``<target>_confusion.png`` and ``<target>_roc.png``.
    """

    outputs = ("predictions",)
    produces_model = True

    class Params(reflow.Params):
        model: ModelSpec = Field(description="the model and its params")
        data: StageData = Field(description="the training data: an earlier stage's output")
        target: str | list[str] | None = Field(None, description="variable(s) to predict (required except for "
                                                                   "life models, whose outputs it names)")
        features: list[str] | None = Field(None, description="inputs (default: every other numeric variable)")
        split: SplitSpec = Field(default_factory=SplitSpec, description="held-out fractions and grouping")
        threshold: dict[str, float] = Field(default_factory=dict,
                                            description="continuous targets also scored as classes: value > "
                                                        "threshold, e.g. {delta_bmax: 0.2}")

    def check(self, check):
        if self.params.model.stage is not None:
            check.problem(("model",), "train a new model here; {stage: ...} reuses a trained one elsewhere")
        cls = check.component_class(self.params.model) if self.params.model.stage is None else None
        if cls is not None and self.params.target is None and getattr(cls, "family", "") != LIFE:
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
        dim = "sample" if "sample" in data.dims else ("trial" if "trial" in data.dims else next(iter(data.dims)))
        if "status" in data:  # trials: train on the successful ones only
            data = data.isel({dim: np.flatnonzero(data["status"].values == "ok")})
        targets = self._targets()
        model = self.params.model.create()
        life = model.family == LIFE
        # a life test is fit on every unit unless a split is asked for
        split = self.params.split if (not life or "split" in self.params.model_fields_set) else SplitSpec(test=0.0)
        if not targets and not life:
            raise reflow.UserInputError(f"train: {self.params.model.name!r} needs a target")
        skip = set(targets) | {split.by} | {"status", "error", "batch", "started", "finished"}
        images = getattr(model, "uses_images", False)  # image models read `image`, not numeric columns
        features = self.params.features or ([] if life or images else [
            n for n in data.data_vars if data[n].dims == (dim,) and n not in skip and data[n].dtype.kind in "fiub"
        ])
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
        model.configure(features, targets)
        if parts["val"].size:
            model.validation_data_ = data.isel({dim: parts["val"]})
        model.fit(train, ctx)
        model.save(ctx.folder / "model")
        write_json(ctx.folder / "model" / "component.json", {"name": self.params.model.name})
        metrics: dict = {"train_samples": int(parts["train"].size), "val_samples": int(parts["val"].size),
                         "test_samples": int(parts["test"].size)}
        metrics.update(model.summary())
        outputs = {}
        if parts["test"].size:
            pred = model.predict(test, ctx)
            every = [n for n in test.data_vars if test[n].dims == (dim,)]
            keep = every if life else (every + (["image"] if "image" in test else []) if images
                                       else features + targets)
            merged = test[keep].copy()
            for name in pred.data_vars:
                merged[name] = (dim, np.asarray(pred[name].values))
            outputs["predictions"] = merged
            if life:
                score = getattr(model, "score", None)
                metrics.update(score(test, ctx) if callable(score) else {})
            else:
                for t in targets:
                    metrics.update(_target_scores(t, test[t].values, _mean(pred, t), model.family,
                                                  classes=_classes(test[t].attrs.get("classes")),
                                                  probabilities=_probabilities(pred, t)))
                    if t in self.params.threshold:
                        metrics.update(flatten(t, threshold_metrics(test[t].values, _mean(pred, t),
                                                                    self.params.threshold[t])))
        return reflow.StageResult(outputs, metrics)

    def plot(self, result, folder: Path):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

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
                paths.append(_save(fig, folder / f"{t}_confusion.png"))
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
            paths.append(_save(fig, folder / f"{t}_parity.png"))
            if t in self.params.threshold:
                thr = self.params.threshold[t]
                m = threshold_metrics(y, p, thr)
                fig = confusion_matrix_figure(m["confusion"], [f"<= {thr:g}", f"> {thr:g}"],
                                              f"{t} > {thr:g}: precision {m['precision']:.2f}, "
                                              f"recall {m['recall']:.2f}, F1 {m['f1']:.2f}")
                paths.append(_save(fig, folder / f"{t}_confusion.png"))
                paths.append(_save(roc_curve_figure(y > thr, p, f"{t} > {thr:g}: ROC of the prediction"),
                                   folder / f"{t}_roc.png"))
        return paths


def _model_plots(folder: Path) -> list[Path]:
    """Figures the trained model draws itself (``plot(folder)``), e.g. a Weibull probability plot."""
    import json

    from reflow.registry import get_registry

    info = folder / "model" / "component.json"
    if not info.exists():
        return []
    cls = get_registry().get(json.loads(info.read_text())["name"], "model").cls
    if not callable(getattr(cls, "plot", None)):
        return []
    return [Path(p) for p in cls.load(folder / "model").plot(folder)]


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _classes(value) -> list | None:
    """The class order a data source put in a variable's attrs (a list, or the JSON text a stored run keeps)."""
    import json

    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return None
    return list(value) if isinstance(value, (list, tuple)) else None


def _probabilities(pred, t: str) -> dict[str, np.ndarray]:
    """Class probabilities a classifier predicted as ``<t>_prob_<class>``, by class name."""
    head = f"{t}_prob_"
    return {str(n)[len(head):]: np.asarray(pred[n].values, dtype=float) for n in pred.data_vars
            if str(n).startswith(head)}


def _target_scores(t: str, y, p, family: str, classes: list | None = None,
                   probabilities: dict[str, np.ndarray] | None = None) -> dict:
    """Test metrics of target ``t``: per-class ones (reflow.metrics) for a classifier's, a text or a bool
    target, else the shared regression scores (R2, RMSE, MAE) and the MSE.

    A float prediction of a bool truth is read as the probability of True: labels at 0.5, ROC AUC from it.
    With a probability for every class (``probabilities``, by class name) the one-vs-rest ROC AUC is added.
    """
    y, p = np.asarray(y), np.asarray(p)
    if family == "classifier" or y.dtype.kind in "USb":
        score = None
        if y.dtype.kind == "b" and p.dtype.kind == "f":
            score, p = p, p > 0.5
        if classes is not None and not set(np.unique(y).tolist()) <= set(classes):
            classes = None
        out = flatten(t, classification_metrics(y, p, classes=classes))
        names = [str(c) for c in out[f"{t}_classes"]]
        if probabilities and all(n in probabilities for n in names):
            scores = np.column_stack([probabilities[n] for n in names])
            out[f"{t}_roc_auc_ovr"] = classification_metrics(y, p, classes=out[f"{t}_classes"],
                                                             scores=scores)["roc_auc_ovr"]
        if score is not None:
            out[f"{t}_roc_auc"] = roc_auc(y, score)
        return out
    return {**_scores(t, y, p, family), f"{t}_mse": regression_metrics(y, p)["mse"]}

"""Task ``compare``: k-fold cross-validation (or repeated random splits) of several models on the same folds; the
best one, refit on all the data, becomes the stage's model.

Every model sees the same fold assignment (grouped with ``group_by`` so that related samples, e.g. the units of
one lot, are never split between training and testing). For each model and fold it fits on the other folds,
predicts the held-out fold and scores it, with the fit and predict times: R2, RMSE and MAE per numeric target;
accuracy, macro F1, macro precision and recall and the one-vs-rest ROC AUC per class-label target (text or bool
values, or every candidate a classifier). The ranking uses the mean over folds of ``rank_by``; a model that
failed on any fold is ranked after every model that did not. ``splits: random`` replaces the k folds by
``repeats`` random train/test splits holding out ``test`` of the samples (or groups) each, as seed 002's ten
repeated experiments do.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import reflow
from pydantic import BaseModel, ConfigDict, Field, model_validator
from reflow.specs import ModelSpec, StageData
from reflow.tables import plain, row_dim, row_variables, successful_rows

from ._compare_figures import plot_confusion, plot_parity, plot_scores, plot_times
from ._crossval import (
    CLASSIFICATION_METRICS,
    CrossValidation,
    class_order,
    fold_assignment,
    known_values,
    random_assignment,
)
from ._predictions import carry_units, variable_units
from ._scoring import REGRESSION_METRICS

FAMILIES = ("regressor", "surrogate", "classifier")
"""Model families compare can score: numbers (R2, RMSE, MAE) and class labels (accuracy, macro F1, ...)."""


class ModelEntry(BaseModel):
    """One candidate: a model spec as in ``train`` (``gp`` or ``{sklearn: {estimator: random-forest}}``), or
    ``{model: <spec>, label: rf}`` to name it in tables and plots."""

    model_config = ConfigDict(extra="forbid")

    model: ModelSpec = Field(description="the model and its params, as train's model")
    label: str | None = Field(None, description="its name in the tables and plots (default: the model name)")

    @model_validator(mode="before")
    @classmethod
    def _bare(cls, value: Any) -> Any:
        if isinstance(value, dict) and ("model" in value or "label" in value):
            return value
        return {"model": value}


class CompareTask(reflow.Task):
    """Cross-validate models on the same folds, rank them, keep the best (refit on all data) as this stage's model.

    Outputs: ``summary`` (per model: mean and std over folds of every score, rank), ``scores`` (per model, repeat
    and fold) and ``predictions`` (the out-of-fold predictions of every model with each sample's fold). The
    best model is saved like train's, so ``{stage: NAME}`` uses it as an evaluator in a later stage.

    Image models (vit, cnn, cti, ...) read ``image`` and need no feature columns. Class-label targets are scored
    as classes (accuracy by default for ``rank_by``) and their folds are stratified by the first such target.
    """

    outputs = ("summary", "scores", "predictions")
    produces_model = True

    class Params(reflow.Params):
        data: StageData = Field(description="the data: an earlier stage's output (trials keep their ok rows)")
        target: str | list[str] = Field(description="variable(s) to predict")
        features: list[str] | None = Field(None, description="inputs (default: every other numeric variable)")
        models: list[ModelEntry] = Field(min_length=1, description="the candidates: model specs as in train, "
                                                                   "or {model: spec, label: name}")
        splits: Literal["kfold", "random"] = Field("kfold", description="kfold: k-fold cross-validation "
                                                                         "(`folds`); random: `repeats` random "
                                                                         "train/test splits holding out `test`")
        folds: int = Field(5, ge=2, description="k of k-fold cross-validation")
        test: float = Field(0.2, gt=0.0, lt=1.0, description="splits: random: the fraction of samples (or groups) "
                                                             "held out in each split")
        group_by: str | None = Field(None, description="group variable: samples sharing a value stay in one fold")
        repeats: int = Field(1, ge=1, description="repeat the k-fold split with new shuffles (splits: random: "
                                                  "the number of random splits)")
        shuffle: bool = Field(True, description="shuffle samples (or groups) before splitting, with the stage seed")
        rank_by: str | None = Field(None, description="the score that picks the best: <target>_r2 | _rmse | _mae, "
                                                      "for class labels <target>_accuracy | _macro_f1 | ..., or "
                                                      "fit_seconds, predict_seconds_per_sample (default: the "
                                                      "first target's r2, or its accuracy for class labels)")

    # ---- validation -----------------------------------------------------------------------------
    def targets(self) -> list[str]:
        t = self.params.target
        return [t] if isinstance(t, str) else list(t)

    def rank_metric(self, classes: dict[str, bool] | None = None) -> str:
        """``rank_by``, else the first target's accuracy (class labels, ``classes[target]``) or R2."""
        first = self.targets()[0]
        return self.params.rank_by or f"{first}_{'accuracy' if (classes or {}).get(first) else 'r2'}"

    def labels(self) -> list[str]:
        """Each candidate's label: given, else its model name, with its params where a name repeats."""
        names = [e.model.name or f"stage {e.model.stage}" for e in self.params.models]
        out = []
        for entry, name in zip(self.params.models, names, strict=True):
            if entry.label:
                out.append(entry.label)
            elif names.count(name) > 1 and entry.model.params:
                out.append(f"{name}({', '.join(f'{k}={v}' for k, v in entry.model.params.items())})")
            else:
                out.append(name)
        return out

    def check(self, check):
        p = self.params
        targets = self.targets()
        if not targets:
            check.problem(("target",), "name at least one variable to predict")
        for i, entry in enumerate(p.models):
            spec = entry.model
            if spec.stage is not None:
                check.problem(("models", i), "compare trains its candidates; {stage: ...} reuses a trained model "
                                             "elsewhere (name the model to train instead)")
                continue
            cls = check.component_class(spec)
            if cls is not None and cls.family not in FAMILIES:
                check.problem(("models", i), f"{spec.name!r} is a {cls.family or 'model'}; compare scores "
                                             f"models that predict numbers ({', '.join(FAMILIES)})")
        labels = self.labels()
        for i, label in enumerate(labels):
            if labels.index(label) != i:
                check.problem(("models", i), f"two candidates are both labelled {label!r}: give each "
                                             "{model: ..., label: NAME} a different label")
        for t in targets:
            if p.features and t in p.features:
                check.problem(("features",), f"{t!r} is a target; a model cannot take its own answer as input")
        if p.group_by and (p.group_by in targets or (p.features and p.group_by in p.features)):
            check.problem(("group_by",), f"{p.group_by!r} groups samples into folds; it cannot also be a "
                                         "feature or a target")
        allowed = [f"{t}_{m}" for t in targets for m in (*REGRESSION_METRICS, *CLASSIFICATION_METRICS)] + [
            "fit_seconds", "predict_seconds_per_sample"]
        if p.rank_by is not None and p.rank_by not in allowed:
            check.problem(("rank_by",), f"{p.rank_by!r} is not a score of this comparison (allowed: "
                                        f"{', '.join(allowed)})")
        if p.repeats > 1 and not p.shuffle:
            check.problem(("repeats",), f"repeats={p.repeats} without shuffle would repeat the same folds; "
                                        "set shuffle: true or repeats: 1")
        defaults = type(p).model_fields  # values, not "was it given": a resolved study spells out every default
        if p.splits == "random" and p.folds != defaults["folds"].default:
            check.problem(("folds",), "splits: random holds out `test` once per repeat; folds applies to "
                                      "splits: kfold (leave folds out, or use splits: kfold)")
        if p.splits == "kfold" and p.test != defaults["test"].default:
            check.problem(("test",), "test is the held-out fraction of splits: random; k-fold holds out 1/folds "
                                     "(set splits: random, or leave test out)")

    # ---- running --------------------------------------------------------------------------------
    def run(self, ctx):
        p = self.params
        raw = ctx.data(p.data)
        dim = row_dim(raw)
        data = successful_rows(raw, dim)
        targets = self.targets()
        specs = [e.model for e in p.models]
        candidates = [spec.create() for spec in specs]  # to read what each one is (family, image model)
        images = [m.uses_images for m in candidates]
        features = p.features or ([] if all(images) else row_variables(data, dim, numeric=True,
                                                                      exclude={*targets, p.group_by}))
        _check_columns(data, p.data, dim, features, targets, p.group_by, need_features=not all(images),
                       need_images=any(images))
        classes = {t: class_order(data[t]) if _class_target(data[t], candidates) else None for t in targets}
        _check_numeric_targets(data, [t for t in targets if classes[t] is None])
        known = np.all([known_values(data[t].values) for t in targets], axis=0)
        if not known.all():
            ctx.logger.warning("stage %s: %d samples without a value of %s are left out", ctx.stage,
                               int((~known).sum()), " / ".join(targets))
            data = data.isel({dim: np.flatnonzero(known)})
        n = data.sizes[dim]
        groups = np.asarray(data[p.group_by].values) if p.group_by else None
        strata = next((np.asarray(data[t].values).astype(str) for t in targets if classes[t] is not None), None)
        units = len(np.unique(groups)) if groups is not None else n
        what = f"{units} groups of {p.group_by!r}" if groups is not None else f"{units} samples"
        if p.splits == "random":
            if units < 2:
                raise reflow.DataError(f"compare: random splits need at least 2 samples or groups; stage {p.data} "
                                       f"has {what}")
            assignment, folds = random_assignment(n, p.test, p.repeats, ctx.seed, groups, strata), 1
        else:
            if p.folds > units:
                raise reflow.DataError(f"compare: folds={p.folds} needs at least {p.folds} "
                                       f"{'groups' if groups is not None else 'samples'}; stage {p.data} has {what}")
            assignment = fold_assignment(n, p.folds, p.repeats, p.shuffle, ctx.seed, groups, strata=strata)
            folds = p.folds
        labels = self.labels()
        rank_by = self.rank_metric({t: c is not None for t, c in classes.items()})
        cv = CrossValidation(labels, targets, classes, p.repeats, folds, n)
        if rank_by not in cv.names:
            raise reflow.UserInputError(f"compare: rank_by {rank_by!r} is not a score of these targets (scores: "
                                        f"{', '.join(n for n in cv.names if n != 'predict_seconds')})")
        with ctx.progress(total=len(specs) * p.repeats * folds + 1,
                          description=f"{ctx.stage}: cross-validating") as bar:
            for m, spec in enumerate(specs):
                for r in range(p.repeats):
                    for k in range(folds):
                        cv.fold(m, r, k, spec, data, dim, features, images[m], assignment[r] == k, ctx)
                        bar.advance()
            summary = cv.summary(rank_by)
            best = int(np.flatnonzero(summary["rank"].values == 1)[0]) if (summary["rank"].values == 1).any() else -1
            if best < 0:
                raise reflow.ReflowError(f"compare: no candidate can be ranked by {rank_by}:\n" + "\n".join(
                    f"  - {labels[m]}: {cv.first_error(m)}" for m in range(len(labels))))
            model = specs[best].create()
            model.configure(features, targets)
            model.fit(data, ctx)
            units = variable_units(data, features + targets)  # predict labels its predictions with them
            ctx.store.save_model(model, specs[best].name, label=labels[best], **({"units": units} if units else {}))
            bar.advance()
        attrs = {"best_model": labels[best], "rank_by": rank_by, "targets": targets, "features": features,
                 "folds": folds, "repeats": p.repeats, "group_by": p.group_by or "", "splits": p.splits,
                 "test": p.test if p.splits == "random" else 1.0 / folds,
                 "class_targets": ",".join(t for t in targets if classes[t] is not None)}
        summary["component"] = ("model", np.array([s.name for s in specs], dtype=str))
        summary.attrs.update(attrs)
        scores = cv.scores()
        scores.attrs.update(attrs)
        predictions = cv.predictions(data, dim, targets, assignment, p.group_by)
        carry_units(predictions, units, targets)
        predictions.attrs.update(attrs)
        return reflow.StageResult({"summary": summary, "scores": scores, "predictions": predictions},
                                  _metrics(summary, labels, best, rank_by, n, cv))

    # ---- plots ----------------------------------------------------------------------------------
    def plot(self, result, folder: Path):
        summary = result.outputs["summary"]
        best = str(result.metrics.get("best_model", summary.attrs.get("best_model", "")))
        labelled = [t for t in self.targets() if f"{t}_accuracy_mean" in summary]
        numeric = [t for t in self.targets() if t not in labelled]
        paths = [plot_scores(summary, [(t, "r2") for t in numeric], best, folder / "compare_r2.png"),
                 plot_scores(summary, [(t, m) for t in labelled for m in ("accuracy", "macro_f1")], best,
                              folder / "compare_accuracy.png"),
                 plot_times(summary, result.outputs.get("scores"), best, folder)]
        pred = result.outputs.get("predictions")
        if pred is not None and best in pred["model"].values:
            paths += [plot_parity(pred, t, best, folder) for t in numeric]
            paths += [plot_confusion(pred, t, best, folder) for t in labelled]
        return [q for q in paths if q is not None]


def _check_columns(data, ref, dim: str, features: list[str], targets: list[str], group_by: str | None, *,
                   need_features: bool = True, need_images: bool = False) -> None:
    needed = [*features, *targets, *([group_by] if group_by else []), *(["image"] if need_images else [])]
    missing = [c for c in needed if c not in data]
    if missing:
        raise reflow.DataError(f"stage {ref}: no variables {', '.join(missing)} "
                               f"(has: {', '.join(map(str, data.data_vars))})")
    if need_features and not features:
        raise reflow.DataError(f"stage {ref}: no numeric variable left to use as a feature; name them in features")
    if data.sizes[dim] < 4:
        raise reflow.DataError(f"stage {ref}: {data.sizes[dim]} samples are too few to cross-validate")


def _check_numeric_targets(data, targets: list[str]) -> None:
    for t in targets:
        if data[t].dtype.kind not in "fiu":
            raise reflow.DataError(f"compare: target {t!r} is {data[t].dtype} (not a number) and the candidates "
                                   "are not all classifiers; compare scores numbers (R2, RMSE, MAE) or class "
                                   "labels given as text or bool")


def _class_target(values, candidates: list) -> bool:
    """Class labels: text or bool values, or every candidate a classifier."""
    return values.dtype.kind in "USOb" or all(m.family == "classifier" for m in candidates)


def _metrics(summary, labels: list[str], best: int, rank_by: str, n: int, cv: CrossValidation) -> dict[str, Any]:
    out: dict[str, Any] = {"best_model": labels[best], "best_model_name": str(summary["component"].values[best]),
                           "rank_by": rank_by, "samples": n, "failed_fits": int((cv.errors != "").sum())}
    per_model: dict[str, dict[str, float]] = {}
    for i, label in enumerate(labels):
        per_model[label] = {str(v): _num(summary[v].values[i]) for v in summary.data_vars if v != "component"}
    for name, value in per_model[labels[best]].items():
        if name != "rank":
            out[f"best_{name}"] = value
    out["ranking"] = [labels[i] for i in np.argsort(np.where(summary["rank"].values > 0, summary["rank"].values,
                                                             len(labels) + 1), kind="stable")]
    out["models"] = per_model
    return out


def _num(v: Any) -> Any:
    """A number for the metrics JSON: None for NaN and inf."""
    v = plain(v)
    return None if isinstance(v, float) and not np.isfinite(v) else v

"""Task ``train``: fit a model on an earlier stage's data, test it on held-out samples, save it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import reflow
from pydantic import Field
from reflow.specs import ModelSpec, StageData
from reflow.splits import SplitSpec, split_indices
from reflow.store import write_json

LIFE = "life-model"


class TrainTask(reflow.Task):
    """Train a model: split (grouped by ``split.by``), fit on train, score on test, save the model.

    The saved model can be used by later stages, for example as an evaluator: ``{stage: NAME}``.
    Output ``predictions``: the test samples with ``<target>_mean`` (and ``_std``) next to the truth.

    Life models (family ``life-model``: weibull, kaplan-meier, cox-ph) name their time and event variables in
    their own params: ``target`` is optional and names their outputs (default: each model's own), the features
    default to none (cox-ph then takes every other numeric variable), and without a ``split`` they are fit on
    every unit; with a held-out part the test metrics come from the model's ``score(data, ctx)``, if it has one.
    A model with a ``plot(folder) -> list[Path]`` method draws its own figures into the stage folder.
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

    def check(self, check):
        if self.params.model.stage is not None:
            check.problem(("model",), "train a new model here; {stage: ...} reuses a trained one elsewhere")
        cls = check.component_class(self.params.model) if self.params.model.stage is None else None
        if cls is not None and self.params.target is None and getattr(cls, "family", "") != LIFE:
            check.problem(("target",), f"{self.params.model.name!r} is a {cls.family or 'model'}: "
                                       "name the variable(s) it learns to predict")

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
        features = self.params.features or ([] if life else [
            n for n in data.data_vars if data[n].dims == (dim,) and n not in skip and data[n].dtype.kind in "fiub"
        ])
        columns = features + ([] if life else targets)  # a life model's targets are its outputs, not columns
        missing = [n for n in columns + ([split.by] if split.by else []) if n not in data]
        if missing:
            raise reflow.DataError(f"stage {self.params.data}: no variables {', '.join(missing)} "
                                   f"(has: {', '.join(map(str, data.data_vars))})")
        groups = data[split.by].values if split.by else None
        parts = split_indices(data.sizes[dim], split, ctx.rng, groups)
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
            keep = [n for n in test.data_vars if test[n].dims == (dim,)] if life else features + targets
            merged = test[keep].copy()
            for name in pred.data_vars:
                merged[name] = (dim, np.asarray(pred[name].values))
            outputs["predictions"] = merged
            if life:
                score = getattr(model, "score", None)
                metrics.update(score(test, ctx) if callable(score) else {})
            else:
                for t in targets:
                    metrics.update(_scores(t, test[t].values, _mean(pred, t), model.family))
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
            if name is None or t not in pred or pred[t].dtype.kind not in "fi":
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
            fig.tight_layout()
            path = folder / f"{t}_parity.png"
            fig.savefig(path, dpi=110)
            plt.close(fig)
            paths.append(path)
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


def _mean(pred, t):
    for name in (f"{t}_mean", t, f"{t}_pred"):
        if name in pred:
            return pred[name].values
    raise reflow.DataError(f"the model's predictions have no {t}_mean (has: {', '.join(map(str, pred.data_vars))})")


def _r2(y, p) -> float:
    ss = float(np.sum((y - y.mean()) ** 2))
    return 1.0 - float(np.sum((y - p) ** 2)) / ss if ss > 0 else float("nan")


def _scores(t: str, y, p, family: str) -> dict:
    if family == "classifier" or np.asarray(y).dtype.kind in "USb":
        return {f"{t}_accuracy": float(np.mean(np.asarray(y) == np.asarray(p)))}
    y, p = np.asarray(y, dtype=float), np.asarray(p, dtype=float)
    return {f"{t}_r2": _r2(y, p), f"{t}_rmse": float(np.sqrt(np.mean((y - p) ** 2))),
            f"{t}_mae": float(np.mean(np.abs(y - p)))}



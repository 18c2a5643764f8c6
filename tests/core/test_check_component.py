"""Every rule of reflow.testing.check_component can fail: for each, a component that breaks only that rule.

Each broken component derives from a small one that passes every check (asserted first), so a failure below
is that rule's and no other's.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import reflow
import xarray as xr
from pydantic import Field
from reflow.testing import check_component

# ---- models ---------------------------------------------------------------------------------------------------


def _line_data(n: int = 12) -> xr.Dataset:
    x = np.linspace(0.0, 1.0, n)
    return xr.Dataset({"x": ("sample", x), "y": ("sample", 2.0 * x + 1.0)})


class Line(reflow.Model):
    """y = a x + b by least squares: a model that keeps the whole contract."""

    family = "regressor"

    class Params(reflow.Params):
        ridge: float = Field(0.0, ge=0, description="ridge penalty")

    def fit(self, data, ctx, validation=None):
        x = data[self.features[0]].values
        design = np.column_stack([x, np.ones_like(x)])
        gram = design.T @ design + self.params.ridge * np.eye(2)
        self.coef_ = np.linalg.solve(gram, design.T @ data[self.targets[0]].values)
        self.validated_ = validation is not None
        return self

    def predict(self, data, ctx):
        self.require_fitted("coef_")
        x = data[self.features[0]].values
        return xr.Dataset({f"{self.targets[0]}_mean": ("sample", self.coef_[0] * x + self.coef_[1])})

    def score(self, data, ctx, predictions=None):
        pred = predictions if predictions is not None else self.predict(data, ctx)
        t = self.targets[0]
        return {"max_error": float(np.max(np.abs(pred[f"{t}_mean"].values - data[t].values)))}

    def plot(self, folder):
        from reflow.plotting import pyplot, save_figure

        fig, ax = pyplot().subplots()
        ax.bar(["a", "b"], self.coef_)
        path = Path(folder) / "coefficients.png"
        save_figure(fig, path)
        return [path]

    def summary(self):
        return {"slope": float(self.coef_[0])}

    def save_state(self, directory):
        np.save(directory / "coef.npy", self.coef_)

    def load_state(self, directory):
        self.coef_ = np.load(directory / "coef.npy")


def _check_line(cls, tmp_path):
    check_component(cls, tmp_path=tmp_path, data=_line_data(), features=["x"], targets=["y"])


def test_the_line_model_passes(tmp_path):
    _check_line(Line, tmp_path)


class FitReturnsNone(Line):
    def fit(self, data, ctx, validation=None):
        super().fit(data, ctx, validation)


class FitWithoutValidation(Line):
    def fit(self, data, ctx):  # the old signature
        return super().fit(data, ctx)


class FitBreaksOnValidation(Line):
    def fit(self, data, ctx, validation=None):
        if validation is not None:
            self.best_ = float(validation["no_such_column"].values[0])
        return super().fit(data, ctx, validation)


class FitSetsPublicState(Line):
    def fit(self, data, ctx, validation=None):
        self.fitted = True
        return super().fit(data, ctx, validation)


class PredictWithoutMean(Line):
    def predict(self, data, ctx):
        return super().predict(data, ctx).rename({"y_mean": "y_hat"})


class PredictTooShort(Line):
    def predict(self, data, ctx):
        return super().predict(data, ctx).isel(sample=slice(1, None))


class ScoreList(Line):
    def score(self, data, ctx, predictions=None):
        return [0.1]


class ScoreText(Line):
    def score(self, data, ctx, predictions=None):
        return {"fit": "good"}


class ScoreOldSignature(Line):
    def score(self, data, ctx):
        return {}


class PlotMissingFile(Line):
    def plot(self, folder):
        return [Path(folder) / "never_drawn.png"]


class PickleSaver(Line):
    def save_state(self, directory):
        import pickle

        (directory / "coef.pkl").write_bytes(pickle.dumps(self.coef_))
        super().save_state(directory)


class ForgetfulLoad(Line):
    def load_state(self, directory):
        self.coef_ = np.zeros(2)


class ImagesFlagNotBool(Line):
    uses_images = "yes"


class UnknownFamily(Line):
    family = "oracle"


class SummaryList(Line):
    def summary(self):
        return [1.0]


@pytest.mark.parametrize(("cls", "rule"), [
    (FitReturnsNone, "fit must return self"),
    (FitWithoutValidation, "fit must take validation=None"),
    (FitBreaksOnValidation, r"fit\(data, ctx, validation=held-out rows\) failed"),
    (FitSetsPublicState, r"must end in '_'.*\['fitted'\]"),
    (PredictWithoutMean, "predict must return y_mean"),
    (PredictTooShort, "y_mean has the wrong length"),
    (ScoreList, "score must return a dict of name -> number, got list"),
    (ScoreText, r"score must return a dict of name -> number, got \{'fit': 'good'\}"),
    (ScoreOldSignature, r"score\(data, ctx, predictions=\.\.\.\) failed"),
    (PlotMissingFile, "plot returned paths that do not exist"),
    (PickleSaver, "saved a pickle"),
    (ForgetfulLoad, "predictions change after save/load"),
    (ImagesFlagNotBool, "uses_images must be a bool"),
    (UnknownFamily, "family must be one of"),
    (SummaryList, "summary must return a dict keyed by name"),
])
def test_a_model_breaking_one_rule_fails_that_rule(cls, rule, tmp_path):
    with pytest.raises(AssertionError, match=rule):
        _check_line(cls, tmp_path)


# ---- generators -----------------------------------------------------------------------------------------------


def _labelled_images() -> xr.Dataset:
    rng = np.random.default_rng(0)
    images = rng.uniform(0.0, 1.0, (8, 1, 4, 4)).astype(np.float32)
    return xr.Dataset({"image": (("sample", "channel", "y", "x"), images),
                       "label": ("sample", np.array(["dim", "bright"] * 4))})


class Blobs(reflow.Generator):
    """The class's mean image plus seeded noise: a generator that keeps the whole contract (and no predict)."""

    class Params(reflow.Params):
        noise: float = Field(0.1, ge=0, description="standard deviation of the noise added to the class mean")

    def fit(self, data, ctx, validation=None):
        labels = data["label"].values
        self.classes_ = sorted(set(labels.tolist()))
        self.means_ = {c: data["image"].values[labels == c].mean(axis=0) for c in self.classes_}
        return self

    def draw(self, rng, shape):
        return rng.normal(0.0, self.params.noise, shape)

    def generate(self, n_per_class, seed=0, source=None, device="cpu"):
        self.require_fitted("classes_")
        rng = np.random.default_rng(seed)
        images = [self.means_[c] + self.draw(rng, self.means_[c].shape) for c, n in n_per_class.items()
                  for _ in range(n)]
        labels = [c for c, n in n_per_class.items() for _ in range(n)]
        return xr.Dataset({"image": (("sample", "channel", "y", "x"), np.asarray(images, dtype=np.float32)),
                           "label": ("sample", np.asarray(labels, dtype=str))})

    def save_state(self, directory):
        np.savez(directory / "means.npz", **self.means_)
        (directory / "classes.json").write_text(json.dumps(self.classes_))

    def load_state(self, directory):
        self.classes_ = json.loads((directory / "classes.json").read_text())
        with np.load(directory / "means.npz") as npz:
            self.means_ = {c: npz[c] for c in self.classes_}


def _check_blobs(cls, tmp_path):
    check_component(cls, tmp_path=tmp_path, data=_labelled_images(), features=["label"], targets=["image"])


def test_the_blobs_generator_passes_without_a_predict(tmp_path):
    _check_blobs(Blobs, tmp_path)


class UnseededBlobs(Blobs):
    def draw(self, rng, shape):
        return np.random.normal(0.0, self.params.noise, shape)  # noqa: NPY002 - the bug under test


class NoClasses(Blobs):
    def fit(self, data, ctx, validation=None):
        super().fit(data, ctx, validation)
        self.classes_ = None
        return self


class OneClassOnly(Blobs):
    def generate(self, n_per_class, seed=0, source=None, device="cpu"):
        out = super().generate(n_per_class, seed, source, device)
        out["label"] = ("sample", np.full(out.sizes["sample"], self.classes_[0]))
        return out


class OneTooMany(Blobs):
    def generate(self, n_per_class, seed=0, source=None, device="cpu"):
        return super().generate({c: n + 1 for c, n in n_per_class.items()}, seed, source, device)


class UnlabelledSamples(Blobs):
    def generate(self, n_per_class, seed=0, source=None, device="cpu"):
        return super().generate(n_per_class, seed, source, device).drop_vars("label")


class ForgetfulGenerator(Blobs):
    def load_state(self, directory):
        super().load_state(directory)
        self.means_ = {c: np.zeros_like(m) for c, m in self.means_.items()}


@pytest.mark.parametrize(("cls", "rule"), [
    (UnseededBlobs, "the same seed must give the same samples"),
    (NoClasses, "fit must set classes_"),
    (OneClassOnly, "must give n samples per class"),
    (OneTooMany, "must give 3 samples on dim 'sample'"),
    (UnlabelledSamples, "must give each sample's class as 'label'"),
    (ForgetfulGenerator, "generated samples change after save/load"),
])
def test_a_generator_breaking_one_rule_fails_that_rule(cls, rule, tmp_path):
    with pytest.raises(AssertionError, match=rule):
        _check_blobs(cls, tmp_path)


# ---- optimizers -----------------------------------------------------------------------------------------------


class RandomSearch(reflow.Optimizer):
    """Uniform points drawn from (seed, trials told): its state is the told trials, so state() is {}."""

    class Params(reflow.Params):
        pass

    def setup(self, problem, seed):
        super().setup(problem, seed)
        self.told = 0

    def tell(self, trials):
        self.told += trials.sizes["trial"]

    def unit(self, n):
        return np.random.default_rng([self.seed, self.told]).random((n, self.problem.dim))

    def ask(self, n, ctx, pending=None):
        return self.problem.space.to_dataset(self.problem.decode(self.unit(n)))


def test_the_random_search_passes(tmp_path):
    check_component(RandomSearch, tmp_path=tmp_path)


class Escapes(RandomSearch):
    def ask(self, n, ctx, pending=None):
        values = self.problem.decode(self.unit(n))
        values["x"] = values["x"] + 2.0
        return self.problem.space.to_dataset(values)


class AsksOneMore(RandomSearch):
    def ask(self, n, ctx, pending=None):
        return super().ask(n + 1, ctx, pending)


class RejectsFailures(RandomSearch):
    def tell(self, trials):
        if (trials["status"].values != "ok").any():
            raise ValueError("NaN objective")
        super().tell(trials)


class LosesItsState(RandomSearch):
    """Its asks depend on how often it asked; state() says so, but restore() forgets it."""

    def setup(self, problem, seed):
        super().setup(problem, seed)
        self.asks = 0

    def ask(self, n, ctx, pending=None):
        self.asks += 1
        unit = np.random.default_rng([self.seed, self.asks]).random((n, self.problem.dim))
        return self.problem.space.to_dataset(self.problem.decode(unit))

    def state(self):
        return {"asks": self.asks}


class NumpyState(RandomSearch):
    def state(self):
        return {"told": np.arange(self.told)}


class ReportList(RandomSearch):
    def report(self):
        return ["fine"]


class NoObjectives(RandomSearch):
    max_objectives = 0


class NegativeInitial(RandomSearch):
    min_initial = -1


class PosesAsADesign(RandomSearch):
    role = "design"


@pytest.mark.parametrize(("cls", "rule"), [
    (Escapes, "x leaves the space"),
    (AsksOneMore, r"ask\(2\) must return 2 points on dim 'trial'"),
    (RejectsFailures, r"tell must take the initial trials \(one failed\)"),
    (LosesItsState, r"restore\(state\(\)\) on a fresh optimizer told the same trials asks other points"),
    (NumpyState, r"state\(\) must be JSON-able"),
    (ReportList, r"report\(\) must return a dict"),
    (NoObjectives, "max_objectives must be None or a positive int"),
    (NegativeInitial, "min_initial must be an int >= 0"),
    (PosesAsADesign, "role must be 'optimizer'"),
])
def test_an_optimizer_breaking_one_rule_fails_that_rule(cls, rule, tmp_path):
    with pytest.raises(AssertionError, match=rule):
        check_component(cls, tmp_path=tmp_path)


class Outside(reflow.Design):
    class Params(reflow.Params):
        pass

    def generate(self, space, rng):
        values = space.from_unit(rng.random((4, len(space.free))))
        values["a"] = values["a"] + 10.0  # past the high end of factor a
        return space.to_dataset(values)


class CategoricalFlagNotBool(reflow.Design):
    supports_categorical = None

    class Params(reflow.Params):
        pass

    def generate(self, space, rng):
        return space.to_dataset(space.from_unit(rng.random((4, len(space.free)))))


@pytest.mark.parametrize(("cls", "rule"), [
    (Outside, "factor a leaves its range"),
    (CategoricalFlagNotBool, "supports_categorical must be a bool"),
])
def test_a_design_breaking_one_rule_fails_that_rule(cls, rule, tmp_path):
    with pytest.raises(AssertionError, match=rule):
        check_component(cls, tmp_path=tmp_path)


# ---- evaluators -----------------------------------------------------------------------------------------------


class Square(reflow.Evaluator):
    """y = x**2, per trial and as arrays: an evaluator that keeps the whole contract."""

    inputs = (reflow.Variable("x", default=1.5, low=0.0, high=3.0),)
    outputs = (reflow.Variable("y"),)

    class Params(reflow.Params):
        pass

    def evaluate_one(self, inputs):
        if inputs["x"] != inputs["x"]:
            raise ValueError("x is NaN")
        return {"y": inputs["x"] ** 2}

    def evaluate_arrays(self, inputs):
        return {"y": inputs["x"] ** 2}


def test_the_square_evaluator_passes(tmp_path):
    check_component(Square, tmp_path=tmp_path)


class ExitsOnNan(Square):
    """Wraps a program's main(), which exits on bad input: that ends the study, not the trial."""

    def evaluate_one(self, inputs):
        if inputs["x"] != inputs["x"]:
            sys.exit("bad input")
        return super().evaluate_one(inputs)


class ArraysDisagree(Square):
    def evaluate_arrays(self, inputs):
        return {"y": inputs["x"] ** 2 + 1e-3}


class ArraysHideNan(Square):
    """The vectorized form turns NaN into 0 while the per-trial form fails: the result depends on the chunk."""

    def evaluate_arrays(self, inputs):
        return {"y": np.nan_to_num(inputs["x"]) ** 2}


class ArraysRaise(Square):
    def evaluate_arrays(self, inputs):
        raise TypeError("only floats")


class ArraysNan(Square):
    def evaluate_arrays(self, inputs):
        return {"y": np.full(len(inputs["x"]), np.nan)}


class ManualNotBool(Square):
    manual = "no"


@pytest.mark.parametrize(("cls", "rule"), [
    (ArraysRaise, "evaluate_arrays fails at its default inputs: TypeError"),
    (ArraysNan, "evaluate_arrays gives non-finite outputs at its default inputs"),
    (ManualNotBool, "manual must be a bool"),
    (ExitsOnNan, r"a NaN input \(x\) must fail that trial, not raise out of the evaluation"),
    (ArraysDisagree, "evaluate_arrays and evaluate_one disagree at its default inputs"),
    (ArraysHideNan, r"evaluate_arrays gives finite outputs with a NaN input \(x\) where evaluate_one fails"),
])
def test_an_evaluator_breaking_one_rule_fails_that_rule(cls, rule, tmp_path):
    with pytest.raises(AssertionError, match=rule):
        check_component(cls, tmp_path=tmp_path)


# ---- tasks and data sources ------------------------------------------------------------------------------------


class Noop(reflow.Task):
    class Params(reflow.Params):
        pass

    def run(self, ctx):
        return reflow.StageResult()


class NoOutputs(Noop):
    outputs = ()


class ModelFlagNotBool(Noop):
    produces_model = 1


class HalfLab(reflow.LabTask):
    """Hands out experiments but cannot take the results back."""

    class Params(reflow.Params):
        pass

    def lab_columns(self, ctx):
        return None

    def lab_ask(self, ctx, n):
        return xr.Dataset()

    def lab_journals(self, ctx):
        return [], []


def test_a_task_that_keeps_the_contract_passes(tmp_path):
    check_component(Noop, tmp_path=tmp_path)


@pytest.mark.parametrize(("cls", "rule"), [
    (NoOutputs, "outputs must name at least one output"),
    (ModelFlagNotBool, "produces_model must be a bool"),
    (HalfLab, "is a LabTask but does not implement lab_tell"),
])
def test_a_task_breaking_one_rule_fails_that_rule(cls, rule, tmp_path):
    with pytest.raises(AssertionError, match=rule):
        check_component(cls, tmp_path=tmp_path)


class Table(reflow.DataSource):
    class Params(reflow.Params):
        pass

    def load(self, ctx):
        return _line_data()


class DictSource(Table):
    def load(self, ctx):
        return {"x": [1, 2]}


class PlotsNothingThere(Table):
    def plot(self, data, folder):
        return [folder / "examples.png"]


class PlotsATuple(Table):
    def plot(self, data, folder):
        return ()


def test_a_data_source_that_keeps_the_contract_passes(tmp_path):
    check_component(Table, tmp_path=tmp_path)


@pytest.mark.parametrize(("cls", "rule"), [
    (DictSource, "load must return an xarray.Dataset, got dict"),
    (PlotsNothingThere, "plot returned paths that do not exist"),
    (PlotsATuple, "plot must return a list of paths, got tuple"),
])
def test_a_data_source_breaking_one_rule_fails_that_rule(cls, rule, tmp_path):
    with pytest.raises(AssertionError, match=rule):
        check_component(cls, tmp_path=tmp_path)

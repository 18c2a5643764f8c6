"""Every built-in component passes reflow.testing.check_component (the suite plugin authors run too)."""

from __future__ import annotations

import pytest
from reflow.registry import get_registry
from reflow.testing import check_component

REGISTRY = get_registry()
FAST_BO = {"num_restarts": 2, "raw_samples": 16, "mc_samples": 16, "maxiter": 5}
PARAMS = {
    "python": {"function": "mod:fn"},
    "command": {"argv": ["true"]},
    "csv": {"path": "x.csv"},
    "netcdf": {"path": "x.nc"},
    "image-folder": {"path": "images"},
    "image-manifest": {"path": "images.csv"},
    "coco": {"path": "coco.json"},
    "data": {"source": {"csv": {"path": "x.csv"}}},
    "doe": {"design": "lhs", "space": {"die_thickness_mm": {"low": 0.1, "high": 1}}, "evaluate": "bilayer-warpage"},
    "evaluate": {"data": "doe", "evaluate": "bilayer-warpage"},
    "train": {"model": "some-model", "data": "doe.trials", "target": "warpage_um"},
    "optimize": {"space": {"die_thickness_mm": {"low": 0.1, "high": 1}}, "evaluate": "bilayer-warpage",
                 "optimizer": "qlognei", "objectives": {"warpage_um": "min"}},
    "lab": {"outputs": {"strength_mpa": "MPa"}},
    "vit": {"width": 32, "heads": 2, "depth": 1, "patch": 4, "head_hidden": 16, "epochs": 1, "transforms": []},
    "vit-mae": {"width": 32, "heads": 2, "depth": 1, "patch": 4, "head_hidden": 16, "epochs": 1, "transforms": [],
                "pretrain_epochs": 1, "decoder_width": 16, "decoder_heads": 2, "decoder_depth": 1},
    "cnn": {"width": 4, "epochs": 1, "transforms": []},
    "ffn-multiscale": {"width": 4, "depth": 1, "head_hidden": 8, "epochs": 1, "transforms": []},
    "cti": {"size": "small", "depths": [1], "widths": [8], "head_width": 8, "epochs": 1, "transforms": []},
    "timm-features": {"backbone": "convnext_atto", "input_size": 32, "hidden": [8, 8, 8], "epochs": 2,
                      "equalize": False},
    "pca-logistic": {"components": 4, "size": 8},
    "export": {"model": {"stage": "fit"}, "exporter": "torchscript"},
    "faster-rcnn": {"width": 4, "epochs": 1, "batch_size": 4},
    "ensemble": {"hidden": [4], "epochs": 2, "members": 2},
    "mlp": {"hidden": [4], "epochs": 2},
    "explain": {"model": {"stage": "fit"}, "data": "images"},
    "wgan-gp": {"image_size": 16, "steps": 2, "width": 4, "latent_dim": 4, "embed_dim": 2, "n_critic": 1,
                "batch_size": 4},
    "augment": {"data": "images", "augmenter": "classic", "target_per_class": 10},
    "predict": {"model": {"stage": "fit"}, "data": "doe.trials"},
    "compare": {"data": "doe.trials", "target": "warpage_um", "models": ["gp", "elm"]},
    "sensitivity": {"space": {"die_thickness_mm": {"low": 0.1, "high": 1}}, "evaluate": "bilayer-warpage",
                    "samples": 8},
    # the synthetic image sources, small: the check loads them and draws their example figure
    "synthetic-wlp": {"images": 24, "size": 64},
    "synthetic-sam": {"leds": 12},
    "synthetic-ic-package": {"per_class": 8, "size": 48},
    "synthetic-sem-sinter": {"images_per_class": 5, "size": 64},
    # the Bayesian optimizers with the smallest acquisition search: the check asks three times
    "qlognei": FAST_BO,
    "qnehvi": FAST_BO,
    "qparego": FAST_BO,
    "active-learning": {**FAST_BO, "explore": 1, "integration_points": 16},
}
SKIP_RUN = {"csv", "netcdf", "image-folder", "image-manifest", "coco"}  # need files; see test_tabular.py,
# test_images.py and test_inspection_data.py


def _aging_data():
    import numpy as np
    import xarray as xr

    t = np.linspace(0.0, 1000.0, 12)
    return xr.Dataset({"t_h": ("sample", t), "x_um": ("sample", 1.0 + 0.1 * t**0.5 + 0.01 * np.sin(t))})


def _life_test_data():
    """40 units, Weibull cycles (shape 2, scale 3000 shrinking with voids), suspended at 2500 cycles."""
    import numpy as np
    import xarray as xr

    rng = np.random.default_rng(0)
    voids = rng.uniform(0.0, 0.3, 40)
    life = 3000.0 * np.exp(-8.0 * voids / 2.0) * rng.weibull(2.0, 40)
    return xr.Dataset({"cycles": ("sample", np.minimum(life, 2500.0)), "failed": ("sample", (life <= 2500.0) * 1),
                       "void_fraction": ("sample", voids)})


def _alt_test_data():
    """30 units at three temperatures, Arrhenius-Weibull cycles suspended at 4000."""
    import numpy as np
    import xarray as xr

    rng = np.random.default_rng(0)
    temp = np.repeat([358.0, 378.0, 398.0], 10)
    life = 3000.0 * np.exp(8000.0 * (1 / temp - 1 / 378.0)) * rng.weibull(2.0, 30)
    return xr.Dataset({"cycles": ("sample", np.minimum(life, 4000.0)), "failed": ("sample", (life <= 4000.0) * 1),
                       "temperature_k": ("sample", temp)})


def _failure_mode_data():
    """The life test with each failure's mode: voided units fail early."""
    import numpy as np

    data = _life_test_data()
    failed = data["failed"].values == 1
    data["mode"] = ("sample", np.where(failed, np.where(data["void_fraction"].values > 0.15, "void", "wearout"), ""))
    return data


def _image_data():
    """16 grayscale 8x8 images whose centre brightness is the target."""
    import numpy as np
    import xarray as xr

    rng = np.random.default_rng(0)
    level = rng.uniform(0.0, 1.0, 16)
    images = rng.uniform(0.0, 0.2, (16, 1, 8, 8)).astype(np.float32)
    images[:, :, 2:6, 2:6] += 0.8 * level[:, None, None, None].astype(np.float32)
    return xr.Dataset({"image": (("sample", "channel", "y", "x"), images), "level": ("sample", level)})



def _labelled_image_data():
    """The 8x8 images with a class label: bright or dim centre."""
    import numpy as np

    data = _image_data()
    data["label"] = ("sample", np.where(data["level"].values > 0.5, "bright", "dim"))
    return data


def _box_image_data():
    """8 grayscale 32x32 images, each with one bright square and its box (the ragged box table on dim box)."""
    import numpy as np
    import xarray as xr

    rng = np.random.default_rng(0)
    images = rng.uniform(0.0, 0.2, (8, 1, 32, 32)).astype(np.float32)
    x0, y0 = rng.integers(0, 20, 8), rng.integers(0, 20, 8)
    for k in range(8):
        images[k, 0, y0[k]:y0[k] + 10, x0[k]:x0[k] + 10] = 0.9
    return xr.Dataset({"image": (("sample", "channel", "y", "x"), images), "label": ("sample", ["void"] * 8),
                       "box_sample": ("box", np.arange(8)), "box_x0": ("box", x0 * 1.0), "box_y0": ("box", y0 * 1.0),
                       "box_x1": ("box", x0 + 10.0), "box_y1": ("box", y0 + 10.0), "box_label": ("box", ["void"] * 8)},
                      coords={"sample": np.arange(8)})


# Models need data to check fit/predict/save/load: (data, features, targets) by name.
MODEL_DATA = {
    "imc-growth": lambda: (_aging_data(), ["t_h"], ["x_um"]),
    # life models: the feature is the time (or covariate) they predict at, the target one of their outputs
    "weibull": lambda: (_life_test_data(), ["cycles"], ["reliability"]),
    "life-distribution": lambda: (_life_test_data(), ["cycles"], ["reliability"]),
    "kaplan-meier": lambda: (_life_test_data(), ["cycles"], ["reliability"]),
    "cox-ph": lambda: (_life_test_data(), ["void_fraction"], ["median_cycles"]),
    "life-stress": lambda: (_alt_test_data(), ["temperature_k"], ["b10_cycles"]),
    "weibull-mixture": lambda: (_life_test_data(), ["cycles"], ["b10_cycles"]),
    "competing-modes": lambda: (_failure_mode_data(), ["cycles"], ["b10_cycles"]),
    # vision models read the image variable (the feature names only say which dim is the sample dim)
    "vit": lambda: (_image_data(), ["image"], ["level"]),
    "vit-mae": lambda: (_image_data(), ["image"], ["level"]),
    "cnn": lambda: (_image_data(), ["image"], ["level"]),
    "ffn-multiscale": lambda: (_image_data(), ["image"], ["level"]),
    "cti": lambda: (_image_data(), ["image"], ["level"]),
    "timm-features": lambda: (_image_data(), ["image"], ["level"]),
    "pca-logistic": lambda: (_image_data(), ["image"], ["level"]),  # a float target: PCA + ridge
    "faster-rcnn": lambda: (_box_image_data(), ["image"], ["label"]),  # learns the boxes, predicts label_pred
    # surrogates (reflow.surrogates.plugin): tabular inputs to tabular outputs
    "gp": lambda: (_aging_data(), ["t_h"], ["x_um"]),
    "ensemble": lambda: (_aging_data(), ["t_h"], ["x_um"]),
    "mlp": lambda: (_aging_data(), ["t_h"], ["x_um"]),
    "elm": lambda: (_aging_data(), ["t_h"], ["x_um"]),
    "sklearn": lambda: (_aging_data(), ["t_h"], ["x_um"]),
    # generators (reflow.plugins.augment): given the class label, they produce an image
    "wgan-gp": lambda: (_labelled_image_data(), ["label"], ["image"]),
    "classic": lambda: (_labelled_image_data(), ["label"], ["image"]),
}


@pytest.mark.parametrize("name", REGISTRY.names())
def test_builtin_component_contract(name, tmp_path):
    entry = REGISTRY.get(name)
    if not entry.plugin.startswith("reflow."):
        pytest.skip("not a built-in component")
    if entry.kind == "data_source" and name in SKIP_RUN:
        from reflow.testing import check_params

        check_params(entry.cls, PARAMS[name])
        return
    if entry.kind == "model":
        assert name in MODEL_DATA, f"add check data for the built-in model {name!r} to MODEL_DATA"
        data, features, targets = MODEL_DATA[name]()
        check_component(entry.cls, PARAMS.get(name), tmp_path=tmp_path, data=data, features=features,
                        targets=targets)
        return
    check_component(entry.cls, PARAMS.get(name), tmp_path=tmp_path)


def test_check_component_catches_a_broken_evaluator(tmp_path):
    import reflow

    class Broken(reflow.Evaluator):
        """Returns NaN."""

        inputs = (reflow.Variable("x", default=1.0),)
        outputs = (reflow.Variable("y"),)

        class Params(reflow.Params):
            pass

        def evaluate_one(self, inputs):
            return {"y": float("nan")}

    with pytest.raises(AssertionError, match="failed at its default inputs"):
        check_component(Broken, tmp_path=tmp_path)


def test_check_component_catches_undocumented_params(tmp_path):
    import reflow

    class Undocumented(reflow.Evaluator):
        """No description on its param."""

        inputs = (reflow.Variable("x", default=1.0),)
        outputs = (reflow.Variable("y"),)

        class Params(reflow.Params):
            scale: float = 1.0

        def evaluate_one(self, inputs):
            return {"y": inputs["x"] * self.params.scale}

    with pytest.raises(AssertionError, match="no description"):
        check_component(Undocumented, tmp_path=tmp_path)

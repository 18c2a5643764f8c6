"""Data source synthetic-sam: reproducible images, labels from the documented physical model, SAM-like contrast."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError
from reflow.context import RunContext, stage_seed
from reflow.plugins.data.sam import LED_TYPES, PASTES, SyntheticSam, generate_sam


def load(seed: int = 0, **params):
    ctx = RunContext(run=None, stage="sam", seed=seed, device="cpu", folder=None, study_dir=None, quiet=True)
    return SyntheticSam(**params).load(ctx)


@pytest.fixture(scope="module")
def sam():
    """100 LEDs x 5 cycles at 32 px with masks: the labels are computed at 256 px whatever the output size."""
    return load(seed=11, leds=100, size=32, masks=True)


def test_same_seed_same_images_other_seed_other_images():
    a, b, c = load(3, leds=6, size=32), load(3, leds=6, size=32), load(4, leds=6, size=32)
    np.testing.assert_array_equal(a["image"].values, b["image"].values)
    for name in ("delta_bmax", "led_type", "paste", "void_fraction"):
        np.testing.assert_array_equal(a[name].values, b[name].values)
    assert np.abs(a["image"].values - c["image"].values).mean() > 0.02
    assert not np.array_equal(a["delta_bmax"].values, c["delta_bmax"].values)


def test_shapes_dtypes_and_label_variables(sam):
    n = 100 * 5
    assert sam["image"].dims == ("sample", "channel", "y", "x")
    assert sam["image"].shape == (n, 1, 32, 32)
    assert sam["image"].dtype == np.float32
    img = sam["image"].values
    assert img.min() >= 0.0 and img.max() <= 1.0
    for name in ("led_id", "led_type", "paste", "cycles", "void_fraction", "crack_fraction", "delta_bmax",
                 "defective"):
        assert sam[name].dims == ("sample",), name
    assert sam["defective"].dtype == bool
    assert sam["led_id"].values.tolist() == np.repeat(np.arange(100), 5).tolist()
    assert sam["cycles"].values.tolist() == [0, 100, 500, 1000, 1500] * 100
    assert set(sam["led_type"].values) == set(LED_TYPES)  # 100 LEDs, balanced over the 45 combinations
    assert set(sam["paste"].values) == set(PASTES)
    np.testing.assert_array_equal(sam["defective"].values, sam["delta_bmax"].values > 0.2)
    for name in ("pad_mask", "void_mask", "crack_mask"):
        assert sam[name].shape == (n, 32, 32) and 0.0 <= float(sam[name].min()) <= float(sam[name].max()) <= 1.0
    one = load(0, leds=2, cycles=[0, 2000], size=48)
    assert one["image"].shape == (4, 1, 48, 48) and one["cycles"].values.tolist() == [0, 2000, 0, 2000]


def test_labels_follow_the_documented_thermal_model():
    exact = load(5, leds=20, size=16, label_noise=0.0, thermal_share=0.4)
    loss = exact["contact_loss"].values
    np.testing.assert_allclose(exact["delta_bmax"].values, 0.4 * loss / (1.0 - loss), rtol=1e-12)
    noisy = load(5, leds=20, size=16, label_noise=0.05, thermal_share=0.4)
    np.testing.assert_array_equal(noisy["contact_loss"].values, loss)  # the noise does not touch the geometry
    residual = noisy["delta_bmax"].values - exact["delta_bmax"].values
    assert abs(residual.mean()) < 0.015 and 0.04 < residual.std() < 0.06


def test_lost_area_is_voids_plus_cracks_and_only_grows(sam):
    void = sam["void_fraction"].values.reshape(100, 5)
    crack = sam["crack_fraction"].values.reshape(100, 5)
    assert np.all(void == void[:, :1])  # voids are there from the start and stay
    assert np.all(np.diff(crack, axis=1) >= 0.0)  # cracks only grow
    assert np.all(crack[:, 0] == 0.0)  # nothing cracks before cycling
    assert crack[:, -1].mean() > 0.1
    assert 0.01 < void.mean() < 0.1  # the pastes' 2-8 % voids
    loss = sam["contact_loss"].values
    unweighted = sam["void_fraction"].values + sam["crack_fraction"].values
    assert np.corrcoef(loss, unweighted)[0, 1] > 0.95  # the thermal weighting only reshuffles a little


def test_delta_bmax_increases_with_cycles_and_follows_lost_area(sam):
    delta = sam["delta_bmax"].values.reshape(100, 5)
    means = delta.mean(axis=0)
    assert np.all(np.diff(means) > -0.005), means  # on average never falls (0 and 100 cycles: no cracks yet)
    assert means[-1] > means[0] + 0.1
    assert (delta[:, -1] > delta[:, 0]).mean() > 0.9  # per LED, the last image is worse than the first
    lost = sam["void_fraction"].values + sam["crack_fraction"].values
    assert np.corrcoef(lost, sam["delta_bmax"].values)[0, 1] > 0.85


def test_defective_rate_in_the_intended_range(sam):
    late = sam["cycles"].values >= 1000
    rate = sam["defective"].values[late].mean()
    assert 0.15 <= rate <= 0.4, rate
    assert sam["defective"].values[sam["cycles"].values == 0].mean() < 0.05


def test_images_show_dark_pads_and_bright_voids_and_cracks(sam):
    img = sam["image"].values[:, 0]
    pad, void, crack = sam["pad_mask"].values, sam["void_mask"].values, sam["crack_mask"].values
    intact = (pad > 0.99) & (void < 0.01) & (crack < 0.01)
    gap = (pad < 0.01) & (np.abs(img - 0.8) < 0.5)
    assert intact.sum() > 1000 and (void > 0.6).sum() > 30 and (crack > 0.8).sum() > 100
    pad_mean = img[intact].mean()
    assert pad_mean < 0.35
    assert img[void > 0.6].mean() > pad_mean + 0.2
    assert img[crack > 0.8].mean() > pad_mean + 0.3
    assert img[gap].mean() > pad_mean + 0.2


def test_geometry_and_labels_do_not_depend_on_size_or_noise():
    a = load(9, leds=8, size=32)
    b = load(9, leds=8, size=64, speckle=0.0, noise=0.0, blur=0.0, alignment_px=0.0, rotation_deg=0.0)
    for name in ("contact_loss", "void_fraction", "crack_fraction", "delta_bmax"):
        np.testing.assert_array_equal(a[name].values, b[name].values)


def test_void_scale_and_paste_propensities():
    base = load(2, leds=40, size=16, cycles=[0], crack_scale=0.0)
    double = load(2, leds=40, size=16, cycles=[0], crack_scale=0.0, void_scale=2.0)
    ratio = double["void_fraction"].mean() / base["void_fraction"].mean()
    assert 1.6 < float(ratio) < 2.4
    assert float(double["delta_bmax"].mean()) > float(base["delta_bmax"].mean())
    assert float(base["crack_fraction"].max()) == 0.0  # crack_scale 0: no cracks at all

    only_c = load(2, leds=20, size=16, cycles=[0], pastes=["C"], void_propensity={"C": 0.15})
    assert set(only_c["paste"].values) == {"C"}
    assert float(only_c["void_fraction"].mean()) > 2 * PASTES["C"][0]

    brittle = load(2, leds=20, size=16, cycles=[1000], pastes=["A"], crack_propensity={"A": 3.0})
    tough = load(2, leds=20, size=16, cycles=[1000], pastes=["A"])
    assert float(brittle["crack_fraction"].mean()) > 1.5 * float(tough["crack_fraction"].mean())


@pytest.mark.parametrize("params, message", [
    ({"pastes": ["A", "Z"]}, "unknown paste"),
    ({"led_types": ["T10"]}, "unknown LED type"),
    ({"cycles": [0, -5]}, ">= 0"),
    ({"cycles": [100, 100]}, "must not repeat"),
    ({"void_propensity": {"A": 0.9}}, "void_propensity must lie in"),
    ({"pastes": ["A"], "crack_propensity": {"B": 2.0}}, "not in pastes"),
    ({"size": 8}, "greater than or equal"),
])
def test_bad_params_are_rejected_with_a_reason(params, message):
    with pytest.raises(ValidationError, match=message):
        SyntheticSam.Params(**params)


def test_sample_grid_figure(tmp_path):
    ds = generate_sam(SyntheticSam.Params(leds=6, size=16), seed=1)
    paths = SyntheticSam().plot(ds, tmp_path)
    assert paths == [tmp_path / "sam_examples.png"] and paths[0].stat().st_size > 5000


def test_data_stage_stores_the_images_and_draws_examples(write_study, tmp_path):
    from reflow.runner import run_study
    from reflow.study import load_study

    study = write_study("""
        study: sam-data
        seed: 4
        stages:
          sam:
            task: data
            source: {synthetic-sam: {leds: 4, size: 16, cycles: [0, 1500]}}
    """)
    run = run_study(load_study(study), out=tmp_path / "runs", quiet=True)
    stored = run.output("sam")
    assert stored["image"].shape == (8, 1, 16, 16)
    assert stored["defective"].dtype == bool and stored["led_type"].dtype.kind == "U"
    again = load(stage_seed(4, "sam"), leds=4, size=16, cycles=[0, 1500])  # the stage's own seed
    np.testing.assert_allclose(again["image"].values, stored["image"].values)
    np.testing.assert_array_equal(again["delta_bmax"].values, stored["delta_bmax"].values)
    assert (run.dir / "sam" / "sam_examples.png").exists()

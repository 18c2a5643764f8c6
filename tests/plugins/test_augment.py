"""Augmenters (wgan-gp, classic) and the augment task, on tiny 16x16 images of very different shapes.

Class ``disk`` is a bright disk, class ``bar`` a bright horizontal bar, both at a jittered centre on dark noise;
held-out images come from another seed. Every image carries a wafer id (four images per wafer).
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch
import xarray as xr
from pydantic import ValidationError
from reflow.errors import DataError, ReflowError, UserInputError
from reflow.plugins.augment import WGANGP, AugmentTask, ClassicAugmenter
from reflow.plugins.augment.networks import (
    ConditionalCritic,
    ConditionalGenerator,
    feature_matching,
    gradient_penalty,
)
from reflow.plugins.augment.quality import QualityProbe, frechet_distance, frechet_from_moments, quality_metrics
from reflow.testing import check_component, test_context

SIZE = 16
TINY_GAN = {"width": 8, "latent_dim": 16, "embed_dim": 8, "batch_size": 32, "n_critic": 2, "lr": 5e-4}


def make_shapes(counts: dict[str, int], seed: int, size: int = SIZE) -> xr.Dataset:
    """Noise in [0, 0.15] plus a disk (radius ~3.5) or a 3x12 bar of brightness +0.8, centre jittered by +-2."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    images, labels = [], []
    for cls, n in counts.items():
        for _ in range(n):
            img = rng.uniform(0.0, 0.15, (size, size))
            cy, cx = rng.uniform(size / 2 - 2, size / 2 + 2, 2)
            if cls == "disk":
                mask = (yy - cy) ** 2 + (xx - cx) ** 2 < rng.uniform(9, 16)
            else:
                mask = (np.abs(yy - cy) < 1.5) & (np.abs(xx - cx) < 6)
            img[mask] += 0.8
            images.append(img)
            labels.append(cls)
    n = len(labels)
    ds = xr.Dataset({"image": (("sample", "channel", "y", "x"), np.clip(np.array(images)[:, None], 0, 1)
                               .astype(np.float32)),
                     "label": ("sample", np.array(labels)),
                     "wafer_id": ("sample", np.array([f"w{seed}-{i // 4}" for i in range(n)])),
                     "thickness_um": ("sample", rng.uniform(50, 60, n))},
                    coords={"sample": np.arange(n) + 10_000 * seed})
    ds["label"].attrs["classes"] = list(counts)
    return ds


def digests(images: np.ndarray) -> set[str]:
    return {hashlib.sha1(np.ascontiguousarray(img, dtype=np.float32).tobytes()).hexdigest() for img in images}


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """One intra-op thread: on a small shared CPU, two threads that wait on each other are many times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def shapes_train():
    return make_shapes({"disk": 64, "bar": 64}, seed=1)


@pytest.fixture(scope="module")
def shapes_test():
    return make_shapes({"disk": 40, "bar": 40}, seed=2)


@pytest.fixture(scope="module")
def trained_gan(shapes_train, tmp_path_factory):
    folder = tmp_path_factory.mktemp("wgan")
    torch.manual_seed(0)
    model = WGANGP(steps=120, **TINY_GAN).fit(shapes_train, test_context(folder, seed=4))
    return model, folder


# --- networks and losses -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("size, channels", [(16, 1), (32, 3), (64, 1)])
def test_generator_and_critic_shapes(size, channels):
    torch.manual_seed(0)
    gen = ConditionalGenerator(latent_dim=8, n_classes=3, channels=channels, image_size=size, width=4, embed_dim=4)
    critic = ConditionalCritic(n_classes=3, channels=channels, image_size=size, width=4)
    z, y = torch.randn(5, 8), torch.tensor([0, 1, 2, 1, 0])
    images = gen(z, y)
    assert images.shape == (5, channels, size, size)
    assert images.min() >= -1.0 and images.max() <= 1.0  # tanh
    scores, phi = critic(images, y, return_features=True)
    assert scores.shape == (5,)
    assert phi.shape == (5, critic.feature_dim)
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in critic.modules())
    # the class changes the generated image and the critic's score of the same image
    assert not torch.allclose(gen(z, torch.zeros(5, dtype=torch.long)), gen(z, torch.ones(5, dtype=torch.long)))
    assert not torch.allclose(critic(images, torch.zeros(5, dtype=torch.long)),
                              critic(images, torch.ones(5, dtype=torch.long)))


def test_gradient_penalty_matches_hand_computed_values():
    real = torch.ones(2, 1, 2, 2)
    fake = torch.zeros(2, 1, 2, 2)
    labels = torch.zeros(2, dtype=torch.long)
    eps = torch.tensor([0.25, 0.5])

    def quadratic(x, y):  # D(x) = ||x||^2 / 2: grad = x_hat = eps * ones, ||grad|| = 2 eps over 4 pixels
        return 0.5 * x.pow(2).flatten(1).sum(dim=1)

    # norms 0.5 and 1.0: 10 * mean((0.5 - 1)^2, (1 - 1)^2) = 10 * 0.125
    assert gradient_penalty(quadratic, real, fake, labels, 10.0, eps).item() == pytest.approx(1.25, rel=1e-5)

    w = torch.tensor([3.0, 0.0, 4.0, 0.0]).view(1, 1, 2, 2)

    def linear(x, y):  # grad = w everywhere, ||w|| = 5: penalty = lambda (5 - 1)^2
        return (x * w).flatten(1).sum(dim=1)

    assert gradient_penalty(linear, real, fake, labels, 10.0, eps).item() == pytest.approx(160.0, rel=1e-5)
    assert gradient_penalty(linear, real, fake, labels, 2.5).item() == pytest.approx(40.0, rel=1e-5)  # any eps


def test_gradient_penalty_stays_float32_under_bf16_autocast():
    torch.manual_seed(0)
    critic = ConditionalCritic(n_classes=2, channels=1, image_size=16, width=4)
    real, fake, labels = torch.rand(4, 1, 16, 16), torch.rand(4, 1, 16, 16), torch.tensor([0, 1, 0, 1])
    eps = torch.rand(4)
    reference = gradient_penalty(critic, real, fake, labels, 10.0, eps)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert critic.features(real).dtype == torch.bfloat16  # autocast is on for the critic itself
        inside = gradient_penalty(critic, real.bfloat16(), fake.bfloat16(), labels, 10.0, eps)
    assert inside.dtype == torch.float32
    # the same value up to the bf16 rounding of the inputs, not of the penalty
    again = gradient_penalty(critic, real.bfloat16().float(), fake.bfloat16().float(), labels, 10.0, eps)
    assert inside.item() == pytest.approx(again.item(), rel=1e-6)
    assert inside.item() == pytest.approx(reference.item(), rel=0.05)


def test_wgan_batches_balance_the_classes_or_cover_every_image():
    from reflow.plugins.augment.wgan import _batches

    labels = np.array([0] * 90 + [1] * 10)
    weights = torch.from_numpy(1.0 / np.bincount(labels)[labels])
    stream = _batches(100, 20, torch.Generator().manual_seed(0), weights / weights.sum())
    drawn = torch.cat([next(stream) for _ in range(200)]).numpy()
    assert abs(np.mean(labels[drawn] == 1) - 0.5) < 0.03  # the rare class as often as the common one
    plain = _batches(100, 30, torch.Generator().manual_seed(0))
    counts = np.bincount(torch.cat([next(plain) for _ in range(10)]).numpy(), minlength=100)
    assert (counts == 3).all()  # 10 batches of 30 = three full passes over 100 images


def test_wgan_trains_under_bf16_autocast(tmp_path):
    data = make_shapes({"disk": 8, "bar": 8}, seed=6)
    model = WGANGP(steps=2, precision="bf16", **{**TINY_GAN, "batch_size": 8}).fit(data, test_context(tmp_path))
    assert np.isfinite([model.summary()[f"final_{k}"] for k in ("critic_loss", "generator_loss")]).all()
    images = model.generate({"bar": 2}, seed=0)["image"]
    assert images.dtype == np.float32 and np.isfinite(images.values).all()


def test_gradient_penalty_reaches_the_critic_weights():
    torch.manual_seed(0)
    critic = ConditionalCritic(n_classes=2, channels=1, image_size=16, width=4)
    real, fake = torch.rand(4, 1, 16, 16), torch.rand(4, 1, 16, 16)
    gradient_penalty(critic, real, fake, torch.tensor([0, 1, 0, 1])).backward()
    grads = [p.grad for p in critic.parameters() if p.grad is not None]
    assert grads and any(float(g.abs().sum()) > 0 for g in grads)


def test_feature_matching_is_the_mean_squared_gap_of_the_batch_means():
    real = torch.tensor([[1.0, 2.0], [3.0, 4.0]])  # means (2, 3)
    fake = torch.tensor([[0.0, 0.0], [2.0, 2.0]])  # means (1, 1)
    assert feature_matching(real, fake).item() == pytest.approx((1.0 + 4.0) / 2)


def test_frechet_distance_matches_the_closed_form_for_gaussians():
    # diagonal covariances: ||mu_a - mu_b||^2 + sum (sqrt(a_i) - sqrt(b_i))^2
    mu_a, mu_b = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    var_a, var_b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 9.0])
    expected = 1.0 + 4.0 + (1.0 + 1.0 + 0.0)
    assert frechet_from_moments(mu_a, np.diag(var_a), mu_b, np.diag(var_b)) == pytest.approx(expected)
    rotation = np.linalg.qr(np.random.default_rng(0).normal(size=(3, 3)))[0]  # invariant under a common rotation
    assert frechet_from_moments(rotation @ mu_a, rotation @ np.diag(var_a) @ rotation.T, rotation @ mu_b,
                                rotation @ np.diag(var_b) @ rotation.T) == pytest.approx(expected)
    rng = np.random.default_rng(1)
    a = rng.normal(size=(4000, 2))
    assert frechet_distance(a, rng.normal(size=(4000, 2))) < 0.02
    assert frechet_distance(a, rng.normal(3.0, 1.0, size=(4000, 2))) == pytest.approx(18.0, rel=0.05)
    assert np.isnan(frechet_distance(a[:1], a))


def test_quality_metrics_accept_real_images_and_reject_noise(shapes_train, shapes_test):
    probe = QualityProbe(size=16, components=16).fit(shapes_train["image"].values, shapes_train["label"].values)
    train = (shapes_train["image"].values, shapes_train["label"].values)
    test = (shapes_test["image"].values, shapes_test["label"].values)
    # a perfect generator: new real images (another seed) of each class
    fresh = make_shapes({"disk": 40, "bar": 40}, seed=9)
    good = quality_metrics(probe, ["disk", "bar"], train, test, (fresh["image"].values, fresh["label"].values))
    assert good["probe_test_accuracy"] > 0.95 and good["probe_chance"] == 0.5
    for c in ("disk", "bar"):
        assert good[f"probe_accuracy_{c}"] > 0.95
        assert good[f"probe_in_distribution_{c}"] > 0.8
        assert good[f"frechet_generated_{c}"] < 2.0 * good[f"frechet_real_{c}"]
    # a broken generator: noise with the brightness statistics of the data
    rng = np.random.default_rng(0)
    noise = rng.permuted(fresh["image"].values.reshape(80, -1), axis=1).reshape(fresh["image"].shape)
    bad = quality_metrics(probe, ["disk", "bar"], train, test, (noise, fresh["label"].values))
    for c in ("disk", "bar"):
        assert bad[f"probe_in_distribution_{c}"] < 0.1
        assert bad[f"frechet_generated_{c}"] > 3.0 * bad[f"frechet_real_{c}"]
    assert bad["frechet_generated_mean"] > 3.0 * good["frechet_generated_mean"]


# --- wgan-gp -----------------------------------------------------------------------------------------------------


def test_wgan_generates_each_class_closer_to_its_own_real_images(trained_gan, shapes_train, shapes_test):
    model, _ = trained_gan
    fake = model.generate({"disk": 60, "bar": 60}, seed=11)
    assert fake["image"].shape == (120, 1, SIZE, SIZE) and fake["image"].dtype == np.float32
    assert float(fake["image"].min()) >= 0.0 and float(fake["image"].max()) <= 1.0
    assert fake["synthetic"].values.all()
    assert list(fake["label"].attrs["classes"]) == ["disk", "bar"]
    # the probe and the distances are fit on real training images; the comparison is with held-out real ones
    probe = QualityProbe(size=16, components=16).fit(shapes_train["image"].values, shapes_train["label"].values)
    predicted = probe.predict(fake["image"].values)
    f_fake, f_real = probe.features(fake["image"].values), probe.features(shapes_test["image"].values)
    for own, other in (("disk", "bar"), ("bar", "disk")):
        mine = fake["label"].values == own
        assert np.mean(predicted[mine] == own) > 0.75, own  # chance is 0.5
        to_own = frechet_distance(f_fake[mine], f_real[shapes_test["label"].values == own])
        to_other = frechet_distance(f_fake[mine], f_real[shapes_test["label"].values == other])
        assert to_own < to_other, (own, to_own, to_other)


def test_wgan_records_its_losses(trained_gan):
    model, folder = trained_gan
    summary = model.summary()
    assert summary["steps"] == 120 and summary["image_size"] == SIZE
    assert np.isfinite([summary[k] for k in ("final_critic_loss", "final_generator_loss", "final_wasserstein",
                                             "final_gradient_penalty", "final_feature_matching")]).all()
    rows = (folder / "epochs.csv").read_text().splitlines()
    assert rows[0].split(",") == ["epoch", "step", "critic_loss", "wasserstein", "gradient_penalty", "generator_loss",
                                  "feature_matching", "seconds"]
    assert len(rows) == 1 + summary["epochs_run"]
    paths = model.plot(folder)
    assert sorted(p.name for p in paths) == ["wgan_losses.png", "wgan_samples.png"]
    assert all(p.stat().st_size > 1000 for p in paths)


def test_wgan_save_load_round_trip_gives_the_same_images(trained_gan, tmp_path):
    model, _ = trained_gan
    model.save(tmp_path / "model")
    saved = sorted(p.name for p in (tmp_path / "model").iterdir())
    assert saved == ["critic.safetensors", "generator.safetensors", "params.json", "state.json"]
    loaded = WGANGP.load(tmp_path / "model")
    before = model.generate({"disk": 5, "bar": 3}, seed=21)
    after = loaded.generate({"disk": 5, "bar": 3}, seed=21)
    np.testing.assert_array_equal(before["image"].values, after["image"].values)
    np.testing.assert_array_equal(before["label"].values, after["label"].values)
    assert not np.array_equal(after["image"].values, loaded.generate({"disk": 5, "bar": 3}, seed=22)["image"].values)
    # a class's images depend on (seed, class) only
    np.testing.assert_array_equal(loaded.generate({"disk": 5}, seed=21)["image"].values, after["image"].values[:5])


def test_wgan_bad_params_and_requests(trained_gan):
    for size in (48, 8, 100):
        with pytest.raises(ValidationError, match="power of two"):
            WGANGP(image_size=size)
    with pytest.raises(ValidationError, match="betas"):
        WGANGP(betas=(0.5, 1.2))
    model, _ = trained_gan
    with pytest.raises(UserInputError, match="unknown class.*'crack'.*disk, bar"):
        model.generate({"crack": 3}, seed=0)
    with pytest.raises(UserInputError, match="integer >= 0"):
        model.generate({"disk": -1}, seed=0)
    with pytest.raises(ReflowError, match="call fit before using the model"):
        WGANGP().generate({"disk": 1})
    with pytest.raises(UserInputError, match="predicts no label; train it in an augment stage"):
        WGANGP(steps=1).configure(["label"], ["label"]).fit(make_shapes({"disk": 2}, seed=0), test_context("."))


def test_wgan_asks_for_image_size_on_odd_images_and_resizes(tmp_path):
    odd = make_shapes({"disk": 4, "bar": 4}, seed=3, size=20)
    with pytest.raises(UserInputError, match="20x20.*set image_size.*16"):
        WGANGP(steps=1, **TINY_GAN).fit(odd, test_context(tmp_path))
    model = WGANGP(steps=1, image_size=16, **TINY_GAN).fit(odd, test_context(tmp_path))
    assert model.generate({"bar": 2}, seed=0)["image"].shape == (2, 1, 16, 16)


def test_wgan_and_classic_pass_the_component_contract(tmp_path):
    data = make_shapes({"disk": 4, "bar": 4}, seed=5)
    tiny = {"steps": 2, "width": 4, "latent_dim": 4, "embed_dim": 2, "n_critic": 1, "batch_size": 4}
    check_component(WGANGP, tiny, tmp_path=tmp_path / "gan", data=data, features=["label"], targets=["image"])
    check_component(ClassicAugmenter, None, tmp_path=tmp_path / "classic", data=data, features=["label"],
                    targets=["image"])


@pytest.mark.parametrize("cls", [WGANGP, ClassicAugmenter])
def test_augmenters_are_declared_generators_fitted_by_classes(cls, tmp_path):
    import reflow

    assert issubclass(cls, reflow.Generator) and cls.family == "generator" and cls.uses_images
    model = cls(steps=1, **TINY_GAN) if cls is WGANGP else cls()
    assert model.classes_ is None and not model.is_fitted("classes_")  # the declared default before fit
    data = make_shapes({"disk": 2, "bar": 2}, seed=3)
    assert model.fit(data, test_context(tmp_path), validation=data) is model  # the train task's call
    assert model.classes_ == ["disk", "bar"] and model.is_fitted("classes_")


# --- classic -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("angle, turns", [(90, 1), (180, 2), (-90, 3), (270, 3), (360, 0)])
def test_classic_rotations_by_multiples_of_90_are_exact_and_keep_the_label(angle, turns, shapes_train):
    model = ClassicAugmenter(angles=[angle], hflip=False).fit(shapes_train, test_context("."))
    out = model.generate({"bar": 6, "disk": 4}, seed=3, source=shapes_train)
    source = shapes_train["image"].values
    for k in range(out.sizes["sample"]):
        i = int(out["source_index"].values[k])
        np.testing.assert_array_equal(out["image"].values[k], np.rot90(source[i], turns, axes=(-2, -1)))
        assert out["label"].values[k] == shapes_train["label"].values[i]
    assert list(out["label"].values) == ["bar"] * 6 + ["disk"] * 4
    # 90 degrees is counter-clockwise, as torchvision's rotate turns for other angles
    from torchvision.transforms.v2 import functional as tvf

    img = torch.from_numpy(source[:1])
    np.testing.assert_allclose(tvf.rotate(img, 90.0)[0].numpy(), np.rot90(source[0], 1, axes=(-2, -1)), atol=1e-6)


def test_classic_seed_002_rotations_flips_and_jitter(shapes_train, tmp_path):
    model = ClassicAugmenter(brightness=0.1, contrast=0.2).fit(shapes_train, test_context(tmp_path))
    assert model.params.angles == [-30.0, -15.0, 15.0, 30.0]
    out = model.generate({"bar": 200}, seed=0, source=shapes_train)
    assert set(np.unique(out["angle"].values)) == {-30.0, -15.0, 15.0, 30.0}
    assert 60 < out["hflip"].values.sum() < 140 and not out["vflip"].values.any()
    assert (out["label"].values == "bar").all()
    assert (shapes_train["label"].values[out["source_index"].values] == "bar").all()
    # without jitter, a 15-degree turn of an image keeps its mean brightness (corners get the border mean)
    plain = ClassicAugmenter(angles=[15], hflip=False).fit(shapes_train, test_context(tmp_path))
    turned = plain.generate({"disk": 20}, seed=1, source=shapes_train)
    originals = shapes_train["image"].values[turned["source_index"].values]
    assert np.abs(turned["image"].values.mean(axis=(1, 2, 3)) - originals.mean(axis=(1, 2, 3))).max() < 0.03
    assert not np.allclose(turned["image"].values, originals)
    # save/load keeps params and classes only; the same seed and source give the same images
    model.save(tmp_path / "classic")
    assert sorted(p.name for p in (tmp_path / "classic").iterdir()) == ["params.json", "state.json"]
    again = ClassicAugmenter.load(tmp_path / "classic").generate({"bar": 200}, seed=0, source=shapes_train)
    np.testing.assert_array_equal(again["image"].values, out["image"].values)


def test_classic_bad_input(shapes_train):
    with pytest.raises(ValidationError, match="unchanged"):
        ClassicAugmenter(angles=[], hflip=False)
    model = ClassicAugmenter().fit(shapes_train, test_context("."))
    with pytest.raises(UserInputError, match="pass the images"):
        model.generate({"bar": 2})
    with pytest.raises(UserInputError, match="unknown class.*'void'"):
        model.generate({"void": 2}, source=shapes_train)
    with pytest.raises(DataError, match="no class variable 'defect'"):
        ClassicAugmenter(label="defect").fit(shapes_train, test_context("."))
    with pytest.raises(UserInputError, match="classic is a generator"):
        ClassicAugmenter().configure([], ["label"]).fit(shapes_train, test_context("."))


# --- the augment task --------------------------------------------------------------------------------------------


def task_context(tmp_path, data, seed=0, **stages):
    """A RunContext whose earlier stages' outputs are ``data`` (as ``wafers``) and ``stages``."""
    ctx = test_context(tmp_path, seed=seed)
    outputs = {"wafers": data, **stages}
    ctx.run.output = lambda ref: outputs[str(ref)]
    return ctx


@pytest.fixture
def rare_bars():
    """80 disks and 16 bars: bars are the rare class."""
    return make_shapes({"disk": 80, "bar": 16}, seed=7)


@pytest.mark.parametrize("augmenter", ["classic", "wgan-gp"])
def test_augment_never_feeds_held_out_images_to_the_augmenter(augmenter, rare_bars, tmp_path, monkeypatch):
    cls = ClassicAugmenter if augmenter == "classic" else WGANGP
    fed: list[np.ndarray] = []
    fit, generate = cls.fit, cls.generate

    def spy_fit(self, data, ctx, validation=None):
        fed.append(np.asarray(data["image"].values))
        return fit(self, data, ctx, validation)

    def spy_generate(self, n_per_class, seed=0, source=None, device="cpu"):
        if source is not None:
            fed.append(np.asarray(source["image"].values))
        return generate(self, n_per_class, seed, source, device)

    monkeypatch.setattr(cls, "fit", spy_fit)
    monkeypatch.setattr(cls, "generate", spy_generate)
    spec = "classic" if augmenter == "classic" else {"wgan-gp": {"steps": 2, **TINY_GAN}}
    task = AugmentTask(data="wafers", augmenter=spec, split={"by": "wafer_id", "test": 0.25}, target_per_class=40)
    result = task.run(task_context(tmp_path, rare_bars))
    train, test = result.outputs["train"], result.outputs["test"]

    held_out = digests(test["image"].values)
    real_train = digests(train["image"].values[~train["synthetic"].values])
    assert fed and all(digests(batch) == real_train for batch in fed)  # exactly the training images, every time
    assert not held_out & real_train
    assert held_out | real_train == digests(rare_bars["image"].values)
    assert not set(test["wafer_id"].values) & set(train["wafer_id"].values[~train["synthetic"].values])
    # the held-out part is passed through unchanged
    xr.testing.assert_identical(test, rare_bars.isel(sample=np.isin(rare_bars["sample"].values,
                                                                    test["sample"].values)))
    # every class brought up to 40 training images
    counts = {c: int((train["label"].values == c).sum()) for c in ("disk", "bar")}
    assert counts["bar"] == 40 and counts["disk"] >= 40
    assert (train["label"].values[train["synthetic"].values] == "bar").all()
    assert result.metrics["generated_bar"] == 40 - result.metrics["real_train_bar"]
    assert (model_dir := tmp_path / "model").is_dir() and json.loads((model_dir / "component.json").read_text()) == \
        {"name": augmenter}
    # the stage's figures include those the saved augmenter draws of itself (the GAN's samples and losses)
    if augmenter == "wgan-gp":
        names = {p.name for p in task.plot(result, tmp_path)}
        assert {"wgan_samples.png", "wgan_losses.png", "real_vs_generated.png"} <= names


def test_augment_learns_from_real_images_only_when_the_data_hold_generated_ones(rare_bars, tmp_path, monkeypatch):
    first = AugmentTask(data="wafers", augmenter="classic", target_per_class=40).run(
        task_context(tmp_path / "first", rare_bars))
    earlier = first.outputs["train"]
    fed: list[np.ndarray] = []
    fit = ClassicAugmenter.fit

    def spy_fit(self, data, ctx, validation=None):
        fed.append(np.asarray(data["image"].values))
        return fit(self, data, ctx, validation)

    monkeypatch.setattr(ClassicAugmenter, "fit", spy_fit)
    task = AugmentTask(data="balanced", heldout="held", augmenter="classic", per_class={"bar": 5, "disk": 2})
    result = task.run(task_context(tmp_path / "second", rare_bars, balanced=earlier, held=first.outputs["test"]))
    real = ~earlier["synthetic"].values
    assert len(fed) == 1 and digests(fed[0]) == digests(earlier["image"].values[real])
    train = result.outputs["train"]
    assert train.sizes["sample"] == earlier.sizes["sample"] + 7
    np.testing.assert_array_equal(train["synthetic"].values[:earlier.sizes["sample"]], earlier["synthetic"].values)
    assert result.metrics["train_synthetic_before"] == int((~real).sum())
    assert result.metrics["synthetic_before_bar"] == 40 - first.metrics["real_train_bar"]
    xr.testing.assert_identical(result.outputs["test"], first.outputs["test"])


def test_augment_outputs_metrics_and_plots(rare_bars, tmp_path):
    task = AugmentTask(data="wafers", augmenter={"classic": {"angles": [-15, 15], "vflip": True}},
                       per_class={"bar": 30})
    result = task.run(task_context(tmp_path, rare_bars, seed=2))
    train, generated = result.outputs["train"], result.outputs["generated"]
    assert generated.sizes["sample"] == 30 and (generated["label"].values == "bar").all()
    assert train.sizes["sample"] == result.metrics["train_real"] + 30
    synthetic = train["synthetic"].values
    assert (train["real_index"].values[synthetic] == -1).all() and (train["real_index"].values[~synthetic] >= 0).all()
    assert np.isnan(train["thickness_um"].values[synthetic]).all()
    assert (train["wafer_id"].values[synthetic] == "").all()
    np.testing.assert_array_equal(train["label_index"].values, (train["label"].values == "bar").astype(int))
    m = result.metrics
    for key in ("probe_accuracy_bar", "probe_test_accuracy", "frechet_generated_bar", "frechet_real_bar",
                "frechet_real_disk"):
        assert np.isfinite(m[key]), key
    assert np.isnan(m["probe_accuracy_disk"]) and np.isnan(m["frechet_generated_disk"])  # none generated
    assert m["probe_test_accuracy"] > 0.9
    assert m["probe_accuracy_bar"] > m["probe_chance"] == 0.5  # tilted bars are still more bar than disk
    paths = task.plot(result, tmp_path)
    assert sorted(p.name for p in paths) == ["augment_quality.png", "real_vs_generated.png"]


def test_augment_with_another_class_variable(rare_bars, tmp_path):
    data = rare_bars.rename({"label": "defect"})
    task = AugmentTask(data="wafers", augmenter="classic", label="defect", per_class={"bar": 4})
    result = task.run(task_context(tmp_path, data))
    assert "defect" in result.outputs["generated"] and "label" not in result.outputs["generated"]
    assert (result.outputs["generated"]["defect"].values == "bar").all()
    assert int((result.outputs["train"]["defect"].values == "bar").sum()) == result.metrics["real_train_bar"] + 4
    assert task.plot(result, tmp_path)


def test_augment_bad_params(rare_bars, tmp_path):
    with pytest.raises(ValidationError, match="exactly one of target_per_class"):
        AugmentTask(data="wafers", augmenter="classic")
    with pytest.raises(ValidationError, match="exactly one of target_per_class"):
        AugmentTask(data="wafers", augmenter="classic", target_per_class=5, per_class={"bar": 1})
    with pytest.raises(ValidationError, match="split.val must be 0"):
        AugmentTask(data="wafers", augmenter="classic", target_per_class=5, split={"val": 0.1})
    task = AugmentTask(data="wafers", augmenter="classic", per_class={"bar": 3, "crack": 2})
    with pytest.raises(UserInputError, match="unknown class.*'crack'.*disk, bar"):
        task.run(task_context(tmp_path, rare_bars))
    task = AugmentTask(data="wafers", augmenter="classic", per_class={"bar": 3}, label="defect")
    with pytest.raises(DataError, match="no class variable 'defect'"):
        task.run(task_context(tmp_path, rare_bars))


def test_augment_rejects_a_stage_model_that_is_no_generator(rare_bars, tmp_path):
    import reflow

    class Regressor(reflow.Model):
        family = "regressor"

    ctx = task_context(tmp_path, rare_bars)
    ctx.run.model = lambda stage: Regressor()
    task = AugmentTask(data="wafers", augmenter={"stage": "fit"}, per_class={"bar": 1})
    with pytest.raises(UserInputError, match=r"stage 'fit' trained a Regressor \(regressor\), not a generator; "
                                             "use wgan-gp, classic"):
        task.run(ctx)
    assert not (tmp_path / "model").exists()


STUDY = """
study: augment-shapes
seed: 5
stages:
  wafers:
    task: data
    source: {netcdf: {path: shapes.nc}}
  split:
    task: augment
    data: wafers
    augmenter: classic
    split: {by: wafer_id, test: 0.25}
    per_class: {}
  balance:
    task: augment
    data: split.train
    heldout: split.test
    augmenter: {classic: {angles: [-30, -15, 15, 30]}}
    target_per_class: 48
  more:
    task: augment
    data: balance.train
    heldout: balance.test
    augmenter: {stage: balance}
    per_class: {bar: 8}
"""


def test_augment_study_end_to_end(rare_bars, tmp_path, write_study):
    from reflow.runner import run_study
    from reflow.store import StageStore, read_dataset, write_dataset
    from reflow.study import load_study

    write_dataset(rare_bars, tmp_path / "shapes.nc")
    run = run_study(load_study(write_study(STUDY)), out=tmp_path / "runs", quiet=True)
    assert all(info["status"] == "done" for info in run.manifest["stages"].values())
    split = read_dataset(run.dir / "split" / "train.nc")
    assert not split["synthetic"].values.any() and json.loads((run.dir / "split" / "metrics.json").read_text())[
        "generated"] == 0
    stage = run.dir / "balance"
    assert {"train.nc", "test.nc", "generated.nc", "metrics.json", "real_vs_generated.png",
            "augment_quality.png"} <= {p.name for p in stage.iterdir()}
    train = read_dataset(stage / "train.nc")
    assert int((train["label"].values == "bar").sum()) == 48
    metrics = json.loads((stage / "metrics.json").read_text())
    assert train["synthetic"].dtype == bool and int(train["synthetic"].sum()) == 48 - metrics["real_train_bar"]
    assert json.loads(train["label"].attrs["classes"]) == ["disk", "bar"]
    assert digests(train["image"].values[~train["synthetic"].values]) == digests(split["image"].values)
    held_out = read_dataset(run.dir / "split" / "test.nc")
    for later in ("balance", "more"):  # the held-out part travels unchanged
        np.testing.assert_array_equal(read_dataset(run.dir / later / "test.nc")["image"].values,
                                      held_out["image"].values)
    more = read_dataset(run.dir / "more" / "generated.nc")
    assert more.sizes["sample"] == 8 and (more["label"].values == "bar").all()
    # a {stage: ...} augmenter is saved again under the name the earlier stage saved it by
    assert StageStore(run.dir / "more").model_info() == {"name": "classic"}
    assert StageStore(run.dir / "more").load_model().classes_ == ["disk", "bar"]


def test_augment_study_validation_names_the_problems(tmp_path, write_study):
    from reflow.errors import StudyError
    from reflow.study import load_study

    path = write_study("""
        study: bad
        stages:
          wafers:
            task: data
            source: {netcdf: {path: shapes.nc}}
          balance:
            task: augment
            data: wafers
            augmenter: {wgan-gp: {image_size: 48}}
            target_per_class: 10
          other:
            task: augment
            data: wafers
            augmenter: {imc-growth: {}}
            per_class: {bar: 1}
    """)
    with pytest.raises(StudyError) as err:
        load_study(path)
    text = str(err.value)
    assert "stages.balance.augmenter.wgan-gp.image_size" in text and "power of two" in text
    assert "not a generator" in text

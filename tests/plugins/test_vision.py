"""Vision models (vit, vit-mae, cnn), image transforms and the explain task, on tiny synthetic images.

The images are 16x16 noise with a centred 8x8 square whose brightness is the target (``level``), so a model
has to look at the square; held-out images come from another seed.
"""

from __future__ import annotations

import importlib.util
import json

import dask.array
import numpy as np
import pytest
import reflow
import torch
import xarray as xr
from pydantic import ValidationError
from reflow.errors import UserInputError
from reflow.imaging import BatchTransform, ImageDataset, parse_transform
from reflow.plugins.vision import CNN, ViT, ViTMAE
from reflow.plugins.vision.networks import random_masking
from reflow.testing import check_component, test_context

SIZE = 16
TINY_VIT = {"width": 32, "heads": 2, "depth": 1, "patch": 4, "head_hidden": 32, "drop_path": 0.0}


def make_images(n: int, seed: int, size: int = SIZE) -> xr.Dataset:
    rng = np.random.default_rng(seed)
    images = rng.uniform(0.0, 0.2, size=(n, 1, size, size)).astype(np.float32)
    level = rng.uniform(0.0, 1.0, size=n)
    lo, hi = size // 4, size - size // 4
    images[:, 0, lo:hi, lo:hi] += (0.8 * level[:, None, None]).astype(np.float32)
    labels = np.where(level > 0.5, "void", "ok")
    return xr.Dataset({"image": (("sample", "channel", "y", "x"), np.clip(images, 0, 1)),
                       "level": ("sample", level), "label": ("sample", labels),
                       "lot": ("sample", np.arange(n) // 4)},
                      coords={"sample": np.arange(n) + 1000 * seed})


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """One intra-op thread: on a small shared CPU, two threads that wait on each other are many times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def train_data():
    return make_images(160, seed=1)


@pytest.fixture(scope="module")
def test_data():
    return make_images(64, seed=2)


def mse_vs_mean(model, ctx, test):
    pred = model.predict(test, ctx)["level_mean"].values
    truth = test["level"].values
    return float(np.mean((pred - truth) ** 2)), float(np.var(truth))


# --- transforms --------------------------------------------------------------------------------------------------


def test_transforms_on_a_known_array():
    image = torch.arange(16, dtype=torch.float32).reshape(1, 1, 4, 4)
    batch = image.repeat(64, 1, 1, 1)
    gen = torch.Generator().manual_seed(0)
    for name, dims in (("hflip", [-1]), ("vflip", [-2])):
        out = BatchTransform([parse_transform(name)], train=True)(batch, gen)
        flipped = [bool(torch.equal(o, image[0].flip(dims))) for o in out]
        same = [bool(torch.equal(o, image[0])) for o in out]
        assert all(f or s for f, s in zip(flipped, same, strict=True))
        assert 10 < sum(flipped) < 54  # about half are flipped
        assert torch.equal(BatchTransform([parse_transform(name)], train=False)(batch), batch)  # no flips in eval

    crop = BatchTransform([parse_transform({"crop": 2})], train=False)
    assert torch.equal(crop(image)[0, 0], torch.tensor([[5.0, 6.0], [9.0, 10.0]]))  # the centre window
    windows = {(t, s): image[0, :, t:t + 2, s:s + 2] for t in range(3) for s in range(3)}
    out = BatchTransform([parse_transform({"crop": 2})], train=True)(batch, gen)
    hits = {next(k for k, w in windows.items() if torch.equal(w, o)) for o in out}
    assert len(hits) > 5  # random windows, every one a real 2x2 window of the image

    rot = BatchTransform([parse_transform({"rotate": [90]})], train=True)(image, gen)
    np.testing.assert_array_equal(rot[0, 0].numpy(), np.rot90(image[0, 0].numpy(), 1))  # counter-clockwise
    rot = BatchTransform([parse_transform({"rotate": [-90, 180]})], train=True)(batch, gen)
    allowed = [np.rot90(image[0, 0].numpy(), k) for k in (3, 2)]
    kinds = {next(i for i, a in enumerate(allowed) if np.array_equal(o[0].numpy(), a)) for o in rot}
    assert kinds == {0, 1}
    flat = torch.full((1, 1, 9, 9), 0.5)
    turned = BatchTransform([parse_transform({"rotate": [30]})], train=True)(flat, gen)
    assert turned[0, 0, 4, 4] == pytest.approx(0.5) and turned[0, 0, 0, 0] == 0.0  # corners filled with 0
    assert torch.equal(BatchTransform([parse_transform({"rotate": [90]})], train=False)(image), image)

    norm = BatchTransform([parse_transform({"normalize": {"mean": 2.0, "std": 4.0}})], train=False)
    assert torch.allclose(norm(image), (image - 2.0) / 4.0)


def test_transforms_are_deterministic_for_a_seed():
    steps = [parse_transform(s) for s in ("hflip", "vflip", {"crop": 3}, {"rotate": [0, 90, 180, 270]})]
    batch = torch.rand(32, 1, 4, 4, generator=torch.Generator().manual_seed(3))
    tf = BatchTransform(steps, train=True)
    a = tf(batch, torch.Generator().manual_seed(7))
    b = tf(batch, torch.Generator().manual_seed(7))
    c = tf(batch, torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert tf.output_size(4, 4) == (3, 3)


def test_transform_specs_validate_with_clear_errors():
    steps = ViT.Params(transforms=["hflip", {"crop": 56}, {"rotate": [0, 90]}, {"normalize": {"mean": 0.5,
                                                                                              "std": [0.25]}}])
    dumped = steps.model_dump(mode="json")["transforms"]
    assert dumped == ["hflip", {"crop": 56}, {"rotate": [0.0, 90.0]}, {"normalize": {"mean": 0.5, "std": 0.25}}]
    assert ViT.Params(transforms=dumped) == steps
    bad = [("hfilp", "did you mean 'hflip'"), ("crop", "needs a value"), ("blur", "allowed: hflip, vflip"),
           ({"crop": 0}, "integer >= 1"), ({"rotate": []}, "non-empty list"),
           ({"normalize": {"mean": 0.5, "std": 0}}, "std must be > 0"), ({"crop": 4, "hflip": None}, "one-key")]
    for spec, message in bad:
        with pytest.raises(ValidationError, match=message):
            ViT.Params(transforms=[spec])
    with pytest.raises(UserInputError, match="crop size 20 is larger than the 16x16 images"):
        BatchTransform([parse_transform({"crop": 20})], train=True).check(1, 16, 16)
    with pytest.raises(UserInputError, match="needs square images"):
        BatchTransform([parse_transform({"rotate": [90]})], train=True).check(1, 16, 8)
    with pytest.raises(UserInputError, match="one per channel"):
        BatchTransform([parse_transform({"normalize": {"mean": [0.1, 0.2], "std": [1, 1]}})], train=True).check(3, 8, 8)


def test_image_dataset_reads_lazily_from_dask_and_scales_uint8():
    pixels = np.random.default_rng(0).integers(0, 256, size=(10, 1, 4, 4), dtype=np.uint8)
    data = xr.Dataset({"image": (("sample", "channel", "y", "x"), pixels)}).chunk({"sample": 3})
    dataset = ImageDataset(data, targets=np.arange(10, dtype=np.float32))
    items = dataset.__getitems__([7, 2, 5])
    for (image, target), k in zip(items, (7, 2, 5), strict=True):
        np.testing.assert_allclose(image.numpy(), pixels[k] / 255.0, rtol=1e-6)
        assert float(target) == k
    assert isinstance(data["image"].data, dask.array.Array)  # reading batches did not load the whole array
    loader = torch.utils.data.DataLoader(dataset, batch_size=4)
    images, targets = next(iter(loader))
    assert images.shape == (4, 1, 4, 4) and targets.tolist() == [0, 1, 2, 3]


# --- models ------------------------------------------------------------------------------------------------------


def test_vit_learns_a_held_out_target_and_round_trips(train_data, test_data, tmp_path):
    ctx = test_context(tmp_path)
    model = ViT(epochs=12, batch_size=32, lr=2e-3, transforms=["hflip", "vflip"], **TINY_VIT)
    model.configure(["lot"], ["level"]).fit(train_data, ctx)
    mse, var = mse_vs_mean(model, ctx, test_data)
    assert mse < 0.25 * var, f"ViT test MSE {mse:.4f} is not well below the mean predictor's {var:.4f}"
    assert model.family == "regressor"
    # Grad-CAM puts most of its mass on the centre square that carries the target (a quarter of the area)
    cams, shown = model.grad_cam(test_data.isel(sample=slice(0, 16)), ctx)
    assert cams.shape == (16, SIZE, SIZE) and shown.shape == (16, 1, SIZE, SIZE)
    lo, hi = SIZE // 4, SIZE - SIZE // 4
    share = cams[:, lo:hi, lo:hi].sum(axis=(1, 2)) / cams.sum(axis=(1, 2)).clip(1e-9)
    assert share.mean() > 0.5, f"CAM share on the centre square {share.mean():.2f}"
    summary = model.summary()
    assert summary["params"] > 0 and 1 <= summary["best_epoch"] <= 12 and summary["patches"] == 16
    rows = (tmp_path / "epochs.csv").read_text().splitlines()
    assert rows[0].startswith("epoch,train_loss,val_loss") and len(rows) == 13

    model.save(tmp_path / "model")
    assert (tmp_path / "model" / "model.safetensors").exists()
    assert not list((tmp_path / "model").glob("*.pkl"))
    again = ViT.load(tmp_path / "model")
    np.testing.assert_array_equal(again.predict(test_data, ctx)["level_mean"].values,
                                  model.predict(test_data, ctx)["level_mean"].values)
    plots = again.plot(tmp_path)
    assert [p.name for p in plots] == ["learning_curve.png"] and plots[0].stat().st_size > 1000


def test_vit_uses_validation_data_and_same_seed_same_model(train_data, test_data, tmp_path):
    def fit(folder):
        model = ViT(epochs=3, batch_size=32, **TINY_VIT).configure([], ["level"])
        return model.fit(train_data.isel(sample=slice(0, 64)), test_context(folder),
                         validation=test_data.isel(sample=slice(0, 32)))

    a, b = fit(tmp_path / "a"), fit(tmp_path / "b")
    assert all(np.isfinite(row["val_loss"]) for row in a.history_)
    assert a.best_epoch_ == int(np.argmin([row["val_loss"] for row in a.history_])) + 1
    pa = a.predict(test_data, test_context(tmp_path)).level_mean.values
    pb = b.predict(test_data, test_context(tmp_path)).level_mean.values
    np.testing.assert_array_equal(pa, pb)


def test_mae_masking_keeps_exactly_a_quarter_of_the_patches():
    for patches in (16, 64):
        keep, mask, restore = random_masking(5, patches, 0.75, "cpu", torch.Generator().manual_seed(0))
        assert keep.shape == (5, patches // 4)
        assert mask.sum(dim=1).tolist() == [patches * 3 / 4] * 5
        for k, m in zip(keep, mask, strict=True):
            assert len(set(k.tolist())) == patches // 4
            assert m[k].sum() == 0  # the kept patches are the unmasked ones
        assert torch.equal(torch.sort(restore, dim=1).values, torch.arange(patches).expand(5, -1))


def test_mae_patches_line_up_with_the_encoder_tokens():
    """patchify's patch k is what PatchEmbed turns into token k (so the mask hides the patches it says)."""
    from reflow.plugins.vision.networks import MaskedAutoencoder, ViTEncoder

    patch, chans = 4, 2
    encoder = ViTEncoder((8, 12), patch, chans, embed_dim=patch * patch * chans, depth=1, heads=1)
    weight = torch.zeros_like(encoder.patch_embed.proj.weight)  # (D, C, p, p): token = the patch, flattened
    for i in range(patch):
        for j in range(patch):
            for c in range(chans):
                weight[(i * patch + j) * chans + c, c, i, j] = 1.0
    encoder.patch_embed.proj.weight.data.copy_(weight)
    encoder.patch_embed.proj.bias.data.zero_()
    mae = MaskedAutoencoder(encoder, decoder_width=8, decoder_depth=1, decoder_heads=2)
    images = torch.rand(3, chans, 8, 12)
    with torch.no_grad():
        torch.testing.assert_close(encoder.patch_embed(images), mae.patchify(images))
    torch.testing.assert_close(mae.unpatchify(mae.patchify(images)), images)
    assert mae.patchify(images).shape == (3, 6, patch * patch * chans)


def test_vit_mae_pretrains_fine_tunes_and_round_trips(train_data, test_data, tmp_path):
    ctx = test_context(tmp_path)
    model = ViTMAE(epochs=10, batch_size=32, lr=2e-3, pretrain_epochs=6, pretrain_lr=3e-3, decoder_width=32,
                   decoder_heads=2, decoder_depth=1, transforms=["hflip", "vflip"], **TINY_VIT)
    model.configure([], ["level"]).fit(train_data, ctx)
    losses = [row["train_loss"] for row in model.pretrain_history_]
    assert len(losses) == 6 and losses[-1] < 0.5 * losses[0], f"MAE loss does not fall: {losses}"
    assert (tmp_path / "pretrain" / "epochs.csv").exists()
    mse, var = mse_vs_mean(model, ctx, test_data)
    assert mse < 0.25 * var, f"vit-mae test MSE {mse:.4f} is not well below the mean predictor's {var:.4f}"
    rec = model.reconstruct(test_data.isel(sample=slice(0, 4)), ctx)
    assert rec["reconstruction"].shape == (4, 1, SIZE, SIZE)
    assert np.all(rec["mask"].reshape(4, -1).mean(axis=1) == 0.75)
    visible = rec["mask"][:, None] == 0
    np.testing.assert_allclose(rec["reconstruction"][visible], rec["original"][visible], atol=1e-6)

    model.save(tmp_path / "model")
    again = ViTMAE.load(tmp_path / "model")
    np.testing.assert_array_equal(again.predict(test_data, ctx)["level_mean"].values,
                                  model.predict(test_data, ctx)["level_mean"].values)
    np.testing.assert_array_equal(again.reconstruct(test_data.isel(sample=slice(0, 4)), ctx)["reconstruction"],
                                  rec["reconstruction"])
    assert again.summary()["pretrain_final_loss"] == pytest.approx(losses[-1])
    assert model.reconstructs and again.reconstructs  # the explain task draws its reconstructions


def test_sam_cnn_classifies_held_out_labels(train_data, test_data, tmp_path):
    ctx = test_context(tmp_path)
    model = CNN(epochs=8, batch_size=32, lr=3e-3, width=8, transforms=["hflip", "vflip"])
    model.configure([], ["label"]).fit(train_data, ctx)
    assert model.family == "classifier" and model.classes_ == ["ok", "void"]
    pred = model.predict(test_data, ctx)
    assert set(pred.data_vars) == {"label_pred", "label_prob", "label_prob_ok", "label_prob_void"}
    np.testing.assert_allclose(pred["label_prob_ok"] + pred["label_prob_void"], 1.0, rtol=1e-6)
    accuracy = float(np.mean(pred["label_pred"].values == test_data["label"].values))
    majority = max(np.mean(test_data["label"].values == c) for c in ("ok", "void"))
    assert accuracy > max(0.8, majority), f"accuracy {accuracy:.2f} vs majority {majority:.2f}"
    model.save(tmp_path / "model")
    again = CNN.load(tmp_path / "model")
    assert again.family == "classifier"
    np.testing.assert_array_equal(again.predict(test_data, ctx)["label_prob_void"].values,
                                  pred["label_prob_void"].values)


def with_corner_spot(data: xr.Dataset, seed: int) -> xr.Dataset:
    """A second target in other units: a 3x3 corner patch whose brightness is ``spot_um`` = 10 + 50 * s."""
    rng = np.random.default_rng(100 + seed)
    spot = rng.uniform(0.0, 1.0, data.sizes["sample"])
    images = data["image"].values.copy()
    images[:, 0, :3, :3] += (0.8 * spot[:, None, None]).astype(np.float32)
    return data.assign(image=(data["image"].dims, np.clip(images, 0, 1)), spot_um=("sample", 10.0 + 50.0 * spot))


def test_several_targets_learned_by_one_network(train_data, test_data, tmp_path):
    """Two continuous targets in different units: one output each, standardized with their own mean and std,
    both predicted well on held-out images; the round trip keeps both."""
    ctx = test_context(tmp_path)
    train, test = with_corner_spot(train_data, 1), with_corner_spot(test_data, 2)
    model = CNN(epochs=12, batch_size=32, lr=3e-3, width=8, transforms=["hflip", "vflip"])
    model.configure([], ["level", "spot_um"]).fit(train, ctx)
    assert model.family == "regressor" and model.n_out_ == 2
    means, stds = model.target_mean_, model.target_std_
    assert means == pytest.approx([float(train["level"].mean()), float(train["spot_um"].mean())])
    assert stds == pytest.approx([float(train["level"].std()), float(train["spot_um"].std())])
    pred = model.predict(test, ctx)
    assert set(pred.data_vars) == {"level_mean", "spot_um_mean"}
    for name in ("level", "spot_um"):
        truth = test[name].values
        mse = float(np.mean((pred[f"{name}_mean"].values - truth) ** 2))
        assert mse < 0.25 * np.var(truth), f"{name}: test MSE {mse:.4g} vs variance {np.var(truth):.4g}"
    model.save(tmp_path / "model")
    again = CNN.load(tmp_path / "model")
    assert again.targets == ["level", "spot_um"]
    for name in ("level_mean", "spot_um_mean"):
        np.testing.assert_array_equal(again.predict(test, ctx)[name].values, pred[name].values)
    # the ONNX export predicts both targets, each in its own units
    if importlib.util.find_spec("onnxruntime") is not None:
        from reflow.plugins.vision.onnx import export_onnx, onnx_predict, vision_export

        spec = vision_export(model)
        images = spec["inputs"](test)
        export_onnx(spec["module"], images, tmp_path / "two.onnx", input_names=("image",),
                    output_names=spec["output_names"], exporter="torchscript", metadata=spec["metadata"])
        out = onnx_predict(tmp_path / "two.onnx", images.numpy())["prediction"]
        np.testing.assert_allclose(out[:, 0], pred["level_mean"].values, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(out[:, 1], pred["spot_um_mean"].values, rtol=1e-4, atol=1e-4)
    # a sample missing one of the targets is left out of training
    gappy = train.copy(deep=True)
    gappy["spot_um"].values[:5] = np.nan
    partial = CNN(epochs=1, batch_size=32, width=8, transforms=[]).configure([], ["level", "spot_um"])
    assert partial.fit(gappy, ctx).target_mean_[1] == pytest.approx(float(np.mean(gappy["spot_um"].values[5:])))
    # one target still saves plain floats and predicts one variable
    single = CNN(epochs=1, batch_size=32, width=8, transforms=[]).configure([], ["spot_um"]).fit(train, ctx)
    assert isinstance(single.target_mean_, float) and set(single.predict(test, ctx).data_vars) == {"spot_um_mean"}


def test_several_targets_through_the_train_task(write_study, tmp_path):
    """The train task scores each target and thresholds one."""
    from reflow.runner import run_study
    from reflow.study import load_study

    data = with_corner_spot(make_images(96, seed=5), 5)
    data.to_netcdf(tmp_path / "images.nc")
    study = write_study("""
        study: two-targets
        seed: 3
        stages:
          images:
            task: data
            source: {netcdf: {path: images.nc}}
          inspect:
            task: train
            model: {cnn: {width: 8, epochs: 3, batch_size: 32, transforms: [hflip]}}
            data: images
            target: [level, spot_um]
            threshold: {level: 0.5}
            split: {by: lot, test: 0.25, val: 0.25}
    """)
    run = run_study(load_study(study), out=tmp_path / "runs", quiet=True)
    metrics = run.result("inspect").metrics
    assert {"level_r2", "spot_um_r2", "level_rmse", "spot_um_rmse", "level_f1"} <= set(metrics)
    pred = run.output("inspect.predictions")
    assert {"level_mean", "spot_um_mean", "level", "spot_um"} <= set(pred.data_vars)
    assert (run.dir / "inspect" / "spot_um_parity.png").exists()


def test_timm_backbone_and_local_weights(tmp_path):
    from reflow.plugins.vision.cnn import load_matching
    from safetensors.torch import save_file

    ctx = test_context(tmp_path)
    small = make_images(16, seed=3, size=32)
    model = CNN(arch="resnet18", epochs=1, batch_size=8, transforms=[]).configure([], ["level"]).fit(small, ctx)
    assert model.predict(small, ctx)["level_mean"].shape == (16,)
    assert model.summary()["params"] > 10_000_000
    assert model.module_.conv1.in_channels == 1  # in_chans from the data

    state = {k: v.clone() for k, v in model.module_.state_dict().items()}
    state["fc.weight"] = torch.zeros(5, 512)  # a head of another shape is skipped
    save_file(state, str(tmp_path / "start.safetensors"))
    warm = CNN(arch="resnet18", epochs=1, lr=1e-9, batch_size=8, transforms=[], weights="start.safetensors")
    fresh = warm.build_module(1, (32, 32), 1)
    assert load_matching(fresh, tmp_path / "start.safetensors") == ["fc.weight"]
    assert torch.equal(fresh.conv1.weight, model.module_.conv1.weight)
    warm.configure([], ["level"]).fit(small, ctx)  # the weights path resolves against the study folder
    assert torch.allclose(warm.module_.conv1.weight, model.module_.conv1.weight, atol=1e-6)
    with pytest.raises(reflow.DataError, match="no file"):
        CNN(arch="resnet18", epochs=1, transforms=[], weights="missing.pt").configure([], ["level"]).fit(small, ctx)


def test_bad_params_give_clear_errors(train_data, tmp_path):
    with pytest.raises(ValidationError, match="unknown architecture 'resnet1'.*resnet18"):
        CNN.Params(arch="resnet1")
    with pytest.raises(ValidationError, match="state dict"):
        CNN.Params(weights="model.pkl")
    with pytest.raises(ValidationError, match="multiple of 4"):
        ViT.Params(width=30, heads=3)
    with pytest.raises(ValidationError, match="decoder_width 30"):
        ViTMAE.Params(decoder_width=30)
    with pytest.raises(ValidationError, match="mask_ratio"):
        ViTMAE.Params(mask_ratio=1.0)
    model = ViT(epochs=1, transforms=[], **{**TINY_VIT, "patch": 5}).configure([], ["level"])
    with pytest.raises(UserInputError, match=r"patch size 5 does not divide the 16x16 images.*\(2, 4, 8, 16\)"):
        model.fit(train_data, test_context(tmp_path))
    with pytest.raises(reflow.DataError, match="several targets are learned together as regression.*'label'"):
        ViT(**TINY_VIT).configure([], ["level", "label"]).fit(train_data, test_context(tmp_path))
    with pytest.raises(UserInputError, match="classification learns exactly one target"):
        ViT(task="classification", **TINY_VIT).configure([], ["level", "lot"]).fit(train_data, test_context(tmp_path))
    with pytest.raises(reflow.DataError, match="no target 'spot'"):
        ViT(**TINY_VIT).configure([], ["level", "spot"]).fit(train_data, test_context(tmp_path))


def test_default_transforms_crop_to_a_multiple_of_the_patch(train_data, tmp_path):
    data = make_images(8, seed=4, size=32)
    model = ViT(epochs=1, batch_size=8, **{**TINY_VIT, "patch": 8}).configure([], ["level"])
    model.fit(data, test_context(tmp_path))
    assert model.transforms_ == ["hflip", "vflip", {"crop": 24}]  # 7/8 of 32 = 28, down to a multiple of 8
    assert model.img_size_ == [24, 24]


def test_capabilities_are_declared_before_fit(train_data, tmp_path):
    """What tasks ask of a vision model answers before fit, without fitted attributes: family from the params,
    no reconstructions, an empty summary, and a clear error where the fitted network is needed."""
    from reflow.plugins.vision import PCALogistic

    assert ViT().family == "regressor" and ViT(task="classification").family == "classifier"
    assert PCALogistic(task="classification").family == "classifier"
    assert not CNN().reconstructs and not ViTMAE().reconstructs
    assert ViT().summary() == {} and PCALogistic().summary() == {} and ViT().onnx_spec() == {}
    with pytest.raises(NotImplementedError, match="does not reconstruct"):
        CNN().reconstruct(train_data, test_context(tmp_path))
    with pytest.raises(reflow.ReflowError, match="call fit"):
        ViT(**TINY_VIT).configure([], ["level"]).predict(train_data, test_context(tmp_path))
    no_pretraining = ViTMAE(epochs=1, batch_size=32, pretrain_epochs=0, decoder_width=32, decoder_heads=2,
                            decoder_depth=1, transforms=[], **TINY_VIT).configure([], ["level"])
    assert not no_pretraining.fit(train_data.isel(sample=slice(0, 32)), test_context(tmp_path)).reconstructs


def test_check_component_passes(train_data, tmp_path):
    check_component(ViT, {"epochs": 1, "batch_size": 32, "transforms": [], **TINY_VIT}, tmp_path=tmp_path,
                    data=train_data.isel(sample=slice(0, 32)), features=["image"], targets=["level"])


# --- the explain task in a study ---------------------------------------------------------------------------------

STUDY = """
    study: vision
    seed: 3
    stages:
      images:
        task: data
        source: {netcdf: {path: images.nc}}
      inspect:
        task: train
        model: {vit-mae: {size: tiny, width: 32, heads: 2, depth: 1, patch: 4, head_hidden: 32, epochs: 4,
                          pretrain_epochs: 2, decoder_width: 32, decoder_heads: 2, decoder_depth: 1,
                          transforms: [hflip, vflip]}}
        data: images
        target: level
        split: {by: lot, test: 0.25, val: 0.25}
      why:
        task: explain
        model: {stage: inspect}
        data: images
        samples: 6
"""


def test_explain_writes_cam_grid_and_reconstructions(write_study, tmp_path):
    from reflow.runner import run_study
    from reflow.study import load_study

    make_images(96, seed=5).to_netcdf(tmp_path / "images.nc")
    run = run_study(load_study(write_study(STUDY)), out=tmp_path / "runs", quiet=True)
    stage = run.dir / "why"
    cams = run.output("why")
    assert cams["cam"].dims == ("sample", "y", "x") and cams["cam"].shape == (6, SIZE, SIZE)
    assert float(cams["cam"].min()) >= 0 and float(cams["cam"].max()) <= 1 + 1e-6
    assert {"image", "truth", "prediction", "mae_masked", "mae_reconstruction"} <= set(cams.data_vars)
    truth = cams["truth"].values
    assert np.all(np.diff(truth) >= 0)  # shown from the lowest to the highest target
    for name in ("cams.png", "mae_reconstructions.png"):
        assert (stage / name).stat().st_size > 5000
    assert (run.dir / "inspect" / "learning_curve.png").exists()
    assert (run.dir / "inspect" / "pretrain" / "epochs.csv").exists()
    metrics = json.loads((stage / "metrics.json").read_text())
    assert metrics["samples"] == 6 and np.isfinite(metrics["mae_masked_mse"])
    train_metrics = json.loads((run.dir / "inspect" / "metrics.json").read_text())
    assert "level_r2" in train_metrics and train_metrics["params"] > 0


def test_explain_needs_a_trained_model(write_study, tmp_path):
    from reflow.errors import StudyError
    from reflow.study import load_study

    make_images(8, seed=5).to_netcdf(tmp_path / "images.nc")
    text = STUDY.replace("model: {stage: inspect}", "model: vit")
    with pytest.raises(StudyError, match="explain a trained model"):
        load_study(write_study(text))

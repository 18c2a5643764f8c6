"""Classifiers (ffn-multiscale, cti, timm-features, pca-logistic) and the ONNX export, on tiny synthetic images.

The images are 32x32 grayscale noise with one bright shape per image, a disc, a cross or a ring, of random size and
position: the three classes differ in shape, not in brightness. Held-out images come from another seed.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import reflow
import torch
import torch.nn.functional as F
import xarray as xr
from pydantic import ValidationError
from reflow.plugins.vision import CNN, CTI, FFNMultiscale, PCALogistic, TimmFeatures
from reflow.plugins.vision.cti_net import (
    CTINet,
    LocalWindowAttention,
    MaskedGlobalAttention,
    from_heads,
    local_window_mask,
    to_heads,
)
from reflow.plugins.vision.onnx import ExportError, export_onnx, onnx_predict, vision_export
from reflow.testing import test_context

SIZE = 32
CLASSES = ["disc", "cross", "ring"]
TINY_CTI = {"size": "small", "widths": [16, 32], "head_width": 32, "head_dim": 16}
TINY_FFN = {"width": 8, "depth": 2, "head_hidden": 32}


def make_shapes(n: int, seed: int, size: int = SIZE, channels: int = 1) -> xr.Dataset:
    rng = np.random.default_rng(seed)
    labels = np.array(CLASSES)[np.arange(n) % 3]
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    images = rng.uniform(0.0, 0.25, (n, 1, size, size)).astype(np.float32)
    for i, label in enumerate(labels):
        cy, cx = rng.uniform(0.35 * size, 0.65 * size, 2)
        r = rng.uniform(0.18 * size, 0.3 * size)
        d = np.hypot(yy - cy, xx - cx)
        if label == "disc":
            mask = d < r
        elif label == "ring":
            mask = np.abs(d - r) < 0.05 * size
        else:
            w = 0.06 * size
            mask = ((np.abs(yy - cy) < w) & (np.abs(xx - cx) < r)) | ((np.abs(xx - cx) < w) & (np.abs(yy - cy) < r))
        images[i, 0][mask] += rng.uniform(0.5, 0.7)
    images = np.repeat(np.clip(images, 0, 1), channels, axis=1)
    data = xr.Dataset({"image": (("sample", "channel", "y", "x"), images), "label": ("sample", labels),
                       "wafer": ("sample", np.arange(n) // 6)}, coords={"sample": np.arange(n) + 1000 * seed})
    data["label"].attrs["classes"] = CLASSES
    return data


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """One intra-op thread: on a small shared CPU, two threads that wait on each other are many times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def train_data():
    return make_shapes(72, seed=1)


@pytest.fixture(scope="module")
def test_data():
    return make_shapes(36, seed=2)


def accuracy(model, data, ctx) -> float:
    pred = model.predict(data, ctx)
    return float(np.mean(pred["label_pred"].values == data["label"].values))


def assert_round_trip(model, folder, test_data, ctx):
    model.save(folder)
    assert not [p for p in folder.iterdir() if p.suffix in (".pkl", ".pickle")]
    again = type(model).load(folder)
    assert again.family == "classifier" and again.classes_ == model.classes_
    for name in ("label_prob_disc", "label_prob_cross", "label_prob_ring"):
        np.testing.assert_array_equal(again.predict(test_data, ctx)[name].values,
                                      model.predict(test_data, ctx)[name].values)
    return again


@pytest.fixture(scope="module")
def ffn(train_data, tmp_path_factory):
    ctx = test_context(tmp_path_factory.mktemp("ffn"))
    return FFNMultiscale(epochs=8, batch_size=16, lr=3e-3, transforms=["hflip", "vflip"], **TINY_FFN).configure(
        [], ["label"]).fit(train_data, ctx)


@pytest.fixture(scope="module")
def cti(train_data, tmp_path_factory):
    ctx = test_context(tmp_path_factory.mktemp("cti"))
    return CTI(epochs=8, batch_size=16, lr=3e-3, transforms=["hflip", "vflip"], **TINY_CTI).configure(
        [], ["label"]).fit(train_data, ctx)


# --- ffn-multiscale ----------------------------------------------------------------------------------------------


def test_ffn_multiscale_classifies_held_out_shapes_and_round_trips(ffn, test_data, tmp_path):
    ctx = test_context(tmp_path)
    assert ffn.family == "classifier" and ffn.classes_ == sorted(CLASSES)
    acc = accuracy(ffn, test_data, ctx)
    assert acc > 0.8, f"ffn-multiscale held-out accuracy {acc:.2f} (chance 0.33)"
    net = ffn.module_
    assert len(net.branches) == 3
    # the branches see the image at full, 1/2 and 1/4 resolution with 3x3, 5x5 and 7x7 kernels
    assert [b.features[0].kernel_size for b in net.branches] == [(3, 3), (5, 5), (7, 7)]
    x = torch.rand(2, 1, SIZE, SIZE)
    sides = [b.features(b.pool(x)).shape[-1] for b in net.branches]
    assert sides == [SIZE // 4, SIZE // 8, SIZE // 16]  # depth 2 halves twice after the input pooling
    assert net.branch_features(x).shape == (2, net.num_features) and net.num_features == 2 * 3 * 16
    assert_round_trip(ffn, tmp_path / "model", test_data, ctx)


def test_ffn_params_are_checked(train_data, tmp_path):
    with pytest.raises(ValidationError, match="one value per branch"):
        FFNMultiscale.Params(kernels=[3, 5], dilations=[1, 1, 1], input_scales=[1, 2, 4])
    with pytest.raises(ValidationError, match="odd"):
        FFNMultiscale.Params(kernels=[3, 4, 7])
    model = FFNMultiscale(epochs=1, transforms=[], width=4, depth=4, input_scales=[1, 2, 4])
    with pytest.raises(reflow.UserInputError, match="too small for depth 4"):
        model.configure([], ["label"]).fit(train_data.isel(sample=slice(0, 8)), test_context(tmp_path))


# --- cti ---------------------------------------------------------------------------------------------------------


def test_cti_classifies_held_out_shapes_and_round_trips(cti, test_data, tmp_path):
    ctx = test_context(tmp_path)
    acc = accuracy(cti, test_data, ctx)
    # 0.78 here (0.72-0.94 over seeds); chance reaches 0.6 of 36 images with probability ~1e-4
    assert acc > 0.6, f"cti held-out accuracy {acc:.2f} (chance 0.33)"
    assert cti.module_.grids == [(16, 16), (8, 8)]  # stem stride 2, then one 2x2 stride-2 downsampling
    summary = cti.summary()
    assert summary["stage_grids"] == ["16x16", "8x8"] and summary["params"] > 0
    cams, _ = cti.grad_cam(test_data.isel(sample=slice(0, 4)), ctx)  # on the last stage's 8x8 map, upsampled
    assert cams.shape == (4, SIZE, SIZE) and float(cams.min()) >= 0 and float(cams.max()) <= 1 + 1e-6
    assert_round_trip(cti, tmp_path / "model", test_data, ctx)


def test_cti_fusion_weights_are_learned_and_sum_to_one(cti):
    blocks = cti.module_.blocks()
    assert len(blocks) == 2
    for block in blocks:
        w = block.fusion_weights().detach()
        assert w.shape == (2,) and float(w.sum()) == pytest.approx(1.0, abs=1e-6) and bool((w > 0).all())
        assert not torch.allclose(w, torch.tensor([0.5, 0.5])), "the fusion logits did not train"
        # the block output is x + w_att X_att + w_cnn X_cnn + MLP(...): check the weighted sum by hand
        x = torch.randn(2, block.q.in_channels, 16 // (2 ** blocks.index(block)), 16 // (2 ** blocks.index(block)))
        with torch.no_grad():
            att, cnn = block.branches(x)
            mid = x + w[0] * att + w[1] * cnn
            torch.testing.assert_close(block(x), mid + block.mlp(block.norm2(mid)))


def test_local_window_attention_is_full_attention_under_the_window_mask():
    torch.manual_seed(0)
    for h, w, window, heads in [(9, 9, 7, 2), (4, 6, 3, 1), (7, 7, 7, 2), (5, 3, 7, 1)]:
        attention = LocalWindowAttention((h, w), heads, window)
        q, k, v = (torch.randn(2, 4 * heads, h, w) for _ in range(3))
        mask = local_window_mask(h, w, window)
        assert mask.shape == (h * w, h * w) and mask.dtype == torch.bool
        full = F.scaled_dot_product_attention(to_heads(q, heads), to_heads(k, heads), to_heads(v, heads),
                                              attn_mask=mask)
        torch.testing.assert_close(attention(q, k, v), from_heads(full, h, w), atol=1e-5, rtol=1e-5)
    # on a 4x4 grid with 2x2 windows token (0, 0) sees (0, 1), (1, 0), (1, 1) and nothing else
    mask = local_window_mask(4, 4, 2)
    assert mask[0].reshape(4, 4).nonzero().tolist() == [[0, 0], [0, 1], [1, 0], [1, 1]]
    assert mask.sum(dim=1).tolist() == [4] * 16
    # a 9x9 grid in 7x7 windows: the bottom-right token shares its (padded) window with the 2x2 corner only
    mask = local_window_mask(9, 9, 7)
    assert int(mask[80].sum()) == 4 and int(mask[0].sum()) == 49


def test_masked_global_attention_mask_shapes_and_weights():
    torch.manual_seed(0)
    exact = MaskedGlobalAttention((6, 6), heads=2, global_grid=14, mask_floor=0.5)
    assert exact.reduce == 1 and exact.distance.shape == (36, 36)
    mask = exact.mask().detach()
    assert mask.shape == (2, 36, 36)
    assert torch.allclose(torch.diagonal(mask, dim1=1, dim2=2), torch.tensor(0.5))  # distance 0: the floor H
    assert float(mask.min()) >= 0.5 and float(mask.max()) <= 1.0
    row = exact.distance[0]
    order = torch.argsort(row)
    assert bool((torch.diff(mask[0, 0][order]) >= -1e-7).all())  # rising with the distance
    # eq. 5: weights = M(d) exp(q k / sqrt(d)) / sum(...), then applied to V
    q, k, v = (torch.randn(1, 8, 6, 6) for _ in range(3))
    qh, kh, vh = to_heads(q, 2), to_heads(k, 2), to_heads(v, 2)
    scores = torch.exp(qh @ kh.transpose(-1, -2) / math.sqrt(4)) * mask
    expected = from_heads((scores / scores.sum(dim=-1, keepdim=True)) @ vh, 6, 6)
    torch.testing.assert_close(exact(q, k, v), expected, atol=1e-5, rtol=1e-5)
    # on a 20x20 map keys and values are pooled to 10x10 cells (global_grid 10): 400 queries x 100 keys
    pooled = MaskedGlobalAttention((20, 20), heads=1, global_grid=10, mask_floor=0.5)
    assert pooled.reduce == 2 and pooled.keys == 100 and pooled.mask().shape == (1, 400, 100)
    assert pooled(*(torch.randn(3, 8, 20, 20) for _ in range(3))).shape == (3, 8, 20, 20)
    # the span is learned: the mask gets a gradient
    exact(q, k, v).sum().backward()
    assert exact.span_param.grad is not None and bool(exact.span_param.grad.abs().sum() > 0)


def test_cti_paper_size_matches_the_paper():
    with torch.device("meta"):
        net = CTINet(3, 3, (224, 224), [2, 2, 6, 14, 2], [64, 96, 192, 384, 768], head_width=1280)
    params = sum(p.numel() for p in net.parameters())
    assert 40e6 < params < 60e6, f"{params / 1e6:.1f} M parameters (the paper: 44 M)"
    assert net.grids == [(112, 112), (56, 56), (28, 28), (14, 14), (7, 7)]  # rates 1, 2, 4, 8, 16
    assert len(net.blocks()) == 26
    p = CTI.Params()
    assert p.layout() == ([2, 2, 6, 14, 2], [64, 96, 192, 384, 768], 1280)
    with pytest.raises(ValidationError, match="one value per stage"):
        CTI.Params(depths=[1, 1, 1], widths=[32, 64])
    with pytest.raises(ValidationError, match="multiples of head_dim"):
        CTI.Params(widths=[32, 48], depths=[1, 1])


# --- timm-features -----------------------------------------------------------------------------------------------

TINY_TIMM = {"backbone": "convnext_atto", "patches": 4, "patch_size": 24, "input_size": 32, "equalize": False,
             "hidden": [64, 32, 16], "epochs": 30}


def test_timm_features_frozen_backbone_cached_features_and_held_out_accuracy(train_data, test_data, tmp_path,
                                                                             monkeypatch):
    from safetensors.torch import save_file

    ctx = test_context(tmp_path)
    torch.manual_seed(5)
    start = TimmFeatures(**TINY_TIMM).create_backbone()
    save_file({k: v.contiguous() for k, v in start.state_dict().items()}, str(tmp_path / "backbone.safetensors"))
    passes = []
    create = TimmFeatures.create_backbone

    def counted(self, pretrained=False):
        backbone = create(self, pretrained)
        backbone.register_forward_hook(lambda module, args, out: passes.append(int(args[0].shape[0])))
        return backbone

    monkeypatch.setattr(TimmFeatures, "create_backbone", counted)
    model = TimmFeatures(weights="backbone.safetensors", **TINY_TIMM).configure([], ["label"])
    model.fit(train_data, ctx, validation=test_data.isel(sample=slice(0, 12)))
    # features once: 72 images x 4 random patches, 12 validation images x a 2x2 grid, 1 dry run; 30 head epochs
    assert sum(passes) == 72 * 4 + 12 * 4 + 1 and model.feature_passes_ == 72 * 4 + 12 * 4
    assert len(model.history_) > 1
    for name, tensor in start.state_dict().items():  # frozen: exactly the weights it started from
        assert torch.equal(model.module_.backbone.state_dict()[name], tensor), name
    assert all(not p.requires_grad for p in model.module_.backbone.parameters())
    summary = model.summary()
    assert summary["backbone_weights"] == "file backbone.safetensors" and summary["backbone_pretrained"]
    assert summary["trainable_params"] < summary["params"] / 10
    acc = accuracy(model, test_data, ctx)
    assert acc > 0.6, f"timm-features held-out accuracy {acc:.2f} (chance 0.33)"
    head = model.module_.head
    assert sum(isinstance(m, torch.nn.Linear) for m in head) == 4  # 3 hidden layers + output
    assert sum(isinstance(m, torch.nn.BatchNorm1d) for m in head) == 3
    assert sum(isinstance(m, torch.nn.Dropout) for m in head) == 3
    again = assert_round_trip(model, tmp_path / "model", test_data, ctx)
    assert again.summary()["backbone_weights"] == "file backbone.safetensors"
    # Grad-CAM needs gradients through the backbone, and leaves it frozen and unchanged
    cams, shown = model.grad_cam(test_data.isel(sample=slice(0, 3)), ctx)
    assert cams.shape == (3, SIZE, SIZE) and shown.shape == (3, 1, SIZE, SIZE)
    assert all(not p.requires_grad for p in model.module_.backbone.parameters())
    assert all(torch.equal(model.module_.backbone.state_dict()[k], v) for k, v in start.state_dict().items())
    # the ONNX file maps one evaluation patch (24x24, resized to 32 inside the graph) to the head's outputs
    spec = vision_export(model)
    patches = spec["inputs"](test_data.isel(sample=slice(0, 2)))
    assert spec["input_shape"] == (1, 24, 24) and patches.shape == (2 * 4, 1, 24, 24)
    metrics = export_onnx(spec["module"], patches, tmp_path / "timm.onnx", input_names=("image",),
                          output_names=spec["output_names"], exporter="torchscript")
    assert metrics["onnx_max_abs_diff"] < 1e-4


def test_timm_features_random_backbone_is_reported_and_errors_are_clear(train_data, tmp_path, caplog):
    ctx = test_context(tmp_path)
    small = train_data.isel(sample=slice(0, 12))
    model = TimmFeatures(**{**TINY_TIMM, "epochs": 1}).configure([], ["label"]).fit(small, ctx)
    summary = model.summary()
    assert not summary["backbone_pretrained"] and "RANDOM" in summary["backbone_weights"]
    assert "not transfer learning" in summary["backbone_weights"]
    assert "RANDOM weights" in caplog.text
    with pytest.raises(ValidationError, match="unknown timm backbone 'convnext_tiniy'.*convnext_tiny"):
        TimmFeatures.Params(backbone="convnext_tiniy")
    with pytest.raises(ValidationError, match="either pretrained"):
        TimmFeatures.Params(pretrained=True, weights="w.safetensors")
    with pytest.raises(ValidationError, match="needs a patch_size"):
        TimmFeatures.Params(patches=4)
    with pytest.raises(reflow.UserInputError, match="cannot take .* set input_size"):
        TimmFeatures(**{**TINY_TIMM, "input_size": None}).configure([], ["label"]).fit(small, ctx)
    with pytest.raises(reflow.DataError, match="does not fit the backbone"):
        from safetensors.torch import save_file

        save_file({"stem.0.weight": torch.zeros(3)}, str(tmp_path / "wrong.safetensors"))
        TimmFeatures(**{**TINY_TIMM, "weights": "wrong.safetensors"}).configure([], ["label"]).fit(small, ctx)


def test_timm_features_preprocessing():
    model = TimmFeatures(backbone="convnext_atto", border=0.25, patches=5, patch_size=8)
    image = 0.3 + 0.4 * torch.linspace(0, 1, 64 * 64).reshape(1, 1, 64, 64) ** 2  # a dim, skewed ramp
    # border crop (16 of 64 px each side), then histogram equalization: the values spread evenly over [0, 1]
    prepared = model.prepare(image)
    assert prepared.shape == (1, 1, 32, 32)
    assert float(prepared.min()) == 0.0 and float(prepared.max()) == 1.0
    assert bool((torch.diff(prepared.flatten()) >= 0).all())  # a monotone mapping keeps the order
    before = np.histogram(image[..., 16:48, 16:48].numpy(), bins=4, range=(0, 1))[0]
    after = np.histogram(prepared.numpy(), bins=4, range=(0, 1))[0]
    assert before[0] == before[3] == 0 and after.min() > 0.15 * 1024, f"not spread: {before} -> {after}"
    # patches belong to their own image: images of constant value i give patches of value i only
    images = torch.arange(3, dtype=torch.float32).view(3, 1, 1, 1).expand(3, 1, 12, 12).contiguous()
    patches = model.cut_patches(images, torch.Generator().manual_seed(0))
    assert patches.shape == (15, 1, 8, 8)
    assert [float(p.mean()) for p in patches] == [i for i in (0.0, 1.0, 2.0) for _ in range(5)]
    grid = model.cut_patches(images, None)  # evaluation: a 3x3 grid (ceil(sqrt(5)) = 3) per image
    assert grid.shape == (27, 1, 8, 8) and model.patches_per_image(False) == 9
    assert [float(p.mean()) for p in grid] == [i for i in (0.0, 1.0, 2.0) for _ in range(9)]
    ramp = torch.arange(12, dtype=torch.float32).view(1, 1, 1, 12).expand(1, 1, 12, 12)
    corners = model.cut_patches(ramp, None)[[0, 2], 0, 0]  # the grid spans the image: left and right edges
    assert corners[0].tolist() == list(range(8)) and corners[1].tolist() == list(range(4, 12))
    one = TimmFeatures(backbone="convnext_atto", patches=1, patch_size=8).cut_patches(ramp, None)
    assert one.shape == (1, 1, 8, 8) and one[0, 0, 0].tolist() == list(range(2, 10))  # one patch: the centre
    # grayscale -> 3 channels and ImageNet normalization inside the network
    from reflow.plugins.vision.features_net import InputAdapter

    adapter = InputAdapter((0.485, 0.456, 0.406), (0.229, 0.224, 0.225), grayscale=True, input_size=None)
    gray = torch.full((1, 1, 2, 2), 0.5)
    out = adapter(gray)
    assert out.shape == (1, 3, 2, 2)
    torch.testing.assert_close(out[0, :, 0, 0], (0.5 - torch.tensor([0.485, 0.456, 0.406])) /
                               torch.tensor([0.229, 0.224, 0.225]))
    rgb = torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1)
    torch.testing.assert_close(adapter(rgb)[0, :, 0, 0], (0.299 - torch.tensor([0.485, 0.456, 0.406])) /
                               torch.tensor([0.229, 0.224, 0.225]))


# --- pca-logistic ------------------------------------------------------------------------------------------------


def test_pca_logistic_baseline_matches_scikit_learn_and_round_trips(train_data, test_data, tmp_path):
    ctx = test_context(tmp_path)
    model = PCALogistic(components=12, size=16).configure([], ["label"]).fit(train_data, ctx)
    assert model.family == "classifier"
    acc = accuracy(model, test_data, ctx)
    assert acc > 0.6, f"pca-logistic held-out accuracy {acc:.2f} (chance 0.33)"
    x = model.pixels(test_data)
    assert x.shape == (36, 16 * 16)
    np.testing.assert_allclose(model.transform(test_data), model.pca_.transform(x), atol=1e-9)
    np.testing.assert_allclose(model.predict_proba(test_data), model.linear_.predict_proba(model.pca_.transform(x)),
                               atol=1e-9)
    model.save(tmp_path / "model")
    with np.load(tmp_path / "model" / "pca.npz", allow_pickle=False) as arrays:  # plain arrays, no pickles
        assert arrays["components"].shape == (12, 256) and arrays["coef"].shape == (3, 12)
    again = assert_round_trip(model, tmp_path / "model", test_data, ctx)
    assert again.summary() == model.summary()
    # binary, whitened: the one-logit case
    two = train_data.isel(sample=np.flatnonzero(train_data["label"].values != "ring"))
    binary = PCALogistic(components=6, size=8, whiten=True).configure([], ["label"]).fit(two, ctx)
    xb = binary.pixels(test_data)
    np.testing.assert_allclose(binary.predict_proba(test_data),
                               binary.linear_.predict_proba(binary.pca_.transform(xb)), atol=1e-9)


# --- ONNX --------------------------------------------------------------------------------------------------------


def test_onnx_parity_for_ffn_and_cti(ffn, cti, test_data, tmp_path):
    for model, exporter in ((ffn, "torchscript"), (cti, "torchscript")):
        spec = vision_export(model)
        assert spec["input_shape"] == (1, SIZE, SIZE)
        path = tmp_path / f"{type(model).__name__}.onnx"
        images = spec["inputs"](test_data.isel(sample=slice(0, 5)))
        metrics = export_onnx(spec["module"], images, path, input_names=("image",),
                              output_names=spec["output_names"], exporter=exporter, metadata=spec["metadata"])
        assert metrics["onnx_max_abs_diff"] < 1e-4 and metrics["onnx_check_samples"] == 5 + 8
        # the file predicts what the model predicts, from pixels in [0, 1]
        out = onnx_predict(path, images.numpy())
        probs = model.predict(test_data.isel(sample=slice(0, 5)), test_context(tmp_path))
        np.testing.assert_allclose(out["probabilities"][:, model.classes_.index("disc")],
                                   probs["label_prob_disc"].values, atol=1e-5)
        import onnx

        meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
        assert json.loads(meta["classes"]) == model.classes_ and meta["task"] == "classification"


def test_onnx_dynamo_exporter_and_parity_failure(tmp_path):
    torch.manual_seed(0)
    cnn = CNN(width=4, epochs=1, transforms=[]).build_module(1, (16, 16), 3).eval()
    metrics = export_onnx(cnn, torch.rand(2, 1, 16, 16), tmp_path / "cnn.onnx", input_names=("image",),
                          output_names=("logits",), exporter="dynamo")
    assert metrics["onnx_max_abs_diff"] < 1e-4 and metrics["onnx_exporter"] == "dynamo"
    out = onnx_predict(tmp_path / "cnn.onnx", np.random.default_rng(0).random((7, 1, 16, 16), dtype=np.float32))
    assert out["logits"].shape == (7, 3)  # the batch dim is dynamic

    class Drifting(torch.nn.Module):
        """Its output changes with every call, so the traced graph cannot match it."""

        def __init__(self):
            super().__init__()
            self.calls = 0

        def forward(self, x):
            self.calls += 1
            return x * float(self.calls)

    with pytest.raises(ExportError, match="parity check failed for Drifting: output 'y' differs"):
        export_onnx(Drifting(), torch.rand(2, 3), tmp_path / "drift.onnx", output_names=("y",),
                    exporter="torchscript")


def test_export_needs_the_extra_and_a_torch_model(monkeypatch, tmp_path, train_data):
    import sys

    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(reflow.UserInputError, match=r"onnxruntime of the optional 'export' extra.*reflow\[export\]"):
        export_onnx(torch.nn.Linear(2, 2), torch.rand(2, 2), tmp_path / "x.onnx")
    monkeypatch.delitem(sys.modules, "onnxruntime")
    pca = PCALogistic(components=2, size=8).configure([], ["label"]).fit(train_data, test_context(tmp_path))
    with pytest.raises(reflow.UserInputError, match="not a torch vision model"):
        vision_export(pca)


STUDY = """
    study: ic-materials
    seed: 3
    stages:
      images:
        task: data
        source: {netcdf: {path: shapes.nc}}
      classify:
        task: train
        model: {cti: {size: small, widths: [16, 32], head_width: 32, head_dim: 16, epochs: 3, batch_size: 16,
                      lr: 0.003, transforms: [hflip, {normalize: {mean: 0.3, std: 0.2}}]}}
        data: images
        target: label
        split: {by: wafer, test: 0.25}
      onnx:
        task: export
        model: {stage: classify}
        data: images
        samples: 4
        exporter: torchscript
"""


def test_export_task_in_a_study(write_study, tmp_path):
    from reflow.runner import run_study
    from reflow.study import load_study

    make_shapes(48, seed=4).to_netcdf(tmp_path / "shapes.nc")
    run = run_study(load_study(write_study(STUDY)), out=tmp_path / "runs", quiet=True)
    train = json.loads((run.dir / "classify" / "metrics.json").read_text())
    assert sorted(train["label_classes"]) == sorted(CLASSES) and "label_f1_disc" in train  # per-class metrics
    assert (run.dir / "classify" / "label_confusion.png").exists()
    metrics = json.loads((run.dir / "onnx" / "metrics.json").read_text())
    assert metrics["onnx_max_abs_diff"] < 1e-4 and metrics["onnx_file"] == "model.onnx"
    assert metrics["onnx_input_shape"] == [1, 32, 32] and metrics["onnx_outputs"] == ["logits", "probabilities"]
    parity = run.output("onnx")
    assert parity["max_abs_diff"].shape == (4,) and float(parity["max_abs_diff"].max()) < 1e-4
    # the normalize transform is inside the graph: the file takes pixels in [0, 1]
    model = CTI.load(run.dir / "classify" / "model")
    images = make_shapes(6, seed=9)
    out = onnx_predict(run.dir / "onnx" / "model.onnx", images["image"].values)
    np.testing.assert_allclose(out["probabilities"][:, model.classes_.index("ring")],
                               model.predict(images, test_context(tmp_path))["label_prob_ring"].values, atol=1e-5)


def test_export_stage_needs_a_trained_model(write_study, tmp_path):
    from reflow.errors import StudyError
    from reflow.study import load_study

    make_shapes(6, seed=4).to_netcdf(tmp_path / "shapes.nc")
    with pytest.raises(StudyError, match="export a trained model"):
        load_study(write_study(STUDY.replace("model: {stage: classify}", "model: cti")))


def test_export_stage_without_the_extra_fails_validation(write_study, tmp_path, monkeypatch):
    import importlib.util

    from reflow.errors import StudyError
    from reflow.study import load_study

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name))
    with pytest.raises(StudyError, match=r"stages.onnx.exporter: ONNX export needs the packages onnxruntime of the "
                                         r"optional 'export' extra: pip install 'reflow\[export\]'"):
        load_study(write_study(STUDY))


SEM_STUDY = """
    study: sem-sintering
    seed: 1
    stages:
      sem:
        task: data
        source: {synthetic-sem-sinter: {burst_counts: [50, 250], images_per_class: 8, images_per_sample: 2,
                                        size: 64}}
      transfer:
        task: train
        model: {timm-features: {backbone: convnext_atto, border: 0.05, equalize: true, patches: 4, patch_size: 32,
                                input_size: 32, grayscale: true, hidden: [16, 16, 16], epochs: 5}}
        data: sem
        target: label
        split: {by: sample_id, test: 0.25}
      baseline:
        task: train
        model: {pca-logistic: {components: 4, size: 16}}
        data: sem
        target: label
        split: {by: sample_id, test: 0.25}
      onnx:
        task: export
        model: {stage: transfer}
        data: sem
        samples: 3
        exporter: torchscript
"""


def test_seed_004_pipeline_in_a_study(write_study, tmp_path):
    """SEM images -> border crop, equalization, patches, frozen backbone + MLP head; the PCA baseline; export."""
    from reflow.runner import run_study
    from reflow.study import load_study

    run = run_study(load_study(write_study(SEM_STUDY)), out=tmp_path / "runs", quiet=True)
    transfer = json.loads((run.dir / "transfer" / "metrics.json").read_text())
    assert transfer["test_samples"] == 4 and transfer["patches_per_image"] == 4
    assert transfer["backbone_patch_passes"] == 12 * 4  # the 12 training images' patches, once
    assert not transfer["backbone_pretrained"] and "RANDOM" in transfer["backbone_weights"]
    assert {"label_accuracy", "label_f1_b50", "label_f1_b250"} <= set(transfer)
    baseline = json.loads((run.dir / "baseline" / "metrics.json").read_text())
    assert baseline["components"] == 4 and "label_accuracy" in baseline
    pred = run.output("transfer")
    train_ids = set(run.output("sem")["sample_id"].values) - set(pred["sample_id"].values)
    assert len(train_ids) == 6 and not train_ids & set(pred["sample_id"].values)  # no sample on both sides
    onnx = json.loads((run.dir / "onnx" / "metrics.json").read_text())
    assert onnx["onnx_input_shape"] == [1, 32, 32] and onnx["onnx_max_abs_diff"] < 1e-4
    assert onnx["onnx_check_samples"] == 1 + 3  # a batch of one and a batch of three (dynamic batch)

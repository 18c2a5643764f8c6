"""The vision studies (studies/led_sam_mae.yaml, wlp_defects_gan.yaml, ic_material_cti.yaml,
sem_sinter_transfer.yaml) run end to end at a tiny size set through overrides, and their stages wire together as
the docs say."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from reflow.runner import execute, start_run
from reflow.study import load_study

STUDIES = Path(__file__).resolve().parents[1] / "studies"


def _run(name: str, overrides: list[str], tmp_path: Path):
    torch.manual_seed(0)
    run = execute(start_run(load_study(STUDIES / name, overrides=overrides), tmp_path / "runs", quiet=True))
    failed = {s: v for s, v in run.manifest["stages"].items() if v["status"] != "done"}
    assert not failed, failed
    return run


def _metrics(run, stage: str) -> dict:
    return json.loads((run.dir / stage / "metrics.json").read_text())


def test_led_sam_mae_study_tiny(tmp_path):
    vit = "size=tiny,width=32,heads=2,depth=1,patch=4,head_hidden=32,epochs=2,batch_size=16"
    sets = [f"stages.{stage}.model.{name}.{kv}" for stage, name in (("supervised", "vit"), ("mae", "vit-mae"))
            for kv in vit.split(",")]
    run = _run("led_sam_mae.yaml", [
        "stages.sam.source.synthetic-sam.leds=20", "stages.sam.source.synthetic-sam.size=32", *sets,
        "stages.mae.model.vit-mae.pretrain_epochs=2", "stages.mae.model.vit-mae.decoder_width=32",
        "stages.mae.model.vit-mae.decoder_heads=2", "stages.mae.model.vit-mae.decoder_depth=1",
        "stages.cnn.model.cnn.width=4", "stages.cnn.model.cnn.epochs=2", "stages.explain_mae.samples=4",
    ], tmp_path)
    # the three models are compared on the same held-out LEDs, none of which they trained on
    tested = [run.output(f"{s}.predictions")["led_id"].values for s in ("supervised", "mae", "cnn")]
    for other in tested[1:]:
        np.testing.assert_array_equal(tested[0], other)
    for stage in ("supervised", "mae", "cnn"):
        m = _metrics(run, stage)
        assert m["test_samples"] == tested[0].size
        assert {"delta_bmax_mse", "delta_bmax_r2", "delta_bmax_f1", "delta_bmax_roc_auc"} <= set(m), sorted(m)
    assert (run.dir / "mae" / "pretrain" / "epochs.csv").exists()
    # what "done" asks of the report: metrics, Grad-CAM overlays and MAE reconstructions
    for name in ("cams.png", "mae_reconstructions.png"):
        assert (run.dir / "explain_mae" / name).stat().st_size > 5000
    report = (run.dir / "report.html").read_text()
    assert report.count("data:image/png;base64") >= 5 and "delta_bmax" in report


def test_wlp_defects_gan_study_tiny(tmp_path):
    ffn = "{ffn-multiscale: {width: 4, depth: 2, epochs: 1, batch_size: 16}}"
    run = _run("wlp_defects_gan.yaml", [
        "stages.wafers.source.synthetic-wlp.images=60", "stages.wafers.source.synthetic-wlp.dies_per_wafer=4",
        "stages.gan.augmenter.wgan-gp.image_size=16", "stages.gan.augmenter.wgan-gp.width=4",
        "stages.gan.augmenter.wgan-gp.steps=2", "stages.gan.augmenter.wgan-gp.n_critic=1",
        "stages.gan.target_per_class=12", "stages.classic.target_per_class=12",
        f"stages.real.model={ffn}", f"stages.with_gan.model={ffn}", f"stages.with_classic.model={ffn}",
    ], tmp_path)
    gan_train, heldout = run.output("gan.train"), run.output("split.test")
    real_rows = int((~gan_train["synthetic"].values.astype(bool)).sum())
    assert 0 < real_rows < gan_train.sizes["sample"]
    real, with_gan, classic = (_metrics(run, s) for s in ("real", "with_gan", "with_classic"))
    assert real["train_samples"] == real_rows and real["where_dropped"] == gan_train.sizes["sample"] - real_rows
    assert with_gan["train_samples"] == gan_train.sizes["sample"]
    assert classic["train_samples"] == run.output("classic.train").sizes["sample"]
    for m, stage in ((real, "real"), (with_gan, "with_gan"), (classic, "with_classic")):
        assert m["test_samples"] == heldout.sizes["sample"]  # all three tested on the same real images
        np.testing.assert_array_equal(run.output(f"{stage}.predictions")["wafer_id"].values,
                                      heldout["wafer_id"].values)
        assert 0.0 <= m["label_accuracy"] <= 1.0 and "label_roc_auc_ovr" in m
        assert (run.dir / stage / "label_confusion.png").exists()
    # the rare classes are scored per class, and the GAN brought each one with real images up to 12
    present = set(heldout["label"].values.astype(str).tolist())
    for rare in ("chip-crack", "trace-break", "tsv-void"):
        if rare in present:
            assert f"label_f1_{rare}" in real and f"label_f1_{rare}" in with_gan
    gan = _metrics(run, "gan")
    rare = [c for c in ("chip_crack", "trace_break", "tsv_void") if gan[f"real_train_{c}"] > 0]
    assert rare and gan["generated"] > 0
    for c in rare:
        assert gan[f"generated_{c}"] == max(0, 12 - gan[f"real_train_{c}"]), c


def test_ic_material_cti_study_tiny(tmp_path):
    run = _run("ic_material_cti.yaml", [
        "stages.packages.source.synthetic-ic-package.per_class=8",
        "stages.packages.source.synthetic-ic-package.size=32",
        "stages.packages.source.synthetic-ic-package.views_per_package=2",
        "stages.materials.repeats=2",
        "stages.materials.models.0.model.cti.epochs=1", "stages.materials.models.0.model.cti.widths=[8, 16]",
        "stages.materials.models.0.model.cti.head_dim=8", "stages.materials.models.0.model.cti.head_width=16",
        "stages.materials.models.1.model.cnn.epochs=1",
        "stages.materials.models.2.model.vit.epochs=1", "stages.materials.models.2.model.vit.depth=1",
        "stages.materials.models.2.model.vit.width=32", "stages.materials.models.2.model.vit.heads=2",
        "stages.materials.models.2.model.vit.head_hidden=32",
    ], tmp_path)
    summary, scores, pred = run.output("materials"), run.output("materials.scores"), run.output("materials.predictions")
    assert list(summary["model"].values) == ["cti", "resnet18", "vit"]
    assert scores.sizes["repeat"] == 2 and scores.sizes["fold"] == 1
    assert summary.attrs["splits"] == "random" and summary.attrs["rank_by"] == "label_accuracy"
    for name in ("label_accuracy", "label_macro_f1", "label_macro_precision", "label_macro_recall"):
        values = scores[name].values
        assert np.isfinite(values).all() and ((values >= 0) & (values <= 1)).all(), name
    packages = pred["package_id"].values
    for r in range(2):  # whole packages held out
        held = pred["fold"].values[r] == 0
        assert held.any() and not set(packages[held].tolist()) & set(packages[~held].tolist())
    metrics = _metrics(run, "materials")
    assert metrics["failed_fits"] == 0 and metrics["best_model"] in ("cti", "resnet18", "vit")
    assert (run.dir / "materials" / "compare_accuracy.png").exists()
    assert (run.dir / "materials" / "compare_confusion_label.png").exists()


def test_sem_sinter_transfer_study_tiny(tmp_path):
    overrides = []
    for data, per_class in (("sem2", 20), ("sem5", 10)):
        overrides += [f"stages.{data}.source.synthetic-sem-sinter.images_per_class={per_class}",
                      f"stages.{data}.source.synthetic-sem-sinter.size=64"]
    for stage in ("transfer2", "transfer5"):
        overrides += [f"stages.{stage}.model.timm-features.backbone=resnet10t",
                      f"stages.{stage}.model.timm-features.patches=2",
                      f"stages.{stage}.model.timm-features.patch_size=32",
                      f"stages.{stage}.model.timm-features.hidden=[16, 8, 8]",
                      f"stages.{stage}.model.timm-features.epochs=2"]
    run = _run("sem_sinter_transfer.yaml", overrides, tmp_path)
    for stage, classes in (("transfer2", 2), ("pca2", 2), ("transfer5", 5), ("pca5", 5)):
        m = _metrics(run, stage)
        assert 0.0 <= m["label_accuracy"] <= 1.0
        assert len(m["label_classes"]) <= classes
        assert (run.dir / stage / "label_confusion.png").exists()
        assert (run.dir / stage / "label_roc.png").exists()
    transfer = _metrics(run, "transfer2")
    assert transfer["backbone_pretrained"] is False and "RANDOM" in transfer["backbone_weights"]
    # both models of a task saw the same split: the same held-out samples
    for a, b in (("transfer2", "pca2"), ("transfer5", "pca5")):
        np.testing.assert_array_equal(run.output(f"{a}.predictions")["sample"].values,
                                      run.output(f"{b}.predictions")["sample"].values)
    binary = run.output("transfer2.predictions")
    assert set(binary["label"].values.astype(str).tolist()) <= {"b100", "b250"}


@pytest.mark.parametrize("name", [
    "led_sam_mae.yaml", "wlp_defects_gan.yaml", "ic_material_cti.yaml", "sem_sinter_transfer.yaml"])
def test_vision_studies_validate_at_their_default_size(name):
    study = load_study(STUDIES / name)
    assert study.stages

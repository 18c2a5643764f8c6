"""Data sources image-folder and image-manifest: labels, lazy reading, resizing, and errors that name the file."""

from __future__ import annotations

import json

import dask.array as da
import numpy as np
import pytest
from PIL import Image
from reflow.context import RunContext
from reflow.errors import DataError
from reflow.plugins.data.images import ImageFolder, ImageManifest


@pytest.fixture
def ctx(tmp_path):
    study_dir = tmp_path / "study"
    study_dir.mkdir()
    return RunContext(run=None, stage="s", seed=1, device="cpu", folder=tmp_path / "run", study_dir=study_dir,
                      quiet=True)


def png(path, value: int, size=(6, 4), mode="L"):
    """A flat image of grey ``value`` (width x height = ``size``); RGB images get (value, 0, 255 - value)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    colour = value if mode == "L" else (value, 0, 255 - value)
    Image.new(mode, size, colour).save(path)
    return path


@pytest.fixture
def folder(ctx):
    root = ctx.study_dir / "parts"
    png(root / "void" / "a.png", 200)
    png(root / "void" / "b.png", 210)
    png(root / "good" / "a.png", 20)
    png(root / "good" / "sub" / "c.png", 30)  # nested folders belong to their class
    png(root / "crack" / "x.png", 120)
    (root / "good" / "notes.txt").write_text("not an image")  # other endings are ignored
    return root


# ---- image-folder ---------------------------------------------------------------------------------------


def test_folder_labels_from_subfolders_sorted(ctx, folder):
    ds = ImageFolder(path="parts").load(ctx)
    assert ds["image"].dims == ("sample", "channel", "y", "x")
    assert ds["image"].shape == (5, 1, 4, 6)
    assert ds["image"].dtype == np.float32
    assert isinstance(ds["image"].data, da.Array)  # lazy until a stage computes it
    assert ds["label"].values.tolist() == ["crack", "good", "good", "void", "void"]
    assert ds["label"].attrs["classes"] == ["crack", "good", "void"] == ds.attrs["classes"]
    assert ds["file"].values.tolist() == ["crack/x.png", "good/a.png", "good/sub/c.png", "void/a.png", "void/b.png"]
    values = ds["image"].values
    np.testing.assert_allclose(values[:, 0, 0, 0], np.array([120, 20, 30, 200, 210]) / 255.0, rtol=1e-6)
    assert np.all(values == values[:, :, :1, :1])  # flat images stay flat


def test_folder_classes_fix_the_order_and_missing_class_is_allowed(ctx, folder, caplog):
    ds = ImageFolder(path="parts", classes=["void", "good", "crack", "delamination"]).load(ctx)
    assert ds["label"].values.tolist() == ["void", "void", "good", "good", "crack"]
    assert ds["label"].attrs["classes"] == ["void", "good", "crack", "delamination"]
    assert "delamination" in caplog.text


def test_folder_rgb_resize_uint8_and_small_chunks(ctx, tmp_path):
    root = ctx.study_dir / "rgb"
    png(root / "a" / "1.png", 100, size=(10, 8), mode="RGB")
    png(root / "b" / "2.png", 40, size=(5, 3), mode="RGB")
    png(root / "b" / "3.png", 60, size=(7, 7), mode="RGB")
    ds = ImageFolder(path="rgb", mode="rgb", size=[4, 6], dtype="uint8", chunk=2).load(ctx)
    assert ds["image"].shape == (3, 3, 4, 6) and ds["image"].dtype == np.uint8
    assert ds["image"].data.chunks[0] == (2, 1)
    img = ds["image"].values
    assert img[0, :, 2, 3].tolist() == [100, 0, 155]  # channels first, colours kept through the resize
    assert img[2, :, 0, 0].tolist() == [60, 0, 195]
    grey = ImageFolder(path="rgb", size=5).load(ctx)  # one number: square; RGB -> luminance
    assert grey["image"].shape == (3, 1, 5, 5)
    expected = (0.299 * 100 + 0.587 * 0 + 0.114 * 155) / 255.0
    assert float(grey["image"][0, 0, 2, 2]) == pytest.approx(expected, abs=1 / 255)


def test_folder_16_bit_images_keep_their_depth(ctx):
    path = ctx.study_dir / "deep" / "x" / "a.png"
    path.parent.mkdir(parents=True)
    Image.fromarray(np.full((3, 3), 30000, dtype=np.uint16)).save(path)
    ds = ImageFolder(path="deep").load(ctx)
    assert float(ds["image"][0, 0, 1, 1]) == pytest.approx(30000 / 65535, rel=1e-5)


def test_folder_errors(ctx, folder):
    with pytest.raises(DataError, match="not found"):
        ImageFolder(path="nowhere").load(ctx)
    (ctx.study_dir / "empty").mkdir()
    with pytest.raises(DataError, match="no class subfolders"):
        ImageFolder(path="empty").load(ctx)
    (ctx.study_dir / "empty" / "good").mkdir()
    with pytest.raises(DataError, match=r"class folder .*good holds no images"):
        ImageFolder(path="empty").load(ctx)
    with pytest.raises(DataError, match=r"subfolder\(s\) \['crack'\] .* not among classes"):
        ImageFolder(path="parts", classes=["good", "void"]).load(ctx)


def test_folder_sizes_must_agree_unless_resized(ctx, folder):
    png(folder / "good" / "big.png", 50, size=(9, 9))
    with pytest.raises(DataError, match="differ in size.*set size"):
        ImageFolder(path="parts").load(ctx)
    assert ImageFolder(path="parts", size=[4, 6]).load(ctx)["image"].shape == (6, 1, 4, 6)


def test_unreadable_image_is_named_at_load_time(ctx, folder):
    bad = folder / "void" / "broken.png"
    bad.write_text("this is not a png")
    with pytest.raises(DataError, match=r"cannot read image .*broken\.png"):
        ImageFolder(path="parts").load(ctx)


def test_truncated_image_is_named_when_read(ctx, folder):
    good = folder / "void" / "a.png"
    big = folder / "void" / "c.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (4, 6), dtype=np.uint8)).save(big)
    big.write_bytes(big.read_bytes()[:60])  # header intact, pixel data cut off
    ds = ImageFolder(path="parts").load(ctx)  # the header is fine: loading succeeds, lazily
    assert good.exists()
    with pytest.raises(DataError, match=r"cannot read image .*c\.png"):
        ds["image"].compute()


def test_folder_plot_shows_examples(ctx, folder, tmp_path):
    source = ImageFolder(path="parts")
    paths = source.plot(source.load(ctx), tmp_path)
    assert paths == [tmp_path / "image_examples.png"] and paths[0].stat().st_size > 1000


# ---- image-manifest --------------------------------------------------------------------------------------


@pytest.fixture
def manifest_dir(ctx):
    root = ctx.study_dir / "lot7"
    png(root / "img" / "a.png", 10)
    png(root / "img" / "b.png", 90)
    png(root / "img" / "c.png", 250)
    return root


def test_manifest_csv_paths_relative_to_the_manifest(ctx, manifest_dir):
    (manifest_dir / "labels.csv").write_text(
        "path,delta_bmax,label,lot,ok\nimg/a.png,0.05,good,7,true\nimg/b.png, 0.31 ,crack,7,false\n"
        "img/c.png,0.12,void,8,True\n")
    ds = ImageManifest(path="lot7/labels.csv", categorical=["lot"]).load(ctx)
    assert ds["image"].shape == (3, 1, 4, 6)
    np.testing.assert_allclose(ds["image"].values[:, 0, 0, 0], np.array([10, 90, 250]) / 255.0, rtol=1e-6)
    assert ds["delta_bmax"].dtype == np.float64 and ds["delta_bmax"].values.tolist() == [0.05, 0.31, 0.12]
    assert ds["label"].values.tolist() == ["good", "crack", "void"]
    assert ds["lot"].values.tolist() == ["7", "7", "8"]  # categorical: kept as text
    assert ds["ok"].dtype == bool and ds["ok"].values.tolist() == [True, False, True]
    assert ds["file"].values.tolist() == ["img/a.png", "img/b.png", "img/c.png"]


def test_manifest_json_with_classes_and_column_subset(ctx, manifest_dir):
    entries = [{"file": "img/c.png", "label": "void", "x": 1}, {"file": "img/a.png", "label": "good", "x": 2}]
    (manifest_dir / "m.json").write_text(json.dumps({"images": entries}))
    ds = ImageManifest(path="lot7/m.json", path_column="file", columns=["label"],
                       classes=["good", "void", "crack"]).load(ctx)
    assert list(ds.data_vars) == ["image", "file", "label"]
    assert ds["label"].values.tolist() == ["void", "good"]
    assert ds["label"].attrs["classes"] == ["good", "void", "crack"]
    np.testing.assert_allclose(ds["image"].values[:, 0, 0, 0], np.array([250, 10]) / 255.0, rtol=1e-6)


def test_manifest_errors(ctx, manifest_dir):
    def write(name, text):
        (manifest_dir / name).write_text(text)
        return f"lot7/{name}"

    with pytest.raises(DataError, match="file not found"):
        ImageManifest(path="lot7/none.csv").load(ctx)
    with pytest.raises(DataError, match=r"\.csv or \.json"):
        ImageManifest(path=write("m.txt", "path\nimg/a.png\n")).load(ctx)
    with pytest.raises(DataError, match="has no column 'path'"):
        ImageManifest(path=write("m1.csv", "image,y\nimg/a.png,1\n")).load(ctx)
    with pytest.raises(DataError, match=r"2 missing image file\(s\).*line 3: img/zz\.png; line 4: img/yy\.png"):
        ImageManifest(path=write("m2.csv", "path,y\nimg/a.png,1\nimg/zz.png,2\nimg/yy.png,3\n")).load(ctx)
    with pytest.raises(DataError, match=r"m3\.csv, line 3: label 'dust' is not among classes"):
        ImageManifest(path=write("m3.csv", "path,label\nimg/a.png,good\nimg/b.png,dust\n"),
                      classes=["good", "void"]).load(ctx)
    with pytest.raises(DataError, match=r"line 3: empty 'y'"):
        ImageManifest(path=write("m4.csv", "path,y\nimg/a.png,1\nimg/b.png,\n")).load(ctx)
    with pytest.raises(DataError, match="cannot parse"):
        ImageManifest(path=write("m5.json", "[{not json")).load(ctx)
    with pytest.raises(DataError, match="list of objects"):
        ImageManifest(path=write("m6.json", '{"path": "img/a.png"}')).load(ctx)
    with pytest.raises(DataError, match="lists no images"):
        ImageManifest(path=write("m7.csv", "path,y\n")).load(ctx)
    with pytest.raises(DataError, match="no column"):
        ImageManifest(path=write("m8.csv", "path,y\nimg/a.png,1\n"), columns=["z"]).load(ctx)
    (manifest_dir / "img" / "bad.png").write_bytes(b"\x89PNG nonsense")
    with pytest.raises(DataError, match=r"cannot read image .*bad\.png"):
        ImageManifest(path=write("m9.csv", "path\nimg/a.png\nimg/bad.png\n")).load(ctx)


def test_images_survive_the_run_store(write_study, tmp_path):
    """A data stage reading an image folder: the lazy images are computed and stored with their labels."""
    from reflow.runner import run_study
    from reflow.study import load_study

    png(tmp_path / "imgs" / "ok" / "a.png", 40)
    png(tmp_path / "imgs" / "bad" / "b.png", 220)
    run = run_study(load_study(write_study("""
        study: folder-data
        stages:
          imgs:
            task: data
            source: {image-folder: {path: imgs}}
    """)), out=tmp_path / "runs", quiet=True)
    stored = run.output("imgs")
    assert stored["label"].values.tolist() == ["bad", "ok"]
    np.testing.assert_allclose(stored["image"].values[:, 0, 0, 0], np.array([220, 40]) / 255.0, rtol=1e-6)
    assert (run.dir / "imgs" / "image_examples.png").exists()

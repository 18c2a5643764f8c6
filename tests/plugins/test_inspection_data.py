"""Data sources for the inspection families: synthetic-wlp, synthetic-ic-package, synthetic-sem-sinter and coco."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pydantic import ValidationError
from reflow.context import RunContext, stage_seed
from reflow.errors import DataError
from reflow.plugins.data.coco import CocoSource
from reflow.plugins.data.icpackage import MATERIALS, SyntheticIcPackage
from reflow.plugins.data.sem import SyntheticSemSinter, neck_ratio, particle_radius, porosity
from reflow.plugins.data.wlp import (
    CLASSES,
    MERGED_CLASSES,
    SyntheticWlp,
    class_probabilities,
    draw_scenes,
    render,
)
from reflow.testing import check_component, test_context
from scipy import stats


def ctx_for(folder=None, seed: int = 0) -> RunContext:
    return RunContext(run=None, stage="data", seed=seed, device="cpu", folder=folder, study_dir=folder, quiet=True)


def boxes_of(ds, i: int) -> list[tuple[float, float, float, float]]:
    rows = np.flatnonzero(ds["box_sample"].values == i)
    return [tuple(float(ds[f"box_{k}"].values[b]) for k in ("x0", "y0", "x1", "y1")) for b in rows]


# ---- synthetic-wlp ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def wlp():
    """66 images at 96 px: every class six times or so (balanced weights)."""
    return SyntheticWlp(images=66, size=96, dies_per_wafer=10, masks=True).load(ctx_for(seed=3))


def test_wlp_same_seed_same_images_other_seed_other_images():
    a, b = (SyntheticWlp(images=8, size=64).load(ctx_for(seed=5)) for _ in range(2))
    c = SyntheticWlp(images=8, size=64).load(ctx_for(seed=6))
    np.testing.assert_array_equal(a["image"].values, b["image"].values)
    np.testing.assert_array_equal(a["box_x0"].values, b["box_x0"].values)
    np.testing.assert_array_equal(a["label"].values, b["label"].values)
    assert np.abs(a["image"].values - c["image"].values).mean() > 0.02


def test_wlp_layout_labels_and_one_box_per_defect(wlp):
    n = 66
    assert wlp["image"].dims == ("sample", "channel", "y", "x") and wlp["image"].shape == (n, 1, 96, 96)
    assert wlp["image"].dtype == np.float32
    assert 0.0 <= float(wlp["image"].min()) and float(wlp["image"].max()) <= 1.0
    classes = wlp.attrs["classes"]
    assert classes == list(CLASSES) == wlp["label"].attrs["classes"]
    labels = wlp["label"].values
    np.testing.assert_array_equal(np.array(classes)[wlp["label_index"].values], labels)
    assert len(set(labels)) >= 9  # 66 balanced draws over 11 classes
    defective = np.flatnonzero(labels != "good")
    np.testing.assert_array_equal(np.sort(wlp["box_sample"].values), defective)  # one box each, none for good
    np.testing.assert_array_equal(wlp["box_label"].values, labels[wlp["box_sample"].values])
    np.testing.assert_array_equal(wlp["wafer_id"].values, np.arange(n) // 10)
    for w in range(7):  # one layout per wafer
        assert len(set(wlp["bump_pitch_px"].values[wlp["wafer_id"].values == w])) == 1
    assert np.abs(wlp["rotation_deg"].values).max() <= 3.0
    assert wlp["defect_mask"].shape == (n, 96, 96)
    assert float(wlp["defect_mask"].values[labels == "good"].max()) == 0.0


def test_wlp_boxes_lie_inside_the_image_and_hold_the_mask(wlp):
    size = 96
    x0, y0, x1, y1 = (wlp[f"box_{k}"].values for k in ("x0", "y0", "x1", "y1"))
    assert (x0 >= 0).all() and (y0 >= 0).all() and (x1 <= size).all() and (y1 <= size).all()
    assert (x1 > x0).all() and (y1 > y0).all()
    for b, i in enumerate(wlp["box_sample"].values):
        mask = wlp["defect_mask"].values[i]
        inside = mask[int(y0[b]):int(y1[b]), int(x0[b]):int(x1[b])].sum()
        assert inside == pytest.approx(mask.sum()), wlp["label"].values[i]


def test_wlp_boxes_cover_what_the_defect_changes():
    """Render each image again without its defect (same pose, light and noise): the difference lies in the box."""
    p = SyntheticWlp.Params(images=60, size=128, noise=0.05)
    scenes = draw_scenes(p, seed=11)
    seen = set()
    for scene in scenes:
        if scene.kind == "good" or scene.kind in seen:
            continue
        seen.add(scene.kind)
        with_defect, mask = render(scene, 128)
        without, empty = render(scene, 128, defect=False)
        assert float(empty.max()) == 0.0
        diff = np.abs(with_defect - without)
        assert diff.sum() > 1.0, scene.kind  # the defect shows
        from reflow.plugins.data.wlp import defect_box

        x0, y0, x1, y1 = (int(v) for v in defect_box(mask, scene.blur))
        inside = diff[y0:y1, x0:x1].sum() / diff.sum()
        assert inside > 0.97, (scene.kind, inside)
        area = (x1 - x0) * (y1 - y0) / 128**2
        assert area < (0.9 if scene.kind == "die-shift" else 0.5), (scene.kind, area)  # boxes are not the image
    assert seen == set(CLASSES) - {"good"}


def test_wlp_class_frequencies_follow_the_weights():
    weights = {"good": 12.0, "chip-crack": 3.0, "tsv-void": 0.5, "scratch": 0.0}
    p = SyntheticWlp.Params(images=600, class_weights=weights)
    probs = class_probabilities(p)
    assert probs["good"] == pytest.approx(12 / (12 + 3 + 0.5 + 7))  # the 7 others weigh 1 each
    kinds = np.array([s.kind for s in draw_scenes(p, seed=2)])
    counts = np.array([(kinds == c).sum() for c in CLASSES])
    assert counts[CLASSES.index("scratch")] == 0
    keep = np.array([probs[c] > 0 for c in CLASSES])
    expected = 600 * np.array([probs[c] for c in CLASSES])[keep]
    assert stats.chisquare(counts[keep], expected).pvalue > 0.001
    # the images carry the drawn classes
    small = SyntheticWlp.Params(images=20, size=64, class_weights=weights)
    ds = SyntheticWlp(small).load(ctx_for(seed=2))
    np.testing.assert_array_equal(ds["label"].values, [s.kind for s in draw_scenes(small, seed=2)])


def test_wlp_defects_show_at_the_smallest_size():
    ds = SyntheticWlp(images=60, size=64, class_weights={"good": 0.0}).load(ctx_for(seed=9))
    assert ds.sizes["box"] == 60 and set(ds["label"].values) == set(CLASSES) - {"good"}


def test_wlp_merged_bump_defects():
    ds = SyntheticWlp(images=40, size=64, merge_bump_defects=True,
                      class_weights={c: 0.0 for c in MERGED_CLASSES if c not in ("good", "bump-defect")}
                      ).load(ctx_for(seed=4))
    assert ds.attrs["classes"] == list(MERGED_CLASSES) and "missing-bump" not in ds.attrs["classes"]
    assert set(ds["label"].values) == {"good", "bump-defect"}
    bump = ds["label"].values == "bump-defect"
    assert set(ds["defect"].values[bump]) == {"missing-bump", "bridged-bump"}
    np.testing.assert_array_equal(ds["label_index"].values[bump], MERGED_CLASSES.index("bump-defect"))


@pytest.mark.parametrize("params, message", [
    ({"class_weights": {"chip-crak": 1}}, "did you mean 'chip-crack'"),
    ({"class_weights": {"bump-defect": 1}}, "merge_bump_defects: true"),
    ({"merge_bump_defects": True, "class_weights": {"missing-bump": 1}}, "use 'bump-defect'"),
    ({"class_weights": {"good": -1}}, "finite number >= 0"),
    ({"class_weights": {c: 0 for c in CLASSES}}, "at least one class"),
    ({"bump_pitch": [0.2, 0.1]}, "bump_pitch"),
    ({"size": 32}, "greater than or equal to 64"),
    ({"images": 0}, "greater than or equal to 1"),
])
def test_wlp_bad_params_are_rejected_with_a_reason(params, message):
    with pytest.raises(ValidationError, match=message):
        SyntheticWlp.Params(**params)


# ---- synthetic-ic-package ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def packages():
    return SyntheticIcPackage(per_class=60, size=48).load(ctx_for(seed=2))


def test_ic_same_seed_same_images():
    a, b = (SyntheticIcPackage(per_class=4, size=32).load(ctx_for(seed=1)) for _ in range(2))
    c = SyntheticIcPackage(per_class=4, size=32).load(ctx_for(seed=2))
    np.testing.assert_array_equal(a["image"].values, b["image"].values)
    assert np.abs(a["image"].values - c["image"].values).mean() > 0.02


def test_ic_layout_and_package_grouping(packages):
    ds = packages
    assert ds["image"].shape == (180, 3, 48, 48) and ds["image"].dtype == np.float32
    assert 0.0 <= float(ds["image"].min()) and float(ds["image"].max()) <= 1.0
    assert ds.attrs["classes"] == list(MATERIALS)
    labels = ds["label"].values
    assert {c: int((labels == c).sum()) for c in MATERIALS} == {c: 60 for c in MATERIALS}
    np.testing.assert_array_equal(np.array(MATERIALS)[ds["label_index"].values], labels)
    ids, counts = np.unique(ds["package_id"].values, return_counts=True)
    assert (counts == 3).all() and len(ids) == 60  # three views per package
    for pid in ids[:10]:
        views = ds["package_id"].values == pid
        assert len(set(labels[views])) == 1 and len(set(ds["pins_per_side"].values[views])) == 1
        assert len(set(np.round(ds["rotation_deg"].values[views], 6))) == 3  # each view its own pose
    pins = {c: ds["pins_per_side"].values[labels == c] for c in MATERIALS}
    assert pins["ceramic"].min() > pins["plastic"].max() and pins["ceramic"].min() > pins["metal"].max()


def test_ic_materials_differ_in_simple_colour_statistics(packages):
    """A sanity check, not a benchmark: plastic is darker than ceramic, and a linear model on colour statistics
    tells the materials apart on packages it has not seen."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    img = packages["image"].values
    labels = packages["label"].values
    lum = img.mean(axis=1).reshape(len(img), -1)
    centre = img[:, :, 18:30, 18:30].mean(axis=(1, 2, 3))
    assert lum[labels == "plastic"].mean() < lum[labels == "ceramic"].mean()
    assert centre[labels == "plastic"].mean() + 0.2 < min(centre[labels == m].mean() for m in ("ceramic", "metal"))
    sat = (img.max(axis=1) - img.min(axis=1)).reshape(len(img), -1)
    features = np.column_stack([img.mean(axis=(2, 3)), img.std(axis=(2, 3)),
                                np.quantile(lum, [0.05, 0.25, 0.5, 0.75, 0.95], axis=1).T,
                                np.quantile(sat, [0.5, 0.9, 0.99], axis=1).T])
    y, group = packages["label_index"].values, packages["package_id"].values
    test = (group // 3) % 4 == 0  # whole packages (of every material) held out
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(features[~test], y[~test])
    assert model.score(features[test], y[test]) > 0.7


def test_ic_material_subset_and_bad_params():
    ds = SyntheticIcPackage(per_class=5, size=32, materials=["metal"], views_per_package=2).load(ctx_for())
    assert set(ds["label"].values) == {"metal"} and ds.sizes["sample"] == 5
    assert ds["package_id"].values.tolist() == [0, 0, 1, 1, 2]
    assert ds.attrs["classes"] == list(MATERIALS)  # the class order stays stable
    with pytest.raises(ValidationError, match="unknown material"):
        SyntheticIcPackage.Params(materials=["glass"])
    with pytest.raises(ValidationError, match="scale must satisfy"):
        SyntheticIcPackage.Params(scale=[0.9, 0.95])


# ---- synthetic-sem-sinter ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sem():
    return SyntheticSemSinter(images_per_class=12, images_per_sample=4, size=64).load(ctx_for(seed=8))


def test_sem_structural_model_matches_the_two_sphere_formula():
    p = SyntheticSemSinter.Params()
    bursts = np.array([50, 100, 150, 200, 250])
    x = neck_ratio(bursts, p)
    np.testing.assert_allclose(x, 0.38 * (bursts / 100) ** (1 / 3))
    phi = porosity(bursts, p)
    assert phi[1] == pytest.approx(1 - 0.55 / (1 - 0.38**2) ** 1.5)  # 0.305
    np.testing.assert_allclose(phi, [0.366, 0.305, 0.247, 0.187, 0.125], atol=2e-3)
    assert (np.diff(phi) < 0).all() and (np.diff(x) > 0).all()
    assert (np.diff(particle_radius(bursts, p)) > 0).all()
    dense = SyntheticSemSinter.Params(neck_ratio_at_100=0.9)
    assert porosity(np.array([1000]), dense)[0] == pytest.approx(0.02)  # density capped at 0.98


def test_sem_porosity_and_pores_fall_with_burst_count(sem):
    classes = sem.attrs["classes"]
    assert classes == ["b50", "b100", "b150", "b200", "b250"] == sem["label"].attrs["classes"]
    by_class = [sem["label"].values == c for c in classes]
    model = [sem["porosity"].values[m].mean() for m in by_class]
    pores = [sem["pore_fraction"].values[m].mean() for m in by_class]
    # what the picture shows: pixels darker than half the image's median brightness (after the shot noise is
    # smoothed), a measure that the per-sample gain and offset do not move
    from scipy.ndimage import gaussian_filter

    smooth = np.stack([gaussian_filter(img[0], 1.0) for img in sem["image"].values])
    dark_share = (smooth / np.median(smooth, axis=(1, 2), keepdims=True) < 0.55).mean(axis=(1, 2))
    dark = [dark_share[m].mean() for m in by_class]
    assert (np.diff(model) < 0).all() and (np.diff(pores) < 0).all() and (np.diff(dark) < 0).all()
    gap = np.abs(sem["pore_fraction"].values - sem["porosity"].values)  # levelled to the porosity (+-0.5 r)
    assert np.median(gap) < 0.005 and gap.max() < 0.06
    assert np.corrcoef(dark_share, sem["pore_fraction"].values)[0, 1] > 0.85
    assert dark[0] > 2 * dark[-1]


def test_sem_layout_and_samples(sem):
    assert sem["image"].shape == (60, 1, 64, 64) and sem["image"].dtype == np.float32
    assert 0.0 <= float(sem["image"].min()) and float(sem["image"].max()) <= 1.0
    np.testing.assert_array_equal(sem["burst_count"].values, np.repeat([50, 100, 150, 200, 250], 12))
    np.testing.assert_array_equal(sem["label"].values, [f"b{b}" for b in sem["burst_count"].values])
    np.testing.assert_array_equal(sem["label_index"].values, np.repeat(np.arange(5), 12))
    ids, counts = np.unique(sem["sample_id"].values, return_counts=True)
    assert len(ids) == 15 and (counts == 4).all()
    for sid in ids:
        rows = sem["sample_id"].values == sid
        assert len(set(sem["porosity"].values[rows])) == 1 and len(set(sem["label"].values[rows])) == 1
        assert not np.array_equal(*sem["image"].values[np.flatnonzero(rows)[:2]])  # other fields of view
    assert len(set(sem["porosity"].values)) == 15  # samples of one burst count differ a little


def test_sem_determinism_and_bad_params():
    a, b = (SyntheticSemSinter(images_per_class=2, size=32, burst_counts=[10, 300]).load(ctx_for(seed=1))
            for _ in range(2))
    np.testing.assert_array_equal(a["image"].values, b["image"].values)
    assert a.attrs["classes"] == ["b10", "b300"]
    for params, message in (({"burst_counts": [50, 50]}, "must not repeat"), ({"burst_counts": [0]}, ">= 1"),
                            ({"burst_counts": []}, "at least 1"), ({"green_density": 0.95}, "less than 0.9")):
        with pytest.raises(ValidationError, match=message):
            SyntheticSemSinter.Params(**params)


# ---- coco -------------------------------------------------------------------------------------------------------


def write_png(path, array):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


@pytest.fixture
def coco(tmp_path):
    """Three 40 x 60 images: one with two boxes (a large void, a small crack), one with one crack, one without."""
    a = np.full((40, 60), 30, dtype=np.uint8)
    a[10:20, 5:25] = 250
    write_png(tmp_path / "imgs" / "a.png", a)
    write_png(tmp_path / "imgs" / "b.png", np.full((40, 60), 100, dtype=np.uint8))
    write_png(tmp_path / "imgs" / "c.png", np.full((40, 60), 200, dtype=np.uint8))
    doc = {
        "images": [{"id": 11, "file_name": "imgs/a.png", "width": 60, "height": 40},
                   {"id": 12, "file_name": "imgs/b.png"}, {"id": 13, "file_name": "imgs/c.png"}],
        "annotations": [{"id": 1, "image_id": 11, "category_id": 4, "bbox": [40, 30, 4, 4]},
                        {"id": 2, "image_id": 11, "category_id": 3, "bbox": [5, 10, 20, 10]},
                        {"id": 3, "image_id": 12, "category_id": 4, "bbox": [50.5, 1.5, 20, 5]},
                        {"id": 4, "image_id": 13, "category_id": 3, "bbox": [0, 0, 60, 40], "iscrowd": 1}],
        "categories": [{"id": 4, "name": "crack"}, {"id": 3, "name": "void"}],
    }
    (tmp_path / "coco.json").write_text(json.dumps(doc))
    return tmp_path, doc


def test_coco_round_trip(coco):
    folder, _ = coco
    ds = CocoSource(path="coco.json").load(ctx_for(folder))
    import dask.array as da

    assert isinstance(ds["image"].data, da.Array)  # read lazily
    img = ds["image"].values
    assert img.shape == (3, 1, 40, 60) and img.dtype == np.float32
    assert img[0, 0, 15, 10] == pytest.approx(250 / 255) and img[1, 0, 0, 0] == pytest.approx(100 / 255)
    assert ds["file"].values.tolist() == ["imgs/a.png", "imgs/b.png", "imgs/c.png"]
    assert ds["image_id"].values.tolist() == [11, 12, 13]
    assert ds.attrs["classes"] == ["good", "void", "crack"]  # good, then the categories by id
    assert ds["label"].values.tolist() == ["void", "crack", "good"]  # largest box; the crowd box is left out
    assert ds["label_index"].values.tolist() == [1, 2, 0]
    assert ds.sizes["box"] == 3
    assert boxes_of(ds, 0) == [(40.0, 30.0, 44.0, 34.0), (5.0, 10.0, 25.0, 20.0)]
    assert boxes_of(ds, 1) == [(50.5, 1.5, 60.0, 6.5)]  # clipped at the right border
    assert ds["box_label"].values.tolist() == ["crack", "void", "crack"]
    assert ds["box_category_id"].values.tolist() == [4, 3, 4]
    assert ds["box_annotation_id"].values.tolist() == [1, 2, 3]
    crowd = CocoSource(path="coco.json", include_crowd=True).load(ctx_for(folder))
    assert crowd["label"].values.tolist() == ["void", "crack", "void"]


def test_coco_and_wlp_give_the_same_box_table(coco, wlp):
    """One box table for the detector: the same variables, dtypes, dims and units from both sources."""
    folder, _ = coco
    ds = CocoSource(path="coco.json").load(ctx_for(folder))
    for name in ("box_sample", "box_x0", "box_y0", "box_x1", "box_y1", "box_label"):
        assert ds[name].dims == wlp[name].dims == ("box",), name
        assert ds[name].dtype.kind == wlp[name].dtype.kind, name
        if name != "box_label":
            assert ds[name].attrs == wlp[name].attrs, name
    assert ds["box_sample"].dtype == np.int64 and ds["box_x0"].attrs["units"] == "px"
    assert ds["box"].values.tolist() == [0, 1, 2]


def test_coco_resize_scales_the_boxes_and_rgb(coco):
    folder, _ = coco
    ds = CocoSource(path="coco.json", size=[20, 30], mode="rgb", classes=["crack", "void", "good"]).load(
        ctx_for(folder))
    assert ds["image"].shape == (3, 3, 20, 30)
    assert boxes_of(ds, 0)[1] == (2.5, 5.0, 12.5, 10.0)
    assert ds.attrs["classes"] == ["crack", "void", "good"] and ds["label_index"].values.tolist() == [1, 0, 2]
    region = ds["image"].values[0, :, 5:10, 3:12]  # the bright void, where its scaled box says
    assert region.mean() > 0.8 and ds["image"].values[0, :, 15:, :].mean() < 0.2


def test_coco_store_round_trip_with_and_without_boxes(coco, tmp_path):
    from reflow.store import read_dataset, write_dataset

    folder, doc = coco
    doc = {**doc, "annotations": []}
    (folder / "empty.json").write_text(json.dumps(doc))
    for name in ("coco.json", "empty.json"):
        ds = CocoSource(path=name).load(ctx_for(folder))
        write_dataset(ds, tmp_path / f"{name}.nc")
        back = read_dataset(tmp_path / f"{name}.nc")
        np.testing.assert_allclose(back["image"].values, ds["image"].values)
        assert back.sizes["box"] == ds.sizes["box"]
        np.testing.assert_array_equal(back["box_x1"].values, ds["box_x1"].values)
        assert back["label"].values.tolist() == ds["label"].values.tolist()
    assert set(back["label"].values) == {"good"}


def break_doc(doc, change):
    doc = json.loads(json.dumps(doc))
    change(doc)
    return doc


@pytest.mark.parametrize("change, message", [
    (lambda d: d["annotations"].append({"id": 9, "image_id": 99, "category_id": 3, "bbox": [1, 1, 2, 2]}),
     r"annotations\[4\] \(id 9\) points at unknown image id 99"),
    (lambda d: d["annotations"].append({"id": 9, "image_id": 11, "category_id": 7, "bbox": [1, 1, 2, 2]}),
     r"unknown category id 7 \(categories: 3: void, 4: crack\)"),
    (lambda d: d["annotations"][0].update(bbox=[1, 2, 3]), r"'bbox' must be \[x, y, width, height\]"),
    (lambda d: d["annotations"][0].update(bbox=[1, 2, 0, 3]), "width and height must be > 0"),
    (lambda d: d["annotations"][0].update(bbox=[70, 2, 3, 3]), "lies outside its 60x40 image a.png"),
    (lambda d: d["images"][0].update(width=64), "says a.png is 64x40"),
    (lambda d: d["images"][1].update(id=11), "image id 11 appears twice"),
    (lambda d: d["categories"].append({"id": 5, "name": "void"}), "name 'void' appears twice"),
    (lambda d: d["images"].append({"id": 20, "file_name": "imgs/gone.png"}) or d["images"].append(
        {"id": 21, "file_name": "imgs/lost.png"}), r"2 missing image file\(s\).*gone.png.*lost.png"),
    (lambda d: d.pop("images"), "expected an object with an 'images' list"),
])
def test_coco_errors_name_the_problem(coco, change, message):
    folder, doc = coco
    (folder / "bad.json").write_text(json.dumps(break_doc(doc, change)))
    with pytest.raises(DataError, match=message) as info:
        CocoSource(path="bad.json").load(ctx_for(folder))
    assert "bad.json" in str(info.value)


def test_coco_missing_unparsable_and_unreadable_files(coco):
    folder, doc = coco
    with pytest.raises(DataError, match="nowhere.json not found"):
        CocoSource(path="nowhere.json").load(ctx_for(folder))
    (folder / "broken.json").write_text("{images: [")
    with pytest.raises(DataError, match="cannot parse .*broken.json"):
        CocoSource(path="broken.json").load(ctx_for(folder))
    (folder / "imgs" / "junk.png").write_bytes(b"not an image at all")
    (folder / "junk.json").write_text(json.dumps(break_doc(doc, lambda d: d["images"].append(
        {"id": 30, "file_name": "imgs/junk.png"}))))
    with pytest.raises(DataError, match="cannot read image .*junk.png"):
        CocoSource(path="junk.json").load(ctx_for(folder))
    with pytest.raises(DataError, match=r"must name every category .* missing: \['crack'\]"):
        CocoSource(path="coco.json", classes=["good", "void"]).load(ctx_for(folder))


def test_coco_image_root(coco):
    folder, doc = coco
    (folder / "meta").mkdir()
    moved = break_doc(doc, lambda d: [img.update(file_name=img["file_name"].removeprefix("imgs/"))
                                      for img in d["images"]])
    (folder / "meta" / "m.json").write_text(json.dumps(moved))
    ds = CocoSource(path="meta/m.json", image_root="../imgs").load(ctx_for(folder))
    assert ds.sizes["sample"] == 3 and ds["label"].values.tolist() == ["void", "crack", "good"]


# ---- contracts, figures and the data task -------------------------------------------------------------------------


@pytest.mark.parametrize("cls, params", [
    (SyntheticWlp, {"images": 4, "size": 64}),
    (SyntheticIcPackage, {"per_class": 2, "size": 32}),
    (SyntheticSemSinter, {"images_per_class": 1, "size": 32}),
])
def test_sources_pass_the_component_checks(cls, params, tmp_path):
    check_component(cls, params, tmp_path=tmp_path)


def test_sample_grids(coco, tmp_path):
    folder, _ = coco
    sources = [SyntheticWlp(images=24, size=64), SyntheticIcPackage(per_class=3, size=32),
               SyntheticSemSinter(images_per_class=2, size=32), CocoSource(path="coco.json")]
    names = ["wlp_examples.png", "ic_package_examples.png", "sem_examples.png", "coco_examples.png"]
    for source, name in zip(sources, names, strict=True):
        ds = source.load(test_context(folder))
        paths = source.plot(ds, tmp_path)
        assert paths == [tmp_path / name] and paths[0].stat().st_size > 3000


def test_data_stage_stores_wlp_boxes_and_draws_examples(write_study, tmp_path):
    from reflow.runner import run_study
    from reflow.study import load_study

    weights = {c: 0 for c in CLASSES} | {"good": 1, "particle": 2}
    study = write_study(f"""
        study: wlp-data
        seed: 4
        stages:
          wlp:
            task: data
            source: {{synthetic-wlp: {{images: 6, size: 64, class_weights: {json.dumps(weights)}}}}}
    """)
    run = run_study(load_study(study), out=tmp_path / "runs", quiet=True)
    stored = run.output("wlp")
    again = SyntheticWlp(images=6, size=64, class_weights=weights).load(ctx_for(seed=stage_seed(4, "wlp")))
    np.testing.assert_allclose(stored["image"].values, again["image"].values)
    np.testing.assert_array_equal(stored["box_y1"].values, again["box_y1"].values)
    assert stored["box_label"].values.tolist() == again["box_label"].values.tolist()
    assert set(stored["label"].values) <= {"good", "particle"}
    assert (run.dir / "wlp" / "wlp_examples.png").exists()

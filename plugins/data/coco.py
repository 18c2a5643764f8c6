"""Data source ``coco``: real labelled inspection images listed in a COCO-format detection manifest.

The manifest is one JSON object with ``images`` (``id``, ``file_name`` relative to the JSON file's folder or to
``image_root``, optional ``width``/``height``), ``annotations`` (``id``, ``image_id``, ``category_id``, ``bbox``
= [x, y, width, height] in pixels from the image's top-left corner, optional ``iscrowd``) and ``categories``
(``id``, ``name``). It gives:

- ``image`` (sample, channel, y, x), read lazily (a dask array decoded chunk by chunk with Pillow, the same reader
  as ``image-manifest``), optionally resized (``size``) and grey or RGB (``mode``); ``file``; ``image_id``;
- the boxes as the side table on dim ``box``: ``box_sample`` (the sample index), ``box_x0``, ``box_y0``,
  ``box_x1`` = x + width, ``box_y1`` = y + height (pixels of the returned image: scaled by the resize factors
  along x and y), ``box_label`` (the category name), ``box_category_id``, ``box_annotation_id``. Boxes that reach
  past the image border are clipped to it (with a warning); crowd annotations are left out unless
  ``include_crowd``;
- ``label`` per image: the category of its largest box (by area; the first listed wins a tie), or
  ``good_label`` ("good") for an image without boxes; ``label_index`` and ``attrs["classes"]``: ``good_label``
  first, then the categories in id order (or ``classes`` as given, which must name them all).

Everything is checked at load time with errors (reflow.DataError) that name the file: a missing or unparsable
JSON, missing image files (all listed), unreadable images, image sizes that differ from the JSON's
width/height, annotations that point at unknown image or category ids, malformed boxes.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import reflow
from pydantic import Field
from reflow.errors import DataError

from ._boxes import box_variables
from .images import _header, _image_dataset, _ImageParams

log = logging.getLogger("reflow")


class CocoSource(reflow.DataSource):
    """Images and boxes from a COCO detection JSON (``image``, ``label``, ``label_index``, ``image_id`` and the
    ``box_*`` side table); the label of an image is the category of its largest box or ``good_label``. See the
    module docstring and docs/inspection-data.md.
    """

    class Params(_ImageParams):
        path: str = Field(description="the COCO JSON file, relative to the study file")
        image_root: str | None = Field(None, description="folder the file_name entries are relative to, itself "
                                                         "relative to the JSON file's folder (default: that "
                                                         "folder)")
        good_label: str = Field("good", min_length=1, description="label of an image without boxes")
        classes: list[str] | None = Field(None, description="class order (default: good_label, then the "
                                                            "categories by id); must name every category")
        include_crowd: bool = Field(False, description="keep annotations with iscrowd: 1")

    def load(self, ctx: Any) -> Any:
        return load_coco(self.params, ctx.resolve_path(self.params.path), self.params.path)

    def plot(self, data: Any, folder: Path) -> list[Path]:
        """Figure for the ``data`` task: examples of every label with their boxes."""
        from .wlp import sample_grid

        return [sample_grid(data, Path(folder) / "coco_examples.png", title="COCO images by label")]


def _read_json(path: Path, given: str) -> dict[str, Any]:
    if not path.is_file():
        what = "is not a file" if path.exists() else "not found"
        raise DataError(f"coco: {path} {what} (path {given!r} is relative to the study)")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"coco: cannot parse {path}: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("images"), list):
        raise DataError(f"coco: {path} is not a COCO manifest: expected an object with an 'images' list "
                        "(and 'annotations' and 'categories')")
    for key in ("annotations", "categories"):
        if key in doc and not isinstance(doc[key], list):
            raise DataError(f"coco: {path.name}: '{key}' must be a list, got {type(doc[key]).__name__}")
    if not doc["images"]:
        raise DataError(f"coco: {path} lists no images")
    return doc


def _int_id(entry: Any, key: str, where: str, name: str) -> int:
    value = entry.get(key) if isinstance(entry, dict) else None
    if isinstance(value, bool) or not isinstance(value, int):
        raise DataError(f"coco: {name}, {where}: '{key}' must be an integer, got {value!r}")
    return value


def load_coco(p: CocoSource.Params, path: Path, given: str | None = None) -> Any:
    """The dataset of the COCO manifest at ``path`` (see the module docstring)."""
    doc = _read_json(path, given or str(path))
    name = path.name

    categories: dict[int, str] = {}
    for i, cat in enumerate(doc.get("categories", [])):
        cid = _int_id(cat, "id", f"categories[{i}]", name)
        cname = cat.get("name")
        if not isinstance(cname, str) or not cname.strip():
            raise DataError(f"coco: {name}, categories[{i}] (id {cid}): 'name' must be a non-empty string")
        if cid in categories:
            raise DataError(f"coco: {name}, categories[{i}]: category id {cid} appears twice")
        if cname.strip() in categories.values():
            raise DataError(f"coco: {name}, categories[{i}]: category name {cname!r} appears twice")
        categories[cid] = cname.strip()

    root = path.parent if p.image_root is None else (path.parent / Path(p.image_root).expanduser())
    image_ids: list[int] = []
    files: list[Path] = []
    declared: list[tuple[Any, Any]] = []
    missing = []
    for i, img in enumerate(doc["images"]):
        iid = _int_id(img, "id", f"images[{i}]", name)
        file_name = img.get("file_name")
        if not isinstance(file_name, str) or not file_name.strip():
            raise DataError(f"coco: {name}, images[{i}] (id {iid}): 'file_name' must be a non-empty string")
        if iid in image_ids:
            raise DataError(f"coco: {name}, images[{i}]: image id {iid} appears twice")
        f = Path(file_name.strip()).expanduser()
        f = f if f.is_absolute() else root / f
        if not f.is_file():
            missing.append(f"images[{i}] {file_name}")
        image_ids.append(iid)
        files.append(f)
        declared.append((img.get("width"), img.get("height")))
    if missing:
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise DataError(f"coco: {name} lists {len(missing)} missing image file(s) (relative to {root}): "
                        f"{'; '.join(missing[:5])}{more}")

    sizes = []  # (height, width) of every file; unreadable files fail here with their name
    for f, (width, height) in zip(files, declared, strict=True):
        h, w = _header(f, "coco")
        if (width is not None and width != w) or (height is not None and height != h):
            raise DataError(f"coco: {name} says {f.name} is {width}x{height} (width x height) but the file is "
                            f"{w}x{h}; the boxes would not match the pixels")
        sizes.append((h, w))
    if p.size is None:
        out_size = None
    else:
        out_size = (p.size, p.size) if isinstance(p.size, int) else tuple(p.size)

    index = {iid: k for k, iid in enumerate(image_ids)}
    rows, clipped, crowd = [], 0, 0
    for i, ann in enumerate(doc.get("annotations", [])):
        where = f"annotations[{i}]"
        aid = _int_id(ann, "id", where, name) if isinstance(ann, dict) and "id" in ann else i
        iid = _int_id(ann, "image_id", where, name)
        cid = _int_id(ann, "category_id", where, name)
        if iid not in index:
            raise DataError(f"coco: {name}, {where} (id {aid}) points at unknown image id {iid} "
                            f"({len(index)} images listed)")
        if cid not in categories:
            known = ", ".join(f"{k}: {v}" for k, v in sorted(categories.items())) or "none"
            raise DataError(f"coco: {name}, {where} (id {aid}) points at unknown category id {cid} "
                            f"(categories: {known})")
        if ann.get("iscrowd") and not p.include_crowd:
            crowd += 1
            continue
        box = ann.get("bbox")
        if (not isinstance(box, list) or len(box) != 4
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                           for v in box)):
            raise DataError(f"coco: {name}, {where} (id {aid}): 'bbox' must be [x, y, width, height] (4 numbers), "
                            f"got {box!r}")
        x, y, bw, bh = (float(v) for v in box)
        if bw <= 0 or bh <= 0:
            raise DataError(f"coco: {name}, {where} (id {aid}): bbox width and height must be > 0, got {box}")
        k = index[iid]
        h, w = sizes[k]
        x0, y0, x1, y1 = max(0.0, x), max(0.0, y), min(float(w), x + bw), min(float(h), y + bh)
        if x0 >= x1 or y0 >= y1:
            raise DataError(f"coco: {name}, {where} (id {aid}): bbox {box} lies outside its {w}x{h} image "
                            f"{files[k].name}")
        clipped += (x0, y0, x1, y1) != (x, y, x + bw, y + bh)
        sx, sy = (1.0, 1.0) if out_size is None else (out_size[1] / w, out_size[0] / h)
        rows.append((k, x0 * sx, y0 * sy, x1 * sx, y1 * sy, bw * bh, cid, aid))
    if clipped:
        log.warning("coco: %d box(es) in %s reach past their image and were clipped to it", clipped, name)
    if crowd:
        log.info("coco: %d crowd annotation(s) in %s left out (include_crowd: true keeps them)", crowd, name)

    # the label of an image: the category of its largest box (first listed on a tie), or good_label
    labels = [p.good_label] * len(files)
    best = [-1.0] * len(files)
    for k, *_, area, cid, _aid in rows:
        if area > best[k]:
            best[k], labels[k] = area, categories[cid]
    names = [categories[c] for c in sorted(categories)]
    if p.classes is not None:
        needed = ([p.good_label] if p.good_label not in names else []) + names
        absent = [c for c in needed if c not in p.classes]
        if absent:
            raise DataError(f"coco: classes {p.classes} must name every category of {name} and "
                            f"good_label; missing: {absent}")
        classes = list(p.classes)
    else:
        classes = ([p.good_label] if p.good_label not in names else []) + names

    ds = _image_dataset(files, p, "coco", root)
    table = np.array([r[:5] for r in rows], dtype=np.float64).reshape(-1, 5)
    box_label = np.array([categories[r[6]] for r in rows] or [""], dtype=str)[:len(rows)]
    ds["image_id"] = ("sample", np.array(image_ids, dtype=np.int64), {"description": "COCO image id"})
    ds["label"] = ("sample", np.array(labels), {"classes": classes, "description": "category of the largest box, "
                                                                                   f"or {p.good_label!r}"})
    ds["label_index"] = ("sample", np.array([classes.index(c) for c in labels], dtype=np.int64),
                         {"description": "index of label in attrs['classes']"})
    box_vars = {
        **box_variables(table, box_label, "category name"),
        "box_category_id": ("box", np.array([r[6] for r in rows], dtype=np.int64)),
        "box_annotation_id": ("box", np.array([r[7] for r in rows], dtype=np.int64)),
    }
    for key, value in box_vars.items():
        ds[key] = value
    ds = ds.assign_coords(box=np.arange(len(rows)))
    ds.attrs.update(source="coco", path=str(path), classes=classes)
    return ds

"""Data sources for real images: ``image-folder`` (one subfolder per class) and ``image-manifest`` (a CSV or JSON
list of image paths with their targets).

Both give ``image`` (sample, channel, y, x), float32 in [0, 1] (or uint8), read lazily: a dask array whose chunks
of ``chunk`` images are decoded with Pillow only when a stage computes them. Headers are read at load time, so a
missing, non-image or odd-sized file fails the stage at once with a message naming the file; a file that is
truncated past its header fails when its chunk is read, with the same kind of message.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import reflow
from pydantic import Field
from reflow.errors import DataError
from reflow.plotting import pyplot, save_figure

log = logging.getLogger("reflow")

EXTENSIONS = [".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"]
Side = Annotated[int, Field(ge=1, le=16384)]


class _ImageParams(reflow.Params):
    """How images are decoded: shared by both sources."""

    mode: Literal["grayscale", "rgb"] = Field("grayscale", description="grayscale: 1 channel; rgb: 3 channels")
    size: Side | tuple[Side, Side] | None = Field(None, description="resize every image to this many pixels "
                                                                    "(one number: square; [height, width]); "
                                                                    "default: keep, then all must be equal")
    dtype: Literal["float32", "uint8"] = Field("float32", description="float32 in [0, 1] or uint8 in [0, 255]")
    chunk: int = Field(64, ge=1, le=100_000, description="images per lazily read chunk")


class ImageFolder(reflow.DataSource):
    """Images sorted into one subfolder per class (``root/<class>/**/<image>``): ``image``, ``label`` (the
    folder name) and ``file`` (the path below the root).

    The classes are the subfolders in alphabetical order, or ``classes`` in the order given: then a subfolder
    that is not listed is an error (a typo or a stray class), and a listed class without a folder is allowed
    (warned about) so that every split of a dataset can share one label list. The class order is kept in
    ``ds["label"].attrs["classes"]``.
    """

    class Params(_ImageParams):
        path: str = Field(description="the root folder, relative to the study file")
        classes: list[str] | None = Field(None, description="class names in a fixed order (default: the "
                                                            "subfolders, sorted)")
        extensions: list[str] = Field(default_factory=lambda: list(EXTENSIONS),
                                      description="file endings read as images (case-insensitive)")

    def load(self, ctx: Any) -> Any:
        p = self.params
        root = ctx.resolve_path(p.path)
        if not root.is_dir():
            what = "is not a folder" if root.exists() else "not found"
            raise DataError(f"image-folder: {root} {what} (path {p.path!r} is relative to the study)")
        folders = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
        if not folders:
            raise DataError(f"image-folder: {root} has no class subfolders (expected {root}/<class>/<image>)")
        if p.classes is not None:
            unknown = [f for f in folders if f not in p.classes]
            if unknown:
                raise DataError(f"image-folder: subfolder(s) {unknown} of {root} are not among classes {p.classes}")
            absent = [c for c in p.classes if c not in folders]
            if absent:
                log.warning("image-folder: no subfolder for class(es) %s in %s", absent, root)
        classes = list(p.classes) if p.classes is not None else folders
        endings = {e.lower() if e.startswith(".") else "." + e.lower() for e in p.extensions}
        files, labels = [], []
        for name in classes:
            if name not in folders:
                continue
            found = sorted(f for f in (root / name).rglob("*")
                           if f.is_file() and f.suffix.lower() in endings and not f.name.startswith("."))
            if not found:
                raise DataError(f"image-folder: class folder {root / name} holds no images "
                                f"(looked for {', '.join(sorted(endings))})")
            files += found
            labels += [name] * len(found)
        ds = _image_dataset(files, p, "image-folder", root)
        ds["label"] = ("sample", np.array(labels), {"classes": classes, "description": "class (folder name)"})
        ds.attrs.update(source="image-folder", path=str(root), classes=classes)
        return ds

    def plot(self, data: Any, folder: Path) -> list[Path]:
        """A few examples of every class."""
        return [_examples(data, Path(folder) / "image_examples.png", "label")]


class ImageManifest(reflow.DataSource):
    """Images listed in a manifest: a CSV with a header, or JSON (a list of objects, or ``{"images": [...]}``).
    One entry per image: its path (relative to the manifest's folder, or absolute) and its targets.

    Numeric columns become float variables, true/false columns bool, other columns text. With ``classes``
    the ``label`` column must only hold those names (kept in that order in ``attrs["classes"]``).
    """

    class Params(_ImageParams):
        path: str = Field(description="the manifest (.csv or .json), relative to the study file")
        path_column: str = Field("path", description="the column holding each image's path")
        columns: list[str] | None = Field(None, description="target columns to keep (default: all but the path)")
        categorical: list[str] = Field(default_factory=list, description="columns kept as text even if numeric")
        label: str = Field("label", description="the class column that classes applies to")
        classes: list[str] | None = Field(None, description="allowed values of the label column, in order")

    def load(self, ctx: Any) -> Any:
        p = self.params
        manifest = ctx.resolve_path(p.path)
        frame = _read_manifest(manifest, p.path)
        if p.path_column not in frame.columns:
            raise DataError(f"image-manifest: {manifest.name} has no column {p.path_column!r} with the image paths "
                            f"(columns: {', '.join(map(str, frame.columns))}; set path_column)")
        wanted = p.columns if p.columns is not None else [c for c in frame.columns if c != p.path_column]
        missing = [c for c in [*wanted, *p.categorical] if c not in frame.columns]
        if p.classes is not None and p.label not in frame.columns:
            missing.append(p.label)
        if missing:
            raise DataError(f"image-manifest: {manifest.name} has no column(s) {', '.join(map(repr, missing))} "
                            f"(columns: {', '.join(map(str, frame.columns))})")
        line = 2 if manifest.suffix.lower() == ".csv" else 1  # where entry 0 is: the CSV line, or the JSON item
        where = "line" if line == 2 else "entry"
        files = []
        absent = []
        for i, raw in enumerate(frame[p.path_column]):
            text = "" if raw is None or (isinstance(raw, float) and np.isnan(raw)) else str(raw).strip()
            if not text:
                raise DataError(f"image-manifest: {manifest.name}, {where} {i + line}: empty {p.path_column!r}")
            f = Path(text).expanduser()
            f = f if f.is_absolute() else manifest.parent / f
            if not f.is_file():
                absent.append(f"{where} {i + line}: {text}")
            files.append(f)
        if absent:
            more = f" and {len(absent) - 5} more" if len(absent) > 5 else ""
            raise DataError(f"image-manifest: {manifest.name} lists {len(absent)} missing image file(s) "
                            f"(relative to {manifest.parent}): {'; '.join(absent[:5])}{more}")
        ds = _image_dataset(files, p, "image-manifest", manifest.parent)
        for col in wanted:
            ds[col] = ("sample", _column(frame[col], col, col in p.categorical, manifest.name, where, line))
        if p.classes is not None:
            values = np.asarray(frame[p.label].astype(str).str.strip())
            bad = np.flatnonzero(~np.isin(values, p.classes))
            if bad.size:
                i = int(bad[0])
                raise DataError(f"image-manifest: {manifest.name}, {where} {i + line}: {p.label} {values[i]!r} is "
                                f"not among classes {p.classes} ({bad.size} such value(s))")
            ds[p.label] = ("sample", values, {"classes": list(p.classes)})
            ds.attrs["classes"] = list(p.classes)
        ds.attrs.update(source="image-manifest", path=str(manifest))
        return ds

    def plot(self, data: Any, folder: Path) -> list[Path]:
        """A few examples (of every class, when there is a label column)."""
        by = self.params.label if self.params.label in data else None
        return [_examples(data, Path(folder) / "image_examples.png", by)]


# ---- reading --------------------------------------------------------------------------------------------------


def _read_manifest(path: Path, given: str) -> Any:
    """The manifest as a DataFrame of text (CSV) or JSON values, with clear errors."""
    import json

    import pandas as pd

    if not path.is_file():
        raise DataError(f"image-manifest: file not found: {path} (path {given!r} is relative to the study)")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        try:
            frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        except pd.errors.EmptyDataError:
            raise DataError(f"image-manifest: {path} is empty") from None
        except (pd.errors.ParserError, UnicodeDecodeError) as exc:
            raise DataError(f"image-manifest: cannot parse {path}: {exc}") from None
        frame.columns = [str(c).strip() for c in frame.columns]
    elif suffix == ".json":
        try:
            records = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DataError(f"image-manifest: cannot parse {path}: {exc}") from None
        if isinstance(records, dict) and isinstance(records.get("images"), list):
            records = records["images"]
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            raise DataError(f"image-manifest: {path} must hold a list of objects like "
                            '[{"path": "a.png", "label": "ok"}] (or {"images": [...]})')
        frame = pd.DataFrame.from_records(records)
    else:
        raise DataError(f"image-manifest: {path.name}: a manifest is a .csv or .json file, "
                        f"got {suffix or 'no suffix'!r}")
    if frame.empty:
        raise DataError(f"image-manifest: {path} lists no images")
    return frame


def _column(series: Any, name: str, text: bool, manifest: str, where: str, line: int) -> np.ndarray:
    """A manifest column as bool, float or text; empty cells are errors that name the entry."""
    import pandas as pd

    raw = series.map(lambda v: "" if v is None or (isinstance(v, float) and np.isnan(v)) else v)
    empty = np.flatnonzero(raw.map(lambda v: isinstance(v, str) and not v.strip()).to_numpy())
    if empty.size:
        raise DataError(f"image-manifest: {manifest}, {where} {int(empty[0]) + line}: empty {name!r} "
                        f"({empty.size} empty in all)")
    if text:
        return np.asarray(raw.astype(str).str.strip())
    if all(isinstance(v, (bool, np.bool_)) for v in raw):
        return raw.to_numpy(dtype=bool)
    lowered = raw.astype(str).str.strip().str.lower()
    if lowered.isin(["true", "false"]).all():
        return (lowered == "true").to_numpy()
    numbers = pd.to_numeric(raw.map(lambda v: v.strip() if isinstance(v, str) else v), errors="coerce")
    if numbers.notna().all():
        return numbers.to_numpy(dtype=float)
    return np.asarray(raw.astype(str).str.strip())


def _header(path: Path, source: str) -> tuple[int, int]:
    """(height, width) from the file's header; a DataError naming the file if it is not a readable image."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            return img.height, img.width
    except FileNotFoundError:
        raise DataError(f"{source}: image not found: {path}") from None
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DataError(f"{source}: cannot read image {path}: {exc}") from None


def _to_array(img: Any, mode: str) -> np.ndarray:
    """Pixels as float32 (channel, y, x) in [0, 1]; 16-bit and float greyscale keep their depth."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img).astype(np.float32)
        if img.mode != "F":
            arr /= 65535.0
        arr = np.clip(arr, 0.0, 1.0)[None]
        return np.repeat(arr, 3, axis=0) if mode == "rgb" else arr
    if mode == "rgb":
        return np.asarray(img.convert("RGB"), dtype=np.float32).transpose(2, 0, 1) / 255.0
    return np.asarray(img.convert("L"), dtype=np.float32)[None] / 255.0


class _Reader:
    """Decodes one image file to (channel, y, x) in the requested mode, size and dtype."""

    def __init__(self, mode: str, size: tuple[int, int] | None, dtype: str, source: str):
        self.mode, self.size, self.dtype, self.source = mode, size, dtype, source

    def __call__(self, path: str) -> np.ndarray:
        from PIL import Image

        try:
            with Image.open(path) as img:
                img.load()
                arr = _to_array(img, self.mode)
        except FileNotFoundError:
            raise DataError(f"{self.source}: image not found: {path}") from None
        except (OSError, ValueError, SyntaxError) as exc:
            raise DataError(f"{self.source}: cannot read image {path}: {exc}") from None
        if self.size is not None and arr.shape[1:] != self.size:
            h, w = self.size
            arr = np.stack([np.asarray(Image.fromarray(ch).resize((w, h), Image.Resampling.BILINEAR)) for ch in arr])
            arr = np.clip(arr, 0.0, 1.0)
        if self.dtype == "uint8":
            return np.round(arr * 255.0).astype(np.uint8)
        return arr.astype(np.float32, copy=False)


def _image_dataset(files: list[Path], p: _ImageParams, source: str, root: Path) -> Any:
    """A Dataset with a lazily read ``image`` (dask) and ``file`` (the path below ``root``)."""
    import dask.array as da
    import xarray as xr
    from dask.base import tokenize

    if not files:
        raise DataError(f"{source}: no images found under {root}")
    if p.size is not None:
        size = (p.size, p.size) if isinstance(p.size, int) else tuple(p.size)
        for f in files:  # still check every header: unreadable files fail now, not in a later stage
            _header(f, source)
    else:
        shapes = {}
        for f in files:
            shapes.setdefault(_header(f, source), f)
        if len(shapes) > 1:
            examples = "; ".join(f"{f.name}: {h}x{w}" for (h, w), f in list(shapes.items())[:3])
            raise DataError(f"{source}: images under {root} differ in size ({examples}); set size: [height, width] "
                            "to resize them")
        size = next(iter(shapes))
    channels = 3 if p.mode == "rgb" else 1
    dtype = np.dtype(p.dtype)
    paths = [str(f) for f in files]
    reader = _Reader(p.mode, size, p.dtype, source)

    def read_block(index: np.ndarray) -> np.ndarray:
        if not len(index):
            return np.zeros((0, channels, *size), dtype=dtype)
        return np.stack([reader(paths[i]) for i in index])

    index = da.arange(len(paths), chunks=p.chunk)
    images = index.map_blocks(read_block, new_axis=[1, 2, 3], chunks=(index.chunks[0], (channels,), (size[0],),
                                                                       (size[1],)),
                              dtype=dtype, meta=np.zeros((0, 0, 0, 0), dtype=dtype),
                              name=f"read-images-{tokenize(paths, p.mode, size, p.dtype)}")
    rel = [f.relative_to(root).as_posix() if f.is_relative_to(root) else str(f) for f in files]
    return xr.Dataset({"image": (("sample", "channel", "y", "x"), images),
                       "file": ("sample", np.array(rel), {"description": f"image path relative to {root}"})},
                      coords={"sample": np.arange(len(files))})


def _examples(ds: Any, path: Path, by: str | None, per_group: int = 6) -> Path:
    """Up to ``per_group`` example images for each value of ``by`` (rows), or the first ones."""
    plt = pyplot()
    if by is not None and ds[by].ndim == 1:
        values = np.asarray(ds[by].values)
        groups = [(str(v), np.flatnonzero(values == v)[:per_group]) for v in np.unique(values)[:8]]
    else:
        groups = [("", np.arange(min(ds.sizes["sample"], per_group)))]
    cols = max(len(g[1]) for g in groups)
    fig, axes = plt.subplots(len(groups), cols, figsize=(1.5 * cols + 0.6, 1.6 * len(groups)), squeeze=False)
    for row, (name, idx) in enumerate(groups):
        for col in range(cols):
            ax = axes[row, col]
            ax.set_xticks([])
            ax.set_yticks([])
            if col >= len(idx):
                ax.axis("off")
                continue
            img = np.asarray(ds["image"][int(idx[col])].values, dtype=np.float32)
            img = img / 255.0 if ds["image"].dtype == np.uint8 else img
            ax.imshow(img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0), cmap="gray", vmin=0.0, vmax=1.0)
            if col == 0 and name:
                ax.set_ylabel(name, fontsize=8)
    return save_figure(fig, path)

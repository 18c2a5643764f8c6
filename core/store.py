"""The run folder: atomic writes, the manifest, stage outputs, and the trial journal.

::

    runs/<study>/<YYYYmmdd-HHMMSS>-<id>/
      study.resolved.yaml   the study after defaults and --set
      manifest.json         versions, plugins, seed, device, git sha, per-stage status and timings
      <stage>/              <output>.nc, metrics.json, *.png, trials.jsonl (the journal)
      report.html

Every file is written under a temporary name in the same folder and renamed into place, so a crash
leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import json
import os
import secrets
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from reflow.errors import RunError, UserInputError

MANIFEST = "manifest.json"
RESOLVED = "study.resolved.yaml"
JOURNAL = "trials.jsonl"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


def write_dataset(ds: Any, path: Path) -> None:
    """Write an xarray Dataset to netCDF (h5netcdf) atomically; dict attrs become JSON strings."""
    import numpy as np

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds = ds.copy()
    ds.attrs = _netcdf_attrs(ds.attrs)
    for name in list(ds.variables):
        var = ds[name]
        var.attrs = _netcdf_attrs(var.attrs)
        if var.dtype == object:
            ds[name] = var.astype(str)
        elif var.dtype == bool:
            ds[name] = var.astype(np.int8)
            ds[name].attrs["dtype"] = "bool"
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        ds.to_netcdf(tmp, engine="h5netcdf", invalid_netcdf=True)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_dataset(path: Path) -> Any:
    """Load a dataset written by :func:`write_dataset` into memory (the file is closed again)."""
    import xarray as xr

    ds = xr.load_dataset(path, engine="h5netcdf")
    for name in list(ds.variables):
        if ds[name].attrs.get("dtype") == "bool":
            attrs = {k: v for k, v in ds[name].attrs.items() if k != "dtype"}
            ds[name] = ds[name].astype(bool)
            ds[name].attrs = attrs
    return ds


def _netcdf_attrs(attrs: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in attrs.items():
        if isinstance(v, (dict, list, tuple)) or v is None:
            out[k] = json.dumps(v, default=_json_default)
        elif isinstance(v, bool):
            out[k] = int(v)
        else:
            out[k] = v
    return out


class TrialJournal:
    """Append-only JSON-lines record of finished trials: the crash-safe source of truth for resume.

    Each line is one finished trial, flushed and fsynced before the next is accepted, so a ``kill -9``
    loses at most the evaluations that were still running. A torn last line is ignored on reading.
    """

    def __init__(self, path: Path):
        self.path = Path(path)

    def append(self, records: list[dict[str, Any]]) -> None:
        if not records:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._drop_torn_tail()
        with open(self.path, "a", encoding="utf-8") as fh:
            for rec in records:
                fh.write(json.dumps(rec, default=_json_default) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def _drop_torn_tail(self) -> None:
        """Cut a torn final line (a crash mid-write) so the next record starts on a line of its own."""
        if not self.path.exists() or self.path.stat().st_size == 0:
            return
        with open(self.path, "rb+") as fh:
            fh.seek(-1, os.SEEK_END)
            if fh.read(1) == b"\n":
                return
            fh.seek(0)
            data = fh.read()
            fh.truncate(data.rfind(b"\n") + 1)
            fh.flush()
            os.fsync(fh.fileno())

    def read(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        records = []
        with open(self.path, encoding="utf-8") as fh:
            for line in fh:
                if not line.endswith("\n"):
                    break  # torn final line from a crash
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:
                    break
        return records

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.read())


def new_run_dir(out: Path, study: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = Path(out) / study / f"{stamp}-{secrets.token_hex(3)}"
    path.mkdir(parents=True, exist_ok=False)
    return path


def read_manifest(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / MANIFEST
    if not Path(run_dir).is_dir():
        raise UserInputError(f"not a run folder: {run_dir} does not exist")
    if not path.exists():
        raise UserInputError(f"not a run folder: {path} is missing")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise RunError(f"{path} is corrupt: {exc}") from None

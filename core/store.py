"""The run folder: atomic writes, the manifest, stage outputs, and the trial journal.

::

    runs/<study>/<YYYYmmdd-HHMMSS>-<id>/
      study.resolved.yaml   the study after defaults and --set
      manifest.json         versions, plugins, seed, device, git sha, per-stage status and timings
      <stage>/              <output>.nc, metrics.json, *.png, trials.jsonl (the journal)
      report.html
      run.lock, run.lock.json   the writer's lock and who holds it (see :class:`RunLock`)

Every file is written under a temporary name in the same folder and renamed into place, so a crash
leaves either the old file or the new one, never half of one. One command at a time writes to a run
folder (:class:`RunLock`); journals are appended a chunk of whole lines at a time and read back line by
line, so a damaged line costs that line only (:class:`TrialJournal`).
"""

from __future__ import annotations

import json
import logging
import math
import os
import secrets
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from reflow.errors import RunError, UserInputError

MANIFEST = "manifest.json"
RESOLVED = "study.resolved.yaml"
JOURNAL = "trials.jsonl"
METRICS = "metrics.json"
MODEL_DIR = "model"
COMPONENT = "component.json"
LOCK = "run.lock"
LOCK_HOLDER = "run.lock.json"

log = logging.getLogger("reflow")


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


_WARNED: set[tuple[str, int, bytes]] = set()


class TrialJournal:
    """Append-only JSON-lines record of finished trials: the crash-safe source of truth for resume.

    One line per finished trial. :meth:`append` writes a whole chunk of finished trials in one ``write`` and
    flushes it to the operating system at once, so a ``kill -9`` of reflow loses no appended trial; the data
    reaches the disk (``fsync``) at most a second later (a timer) and at :meth:`sync` (stage end), so a power
    loss loses at most the last second. A torn last line is ignored on reading and cut before the next append.
    """

    SYNC_EVERY = 1.0
    """Seconds between ``fsync`` calls at most: one per trial cost milliseconds each."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._size: int | None = None  # the file's size after our last append: unchanged means no torn tail
        self._last_sync = -math.inf  # the first append is fsynced
        self._timer: threading.Timer | None = None
        self._lock = threading.Lock()
        self._fh: Any = None  # kept open between appends (one write syscall per chunk), closed by close()

    def append(self, records: list[dict[str, Any]]) -> None:
        """Append ``records`` (one chunk) in one write, flushed; fsynced now if the last fsync is a second old."""
        if not records:
            return
        self.append_text("".join([json.dumps(rec, default=_json_default) + "\n" for rec in records]))

    def append_text(self, text: str) -> None:
        """Append whole JSON lines already encoded (one per trial, each ending in a newline): :meth:`append`
        for a chunk encoded column by column (``reflow.evaluation.TrialTable.journal_text``)."""
        if not text:
            return
        data = text.encode("utf-8")
        with self._lock:
            if self._fh is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._fh = open(self.path, "ab")  # noqa: SIM115 - closed by close(), or when collected
            fh = self._fh
            size = os.fstat(fh.fileno()).st_size
            if size and size != self._size:  # written by someone else (or a crash) since: check the tail
                self._drop_torn_tail()
            fh.write(data)
            fh.flush()
            self._size = fh.tell()
            if time.monotonic() - self._last_sync >= self.SYNC_EVERY:
                os.fsync(fh.fileno())
                self._last_sync = time.monotonic()
                self._cancel_timer()
            elif self._timer is None:  # fsync what is pending within a second even if nothing else comes
                self._timer = threading.Timer(self.SYNC_EVERY, self.sync)
                self._timer.daemon = True
                self._timer.start()

    def sync(self) -> None:
        """``fsync`` what was appended (at stage end, and by the timer a second after an unsynced append)."""
        with self._lock:
            self._cancel_timer()
            try:
                if self._fh is not None:
                    os.fsync(self._fh.fileno())
                elif self.path.exists():
                    with open(self.path, "ab") as fh:
                        os.fsync(fh.fileno())
            except (OSError, ValueError) as exc:  # the folder went away (a test's tmp dir): nothing to keep
                log.debug("fsync of %s: %s", self.path, exc)
            self._last_sync = time.monotonic()

    def close(self) -> None:
        """``fsync`` and close the file (a stage's end); a later append opens it again."""
        self.sync()
        with self._lock:
            if self._fh is not None:
                self._fh.close()
                self._fh = None

    def _cancel_timer(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None and timer is not threading.current_thread():
            timer.cancel()

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
        """Every intact record, in order.

        A torn last line (no newline: the process died mid-write) is dropped quietly; any other line that is
        not a trial record (a disk error, a hand edit) is skipped with a warning naming the file and the line,
        and every line after it is kept, so a damaged line never makes finished trials run again.
        """
        if not self.path.exists():
            return []
        lines = self.path.read_bytes().split(b"\n")
        lines.pop()  # b"" after the last newline, or a torn final line from a crash
        records = []
        for number, raw in enumerate(lines, start=1):
            if not raw.strip():
                continue
            try:
                rec = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError:
                self._warn(number, raw, "it is not UTF-8 text")
                continue
            except json.JSONDecodeError as exc:
                self._warn(number, raw, f"it is not valid JSON ({exc.msg} at column {exc.colno})")
                continue
            trial = rec.get("trial") if isinstance(rec, dict) else None
            if not isinstance(trial, int) or isinstance(trial, bool):
                self._warn(number, raw, "it is not a trial record (no whole-number 'trial')")
                continue
            records.append(rec)
        return records

    def _warn(self, number: int, raw: bytes, why: str) -> None:
        """Warn about a damaged line once per process (a stage reads its journal more than once)."""
        key = (str(self.path.resolve()), number, raw)
        if key in _WARNED:
            return
        _WARNED.add(key)
        log.warning("%s, line %d: skipped, %s; every other line is kept (the trial on it, if any, counts as "
                    "not finished)", self.path, number, why, extra={"console": True})

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.read())


class StageStore:
    """One stage's folder in a run: the only code that knows where a stage keeps what.

    Tasks (through ``ctx.store``), the runner, ``reflow ask``/``tell`` and the report read and write a stage
    through this class: its outputs (``<name>.nc``) and metrics, the model it trained (``model/`` with
    ``component.json`` naming the registered model), caches (``<name>.nc`` under ``cache/``, never taken for an
    output) and journals (``<name>.jsonl``)::

        store = StageStore(run_dir / "train")
        store.save_model(model, "weibull")
        model = store.load_model()
    """

    def __init__(self, folder: Path):
        self.folder = Path(folder)

    # ---- outputs and metrics -------------------------------------------------------------------------
    def output_path(self, name: str) -> Path:
        return self.folder / f"{name}.nc"

    def write_output(self, name: str, ds: Any) -> Path:
        path = self.output_path(name)
        write_dataset(ds, path)
        return path

    def read_output(self, name: str) -> Any:
        return read_dataset(self.output_path(name))

    def output_names(self, declared: tuple[str, ...] | list[str] = ()) -> list[str]:
        """The stored outputs: the ``declared`` ones present, in that order, then any others by name."""
        stored = sorted(p.stem for p in self.folder.glob("*.nc")) if self.folder.is_dir() else []
        return [n for n in declared if n in stored] + [n for n in stored if n not in declared]

    def read_outputs(self, declared: tuple[str, ...] | list[str] = ()) -> dict[str, Any]:
        return {name: self.read_output(name) for name in self.output_names(declared)}

    def output_units(self, declared: tuple[str, ...] | list[str] = ()) -> dict[str, str]:
        """``{variable: units}`` as the stored outputs declare them (their ``units`` attrs). Only the headers are
        read, through h5netcdf rather than xarray (three times faster for ``reflow show``); a damaged output adds
        none."""
        import h5netcdf
        from reflow.units import variable_units

        units: dict[str, str] = {}
        for name in self.output_names(declared):
            try:
                with h5netcdf.File(self.output_path(name), "r") as file:
                    units.update({k: v for k, v in variable_units([file]).items() if k not in units})
            except (OSError, ValueError, KeyError) as exc:
                log.info("no units from %s: %s", self.output_path(name), exc)
        return units

    def write_metrics(self, metrics: dict[str, Any]) -> None:
        write_json(self.folder / METRICS, metrics)

    def read_metrics(self) -> dict[str, Any]:
        """The stage's metrics ({} when it wrote none); a damaged file raises RunError naming it."""
        path = self.folder / METRICS
        if not path.exists():
            return {}
        try:
            data = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise RunError(f"{path} cannot be read: {exc}") from None
        if not isinstance(data, dict):
            raise RunError(f"{path} is not a mapping of metric names to values")
        return data

    # ---- the model a stage trained -------------------------------------------------------------------
    @property
    def model_dir(self) -> Path:
        return self.folder / MODEL_DIR

    def save_model(self, model: Any, component: str, **info: Any) -> Path:
        """Save ``model`` and the registered name it loads back by (``info``: more facts, e.g. a label)."""
        model.save(self.model_dir)
        write_json(self.model_dir / COMPONENT, {"name": component, **info})
        return self.model_dir

    def model_info(self) -> dict[str, Any] | None:
        """``component.json`` of the stage's model (``name``: its registered component), None if it has none."""
        path = self.model_dir / COMPONENT
        if not path.exists():
            return None
        return json.loads(path.read_text())

    def model_class(self) -> type | None:
        """The registered class of the stage's model, None when the stage saved none."""
        info = self.model_info()
        if info is None:
            return None
        from reflow.registry import get_registry

        return get_registry().get(info["name"], "model").cls

    def load_model(self) -> Any:
        """The stage's trained model, loaded by its registered class."""
        cls = self.model_class()
        if cls is None:
            raise RunError(f"{self.folder.name}: this stage saved no model ({self.model_dir / COMPONENT} is missing)")
        return cls.load(self.model_dir)

    # ---- caches and journals -------------------------------------------------------------------------
    def cache_path(self, name: str) -> Path:
        """Where a stage keeps a dataset it reuses on resume (a generated design): not an output."""
        return self.folder / "cache" / f"{name}.nc"

    def read_cache(self, name: str) -> Any | None:
        path = self.cache_path(name)
        return read_dataset(path) if path.exists() else None

    def write_cache(self, name: str, ds: Any) -> None:
        write_dataset(ds, self.cache_path(name))

    def journal_path(self, name: str = JOURNAL) -> Path:
        return self.folder / (name if name.endswith(".jsonl") else f"{name}.jsonl")

    def journal(self, name: str = JOURNAL) -> TrialJournal:
        """The stage's append-only journal ``name`` (``trials.jsonl`` by default; ``asked.jsonl``, ...)."""
        return TrialJournal(self.journal_path(name))

    def read_journal(self, name: str = JOURNAL) -> list[dict[str, Any]]:
        return self.journal(name).read()


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


class RunFolderBusy(UserInputError):
    """Another command is writing to the run folder: this one changes nothing and exits with code 2."""


class RunLock:
    """One writer per run folder: ``reflow run``, ``run --resume``, ``ask``, ``tell`` and ``report`` hold it throughout.

    The lock is an OS file lock on ``run.lock`` (the ``filelock`` library: ``flock`` on Unix), so the operating
    system frees it the moment its holder dies, ``kill -9`` included. Who holds it (command, PID, host, since
    when) is kept in ``run.lock.json`` for the message a second command gets. A holder record left behind
    with the lock free means its command was killed: the next command takes the lock over with a warning.
    """

    def __init__(self, run_dir: Path, command: str):
        self.dir = Path(run_dir)
        self.command = command
        self._lock: Any = None

    @property
    def held(self) -> bool:
        return self._lock is not None

    def acquire(self) -> RunLock:
        """Take the lock now or raise :class:`RunFolderBusy` naming the holder; never waits."""
        from filelock import FileLock, Timeout

        if self._lock is not None:
            return self
        lock = FileLock(str(self.dir / LOCK), timeout=0, thread_local=False)
        deadline = time.monotonic() + 1.0
        while True:
            try:
                lock.acquire()
                break
            except Timeout:
                holder = read_lock_holder(self.dir)
                # no record: the holder has just taken the lock (its record comes next) or is just letting go
                if holder is not None or time.monotonic() > deadline:
                    raise RunFolderBusy(self._busy_message(holder)) from None
                time.sleep(0.05)
            except OSError as exc:  # a read-only folder, a run.lock that is not a file
                raise RunError(f"cannot lock the run folder {self.dir} for `{self.command}`: {exc}") from None
        try:
            left = read_lock_holder(self.dir)
            if left is not None:
                log.warning("run folder %s: taking over the lock left by %s; that command ended without "
                            "releasing it (killed?) and nothing else holds it", self.dir, _describe(left),
                            extra={"console": True})
            write_json(self.dir / LOCK_HOLDER, {
                "command": self.command, "pid": os.getpid(), "host": socket.gethostname(),
                "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            })
        except BaseException:
            lock.release()
            raise
        self._lock = lock
        return self

    def release(self) -> None:
        """Let the next command in; the holder record goes first, so a record left behind always means a crash."""
        if self._lock is None:
            return
        try:
            (self.dir / LOCK_HOLDER).unlink(missing_ok=True)
        finally:
            self._lock.release()
            self._lock = None

    def _busy_message(self, holder: dict[str, Any] | None) -> str:
        if holder is None:
            who = "another reflow command (it has not recorded itself yet)"
        else:
            who = _describe(holder)
            if _pid_alive(holder) is False:
                who += (f"; PID {holder.get('pid')} has ended but a process it started still holds the lock "
                        "(an evaluation worker?): wait for it to end or stop it")
        return (f"run folder {self.dir} is in use by {who}. One command at a time writes to a run folder, so "
                f"`{self.command}` changed nothing: wait until that command ends (a killed command's lock is "
                "taken over by the next command)")

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def lock_run(run_dir: Path, command: str) -> RunLock:
    """Take the writer's lock of an existing run folder (a clear error if it is none, before any file is made)."""
    run_dir = Path(run_dir)
    if not (run_dir / MANIFEST).exists():
        read_manifest(run_dir)  # raises "not a run folder"
    return RunLock(run_dir, command).acquire()


def read_lock_holder(run_dir: Path) -> dict[str, Any] | None:
    """Who holds (or, with the lock free, last held without releasing) the run folder's lock; None if no one."""
    try:
        holder = json.loads((Path(run_dir) / LOCK_HOLDER).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {"command": "an unknown command (its lock record is unreadable)"}
    return holder if isinstance(holder, dict) else {"command": "an unknown command (its lock record is unreadable)"}


def _describe(holder: dict[str, Any]) -> str:
    parts = []
    if holder.get("pid") is not None:
        host = holder.get("host")
        parts.append(f"PID {holder['pid']}" + (f" on {host}" if host and host != socket.gethostname() else ""))
    if holder.get("since"):
        parts.append(f"since {holder['since']}")
    command = holder.get("command", "a reflow command")
    command = f"`{command}`" if str(command).startswith("reflow") else str(command)
    return command + (f" ({', '.join(parts)})" if parts else "")


def _pid_alive(holder: dict[str, Any]) -> bool | None:
    """Is the holder's process running? None when it cannot be told (another host, Windows, no PID)."""
    pid = holder.get("pid")
    if not isinstance(pid, int) or pid <= 0 or os.name == "nt" or holder.get("host") != socket.gethostname():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return None
    return True

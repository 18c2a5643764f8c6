"""The runner: creates (or reopens) a run folder and runs the study's stages in dependency order."""

from __future__ import annotations

import logging
import platform
import subprocess
import sys
import time
import traceback
from importlib import metadata
from pathlib import Path
from typing import Any

from reflow.components import StageResult
from reflow.context import RunContext, stage_seed
from reflow.device import resolve_device, resolve_now
from reflow.errors import ReflowError, RunError, StudyError, WaitingForResults
from reflow.specs import ComponentSpec, DataRef
from reflow.stagevalues import write_used
from reflow.store import (
    MANIFEST,
    RESOLVED,
    RunLock,
    StageStore,
    lock_run,
    new_run_dir,
    read_manifest,
    write_json,
)
from reflow.study import Study, _walk, stage_reads, validate_study
from reflow.units import variable_units
from reflow.yamlio import dump, load_with_lines

log = logging.getLogger("reflow")

KEY_PACKAGES = ("numpy", "scipy", "xarray", "pydantic", "pluggy", "torch", "botorch", "scikit-learn",
                "pymoo", "dask", "distributed", "h5netcdf")


class StageFailed(ReflowError):
    """A stage raised; the run stops there and keeps everything finished before it."""


class Run:
    """A run folder and the state of one study running in it."""

    def __init__(self, directory: Path, study: Study, manifest: dict[str, Any], quiet: bool = False):
        self.dir = Path(directory)
        self.study = study
        self.manifest = manifest
        self.quiet = quiet
        self._executor = None
        self._results: dict[str, StageResult] = {}
        self.lock: RunLock | None = None  # the run folder's writer lock while this process works in it

    # ---- helpers used by RunContext ------------------------------------------------------------
    @property
    def executor(self):
        if self._executor is None:
            from reflow.executors import make_executor

            self._executor = make_executor(self.study.executor)
        return self._executor

    def resolve_device(self) -> str:
        """The run's device; ``auto`` is resolved here, at the first stage that reads ``ctx.device`` (importing
        torch), and recorded in the manifest. A study whose stages never read it never imports torch."""
        device = self.manifest.get("device") or "cpu"
        if device == "auto":
            device = resolve_device("auto")
            self.manifest["device"] = device
            self.save_manifest()
        return device

    def close(self) -> None:
        if self._executor is not None:
            self._executor.close()
            self._executor = None
        if self.lock is not None:  # the run folder is free for the next command
            self.lock.release()
            self.lock = None

    def stage_dir(self, stage: str) -> Path:
        return self.dir / stage

    def result(self, stage: str) -> StageResult:
        """A finished stage's outputs and metrics (read from the run folder once, then cached)."""
        if stage not in self._results:
            self._results[stage] = load_result(self.dir, stage, self.study)
        return self._results[stage]

    def output(self, ref: DataRef | str) -> Any:
        if isinstance(ref, str):
            stage, _, out = ref.partition(".")
            ref = DataRef(stage, out or None)
        result = self.result(ref.stage)
        name = ref.output or next(iter(result.outputs), None)
        if name is None or name not in result.outputs:
            raise RunError(f"stage {ref.stage!r} has no output {name!r}")
        return result.outputs[name]

    def store(self, stage: str) -> StageStore:
        """Stage ``stage``'s folder: its outputs, metrics and model."""
        return StageStore(self.stage_dir(stage))

    def model(self, stage: str) -> Any:
        """The model stage ``stage`` trained, loaded by its registered class."""
        return self.store(stage).load_model()

    def hook(self, name: str, **kwargs: Any) -> None:
        """Call a lifecycle hook; a plugin's exception is logged, never fatal.

        Each implementation gets the arguments it names, as pluggy's own calls do (``def on_stage_end(stage,
        result)`` is fine); the implementations are called one by one so that one failing tracker does not keep
        the others from their call.
        """
        from reflow.registry import get_plugin_manager

        caller = getattr(get_plugin_manager().hook, name)
        arguments = {"run": self, **kwargs}
        for impl in caller.get_hookimpls():
            try:
                impl.function(*(arguments[arg] for arg in impl.argnames))
            except Exception:
                log.warning("plugin %s failed in %s:\n%s", impl.plugin_name, name, traceback.format_exc())

    def save_manifest(self) -> None:
        write_json(self.dir / MANIFEST, self.manifest)

    def set_stage(self, stage: str, **info: Any) -> None:
        self.manifest["stages"].setdefault(stage, {}).update(info)
        self.save_manifest()

    def record_reads(self) -> None:
        """Write what each stage reads from the others (:func:`reflow.study.stage_reads`) into the manifest,
        for the report's links; a manifest written before this was recorded gets it on resume."""
        for name, reads in stage_reads(self.study).items():
            self.manifest["stages"].setdefault(name, {})["reads"] = [r.to_json() for r in reads]


def load_result(run_dir: Path, stage: str, study: Study | None = None) -> StageResult:
    """Read a stage's stored outputs (in the order the task declares them, then the others) and metrics."""
    store = StageStore(Path(run_dir) / stage)
    declared: list[str] = []
    if study is not None and stage in study.stages:
        declared = list(study.stages[stage].task_cls.outputs)
    return StageResult(store.read_outputs(declared), store.read_metrics())


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("reflow",) + KEY_PACKAGES:
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            continue
    return out


def _git_sha(folder: Path) -> str | None:
    try:
        res = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True,
                             timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return res.stdout.strip() or None if res.returncode == 0 else None


def _plugins_used(study: Study) -> dict[str, dict[str, str]]:
    from reflow.registry import get_registry

    registry = get_registry()
    used: dict[str, dict[str, str]] = {}
    for stage in study.stages.values():
        names = [stage.task] + [item.name for _, item in _walk(stage.params, ())
                                if isinstance(item, ComponentSpec) and item.name]
        for name in names:
            entry = registry.get(name)
            used[name] = {"plugin": entry.plugin, "kind": entry.kind,
                          "class": f"{entry.cls.__module__}.{entry.cls.__qualname__}"}
    return used


def start_run(study: Study, out: Path | str = "runs", quiet: bool = False) -> Run:
    """Create a new run folder for ``study`` with its resolved study and manifest."""
    device = resolve_now(study.device)  # "auto" stays "auto" until a stage reads ctx.device (torch imported then)
    directory = new_run_dir(Path(out), study.name)
    lock = RunLock(directory, "reflow run").acquire()  # one writer per run folder, from its first file on
    dump(study.resolved(), directory / RESOLVED)
    manifest = {
        "study": study.name,
        "study_file": str(study.path) if study.path else None,
        "study_dir": str(study.directory),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "seed": study.seed,
        "device": device,
        "device_requested": study.device,
        "executor": study.executor.to_yaml(),
        "versions": _versions(),
        "platform": platform.platform(),
        "argv": sys.argv,
        "git_sha": _git_sha(study.directory),
        "plugins": _plugins_used(study),
        "status": "created",
        "stages": {name: {"task": st.task, "status": "pending", "seed": stage_seed(study.seed, name)}
                   for name, st in study.stages.items()},
    }
    run = Run(directory, study, manifest, quiet)
    run.lock = lock
    run.record_reads()
    run.save_manifest()
    return run


def open_run(run_dir: Path | str, quiet: bool = False) -> Run:
    """Reopen an existing run folder (for ``--resume``, ``show`` and ``report``)."""
    run_dir = Path(run_dir)
    manifest = read_manifest(run_dir)
    path = run_dir / RESOLVED
    if not path.exists():
        raise RunError(f"{path} is missing: cannot resume or report this run")
    raw, lines = load_with_lines(path.read_text(), str(path))
    study_file = manifest.get("study_file")
    anchor = Path(study_file) if study_file else Path(manifest.get("study_dir", run_dir)) / "study.yaml"
    try:
        study = validate_study(raw, lines=lines, source=str(path), path=anchor)
    except StudyError as exc:
        raise RunError(f"the stored study no longer validates (a plugin changed?):\n{exc}") from None
    return Run(run_dir, study, manifest, quiet)


def execute(run: Run, resume: bool = False) -> Run:
    """Run every stage not yet done, in order; stop at the first failure, keeping what finished."""
    if run.lock is None:  # start_run and resume_run take the lock earlier; run.close() releases it
        run.lock = lock_run(run.dir, "reflow run --resume" if resume else "reflow run")
    study = run.study
    run.manifest["status"] = "running"
    run.record_reads()
    run.manifest.setdefault("history", []).append(
        {"action": "resume" if resume else "start", "at": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    run.save_manifest()
    handler = _log_to(run.dir / "run.log")
    try:
        run.hook("on_study_start")
        for name, stage in study.stages.items():
            info = run.manifest["stages"].get(name, {})
            if info.get("status") == "done":
                log.info("stage %s: done earlier, skipped", name)
                continue
            _run_stage(run, name, stage, resuming=resume and info.get("status") in ("running", "failed", "waiting"))
        run.manifest["status"] = "done"
        run.save_manifest()
        from reflow.report import write_report

        write_report(run.dir)
    except WaitingForResults:
        run.manifest["status"] = "waiting"
        run.save_manifest()
        from reflow.report import write_report

        write_report(run.dir)
        raise
    except BaseException as exc:
        run.manifest["status"] = "failed" if isinstance(exc, Exception) else "interrupted"
        run.save_manifest()
        _report_after_failure(run)
        raise
    finally:
        run.close()
        logging.getLogger("reflow").removeHandler(handler)
        handler.close()
    return run


def _report_after_failure(run: Run) -> None:
    """A failed run gets its report too (the error, and every stage that finished); a problem writing it is
    logged and never hides the stage's own error."""
    from reflow.report import write_report

    try:
        write_report(run.dir)
    except Exception:
        log.warning("report.html could not be written:\n%s", traceback.format_exc())


def stage_context(run: Run, name: str, resuming: bool = False) -> RunContext:
    """The RunContext of stage ``name`` of ``run`` (also used by ``reflow ask``/``tell`` between runs)."""
    study = run.study
    folder = run.stage_dir(name)
    folder.mkdir(parents=True, exist_ok=True)
    return RunContext(
        run=run, stage=name, seed=stage_seed(study.seed, name), device=run.manifest["device"],
        folder=folder, study_dir=study.directory, quiet=run.quiet, timeout=study.executor.timeout,
        resuming=resuming,
    )


def _run_stage(run: Run, name: str, stage: Any, resuming: bool) -> None:
    ctx = stage_context(run, name, resuming)
    folder = ctx.folder
    t0 = time.time()
    run.set_stage(name, status="running", started=time.strftime("%Y-%m-%dT%H:%M:%S%z"), error=None)
    log.info("stage %s (%s): started", name, stage.task)
    try:
        if stage.values:  # ${...} numbers from earlier stages: put them in and validate the stage again
            from reflow.study import with_stage_values

            stage, numbers = with_stage_values(run.study, name, run)
            write_used(folder, numbers)
            for text, value in numbers.items():
                log.info("stage %s: %s = %.6g", name, text, value)
        task = stage.create_task()
        result = task.run(ctx)
        if not isinstance(result, StageResult):
            raise TypeError(f"task {stage.task!r} returned {type(result).__name__}, not a StageResult")
        for out_name, ds in result.outputs.items():
            ds.attrs.setdefault("stage", name)
            ds.attrs.setdefault("task", stage.task)
            ctx.store.write_output(out_name, ds)
        ctx.store.write_metrics(result.metrics)
        run._results[name] = result
        plots = task.plot(result, folder)
    except WaitingForResults as exc:
        run.set_stage(name, status="waiting", seconds=round(time.time() - t0, 3), error=None, waiting=str(exc))
        log.info("stage %s: waiting for results: %s", name, exc)
        raise
    except Exception as exc:
        seconds = time.time() - t0
        run.set_stage(name, status="failed", seconds=round(seconds, 3), error=f"{type(exc).__name__}: {exc}")
        log.error("stage %s failed:\n%s", name, traceback.format_exc())
        run.hook("on_stage_end", stage=name, result=exc)
        if isinstance(exc, ReflowError):
            raise
        raise StageFailed(f"stage {name!r} failed: {type(exc).__name__}: {exc} (see {run.dir / 'run.log'})"
                          ) from exc
    seconds = time.time() - t0
    run.set_stage(name, status="done", seconds=round(seconds, 3),
                  finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                  outputs=list(result.outputs), plots=[p.name for p in plots],
                  metrics={k: v for k, v in result.metrics.items() if isinstance(v, (int, float, str))},
                  units=variable_units(result.outputs.values()))
    log.info("stage %s: done in %.2f s", name, seconds)
    run.hook("on_stage_end", stage=name, result=result)


def _log_to(path: Path) -> logging.Handler:
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger = logging.getLogger("reflow")
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    return handler


def run_study(study: Study, out: Path | str = "runs", quiet: bool = False) -> Run:
    """Validate-free entry point for a validated study: create the run folder and run it."""
    return execute(start_run(study, out, quiet))


def resume_run(run_dir: Path | str, quiet: bool = False) -> Run:
    """Continue a run: finished stages are skipped, an unfinished DOE continues from its journal."""
    lock = lock_run(run_dir, "reflow run --resume")  # before reading anything: the holder may still write
    try:
        run = open_run(run_dir, quiet)
    except BaseException:
        lock.release()
        raise
    run.lock = lock
    return execute(run, resume=True)

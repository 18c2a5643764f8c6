"""Study files: YAML -> a validated :class:`Study`, with every problem reported at once.

Validation happens before anything runs. It checks the top-level keys, each stage against its task's
``Params``, each component against the registry and its own ``Params``, references between stages,
cycles, and the tasks' own cross-field checks. Each problem carries its YAML path and line.
"""

from __future__ import annotations

import difflib
import graphlib
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator, model_validator
from reflow.errors import PluginError, Problem, StudyError
from reflow.overrides import apply_overrides
from reflow.space import ParameterSpec, variable_name_problem
from reflow.specs import ComponentSpec, DataRef
from reflow.stagevalues import StageValue
from reflow.yamlio import brief, dotted, line_of, load_with_lines, read_text

# Names are matched whole (re.fullmatch): with re.match, "$" also matches before a trailing newline.
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?|mps")


class ExecutorConfig(BaseModel):
    """Where evaluations run: ``local`` (in-process, or ``workers: N`` processes) or Dask."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["local", "dask"] = "local"
    address: str | None = Field(None, description="Dask scheduler address, or 'local' for a LocalCluster")
    workers: int | None = Field(None, ge=1, description="processes (local) or LocalCluster workers (dask)")
    timeout: float | None = Field(None, gt=0, description="seconds allowed for one evaluation")
    chunk_size: int | None = Field(None, ge=1, description="trials per task sent to a worker, and per chunk of a "
                                                           "vectorized evaluation (default: automatic)")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if value is None or value == "local":
            return {"kind": "local"}
        if value == "dask":
            return {"kind": "dask", "address": "local"}
        if isinstance(value, dict) and "kind" not in value:
            value = dict(value)
            if "dask" in value:
                return {"kind": "dask", "address": value.pop("dask"), **value}
            if "local" in value:
                inner = value.pop("local") or {}
                if not isinstance(inner, dict):
                    raise ValueError(f"'local' takes a mapping like {{workers: 4}}, got {inner!r}")
                return {"kind": "local", **inner, **value}
            return {"kind": "local", **value}
        if isinstance(value, str):
            raise ValueError(
                f"executor must be 'local', {{local: {{workers: N}}}}, {{dask: tcp://host:port}} or "
                f"{{dask: local, workers: N}}; got {value!r}"
            )
        return value

    @model_validator(mode="after")
    def _address(self) -> ExecutorConfig:
        if self.kind == "dask" and not self.address:
            raise ValueError("a dask executor needs an address: a scheduler like tcp://host:8786, or 'local'")
        if self.kind == "local" and self.address:
            raise ValueError("'address' is for dask executors")
        return self

    def to_yaml(self) -> Any:
        if self.kind == "dask":
            out: dict[str, Any] = {"dask": self.address}
        else:
            out = {"local": {}}
        extra = {k: v for k, v in (("workers", self.workers), ("timeout", self.timeout),
                                   ("chunk_size", self.chunk_size)) if v is not None}
        if self.kind == "local":
            out["local"] = extra
            return out if extra else "local"
        return {**out, **extra}


class StudyHeader(BaseModel):
    """The top-level keys of a study."""

    model_config = ConfigDict(extra="forbid")

    study: str = Field(description="the study's name; runs go to runs/<study>/")
    description: str = ""
    seed: int = Field(0, ge=0, description="one seed gives every stage its own seed")
    device: str = Field("auto", description="auto | cpu | cuda | cuda:N")
    executor: ExecutorConfig = Field(default_factory=ExecutorConfig)
    stages: dict[str, Any] = Field(description="the stages, run in dependency order")

    @field_validator("study")
    @classmethod
    def _study_name(cls, v: str) -> str:
        if not _NAME.fullmatch(v):
            raise ValueError(f"use letters, digits, '-' and '_' (it names a folder), got {v!r}")
        return v

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        if not _DEVICE.fullmatch(str(v)):
            raise ValueError(f"allowed: auto, cpu, cuda, cuda:N; got {v!r}")
        return v

    @field_validator("stages")
    @classmethod
    def _stages(cls, v: dict[str, Any]) -> dict[str, Any]:
        if not v:
            raise ValueError("a study needs at least one stage")
        return v


@dataclass
class Stage:
    """A validated stage."""

    name: str
    task: str
    task_cls: type
    params: BaseModel
    depends_on: list[str] = field(default_factory=list)
    values: list[tuple[tuple[Any, ...], StageValue]] = field(default_factory=list)
    """The ``${...}`` stage values in this stage's YAML (path inside the stage, parsed reference)."""

    def create_task(self) -> Any:
        return self.task_cls(self.params)


@dataclass
class Study:
    """A validated study; stages are in the order they run."""

    name: str
    seed: int
    device: str
    executor: ExecutorConfig
    stages: dict[str, Stage]
    description: str = ""
    path: Path | None = None

    @property
    def directory(self) -> Path:
        """Relative paths in the study resolve against this folder."""
        return self.path.parent if self.path is not None else Path.cwd()

    def resolved(self) -> dict[str, Any]:
        """The study with every default filled in, as plain YAML-able data."""
        out: dict[str, Any] = {"study": self.name}
        if self.description:
            out["description"] = self.description
        out.update(seed=self.seed, device=self.device, executor=self.executor.to_yaml(), stages={})
        for name, stage in self.stages.items():
            out["stages"][name] = {"task": stage.task, **stage.params.model_dump(mode="json")}
        return out


@dataclass(frozen=True)
class StageRead:
    """Stage ``stage`` is read by another: its ``data`` (``output``: the output named, or None for the main
    one), its trained ``model``, or a ``value`` (``output``: the ``${...}`` text)."""

    stage: str
    what: Literal["data", "model", "value"]
    output: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"stage": self.stage, "what": self.what, "output": self.output}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StageRead:
        return cls(str(data["stage"]), data["what"], data.get("output"))


def stage_reads(study: Study) -> dict[str, list[StageRead]]:
    """For each stage, what it reads from earlier stages: data references, ``{stage: ...}`` models and
    ``${stage...}`` values, in the order the stage's params name them, each once.

    The runner records them in the manifest (``stages[name]["reads"]``); the report draws its links from there.
    """
    reads: dict[str, list[StageRead]] = {}
    for name, stage in study.stages.items():
        found: list[StageRead] = []
        for _, item in _walk(stage.params, ()):
            if isinstance(item, DataRef):
                found.append(StageRead(item.stage, "data", item.output))
            elif isinstance(item, ComponentSpec) and item.stage is not None:
                found.append(StageRead(item.stage, "model"))
        found.extend(StageRead(ref.stage, "value", ref.text) for _, ref in stage.values)
        reads[name] = list(dict.fromkeys(found))
    return reads


class StageChecker:
    """Handed to ``Task.check``: the registry, the stages, and a way to report problems."""

    def __init__(self, validator: _Validator, stage: str, params: BaseModel):
        self._v = validator
        self.stage = stage
        self.params = params
        self.registry = validator.registry
        self.study_dir = validator.study_dir

    def problem(self, path: tuple[Any, ...] | str, message: str) -> None:
        """Report a problem at ``path`` inside this stage (a tuple of keys or a dotted string)."""
        if isinstance(path, str):
            path = tuple(p for p in path.split(".") if p)
        self._v.add(("stages", self.stage) + tuple(path), message)

    def stage_task(self, name: str) -> type | None:
        return self._v.stage_tasks.get(name)

    def component_class(self, spec: ComponentSpec) -> type | None:
        if spec.name is None:
            return None
        entry = self.registry.find(spec.name, spec.kind)
        return entry.cls if entry else None


class _Validator:
    def __init__(self, raw: Any, lines: dict, source: str, registry: Any, study_dir: Path):
        self.raw = raw
        self.lines = lines
        self.source = source
        self.registry = registry
        self.study_dir = study_dir
        self.problems: list[Problem] = []
        self.stage_tasks: dict[str, type] = {}
        self.deferred: set[tuple[Any, ...]] = set()
        """Paths holding a ``${...}`` stage value: their type is checked when the number is known."""

    def add(self, path: tuple[Any, ...], message: str) -> None:
        if tuple(path) in self.deferred:
            return
        self.problems.append(Problem(dotted(path), message, line_of(self.lines, path)))

    def add_pydantic(self, prefix: tuple[Any, ...], exc: ValidationError, model: type) -> None:
        for err in exc.errors():
            loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
            self.add(prefix + loc, _message(err, model, loc))

    def run(self) -> Study:
        if not isinstance(self.raw, dict):
            self.add((), f"a study is a mapping with 'study' and 'stages', got {type(self.raw).__name__}")
            raise StudyError(self.problems, self.source)
        try:
            header = StudyHeader(**self.raw)
        except ValidationError as exc:
            self.add_pydantic((), exc, StudyHeader)
            header = None
        except TypeError:
            self.add((), "top-level keys must be strings")
            raise StudyError(self.problems, self.source) from None
        stages_raw = self.raw.get("stages")
        stages: dict[str, Stage] = {}
        if isinstance(stages_raw, dict):
            stages = self._stages(stages_raw)
        if self.problems or header is None:
            raise StudyError(self.problems, self.source)
        return Study(
            name=header.study, seed=header.seed, device=header.device, executor=header.executor,
            stages=stages, description=header.description,
        )

    def _stage_values(self, name: str, body: dict[str, Any]) -> list[tuple[tuple[Any, ...], StageValue]]:
        """Parse the ``${...}`` strings of a stage and check the stages and outputs they name."""
        from reflow import stagevalues

        found = []
        for loc, text in stagevalues.find(body):
            path = ("stages", name) + loc
            try:
                ref = stagevalues.parse(text)
            except ValueError as exc:
                self.add(path, str(exc))
                continue
            self.deferred.add(path)
            stages = self.raw.get("stages", {})
            if ref.stage == name:
                self.problems.append(Problem(dotted(path), f"{text}: a stage cannot use its own results",
                                             line_of(self.lines, path)))
            elif ref.stage not in stages:
                self.problems.append(Problem(dotted(path), f"{text}: {_missing_stage(ref.stage, stages)}",
                                             line_of(self.lines, path)))
            else:
                found.append((loc, ref))
        return found

    def _check_value_outputs(self, name: str, values: list[tuple[tuple[Any, ...], StageValue]]) -> None:
        for loc, ref in values:
            cls = self.stage_tasks.get(ref.stage)
            if ref.output is not None and cls is not None and ref.output not in cls.outputs:
                close = difflib.get_close_matches(ref.output, cls.outputs, n=1)
                hint = f"; did you mean {ref.stage}.{close[0]}?" if close else ""
                path = ("stages", name) + loc
                self.problems.append(Problem(dotted(path), f"{ref.text}: stage {ref.stage!r} has no output "
                                             f"{ref.output!r}{hint} (its outputs: {', '.join(cls.outputs)})",
                                             line_of(self.lines, path)))

    def _stages(self, stages_raw: dict[str, Any]) -> dict[str, Stage]:
        parsed: dict[str, tuple[str, type, BaseModel]] = {}
        values: dict[str, list[tuple[tuple[Any, ...], StageValue]]] = {}
        for name, body in stages_raw.items():
            if isinstance(name, str) and isinstance(body, dict):
                values[name] = self._stage_values(name, body)
        for name, body in stages_raw.items():
            path = ("stages", name)
            if not isinstance(name, str) or not _NAME.fullmatch(name):
                self.add(path, f"stage names use letters, digits, '-' and '_' (no dots), got {name!r}")
                continue
            if not isinstance(body, dict):
                self.add(path, f"a stage is a mapping with a 'task' key, got {body!r}")
                continue
            task = body.get("task")
            if task is None:
                tasks = ", ".join(self.registry.names("task"))
                self.add(path, f"missing key 'task' (one of: {tasks})")
                continue
            if not isinstance(task, str) or self.registry.find(task, "task") is None:
                self.add(path + ("task",), self.registry.unknown_message(str(task), "task"))
                continue
            cls = self.registry.get(task, "task").cls
            self.stage_tasks[name] = cls
            fields = {k: v for k, v in body.items() if k != "task"}
            try:
                params = cls.Params(**fields)
            except ValidationError as exc:
                self.add_pydantic(path, exc, cls.Params)
                for err in exc.errors():
                    where = path + tuple(err["loc"])
                    if where in self.deferred:
                        self.problems.append(Problem(
                            dotted(where), f"{task!r} does not take a stage value here: {err['msg']}; stage values "
                                           "(${...}) stand in component params and fixed space values",
                            line_of(self.lines, where)))
                self._check_valid_fields(path, cls.Params, fields, exc)
                continue
            except TypeError:
                self.add(path, "stage keys must be strings")
                continue
            parsed[name] = (task, cls, params)
            self._check_space_names(path, params)

        stages: dict[str, Stage] = {}
        graph: dict[str, set[str]] = {}
        for name, (task, cls, params) in parsed.items():
            before = len(self.problems)
            deps: set[str] = set()
            for loc, item in _walk(params, (), stages_raw[name]):
                path = ("stages", name) + loc
                if isinstance(item, ComponentSpec):
                    self._component(path, item, deps)
                elif isinstance(item, DataRef):
                    self._data_ref(path, item, name)
                    deps.add(item.stage)
            self._check_value_outputs(name, values.get(name, []))
            deps.update(ref.stage for _, ref in values.get(name, []))
            if name in deps:
                self.add(("stages", name), "a stage cannot use its own output")
                deps.discard(name)
            graph[name] = deps
            if len(self.problems) == before:
                cls(params).check(StageChecker(self, name, params))
            stages[name] = Stage(name, task, cls, params, sorted(deps), values.get(name, []))
        try:  # cycles are reported alongside any other problem
            graphlib.TopologicalSorter(graph).prepare()
        except graphlib.CycleError as exc:
            cycle = list(reversed(exc.args[1]))
            self.add(("stages", cycle[0]), "stages depend on each other in a cycle: " + " -> ".join(cycle))
            return stages
        if self.problems:
            return stages
        return {s: stages[s] for s in _stable_topo(graph, list(stages))}

    def _check_space_names(self, path: tuple[Any, ...], params: BaseModel) -> None:
        """Space factors name variables (dataset columns, constraint and ``${...}`` names): checked whole."""
        for field_name in type(params).model_fields:
            value = getattr(params, field_name)
            if isinstance(value, dict) and value and all(isinstance(v, ParameterSpec) for v in value.values()):
                for key in value:
                    problem = variable_name_problem(key)
                    if problem:
                        self.add(path + (field_name, key), problem)

    def _check_valid_fields(self, path: tuple[Any, ...], model: type[BaseModel], fields: dict[str, Any],
                            exc: ValidationError) -> None:
        """When a stage fails validation, still check the components and references of its valid fields,
        so that one run of ``reflow validate`` reports every problem."""
        failed = {err["loc"][0] for err in exc.errors() if err["loc"]}
        for name, info in model.model_fields.items():
            if name not in fields or name in failed:
                continue
            try:
                annotation = Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
                value = TypeAdapter(annotation).validate_python(fields[name])
            except ValidationError:
                continue
            for loc, item in _walk(value, (name,), fields[name]):
                if isinstance(item, ComponentSpec):
                    self._component(path + loc, item, set())
                elif isinstance(item, DataRef):
                    self._data_ref(path + loc, item, path[-1])

    def _component(self, path: tuple[Any, ...], spec: ComponentSpec, deps: set[str]) -> None:
        if spec.stage is not None:
            if spec.stage not in self.raw.get("stages", {}):
                self.add(path + ("stage",), _missing_stage(spec.stage, self.raw["stages"]))
                return
            cls = self.stage_tasks.get(spec.stage)
            if cls is not None and not cls.produces_model:
                self.add(path + ("stage",), f"stage {spec.stage!r} trains no model (its task is not a "
                                            f"training task), so it cannot be used as {_a_kind(spec.kind)}")
            deps.add(spec.stage)
            return
        entry = self.registry.find(spec.name, spec.kind)
        if entry is None:
            self.add(path + (spec.name,), self.registry.unknown_message(spec.name, spec.kind))
            return
        try:
            spec.validated = entry.cls.Params(**spec.params)
        except ValidationError as exc:
            self.add_pydantic(path + (spec.name,), exc, entry.cls.Params)
        except TypeError:
            self.add(path + (spec.name,), "parameter names must be strings")

    def _data_ref(self, path: tuple[Any, ...], ref: DataRef, own: str) -> None:
        stages = self.raw.get("stages", {})
        if ref.stage not in stages:
            self.add(path, _missing_stage(ref.stage, stages))
            return
        cls = self.stage_tasks.get(ref.stage)
        if cls is not None and ref.output is not None and ref.output not in cls.outputs:
            close = difflib.get_close_matches(ref.output, cls.outputs, n=1)
            hint = f"; did you mean {ref.stage}.{close[0]}?" if close else ""
            self.add(path, f"stage {ref.stage!r} has no output {ref.output!r}{hint} "
                           f"(its outputs: {', '.join(cls.outputs)})")


def _stable_topo(graph: dict[str, set[str]], declared: list[str]) -> list[str]:
    """Topological order that keeps the declared order wherever dependencies allow."""
    done: list[str] = []
    remaining = list(declared)
    while remaining:
        for s in remaining:
            if all(d in done for d in graph.get(s, ())):
                done.append(s)
                remaining.remove(s)
                break
        else:  # pragma: no cover - cycles are caught before
            raise RuntimeError("cycle")
    return done


def _a_kind(kind: str) -> str:
    label = kind.replace("_", " ")
    return ("an " if label[:1] in "aeiou" else "a ") + label


def _missing_stage(name: str, stages: dict[str, Any]) -> str:
    close = difflib.get_close_matches(name, [str(s) for s in stages], n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"no stage named {name!r}{hint} (stages: {', '.join(map(str, stages))})"


def _walk(obj: Any, loc: tuple[Any, ...], raw: Any = None):
    """Yield (path, item) for every ComponentSpec and DataRef inside a params model.

    ``raw`` is the YAML data the model came from: a one-item list gets an index in the path only where
    the YAML has a list there (``evaluate: [x]``), not where one value was wrapped (``evaluate: x``).
    """
    if isinstance(obj, (ComponentSpec, DataRef)):
        yield loc, obj
    elif isinstance(obj, BaseModel):
        for name in type(obj).model_fields:
            yield from _walk(getattr(obj, name), loc + (name,), raw.get(name) if isinstance(raw, dict) else None)
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _walk(v, loc + (k,), raw.get(k) if isinstance(raw, dict) else None)
    elif isinstance(obj, (list, tuple)):
        single = len(obj) == 1 and not isinstance(raw, list)
        for i, v in enumerate(obj):
            sub = raw if single else (raw[i] if isinstance(raw, list) and i < len(raw) else None)
            yield from _walk(v, loc if single else loc + (i,), sub)


def _message(err: dict[str, Any], model: type, loc: tuple[Any, ...]) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        allowed = _allowed_keys(model, loc[:-1])
        key = str(loc[-1])
        close = difflib.get_close_matches(key, allowed, n=1)
        msg = f"unknown key {key!r}"
        if close:
            msg += f"; did you mean {close[0]!r}?"
        if allowed:
            msg += f" (allowed: {', '.join(allowed)})"
        return msg
    if kind == "missing":
        return "missing required key"
    msg = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    if "input" in err and kind not in ("value_error", "assertion_error") and not isinstance(err["input"], dict):
        msg += f" (got {brief(err['input'])})"
    return msg


def _allowed_keys(model: Any, loc: tuple[Any, ...]) -> list[str]:
    """The field names of the model found by following ``loc`` from ``model``."""
    target: Any = model
    for part in loc:
        target = _unwrap(target)
        if isinstance(target, type) and issubclass(target, BaseModel):
            f = target.model_fields.get(part) if isinstance(part, str) else None
            if f is None:
                return []
            target = f.annotation
        else:
            origin = typing.get_origin(target)
            args = typing.get_args(target)
            if origin in (list, tuple) and args:
                target = args[0]
            elif origin is dict and len(args) == 2:
                target = args[1]
            else:
                return []
    target = _unwrap(target)
    if isinstance(target, type) and issubclass(target, BaseModel):
        return list(target.model_fields)
    return []


def _unwrap(tp: Any) -> Any:
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, types.UnionType):
            models = [a for a in typing.get_args(tp) if a is not type(None)]
            tp = models[0] if len(models) == 1 else next(
                (a for a in models if isinstance(a, type) and issubclass(a, BaseModel)), models[0])
        else:
            return tp


def with_stage_values(study: Study, name: str, run: Any) -> tuple[Stage, dict[str, float]]:
    """Stage ``name`` validated again with its ``${...}`` stage values replaced by their numbers in ``run``.

    Returns the stage and the numbers by reference text. A number the component does not accept (out of its
    bounds, say) is a :class:`StudyError` naming the field, the reference and the value.
    """
    from reflow import stagevalues

    stage = study.stages[name]
    numbers = {ref.text: stagevalues.compute(ref, run) for _, ref in stage.values}
    raw = study.resolved()
    body = raw["stages"][name]
    raw["stages"][name] = stagevalues.substitute(
        body, {loc: numbers[text] for loc, text in stagevalues.find(body) if text in numbers})
    shown = ", ".join(f"{text} = {value:.6g}" for text, value in numbers.items())
    try:
        again = validate_study(raw, source=f"stage {name!r} with its stage values ({shown})", path=study.path)
    except StudyError as exc:
        own = [p for p in exc.problems if p.path == "stages" or p.path.startswith(f"stages.{name}")]
        raise StudyError(own or exc.problems, f"stage {name!r} with its stage values ({shown})") from None
    return again.stages[name], numbers


def validate_study(raw: Any, *, lines: dict | None = None, source: str = "<study>",
                   path: Path | None = None, registry: Any = None) -> Study:
    """Validate already-parsed study data; raise :class:`StudyError` listing every problem."""
    from reflow.registry import get_registry

    registry = registry or get_registry()
    study_dir = path.parent if path is not None else Path.cwd()
    study = _Validator(raw, lines or {}, source, registry, study_dir).run()
    study.path = path
    return study


def load_study(path: str | Path, overrides: list[str] | None = None, registry: Any = None) -> Study:
    """Read, override (``--set``) and validate a study file."""
    path = Path(path)
    text = read_text(path)
    raw, lines = load_with_lines(text, str(path))
    if overrides:
        raw = apply_overrides(raw, overrides, source=str(path))
    try:
        return validate_study(raw, lines=lines, source=str(path), path=path.resolve(), registry=registry)
    except PluginError as exc:  # e.g. a clash on a name the study uses
        raise StudyError([Problem("", str(exc))], str(path)) from None

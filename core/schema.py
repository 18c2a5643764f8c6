"""What a component asks for and declares, as a study author reads it: the one description of params.

``reflow plugins show`` and the YAML reference (:mod:`reflow.docgen`) both print :func:`param_rows` and
:func:`declared_variables`, so a component reads the same in the terminal and in the docs: each param's YAML
type (``int | null``, ``list[str]``, ``optimizer or design``), default as YAML (``null``, ``true``,
``"maximin"``), bounds and description; an evaluator's inputs and outputs with their declared units.
"""

from __future__ import annotations

import inspect
import json
import re
import types
import typing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

if TYPE_CHECKING:
    from reflow.components import Evaluator, Variable


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z`])")


def summary(doc: str | None) -> str:
    """A component's summary: the first sentence of its docstring, on one line (its first source line may stop
    mid-sentence); the ``reflow plugins`` table and the YAML reference's tables show it."""
    paragraph = " ".join(inspect.cleandoc(doc or "").split("\n\n")[0].split())
    return _SENTENCE_END.split(paragraph, maxsplit=1)[0]


@dataclass
class ParamRow:
    """One param of a Params model: key (its YAML alias), type, default as YAML ("" when required), bounds."""

    name: str
    type: str
    default: str
    required: bool
    constraints: str
    description: str


def yaml_value(value: Any) -> str:
    """A value as YAML flow text (JSON is YAML): ``null``, ``true``, ``16``, ``"maximin"``, ``[1, 2]``."""
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    try:
        return json.dumps(value)
    except TypeError:
        return str(value)


def _default(field: Any) -> str:
    if field.default_factory is not None:
        return yaml_value(field.default_factory())
    if field.default is PydanticUndefined:
        return ""
    return yaml_value(field.default)


_BOUND_SYMBOLS = (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<="), ("multiple_of", "multiple of"),
                  ("min_length", "length >="), ("max_length", "length <="))


def constraints(field: Any) -> str:
    """``>= 1``, ``> 0, < 1``: the bounds pydantic checks for a field."""
    out = []
    for item in field.metadata:  # annotated_types bounds: each carries one of these names
        for attr, symbol in _BOUND_SYMBOLS:
            value = getattr(item, attr, None)
            if value is not None:
                out.append(f"{symbol} {value}")
    return ", ".join(out)


_SPEC_LABELS = (
    ("DataSourceSpec", "data source"),
    ("ModelSpec", "model | {stage: NAME}"),
    ("EvaluatorSpec", "evaluator | {stage: NAME}"),
    ("OptimizerSpec", "optimizer or design"),
    ("EvaluatorPipeline", "evaluator | list of evaluators"),
    ("StageData", "stage | stage.output"),
)


def _spec_labels() -> dict[int, str]:
    """The validator function of each reference type in :mod:`reflow.specs`, mapped to its YAML form."""
    from reflow import specs

    labels = {}
    for alias, label in _SPEC_LABELS:
        for meta in typing.get_args(vars(specs).get(alias))[1:]:
            func = getattr(meta, "func", None)
            if func is not None and type(meta).__name__ == "BeforeValidator":
                labels[id(func)] = label
    return labels


def yaml_type(annotation: Any, metadata: list[Any] | tuple[Any, ...] = (), labels: dict[int, str] | None = None,
              ) -> str:
    """A type as a study author reads it: ``float``, ``int | null``, ``list[str]``, ``'a' | 'b'``, ``data source``."""
    labels = _spec_labels() if labels is None else labels
    for meta in metadata:
        label = labels.get(id(getattr(meta, "func", None)))
        if label:
            return label
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return yaml_type(args[0], args[1:], labels)
    if origin is typing.Literal:
        return " | ".join(json.dumps(a) if not isinstance(a, str) else repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(yaml_type(a, (), labels) for a in args)
    if origin in (list, tuple, set, frozenset):
        inner = ", ".join(yaml_type(a, (), labels) for a in args if a is not Ellipsis)
        return f"list[{inner}]"
    if origin is dict:
        return f"dict[{', '.join(yaml_type(a, (), labels) for a in args)}]"
    if annotation is type(None):
        return "null"
    if annotation is Any:
        return "any"
    return getattr(annotation, "__name__", str(annotation))


# Descriptions for keys whose models do not carry one (the study header is read by reflow's validator).
_FALLBACK_DESCRIPTIONS = {
    "StudyHeader.description": "what the study is for, in a sentence; shown under the title of the report",
    "StudyHeader.executor": "where evaluations run: see executor below",
    "ExecutorConfig.kind": "local or dask (usually given by the short forms below)",
}


def param_rows(model: type[BaseModel]) -> list[ParamRow]:
    """Every field of ``model`` with its YAML type, default (as YAML), bounds and description."""
    labels = _spec_labels()
    rows = []
    for name, field in model.model_fields.items():
        required = field.default is PydanticUndefined and field.default_factory is None
        description = field.description or _FALLBACK_DESCRIPTIONS.get(f"{model.__name__}.{name}", "")
        rows.append(ParamRow(field.alias or name, yaml_type(field.annotation, field.metadata, labels),
                             "" if required else _default(field), required, constraints(field), description))
    return rows


def nested_models(model: type[BaseModel]) -> list[type[BaseModel]]:
    """Pydantic models used inside ``model``'s fields (``budget:``, ``space:`` entries), recursively."""
    found: dict[str, type[BaseModel]] = {}

    def visit(annotation: Any) -> None:
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            key = f"{annotation.__module__}.{annotation.__qualname__}"
            if key not in found:
                found[key] = annotation
                for f in annotation.model_fields.values():
                    visit(f.annotation)
            return
        for arg in typing.get_args(annotation):
            visit(arg)

    for f in model.model_fields.values():
        visit(f.annotation)
    return list(found.values())


def declared_variables(cls: type[Evaluator]) -> tuple[tuple[Variable, ...], tuple[Variable, ...]]:
    """An evaluator's inputs and outputs at its default params (some name them after their params), else
    the class's declaration (params without defaults)."""
    try:
        instance = cls(cls.Params())
        return tuple(instance.input_variables()), tuple(instance.output_variables())
    except Exception:  # a required param: the variables cannot be known without a study
        return tuple(cls.inputs), tuple(cls.outputs)


def variable_range(variable: Variable) -> str:
    """An input's range as the docs and ``reflow plugins show`` print it: ``0.05 … 2``, or its choices."""
    if variable.low is not None and variable.high is not None:
        return f"{variable.low:g} … {variable.high:g}"
    return ", ".join(map(str, variable.choices)) if variable.choices else ""

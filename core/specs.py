"""Types for the parts of a stage that point elsewhere: components and earlier stages' outputs.

Use them in a task's ``Params`` and the study validator finds them, checks them against the registry
and the other stages, and orders stages by them::

    class Params(reflow.Params):
        data: StageData                    # "sam" or "inspect.predictions"
        source: DataSourceSpec             # "csv" or {csv: {path: x.csv}}
        evaluate: EvaluatorPipeline        # one evaluator or a list; {stage: life} for a trained model
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, PlainSerializer, WithJsonSchema

_REF = re.compile(r"^([A-Za-z_][A-Za-z0-9_-]*)(?:\.([A-Za-z_][A-Za-z0-9_]*))?$")


@dataclass
class ComponentSpec:
    """A component named in a study: ``name`` with raw ``params``, or ``stage`` (a trained model).

    After validation ``validated`` holds the component's ``Params`` instance.
    """

    kind: str
    name: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    stage: str | None = None
    validated: BaseModel | None = None

    def create(self, registry: Any = None) -> Any:
        """Instantiate the component (not for ``{stage: ...}`` specs, which the runner resolves)."""
        from reflow.registry import get_registry

        if self.stage is not None:
            raise ValueError("a {stage: ...} component is resolved from the run, not created")
        registry = registry or get_registry()
        cls = registry.get(self.name, self.kind).cls
        return cls(self.validated if self.validated is not None else cls.Params(**self.params))

    def to_yaml(self) -> Any:
        if self.stage is not None:
            return {"stage": self.stage}
        params = self.validated.model_dump(mode="json") if self.validated is not None else self.params
        return {self.name: params}

    @property
    def label(self) -> str:
        return f"stage {self.stage}" if self.stage is not None else str(self.name)


def _parse_component(kind: str, allow_stage: bool):
    def parse(value: Any) -> ComponentSpec:
        if isinstance(value, ComponentSpec):
            return value
        if isinstance(value, str):
            return ComponentSpec(kind, value)
        if isinstance(value, dict) and len(value) == 1:
            ((name, params),) = value.items()
            if name == "stage":
                if not allow_stage:
                    raise ValueError("a trained model ({stage: ...}) cannot be used here")
                if not isinstance(params, str):
                    raise ValueError(f"{{stage: ...}} takes a stage name, got {params!r}")
                return ComponentSpec(kind, stage=params)
            if not isinstance(name, str):
                raise ValueError(f"a component name must be a string, got {name!r}")
            if params is None:
                params = {}
            if not isinstance(params, dict):
                raise ValueError(
                    f"the params of {name!r} must be a mapping like {{{name}: {{key: value}}}}, got {params!r}"
                )
            return ComponentSpec(kind, name, dict(params))
        raise ValueError(
            "name a component bare ('lhs') or as a one-key mapping to its params ({lhs: {samples: 24}}), "
            f"got {value!r}"
        )

    return parse


def _component_type(kind: str, allow_stage: bool = False) -> Any:
    return Annotated[
        ComponentSpec,
        BeforeValidator(_parse_component(kind, allow_stage)),
        PlainSerializer(lambda s: s.to_yaml()),
        WithJsonSchema({"anyOf": [{"type": "string"}, {"type": "object"}]}),
    ]


DataSourceSpec = _component_type("data_source")
ModelSpec = _component_type("model", allow_stage=True)
EvaluatorSpec = _component_type("evaluator", allow_stage=True)
OptimizerSpec = _component_type("optimizer")


def _parse_pipeline(value: Any) -> list[Any]:
    if isinstance(value, list):
        if not value:
            raise ValueError("an evaluator pipeline needs at least one step")
        return value
    return [value]


EvaluatorPipeline = Annotated[
    list[EvaluatorSpec],
    BeforeValidator(_parse_pipeline),
    WithJsonSchema({"anyOf": [{"type": "string"}, {"type": "object"}, {"type": "array"}]}),
]
"""One evaluator or a list of them; each step's outputs feed the next step's inputs by name."""


@dataclass(frozen=True)
class DataRef:
    """``stage`` (its main output) or ``stage.output`` (a named output)."""

    stage: str
    output: str | None = None

    def __str__(self) -> str:
        return self.stage if self.output is None else f"{self.stage}.{self.output}"


def _parse_ref(value: Any) -> DataRef:
    if isinstance(value, DataRef):
        return value
    if not isinstance(value, str) or not _REF.fullmatch(value):
        raise ValueError(f"a data reference is 'stage' or 'stage.output', got {value!r}")
    stage, output = _REF.fullmatch(value).groups()
    return DataRef(stage, output)


StageData = Annotated[
    DataRef,
    BeforeValidator(_parse_ref),
    PlainSerializer(str),
    WithJsonSchema({"type": "string"}),
]

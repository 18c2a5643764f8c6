"""Human-readable descriptions of Params models, for ``reflow plugins show`` and the YAML reference."""

from __future__ import annotations

import typing
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined


def type_name(annotation: Any) -> str:
    """A short readable type: ``float``, ``int | None``, ``list[str]``, ``'a' | 'b'``."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        base = args[0]
        name = getattr(base, "__name__", None)
        if name == "ComponentSpec":
            return "component"
        if name == "DataRef":
            return "stage[.output]"
        if typing.get_origin(base) is list:
            return "component | list[component]"
        return type_name(base)
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in args)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return " | ".join(type_name(a) for a in args)
    if origin in (list, tuple, set):
        return f"{origin.__name__}[{', '.join(type_name(a) for a in args if a is not Ellipsis)}]"
    if origin is dict:
        return f"dict[{', '.join(type_name(a) for a in args)}]"
    if annotation is type(None):
        return "None"
    return getattr(annotation, "__name__", str(annotation))


def param_rows(model: type[BaseModel]) -> list[tuple[str, str, str, str]]:
    """(name, type, default, description) for every field of a Params model."""
    rows = []
    for name, f in model.model_fields.items():
        if f.default is PydanticUndefined and f.default_factory is None:
            default = "(required)"
        elif f.default_factory is not None:
            default = repr(f.default_factory())
        else:
            default = repr(f.default)
        rows.append((name, type_name(f.annotation), default, f.description or ""))
    return rows

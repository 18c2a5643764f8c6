"""YAML in and out: ``safe_load`` semantics, plus the line of every key so errors can point at it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from reflow.errors import Problem, StudyError

Path_ = tuple[Any, ...]


class SafeLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` plus YAML 1.2 floats without a dot (``1e-3``), which YAML 1.1 reads as text."""


SafeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def load_with_lines(text: str, source: str = "<study>") -> tuple[Any, dict[Path_, int]]:
    """Parse YAML safely; return the data and a map from key path (tuple) to 1-based line number.

    Duplicate keys are errors (plain ``safe_load`` silently keeps the last one).
    """
    lines: dict[Path_, int] = {}
    problems: list[Problem] = []
    loader = SafeLoader(text)
    try:
        try:
            node = loader.get_single_node()
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = mark.line + 1 if mark is not None else None
            reason = getattr(exc, "problem", None) or str(exc)
            raise StudyError([Problem("", f"invalid YAML: {reason}", line)], source) from None
        if node is None:
            return None, lines
        lines[()] = node.start_mark.line + 1

        built: dict[int, Any] = {}  # aliases reuse what their anchor built (as safe_load shares objects)
        active: set[int] = set()

        def build(n: yaml.Node, path: Path_) -> Any:
            if id(n) in built:
                return built[id(n)]
            if id(n) in active:
                problems.append(Problem(_dotted(path), "an alias refers to a node that contains it",
                                        lines.get(path, n.start_mark.line + 1)))
                return None
            if isinstance(n, yaml.MappingNode) and n.tag == "tag:yaml.org,2002:map":
                active.add(id(n))
                explicit = {id(k) for k, _ in n.value}
                loader.flatten_mapping(n)  # merge keys (<<: *base), as safe_load does
                out: dict[Any, Any] = {}
                written: set[Any] = set()  # keys written here; merged ones may be overridden
                for key_node, value_node in n.value:
                    key = loader.construct_object(key_node, deep=True)
                    if isinstance(key, (list, dict, set)):
                        problems.append(Problem(_dotted(path), "keys must be plain names",
                                                key_node.start_mark.line + 1))
                        continue
                    if id(key_node) in explicit:
                        if key in written:
                            problems.append(Problem(_dotted(path + (key,)), "duplicate key",
                                                    key_node.start_mark.line + 1))
                        written.add(key)
                    lines[path + (key,)] = key_node.start_mark.line + 1
                    out[key] = build(value_node, path + (key,))
                active.discard(id(n))
                built[id(n)] = out
                return out
            if isinstance(n, yaml.SequenceNode) and n.tag == "tag:yaml.org,2002:seq":
                active.add(id(n))
                items = []
                for i, item in enumerate(n.value):
                    lines[path + (i,)] = item.start_mark.line + 1
                    items.append(build(item, path + (i,)))
                active.discard(id(n))
                built[id(n)] = items
                return items
            return loader.construct_object(n, deep=True)  # scalars and other tags, by safe_load's rules

        try:
            data = build(node, ())
        except yaml.YAMLError as exc:  # e.g. a tag safe_load refuses (!!python/object): no traceback
            mark = getattr(exc, "problem_mark", None)
            line = mark.line + 1 if mark is not None else None
            reason = getattr(exc, "problem", None) or str(exc)
            raise StudyError([Problem("", f"invalid YAML: {reason}", line)], source) from None
    finally:
        loader.dispose()
    if problems:
        raise StudyError(problems, source)
    return data, lines


def _dotted(path: Path_) -> str:
    return dotted(path)


def dotted(path: Path_) -> str:
    """``('stages', 'doe', 'space', 0)`` -> ``stages.doe.space[0]``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def line_of(lines: dict[Path_, int], path: Path_) -> int | None:
    """The line of ``path`` or of its nearest ancestor that has one."""
    path = tuple(path)
    while path:
        if path in lines:
            return lines[path]
        path = path[:-1]
    return lines.get(())


def dump(data: Any, path: Path) -> None:
    """Write YAML atomically (via a temporary name)."""
    from reflow.store import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(data, sort_keys=False, allow_unicode=True))

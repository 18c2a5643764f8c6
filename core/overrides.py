"""``--set key.path=value`` overrides, applied to the raw study before validation.

Values are parsed as YAML scalars or flow collections (``3``, ``0.5``, ``true``, ``[1, 2]``,
``{lhs: {samples: 8}}``). The path segment ``params`` after a stage name means "the params of the stage's
component" when the stage has exactly one, so ``stages.inspect.params.epochs=50`` reaches
``stages.inspect.model.vit-mae.epochs``.
"""

from __future__ import annotations

import copy
from typing import Any

from reflow.errors import Problem, StudyError
from reflow.yamlio import load_value

COMPONENT_KEYS = ("model", "source", "design", "optimizer", "evaluate")


def parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise ValueError(f"--set takes key.path=value, got {text!r}")
    key, _, value = text.partition("=")
    parts = [p for p in key.strip().split(".")]
    if not key.strip() or any(not p for p in parts):
        raise ValueError(f"--set: bad key path {key!r}")
    try:
        parsed = _load_scalar(value) if value.strip() else ""
    except StudyError as exc:
        problem = exc.problems[0].message
        if not problem.startswith("invalid YAML"):  # too big, too deep, control characters: refused
            raise ValueError(f"{key.strip()}: {problem}") from None
        parsed = value  # text that is not YAML is taken as a string, as before
    return parts, parsed


def _load_scalar(value: str) -> Any:
    """A value as YAML, read like the study file (safe_load rules, ``1e-3`` is a number, same limits)."""
    return load_value(value, "--set")


def apply_overrides(raw: Any, overrides: list[str], source: str = "<study>") -> Any:
    """Return a copy of ``raw`` with every override applied; all problems reported together."""
    raw = copy.deepcopy(raw) if raw is not None else {}
    problems: list[Problem] = []
    for text in overrides:
        try:
            parts, value = parse_override(text)
            _set(raw, _expand_params(raw, parts), value)
        except ValueError as exc:
            problems.append(Problem("--set", str(exc)))
    if problems:
        raise StudyError(problems, source)
    return raw


def _expand_params(raw: Any, parts: list[str]) -> list[str]:
    if len(parts) >= 4 and parts[0] == "stages" and parts[2] == "params":
        stage = raw.get("stages", {}).get(parts[1]) if isinstance(raw, dict) else None
        if isinstance(stage, dict) and "params" not in stage:
            found = [k for k in COMPONENT_KEYS if k in stage and isinstance(stage[k], (str, dict))]
            if len(found) != 1:
                raise ValueError(
                    f"'stages.{parts[1]}.params' is ambiguous or empty: the stage has "
                    f"{len(found)} components ({', '.join(found) or 'none'}); give the full path"
                )
            key = found[0]
            comp = stage[key]
            if isinstance(comp, str):
                stage[key] = comp = {comp: {}}
            if not (isinstance(comp, dict) and len(comp) == 1):
                raise ValueError(f"stages.{parts[1]}.{key} is not a single component")
            name = next(iter(comp))
            if comp[name] is None:
                comp[name] = {}
            return ["stages", parts[1], key, name] + parts[3:]
    return parts


def _set(raw: Any, parts: list[str], value: Any) -> None:
    node = raw
    for i, part in enumerate(parts[:-1]):
        if isinstance(node, list):
            idx = _index(part, node, parts[: i + 1])
            node = node[idx]
            continue
        if not isinstance(node, dict):
            raise ValueError(f"cannot set {'.'.join(parts)}: {'.'.join(parts[:i])} is not a mapping")
        if node.get(part) is None:
            node[part] = {}
        elif isinstance(node[part], str) and i + 1 < len(parts) - 0 and part in COMPONENT_KEYS:
            node[part] = {node[part]: {}}
        node = node[part]
    last = parts[-1]
    if isinstance(node, list):
        node[_index(last, node, parts)] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise ValueError(f"cannot set {'.'.join(parts)}: {'.'.join(parts[:-1])} is not a mapping")


def _index(part: str, node: list, path: list[str]) -> int:
    try:
        idx = int(part)
    except ValueError:
        raise ValueError(f"{'.'.join(path)}: {part!r} indexes a list; use a number") from None
    if not -len(node) <= idx < len(node):
        raise ValueError(f"{'.'.join(path)}: index {idx} is out of range (the list has {len(node)} items)")
    return idx

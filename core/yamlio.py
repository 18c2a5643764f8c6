"""YAML in and out: ``safe_load`` semantics, plus the line of every key so errors can point at it.

Study files come from people and from other programs, so reading one is bounded: a file larger than
:data:`MAX_BYTES`, text that is not UTF-8 or holds control characters, nesting deeper than
:data:`MAX_DEPTH` and aliases that expand to more than :data:`MAX_NODES` values ("billion laughs") are
refused with a :class:`StudyError` before anything big is built.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from reflow.errors import Problem, StudyError

Path_ = tuple[Any, ...]

MAX_BYTES = 256 * 1024
"""Largest study file read (the example studies are under 8 kB; data belongs in data files)."""
MAX_DEPTH = 64
"""Deepest nesting of mappings and lists (studies use under 10 levels)."""
MAX_NODES = 10_000
"""Most values a document may hold, counted as written and again with its aliases expanded (every key, value
and list item; the example studies hold under 400). PyYAML composes some 15,000 values a second on a busy
machine, so the count is kept while composing and stops a hostile file in well under a second."""


class _TooDeep(yaml.composer.ComposerError):
    """Valid YAML nested beyond :data:`MAX_DEPTH` or holding more than :data:`MAX_NODES` values: a limit,
    not a syntax error."""


class SafeLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` plus YAML 1.2 floats without a dot (``1e-3``), which YAML 1.1 reads as text,
    and a limit on nesting depth while composing (the composer recurses, so deep input would otherwise end
    in a ``RecursionError``)."""

    _depth = 0
    _nodes = 0

    def fetch_flow_collection_start(self, token_class: Any) -> None:
        """Stop the scanner at the limit too: it looks ahead through a run of ``[[[[`` in quadratic time."""
        super().fetch_flow_collection_start(token_class)
        if self.flow_level > MAX_DEPTH:
            raise _TooDeep(None, None, f"nesting deeper than {MAX_DEPTH} levels (mappings and lists inside "
                                       "each other); a study needs far fewer", self.get_mark())

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _TooDeep(None, None, f"nesting deeper than {MAX_DEPTH} levels (mappings and lists inside "
                                           "each other); a study needs far fewer", self.peek_event().start_mark)
            if not self.check_event(yaml.AliasEvent):
                self._nodes += 1
                if self._nodes > MAX_NODES:
                    raise _TooDeep(None, None, f"more than {MAX_NODES:,} values (keys, values and list items); a "
                                               "study needs far fewer, data belongs in data files",
                                   self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


SafeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


# YAML's printable set (YAML 1.1 section 5.1): tab, LF, CR, NEL, and the printable ranges of Unicode.
_NOT_PRINTABLE = re.compile("[^\x09\x0A\x0D\x20-\x7E\x85\xA0-\uD7FF\uE000-\uFFFD\U00010000-\U0010FFFF]")


def read_text(path: Path, what: str = "study file") -> str:
    """Read a YAML file as UTF-8 text, refusing files over :data:`MAX_BYTES` and bytes that are not UTF-8.

    Why not ``Path.read_text``: it reads any size and raises ``UnicodeDecodeError`` (a traceback) on binary.
    """
    source = str(path)
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise StudyError([Problem("", f"{what} not found: {path}")], source) from None
    except IsADirectoryError:
        raise StudyError([Problem("", f"{what} is a folder, not a file: {path}")], source) from None
    except OSError as exc:
        raise StudyError([Problem("", f"cannot read {what}: {exc}")], source) from None
    if len(data) > MAX_BYTES:
        raise StudyError([Problem("", f"the {what} is larger than {MAX_BYTES // 1024} KiB; a study describes the "
                                      "work and points at data files, it does not hold the data")], source)
    return decode(data, source)


def decode(data: bytes, source: str = "<study>") -> str:
    """UTF-8 bytes -> text (a leading BOM is dropped); other bytes are a :class:`StudyError` with the line."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise StudyError([Problem("", f"not UTF-8 text: byte 0x{data[exc.start]:02x} at column {column} "
                                      "(save the file as UTF-8)", line)], source) from None


def check_text(text: str, source: str = "<study>") -> None:
    """Refuse text over :data:`MAX_BYTES` or with a NUL or another control character, naming line and column."""
    if len(text) > MAX_BYTES:
        raise StudyError([Problem("", f"the text is longer than {MAX_BYTES // 1024} KiB")], source)
    bad = _NOT_PRINTABLE.search(text)
    if bad is not None:
        pos = bad.start()
        line = text.count("\n", 0, pos) + 1
        column = pos - (text.rfind("\n", 0, pos) + 1) + 1
        char = bad.group()
        label = "a NUL byte" if char == "\0" else "a control character"
        raise StudyError([Problem("", f"{label} (U+{ord(char):04X}) at column {column}: YAML text may hold tabs "
                                      "and line breaks but no other control characters", line)], source)


def expanded_size(node: yaml.Node, limit: int = MAX_NODES) -> int:
    """How many nodes ``node`` holds with every alias expanded, counting no further than ``limit + 1``.

    Memoized per node, so a small file of nested aliases is measured in time linear in its size, before
    anything walks (or copies) the expanded tree.
    """
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(n: yaml.Node) -> int:
        if id(n) in sizes:
            return sizes[id(n)]
        if id(n) in active:  # an alias inside its own anchor: reported by the builder
            return 1
        total = 1
        if isinstance(n, (yaml.MappingNode, yaml.SequenceNode)):
            active.add(id(n))
            children = [c for pair in n.value for c in pair] if isinstance(n, yaml.MappingNode) else n.value
            for child in children:
                total += size(child)
                if total > limit:
                    break
            active.discard(id(n))
        sizes[id(n)] = total = min(total, limit + 1)
        return total

    return size(node)


def _guarded_node(loader: SafeLoader, source: str) -> yaml.Node | None:
    """Compose one document under the depth and expansion limits."""
    try:
        node = loader.get_single_node()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        reason = getattr(exc, "problem", None) or str(exc)
        prefix = "" if isinstance(exc, _TooDeep) else "invalid YAML: "
        raise StudyError([Problem("", f"{prefix}{reason}", line)], source) from None
    if node is not None and expanded_size(node) > MAX_NODES:
        raise StudyError([Problem("", f"the YAML expands to more than {MAX_NODES:,} values through its aliases "
                                      "(*name); refused before building it", _culprit(node).start_mark.line + 1)],
                         source)
    return node


def _culprit(node: yaml.Node) -> yaml.Node:
    """The smallest node that alone expands beyond :data:`MAX_NODES` (the anchor to point the user at)."""
    seen: set[int] = set()
    while id(node) not in seen:
        seen.add(id(node))
        children = ([c for pair in node.value for c in pair] if isinstance(node, yaml.MappingNode)
                    else node.value if isinstance(node, yaml.SequenceNode) else [])
        big = next((c for c in children if expanded_size(c) > MAX_NODES), None)
        if big is None:
            return node
        node = big
    return node


def _construct(loader: SafeLoader, node: yaml.Node) -> Any:
    """``construct_object`` whose every failure is a ``YAMLError`` with the node's line.

    Why: PyYAML's constructors raise ``ValueError``, ``AttributeError`` (``!!timestamp x``), ``OverflowError``
    and others on values whose explicit tag does not fit them.
    """
    try:
        return loader.construct_object(node, deep=True)
    except yaml.YAMLError:
        raise
    except Exception as exc:  # noqa: BLE001 - any constructor failure is bad input, reported with its line
        tag = node.tag.rsplit(":", 1)[-1]
        value = node.value if isinstance(node, yaml.ScalarNode) else f"a {node.id}"
        raise yaml.constructor.ConstructorError(
            None, None, f"cannot read {brief(value, 60)} as {tag} ({type(exc).__name__})", node.start_mark) from None


def load_value(text: str, source: str = "<study>") -> Any:
    """One YAML value (a ``--set`` value), read like a study file and under the same limits."""
    check_text(text, source)
    loader = SafeLoader(text)
    try:
        node = _guarded_node(loader, source)
        return None if node is None else _construct(loader, node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        reason = getattr(exc, "problem", None) or str(exc)
        raise StudyError([Problem("", f"invalid YAML: {reason}", mark.line + 1 if mark else None)], source) from None
    finally:
        loader.dispose()


def load_with_lines(text: str, source: str = "<study>") -> tuple[Any, dict[Path_, int]]:
    """Parse YAML safely; return the data and a map from key path (tuple) to 1-based line number.

    Duplicate keys are errors (plain ``safe_load`` silently keeps the last one). The limits of this module
    apply: see its docstring.
    """
    lines: dict[Path_, int] = {}
    problems: list[Problem] = []
    check_text(text, source)
    loader = SafeLoader(text)
    try:
        node = _guarded_node(loader, source)
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
                    key = _construct(loader, key_node)
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
            return _construct(loader, n)  # scalars and other tags, by safe_load's rules

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


def brief(value: Any, limit: int = 120) -> str:
    """``repr(value)`` cut to ``limit`` characters, so a message about a huge value stays readable."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit - 20]}... ({len(text):,} characters)"


def _dotted(path: Path_) -> str:
    return dotted(path)


def dotted(path: Path_) -> str:
    """``('stages', 'doe', 'space', 0)`` -> ``stages.doe.space[0]``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(part, str) and (not part.isprintable() or part != part.strip()):
            out += f"[{part!r}]"  # a key with a line break or edge spaces, shown as it is
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

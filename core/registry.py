"""Plugin discovery and the component registry.

Plugins come from the entry-point group ``reflow`` (reflow's own built-ins included). Loading is lazy,
idempotent and cached. A plugin that fails to import, misspells a hook or breaks a contract never crashes
reflow: it is recorded with its error, listed by ``reflow plugins``, and the error is raised only when a
study asks for a name that is not found while that plugin is broken.

``REFLOW_LOAD_PLUGINS=a,b`` loads only the named third-party plugins (entry-point names or distribution
names); an empty value loads none. reflow's own plugins always load.
"""

from __future__ import annotations

import difflib
import os
import re
import traceback
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import pluggy
from reflow import hookspecs
from reflow.components import Design, Model, Optimizer, check_component_class
from reflow.errors import PluginError

ENTRY_POINT_GROUP = "reflow"
hookimpl = pluggy.HookimplMarker("reflow")

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
REGISTRATION_HOOKS = {
    "register_data_sources": "data_source",
    "register_models": "model",
    "register_evaluators": "evaluator",
    "register_optimizers": "optimizer",
    "register_tasks": "task",
}
KIND_LABELS = {
    "data_source": "data source",
    "model": "model",
    "evaluator": "evaluator",
    "optimizer": "optimizer",
    "task": "task",
}


@dataclass(frozen=True)
class Entry:
    """A registered component."""

    name: str
    kind: str
    cls: type
    plugin: str

    @property
    def category(self) -> str:
        """What ``reflow plugins`` and the YAML reference file it under: a model's ``family`` (classifier,
        life-model), an optimizer's or design's ``role`` (they share a kind), else the kind's label. Not called
        family, which is the model family only."""
        if issubclass(self.cls, Model):
            return self.cls.family
        if issubclass(self.cls, (Optimizer, Design)):
            return self.cls.role
        return KIND_LABELS[self.kind]


@dataclass
class Registry:
    """Every registered component, by unique name, plus the plugins that failed to load."""

    entries: dict[str, Entry] = field(default_factory=dict)
    broken: dict[str, str] = field(default_factory=dict)
    plugins: list[str] = field(default_factory=list)
    clashes: dict[str, str] = field(default_factory=dict)

    def add(self, name: str, kind: str, cls: Any, plugin: str) -> None:
        where = f"plugin {plugin!r} registering {name!r}"
        if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
            raise PluginError(f"{where}: component names are kebab-case (like 'fea-package'), got {name!r}")
        check_component_class(kind, cls, where)
        if name in self.clashes:
            self.clashes[name] += f"; also registered by plugin {plugin!r}"
            return
        if name in self.entries:
            other = self.entries[name]
            raise PluginError(
                f"component name clash: {name!r} is registered by plugin {other.plugin!r} "
                f"({other.cls.__module__}.{other.cls.__qualname__}) and by plugin {plugin!r} "
                f"({cls.__module__}.{cls.__qualname__}); uninstall one or ask its author to rename it"
            )
        self.entries[name] = Entry(name, kind, cls, plugin)

    def names(self, kind: str | None = None) -> list[str]:
        return sorted(n for n, e in self.entries.items() if kind is None or e.kind == kind)

    def find(self, name: str, kind: str | None = None) -> Entry | None:
        entry = self.entries.get(name)
        if entry is None or (kind is not None and entry.kind != kind):
            return None
        return entry

    def get(self, name: str, kind: str | None = None) -> Entry:
        """The entry for ``name``, or a :class:`PluginError` listing what exists (and broken plugins)."""
        entry = self.find(name, kind)
        if entry is not None:
            return entry
        raise PluginError(self.unknown_message(name, kind))

    def unknown_message(self, name: str, kind: str | None = None) -> str:
        label = KIND_LABELS.get(kind, "component") if kind else "component"
        if name in self.clashes:
            return self.clashes[name]
        entry = self.entries.get(name)
        if entry is not None:
            return f"{name!r} is {_a(KIND_LABELS[entry.kind])}, not {_a(label)}"
        valid = self.names(kind)
        msg = f"unknown {label} {name!r}"
        close = difflib.get_close_matches(name, valid, n=3, cutoff=0.6)
        msg += f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else "."
        msg += f" Available: {', '.join(valid) if valid else '(none)'}."
        if self.broken:
            msg += " Plugins that failed to load and may provide it: " + "; ".join(
                f"{p}: {err.strip().splitlines()[-1]}" for p, err in self.broken.items()
            )
        return msg


def _a(noun: str) -> str:
    """``optimizer`` -> ``an optimizer``; ``data source`` -> ``a data source``."""
    return ("an " if noun[:1] in "aeiou" else "a ") + noun


class _PluginLoader:
    """Builds the plugin manager and the registry once; ``reset()`` for tests."""

    def __init__(self) -> None:
        self._pm: pluggy.PluginManager | None = None
        self._registry: Registry | None = None
        self.extra: list[tuple[str, object]] = []

    def reset(self) -> None:
        self._pm = None
        self._registry = None

    @property
    def pm(self) -> pluggy.PluginManager:
        if self._pm is None:
            self._load()
        assert self._pm is not None
        return self._pm

    @property
    def registry(self) -> Registry:
        if self._registry is None:
            self._load()
        assert self._registry is not None
        return self._registry

    def _load(self) -> None:
        pm = pluggy.PluginManager("reflow")
        pm.add_hookspecs(hookspecs)
        registry = Registry()
        for name, load in _discover():
            try:
                plugin = load()
            except Exception:  # a broken plugin must not break reflow
                registry.broken[name] = f"import failed: {traceback.format_exc(limit=3)}"
                continue
            _register_plugin(pm, registry, name, plugin)
        for name, plugin in self.extra:
            _register_plugin(pm, registry, name, plugin)
        self._pm, self._registry = pm, registry


def _discover() -> list[tuple[str, Any]]:
    """Entry points of group ``reflow`` as (plugin name, loader); reflow's own first."""
    selected = os.environ.get("REFLOW_LOAD_PLUGINS")
    wanted = None if selected is None else {s.strip() for s in selected.split(",") if s.strip()}
    found: list[tuple[int, str, Any]] = []
    seen: set[str] = set()
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist.name if ep.dist is not None else ""
        builtin = dist == "reflow"
        name = f"reflow.{ep.name}" if builtin else ep.name
        if name in seen:  # the same distribution visible twice on sys.path
            continue
        seen.add(name)
        if not builtin and wanted is not None and ep.name not in wanted and dist not in wanted:
            continue
        found.append((0 if builtin else 1, name, ep.load))
    found.sort(key=lambda t: (t[0], t[1]))
    return [(name, load) for _, name, load in found]


def _register_plugin(pm: pluggy.PluginManager, registry: Registry, name: str, plugin: object) -> None:
    """Register one plugin; any failure marks it broken and leaves no trace of it in the registry."""
    try:
        pm.register(plugin, name=name)
        pm.check_pending()
    except Exception as exc:
        _unregister(pm, plugin)
        registry.broken[name] = f"invalid plugin: {exc}"
        return
    added: list[str] = []

    def make_register(kind: str):
        def register(component_name: str, cls: type) -> None:
            try:
                registry.add(component_name, kind, cls, name)
            except PluginError as exc:
                if "name clash" not in str(exc):
                    raise
                # Neither plugin wins: the name is unusable until one is removed, and says why.
                registry.entries.pop(component_name)
                registry.clashes[component_name] = str(exc)
                return
            added.append(component_name)

        return register

    try:
        for hook_name, kind in REGISTRATION_HOOKS.items():
            for impl in getattr(pm.hook, hook_name).get_hookimpls():
                if impl.plugin is plugin:
                    impl.function(register=make_register(kind))
    except PluginError as exc:
        _rollback(pm, registry, name, plugin, added, str(exc))
        return
    except Exception:
        _rollback(pm, registry, name, plugin, added, f"registration failed: {traceback.format_exc(limit=3)}")
        return
    registry.plugins.append(name)


def _rollback(pm, registry: Registry, name: str, plugin: object, added: list[str], error: str) -> None:
    for n in added:
        registry.entries.pop(n, None)
    _unregister(pm, plugin)
    registry.broken[name] = error


def _unregister(pm: pluggy.PluginManager, plugin: object) -> None:
    if pm.is_registered(plugin):
        pm.unregister(plugin)


_loader = _PluginLoader()


def get_registry() -> Registry:
    """The registry of every component from every loaded plugin (loads plugins on first use)."""
    return _loader.registry


def get_plugin_manager() -> pluggy.PluginManager:
    """The plugin manager, for calling lifecycle hooks."""
    return _loader.pm


def reset_plugins() -> None:
    """Forget loaded plugins so the next use discovers them again."""
    _loader.reset()


def add_plugin(plugin: object, name: str) -> None:
    """Register an in-process plugin (a module or object with hookimpls), for tests and notebooks."""
    _loader.extra.append((name, plugin))
    _loader.reset()


def remove_plugin(name: str) -> None:
    """Undo :func:`add_plugin`."""
    _loader.extra = [(n, p) for n, p in _loader.extra if n != name]
    _loader.reset()

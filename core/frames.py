"""Where an error happened: the file and line in plugin (or user) code that a failed trial reports.

A trial's error names the place to fix, not the place in reflow that noticed it: for an exception, the
innermost frame of the plugin's own code (not reflow's core, not a library it called into); for a bad
value returned by an evaluator (NaN, a missing output), the function that returned it.
"""

from __future__ import annotations

import inspect
import os
import site
import sysconfig
import traceback
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

_CORE = str(Path(__file__).resolve().parent) + os.sep


@lru_cache(maxsize=1)
def _library_dirs() -> tuple[str, ...]:
    """The standard library and site-packages folders: code there is a library a plugin called into."""
    paths = sysconfig.get_paths()
    dirs = {paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib") if k in paths}
    try:
        dirs.update(site.getsitepackages())
    except AttributeError:  # pragma: no cover - some embedded interpreters lack it
        pass
    return tuple(os.path.realpath(d) + os.sep for d in dirs if d)


def _real(filename: str) -> str:
    return os.path.realpath(filename) if not filename.startswith("<") else filename


def _is_core(filename: str) -> bool:
    return _real(filename).startswith(_CORE)


def _is_library(filename: str) -> bool:
    real = _real(filename)
    return real.startswith("<") or real.startswith(_library_dirs())


def _package(frame: FrameType) -> str:
    """The package a frame's module belongs to (``reflow.plugins.physics`` for a built-in plugin)."""
    parts = str(frame.f_globals.get("__name__", "")).split(".")
    return ".".join(parts[:3]) if parts[0] == "reflow" else parts[0]


def short_path(filename: str) -> str:
    """``filename`` relative to the working folder when it lies inside it, else absolute."""
    try:
        rel = os.path.relpath(filename)
    except ValueError:  # another drive on Windows
        return filename
    return filename if rel.startswith("..") else rel


def plugin_frame(tb: TracebackType | None) -> tuple[str, int] | None:
    """(file, line) of the innermost frame of the plugin's code in ``tb``; None if only reflow's core ran.

    The plugin is the code reflow's core called into (the first frame outside the core). Frames of its own
    package, and of user files outside the standard library and site-packages (a ``python`` evaluator's
    module), count as the plugin's; a library it called (numpy, scipy) does not, unless nothing else is left.
    """
    outside = [(f, n) for f, n in traceback.walk_tb(tb) if not _is_core(f.f_code.co_filename)]
    if not outside:
        return None
    entry = _package(outside[0][0])
    own = [(f, n) for f, n in outside if _package(f) == entry or not _is_library(f.f_code.co_filename)]
    frame, line = (own or outside)[-1]
    return frame.f_code.co_filename, line


def function_location(fn: Any) -> str | None:
    """``path:line`` where ``fn`` (a function, method or callable object) is defined, or None."""
    fn = getattr(fn, "__func__", fn)
    try:
        fn = inspect.unwrap(fn)
    except ValueError:
        return None
    code = getattr(fn, "__code__", None)
    if code is None and callable(fn):  # a callable object: its __call__
        call = type(fn).__call__
        code = getattr(getattr(call, "__func__", call), "__code__", None)
    if code is None:
        return None
    return f"{short_path(code.co_filename)}:{code.co_firstlineno}"


def location(exc: BaseException) -> str | None:
    """``path:line`` to report for ``exc``: the place set on it (``exc.location``), else its plugin frame."""
    given = getattr(exc, "location", None)
    if given:
        return str(given)
    found = plugin_frame(exc.__traceback__)
    return f"{short_path(found[0])}:{found[1]}" if found else None


def describe(exc: BaseException) -> str:
    """``Type: message (at path:line)``: one line for a trial's ``error``, located in the plugin's code.

    When reflow wrapped the error (``raise ... from exc``), the place is the original one.
    """
    root = exc
    while root.__cause__ is not None and (root.__cause__.__traceback__ is not None
                                          or getattr(root.__cause__, "location", None)):
        root = root.__cause__
    where = location(root)
    return f"{type(exc).__name__}: {exc}" + (f" (at {where})" if where else "")


def source_location(step: Any) -> str | None:
    """Where the values an evaluator returns come from, for a bad output (NaN, a missing name).

    An evaluator that hands back another function's results (the ``python`` evaluator, a trained model)
    names that function with ``source_function()``; otherwise it is the step's ``evaluate`` (batch) or
    ``evaluate_one`` method.
    """
    fn: Callable[..., Any] | None = None
    try:
        fn = step.source_function()
    except Exception:  # noqa: BLE001 - a location is a courtesy; never fail a trial over it
        fn = None
    if fn is None:
        fn = type(step).evaluate if step.is_batch else type(step).evaluate_one
    return function_location(fn) if fn is not None else None

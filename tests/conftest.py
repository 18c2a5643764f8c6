"""Shared fixtures: throwaway plugins, study files, and the CLI in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from reflow.registry import add_plugin, remove_plugin, reset_plugins

REPO = Path(__file__).resolve().parents[1]
REFLOW = [sys.executable, "-m", "reflow.cli"]


@pytest.fixture
def register_plugin():
    """``register_plugin(obj, name)`` adds an in-process plugin for one test and removes it after."""
    added: list[str] = []

    def _add(plugin: object, name: str = "test-plugin") -> None:
        add_plugin(plugin, name)
        added.append(name)

    yield _add
    for name in added:
        remove_plugin(name)
    reset_plugins()


@pytest.fixture
def write_study(tmp_path):
    """``write_study(text, name="study.yaml") -> Path``: dedents and writes a study into tmp_path."""

    def _write(text: str, name: str = "study.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text).lstrip())
        return path

    return _write


@pytest.fixture
def run_cli():
    """``run_cli(*args, cwd=None, timeout=120) -> CompletedProcess`` runs ``reflow`` in a subprocess."""

    def _run(*args: str, cwd: Path | None = None, timeout: float = 180, env: dict | None = None):
        full_env = {**os.environ, "COLUMNS": "200", **(env or {})}
        return subprocess.run([*REFLOW, *map(str, args)], cwd=cwd, capture_output=True, text=True,
                              timeout=timeout, env=full_env, check=False)

    return _run

"""Shared fixtures: throwaway plugins, study files, and the CLI (in process or in a subprocess, see ``_cli``)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import _cli
import pytest
from reflow.registry import add_plugin, remove_plugin, reset_plugins

REPO = Path(__file__).resolve().parents[1]


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
def cli():
    """``cli(*args, columns=200, env=None) -> CliResult`` runs ``reflow`` in this process (see ``_cli.cli``)."""
    return _cli.cli


@pytest.fixture
def run_cli():
    """``run_cli(*args, cwd=None, timeout=180, columns=200, env=None) -> CompletedProcess``: ``reflow`` in a
    subprocess, for the few tests that need a real process."""
    return _cli.run_cli

"""The one way tests run ``reflow``: in process (fast, the default) or in a real subprocess.

Both use the same environment rule (a fixed terminal width, so rich does not wrap output differently from machine
to machine), and both are also fixtures in ``conftest.py``. Modules whose own helpers call the CLI import
``cli`` from here, as they import ``_report_studies``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from reflow.cli import app
from typer.testing import CliRunner

#: ``reflow`` as a command line for a real process.
REFLOW = [sys.executable, "-m", "reflow.cli"]
#: The terminal width every CLI call in the tests gets unless it asks for another.
COLUMNS = 200


def cli_env(columns: int = COLUMNS, env: dict[str, str | None] | None = None) -> dict[str, str | None]:
    """The variables a test's CLI call sets on top of the inherited environment (a None value unsets one)."""
    return {"COLUMNS": str(columns), **(env or {})}


def process_env(columns: int = COLUMNS, env: dict[str, str | None] | None = None) -> dict[str, str]:
    """The whole environment of a ``reflow`` subprocess: this one's plus ``cli_env``, without the unset ones."""
    return {k: v for k, v in {**os.environ, **cli_env(columns, env)}.items() if v is not None}


@dataclass(frozen=True)
class CliResult:
    """One in-process ``reflow`` call. Unpacks as ``(exit code, output with whitespace runs collapsed)``."""

    exit_code: int
    output: str

    @property
    def text(self) -> str:
        """The output on one line, whitespace runs collapsed: what the messages say, not how rich wrapped them."""
        return " ".join(self.output.split())

    def __iter__(self) -> Iterator[int | str]:
        return iter((self.exit_code, self.text))


def cli(*args: object, columns: int = COLUMNS, env: dict[str, str | None] | None = None) -> CliResult:
    """Run ``reflow *args`` in this process; a Python exception escaping the CLI fails the test with its traceback."""
    res = CliRunner().invoke(app, [str(a) for a in args], env=cli_env(columns, env))
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        raise AssertionError("the CLI raised instead of exiting:\n"
                             + "".join(traceback.format_exception(res.exception)))
    return CliResult(res.exit_code, res.output)


def run_cli(*args: object, cwd: Path | None = None, timeout: float = 180, columns: int = COLUMNS,
            env: dict[str, str | None] | None = None) -> subprocess.CompletedProcess:
    """Run ``reflow *args`` in a subprocess, for the tests that need a real process (exit codes, signals, locks)."""
    return subprocess.run([*REFLOW, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=process_env(columns, env), check=False)

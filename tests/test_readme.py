"""README.md holds exactly the two set-up commands, and .ci/run runs the README's test command."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = "python3 -m venv .venv && .venv/bin/pip install -e . && .venv/bin/reflow run studies/quickstart.yaml"
TESTS = "python3 -m venv .venv && .venv/bin/pip install -e '.[dev]' && .venv/bin/pytest"


def test_readme_has_the_two_setup_commands():
    lines = [line.strip() for line in (REPO / "README.md").read_text().splitlines()]
    assert QUICKSTART in lines
    assert TESTS in lines
    assert sum(line.startswith("python3 -m venv") for line in lines) == 2


def test_ci_runs_the_readme_test_command():
    ci = [line.strip() for line in (REPO / ".ci" / "run").read_text().splitlines()]
    assert TESTS in ci

"""One exception root for everything reflow raises on purpose.

The CLI turns any :class:`ReflowError` into a clean message and exit code 2 (bad input) or 1 (a run
that failed); anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from dataclasses import dataclass


class ReflowError(Exception):
    """Root of all errors reflow raises deliberately."""

    exit_code = 1


class UserInputError(ReflowError):
    """The user gave something reflow cannot use: exit code 2, no traceback."""

    exit_code = 2


@dataclass(frozen=True)
class Problem:
    """One problem in a study, located by its YAML path and line."""

    path: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line is not None else ""
        path = self.path or "<study>"
        return f"{where}{path}: {self.message}"


class StudyError(UserInputError):
    """A study failed validation; carries every problem found, not just the first."""

    def __init__(self, problems: list[Problem], source: str | None = None):
        self.problems = sorted(problems, key=lambda p: (p.line is None, p.line or 0))
        self.source = source
        head = f"{source}: " if source else ""
        n = len(self.problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{head}{n} problem{'s' if n != 1 else ''} in the study:\n{lines}")


class PluginError(ReflowError):
    """A plugin could not be loaded, clashes with another, or breaks a contract."""


class DataError(UserInputError):
    """Input data (a CSV, a netCDF file, an image folder) is missing or malformed."""


class EvaluationError(ReflowError):
    """One evaluation failed; the trial is marked failed and the study goes on."""


class RunError(ReflowError):
    """A run folder is missing, corrupt, or cannot be resumed."""


class WaitingForResults(ReflowError):
    """A stage needs results from people (a lab) before it can go on: the run stops cleanly, exit code 0.

    ``reflow ask`` hands out the experiments, ``reflow tell`` takes the measurements back and
    ``reflow run --resume RUN_DIR`` continues.
    """

    exit_code = 0

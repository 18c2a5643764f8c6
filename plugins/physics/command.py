"""Evaluator ``command``: run an external program per trial, the way Abaqus, Ansys or CalculiX scripts plug in.

reflow writes the trial's inputs to ``inputs.json`` in a fresh folder for the trial, runs ``argv`` (a list;
never through a shell) in that folder, and reads the outputs from ``outputs.json``. The tokens
``{inputs}``, ``{outputs}`` and ``{workdir}`` in ``argv`` are replaced by those paths. A relative argument
that names a file or folder next to the study (``[python3, sim.py, "{inputs}"]``) is passed as its absolute
path, since the program runs in the trial's folder. A non-zero exit code,
a missing or malformed outputs file, or a run past ``timeout`` seconds fails the trial; the program is
killed at the timeout.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import reflow
from pydantic import Field, field_validator
from reflow.components import Variable
from reflow.errors import EvaluationError


class CommandEvaluator(reflow.Evaluator):
    """Run an external program per trial: inputs.json in, outputs.json out, argv without a shell."""

    accepts_any_inputs = True

    class Params(reflow.Params):
        argv: list[str] = Field(description="program and arguments; {inputs} {outputs} {workdir} are replaced")
        timeout: float = Field(600.0, gt=0, description="seconds before the program is killed")
        outputs: list[str] = Field(default_factory=list, description="output names the program must write")
        units: dict[str, str] = Field(default_factory=dict, description="units of the outputs")
        keep: bool = Field(False, description="keep each trial's folder under the stage folder")
        env: dict[str, str] = Field(default_factory=dict, description="extra environment variables")

        @field_validator("argv")
        @classmethod
        def _argv(cls, v: list[str]) -> list[str]:
            if not v or not v[0].strip():
                raise ValueError("argv needs at least the program, like ['python3', 'sim.py', '{inputs}']")
            return v

    def __init__(self, params=None, **kwargs):
        super().__init__(params, **kwargs)
        self._cwd: str | None = None
        self._program: str | None = None
        self._keep_dir: str | None = None

    def output_variables(self):
        return tuple(Variable(n, self.params.units.get(n, "")) for n in self.params.outputs)

    def setup(self, ctx):
        self._cwd = str(ctx.study_dir)
        program = self.params.argv[0]
        if "/" in program or program.startswith("~"):
            resolved = ctx.resolve_path(program)  # against the study's folder, like every path in a study
            if not resolved.exists():
                raise reflow.UserInputError(f"command: program not found: {resolved} (argv[0] {program!r}; "
                                            f"relative paths start at the study's folder {ctx.study_dir})")
            self._program = str(resolved)
        elif shutil.which(program) is None:
            raise reflow.UserInputError(f"command: program {program!r} is not on PATH")
        if self.params.keep:
            self._keep_dir = str(ctx.folder / "evaluations")

    def evaluate_one(self, inputs):
        import os

        base = self._keep_dir
        if base:
            Path(base).mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix="trial-", dir=base))
        try:
            in_path, out_path = work / "inputs.json", work / "outputs.json"
            in_path.write_text(json.dumps(inputs, indent=2, default=str))
            subst = {"{inputs}": str(in_path), "{outputs}": str(out_path), "{workdir}": str(work)}
            argv = [subst.get(a, a) for a in self.params.argv]
            if self._cwd:  # files next to the study (sim.py, a template) as absolute paths
                argv[1:] = [a if a in subst else _study_file(self._cwd, a) for a in argv[1:]]
            if self._program:
                argv[0] = self._program
            try:  # its own process group, so a timeout kills the solvers a wrapper script started too
                proc = subprocess.Popen(argv, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                        env={**os.environ, **self.params.env, "REFLOW_STUDY_DIR": self._cwd or ""},
                                        start_new_session=os.name == "posix")
            except OSError as exc:
                raise EvaluationError(f"command could not start: {exc}") from None
            try:
                stdout, stderr = proc.communicate(timeout=self.params.timeout)
            except subprocess.TimeoutExpired:
                _kill_tree(proc)
                raise EvaluationError(f"command timed out after {self.params.timeout:g} s and was killed") from None
            except BaseException:
                _kill_tree(proc)
                raise
            if proc.returncode != 0:
                tail = (stderr or stdout).strip()[-500:]
                raise EvaluationError(f"command exited with code {proc.returncode}: {tail}")
            if not out_path.exists():
                raise EvaluationError(f"command wrote no {out_path.name} (argv: {argv})")
            try:
                outputs = json.loads(out_path.read_text())
            except json.JSONDecodeError as exc:
                raise EvaluationError(f"{out_path.name} is not valid JSON: {exc}") from None
            if not isinstance(outputs, dict):
                raise EvaluationError(f"{out_path.name} must hold a JSON object of outputs")
            return outputs
        finally:
            if not self.params.keep:
                shutil.rmtree(work, ignore_errors=True)


def _study_file(study_dir: str, arg: str) -> str:
    """``arg`` as the absolute path of a file or folder it names relative to the study (resolved the way
    ``RunContext.resolve_path`` resolves every path in a study), else ``arg`` unchanged."""
    if not arg or arg.startswith("-"):
        return arg
    try:
        path = Path(arg).expanduser()
        path = path if path.is_absolute() else (Path(study_dir) / path).resolve()
        return str(path) if path.exists() and not Path(arg).is_absolute() else arg
    except (OSError, ValueError):  # not a path at all (a NUL, a name too long): an ordinary argument
        return arg


def _kill_tree(proc: subprocess.Popen) -> None:
    """Kill the program and every process it started (its process group on POSIX), then reap it."""
    import os
    import signal

    try:
        if os.name == "posix":
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.kill()
    except (ProcessLookupError, PermissionError):
        proc.kill()
    proc.wait()
    for pipe in (proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()

"""The ``reflow`` command line. Heavy libraries are imported inside commands, never at start-up."""

from __future__ import annotations

import inspect
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

app = typer.Typer(
    name="reflow", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
    help="Reliability and design optimization for electronic packaging: run studies defined in YAML.",
)
plugins_app = typer.Typer(help="List plugins and their components.", invoke_without_command=True,
                          no_args_is_help=False)
app.add_typer(plugins_app, name="plugins")


def _fail(exc: Exception) -> None:
    from reflow.errors import ReflowError
    from rich.console import Console

    code = exc.exit_code if isinstance(exc, ReflowError) else 1
    Console(stderr=True, highlight=False, soft_wrap=True).print(f"[bold red]error:[/] {_escape(str(exc))}",
                                                                markup=True)
    raise typer.Exit(code)


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def _console_warnings() -> None:
    """Show on stderr, as they happen, the warnings reflow marks for the console (``extra={"console": True}``:
    a damaged journal line, a run folder lock taken over); run.log keeps them too. Installed once per process."""
    import logging

    class _Stderr(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if getattr(record, "console", False):
                sys.stderr.write(f"warning: {record.getMessage()}\n")  # the stream of this moment (tests swap it)
                sys.stderr.flush()

    logger = logging.getLogger("reflow")
    if not any(h.get_name() == "reflow-console-warnings" for h in logger.handlers):
        handler = _Stderr(logging.WARNING)
        handler.set_name("reflow-console-warnings")
        logger.addHandler(handler)


StudyArg = Annotated[Path, typer.Argument(help="the study YAML file", show_default=False)]
SetOpt = Annotated[Optional[list[str]], typer.Option(  # noqa: UP045 - typer needs Optional here
    "--set", help="override a value: stages.doe.design.lhs.samples=50 (repeatable)")]


@app.command()
def run(
    study: Annotated[Optional[Path], typer.Argument(help="the study YAML file")] = None,  # noqa: UP045
    set_: SetOpt = None,
    out: Annotated[Path, typer.Option("--out", help="folder for run folders")] = Path("runs"),
    device: Annotated[Optional[str], typer.Option(help="override the study's device")] = None,  # noqa: UP045
    resume: Annotated[Optional[Path], typer.Option(  # noqa: UP045
        "--resume", help="continue this run folder")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bars")] = False,
) -> None:
    """Validate and run a study; or continue one with --resume RUN_DIR."""
    from reflow.errors import ReflowError, UserInputError, WaitingForResults
    from rich.console import Console

    _console_warnings()  # the run folder's lock is taken in start_run/resume_run and held until the run ends
    console = Console(stderr=True, quiet=quiet)
    try:
        if resume is not None:
            if study is not None or set_:
                raise UserInputError("--resume continues a run as it was: give no study file or --set with it")
            from reflow.runner import resume_run

            r = resume_run(resume, quiet=quiet)
        else:
            if study is None:
                raise UserInputError("give a study file (reflow run STUDY.yaml) or --resume RUN_DIR")
            from reflow.runner import execute, start_run
            from reflow.study import load_study

            overrides = list(set_ or [])
            if device:
                overrides.append(f"device={device}")
            s = load_study(study, overrides)
            r = start_run(s, out, quiet=quiet)
            console.print(f"run folder: {_escape(str(r.dir))}", highlight=False)
            execute(r)
    except WaitingForResults as exc:
        console.print(f"[yellow]waiting[/]: {_escape(str(exc))}")
        raise typer.Exit(0) from None
    except ReflowError as exc:
        _fail(exc)
    except KeyboardInterrupt:
        console.print("interrupted: resume with reflow run --resume RUN_DIR")
        raise typer.Exit(130) from None
    console.print(f"[green]done[/]: {_escape(str(r.dir))}  (report: {_escape(str(r.dir / 'report.html'))})")


@app.command()
def validate(study: StudyArg, set_: SetOpt = None) -> None:
    """Check a study without running it: every problem with its line, exit code 2 if any."""
    from reflow.errors import ReflowError
    from reflow.study import load_study

    try:
        s = load_study(study, list(set_ or []))
    except ReflowError as exc:
        _fail(exc)
    typer.echo(f"{study}: valid study {s.name!r} with {len(s.stages)} stage(s): {', '.join(s.stages)}")


MIN_SUMMARY = 30
"""The narrowest summary column ``reflow plugins`` keeps: below it, the optional columns are left out."""


def _fitted_columns(width: int, columns: dict[str, list[str]], optional: tuple[str, ...], flexible: str,
                    least: int) -> dict[str, int]:
    """The columns a table ``width`` characters wide shows, with their widths: every column not ``optional``,
    then each optional one in order while the ``flexible`` column keeps ``least`` characters; the flexible
    column gets what is left (a column also costs three characters of padding and border)."""
    need = {name: max([len(name), *map(len, cells)]) for name, cells in columns.items()}
    shown = {name for name in columns if name not in optional and name != flexible}
    room = width - 1 - sum(need[n] + 3 for n in shown) - 3
    for name in optional:
        if room - need[name] - 3 >= least:
            shown.add(name)
            room -= need[name] + 3
    widths = {name: need[name] for name in columns if name in shown}
    widths[flexible] = max(least, min(room, need[flexible]))
    return {name: widths[name] for name in columns if name in widths}


def _rewrapped(doc: str) -> str:
    """A docstring without the class body's indentation and with its prose lines joined, so the terminal wraps
    each paragraph at its own width; bullets and indented (literal) lines keep their own lines."""
    out: list[str] = []
    for line in inspect.cleandoc(doc).splitlines():
        prose = line.strip() and not line.startswith((" ", "\t", "- ", "* "))
        if prose and out and out[-1].strip() and not out[-1].rstrip().endswith("::") and (
                not out[-1].startswith((" ", "\t")) or out[-1].lstrip().startswith(("- ", "* "))):
            out[-1] = f"{out[-1].rstrip()} {line.strip()}"
        else:
            out.append(line)
    return "\n".join(out)


@plugins_app.callback()
def plugins(ctx: typer.Context) -> None:
    """List every component with its kind, category and plugin, and plugins that failed to load."""
    if ctx.invoked_subcommand is not None:
        return
    from reflow.registry import KIND_LABELS, get_registry
    from reflow.schema import summary
    from rich.console import Console
    from rich.table import Table

    reg = get_registry()
    entries = [reg.entries[n] for n in sorted(reg.entries, key=lambda n: (reg.entries[n].kind, n))]
    cells = {"name": [e.name for e in entries], "kind": [KIND_LABELS[e.kind] for e in entries],
             "category": [e.category for e in entries], "plugin": [e.plugin for e in entries],
             "summary": [summary(e.cls.__doc__).replace("``", "`") for e in entries]}  # cut to one line below
    console = Console()
    # narrow terminals: the category says what the kind does (a model's family, design or optimizer, else the
    # kind), so the kind and plugin columns go first; the summary keeps one line, cut with an ellipsis
    shown = _fitted_columns(console.width, cells, ("category", "plugin", "kind"), "summary", MIN_SUMMARY)
    table = Table(title="reflow components")
    for col, width in shown.items():
        table.add_column(col, width=width, no_wrap=True, overflow="ellipsis")
    for i in range(len(entries)):
        table.add_row(*(_escape(cells[col][i]) for col in shown))
    console.print(table)
    for name, msg in reg.clashes.items():
        console.print(f"[bold red]name clash[/] {name}: {_escape(msg)}")
    for name, err in reg.broken.items():
        console.print(f"[bold red]plugin {name} failed to load[/]: {_escape(err.strip())}")


@plugins_app.command("show")
def plugins_show(name: Annotated[str, typer.Argument(help="a component name")]) -> None:
    """Show a component's documentation and params (type, default, description) as the YAML reference does."""
    from reflow.components import Evaluator, Task
    from reflow.errors import ReflowError, UserInputError
    from reflow.registry import KIND_LABELS, get_registry
    from reflow.schema import declared_variables, param_rows, variable_range, yaml_value
    from rich.console import Console
    from rich.table import Table

    try:
        registry = get_registry()
        entry = registry.find(name)
        if entry is None:  # a name the user mistyped: exit code 2, with "did you mean"
            raise UserInputError(registry.unknown_message(name))
    except ReflowError as exc:
        _fail(exc)
    cls = entry.cls
    console = Console()
    console.print(f"[bold]{name}[/]  {KIND_LABELS[entry.kind]} · {entry.category} · plugin {entry.plugin}")
    console.print(f"{cls.__module__}.{cls.__qualname__}", highlight=False)
    if cls.__doc__:
        console.print(_escape(_rewrapped(cls.__doc__)))
    table = Table(title="params")
    table.add_column("param", no_wrap=True)
    for col in ("type", "default", "description"):
        table.add_column(col, ratio=3 if col == "description" else 1)
    for row in param_rows(cls.Params):
        description = " ".join(filter(None, (row.description, f"({row.constraints})" if row.constraints else "")))
        table.add_row(_escape(row.name), _escape(row.type), "required" if row.required else _escape(row.default),
                      _escape(description))
    console.print(table)
    if issubclass(cls, Evaluator):
        for title, variables in zip(("inputs", "outputs"), declared_variables(cls), strict=True):
            if not variables:
                continue
            rows = [{"name": v.name, "units": v.units, "default": "" if v.default is None else yaml_value(v.default),
                     "range": variable_range(v), "description": v.description} for v in variables]
            columns = [c for c in rows[0] if c == "name" or any(r[c] for r in rows)]  # outputs have no range
            t = Table(title=title)
            for col in columns:
                t.add_column(col, no_wrap=col == "name", ratio=3 if col == "description" else None)
            for r in rows:
                t.add_row(*(_escape(r[c]) for c in columns))
            console.print(t)
    if issubclass(cls, Task):
        console.print(f"outputs: {', '.join(cls.outputs)}")


def _metric_text(name: str, value: object, units: dict[str, str]) -> str:
    from reflow.units import metric_units

    text = f"{name}={value:.4g}" if isinstance(value, float) else f"{name}={value}"
    unit = metric_units(name, units) if isinstance(value, (int, float)) and not isinstance(value, bool) else ""
    return f"{text} {unit}" if unit else text


@app.command()
def show(run_dir: Annotated[Path, typer.Argument(help="a run folder")]) -> None:
    """Stages of a run with status, time and key metrics (with the units their variables declare)."""
    from reflow.errors import ReflowError
    from reflow.report import declared_units
    from reflow.store import StageStore, read_manifest
    from rich.console import Console
    from rich.table import Table

    try:
        manifest = read_manifest(run_dir)
    except ReflowError as exc:
        _fail(exc)
    # resolve first: `reflow show .` inside a run folder has an empty name
    table = Table(title=f"{manifest.get('study')} · {run_dir.resolve().name} · {manifest.get('status')}")
    for col in ("stage", "task", "status", "seconds"):
        table.add_column(col, no_wrap=True)
    table.add_column("key metrics", ratio=1)
    for name, info in manifest.get("stages", {}).items():
        metrics = list((info.get("metrics") or {}).items())[:5]
        units = declared_units(StageStore(run_dir / name), info, info.get("outputs") or []) if metrics else {}
        key = "\n".join(_metric_text(k, v, units) for k, v in metrics)  # one metric a line: never cut inside one
        if info.get("error"):
            key = f"error: {info['error']}"
        table.add_row(_escape(name), _escape(info.get("task", "")), info.get("status", ""),
                      str(info.get("seconds", "")), _escape(key))
    Console().print(table)


@app.command()
def report(run_dir: Annotated[Path, typer.Argument(help="a run folder")]) -> None:
    """(Re)build a run's plots and its self-contained report.html."""
    from reflow.errors import ReflowError
    from reflow.report import write_report
    from reflow.store import lock_run

    _console_warnings()  # a lock left by a killed command is taken over with a warning on the console
    try:
        # it rewrites figures and report.html: a writer, refused (exit 2) while a run or an ask/tell holds the folder
        with lock_run(run_dir, "reflow report"):
            path = write_report(run_dir, replot=True)
    except ReflowError as exc:
        _fail(exc)
    typer.echo(str(path))


@app.command()
def docs(
    out: Annotated[Path, typer.Option("--out", help="the docs folder")] = Path("docs"),
    check: Annotated[bool, typer.Option("--check", help="write nothing; exit 1 if a file is out of date")] = False,
    all_plugins: Annotated[bool, typer.Option(
        "--all-plugins", help="document every installed plugin, not only reflow's own")] = False,
) -> None:
    """Generate the YAML reference and the hook reference (docs/yaml-reference.md, docs/hooks.md)."""
    from reflow.docgen import DocgenError, stale, write_docs

    try:
        if check:
            old = stale(out, all_plugins)
            for path in old:
                typer.echo(f"out of date: {path}", err=True)
            if old:
                typer.echo("regenerate with: reflow docs" + (f" --out {out}" if out != Path("docs") else ""), err=True)
                raise typer.Exit(1)
            typer.echo("the generated docs are up to date")
            return
        changed = write_docs(out, all_plugins)
    except DocgenError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    for path in changed:
        typer.echo(f"wrote {path}")
    if not changed:
        typer.echo("the generated docs are up to date")


RunDirArg = Annotated[Path, typer.Argument(help="a run folder", show_default=False)]
StageOpt = Annotated[str, typer.Option("--stage", help="the lab stage (an optimize stage with evaluate: lab)")]


@app.command()
def ask(
    run_dir: RunDirArg,
    stage: StageOpt,
    n: Annotated[int, typer.Option("-n", help="how many experiments")] = 1,
    out: Annotated[Optional[Path], typer.Option("--out", help="write the CSV here (default: print it)")] = None,  # noqa: UP045
) -> None:
    """Next lab experiments to run, as a CSV with units; fill in the outputs and give it to reflow tell."""
    from reflow import labcsv
    from reflow.errors import ReflowError, UserInputError

    _console_warnings()  # labcsv.ask holds the run folder's lock: a concurrent command is refused with exit 2
    try:
        if out is not None and out.exists():
            raise UserInputError(f"--out {out}: the file exists; give a new name (it may hold results not told)")
        text = labcsv.ask(run_dir, stage, n)
        if out is None:
            typer.echo(text, nl=False)
        else:
            out.write_text(text, encoding="utf-8")
            typer.echo(f"{n} experiment(s) written to {out}: fill in the outputs, then "
                       f"reflow tell {run_dir} --stage {stage} {out}", err=True)
    except ReflowError as exc:
        _fail(exc)


@app.command()
def tell(
    run_dir: RunDirArg,
    results: Annotated[Path, typer.Argument(help="the CSV from reflow ask with the outputs filled in")],
    stage: StageOpt,
) -> None:
    """Measured lab results back in; nothing is stored unless the whole file checks out."""
    from reflow import labcsv
    from reflow.errors import ReflowError

    _console_warnings()  # labcsv.tell holds the run folder's lock: a concurrent command is refused with exit 2
    try:
        stored, skipped, repeated, told, budget = labcsv.tell(run_dir, stage, results)
    except ReflowError as exc:
        _fail(exc)
    note = f"; {repeated} row(s) were already stored by an earlier tell, unchanged" if repeated else ""
    note += f"; {skipped} row(s) without results skipped" if skipped else ""
    nxt = (f"ask for more with reflow ask {run_dir} --stage {stage}" if budget is None or told < budget
           else f"the budget is measured: reflow run --resume {run_dir}")
    of = f" of {budget}" if budget is not None else ""
    typer.echo(f"stored {stored} result(s){note}; {told}{of} evaluations measured; {nxt}")


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except BrokenPipeError:  # `reflow plugins | head`
        sys.exit(0)


if __name__ == "__main__":
    main()

"""The generated docs: complete, deterministic, and the committed copies up to date with the code."""

from __future__ import annotations

import difflib
import inspect
import re
import types
from pathlib import Path

import pytest
import reflow
from _cli import cli
from pydantic import Field
from reflow import docgen
from reflow.registry import get_registry
from reflow.schema import declared_variables

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"


def test_committed_docs_are_up_to_date():
    old = docgen.stale(DOCS)
    if old:
        path = old[0]
        new = docgen.generated(DOCS)[path]
        have = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
        diff = "\n".join(list(difflib.unified_diff(have, new.splitlines(), "committed", "generated", lineterm="",
                                                   n=1))[:30])
        pytest.fail(f"out of date: {', '.join(str(p.relative_to(REPO)) for p in old)}. The docs are generated "
                    f"from the code: run `{docgen.REGENERATE}` from the repository root and commit the result.\n"
                    f"{diff}")


def _builtin_entries():
    return [e for e in get_registry().entries.values() if e.plugin.startswith("reflow.")]


def _section(text: str, name: str) -> str:
    start = text.index(f"### `{name}`\n")
    end = text.find("\n### ", start + 1)
    return text[start:end if end > 0 else len(text)]


def test_every_builtin_component_param_and_variable_is_documented():
    text = docgen.yaml_reference()
    entries = _builtin_entries()
    assert {e.kind for e in entries} >= {"task", "data_source", "model", "evaluator", "optimizer"}
    for entry in entries:
        section = _section(text, entry.name)
        for name, field in entry.cls.Params.model_fields.items():
            assert f"| `{field.alias or name}` |" in section, f"{entry.name}.{name} is missing"
        if entry.kind == "evaluator":
            inputs, outputs = declared_variables(entry.cls)
            for v in (*inputs, *outputs):
                assert f"| `{v.name}` |" in section, f"{entry.name}: variable {v.name} is missing"
        if entry.kind == "task":
            assert all(f"`{o}`" in section.split("\n")[2] for o in entry.cls.outputs)
    for key in ("study", "description", "seed", "device", "executor", "stages", "workers", "timeout"):
        assert f"| `{key}` |" in text[: text.index("## Tasks")]


def test_types_defaults_and_bounds_read_as_yaml():
    section = _section(docgen.yaml_reference(), "doe")
    assert "| `design` | `optimizer or design` | **required** |" in section
    assert "| `evaluate` | `evaluator \\| list of evaluators` | **required** |" in section
    assert "| `batch_size` | `int` (`>= 1`) | `16` |" in section
    assert "| `plot` | `list[str] \\| null` | `null` |" in section
    assert "[`ParameterSpec`](#parameterspec)" in section
    train = _section(docgen.yaml_reference(), "train")
    assert "| `data` | `stage \\| stage.output` | **required** |" in train


def test_generation_is_deterministic_and_has_no_machine_paths():
    first, second = docgen.yaml_reference(), docgen.yaml_reference()
    assert first == second
    hooks = docgen.hook_reference()
    assert hooks == docgen.hook_reference()
    for text in (first, hooks):
        assert str(REPO) not in text and " at 0x" not in text and "<function" not in text


def test_every_hook_is_in_the_reference_with_its_parameters():
    from reflow import hookspecs

    text = docgen.hook_reference()
    specs = [n for n, f in vars(hookspecs).items() if callable(f) and hasattr(f, "reflow_spec")]
    assert len(specs) >= 8
    for name in specs:
        assert f"### {name}\n" in text
        for param in inspect.signature(getattr(hookspecs, name)).parameters:
            assert f"| `{param}` |" in text.split(f"### {name}\n")[1].split("\n### ")[0]
    docs = {h.name: h for h in docgen.hook_docs()}
    assert docs["register_models"].phase == "registration"
    assert docs["on_stage_end"].phase == "lifecycle"
    assert "reflow.runner.execute" in docs["on_study_start"].callers  # found in the source, not written down
    assert docs["on_trial_batch"].callers
    table = docgen.hook_table()
    assert all(f"[`{name}`](hooks.md#{name})" in table for name in specs)


class _Throwaway(reflow.Evaluator):
    """A third-party evaluator that must not appear in reflow's own reference."""

    inputs = (reflow.Variable("span_mm", "mm", 1.0, 2.0, default=1.5, description="span"),)
    outputs = (reflow.Variable("sag_um", "um", description="sag"),)

    class Params(reflow.Params):
        stiffness: float = Field(2.0, gt=0, description="how stiff")

    def evaluate_one(self, inputs):
        return {"sag_um": inputs["span_mm"] / self.params.stiffness}


def test_third_party_components_only_with_all_plugins(register_plugin):
    plugin = types.SimpleNamespace()

    @reflow.hookimpl
    def register_evaluators(register):
        register("throwaway-sag", _Throwaway)

    plugin.register_evaluators = register_evaluators
    register_plugin(plugin, "throwaway")
    assert "throwaway-sag" not in docgen.yaml_reference()
    section = _section(docgen.yaml_reference(include_all=True), "throwaway-sag")
    assert "plugin `throwaway`" in section
    assert "| `stiffness` | `float` (`> 0`) | `2.0` | how stiff |" in section
    assert "| `span_mm` | mm | `1.5` | 1 … 2 | span |" in section
    assert "| `sag_um` | um | sag |" in section


def test_a_broken_builtin_plugin_stops_generation(monkeypatch):
    monkeypatch.setitem(get_registry().broken, "reflow.fake", "import failed: Traceback\nImportError: no timm")
    with pytest.raises(docgen.DocgenError, match="reflow.fake: ImportError: no timm"):
        docgen.yaml_reference()


def test_docstrings_become_markdown():
    doc = '''Summary with ``code`` and :class:`reflow.Model`.

    Outputs ``<target>_mean`` next to <target>::

        space:
          x_mm: {low: 0, high: 1}

    Done.
    '''
    md = docgen.rst_to_markdown(doc)
    assert "Summary with `code` and `reflow.Model`." in md
    assert "Outputs `<target>_mean` next to &lt;target&gt;:" in md
    assert "```yaml\nspace:\n  x_mm: {low: 0, high: 1}\n```" in md
    assert md.endswith("Done.")
    assert docgen._cell("a | b\nc") == "a \\| b c"


def test_reflow_docs_writes_then_checks(tmp_path):
    guide = tmp_path / "plugin-guide.md"
    guide.write_text(f"# Guide\n\n{docgen.BEGIN_HOOKS}\nold table\n{docgen.END_HOOKS}\nafter\n")
    res = cli("docs", "--out", tmp_path)
    assert res.exit_code == 0, res.output
    assert {p.name for p in tmp_path.iterdir()} == {"plugin-guide.md", "yaml-reference.md", "hooks.md"}
    text = guide.read_text()
    assert "old table" not in text and "| [`on_stage_end`](hooks.md#on_stage_end) |" in text
    assert text.startswith("# Guide\n") and text.endswith(f"{docgen.END_HOOKS}\nafter\n")
    res = cli("docs", "--out", tmp_path, "--check")
    assert res.exit_code == 0 and "up to date" in res.output
    (tmp_path / "hooks.md").write_text("edited by hand\n")
    res = cli("docs", "--out", tmp_path, "--check")
    assert res.exit_code == 1
    assert "out of date" in res.output and "hooks.md" in res.output and "reflow docs --out" in res.output
    assert (tmp_path / "hooks.md").read_text() == "edited by hand\n"  # --check writes nothing


def _anchors(markdown: str) -> set[str]:
    return {docgen._anchor(line.lstrip("#").strip().replace("`", "")) for line in markdown.splitlines()
            if line.startswith("#")}


def test_links_in_the_docs_resolve():
    """Every relative link in docs/ points at a file that exists and, with #anchor, at one of its headings."""
    broken = []
    for page in sorted(DOCS.rglob("*.md")):
        text = page.read_text(encoding="utf-8")
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if target.startswith(("http://", "https://", "mailto:")):
                continue
            path, _, anchor = target.partition("#")
            file = (page.parent / path).resolve() if path else page
            if not file.exists():
                broken.append(f"{page.relative_to(REPO)}: {target} (no such file)")
            elif anchor and file.suffix == ".md" and anchor not in _anchors(file.read_text(encoding="utf-8")):
                broken.append(f"{page.relative_to(REPO)}: {target} (no such heading)")
    assert not broken, "\n".join(broken)

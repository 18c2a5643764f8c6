"""Plugin discovery, registration, clashes, broken plugins and lifecycle hooks."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import reflow
from _cli import cli
from reflow import registry as registry_module
from reflow.errors import PluginError, StudyError
from reflow.registry import get_registry, reset_plugins
from reflow.runner import run_study
from reflow.study import load_study


class Doubler(reflow.Evaluator):
    """Doubles x."""

    inputs = (reflow.Variable("x", default=1.0),)
    outputs = (reflow.Variable("y"),)

    class Params(reflow.Params):
        pass

    def evaluate_one(self, inputs):
        return {"y": 2 * inputs["x"]}


def _evaluator_plugin(name="doubler", cls=Doubler):
    @reflow.hookimpl
    def register_evaluators(register):
        register(name, cls)

    return SimpleNamespace(register_evaluators=register_evaluators)


def test_builtins_come_through_entry_points():
    reg = get_registry()
    assert {"reflow.tasks", "reflow.data", "reflow.physics", "reflow.optimize"} <= set(reg.plugins)
    assert reg.get("bilayer-warpage", "evaluator").plugin == "reflow.physics"
    assert reg.get("lhs", "optimizer").category == "design"
    assert reg.get("doe", "task").kind == "task"
    assert not reg.broken


def test_category_is_the_family_the_role_or_the_kind():
    """One meaning of family: only a model's category is its family; designs and optimizers share a kind and
    are told apart by their role; other components are filed under their kind."""
    reg = get_registry()
    assert reg.get("weibull", "model").category == reg.get("weibull").cls.family == "life-model"
    assert reg.get("lhs", "optimizer").category == "design"
    assert reg.get("nsga2", "optimizer").category == "optimizer"
    assert reg.get("csv", "data_source").category == "data source"
    assert reg.get("doe", "task").category == "task"
    assert not hasattr(reg.get("lhs"), "family")


def test_throwaway_plugin_registers_and_goes_away(register_plugin):
    register_plugin(_evaluator_plugin(), "throwaway")
    assert get_registry().get("doubler").plugin == "throwaway"
    registry_module.remove_plugin("throwaway")
    assert get_registry().find("doubler") is None


def test_unknown_name_lists_valid_ones_and_suggests():
    with pytest.raises(PluginError) as err:
        get_registry().get("bilayer-warpge", "evaluator")
    msg = str(err.value)
    assert "did you mean 'bilayer-warpage'" in msg
    assert "command" in msg and "python" in msg  # the valid evaluators are listed


def test_wrong_kind_is_named():
    with pytest.raises(PluginError, match="'lhs' is an optimizer, not an evaluator"):
        get_registry().get("lhs", "evaluator")


def test_name_clash_is_an_error_naming_both_plugins(register_plugin, write_study):
    register_plugin(_evaluator_plugin("twin"), "plugin-one")
    register_plugin(_evaluator_plugin("twin"), "plugin-two")
    reg = get_registry()
    assert reg.find("twin") is None  # neither plugin wins silently
    with pytest.raises(PluginError) as err:
        reg.get("twin")
    assert "plugin-one" in str(err.value) and "plugin-two" in str(err.value)
    assert reg.find("bilayer-warpage") is not None  # everything else still works
    study = write_study("""
        study: clash
        stages:
          d:
            task: doe
            design: {lhs: {samples: 3}}
            space: {x: {low: 0, high: 1}}
            evaluate: twin
    """)
    with pytest.raises(StudyError) as err:
        load_study(study)
    assert "plugin-one" in str(err.value) and "plugin-two" in str(err.value)


def test_clash_with_a_builtin_name(register_plugin):
    register_plugin(_evaluator_plugin("bilayer-warpage"), "copycat")
    with pytest.raises(PluginError, match="reflow.physics.*copycat"):
        get_registry().get("bilayer-warpage")


@pytest.mark.parametrize(
    "plugin, expected",
    [
        (_evaluator_plugin("Not_Kebab"), "kebab-case"),
        (_evaluator_plugin("not-a-class", cls=object), "not a subclass of reflow.Evaluator"),
        (SimpleNamespace(register_evaluatorz=reflow.hookimpl(lambda register: None)), "unknown hook"),
    ],
    ids=["bad-name", "bad-class", "misspelled-hook"],
)
def test_broken_plugin_is_reported_not_fatal(register_plugin, plugin, expected):
    register_plugin(plugin, "broken-one")
    reg = get_registry()
    assert "broken-one" in reg.broken
    assert expected in reg.broken["broken-one"]
    assert reg.find("bilayer-warpage") is not None
    with pytest.raises(PluginError, match="broken-one"):
        reg.get("not-there")  # an unknown name mentions plugins that failed to load


def test_plugin_that_fails_to_import_is_listed(monkeypatch, write_study):
    real = registry_module._discover

    def discover():
        def load():
            raise ImportError("No module named 'fancy_solver'")

        return real() + [("fancy", load)]

    monkeypatch.setattr(registry_module, "_discover", discover)
    reset_plugins()
    try:
        reg = get_registry()
        assert "fancy_solver" in reg.broken["fancy"]
        result = cli("plugins")
        assert result.exit_code == 0, result.output
        assert "fancy" in result.output and "failed to load" in result.output
        # a study that does not use it still validates
        quick = load_study("studies/quickstart.yaml")
        assert quick.name == "quickstart"
        # a study that asks for a missing component is told about the broken plugin
        study = write_study("""
            study: wants-fancy
            stages:
              d:
                task: doe
                design: lhs
                space: {x: {low: 0, high: 1}}
                evaluate: fancy-solver
        """)
        with pytest.raises(StudyError, match="fancy: ImportError"):
            load_study(study)
    finally:
        monkeypatch.undo()
        reset_plugins()


def test_lifecycle_hooks_are_called_and_cannot_break_a_run(register_plugin, write_study, tmp_path):
    calls = []

    @reflow.hookimpl
    def on_study_start(run):
        calls.append(("start", run.study.name))

    @reflow.hookimpl
    def on_stage_end(run, stage, result):
        calls.append(("stage", stage, type(result).__name__))

    @reflow.hookimpl
    def on_trial_batch(run, stage, trials):
        calls.append(("batch", stage, trials.sizes["trial"]))
        raise RuntimeError("a tracker that crashes")

    register_plugin(SimpleNamespace(on_study_start=on_study_start, on_stage_end=on_stage_end,
                                    on_trial_batch=on_trial_batch), "tracker")
    study = write_study("""
        study: hooks
        stages:
          d:
            task: doe
            design: {lhs: {samples: 5}}
            space: {die_thickness_mm: {low: 0.2, high: 0.6}}
            evaluate: bilayer-warpage
            batch_size: 2
    """)
    run = run_study(load_study(study), out=tmp_path / "runs", quiet=True)
    assert run.manifest["status"] == "done"
    assert calls[0] == ("start", "hooks")
    assert [c for c in calls if c[0] == "batch"] == [("batch", "d", 2), ("batch", "d", 2), ("batch", "d", 1)]
    assert calls[-1] == ("stage", "d", "StageResult")
    assert "tracker" in (run.dir / "run.log").read_text()


def test_lifecycle_hooks_may_take_any_subset_of_their_arguments(register_plugin, write_study, tmp_path):
    """pytest's and llm's convention: an implementation names only the arguments it needs."""
    calls = []

    @reflow.hookimpl
    def on_study_start():
        calls.append("start")

    @reflow.hookimpl
    def on_stage_end(result, stage):
        calls.append((stage, type(result).__name__))

    @reflow.hookimpl
    def on_trial_batch(trials):
        calls.append(trials.sizes["trial"])

    register_plugin(SimpleNamespace(on_study_start=on_study_start, on_stage_end=on_stage_end,
                                    on_trial_batch=on_trial_batch), "picky")
    study = write_study("""
        study: picky
        stages:
          d:
            task: doe
            design: {lhs: {samples: 3}}
            space: {die_thickness_mm: {low: 0.2, high: 0.6}}
            evaluate: bilayer-warpage
            batch_size: 3
    """)
    run = run_study(load_study(study), out=tmp_path / "runs", quiet=True)
    assert run.manifest["status"] == "done"
    assert calls == ["start", 3, ("d", "StageResult")]
    assert "picky" not in (run.dir / "run.log").read_text()  # no TypeError logged for the missing arguments


def test_plugins_show_prints_params():
    result = cli("plugins", "show", "lhs")
    assert result.exit_code == 0, result.output
    for text in ("samples", "16", "optimization", "random-cd", "number of design points"):
        assert text in result.output
    result = cli("plugins", "show", "bilayer-warpage")
    assert "die_thickness_mm" in result.output and "warpage_um" in result.output
    result = cli("plugins", "show", "engelmaier")
    assert "\nVoids take" in result.output, "the docstring's later paragraphs lose the class body's indentation"

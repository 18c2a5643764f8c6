"""Study validation: every kind of mistake is reported with its YAML path, a clear message and its line.

Each study is written to a file and loaded with ``load_study`` so the line numbers are real. Expected
lines are found with :func:`line` (the first line of the study text holding a snippet), which keeps the
tests readable and exact.
"""

from __future__ import annotations

import copy
import json
import textwrap

import pytest
import reflow
from reflow.errors import Problem, StudyError
from reflow.study import StageRead, Study, load_study, stage_reads, validate_study
from reflow.yamlio import load_with_lines

QUICKSTART = """
study: quickstart
description: Warpage of a die on a substrate after the reflow cool-down.
seed: 7
stages:
  warpage:
    task: doe
    design: {lhs: {samples: 32}}
    space:
      die_thickness_mm: {low: 0.1, high: 0.8, units: mm}
      substrate_thickness_mm: {low: 0.4, high: 1.6, units: mm}
      substrate_cte_ppm: {low: 12, high: 18, units: ppm/K}
      length_mm: {low: 5, high: 20, units: mm}
      delta_t_k: {value: -200, units: K}
    evaluate: bilayer-warpage
    plot: [warpage_um, die_interface_stress_mpa]
"""


def line(text: str, snippet: str, nth: int = 1) -> int:
    """1-based line of the ``nth`` line of the (dedented) study text that contains ``snippet``."""
    found = [i for i, row in enumerate(textwrap.dedent(text).lstrip().splitlines(), 1) if snippet in row]
    assert len(found) >= nth, f"{snippet!r} not in the study text"
    return found[nth - 1]


@pytest.fixture
def problems(write_study):
    """``problems(text) -> list[Problem]``: load a study that must fail and return its problems."""

    def _problems(text: str, overrides: list[str] | None = None) -> list[Problem]:
        path = write_study(text)
        with pytest.raises(StudyError) as info:
            load_study(path, overrides)
        assert info.value.source == str(path)
        assert info.value.exit_code == 2
        found = info.value.problems
        assert found, "a StudyError lists at least one problem"
        for p in found:
            assert p.message.strip()
        return found

    return _problems


def one(found: list[Problem]) -> Problem:
    assert len(found) == 1, "\n".join(map(str, found))
    return found[0]


def by_path(found: list[Problem]) -> dict[str, Problem]:
    return {p.path: p for p in found}


# --- top level ------------------------------------------------------------------------------------


def test_quickstart_is_valid():
    study = load_study(reflow_root() / "studies" / "quickstart.yaml")
    assert isinstance(study, Study)
    assert list(study.stages) == ["warpage"]


def reflow_root():
    from pathlib import Path

    return Path(__file__).resolve().parents[2]


def test_unknown_top_level_key_with_did_you_mean(problems):
    text = QUICKSTART.replace("seed: 7", "sede: 7")
    p = one(problems(text))
    assert p.path == "sede"
    assert "unknown key 'sede'" in p.message
    assert "did you mean 'seed'?" in p.message
    assert "allowed: study, description, seed, device, executor, stages" in p.message
    assert p.line == line(text, "sede:")


def test_unknown_top_level_key_without_a_close_match(problems):
    text = QUICKSTART + "frobnication: 3\n"
    p = one(problems(text))
    assert p.message.startswith("unknown key 'frobnication'")
    assert "did you mean" not in p.message
    assert p.line == line(text, "frobnication")


def test_missing_study_name_and_stages(problems):
    text = "description: nothing else\nseed: 1\n"
    found = by_path(problems(text))
    assert set(found) == {"study", "stages"}
    assert found["study"].message == "missing required key"
    assert found["stages"].message == "missing required key"
    assert found["study"].line == 1


@pytest.mark.parametrize(
    ("replace", "path", "fragment"),
    [
        (("study: quickstart", "study: my study"), "study", "use letters, digits, '-' and '_'"),
        (("seed: 7", "seed: -1"), "seed", "greater than or equal to 0"),
        (("seed: 7", "seed: lucky"), "seed", "valid integer"),
        (("seed: 7", "seed: 7\ndevice: gpu"), "device", "allowed: auto, cpu, cuda, cuda:N; got 'gpu'"),
        (("seed: 7", "seed: 7\ndevice: cuda:x"), "device", "got 'cuda:x'"),
        (("seed: 7", "seed: 7\nexecutor: spark"), "executor", "executor must be 'local'"),
        (("seed: 7", "seed: 7\nexecutor: {local: 4}"), "executor", "'local' takes a mapping like {workers: 4}"),
        (("seed: 7", "seed: 7\nexecutor: {local: {workers: 0}}"), "executor.workers", "greater than or equal to 1"),
        (("seed: 7", "seed: 7\nexecutor: {dask: local, workrs: 2}"), "executor.workrs", "did you mean 'workers'?"),
        (("seed: 7", "seed: 7\nexecutor: {dask: null}"), "executor", "a dask executor needs an address"),
        (("seed: 7", "seed: 7\nexecutor: {local: {timeout: -5}}"), "executor.timeout", "greater than 0"),
        (("seed: 7", "seed: 7\nexecutor: {address: tcp://x:1}"), "executor", "'address' is for dask executors"),
    ],
)
def test_bad_header_values(problems, replace, path, fragment):
    text = QUICKSTART.replace(*replace)
    p = one(problems(text))
    assert p.path == path
    assert fragment in p.message
    assert p.line == line(text, replace[1].splitlines()[-1].split(":")[0] + ":")


@pytest.mark.parametrize(
    "executor",
    ["local", "dask", "{local: {workers: 4, timeout: 30}}", "{dask: tcp://10.0.0.5:8786}",
     "{dask: local, workers: 2}", "{workers: 3}"],
)
def test_good_executors(write_study, executor):
    study = load_study(write_study(QUICKSTART.replace("seed: 7", f"seed: 7\nexecutor: {executor}")))
    again = validate_study(study.resolved())
    assert again.executor == study.executor


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda", "cuda:1", "mps"])
def test_good_devices(write_study, device):
    assert load_study(write_study(QUICKSTART.replace("seed: 7", f"seed: 7\ndevice: {device}"))).device == device


def test_a_study_must_be_a_mapping(problems):
    p = one(problems("- study: x\n- stages: {}\n"))
    assert "a study is a mapping with 'study' and 'stages', got list" in p.message
    assert p.line == 1


def test_an_empty_file_is_an_error(problems):
    p = one(problems("# nothing here\n"))
    assert "a study is a mapping" in p.message


def test_no_stages(problems):
    p = one(problems("study: x\nstages: {}\n"))
    assert p.path == "stages"
    assert "at least one stage" in p.message
    assert p.line == 2


# --- stages ---------------------------------------------------------------------------------------


def test_unknown_stage_key_with_did_you_mean(problems):
    text = QUICKSTART.replace("    plot:", "    plots:")
    p = one(problems(text))
    assert p.path == "stages.warpage.plots"
    assert "unknown key 'plots'; did you mean 'plot'?" in p.message
    assert "allowed: design, space, evaluate, batch_size, plot" in p.message
    assert p.line == line(text, "plots:")


def test_unknown_task_with_did_you_mean(problems):
    text = QUICKSTART.replace("task: doe", "task: doee")
    p = one(problems(text))
    assert p.path == "stages.warpage.task"
    assert "unknown task 'doee'; did you mean 'doe'?" in p.message
    assert "Available: " in p.message and "data, doe, evaluate, " in p.message and ", train" in p.message
    assert p.line == line(text, "task: doee")


def test_missing_task(problems):
    text = QUICKSTART.replace("    task: doe\n", "")
    p = one(problems(text))
    assert p.path == "stages.warpage"
    from reflow.registry import get_registry

    assert f"missing key 'task' (one of: {', '.join(get_registry().names('task'))})" in p.message
    assert p.line == line(text, "warpage:")


def test_stage_that_is_not_a_mapping(problems):
    text = QUICKSTART + "  second: doe\n"
    p = one(problems(text))
    assert p.path == "stages.second"
    assert "a stage is a mapping with a 'task' key" in p.message
    assert p.line == line(text, "second:")


@pytest.mark.parametrize("name", ["my.stage", "1st", "with space"])
def test_bad_stage_names(problems, name):
    text = QUICKSTART.replace("  warpage:", f"  {name}:")
    p = one(problems(text))
    assert "stage names use letters, digits, '-' and '_' (no dots)" in p.message
    assert p.line == line(text, f"{name}:")


def test_missing_required_stage_key(problems):
    text = QUICKSTART.replace("    evaluate: bilayer-warpage\n", "")
    p = one(problems(text))
    assert p.path == "stages.warpage.evaluate"
    assert p.message == "missing required key"
    assert p.line == line(text, "warpage:")


def test_wrong_type_of_a_stage_value(problems):
    text = QUICKSTART.replace("    plot: [warpage_um, die_interface_stress_mpa]", "    batch_size: lots")
    p = one(problems(text))
    assert p.path == "stages.warpage.batch_size"
    assert "valid integer" in p.message and "'lots'" in p.message
    assert p.line == line(text, "batch_size")


# --- components -----------------------------------------------------------------------------------


def test_unknown_component_with_did_you_mean(problems):
    text = QUICKSTART.replace("{lhs: {samples: 32}}", "{lhss: {samples: 32}}")
    p = one(problems(text))
    assert p.path == "stages.warpage.design.lhss"
    assert "unknown optimizer 'lhss'; did you mean 'lhs'?" in p.message
    assert "Available:" in p.message and "sobol" in p.message
    assert p.line == line(text, "lhss")


def test_unknown_bare_evaluator_with_did_you_mean(problems):
    text = QUICKSTART.replace("evaluate: bilayer-warpage", "evaluate: bilayer-warpge")
    p = one(problems(text))
    assert p.path == "stages.warpage.evaluate.bilayer-warpge"
    assert "unknown evaluator 'bilayer-warpge'; did you mean 'bilayer-warpage'?" in p.message
    assert p.line == line(text, "bilayer-warpge")


def test_evaluator_used_as_a_design(problems):
    text = QUICKSTART.replace("{lhs: {samples: 32}}", "bilayer-warpage")
    p = one(problems(text))
    assert p.path == "stages.warpage.design.bilayer-warpage"
    assert p.message == "'bilayer-warpage' is an evaluator, not an optimizer"
    assert p.line == line(text, "design: bilayer-warpage")


def test_design_used_as_an_evaluator(problems):
    text = QUICKSTART.replace("evaluate: bilayer-warpage", "evaluate: [bilayer-warpage, sobol]")
    p = one(problems(text))
    assert p.path == "stages.warpage.evaluate[1].sobol"
    assert p.message == "'sobol' is an optimizer, not an evaluator"
    assert p.line == line(text, "evaluate: [")


def test_task_used_as_a_data_source(problems):
    text = "study: s\nstages:\n  d:\n    task: data\n    source:\n      doe: {}\n"
    p = one(problems(text))
    assert p.message == "'doe' is a task, not a data source"
    assert p.line == 6


def test_bad_component_param_type(problems):
    text = QUICKSTART.replace("{lhs: {samples: 32}}", "{lhs: {samples: many}}")
    p = one(problems(text))
    assert p.path == "stages.warpage.design.lhs.samples"
    assert "valid integer" in p.message and "'many'" in p.message
    assert p.line == line(text, "samples: many")


def test_unknown_component_param_with_did_you_mean(problems):
    text = QUICKSTART.replace("{lhs: {samples: 32}}", "\n      lhs:\n        sample: 32\n        scramble: true")
    p = one(problems(text))
    assert p.path == "stages.warpage.design.lhs.sample"
    assert "unknown key 'sample'; did you mean 'samples'?" in p.message
    assert "allowed: samples, optimization, optimize_limit, scramble" in p.message
    assert p.line == line(text, "sample: 32")


def test_component_param_out_of_range_and_literal(problems):
    text = QUICKSTART.replace("{lhs: {samples: 32}}", "{lhs: {samples: 0, optimization: best}}").replace(
        "evaluate: bilayer-warpage", "evaluate:\n      bilayer-warpage:\n        die_poisson: 0.7")
    found = by_path(problems(text))
    assert set(found) == {"stages.warpage.design.lhs.samples", "stages.warpage.design.lhs.optimization",
                          "stages.warpage.evaluate.bilayer-warpage.die_poisson"}
    assert "greater than or equal to 1" in found["stages.warpage.design.lhs.samples"].message
    assert "'random-cd'" in found["stages.warpage.design.lhs.optimization"].message
    assert "less than 0.5" in found["stages.warpage.evaluate.bilayer-warpage.die_poisson"].message
    assert found["stages.warpage.evaluate.bilayer-warpage.die_poisson"].line == line(text, "die_poisson")
    assert found["stages.warpage.design.lhs.samples"].line == line(text, "samples: 0")


def test_component_params_that_are_not_a_mapping(problems):
    text = QUICKSTART.replace("{lhs: {samples: 32}}", "{lhs: 32}")
    p = one(problems(text))
    assert p.path == "stages.warpage.design"
    assert "the params of 'lhs' must be a mapping like {lhs: {key: value}}" in p.message
    assert p.line == line(text, "design:")


def test_component_mapping_with_two_names(problems):
    text = QUICKSTART.replace("{lhs: {samples: 32}}", "{lhs: {}, sobol: {}}")
    p = one(problems(text))
    assert "name a component bare ('lhs') or as a one-key mapping" in p.message
    assert p.line == line(text, "design:")


def test_component_param_validator_message(problems):
    text = QUICKSTART.replace("evaluate: bilayer-warpage", "evaluate: {python: {function: beam}}")
    p = one(problems(text))
    assert p.path == "stages.warpage.evaluate.python.function"
    assert "write it as 'module:function'" in p.message
    assert p.line == line(text, "python:")


def test_empty_pipeline(problems):
    text = QUICKSTART.replace("evaluate: bilayer-warpage", "evaluate: []")
    p = one(problems(text))
    assert p.path == "stages.warpage.evaluate"
    assert "at least one step" in p.message
    assert p.line == line(text, "evaluate: []")


# --- the design space -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("{low: 0.8, high: 0.1}", "low must be below high, got low=0.8 >= high=0.1"),
        ("{low: 0.5, high: 0.5}", "low must be below high, got low=0.5 >= high=0.5"),
        ("{high: 0.8}", "a range needs both low and high"),
        ("{low: 0.1}", "a range needs both low and high"),
        ("{low: .nan, high: 1}", "bounds must be finite"),
        ("{low: 0, high: .inf}", "bounds must be finite"),
        ("{low: 0, high: 1, log: true}", "a log-scaled range needs low > 0"),
        ("{low: 0.5, high: 3, type: int}", "an integer range needs whole bounds"),
        ("{low: 1, high: 3, type: integer}", "'float' or 'int'"),
        ("{low: small, high: 3}", "valid number"),
        ("{choices: [0.5]}", "choices needs at least two values"),
        ("{choices: []}", "choices needs at least two values"),
        ("{choices: [a, b, a]}", "choices has duplicates"),
        ("{choices: a}", "valid list"),
        ("{choices: [a, b], low: 0, high: 1}", "give exactly one of"),
        ("{units: mm}", "give exactly one of"),
        ("{choices: [a, b], log: true}", "'type' and 'log' apply to ranges"),
        ("{low: 0.1, hihg: 0.8}", "unknown key 'hihg'; did you mean 'high'?"),
        ("0.5", "valid dictionary"),
    ],
)
def test_bad_space_factors(problems, spec, fragment):
    text = QUICKSTART.replace("die_thickness_mm: {low: 0.1, high: 0.8, units: mm}", f"die_thickness_mm: {spec}")
    p = one(problems(text))
    assert p.path.startswith("stages.warpage.space.die_thickness_mm")
    assert fragment in p.message
    assert p.line == line(text, "die_thickness_mm:")


def test_space_with_nothing_that_varies(problems):
    text = QUICKSTART
    for name in ("die_thickness_mm", "substrate_thickness_mm", "substrate_cte_ppm", "length_mm"):
        text = text.replace(f"      {name}: {{low", f"      {name}: {{value: 1, units: mm}}  # {{low")
    p = one(problems(text))
    assert p.path == "stages.warpage.space"
    assert "at least one factor that varies" in p.message
    assert p.line == line(text, "space:")


def test_space_factor_that_is_not_an_input_of_the_evaluator(problems):
    text = QUICKSTART.replace("length_mm: {low: 5", "lenght_mm: {low: 5").replace(
        "delta_t_k: {value", "frobnicate: {value")
    found = by_path(problems(text))
    assert set(found) == {"stages.warpage.space.lenght_mm", "stages.warpage.space.frobnicate"}
    typo = found["stages.warpage.space.lenght_mm"]
    assert "'lenght_mm' is not an input of the evaluator; did you mean 'length_mm'?" in typo.message
    assert "inputs: die_thickness_mm, substrate_thickness_mm" in typo.message
    assert typo.line == line(text, "lenght_mm")
    junk = found["stages.warpage.space.frobnicate"]
    assert "did you mean" not in junk.message
    assert junk.line == line(text, "frobnicate")


def test_space_factor_is_not_checked_against_a_user_function(write_study):
    text = QUICKSTART.replace("evaluate: bilayer-warpage", "evaluate: {python: {function: 'beam:run'}}").replace(
        "length_mm: {low: 5", "anything_mm: {low: 5")
    assert load_study(write_study(text)).stages["warpage"].params.space["anything_mm"].low == 5


def test_box_behnken_needs_three_factors(problems):
    text = """
        study: bb
        stages:
          grid:
            task: doe
            design: box-behnken
            space:
              die_thickness_mm: {low: 0.1, high: 0.8}
              length_mm: {low: 5, high: 20}
            evaluate: bilayer-warpage
    """
    p = one(problems(text))
    assert p.path == "stages.grid.design.box-behnken"
    assert "a Box-Behnken design needs at least 3 varying factors" in p.message
    assert p.line == line(text, "design: box-behnken")


def test_central_composite_needs_numeric_factors(problems):
    text = """
        study: ccd
        stages:
          grid:
            task: doe
            design:
              central-composite: {face: faced}
            space:
              die_thickness_mm: {low: 0.1, high: 0.8}
              length_mm: {choices: [5, 10, 20]}
            evaluate: bilayer-warpage
    """
    p = one(problems(text))
    assert p.path == "stages.grid.design.central-composite"
    assert "factor 'length_mm' is categorical; central composite designs need numeric factors" in p.message
    assert p.line == line(text, "central-composite:")


def test_fractional_factorial_needs_two_level_categories(problems):
    text = """
        study: ff
        stages:
          grid:
            task: doe
            design: {fractional-factorial: {resolution: 3}}
            space:
              die_thickness_mm: {low: 0.1, high: 0.8}
              substrate_thickness_mm: {low: 0.4, high: 1.6}
              length_mm: {choices: [5, 10, 20]}
            evaluate: bilayer-warpage
    """
    p = one(problems(text))
    assert "factor 'length_mm' has 3 choices; two-level designs need 2" in p.message
    assert p.line == line(text, "fractional-factorial")


def test_a_design_that_is_an_optimizer_is_refused_by_doe(problems, register_plugin):
    class Tpe(reflow.Optimizer):
        class Params(reflow.Params):
            pass

    class Plugin:
        @reflow.hookimpl
        def register_optimizers(self, register):
            register("test-tpe", Tpe)

    register_plugin(Plugin(), "test-optimizer-plugin")
    text = QUICKSTART.replace("{lhs: {samples: 32}}", "test-tpe")
    p = one(problems(text))
    assert "'test-tpe' is an optimizer, not a design of experiments" in p.message
    assert p.line == line(text, "design: test-tpe")


# --- references between stages --------------------------------------------------------------------

DATA_EVALUATE = """
study: lab
stages:
  points:
    task: data
    source: {csv: {path: points.csv}}
  warp:
    task: evaluate
    data: points
    evaluate: bilayer-warpage
"""


def test_data_and_evaluate_study_is_valid(write_study):
    study = load_study(write_study(DATA_EVALUATE))
    assert list(study.stages) == ["points", "warp"]
    assert study.stages["warp"].depends_on == ["points"]
    assert str(study.stages["warp"].params.data) == "points"


def test_missing_data_reference_with_did_you_mean(problems):
    text = DATA_EVALUATE.replace("data: points", "data: pionts")
    p = one(problems(text))
    assert p.path == "stages.warp.data"
    assert "no stage named 'pionts'; did you mean 'points'?" in p.message
    assert "(stages: points, warp)" in p.message
    assert p.line == line(text, "data: pionts")


def test_unknown_output_of_a_stage(problems):
    text = DATA_EVALUATE.replace("data: points", "data: points.trials")
    p = one(problems(text))
    assert p.path == "stages.warp.data"
    assert "stage 'points' has no output 'trials' (its outputs: data)" in p.message
    assert p.line == line(text, "data: points.trials")


def test_misspelt_output_gets_did_you_mean(problems):
    text = DATA_EVALUATE + "  again:\n    task: evaluate\n    data: warp.trails\n    evaluate: bilayer-warpage\n"
    p = one(problems(text))
    assert p.path == "stages.again.data"
    assert "stage 'warp' has no output 'trails'; did you mean warp.trials?" in p.message
    assert p.line == line(text, "warp.trails")


def test_named_outputs_are_accepted(write_study):
    text = DATA_EVALUATE + "  again:\n    task: evaluate\n    data: warp.trials\n    evaluate: bilayer-warpage\n"
    study = load_study(write_study(text))
    assert study.stages["again"].depends_on == ["warp"]


@pytest.mark.parametrize("ref", ["'points.data.x'", "'.points'", "3", "[points]"])
def test_malformed_data_reference(problems, ref):
    text = DATA_EVALUATE.replace("data: points", f"data: {ref}")
    p = one(problems(text))
    assert p.path == "stages.warp.data"
    assert "a data reference is 'stage' or 'stage.output'" in p.message
    assert p.line == line(text, f"data: {ref}")


def test_evaluate_inputs_not_accepted_by_the_evaluator(problems):
    text = DATA_EVALUATE.replace("    data: points\n", "    data: points\n    inputs:\n      - length_mm\n"
                                                      "      - die_thicknes_mm\n")
    p = one(problems(text))
    assert p.path == "stages.warp.inputs[1]"
    assert "'die_thicknes_mm' is not an input of the evaluator; did you mean 'die_thickness_mm'?" in p.message
    assert p.line == line(text, "- die_thicknes_mm")


def test_trained_model_from_a_stage_that_trains_nothing(problems):
    text = DATA_EVALUATE.replace("evaluate: bilayer-warpage", "evaluate: [bilayer-warpage, {stage: points}]")
    p = one(problems(text))
    assert p.path == "stages.warp.evaluate[1].stage"
    assert ("stage 'points' trains no model (its task is not a training task), so it cannot be used as an "
            "evaluator") in p.message
    assert p.line == line(text, "{stage: points}")


def test_trained_model_from_a_missing_stage(problems):
    text = DATA_EVALUATE.replace("evaluate: bilayer-warpage", "evaluate:\n      - stage: pints")
    p = one(problems(text))
    assert p.path == "stages.warp.evaluate[0].stage"  # a one-item YAML list keeps its index
    assert "no stage named 'pints'; did you mean 'points'?" in p.message
    assert p.line == line(text, "stage: pints")


def test_bare_component_path_has_no_index(problems):
    text = DATA_EVALUATE.replace("evaluate: bilayer-warpage", "evaluate: {stage: pints}")
    p = one(problems(text))
    assert p.path == "stages.warp.evaluate.stage"
    assert p.line == line(text, "{stage: pints}")


def test_trained_model_is_not_allowed_as_a_design(problems):
    text = QUICKSTART.replace("{lhs: {samples: 32}}", "{stage: warpage}")
    p = one(problems(text))
    assert p.path == "stages.warpage.design"
    assert "a trained model ({stage: ...}) cannot be used here" in p.message
    assert p.line == line(text, "design: {stage")


class _Mean(reflow.Model):
    """A throwaway regressor: predicts the training mean."""

    family = "regressor"

    class Params(reflow.Params):
        shrink: float = 0.0


class _ModelPlugin:
    @reflow.hookimpl
    def register_models(self, register):
        register("test-mean", _Mean)


TRAIN = DATA_EVALUATE.replace("evaluate: bilayer-warpage", "evaluate: [bilayer-warpage, {stage: fit}]") + """\
  fit:
    task: train
    model: test-mean
    data: points
    target: warpage_um
"""


def test_trained_model_as_an_evaluator_orders_the_stages(write_study, register_plugin):
    register_plugin(_ModelPlugin(), "test-model-plugin")
    study = load_study(write_study(TRAIN))
    assert list(study.stages) == ["points", "fit", "warp"]
    assert study.stages["warp"].depends_on == ["fit", "points"]
    resolved = study.resolved()
    assert resolved["stages"]["warp"]["evaluate"][1] == {"stage": "fit"}
    assert resolved["stages"]["fit"]["model"] == {"test-mean": {"shrink": 0.0}}
    assert validate_study(resolved).resolved() == resolved


def test_stage_reads_name_the_data_models_and_values_each_stage_takes(write_study, register_plugin):
    register_plugin(_ModelPlugin(), "test-model-plugin")
    text = TRAIN.replace("data: points\n    evaluate", "data: points.data\n    evaluate") + """\
  field:
    task: doe
    design: {lhs: {samples: 4}}
    space:
      die_thickness_mm: {low: 0.1, high: 0.8}
      length_mm: {value: "${points.length_mm:p95}"}
    evaluate: [{stage: fit}, {stage: fit}]
"""
    reads = stage_reads(load_study(write_study(text)))
    assert reads == {
        "points": [],
        "fit": [StageRead("points", "data")],
        "warp": [StageRead("points", "data", "data"), StageRead("fit", "model")],
        "field": [StageRead("fit", "model"), StageRead("points", "value", "${points.length_mm:p95}")],
    }
    for found in reads.values():  # as the manifest keeps them
        assert [StageRead.from_json(json.loads(json.dumps(r.to_json()))) for r in found] == found


def test_train_stage_cannot_reuse_a_trained_model(problems, register_plugin):
    register_plugin(_ModelPlugin(), "test-model-plugin")
    text = TRAIN + "  refit:\n    task: train\n    model: {stage: fit}\n    data: points\n    target: y\n"
    p = one(problems(text))
    assert p.path == "stages.refit.model"
    assert "train a new model here" in p.message
    assert p.line == line(text, "model: {stage: fit}")


def test_a_stage_using_its_own_output(problems):
    text = DATA_EVALUATE.replace("data: points", "data: warp")
    p = one(problems(text))
    assert p.path == "stages.warp"
    assert "a stage cannot use its own output" in p.message
    assert p.line == line(text, "warp:")


def test_cycle_between_two_evaluate_stages(problems):
    text = """
        study: loop
        stages:
          first:
            task: evaluate
            data: second.trials
            evaluate: bilayer-warpage
          second:
            task: evaluate
            data: first
            evaluate: bilayer-warpage
    """
    p = one(problems(text))
    assert p.path == "stages.first"
    assert "stages depend on each other in a cycle: first -> second -> first" in p.message
    assert p.line == line(text, "first:")


def test_cycle_of_three_is_reported_next_to_other_problems(problems):
    text = """
        study: loop
        device: gpu
        stages:
          a:
            task: evaluate
            data: c
            evaluate: bilayer-warpage
          b:
            task: evaluate
            data: a
            evaluate: bilayer-warpage
          c:
            task: evaluate
            data: b
            evaluate: bilayer-warpage
    """
    found = by_path(problems(text))
    assert set(found) == {"device", "stages.a"}
    cycle = found["stages.a"].message
    assert "cycle" in cycle and all(f"{s} -> " in cycle for s in "abc")
    assert found["stages.a"].line == line(text, "a:")


# --- all at once ----------------------------------------------------------------------------------

SEVERAL = """
study: several
sede: 3
device: gpu
stages:
  points:
    task: data
    source: {csv: {path: points.csv, delimitr: ";"}}
  warpage:
    task: doe
    desing: lhs
    design: {lhss: {samples: 32}}
    space:
      die_thickness_mm: {low: 0.8, high: 0.1}
      substrate_thickness_mm: {high: 1.6}
    evaluate: bilayer-warpage
  warp:
    task: evaluate
    data: pionts
    evaluate: [bilayer-warpage, {stage: points}]
  check:
    task: evalute
"""


def test_several_mistakes_are_reported_at_once_sorted_by_line(problems):
    found = problems(SEVERAL)
    expected = {
        "sede": ("did you mean 'seed'?", "sede:"),
        "device": ("got 'gpu'", "device:"),
        "stages.points.source.csv.delimitr": ("did you mean 'delimiter'?", "delimitr"),
        "stages.warpage.desing": ("did you mean 'design'?", "desing"),
        "stages.warpage.design.lhss": ("did you mean 'lhs'?", "lhss"),
        "stages.warpage.space.die_thickness_mm": ("low must be below high", "die_thickness_mm"),
        "stages.warpage.space.substrate_thickness_mm": ("needs both low and high", "substrate_thickness_mm"),
        "stages.warp.data": ("did you mean 'points'?", "data: pionts"),
        "stages.warp.evaluate[1].stage": ("trains no model", "{stage: points}"),
        "stages.check.task": ("did you mean 'evaluate'?", "task: evalute"),
    }
    assert {p.path for p in found} == set(expected), "\n".join(map(str, found))
    for p in found:
        fragment, snippet = expected[p.path]
        assert fragment in p.message, p
        assert p.line == line(SEVERAL, snippet), p
    lines = [p.line for p in found]
    assert all(isinstance(n, int) for n in lines)
    assert lines == sorted(lines)


def test_several_mistakes_message_lists_each_with_its_line(write_study):
    path = write_study(SEVERAL)
    with pytest.raises(StudyError) as info:
        load_study(path)
    message = str(info.value)
    assert message.startswith(f"{path}: 10 problems in the study:")
    for p in info.value.problems:
        assert f"line {p.line}: {p.path}: {p.message}" in message


def test_validate_cli_lists_every_problem_and_exits_2(write_study, run_cli):
    path = write_study(SEVERAL)
    result = run_cli("validate", path)
    assert result.returncode == 2, result.stderr + result.stdout
    output = result.stdout + result.stderr
    assert "Traceback" not in output
    for snippet in ("sede", "lhss", "pionts", "evalute"):
        assert f"line {line(SEVERAL, snippet)}" in output, output


def test_problem_lines_survive_overrides(problems):
    found = by_path(problems(QUICKSTART, ["stages.warpage.space.length_mm.low=50", "device=tpu"]))
    assert found["device"].line is None or found["device"].line >= 1
    assert found["stages.warpage.space.length_mm"].line == line(QUICKSTART, "length_mm")


# --- valid studies: defaults, round trip, order ---------------------------------------------------


def test_resolved_fills_defaults_and_round_trips(write_study):
    study = load_study(write_study(QUICKSTART))
    resolved = study.resolved()
    assert resolved["device"] == "auto"
    assert resolved["executor"] == "local"
    stage = resolved["stages"]["warpage"]
    assert stage["task"] == "doe"
    assert stage["batch_size"] == 16
    assert stage["design"] == {"lhs": {"samples": 32, "optimization": "random-cd", "optimize_limit": 500,
                                         "scramble": True}}
    assert stage["evaluate"] == [{"bilayer-warpage": {"biaxial": False, "die_poisson": 0.28,
                                                     "substrate_poisson": 0.15}}]
    assert stage["space"]["delta_t_k"]["value"] == -200
    assert stage["space"]["length_mm"]["log"] is False

    again = validate_study(copy.deepcopy(resolved))
    assert again.resolved() == resolved
    assert again.name == study.name and again.seed == study.seed


def test_resolved_round_trips_through_yaml_text(write_study):
    import yaml

    text = QUICKSTART.replace("seed: 7", "seed: 7\ndevice: cpu\nexecutor: {dask: local, workers: 2, timeout: 9}")
    study = load_study(write_study(text))
    resolved = study.resolved()
    data, lines = load_with_lines(yaml.safe_dump(resolved, sort_keys=False))
    assert validate_study(data, lines=lines).resolved() == resolved
    assert resolved["executor"] == {"dask": "local", "workers": 2, "timeout": 9.0}


def test_stage_order_follows_dependencies_and_keeps_declared_order_otherwise(write_study):
    text = """
        study: order
        stages:
          report:
            task: evaluate
            data: warp.trials
            evaluate: bilayer-warpage
          independent:
            task: doe
            design: {sobol: {samples: 8}}
            space:
              length_mm: {low: 5, high: 20}
            evaluate: bilayer-warpage
          warp:
            task: evaluate
            data: points
            evaluate: bilayer-warpage
          points:
            task: data
            source: {csv: {path: points.csv}}
    """
    study = load_study(write_study(text))
    order = list(study.stages)
    assert order == ["independent", "points", "warp", "report"]
    assert study.stages["report"].depends_on == ["warp"]
    assert study.stages["independent"].depends_on == []
    resolved = study.resolved()
    assert list(resolved["stages"]) == order
    assert list(validate_study(resolved).stages) == order


def test_validate_study_without_lines_still_reports_paths():
    with pytest.raises(StudyError) as info:
        validate_study({"study": "x", "stages": {"a": {"task": "doee"}}})
    (p,) = info.value.problems
    assert p.path == "stages.a.task"
    assert p.line is None
    assert str(p) == f"stages.a.task: {p.message}"

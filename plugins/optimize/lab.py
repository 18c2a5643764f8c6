"""Evaluator ``lab``: results measured by people, handed out and taken back with ``reflow ask``/``tell``."""

from __future__ import annotations

import reflow
from pydantic import Field, field_validator
from reflow.components import Variable


class Lab(reflow.Evaluator):
    """A laboratory: the ``optimize`` task asks for experiments and waits for the measurements.

    ``reflow run`` stops at the stage; ``reflow ask RUN_DIR --stage S -n 4`` writes the next experiments to
    a CSV (parameters with their units, empty columns for the outputs); ``reflow tell RUN_DIR --stage S
    results.csv`` reads the filled-in CSV back; ``reflow run --resume RUN_DIR`` finishes the stage once the
    budget is measured. Declare what is measured and in which units, so a CSV in other units is refused.
    """

    manual = True
    accepts_any_inputs = True

    class Params(reflow.Params):
        outputs: dict[str, str] = Field(description="measured outputs and their units, e.g. {tg_c: degC}")

        @field_validator("outputs")
        @classmethod
        def _some(cls, value: dict[str, str]) -> dict[str, str]:
            if not value:
                raise ValueError("name at least one measured output, e.g. {tg_c: degC}")
            return value

    def output_variables(self) -> tuple[Variable, ...]:
        return tuple(Variable(name, units) for name, units in self.params.outputs.items())

    def evaluate_one(self, inputs):
        raise reflow.EvaluationError("lab results come from people: use reflow ask and reflow tell")

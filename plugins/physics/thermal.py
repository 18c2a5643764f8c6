"""Junction temperature of a power module through a Foster thermal network, with die-attach degradation.

Foster network: each layer i from junction to ambient has a thermal resistance R_i (K/W) and a time
constant tau_i = R_i C_i (s). For a power step P switched on at t = 0 the junction rises as

    Tj(t) = T_ambient + P * sum_i R_i (1 - exp(-t / tau_i))

and settles at T_ambient + P * sum_i R_i (the steady state). Die-attach degradation: thermal cycling grows
cracks in the solder under the die, and voids are there from the start; heat then flows through the intact
fraction of the area only, so R_attach = R_attach,0 / ((1 - void_fraction) (1 - crack_fraction)) with
crack_fraction = min(max_crack, (aging_cycles / cycles_to_full_crack)^crack_exponent). The default layer
values are illustrative for a 1200 V IGBT module (datasheets give R and tau for their own modules: use
those).
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import reflow
from pydantic import BaseModel, ConfigDict, Field, model_validator
from reflow.components import Variable


class FosterLayer(BaseModel):
    """One RC element of a Foster network."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="layer name")
    rth_k_per_w: float = Field(gt=0, description="thermal resistance in K/W")
    tau_s: float = Field(gt=0, description="time constant R*C in s")


DEFAULT_LAYERS = [
    FosterLayer(name="die", rth_k_per_w=0.010, tau_s=0.002),
    FosterLayer(name="die-attach", rth_k_per_w=0.030, tau_s=0.02),
    FosterLayer(name="substrate", rth_k_per_w=0.060, tau_s=0.15),
    FosterLayer(name="baseplate", rth_k_per_w=0.040, tau_s=1.5),
    FosterLayer(name="heatsink", rth_k_per_w=0.150, tau_s=40.0),
]


def crack_fraction(aging_cycles: float, cycles_to_full_crack: float, exponent: float, max_crack: float) -> float:
    """Cracked fraction of the die-attach area after ``aging_cycles`` thermal cycles."""
    if aging_cycles < 0:
        raise ValueError(f"aging_cycles must be >= 0, got {aging_cycles}")
    return min(max_crack, (aging_cycles / cycles_to_full_crack) ** exponent)


def foster_rise(power_w: float, layers: list[tuple[float, float]], time_s: float | None) -> float:
    """Junction temperature rise over ambient; ``time_s=None`` gives the steady state."""
    if time_s is None:
        return power_w * sum(r for r, _ in layers)
    if time_s < 0:
        raise ValueError(f"time_s must be >= 0, got {time_s}")
    return power_w * sum(r * (1.0 - math.exp(-time_s / tau)) for r, tau in layers)


class JunctionTemperature(reflow.Evaluator):
    """Junction temperature of a power module (Foster RC network) with a degrading die attach."""

    inputs = (
        Variable("power_w", "W", 0.0, 5000.0, default=200.0, description="dissipated power"),
        Variable("ambient_c", "degC", -55.0, 150.0, default=40.0, description="ambient (coolant) temperature"),
        Variable("aging_cycles", "cycles", 0.0, 1e6, default=0.0, description="thermal cycles survived so far"),
        Variable("void_fraction", "", 0.0, 0.9, default=0.0, description="voided die-attach area fraction"),
        Variable("time_s", "s", 0.0, 1e5, default=1.0, description="time after the power step (transient mode)"),
    )
    outputs = (
        Variable("tj_c", "degC", description="junction temperature"),
        Variable("rth_ja_k_per_w", "K/W", description="total junction-to-ambient resistance of the network"),
        Variable("die_attach_rth_k_per_w", "K/W", description="degraded die-attach resistance"),
        Variable("crack_fraction", "", description="cracked die-attach area fraction"),
    )

    class Params(reflow.Params):
        mode: Literal["steady", "transient"] = Field("steady", description="steady state or step response at time_s")
        layers: list[FosterLayer] = Field(default_factory=lambda: list(DEFAULT_LAYERS),
                                          description="Foster RC elements from junction to ambient")
        attach_layer: str = Field("die-attach", description="the layer that degrades")
        cycles_to_full_crack: float = Field(60000.0, gt=0, description="cycles at which the attach would be cracked")
        crack_exponent: float = Field(1.5, gt=0, description="crack growth exponent in the cycle count")
        max_crack: float = Field(0.9, gt=0, lt=1, description="largest cracked fraction the model allows")

        @model_validator(mode="after")
        def _attach_known(self):
            names = [layer.name for layer in self.layers]
            if self.attach_layer not in names:
                raise ValueError(f"attach_layer {self.attach_layer!r} is not a layer (layers: {', '.join(names)})")
            return self

    def evaluate_arrays(self, inputs):
        """A batch as arrays; a row out of range comes out NaN and :meth:`evaluate_one` says what is wrong."""
        p = self.params
        void, cycles, power, ambient, time_s = (np.asarray(inputs[k], dtype=float) for k in (
            "void_fraction", "aging_cycles", "power_w", "ambient_c", "time_s"))
        bad = ~((void >= 0.0) & (void < 1.0) & (cycles >= 0.0))
        crack = np.minimum(p.max_crack, (np.where(bad, 0.0, cycles) / p.cycles_to_full_crack) ** p.crack_exponent)
        total = np.zeros_like(void)
        rise = np.zeros_like(void)
        attach = np.zeros_like(void)
        transient = p.mode == "transient"
        if transient:
            bad |= ~(time_s >= 0.0)
        for layer in p.layers:
            r = np.full_like(void, layer.rth_k_per_w)
            if layer.name == p.attach_layer:
                r = r / ((1.0 - void) * (1.0 - crack))
                attach = r
            total = total + r
            tau = layer.tau_s * r / layer.rth_k_per_w
            rise = rise + (r * (1.0 - np.exp(-time_s / tau)) if transient else r)
        tj = np.where(bad, np.nan, ambient + power * rise)
        return {"tj_c": tj, "rth_ja_k_per_w": total, "die_attach_rth_k_per_w": attach, "crack_fraction": crack}

    def evaluate_one(self, inputs):
        p = self.params
        void = inputs["void_fraction"]
        if not 0.0 <= void < 1.0:
            raise ValueError(f"void_fraction must be in [0, 1), got {void}")
        crack = crack_fraction(inputs["aging_cycles"], p.cycles_to_full_crack, p.crack_exponent, p.max_crack)
        layers = []
        attach = 0.0
        for layer in p.layers:
            r = layer.rth_k_per_w
            if layer.name == p.attach_layer:
                r = r / ((1.0 - void) * (1.0 - crack))
                attach = r
            # C stays (same material volume), so tau scales with R
            layers.append((r, layer.tau_s * r / layer.rth_k_per_w))
        rise = foster_rise(inputs["power_w"], layers, inputs["time_s"] if p.mode == "transient" else None)
        return {"tj_c": inputs["ambient_c"] + rise, "rth_ja_k_per_w": sum(r for r, _ in layers),
                "die_attach_rth_k_per_w": attach, "crack_fraction": crack}

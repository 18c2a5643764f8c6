"""IGBT junction-temperature samples the way Liu et al. (2021) trained their ICS-ELM: Vce(sat), Ic, aging -> Tj.

Liu, Chen, Lin, Zhang, Liu, "Prediction of IGBT junction temperature using improved cuckoo search-based extreme
learning machine", Microelectron. Reliab. 124 (2021) 114267 (seed 000, ref. 226), predict the junction
temperature from the saturation voltage drop Vce(sat), the collector current Ic and the number of aging (thermal)
cycles. This source generates such a data set from physics instead of a test bench: modules are aged over thermal
cycles; at every aging level, collector current and ambient (coolant) temperature, the module runs at a steady
operating point, and we "measure" Vce(sat), Ic and Tj.

Electrical side: Vce(sat) as the temperature-sensitive electrical parameter (TSEP). An IGBT in conduction is a
knee voltage in series with a resistance (the datasheet's output characteristic, linearised around the load
current)::

    Vce(sat)(Tj, Ic, N) = V0 + a_V0 (Tj - 25)  +  Ic [ r_chip (1 + a_r (Tj - 25)) + R_bond / (1 - lift(N)) ]

- V0, the pn-junction knee, falls with temperature (a_V0 < 0, diode-like, about -1 mV/K);
- r_chip, the drift-region (on-state) resistance, rises with temperature (falling carrier mobility, a_r > 0);
- the two cancel at the crossover current Ic = -a_V0 / (r_chip a_r) (about a quarter of the rated current here);
  above it Vce(sat) has the positive temperature coefficient trench-field-stop IGBTs are known for
  ("VCEsat with positive temperature coefficient" in their datasheets), which is what makes it usable as a TSEP
  at load current.

Stated temperature coefficient (the default params): dVce(sat)/dTj = a_V0 + Ic r_chip a_r = +2.8 mV/K at the
rated 450 A (V0 = 0.80 V, a_V0 = -1.0 mV/K, r_chip = 1.7 mOhm, a_r = 5.0e-3 /K, R_bond = 0.4 mOhm), giving
1.745 V at 25 degC and 2.10 V at 150 degC. Source: Infineon FF450R12IE4 (1200 V / 450 A, trench/field-stop IGBT4)
datasheet rev. 2.4 (2013): Vce(sat) typ. 1.75 V at Tvj = 25 degC, 2.05 V at 125 degC, 2.10 V at 150 degC at
Ic = 450 A, Vge = 15 V, i.e. +2.8 mV/K between 25 and 150 degC (+3.0 mV/K to 125 degC); 1200-1700 V IGBT4 modules
lie at about +2 .. +4 mV/K (FF450R17ME4P: 1.95 V -> 2.45 V, +4.0 mV/K). Assumptions: the characteristic is linear
in Ic around the operating point and linear in Tj (datasheets show a slight curvature: 125 degC reads 2.05 V where
the line gives 2.03 V); the bond-wire and terminal resistance R_bond is taken as temperature independent (its
aluminium temperature coefficient is lumped into a_r).

Aging drift: power cycling lifts bond wires off the chip metallisation; the remaining wires carry the current, so
R_bond grows as 1 / (1 - lift) with the lifted fraction lift(N) = min(max_lift, (N / cycles_to_full_lift)^m),
the same capped power law as the die-attach crack growth of ``junction-temperature`` (and computed by its
``crack_fraction``). A rise of Vce(sat) of 5 % at the same current and temperature is the usual end-of-life
criterion of power-cycling tests (AQG 324, JESD22-A122); the defaults reach it near 36,000 cycles at 450 A.

Thermal side: the ``junction-temperature`` evaluator (Foster network with a die attach that cracks with the aging
cycles and carries the module's voids) gives Tj from the dissipated power, here the conduction loss
P = Vce(sat) Ic duty (switching losses are left out: a conduction test bench, or fold them into ``duty``).

Electro-thermal coupling: Tj depends on P, which depends on Vce(sat), which depends on Tj. The source solves the
fixed point Tj = Tth(P(Vce(sat)(Tj))) by iteration from Tj = T_ambient. Vce(sat) is affine in Tj and the steady
Foster network is affine in P, so the map is affine with slope (the loop gain)
g = Rth_ja duty Ic dVce(sat)/dTj: for |g| < 1 it is a contraction and the error shrinks by |g| per iteration
(Banach fixed-point theorem; about 0.1 at the defaults, so a dozen iterations reach 1e-9 K). |g| >= 1 means
electro-thermal runaway (no stable operating point) and is reported as an error.

Module-to-module scatter: each module draws its die-attach void fraction, a lognormal life factor (scaling both
the cycles to full die-attach crack and to full bond-wire lift-off) and a relative scatter of V0 and r_chip.
``module_id`` identifies the module, so training splits can be grouped by module (``split: {by: module_id}``).

Operating points whose junction would pass ``max_tj_c`` (175 degC by default, Tvj,max of IGBT4), or that run
away, are not measured, as a bench's over-temperature protection would stop them; ``attrs`` counts them.

Measurement noise: Gaussian, on the recorded Vce(sat) (V), Ic (relative) and the reference Tj (K); zero noise
gives the model's truth. The truth columns (``*_true``) and the diagnostics stay in the data set for checks; train
on ``vce_sat_v``, ``ic_a`` and ``aging_cycles`` as Liu et al. do (list them as ``features``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import reflow
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from reflow.errors import DataError

from .thermal import JunctionTemperature, crack_fraction


class VceSatModel(BaseModel):
    """Vce(sat)(Tj, Ic) of the IGBT chip plus its bond wires; defaults fit the FF450R12IE4 datasheet (see module)."""

    model_config = ConfigDict(extra="forbid")

    v0_v: float = Field(0.80, gt=0, description="knee voltage at 25 degC in V")
    v0_tc_v_per_k: float = Field(-1.0e-3, description="temperature coefficient of the knee voltage in V/K")
    r_chip_ohm: float = Field(1.7e-3, gt=0, description="on-state (drift) resistance of the chip at 25 degC in Ohm")
    r_tc_per_k: float = Field(5.0e-3, ge=0, description="relative temperature coefficient of r_chip in 1/K")
    r_bond_ohm: float = Field(0.4e-3, ge=0, description="bond-wire and terminal resistance of a new module in Ohm")
    cycles_to_full_lift: float = Field(60000.0, gt=0, description="cycles at which every bond wire would be lifted")
    lift_exponent: float = Field(2.0, gt=0, description="exponent of the lifted fraction in the cycle count")
    max_lift: float = Field(0.8, gt=0, lt=1, description="largest lifted fraction the model allows")

    def lift_fraction(self, aging_cycles: float, life_factor: float = 1.0) -> float:
        """Lifted bond-wire fraction after ``aging_cycles`` (same capped power law as the die-attach crack)."""
        return crack_fraction(aging_cycles, self.cycles_to_full_lift * life_factor, self.lift_exponent,
                              self.max_lift)

    def vce(self, tj_c: float, ic_a: float, lift: float = 0.0, scale: tuple[float, float] = (1.0, 1.0)) -> float:
        """Vce(sat) in V at junction temperature ``tj_c``, current ``ic_a`` and lifted bond fraction ``lift``.

        ``scale`` multiplies (V0, r_chip): a module's part-to-part scatter.
        """
        dt = tj_c - 25.0
        r = self.r_chip_ohm * scale[1] * (1.0 + self.r_tc_per_k * dt) + self.r_bond_ohm / (1.0 - lift)
        return self.v0_v * scale[0] + self.v0_tc_v_per_k * dt + ic_a * r

    def temperature_coefficient(self, ic_a: float, scale: tuple[float, float] = (1.0, 1.0)) -> float:
        """dVce(sat)/dTj in V/K at ``ic_a`` (independent of Tj: the model is affine in Tj)."""
        return self.v0_tc_v_per_k + ic_a * self.r_chip_ohm * scale[1] * self.r_tc_per_k


class ThermalRunaway(ValueError):
    """The electro-thermal loop gain is >= 1: the operating point has no stable junction temperature."""


@dataclass
class OperatingPoint:
    """A solved electro-thermal operating point; ``residuals_k`` is |Tj_(k+1) - Tj_k| per iteration."""

    tj_c: float
    vce_sat_v: float
    power_w: float
    rth_ja_k_per_w: float
    crack_fraction: float
    lift_fraction: float
    loop_gain: float
    iterations: int
    residuals_k: list[float] = field(default_factory=list)


def solve_operating_point(ic_a: float, ambient_c: float, aging_cycles: float, *, chip: VceSatModel,
                          thermal: JunctionTemperature, duty: float, void_fraction: float = 0.0,
                          life_factor: float = 1.0, scale: tuple[float, float] = (1.0, 1.0),
                          tol_k: float = 1e-9, max_iterations: int = 200) -> OperatingPoint:
    """Solve Tj = Tth(Vce(sat)(Tj) Ic duty) by fixed-point iteration (a contraction when the loop gain is < 1).

    ``thermal`` is a steady-state ``junction-temperature`` evaluator; ``life_factor`` stretches the module's
    aging (die-attach crack and bond-wire lift) over more cycles.
    """
    if ic_a < 0 or not np.isfinite(ic_a):
        raise ValueError(f"ic_a must be a finite current >= 0 A, got {ic_a}")
    if thermal.params.mode != "steady":
        raise ValueError("the operating points are steady states: use a junction-temperature model in mode steady")
    lift = chip.lift_fraction(aging_cycles, life_factor)
    inputs = {"ambient_c": ambient_c, "aging_cycles": aging_cycles / life_factor, "void_fraction": void_fraction,
              "time_s": 0.0}
    # the steady Foster network is affine in P: Tj = T_ambient + Rth_ja P; Rth_ja comes from the same evaluator
    unit = thermal.evaluate_one({**inputs, "power_w": 1.0})
    rth = unit["rth_ja_k_per_w"]
    gain = rth * duty * ic_a * chip.temperature_coefficient(ic_a, scale)
    if abs(gain) >= 1.0:
        raise ThermalRunaway(f"electro-thermal runaway at Ic = {ic_a:g} A, {aging_cycles:g} cycles: loop gain "
                         f"Rth_ja*duty*Ic*dVce/dTj = {gain:.3f} >= 1, no stable operating point")
    tj = float(ambient_c)
    residuals = []
    for _ in range(max_iterations):
        vce = chip.vce(tj, ic_a, lift, scale)
        power = vce * ic_a * duty
        new = thermal.evaluate_one({**inputs, "power_w": power})["tj_c"]
        residuals.append(abs(new - tj))
        tj = new
        if residuals[-1] <= tol_k:
            break
    else:
        raise RuntimeError(f"no electro-thermal convergence in {max_iterations} iterations "
                           f"(last change {residuals[-1]:.3g} K, loop gain {gain:.3f})")
    vce = chip.vce(tj, ic_a, lift, scale)
    return OperatingPoint(tj_c=tj, vce_sat_v=vce, power_w=vce * ic_a * duty, rth_ja_k_per_w=rth,
                          crack_fraction=unit["crack_fraction"], lift_fraction=lift, loop_gain=gain,
                          iterations=len(residuals), residuals_k=residuals)


class ModuleSpread(BaseModel):
    """Part-to-part scatter between modules."""

    model_config = ConfigDict(extra="forbid")

    void_fraction: tuple[float, float] = Field((0.0, 0.08), description="range of the initial die-attach voids "
                                                                         "(uniform per module)")
    life_sigma: float = Field(0.2, ge=0, le=2, description="sigma of the lognormal life factor per module")
    chip_rel: float = Field(0.01, ge=0, le=0.2, description="relative sd of the module's V0 and r_chip")

    @field_validator("void_fraction")
    @classmethod
    def _void_range(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not 0.0 <= v[0] <= v[1] < 1.0:
            raise ValueError(f"void_fraction must be a range 0 <= low <= high < 1, got {list(v)}")
        return v


class Noise(BaseModel):
    """Gaussian measurement noise; all zero gives the model's truth."""

    model_config = ConfigDict(extra="forbid")

    vce_v: float = Field(0.003, ge=0, description="sd of the measured Vce(sat) in V")
    ic_rel: float = Field(0.005, ge=0, lt=0.5, description="relative sd of the measured collector current")
    tj_k: float = Field(0.5, ge=0, description="sd of the reference junction temperature in K")


_UNITS = {
    "module_id": "", "aging_cycles": "cycles", "ambient_c": "degC", "ic_a": "A", "vce_sat_v": "V", "tj_c": "degC",
    "ic_set_a": "A", "vce_sat_true_v": "V", "tj_true_c": "degC", "power_w": "W", "rth_ja_k_per_w": "K/W",
    "crack_fraction": "1", "lift_fraction": "1", "void_fraction": "1", "loop_gain": "1", "iterations": "",
}


class IgbtJunctionSamples(reflow.DataSource):
    """IGBT modules aged over thermal cycles: measured Vce(sat), Ic and aging cycles with the junction temperature.

    Every module x aging level x current x ambient gives one sample (dim ``sample``): a steady electro-thermal
    operating point of the ``junction-temperature`` Foster network and a Vce(sat)(Tj, Ic) characteristic with
    a positive temperature coefficient and bond-wire aging (module docstring: equations and sources). Liu et al.'s
    ELM inputs are ``vce_sat_v``, ``ic_a``, ``aging_cycles``; the target is ``tj_c``; group by ``module_id``.
    Module scatter and noise are drawn from the stage's generator (``ctx.rng``): the study seed fixes the data.
    """

    class Params(reflow.Params):
        modules: int = Field(6, ge=1, le=10000, description="number of modules (groups, module_id 0..modules-1)")
        aging_cycles: list[float] = Field([0.0, 10000.0, 20000.0, 30000.0, 40000.0],
                                          description="aging levels in thermal cycles at which every module is "
                                                      "measured")
        currents_a: list[float] = Field([100.0, 150.0, 200.0, 250.0, 300.0, 350.0, 400.0, 450.0],
                                        description="collector currents of the operating points in A")
        ambient_c: list[float] = Field([25.0, 45.0, 65.0],
                                       description="ambient (coolant) temperatures of the operating points in degC")
        duty: float = Field(0.25, gt=0, le=1, description="conduction duty cycle: P = Vce(sat) Ic duty")
        rated_current_a: float = Field(450.0, gt=0, description="rated current; kept in attrs with the temperature "
                                                                "coefficient there")
        chip: VceSatModel = Field(default_factory=VceSatModel, description="Vce(sat) characteristic and bond-wire "
                                                                           "aging")
        thermal: JunctionTemperature.Params = Field(
            default_factory=JunctionTemperature.Params,
            description="the junction-temperature evaluator's params (Foster layers, die-attach cracking); "
                        "mode must be steady")
        spread: ModuleSpread = Field(default_factory=ModuleSpread, description="module-to-module scatter")
        noise: Noise = Field(default_factory=Noise, description="measurement noise")
        max_tj_c: float | None = Field(175.0, description="operating points whose junction would exceed this are "
                                                          "not run (the bench's protection; 175 degC = Tvj,max of "
                                                          "IGBT4); null keeps them all")
        tol_k: float = Field(1e-9, gt=0, description="fixed-point tolerance on Tj in K")
        max_iterations: int = Field(200, ge=1, description="iteration limit of the electro-thermal fixed point")

        @field_validator("aging_cycles", "currents_a", "ambient_c")
        @classmethod
        def _non_empty(cls, v: list[float], info) -> list[float]:
            if not v:
                raise ValueError(f"{info.field_name} needs at least one value")
            if any(not np.isfinite(x) for x in v):
                raise ValueError(f"{info.field_name} must be finite numbers, got {v}")
            if info.field_name == "aging_cycles" and min(v) < 0:
                raise ValueError(f"aging_cycles must be >= 0, got {v}")
            if info.field_name == "currents_a" and min(v) <= 0:
                raise ValueError(f"currents_a must be > 0 A, got {v}")
            if info.field_name == "ambient_c" and not all(-55.0 <= x <= 150.0 for x in v):
                raise ValueError(f"ambient_c must lie in [-55, 150] degC, got {v}")
            return v

        @model_validator(mode="after")
        def _steady(self):
            if self.thermal.mode != "steady":
                raise ValueError("thermal.mode must be 'steady': the operating points are steady states")
            return self

    def load(self, ctx):
        import xarray as xr

        p = self.params
        rng = ctx.rng
        n_mod = p.modules
        voids = rng.uniform(p.spread.void_fraction[0], p.spread.void_fraction[1], n_mod)
        life = np.exp(rng.normal(0.0, p.spread.life_sigma, n_mod))
        scales = 1.0 + p.spread.chip_rel * rng.standard_normal((n_mod, 2))
        rows: dict[str, list] = {k: [] for k in _UNITS}
        total = n_mod * len(p.aging_cycles) * len(p.currents_a) * len(p.ambient_c)
        thermal = JunctionTemperature(p.thermal)
        skipped = 0
        with ctx.progress(total=total, description="igbt operating points") as bar:
            for m in range(n_mod):
                scale = (float(scales[m, 0]), float(scales[m, 1]))
                for cycles in p.aging_cycles:
                    for ic in p.currents_a:
                        for amb in p.ambient_c:
                            bar.advance()
                            try:
                                op = solve_operating_point(ic, amb, cycles, chip=p.chip, thermal=thermal,
                                                           duty=p.duty, void_fraction=float(voids[m]),
                                                           life_factor=float(life[m]), scale=scale, tol_k=p.tol_k,
                                                           max_iterations=p.max_iterations)
                            except ThermalRunaway:
                                if p.max_tj_c is None:
                                    raise
                                skipped += 1  # the bench's protection trips: no sample
                                continue
                            if p.max_tj_c is not None and op.tj_c > p.max_tj_c:
                                skipped += 1
                                continue
                            for key, value in (("module_id", m), ("aging_cycles", cycles), ("ambient_c", amb),
                                               ("ic_set_a", ic), ("vce_sat_true_v", op.vce_sat_v),
                                               ("tj_true_c", op.tj_c), ("power_w", op.power_w),
                                               ("rth_ja_k_per_w", op.rth_ja_k_per_w),
                                               ("crack_fraction", op.crack_fraction),
                                               ("lift_fraction", op.lift_fraction),
                                               ("void_fraction", float(voids[m])), ("loop_gain", op.loop_gain),
                                               ("iterations", op.iterations)):
                                rows[key].append(value)
        n = len(rows["module_id"])
        if n == 0:
            raise DataError(f"igbt-junction-samples: every operating point exceeds max_tj_c = "
                            f"{p.max_tj_c} degC or runs away")
        ic_set = np.asarray(rows["ic_set_a"], dtype=float)
        rows["ic_a"] = ic_set * (1.0 + p.noise.ic_rel * rng.standard_normal(n))
        rows["vce_sat_v"] = np.asarray(rows["vce_sat_true_v"]) + p.noise.vce_v * rng.standard_normal(n)
        rows["tj_c"] = np.asarray(rows["tj_true_c"]) + p.noise.tj_k * rng.standard_normal(n)
        order = ["module_id", "aging_cycles", "ic_a", "vce_sat_v", "tj_c", "ambient_c", "ic_set_a",
                 "vce_sat_true_v", "tj_true_c", "power_w", "rth_ja_k_per_w", "crack_fraction", "lift_fraction",
                 "void_fraction", "loop_gain", "iterations"]
        ds = xr.Dataset({k: ("sample", np.asarray(rows[k], dtype=int if k in ("module_id", "iterations")
                                                   else float)) for k in order},
                        coords={"sample": np.arange(n)})
        for k in order:
            ds[k].attrs["units"] = _UNITS[k]
        ds["vce_sat_v"].attrs["description"] = "measured collector-emitter saturation voltage (the TSEP)"
        ds["tj_c"].attrs["description"] = "measured (reference) junction temperature"
        ds["module_id"].attrs["description"] = "module the sample was measured on: group splits by it"
        tc = p.chip.temperature_coefficient(p.rated_current_a)
        ds.attrs.update(source="igbt-junction-samples", features="vce_sat_v,ic_a,aging_cycles", target="tj_c",
                        group="module_id", vce_tc_at_rated_v_per_k=float(tc), rated_current_a=p.rated_current_a,
                        max_loop_gain=float(np.max(np.abs(rows["loop_gain"]))),
                        skipped_over_temperature=skipped)
        return ds

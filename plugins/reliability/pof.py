"""Physics-of-failure closed forms: acceleration factors and cycles to failure.

Each is an evaluator, so a pipeline can feed it a strain from a simulation or a void fraction from an
inspection stage. Temperatures are in degrees Celsius (converted to kelvin inside), energies in eV.

Sources:
- Arrhenius acceleration: AF = exp(Ea/k (1/T_use - 1/T_test)), k = 8.617333262e-5 eV/K (CODATA 2018).
- Black, "Electromigration failure modes in aluminum metallization", IEEE Trans. Electron Devices 16 (1969):
  MTTF = A j^-n exp(Ea / k T).
- Norris and Landzberg, IBM J. Res. Dev. 13 (1969) 266: AF = (dT_t/dT_f)^n (f_f/f_t)^m exp(Ea/k (1/Tmax_f -
  1/Tmax_t)); SnPb n = 1.9, m = 1/3, Ea/k = 1414 K. SAC305: Pan et al., "An acceleration model for Sn-Ag-Cu
  solder joint reliability under various thermal cycle conditions", SMTA International 2005: n = 2.65,
  m = 0.136, Ea/k = 2185 K.
- Coffin (1954), Manson (1953): N_f = 1/2 (d_eps_p / (2 eps_f'))^(1/c).
- Engelmaier, "Fatigue life of leadless chip carrier solder joints during power cycling", IEEE Trans. CHMT 6
  (1983) 232: N_f = 1/2 (d_gamma / (2 eps_f'))^(1/c), eps_f' = 0.325, c = -0.442 - 6e-4 T_s + 1.74e-2 ln(1 + f),
  T_s the mean cyclic solder temperature in deg C, f the cycling frequency in cycles per day (1 <= f <= 1000).
  Calibrated to a test: eps_f' = d_gamma_ref / (2 (2 N_ref)^c_ref), the closed-form inverse at a reference
  condition whose cycles to failure N_ref were observed.
- B-life of a Weibull population with characteristic life eta and shape beta: B_p = eta (-ln(1 - p))^(1/beta),
  so B10 = eta (-ln 0.9)^(1/beta) (Abernethy, "The New Weibull Handbook", 5th ed., 2006, ch. 2).
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Literal

import numpy as np
import reflow
from pydantic import BaseModel, ConfigDict, Field, model_validator
from reflow.components import Variable

BOLTZMANN_EV = 8.617333262e-5
"""Boltzmann constant in eV/K (CODATA 2018)."""

NORRIS_LANDZBERG_CONSTANTS = {
    # alloy: (n, m, Ea/k in K), with the source in the module docstring
    "snpb": (1.9, 1.0 / 3.0, 1414.0),
    "sac": (2.65, 0.136, 2185.0),
}


def kelvin(celsius: float) -> float:
    value = celsius + 273.15
    if value <= 0:
        raise ValueError(f"temperature {celsius} degC is below absolute zero")
    return value


def arrhenius_af(ea_ev: float, use_c: float, test_c: float) -> float:
    """How many times faster a thermally activated failure runs at ``test_c`` than at ``use_c``."""
    return math.exp(ea_ev / BOLTZMANN_EV * (1.0 / kelvin(use_c) - 1.0 / kelvin(test_c)))


def norris_landzberg_af(dt_test: float, dt_field: float, f_test: float, f_field: float, tmax_test_c: float,
                        tmax_field_c: float, n: float, m: float, ea_over_k: float) -> float:
    """Cycles in the field per cycle in the test (the acceleration factor of the test)."""
    if min(dt_test, dt_field, f_test, f_field) <= 0:
        raise ValueError("temperature ranges and frequencies must be positive")
    return ((dt_test / dt_field) ** n * (f_field / f_test) ** m
            * math.exp(ea_over_k * (1.0 / kelvin(tmax_field_c) - 1.0 / kelvin(tmax_test_c))))


def strain_life_cycles(strain_range: float, ductility: float, exponent: float) -> float:
    """Coffin-Manson / Engelmaier: N_f = 1/2 (strain_range / (2 ductility))^(1/exponent)."""
    if strain_range <= 0:
        raise ValueError(f"the strain range must be positive, got {strain_range}")
    return 0.5 * (strain_range / (2.0 * ductility)) ** (1.0 / exponent)


def engelmaier_exponent(mean_temp_c: float, cycles_per_day: float) -> float:
    """Engelmaier's fatigue ductility exponent c (negative)."""
    return -0.442 - 6e-4 * mean_temp_c + 1.74e-2 * math.log(1.0 + cycles_per_day)


DEFAULT_DUCTILITY = 0.325  # Engelmaier's eps_f' for eutectic SnPb


def calibrated_ductility(cycles_to_failure: float, strain_range: float, exponent: float) -> float:
    """The fatigue ductility eps_f' with which N_f = 1/2 (strain_range / (2 eps_f'))^(1/c) equals
    ``cycles_to_failure``: eps_f' = strain_range / (2 (2 N_f)^c), the strain-life law solved for eps_f'."""
    if not cycles_to_failure > 0:
        raise ValueError(f"the reference cycles to failure must be positive, got {cycles_to_failure}")
    if not strain_range > 0:
        raise ValueError(f"the reference strain range must be positive, got {strain_range}")
    return strain_range / (2.0 * (2.0 * cycles_to_failure) ** exponent)


def _arrays(*values: object) -> list[np.ndarray]:
    return [np.asarray(v, dtype=float) for v in values]


def _kelvin_arrays(celsius: np.ndarray) -> np.ndarray:
    """:func:`kelvin` on arrays: NaN below absolute zero (that row's ``evaluate_one`` then says so)."""
    k = np.asarray(celsius, dtype=float) + 273.15
    return np.where(k > 0, k, np.nan)


def weibull_b_life(characteristic_life: float, shape: float, percent: float = 10.0) -> float:
    """Cycles by which ``percent`` % of a Weibull population (scale ``characteristic_life``, ``shape``) fail."""
    return characteristic_life * (-math.log1p(-percent / 100.0)) ** (1.0 / shape)


class Arrhenius(reflow.Evaluator):
    """Arrhenius acceleration factor between a use and a test temperature."""

    inputs = (
        Variable("use_temp_c", "degC", -55, 200, default=55.0, description="use temperature"),
        Variable("test_temp_c", "degC", -55, 300, default=125.0, description="test temperature"),
    )
    outputs = (Variable("acceleration_factor", "", description="use life / test life"),)

    class Params(reflow.Params):
        activation_energy_ev: float = Field(0.7, gt=0, lt=5, description="activation energy Ea in eV")

    def evaluate_arrays(self, inputs):
        """A batch as arrays (NaN rows go through :meth:`evaluate_one`, which says what is wrong)."""
        use, test = _kelvin_arrays(inputs["use_temp_c"]), _kelvin_arrays(inputs["test_temp_c"])
        return {"acceleration_factor": np.exp(self.params.activation_energy_ev / BOLTZMANN_EV
                                              * (1.0 / use - 1.0 / test))}

    def evaluate_one(self, inputs):
        af = arrhenius_af(self.params.activation_energy_ev, inputs["use_temp_c"], inputs["test_temp_c"])
        return {"acceleration_factor": af}


class Black(reflow.Evaluator):
    """Black's equation for electromigration: median time to failure and the acceleration of a test."""

    inputs = (
        Variable("current_density_a_per_cm2", "A/cm^2", 1e3, 1e8, default=1e6, description="use current density"),
        Variable("temp_c", "degC", -55, 300, default=105.0, description="use (metal) temperature"),
        Variable("test_current_density_a_per_cm2", "A/cm^2", 1e3, 1e8, default=2e6, description="test density"),
        Variable("test_temp_c", "degC", -55, 400, default=250.0, description="test temperature"),
    )
    outputs = (
        Variable("mttf_h", "h", description="median time to failure at use conditions, A j^-n exp(Ea/kT)"),
        Variable("acceleration_factor", "", description="use MTTF / test MTTF"),
    )

    class Params(reflow.Params):
        activation_energy_ev: float = Field(0.7, gt=0, lt=5, description="Ea in eV (about 0.5-0.9 for Al, Cu)")
        current_exponent: float = Field(2.0, gt=0, le=5, description="current density exponent n (Black: 2)")
        prefactor_h: float = Field(1e10, gt=0, description="A in h (A/cm^2)^n, fitted to test data")

    def evaluate_arrays(self, inputs):
        """A batch as arrays (NaN rows go through :meth:`evaluate_one`, which says what is wrong)."""
        ea, n = self.params.activation_energy_ev, self.params.current_exponent
        j, jt = _arrays(inputs["current_density_a_per_cm2"], inputs["test_current_density_a_per_cm2"])
        t, tt = _kelvin_arrays(inputs["temp_c"]), _kelvin_arrays(inputs["test_temp_c"])
        bad = ~((j > 0) & (jt > 0))
        mttf = self.params.prefactor_h * j ** (-n) * np.exp(ea / (BOLTZMANN_EV * t))
        af = (jt / j) ** n * np.exp(ea / BOLTZMANN_EV * (1.0 / t - 1.0 / tt))
        return {"mttf_h": np.where(bad, np.nan, mttf), "acceleration_factor": np.where(bad, np.nan, af)}

    def evaluate_one(self, inputs):
        ea, n = self.params.activation_energy_ev, self.params.current_exponent
        j, t = inputs["current_density_a_per_cm2"], kelvin(inputs["temp_c"])
        jt, tt = inputs["test_current_density_a_per_cm2"], kelvin(inputs["test_temp_c"])
        if min(j, jt) <= 0:
            raise ValueError("current densities must be positive")
        mttf = self.params.prefactor_h * j ** (-n) * math.exp(ea / (BOLTZMANN_EV * t))
        af = (jt / j) ** n * math.exp(ea / BOLTZMANN_EV * (1.0 / t - 1.0 / tt))
        return {"mttf_h": mttf, "acceleration_factor": af}


class NorrisLandzberg(reflow.Evaluator):
    """Norris-Landzberg acceleration factor of a thermal-cycling test over a field profile; field cycles."""

    inputs = (
        Variable("test_delta_t_k", "K", 1, 300, default=165.0, description="test temperature range"),
        Variable("field_delta_t_k", "K", 1, 300, default=60.0, description="field temperature range"),
        Variable("test_cycles_per_day", "1/day", 0.1, 1000, default=48.0, description="test frequency"),
        Variable("field_cycles_per_day", "1/day", 0.1, 1000, default=2.0, description="field frequency"),
        Variable("test_tmax_c", "degC", -55, 300, default=125.0, description="test peak temperature"),
        Variable("field_tmax_c", "degC", -55, 300, default=85.0, description="field peak temperature"),
        Variable("test_cycles", "cycles", 0, 1e7, default=1000.0, description="cycles survived in test (e.g. B10)"),
    )
    outputs = (
        Variable("acceleration_factor", "", description="field cycles per test cycle"),
        Variable("field_cycles", "cycles", description="test_cycles x acceleration factor"),
    )

    class Params(reflow.Params):
        alloy: Literal["snpb", "sac", "custom"] = Field("sac", description="published constants (see module doc)")
        n: float | None = Field(None, gt=0, description="temperature-range exponent (alloy: custom)")
        m: float | None = Field(None, ge=0, description="frequency exponent (alloy: custom)")
        ea_over_k: float | None = Field(None, ge=0, description="Ea/k in K (alloy: custom)")
        test_life: str = Field("test_cycles", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
                               description="input holding the test life to translate, e.g. b10_cycles from a "
                                           "Weibull stage; the field life is output as field_<name> (without "
                                           "a test_ prefix): field_cycles, field_b10_cycles")

        @model_validator(mode="after")
        def _custom(self):
            given = [v is not None for v in (self.n, self.m, self.ea_over_k)]
            if self.alloy == "custom" and not all(given):
                raise ValueError("alloy: custom needs n, m and ea_over_k")
            if self.alloy != "custom" and any(given):
                raise ValueError(f"n, m and ea_over_k come from alloy {self.alloy!r}; set alloy: custom to give them")
            return self

    def constants(self) -> tuple[float, float, float]:
        if self.params.alloy == "custom":
            return self.params.n, self.params.m, self.params.ea_over_k
        return NORRIS_LANDZBERG_CONSTANTS[self.params.alloy]

    def _field_name(self) -> str:
        name = self.params.test_life
        return "field_" + (name[len("test_"):] if name.startswith("test_") else name)

    def input_variables(self) -> tuple[Variable, ...]:
        """The test life comes from the input ``test_life`` names (a Weibull stage's b10_cycles, say); a
        renamed one has no default, so a pipeline that does not produce it fails loudly, not with 1000."""
        if self.params.test_life == "test_cycles":
            return type(self).inputs
        return tuple(replace(v, name=self.params.test_life, default=None, description=f"test life to translate "
                             f"({self.params.test_life})") if v.name == "test_cycles" else v for v in type(self).inputs)

    def output_variables(self) -> tuple[Variable, ...]:
        return tuple(replace(v, name=self._field_name(), description=f"{self.params.test_life} x acceleration "
                             "factor") if v.name == "field_cycles" else v for v in type(self).outputs)

    def evaluate_arrays(self, inputs):
        """A batch as arrays (NaN rows go through :meth:`evaluate_one`, which says what is wrong)."""
        n, m, ea_over_k = self.constants()
        dt_t, dt_f, f_t, f_f = _arrays(inputs["test_delta_t_k"], inputs["field_delta_t_k"],
                                       inputs["test_cycles_per_day"], inputs["field_cycles_per_day"])
        bad = ~((dt_t > 0) & (dt_f > 0) & (f_t > 0) & (f_f > 0))
        af = ((dt_t / dt_f) ** n * (f_f / f_t) ** m * np.exp(ea_over_k * (
            1.0 / _kelvin_arrays(inputs["field_tmax_c"]) - 1.0 / _kelvin_arrays(inputs["test_tmax_c"]))))
        af = np.where(bad, np.nan, af)
        return {"acceleration_factor": af,
                self._field_name(): np.asarray(inputs[self.params.test_life], dtype=float) * af}

    def evaluate_one(self, inputs):
        n, m, ea_over_k = self.constants()
        af = norris_landzberg_af(inputs["test_delta_t_k"], inputs["field_delta_t_k"], inputs["test_cycles_per_day"],
                                 inputs["field_cycles_per_day"], inputs["test_tmax_c"], inputs["field_tmax_c"],
                                 n, m, ea_over_k)
        return {"acceleration_factor": af, self._field_name(): inputs[self.params.test_life] * af}


class CoffinManson(reflow.Evaluator):
    """Coffin-Manson low-cycle fatigue: cycles to failure from the plastic strain range."""

    inputs = (Variable("plastic_strain_range", "", 1e-5, 1.0, default=0.01, description="plastic strain range"),)
    outputs = (Variable("cycles_to_failure", "cycles", description="N_f = 1/2 (d_eps / (2 eps_f'))^(1/c)"),)

    class Params(reflow.Params):
        fatigue_ductility: float = Field(0.325, gt=0, description="fatigue ductility coefficient eps_f'")
        exponent: float = Field(-0.5, lt=0, gt=-2, description="fatigue ductility exponent c (about -0.5 to -0.7)")

    def evaluate_arrays(self, inputs):
        """A batch as arrays (NaN rows go through :meth:`evaluate_one`, which says what is wrong)."""
        (strain,) = _arrays(inputs["plastic_strain_range"])
        cycles = 0.5 * (strain / (2.0 * self.params.fatigue_ductility)) ** (1.0 / self.params.exponent)
        return {"cycles_to_failure": np.where(strain > 0, cycles, np.nan)}

    def evaluate_one(self, inputs):
        n = strain_life_cycles(inputs["plastic_strain_range"], self.params.fatigue_ductility, self.params.exponent)
        return {"cycles_to_failure": n}


class EngelmaierReference(BaseModel):
    """A condition at which the cycles to failure were observed (a thermal-cycling test), to calibrate eps_f'.

    Every value may be a stage value, e.g. ``cycles_to_failure: "${life.eta}"`` (a Weibull stage's
    characteristic life) and ``shear_strain_range: "${nominal.trials.solder_shear_strain_range:mean}"``.
    """

    model_config = ConfigDict(extra="forbid")

    cycles_to_failure: float = Field(gt=0, description="cycles to failure observed at the reference condition "
                                                       "(e.g. a Weibull fit's characteristic life eta)")
    shear_strain_range: float = Field(gt=0, le=1.0, description="cyclic shear strain range of the joints in "
                                                                "that test (before void derating)")
    mean_solder_temp_c: float = Field(ge=-55, le=200, description="mean cyclic solder temperature of the test")
    cycles_per_day: float = Field(ge=1, le=1000, description="cycling frequency of the test")
    void_fraction: float = Field(0.0, ge=0.0, lt=1.0, description="void fraction of the tested joints")


class Engelmaier(reflow.Evaluator):
    """Engelmaier solder-joint fatigue life from the cyclic shear strain range, with void derating.

    Voids take load-bearing area away: with a void fraction v the same shear force acts on (1 - v) of the
    joint, so the effective shear strain range is d_gamma / (1 - v) (linear, force-controlled). This is the
    hook through which inspection results (a void fraction from SAM images) enter life predictions.

    ``strain`` names the input that holds the strain range, so a pipeline can feed it from a simulation
    (``strain: solder_shear_strain_range`` after ``fea-package``). ``calibrate`` sets eps_f' so that a
    reference condition (a test whose failures were observed) gives its observed cycles to failure; the model
    then carries that test to other strains, temperatures, frequencies and void fractions. ``weibull_shape``
    reads N_f as a Weibull characteristic life and adds ``b10_cycles`` = N_f (-ln 0.9)^(1/beta).
    """

    inputs = (
        Variable("shear_strain_range", "", 1e-5, 1.0, default=0.01, description="cyclic shear strain range"),
        Variable("mean_solder_temp_c", "degC", -55, 200, default=25.0, description="mean cyclic solder temperature"),
        Variable("cycles_per_day", "1/day", 1, 1000, default=24.0, description="cycling frequency"),
        Variable("void_fraction", "", 0.0, 0.95, default=0.0, description="voided fraction of the joint area"),
    )
    outputs = (
        Variable("cycles_to_failure", "cycles", description="mean cycles to failure N_f"),
        Variable("fatigue_exponent", "", description="Engelmaier's c"),
        Variable("effective_strain_range", "", description="d_gamma / (1 - void_fraction)"),
    )

    class Params(reflow.Params):
        fatigue_ductility: float | None = Field(None, gt=0, description="eps_f' (default 0.325, eutectic SnPb, "
                                                                         "Engelmaier); set by calibrate when that "
                                                                         "is given")
        strain: str = Field("shear_strain_range", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
                            description="input holding the cyclic shear strain range, e.g. "
                                        "solder_shear_strain_range from fea-package (a renamed input has no "
                                        "default: a pipeline that does not produce it fails loudly)")
        calibrate: EngelmaierReference | None = Field(
            None, description="fit eps_f' to a test: {cycles_to_failure, shear_strain_range, mean_solder_temp_c, "
                              "cycles_per_day, void_fraction}; values may be stage values (${life.eta})")
        weibull_shape: float | None = Field(None, gt=0, le=50, description="Weibull shape beta of the population "
                                            "(e.g. ${life.beta}): adds the output b10_cycles = N_f (-ln 0.9)^(1/beta)"
                                            ", N_f read as the characteristic life")

        @model_validator(mode="after")
        def _one_ductility(self):
            # the value decides, not whether the field was set: a resolved study writes every field out
            if self.calibrate is not None and self.fatigue_ductility is not None:
                raise ValueError("give either fatigue_ductility or calibrate (which sets it), not both")
            return self

    def ductility(self) -> float:
        """eps_f': the given one, or the one that reproduces the calibration's reference condition."""
        ref = self.params.calibrate
        if ref is None:
            return DEFAULT_DUCTILITY if self.params.fatigue_ductility is None else self.params.fatigue_ductility
        c = engelmaier_exponent(ref.mean_solder_temp_c, ref.cycles_per_day)
        return calibrated_ductility(ref.cycles_to_failure, ref.shear_strain_range / (1.0 - ref.void_fraction), c)

    def input_variables(self) -> tuple[Variable, ...]:
        if self.params.strain == "shear_strain_range":
            return type(self).inputs
        return tuple(replace(v, name=self.params.strain, default=None, description=f"cyclic shear strain range "
                             f"({self.params.strain})") if v.name == "shear_strain_range" else v
                     for v in type(self).inputs)

    def output_variables(self) -> tuple[Variable, ...]:
        extra = []
        if self.params.calibrate is not None:
            extra.append(Variable("fatigue_ductility", "", description="eps_f' calibrated to the reference test"))
        if self.params.weibull_shape is not None:
            extra.append(Variable("b10_cycles", "cycles", description="N_f (-ln 0.9)^(1/beta): cycles by which 10 "
                                                                      "% of the joints fail"))
        return type(self).outputs + tuple(extra)

    def evaluate_arrays(self, inputs):
        """A batch as arrays (NaN rows go through :meth:`evaluate_one`, which says what is wrong)."""
        void, f, temp, strain = _arrays(inputs["void_fraction"], inputs["cycles_per_day"],
                                        inputs["mean_solder_temp_c"], inputs[self.params.strain])
        bad = ~((void >= 0.0) & (void < 1.0) & (f >= 1.0) & (f <= 1000.0))
        c = -0.442 - 6e-4 * temp + 1.74e-2 * np.log1p(f)
        strain = strain / (1.0 - void)
        ductility = self.ductility()
        n = np.where(bad | ~(strain > 0), np.nan, 0.5 * (strain / (2.0 * ductility)) ** (1.0 / c))
        out = {"cycles_to_failure": n, "fatigue_exponent": c, "effective_strain_range": strain}
        if self.params.calibrate is not None:
            out["fatigue_ductility"] = np.full(n.shape, ductility)
        if self.params.weibull_shape is not None:
            out["b10_cycles"] = n * (-math.log1p(-0.1)) ** (1.0 / self.params.weibull_shape)
        return out

    def evaluate_one(self, inputs):
        void = inputs["void_fraction"]
        if not 0.0 <= void < 1.0:
            raise ValueError(f"void_fraction must be in [0, 1), got {void}")
        f = inputs["cycles_per_day"]
        if not 1.0 <= f <= 1000.0:
            raise ValueError(f"Engelmaier's model holds for 1 to 1000 cycles per day, got {f}")
        c = engelmaier_exponent(inputs["mean_solder_temp_c"], f)
        strain = inputs[self.params.strain] / (1.0 - void)
        ductility = self.ductility()
        n = strain_life_cycles(strain, ductility, c)
        out = {"cycles_to_failure": n, "fatigue_exponent": c, "effective_strain_range": strain}
        if self.params.calibrate is not None:
            out["fatigue_ductility"] = ductility
        if self.params.weibull_shape is not None:
            out["b10_cycles"] = weibull_b_life(n, self.params.weibull_shape, 10.0)
        return out

"""A simulated epoxy-formulation lab: DGEBA/TGDDM/DDS/PES mass fractions and a cure schedule -> measured properties.

Seed 000 (Jin et al., Mater. Design 194 (2020) 108932) optimized a DGEBA / TGDDM / DDS / PES resin and reports
that the ratio 10.5/51.23/29.63/8.64 raised Tg by 17.3 %, E by 15 %, UTS by 32.7 % and the elongation at break by
85.5 % over the designed averages; Pruksawan et al. (2019) optimized adhesive (lap-shear) strength with active
learning. This evaluator is a lab to run such campaigns against: a physically motivated ground truth plus
reproducible measurement noise. It is a model, not a fit to Jin's or anyone's data; every constant is a Param.

Ground truth (``noise: 0``), in the order it is computed:

1. Stoichiometry. Epoxy equivalents e = w_DGEBA / EEW_DGEBA + w_TGDDM / EEW_TGDDM (EEW 187 and 110 g/eq;
   TGDDM's theoretical 105.6 g/eq, technical grades 110-120), amine-hydrogen equivalents a = w_DDS / AHEW_DDS
   (DDS: 248.3 g/mol, 4 N-H, 62.08 g/eq); r = a / e. Network quality q(r) = exp(-(ln(r / r_opt) / 0.6)^2) is 1
   at r_opt and falls off-stoichiometry on both sides (dangling chain ends, unreacted groups). r_opt = 0.9:
   TGDDM/DDS resins are commonly formulated amine-lean, the excess epoxy etherifying or homopolymerizing at high
   cure temperature. Jin's ratio has r = 0.91. The TGDDM share of the epoxy equivalents is x_T.
2. Network limits. Tg0 of the uncured mix by Fox over the reactive part (DGEBA -19 degC, TGDDM -5 degC, DDS
   67 degC); Tg_inf of the perfect network linear in x_T between DGEBA/DDS (215 degC) and TGDDM/DDS (275 degC);
   the real network reaches Tg0 + (Tg_inf - Tg0) q^0.3 (Tg is the property least sensitive to network defects).
3. Cure. Autocatalytic (Kamal-Sourour) kinetics d(alpha)/dt = (k1 + k2 alpha^m)(1 - alpha)^n f_d(alpha), with
   Arrhenius k_i = k_i,ref exp(-E_i / R (1/T - 1/T_ref)) (E = 75 and 60 kJ/mol, m = 1, n = 1.6), and
   vitrification: the diffusion factor f_d = 1 / (1 + exp(C (alpha - alpha_v))) (Chern-Poehlein) with alpha_v
   the conversion at which Tg(alpha) reaches T_cure + 20 K (the diffusion-limited tail then carries Tg some
   20 K further over hours). Conversion therefore rises with cure time and temperature and saturates below 1
   while the cure temperature is under the network's Tg_inf (at 190 degC: 0.68 after 1 h, 0.94 after 4 h,
   0.96 after 6 h for Jin's resin).
4. Tg: DiBenedetto, (Tg - Tg0) / (Tg_inf - Tg0) = lambda alpha / (1 - (1 - lambda) alpha), lambda = 0.4; the
   phase-separated PES barely moves the matrix Tg (-0.3 K per wt%).
5. Tensile modulus (room temperature): glassy network modulus 2.8 GPa (DGEBA/DDS) to 3.7 GPa (TGDDM/DDS) by
   x_T, up to 25 % lower for an immature network (maturity mu = alpha q), mixed with PES (2.6 GPa) by the rule
   of mixtures (volume ~ mass fractions), and lost when Tg falls under the test temperature (23 degC: an uncured
   resin is a liquid). More PES: lower modulus.
6. Strength and elongation: a brittle network breaks from its intrinsic flaws at sigma_f = K_IC / (1.12
   sqrt(pi a0)) (a0 = 60 um) unless it yields first at sigma_y = 0.023 E; UTS is their smooth minimum.
   K_IC = (K_T + (K_D - K_T)(1 - x_T)^0.6) (1 + 1.5 b(phi)) (1 - 0.85 (1 - mu)) with K_D = 0.75 and
   K_T = 0.64 MPa m^0.5 (the tetrafunctional network is the brittler; a little DGEBA relieves it most) and the
   PES toughening bump b(phi) = (phi / phi*) exp(1 - phi / phi*), 1 at phi* = 9 wt% (particulate morphology),
   fading towards phase inversion. Elongation at break = 1.15 UTS / E (the curve bends before break) plus a
   plastic strain mu^3 (4 % softplus of sigma_f / sigma_y - 1 + 4 % b(phi)): plastic flow needs a sound network
   and a toughness that outlasts yield, and the PES particles cavitate and shear-band. More PES (up to phi*):
   higher elongation.
7. Lap shear (single lap): adhesive strength 20 MPa sqrt(K_IC) (E / 3 GPa)^0.25 (0.4 + 0.6 mu): toughness
   (sqrt(G_IC E) ~ K_IC) and cure, so PES raises it up to its toughening peak and lowers it beyond.

Jin's ratio against a space-filling design (the claim tests/plugins/test_epoxy.py checks): over the design region
``DESIGN_REGION`` (DGEBA 0-0.6, TGDDM 0-0.7, DDS 0.15-0.40, PES 0-0.20, summing to 1) sampled by a scrambled
Sobol sequence, at the default cure (190 degC, 4 h), Jin's ratio beats the design average by Tg +16 %, E +15 %,
UTS +33 %, elongation +83 % (lap shear +51 %): the sizes Jin reports (17.3, 15, 32.7, 85.5 %). The recipe that
maximizes the geometric mean of the four property ratios to the design average is DGEBA/TGDDM/DDS/PES =
0.073/0.543/0.297/0.086 (r = 0.90), next to Jin's; Tg and E alone peak at the TGDDM-rich, PES-free corner and
elongation alone at DGEBA-rich recipes with ~11 % PES, so the optimum is a genuine trade-off.

Measurement noise (``noise`` scales it, 0 is the ground truth): Gaussian with the sd of typical lab repeatability:
Tg 1.5 K (DMA), modulus 3 %, UTS 5 %, elongation 10 %, lap shear 8 % (log-normal), conversion 0.01 (DSC). The
generator is seeded from the exact inputs and ``seed``, so the same recipe measured again (a resumed study)
reads the same values, and a different recipe or seed reads fresh noise.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

import numpy as np
import reflow
from pydantic import BaseModel, ConfigDict, Field, field_validator
from reflow.components import Variable

R_GAS = 8.314462618
"""Gas constant in J/(mol K)."""

COMPONENTS = ("dgeba", "tgddm", "dds", "pes")
JIN_RATIO = {"dgeba": 0.105, "tgddm": 0.5123, "dds": 0.2963, "pes": 0.0864}
"""Jin et al.'s optimized mass fractions (10.5/51.23/29.63/8.64)."""

DESIGN_REGION = {"dgeba": (0.0, 0.6), "tgddm": (0.0, 0.7), "dds": (0.15, 0.40), "pes": (0.0, 0.20)}
"""Mass-fraction windows of the reference design (fractions sum to 1)."""

SUM_TOLERANCE = 1e-3


class CureKinetics(BaseModel):
    """Autocatalytic cure kinetics with vitrification (Kamal-Sourour with a Chern-Poehlein diffusion factor)."""

    model_config = ConfigDict(extra="forbid")

    k1_ref_per_s: float = Field(3.0e-5, gt=0, description="non-catalysed rate constant at t_ref in 1/s")
    k2_ref_per_s: float = Field(1.0e-3, gt=0, description="autocatalytic rate constant at t_ref in 1/s")
    e1_kj_per_mol: float = Field(75.0, gt=0, description="activation energy of k1 in kJ/mol")
    e2_kj_per_mol: float = Field(60.0, gt=0, description="activation energy of k2 in kJ/mol")
    t_ref_c: float = Field(180.0, description="reference temperature of the rate constants in degC")
    m: float = Field(1.0, gt=0, description="autocatalytic exponent")
    n: float = Field(1.6, gt=0, description="reaction order in (1 - alpha)")
    vitrification_offset_k: float = Field(20.0, ge=0, description="Tg above T_cure at which diffusion takes over")
    diffusion_c: float = Field(30.0, gt=0, description="sharpness C of the diffusion factor")

    def rates(self, cure_temperature_c: float) -> tuple[float, float]:
        """(k1, k2) in 1/s at the cure temperature (Arrhenius about t_ref)."""
        inv = 1.0 / (cure_temperature_c + 273.15) - 1.0 / (self.t_ref_c + 273.15)
        return (self.k1_ref_per_s * math.exp(-self.e1_kj_per_mol * 1e3 / R_GAS * inv),
                self.k2_ref_per_s * math.exp(-self.e2_kj_per_mol * 1e3 / R_GAS * inv))


def amine_epoxy_ratio(dgeba: float, tgddm: float, dds: float, eew_dgeba: float = 187.0, eew_tgddm: float = 110.0,
                      ahew_dds: float = 62.08) -> float:
    """r = amine-hydrogen equivalents / epoxy equivalents of a recipe (mass fractions or masses)."""
    epoxy = dgeba / eew_dgeba + tgddm / eew_tgddm
    if epoxy <= 0:
        raise ValueError("the recipe has no epoxy (dgeba + tgddm = 0)")
    return (dds / ahew_dds) / epoxy


def stoichiometry_quality(r: float, r_opt: float = 0.9, width: float = 0.6) -> float:
    """Network quality q(r) = exp(-(ln(r / r_opt) / width)^2): 1 at r_opt, 0 without hardener."""
    if r <= 0:
        return 0.0
    return math.exp(-((math.log(r / r_opt) / width) ** 2))


def dibenedetto(alpha: float, tg0: float, tginf: float, lam: float) -> float:
    """Tg at conversion ``alpha`` (DiBenedetto, Pascault-Williams form); temperatures in any one unit."""
    return tg0 + (tginf - tg0) * lam * alpha / (1.0 - (1.0 - lam) * alpha)


def dibenedetto_conversion(tg: float, tg0: float, tginf: float, lam: float) -> float:
    """The conversion at which the DiBenedetto Tg reaches ``tg`` (inf when it never does)."""
    if tg >= tginf:
        return math.inf
    x = (tg - tg0) / (tginf - tg0)
    if x <= 0:
        return 0.0
    return x / (lam + x * (1.0 - lam))


def fox_tg_k(fractions: dict[str, float], tg_k: dict[str, float]) -> float:
    """Fox: 1/Tg = sum w_i / Tg_i over the given components (renormalized to their own total), in K."""
    total = sum(fractions.values())
    return 1.0 / sum(w / total / tg_k[k] for k, w in fractions.items())


_ALPHA_GRID = np.concatenate([np.linspace(0.0, 0.999, 8001), 1.0 - np.geomspace(1e-3, 1e-12, 800)[1:]])


def cure_rate(alpha: np.ndarray, cure_temperature_c: float, kinetics: CureKinetics, tg0_c: float, tginf_c: float,
              lam: float) -> np.ndarray:
    """d(alpha)/dt in 1/s: autocatalytic kinetics times the vitrification (diffusion) factor."""
    k1, k2 = kinetics.rates(cure_temperature_c)
    alpha = np.asarray(alpha, dtype=float)
    rate = (k1 + k2 * alpha**kinetics.m) * (1.0 - alpha) ** kinetics.n
    alpha_v = dibenedetto_conversion(cure_temperature_c + kinetics.vitrification_offset_k, tg0_c, tginf_c, lam)
    if math.isfinite(alpha_v):
        rate = rate / (1.0 + np.exp(np.minimum(kinetics.diffusion_c * (alpha - alpha_v), 700.0)))
    return rate


def cure_conversion(cure_temperature_c: float, cure_time_h: float, kinetics: CureKinetics, tg0_c: float,
                    tginf_c: float, lam: float) -> float:
    """Conversion after an isothermal cure: autocatalytic kinetics slowed by vitrification (see module).

    The rate depends on alpha only, so the time to reach alpha is t(alpha) = integral of d(alpha) / rate; it is
    tabulated on a fine alpha grid (denser towards 1) and inverted, which is exact to the grid and much faster
    than stepping an ODE solver.
    """
    if not cure_time_h >= 0:
        raise ValueError(f"cure_time_h must be >= 0, got {cure_time_h}")
    if cure_time_h == 0:
        return 0.0
    inv = 1.0 / cure_rate(_ALPHA_GRID, cure_temperature_c, kinetics, tg0_c, tginf_c, lam)
    times = np.concatenate([[0.0], np.cumsum(0.5 * (inv[1:] + inv[:-1]) * np.diff(_ALPHA_GRID))])
    t_end = cure_time_h * 3600.0
    if t_end >= times[-1]:
        return float(_ALPHA_GRID[-1])
    return float(np.interp(t_end, times, _ALPHA_GRID))


class Properties(BaseModel):
    """Constants of the ground truth (module docstring: what each does and why)."""

    model_config = ConfigDict(extra="forbid")

    tg0_c: dict[str, float] = Field(default_factory=lambda: {"dgeba": -19.0, "tgddm": -5.0, "dds": 67.0},
                                    description="Tg of the uncured components in degC (Fox mix)")
    @field_validator("tg0_c")
    @classmethod
    def _three_components(cls, v: dict[str, float]) -> dict[str, float]:
        if set(v) != {"dgeba", "tgddm", "dds"} or min(v.values()) <= -273.15:
            raise ValueError(f"tg0_c needs dgeba, tgddm and dds above absolute zero, got {v}")
        return v

    tginf_dgeba_c: float = Field(215.0, description="Tg of the fully cured DGEBA/DDS network in degC")
    tginf_tgddm_c: float = Field(275.0, description="Tg of the fully cured TGDDM/DDS network in degC")
    tg_q_exponent: float = Field(0.3, ge=0, description="Tg_inf follows q^this: Tg is the least defect-sensitive")
    dibenedetto_lambda: float = Field(0.4, gt=0, le=1, description="DiBenedetto lambda")
    pes_tg_shift_k: float = Field(-30.0, description="matrix Tg shift per unit PES mass fraction in K")
    e_dgeba_gpa: float = Field(2.8, gt=0, description="RT modulus of the DGEBA/DDS network in GPa")
    e_tgddm_gpa: float = Field(3.7, gt=0, description="RT modulus of the TGDDM/DDS network in GPa")
    e_maturity: float = Field(0.25, ge=0, lt=1, description="modulus loss of a network of maturity 0 (fraction)")
    e_pes_gpa: float = Field(2.6, gt=0, description="modulus of PES in GPa")
    test_temperature_c: float = Field(23.0, description="temperature of the mechanical tests in degC")
    kic_dgeba: float = Field(0.75, gt=0, description="K_IC of the DGEBA/DDS network in MPa m^0.5")
    kic_tgddm: float = Field(0.64, gt=0, description="K_IC of the TGDDM/DDS network in MPa m^0.5")
    kic_blend_exponent: float = Field(0.6, gt=0, description="K_IC = K_T + (K_D - K_T)(1 - x_T)^this: a little "
                                                              "DGEBA relieves the TGDDM network most")
    kic_maturity: float = Field(0.85, ge=0, lt=1, description="K_IC loss of a network of maturity 0 (fraction)")
    pes_toughening: float = Field(1.5, ge=0, description="peak relative K_IC gain A from PES")
    pes_optimum: float = Field(0.09, gt=0, lt=1, description="PES mass fraction phi* of the toughening peak")
    flaw_um: float = Field(60.0, gt=0, description="intrinsic flaw size a0 in um")
    yield_ratio: float = Field(0.023, gt=0, description="tensile yield stress / modulus")
    plastic_pct: float = Field(4.0, ge=0, description="plastic strain scale once the flaws outlast yield, in %")
    plastic_sharpness: float = Field(7.0, gt=0, description="sharpness of the brittle-ductile transition")
    pes_plastic_pct: float = Field(4.0, ge=0, description="plastic strain from PES particles at phi*, in %")
    plastic_maturity_exponent: float = Field(3.0, ge=0, description="plastic strain scales with maturity^this")
    lap_shear_ref_mpa: float = Field(20.0, gt=0, description="lap shear at K_IC = 1 MPa m^0.5, E = 3 GPa, "
                                                             "full cure, in MPa")


def ground_truth(fractions: dict[str, float], cure_temperature_c: float, cure_time_h: float, *,
                 props: Properties | None = None, kinetics: CureKinetics | None = None, r_opt: float = 0.9,
                 r_width: float = 0.6, eew_dgeba: float = 187.0, eew_tgddm: float = 110.0,
                 ahew_dds: float = 62.08) -> dict[str, float]:
    """Noise-free properties of a recipe (module docstring); fractions are validated by the caller."""
    c = props or Properties()
    kinetics = kinetics or CureKinetics()
    w = fractions
    r = amine_epoxy_ratio(w["dgeba"], w["tgddm"], w["dds"], eew_dgeba, eew_tgddm, ahew_dds)
    x_t = (w["tgddm"] / eew_tgddm) / (w["dgeba"] / eew_dgeba + w["tgddm"] / eew_tgddm)
    q = stoichiometry_quality(r, r_opt, r_width)
    reactive = {k: w[k] for k in ("dgeba", "tgddm", "dds") if w[k] > 0}
    tg0 = fox_tg_k(reactive, {k: v + 273.15 for k, v in c.tg0_c.items()}) - 273.15
    tginf_ideal = c.tginf_dgeba_c + x_t * (c.tginf_tgddm_c - c.tginf_dgeba_c)
    tginf = tg0 + (tginf_ideal - tg0) * q**c.tg_q_exponent
    lam = c.dibenedetto_lambda
    # without hardener nothing cures (uncatalysed homopolymerization is negligible at these temperatures)
    alpha = cure_conversion(cure_temperature_c, cure_time_h, kinetics, tg0, tginf, lam) if r > 0 else 0.0
    pes = w["pes"]
    tg = dibenedetto(alpha, tg0, tginf, lam) + c.pes_tg_shift_k * pes
    maturity = alpha * q
    e_net = (c.e_dgeba_gpa + x_t * (c.e_tgddm_gpa - c.e_dgeba_gpa)) * (1.0 - c.e_maturity * (1.0 - maturity))
    glassy = 1.0 / (1.0 + math.exp(-(tg - c.test_temperature_c) / 8.0))  # a resin above its Tg is no solid
    e = ((1.0 - pes) * e_net + pes * c.e_pes_gpa) * max(glassy, 1e-3)
    phi = pes / c.pes_optimum
    bump = phi * math.exp(1.0 - phi)  # 0 without PES, 1 at phi*, fading towards phase inversion
    kic = ((c.kic_tgddm + (c.kic_dgeba - c.kic_tgddm) * (1.0 - x_t) ** c.kic_blend_exponent)
           * (1.0 + c.pes_toughening * bump) * (1.0 - c.kic_maturity * (1.0 - maturity)))
    sigma_f = kic / (1.12 * math.sqrt(math.pi * c.flaw_um * 1e-6))
    sigma_y = c.yield_ratio * e * 1e3
    uts = (sigma_f**-6 + sigma_y**-6) ** (-1.0 / 6.0)  # smooth minimum: breaks or yields first
    k = c.plastic_sharpness
    ductility = math.log1p(math.exp(min(k * (sigma_f / sigma_y - 1.0), 700.0))) / k
    plastic = maturity**c.plastic_maturity_exponent * (c.plastic_pct * ductility + c.pes_plastic_pct * bump)
    elongation = 1.15 * uts / (e * 1e3) * 100.0 + plastic  # 1.15: the stress-strain curve bends before break
    lap = c.lap_shear_ref_mpa * math.sqrt(kic) * (e / 3.0) ** 0.25 * (0.4 + 0.6 * maturity)
    return {"tg_c": tg, "tensile_modulus_gpa": e, "uts_mpa": uts, "elongation_pct": elongation,
            "lap_shear_mpa": lap, "conversion": alpha, "amine_epoxy_ratio": r}


_BLOCK = 128
"""Recipes per block of the vectorized cure integral (a block holds _BLOCK x 8800 floats: 9 MB)."""


def cure_conversion_arrays(cure_temperature_c: np.ndarray, cure_time_h: np.ndarray, kinetics: CureKinetics,
                           tg0_c: np.ndarray, tginf_c: np.ndarray, lam: float) -> np.ndarray:
    """:func:`cure_conversion` for many recipes at once (the same grid and sums, row by row in blocks); NaN where
    the cure time is negative or not a number."""
    temp, hours, tg0, tginf = np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in (
        cure_temperature_c, cure_time_h, tg0_c, tginf_c)))
    out = np.where(hours >= 0, 0.0, np.nan)
    grid = _ALPHA_GRID
    step = np.diff(grid)
    for start in range(0, temp.size, _BLOCK):
        rows = np.arange(start, min(temp.size, start + _BLOCK))
        rows = rows[hours[rows] > 0]
        if not rows.size:
            continue
        inv_t = 1.0 / (temp[rows] + 273.15) - 1.0 / (kinetics.t_ref_c + 273.15)
        k1 = kinetics.k1_ref_per_s * np.exp(-kinetics.e1_kj_per_mol * 1e3 / R_GAS * inv_t)
        k2 = kinetics.k2_ref_per_s * np.exp(-kinetics.e2_kj_per_mol * 1e3 / R_GAS * inv_t)
        rate = (k1[:, None] + k2[:, None] * grid**kinetics.m) * (1.0 - grid) ** kinetics.n
        alpha_v = dibenedetto_conversion_arrays(temp[rows] + kinetics.vitrification_offset_k, tg0[rows],
                                                tginf[rows], lam)
        finite = np.isfinite(alpha_v)
        if finite.any():
            rate[finite] = rate[finite] / (1.0 + np.exp(np.minimum(
                kinetics.diffusion_c * (grid - alpha_v[finite, None]), 700.0)))
        inv = 1.0 / rate
        times = np.concatenate([np.zeros((rows.size, 1)), np.cumsum(0.5 * (inv[:, 1:] + inv[:, :-1]) * step,
                                                                    axis=1)], axis=1)
        t_end = hours[rows] * 3600.0
        for j, row in enumerate(rows.tolist()):
            out[row] = grid[-1] if t_end[j] >= times[j, -1] else np.interp(t_end[j], times[j], grid)
    return out


def dibenedetto_conversion_arrays(tg: np.ndarray, tg0: np.ndarray, tginf: np.ndarray, lam: float) -> np.ndarray:
    """:func:`dibenedetto_conversion` on arrays."""
    with np.errstate(all="ignore"):
        x = (tg - tg0) / (tginf - tg0)
        conv = np.where(x <= 0, 0.0, x / (lam + x * (1.0 - lam)))
    return np.where(tg >= tginf, np.inf, conv)


def ground_truth_arrays(w: dict[str, np.ndarray], cure_temperature_c: np.ndarray, cure_time_h: np.ndarray, *,
                        props: Properties, kinetics: CureKinetics, r_opt: float, r_width: float, eew_dgeba: float,
                        eew_tgddm: float, ahew_dds: float) -> dict[str, np.ndarray]:
    """:func:`ground_truth` for many recipes at once, step for step (NaN for a recipe without epoxy)."""
    c = props
    epoxy = w["dgeba"] / eew_dgeba + w["tgddm"] / eew_tgddm
    epoxy = np.where(epoxy > 0, epoxy, np.nan)
    r = (w["dds"] / ahew_dds) / epoxy
    x_t = (w["tgddm"] / eew_tgddm) / epoxy
    q = np.where(r > 0, np.exp(-((np.log(np.where(r > 0, r, 1.0) / r_opt) / r_width) ** 2)), 0.0)
    total = w["dgeba"] + w["tgddm"] + w["dds"]
    tg0 = 1.0 / sum(w[k] / total / (c.tg0_c[k] + 273.15) for k in ("dgeba", "tgddm", "dds")) - 273.15
    tginf_ideal = c.tginf_dgeba_c + x_t * (c.tginf_tgddm_c - c.tginf_dgeba_c)
    tginf = tg0 + (tginf_ideal - tg0) * q**c.tg_q_exponent
    lam = c.dibenedetto_lambda
    alpha = np.where(r > 0, cure_conversion_arrays(cure_temperature_c, cure_time_h, kinetics, tg0, tginf, lam), 0.0)
    pes = w["pes"]
    tg = tg0 + (tginf - tg0) * lam * alpha / (1.0 - (1.0 - lam) * alpha) + c.pes_tg_shift_k * pes
    maturity = alpha * q
    e_net = (c.e_dgeba_gpa + x_t * (c.e_tgddm_gpa - c.e_dgeba_gpa)) * (1.0 - c.e_maturity * (1.0 - maturity))
    glassy = 1.0 / (1.0 + np.exp(-(tg - c.test_temperature_c) / 8.0))
    e = ((1.0 - pes) * e_net + pes * c.e_pes_gpa) * np.maximum(glassy, 1e-3)
    phi = pes / c.pes_optimum
    bump = phi * np.exp(1.0 - phi)
    kic = ((c.kic_tgddm + (c.kic_dgeba - c.kic_tgddm) * (1.0 - x_t) ** c.kic_blend_exponent)
           * (1.0 + c.pes_toughening * bump) * (1.0 - c.kic_maturity * (1.0 - maturity)))
    sigma_f = kic / (1.12 * math.sqrt(math.pi * c.flaw_um * 1e-6))
    sigma_y = c.yield_ratio * e * 1e3
    uts = (sigma_f**-6 + sigma_y**-6) ** (-1.0 / 6.0)
    k = c.plastic_sharpness
    ductility = np.log1p(np.exp(np.minimum(k * (sigma_f / sigma_y - 1.0), 700.0))) / k
    plastic = maturity**c.plastic_maturity_exponent * (c.plastic_pct * ductility + c.pes_plastic_pct * bump)
    elongation = 1.15 * uts / (e * 1e3) * 100.0 + plastic
    lap = c.lap_shear_ref_mpa * np.sqrt(kic) * (e / 3.0) ** 0.25 * (0.4 + 0.6 * maturity)
    return {"tg_c": tg, "tensile_modulus_gpa": e, "uts_mpa": uts, "elongation_pct": elongation,
            "lap_shear_mpa": lap, "conversion": alpha, "amine_epoxy_ratio": r}


NOISE_SD = {"tg_c": ("abs", 1.5), "tensile_modulus_gpa": ("rel", 0.03), "uts_mpa": ("rel", 0.05),
            "elongation_pct": ("rel", 0.10), "lap_shear_mpa": ("rel", 0.08), "conversion": ("abs", 0.01)}


class EpoxyLab(reflow.Evaluator):
    """A simulated lab for DGEBA/TGDDM/DDS/PES epoxies: Tg, modulus, UTS, elongation, lap shear of a recipe.

    Mass fractions must sum to 1 (within 1e-3; constrain the study's space with ``dgeba + tgddm + dds + pes
    == 1``). The defaults are Jin et al.'s optimized ratio. Ground truth and noise: module docstring.
    """

    inputs = (
        Variable("dgeba", "1", 0.0, 1.0, default=JIN_RATIO["dgeba"], description="DGEBA mass fraction"),
        Variable("tgddm", "1", 0.0, 1.0, default=JIN_RATIO["tgddm"], description="TGDDM mass fraction"),
        Variable("dds", "1", 0.0, 1.0, default=JIN_RATIO["dds"], description="DDS (hardener) mass fraction"),
        Variable("pes", "1", 0.0, 1.0, default=JIN_RATIO["pes"], description="PES (toughener) mass fraction"),
        Variable("cure_temperature_c", "degC", 150.0, 220.0, default=190.0, description="isothermal cure temperature"),
        Variable("cure_time_h", "h", 1.0, 6.0, default=4.0, description="cure time"),
    )
    outputs = (
        Variable("tg_c", "degC", description="glass transition temperature (DMA)"),
        Variable("tensile_modulus_gpa", "GPa", description="tensile modulus at room temperature"),
        Variable("uts_mpa", "MPa", description="ultimate tensile strength"),
        Variable("elongation_pct", "%", description="elongation at break"),
        Variable("lap_shear_mpa", "MPa", description="single-lap-shear strength on aluminium"),
        Variable("conversion", "1", description="degree of cure (DSC)"),
        Variable("amine_epoxy_ratio", "1", description="amine-H / epoxy equivalents of the recipe (computed)"),
    )

    class Params(reflow.Params):
        noise: float = Field(1.0, ge=0, description="scale of the measurement noise (true = 1, false or 0 = the "
                                                    "ground truth)")
        seed: int = Field(0, description="noise seed; with the inputs it fixes every measurement")
        r_opt: float = Field(0.9, gt=0, description="amine/epoxy ratio at which the network is best")
        r_width: float = Field(0.6, gt=0, description="width of the stoichiometry penalty in ln(r)")
        eew_dgeba: float = Field(187.0, gt=0, description="DGEBA epoxy equivalent weight in g/eq")
        eew_tgddm: float = Field(110.0, gt=0, description="TGDDM epoxy equivalent weight in g/eq")
        ahew_dds: float = Field(62.08, gt=0, description="DDS amine-hydrogen equivalent weight in g/eq")
        kinetics: CureKinetics = Field(default_factory=CureKinetics, description="cure kinetics")
        properties: Properties = Field(default_factory=Properties, description="ground-truth constants")

    def truth(self, inputs: dict[str, Any]) -> dict[str, float]:
        """The ground truth of a trial (no noise), after checking the recipe."""
        fractions = {k: float(inputs[k]) for k in COMPONENTS}
        bad = [f"{k} = {v}" for k, v in fractions.items() if not 0.0 <= v <= 1.0]
        if bad:
            raise ValueError(f"mass fractions must lie in [0, 1]: {', '.join(bad)}")
        total = sum(fractions.values())
        if abs(total - 1.0) > SUM_TOLERANCE:
            raise ValueError(f"mass fractions dgeba + tgddm + dds + pes must sum to 1 (within {SUM_TOLERANCE}), "
                             f"got {total:.6g}; constrain the space with 'dgeba + tgddm + dds + pes == 1'")
        temp, hours = float(inputs["cure_temperature_c"]), float(inputs["cure_time_h"])
        if not (math.isfinite(temp) and math.isfinite(hours)) or hours < 0:
            raise ValueError(f"cure needs a finite temperature and a time >= 0 h, got {temp} degC, {hours} h")
        p = self.params
        return ground_truth(fractions, temp, hours, props=p.properties, kinetics=p.kinetics, r_opt=p.r_opt,
                            r_width=p.r_width, eew_dgeba=p.eew_dgeba, eew_tgddm=p.eew_tgddm, ahew_dds=p.ahew_dds)

    def evaluate_arrays(self, inputs):
        """A batch as arrays: the ground truth vectorized, the noise drawn row by row from the same per-recipe
        seeds as :meth:`evaluate_one` (so both read the same measurement). A recipe :meth:`truth` refuses comes
        out NaN, and :meth:`evaluate_one` then says why."""
        names = (*COMPONENTS, "cure_temperature_c", "cure_time_h")
        x = np.column_stack([np.asarray(inputs[k], dtype=float) for k in names])
        w = {k: x[:, i] for i, k in enumerate(COMPONENTS)}
        temp, hours = x[:, 4], x[:, 5]
        frac = x[:, :4]
        bad = (~((frac >= 0.0) & (frac <= 1.0)).all(axis=1) | ~(np.abs(frac.sum(axis=1) - 1.0) <= SUM_TOLERANCE)
               | ~(np.isfinite(temp) & np.isfinite(hours)) | ~(hours >= 0))
        p = self.params
        with np.errstate(all="ignore"):
            out = ground_truth_arrays(w, np.where(bad, 190.0, temp), np.where(bad, 0.0, hours), props=p.properties,
                                      kinetics=p.kinetics, r_opt=p.r_opt, r_width=p.r_width, eew_dgeba=p.eew_dgeba,
                                      eew_tgddm=p.eew_tgddm, ahew_dds=p.ahew_dds)
        out = {k: np.where(bad, np.nan, v) for k, v in out.items()}
        if p.noise == 0:
            return out
        seed = int(p.seed).to_bytes(8, "little", signed=True)
        z = np.empty((x.shape[0], len(NOISE_SD)))
        rows = np.ascontiguousarray(x, dtype="<f8")
        for i in range(x.shape[0]):
            digest = hashlib.sha256(rows[i].tobytes() + seed).digest()
            z[i] = np.random.default_rng(int.from_bytes(digest[:8], "little")).standard_normal(len(NOISE_SD))
        for j, (name, (kind, sd)) in enumerate(NOISE_SD.items()):
            zj = z[:, j] * sd * p.noise
            out[name] = out[name] + zj if kind == "abs" else out[name] * np.exp(zj)
        out["conversion"] = np.clip(out["conversion"], 0.0, 1.0)
        return out

    def evaluate_one(self, inputs):
        out = self.truth(inputs)
        if self.params.noise == 0:
            return out
        rng = np.random.default_rng(_noise_seed(inputs, self.params.seed))
        for name, (kind, sd) in NOISE_SD.items():
            z = float(rng.standard_normal()) * sd * self.params.noise
            out[name] = out[name] + z if kind == "abs" else out[name] * math.exp(z)
        out["conversion"] = min(max(out["conversion"], 0.0), 1.0)
        return out


def _noise_seed(inputs: dict[str, Any], seed: int) -> int:
    """A seed from the exact input values and the params seed: the same recipe reads the same measurement."""
    names = (*COMPONENTS, "cure_temperature_c", "cure_time_h")
    blob = np.array([float(inputs[k]) for k in names], dtype="<f8").tobytes() + int(seed).to_bytes(8, "little",
                                                                                                   signed=True)
    return int.from_bytes(hashlib.sha256(blob).digest()[:8], "little")

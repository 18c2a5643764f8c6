"""Timoshenko's bimetal strip: the warpage of a die bonded to a substrate after a temperature change.

S. Timoshenko, "Analysis of bi-metal thermostats", J. Opt. Soc. Am. 11 (1925) 233-255. Layer 1 is the
die (top), layer 2 the substrate (bottom); ``delta_t_k`` is the temperature change (negative for the
cool-down after reflow). With m = t1/t2, n = E1/E2 and h = t1 + t2 the curvature is

    kappa = 6 (a2 - a1) dT (1 + m)^2 / ( h [ 3 (1 + m)^2 + (1 + m n) (m^2 + 1/(m n)) ] )

positive when the assembly is concave seen from the die side (centre below the edges). The axial force
per unit width carried by each layer is P = 2 kappa (E1 I1 + E2 I2) / h with I = t^3/12, tensile in the
die when kappa > 0, so the in-plane normal stress in the die at the interface is
sigma = P / t1 + E1 kappa t1 / 2. Warpage is the sag of a uniformly curved strip of length L:
w = kappa L^2 / 8 (small deflection). For a square plate use the biaxial modulus E / (1 - nu) as E.
"""

from __future__ import annotations

import numpy as np
import reflow
from pydantic import Field
from reflow.components import Variable


def bilayer(t1_mm: float, t2_mm: float, e1_gpa: float, e2_gpa: float, a1_ppm: float, a2_ppm: float,
            length_mm: float, delta_t_k: float) -> dict[str, float]:
    """Timoshenko's closed form in SI internally; returns curvature (1/m), warpage (um), stress (MPa)."""
    t1, t2 = t1_mm * 1e-3, t2_mm * 1e-3
    e1, e2 = e1_gpa * 1e9, e2_gpa * 1e9
    mismatch = (a2_ppm - a1_ppm) * 1e-6 * delta_t_k
    m, n, h = t1 / t2, e1 / e2, t1 + t2
    kappa = 6.0 * mismatch * (1 + m) ** 2 / (h * (3 * (1 + m) ** 2 + (1 + m * n) * (m**2 + 1 / (m * n))))
    length = length_mm * 1e-3
    force = 2.0 * kappa * (e1 * t1**3 / 12 + e2 * t2**3 / 12) / h
    sigma = force / t1 + e1 * kappa * t1 / 2.0
    return {
        "curvature_1_per_m": kappa,
        "warpage_um": abs(kappa) * length**2 / 8.0 * 1e6,
        "die_interface_stress_mpa": sigma / 1e6,
    }


class BilayerWarpage(reflow.Evaluator):
    """Closed-form warpage of a die on a substrate after a temperature change (Timoshenko 1925).

    Defaults describe a 10 mm silicon die on an FR-4 substrate cooled by 200 K after reflow. Any input
    can be a design factor; the rest take their defaults.
    """

    inputs = (
        Variable("die_thickness_mm", "mm", 0.05, 2.0, default=0.5, description="die (layer 1) thickness"),
        Variable("substrate_thickness_mm", "mm", 0.1, 3.0, default=1.0, description="substrate thickness"),
        Variable("die_modulus_gpa", "GPa", 1.0, 500.0, default=130.0, description="die Young's modulus (Si)"),
        Variable("substrate_modulus_gpa", "GPa", 1.0, 500.0, default=22.0, description="substrate modulus (FR-4)"),
        Variable("die_cte_ppm", "ppm/K", 0.0, 50.0, default=2.6, description="die CTE (Si)"),
        Variable("substrate_cte_ppm", "ppm/K", 0.0, 50.0, default=17.0, description="substrate CTE (FR-4)"),
        Variable("length_mm", "mm", 1.0, 100.0, default=10.0, description="strip length"),
        Variable("delta_t_k", "K", -400.0, 400.0, default=-200.0, description="temperature change"),
    )
    outputs = (
        Variable("curvature_1_per_m", "1/m", description="signed curvature (+ concave seen from the die)"),
        Variable("warpage_um", "um", description="centre-to-edge deflection kappa L^2 / 8"),
        Variable("die_interface_stress_mpa", "MPa", description="die normal stress at the interface (+ tension)"),
    )

    class Params(reflow.Params):
        biaxial: bool = Field(False, description="use E/(1-nu) with the Poisson ratios below (plates)")
        die_poisson: float = Field(0.28, gt=-1, lt=0.5, description="die Poisson ratio (if biaxial)")
        substrate_poisson: float = Field(0.15, gt=-1, lt=0.5, description="substrate Poisson ratio (if biaxial)")

    def evaluate_arrays(self, inputs):
        """The whole batch as arrays (the closed form is numpy-elementwise); a row with a non-positive size or
        modulus comes out NaN and is evaluated again by :meth:`evaluate_one`, which says what is wrong."""
        e1, e2 = inputs["die_modulus_gpa"], inputs["substrate_modulus_gpa"]
        if self.params.biaxial:
            e1, e2 = e1 / (1 - self.params.die_poisson), e2 / (1 - self.params.substrate_poisson)
        bad = np.zeros(np.shape(e1), dtype=bool)
        for name in ("die_thickness_mm", "substrate_thickness_mm", "die_modulus_gpa", "substrate_modulus_gpa",
                     "length_mm"):
            bad |= ~(np.asarray(inputs[name], dtype=float) > 0)
        out = bilayer(*(np.asarray(inputs[n], dtype=float) for n in ("die_thickness_mm", "substrate_thickness_mm")),
                      np.asarray(e1, dtype=float), np.asarray(e2, dtype=float),
                      *(np.asarray(inputs[n], dtype=float) for n in ("die_cte_ppm", "substrate_cte_ppm",
                                                                     "length_mm", "delta_t_k")))
        return {k: np.where(bad, np.nan, v) for k, v in out.items()}

    def evaluate_one(self, inputs):
        e1, e2 = inputs["die_modulus_gpa"], inputs["substrate_modulus_gpa"]
        if self.params.biaxial:
            e1, e2 = e1 / (1 - self.params.die_poisson), e2 / (1 - self.params.substrate_poisson)
        for name in ("die_thickness_mm", "substrate_thickness_mm", "die_modulus_gpa", "substrate_modulus_gpa",
                     "length_mm"):
            if inputs[name] <= 0:
                raise ValueError(f"{name} must be positive, got {inputs[name]}")
        return bilayer(inputs["die_thickness_mm"], inputs["substrate_thickness_mm"], e1, e2,
                       inputs["die_cte_ppm"], inputs["substrate_cte_ppm"], inputs["length_mm"],
                       inputs["delta_t_k"])

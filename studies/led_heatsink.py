"""The heatsink of an LED module, for studies/alt_arrhenius.yaml (the ``python`` evaluator calls ``thermal``).

Steady state: the LED dissipates ``power_w`` of heat through its junction-to-board resistance ``rjb_k_per_w``
and a natural-convection heatsink into air at ``ambient_c``. A finned heatsink's resistance falls with its
volume: R_hs = ``volumetric_rth`` / V, with ~700 cm^3 K/W for natural convection (the rule of thumb of
heatsink catalogues: 500-800 cm^3 K/W in still air). The heatsink is aluminium (2.70 g/cm^3) filling
``fill`` of its envelope with fins and base, so its mass is 2.70 * fill * V grams.
"""

from __future__ import annotations

ALUMINIUM_G_PER_CM3 = 2.70


def thermal(heatsink_volume_cm3: float, power_w: float = 3.0, ambient_c: float = 40.0, rjb_k_per_w: float = 6.0,
            volumetric_rth: float = 700.0, fill: float = 0.25) -> dict[str, float]:
    if heatsink_volume_cm3 <= 0:
        raise ValueError(f"heatsink_volume_cm3 must be > 0, got {heatsink_volume_cm3}")
    rth_sink = volumetric_rth / heatsink_volume_cm3
    tj_c = ambient_c + power_w * (rjb_k_per_w + rth_sink)
    return {"junction_temperature_c": tj_c, "temperature_k": tj_c + 273.15, "heatsink_rth_k_per_w": rth_sink,
            "heatsink_mass_g": ALUMINIUM_G_PER_CM3 * fill * heatsink_volume_cm3}

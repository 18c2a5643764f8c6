"""Units live in variable names (``die_thickness_mm``) and in ``attrs["units"]``; never converted silently."""

from __future__ import annotations

SUFFIXES = {
    "mm": "mm", "um": "um", "nm": "nm", "m": "m", "mpa": "MPa", "gpa": "GPa", "pa": "Pa", "k": "K",
    "c": "degC", "ppm": "ppm/K", "s": "s", "h": "h", "w": "W", "v": "V", "a": "A", "pct": "%",
    "cycles": "cycles", "1_per_m": "1/m", "n": "N", "hz": "Hz", "mw": "mW", "kw": "kW",
}


def units_from_name(name: str) -> str:
    """The units a name's suffix states (``warpage_um`` -> ``um``), or ``""``."""
    lowered = name.lower()
    for suffix in sorted(SUFFIXES, key=len, reverse=True):
        if lowered.endswith("_" + suffix):
            return SUFFIXES[suffix]
    return ""

"""Linear-elastic, isotropic material records for package thermo-mechanics, each with its source.

The FE model (``fea.py``) needs, per material, Young's modulus E, Poisson's ratio and the coefficient of
thermal expansion (CTE). The values below are room-temperature, below-Tg, linear-elastic engineering
values: enough for warpage and first-order stress trends in a design of experiments, not a replacement
for temperature-dependent (and, for solders, creep) data. Laminates (FR-4, BT) are orthotropic; the
in-plane (x-y) values are given because the in-plane CTE mismatch drives warpage. The polymer entries
(underfills, mold compounds) are representative of their class: for a real design use the supplier's
datasheet through the evaluator's ``materials`` param, which adds or overrides records.

Every record carries a ``source``: where the numbers come from, so a report can be traced.
"""

from __future__ import annotations

import difflib
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from reflow.errors import UserInputError

MaterialKind = Literal["die", "metal", "solder", "substrate", "underfill", "mold"]


class Material(BaseModel):
    """One isotropic linear-elastic material: E in GPa, Poisson ratio, CTE in ppm/K, and where they come from."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="the name studies use (case-sensitive key of the library)")
    kind: MaterialKind = Field(description="what the material is used as: die, metal, solder, substrate, "
                                           "underfill, mold")
    e_gpa: float = Field(gt=0, description="Young's modulus in GPa")
    poisson: float = Field(gt=-1.0, lt=0.5, description="Poisson's ratio")
    cte_ppm: float = Field(description="coefficient of thermal expansion in ppm/K (1e-6/K)")
    source: str = Field(min_length=10, description="handbook, datasheet or paper the values come from")
    description: str = Field("", description="what the material is")

    def lame_plane_strain(self) -> tuple[float, float, float]:
        """(lambda, mu, beta) in MPa and MPa/K: plane-strain stress = 2 mu eps + lambda tr(eps) I - beta dT I.

        beta = (3 lambda + 2 mu) alpha = E alpha / (1 - 2 nu): the 3-D thermal stress of a body held at
        eps_zz = 0, the same as applying the in-plane initial strain (1 + nu) alpha dT.
        """
        e = self.e_gpa * 1e3
        nu = self.poisson
        lam = e * nu / ((1 + nu) * (1 - 2 * nu))
        mu = e / (2 * (1 + nu))
        return lam, mu, e * self.cte_ppm * 1e-6 / (1 - 2 * nu)


class UnknownMaterialError(UserInputError, ValueError):
    """A material name that is not in the library (nor among a study's own materials)."""


_LAU = "J.H. Lau, Flip Chip Technologies, McGraw-Hill, 1996"
_TUMMALA = "R.R. Tummala (ed.), Fundamentals of Microsystems Packaging, McGraw-Hill, 2001"
_HARPER = "C.A. Harper (ed.), Electronic Packaging and Interconnection Handbook, 4th ed., McGraw-Hill, 2005"

LIBRARY: dict[str, Material] = {m.name: m for m in (
    Material(
        name="Si", kind="die", e_gpa=130.0, poisson=0.28, cte_ppm=2.6,
        description="single-crystal silicon, isotropic average (E along <100> in the wafer plane)",
        source="M.A. Hopcroft, W.D. Nix, T.W. Kenny, 'What is the Young's modulus of silicon?', J. MEMS 19(2) "
               "(2010) 229-238 (E = 130 GPa, nu = 0.28 along <100>); Y. Okada, Y. Tokumaru, J. Appl. Phys. 56 "
               "(1984) 314 (CTE 2.6 ppm/K at 300 K)",
    ),
    Material(
        name="Cu", kind="metal", e_gpa=117.0, poisson=0.34, cte_ppm=16.7,
        description="annealed oxygen-free / ETP copper (traces, pillars, lids)",
        source="ASM Handbook Vol. 2, Properties and Selection: Nonferrous Alloys and Special-Purpose Materials, "
               "ASM International, 1990 (wrought copper C10100-C11000, 20 C)",
    ),
    Material(
        name="SAC305", kind="solder", e_gpa=51.0, poisson=0.36, cte_ppm=21.7,
        description="Sn-3.0Ag-0.5Cu lead-free solder, room temperature",
        source="H. Ma, J.C. Suhling, 'A review of mechanical properties of lead-free solders for electronic "
               "packaging', J. Mater. Sci. 44 (2009) 1141-1158; T. Siewert et al., Database for Solder "
               "Properties with Emphasis on New Lead-free Solders, NIST / Colorado School of Mines, 2002",
    ),
    Material(
        name="SnPb", kind="solder", e_gpa=32.0, poisson=0.40, cte_ppm=24.5,
        description="eutectic 63Sn-37Pb solder, room temperature",
        source="T. Siewert et al., Database for Solder Properties with Emphasis on New Lead-free Solders, "
               f"NIST / Colorado School of Mines, 2002 (Sn-37Pb reference data); {_LAU}",
    ),
    Material(
        name="FR-4", kind="substrate", e_gpa=22.0, poisson=0.15, cte_ppm=17.0,
        description="woven-glass epoxy laminate (board or low-cost substrate), in-plane values",
        source=f"{_HARPER}, printed wiring board laminates (in-plane E 17-24 GPa, CTE x-y 14-18 ppm/K); "
               "IPC-4101 FR-4 laminate specification sheets /21, /24",
    ),
    Material(
        name="BT", kind="substrate", e_gpa=26.0, poisson=0.20, cte_ppm=15.0,
        description="bismaleimide-triazine (BT) resin glass laminate, package substrate core, in-plane values",
        source="Mitsubishi Gas Chemical BT laminate HL832 series datasheet (CTE x-y about 14-15 ppm/K, "
               f"flexural modulus about 24-26 GPa); {_TUMMALA}, ch. on package substrates",
    ),
    Material(
        name="UF-A", kind="underfill", e_gpa=10.0, poisson=0.30, cte_ppm=25.0,
        description="highly silica-filled (~65 wt%) capillary underfill: stiff, low CTE",
        source=f"representative of high-filler capillary underfills (E 8-12 GPa, CTE 22-28 ppm/K below Tg) in "
               f"{_LAU}, ch. on underfill encapsulants, and {_TUMMALA}, ch. 9",
    ),
    Material(
        name="UF-B", kind="underfill", e_gpa=6.5, poisson=0.33, cte_ppm=32.0,
        description="standard filled (~50 wt%) capillary underfill",
        source=f"representative of standard capillary underfills (E 5-8 GPa, CTE 28-35 ppm/K below Tg) in "
               f"{_LAU}, ch. on underfill encapsulants, and {_TUMMALA}, ch. 9",
    ),
    Material(
        name="UF-C", kind="underfill", e_gpa=2.5, poisson=0.35, cte_ppm=60.0,
        description="unfilled / reworkable low-modulus underfill (board-level type)",
        source="representative of unfilled reworkable underfills (E 2-3 GPa, CTE 55-70 ppm/K below Tg), e.g. "
               f"Henkel Loctite 3517M datasheet (CTE a1 65 ppm/K); {_HARPER}, ch. on adhesives and underfills",
    ),
    Material(
        name="EMC-A", kind="mold", e_gpa=24.0, poisson=0.25, cte_ppm=9.0,
        description="high-filler (~88 wt% silica) epoxy mold compound, low CTE (green, for large packages)",
        source="representative of low-CTE epoxy mold compounds (E 20-28 GPa, CTE a1 7-10 ppm/K), e.g. "
               f"Sumitomo Bakelite EME-G700 series datasheets; {_TUMMALA}, ch. on encapsulation",
    ),
    Material(
        name="EMC-B", kind="mold", e_gpa=16.0, poisson=0.25, cte_ppm=15.0,
        description="standard (~75-80 wt% silica) epoxy mold compound",
        source=f"representative of standard epoxy mold compounds (E 12-18 GPa, CTE a1 13-18 ppm/K) in "
               f"{_HARPER}, ch. on plastic encapsulation, and {_TUMMALA}, ch. on encapsulation",
    ),
)}


def names(kind: str | None = None, extra: dict[str, Material] | None = None) -> tuple[str, ...]:
    """Names of the known materials (of one ``kind`` if given), library first, then ``extra``."""
    merged = {**LIBRARY, **(extra or {})}
    return tuple(n for n, m in merged.items() if kind is None or m.kind == kind)


def get(name: str, extra: dict[str, Material] | None = None, kind: str | None = None) -> Material:
    """The material called ``name`` (``extra`` overrides the library).

    Raises:
        UnknownMaterialError: naming the unknown material and listing the known ones, with a
            "did you mean" when a known name is close (or differs only in case).
    """
    merged = {**LIBRARY, **(extra or {})}
    material = merged.get(name)
    if material is None and isinstance(name, str):
        folded = {k.lower(): k for k in merged}
        if name.lower() in folded:
            material = merged[folded[name.lower()]]
    if material is None:
        known = list(merged)
        close = difflib.get_close_matches(str(name), known, n=1, cutoff=0.5)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise UnknownMaterialError(f"unknown material {name!r}{hint} (known materials: {', '.join(known)})")
    if kind is not None and material.kind != kind:
        fitting = ", ".join(names(kind, extra)) or "none"
        raise UnknownMaterialError(f"material {material.name!r} is a {material.kind} material; "
                                   f"{'an' if kind[0] in 'aeiou' else 'a'} {kind} must be one of: {fitting}")
    return material

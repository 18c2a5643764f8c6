"""Plane-strain thermo-elastic finite elements (scikit-fem) of a flip-chip package cross-section.

The model is the vertical cross-section through the middle of a square package: a die on a layer of
solder bumps in underfill on a substrate, with an optional mold cap over the die (and around it, down to
the substrate). Half of it is meshed (x from the centre line to the package edge) with a symmetry
condition at x = 0 (u_x = 0) and the bottom centre point held against vertical motion, which together
remove the rigid-body motions. No underfill fillet is modelled.

The solver, the load (a uniform temperature change) and the plane-strain formulations (``formulation``) are
:mod:`.fem`'s; this module builds the package's blocks of material on it and reads its outputs.

The bump layer is homogenized, not meshed bump by bump. In a 2-D section a discrete bump would be a
solder *wall* running through the whole depth of the package, far stiffer than a row of bumps; a layer
with the bumps' area fraction f = pi d^2 / (4 p^2) (square array, pitch p, diameter d) keeps the right
amount of solder. Both phases span the gap from die to substrate, so they see the same strain (Voigt,
iso-strain): the layer's stiffness and thermal stress are the f-weighted means of the phases', and the
solder's own stress is recovered from the layer strain with the solder's constants. This also keeps the
mesh independent of the bump pitch (fast enough for a 480-run DOE) and avoids a stress singularity at
every bump corner.

Outputs:
- ``warpage_um``: the bottom surface's vertical displacement range across the package, signed: positive
  when the package edge rises above the centre (concave seen from above, "smile"), negative when it
  drops (convex, "cry"); ``warpage_abs_um`` is its magnitude.
- ``die_max_principal_stress_mpa``: the largest first principal stress (3-D, including sigma_zz) in the die.
- ``solder_max_von_mises_mpa``: the largest von Mises stress of the solder phase in the bump layer.
- ``solder_shear_strain_range``: |mean engineering shear strain gamma_xy| of the bump layer over the
  outermost joint (the last pitch inside the die edge); for a one-way dT this is the cyclic range that
  Coffin-Manson / Engelmaier models take.

The die edge is a bi-material corner where the linear-elastic stress is singular: a maximum over
elements or nodes would grow without bound as the mesh is refined. The two stress outputs are therefore
maxima of stresses averaged over cells of a fixed size (``stress_cell_mm``, 0.1 mm: columns from the die
edge inwards, a row at each face of the layer), which converge with the mesh like warpage and the joint
shear strain do.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import reflow
from pydantic import Field, field_validator, model_validator
from reflow.components import Variable
from reflow.plotting import pyplot, save_figure

from . import materials as matlib
from .fem import (
    DEFAULT_MESH_DENSITY,
    Block,
    Solution,
    cell_max,
    cell_rows,
    principal_max,
    signed_warpage_um,
    solve_blocks,
    von_mises,
)
from .materials import Material

if TYPE_CHECKING:
    import xarray as xr
    from reflow.context import RunContext

INPUTS = (
    Variable("die_thickness_mm", "mm", 0.05, 2.0, default=0.5, description="die thickness"),
    Variable("die_width_mm", "mm", 1.0, 50.0, default=10.0, description="die width (full, across the section)"),
    Variable("package_width_mm", "mm", 2.0, 100.0, default=20.0, description="substrate (package) width"),
    Variable("bump_height_mm", "mm", 0.01, 0.5, default=0.08, description="solder bump layer (stand-off) height"),
    Variable("substrate_thickness_mm", "mm", 0.1, 5.0, default=0.8, description="substrate thickness"),
    Variable("mold_thickness_mm", "mm", 0.0, 3.0, default=0.0,
             description="mold cap thickness over the die (0 = bare die, no mold)"),
    Variable("underfill", choices=matlib.names("underfill"), default="UF-B", description="underfill material"),
    Variable("mold", choices=matlib.names("mold"), default="EMC-A", description="mold compound (if a mold cap)"),
    Variable("substrate", choices=matlib.names("substrate"), default="BT", description="substrate material"),
    Variable("delta_t_k", "K", -300.0, 300.0, default=-125.0,
             description="temperature change from the stress-free state (-125: underfill cure 150 C to 25 C)"),
    Variable("mesh_density", "1/mm", 1, 64, default=DEFAULT_MESH_DENSITY,
             description="elements per mm away from the die edge (integer; 4x finer at the die edge)"),
)

OUTPUTS = (
    Variable("warpage_um", "um", description="bottom-surface warpage, + when the edge is above the centre"),
    Variable("warpage_abs_um", "um", description="bottom-surface warpage magnitude (max - min)"),
    Variable("die_max_principal_stress_mpa", "MPa", description="largest first principal stress in the die"),
    Variable("solder_max_von_mises_mpa", "MPa", description="largest von Mises stress of the solder phase"),
    Variable("solder_shear_strain_range", "", description="|engineering shear strain| at the outermost joint"),
)


class FlipChipFEA(reflow.Evaluator):
    """Plane-strain FE model (scikit-fem) of a flip-chip package cross-section under a temperature change.

    Generalized plane strain on request (``formulation``). Die on a homogenized solder-bump + underfill
    layer on a substrate, optional mold cap; half symmetry.
    Outputs warpage, die principal stress, solder von Mises stress and the outermost joint's shear strain.
    ``setup`` solves the default design once and saves ``fields.nc`` and ``fea_fields.png`` in the stage
    folder.
    """

    inputs = INPUTS
    outputs = OUTPUTS

    class Params(reflow.Params):
        die_material: str = Field("Si", description="die material (a library name)")
        solder: str = Field("SAC305", description="bump solder (a library name)")
        bump_pitch_mm: float = Field(0.15, gt=0, description="bump pitch (square array)")
        bump_diameter_mm: float = Field(0.10, gt=0, description="bump diameter (sets the solder area fraction)")
        materials: dict[str, Material] = Field(default_factory=dict,
                                               description="extra or overriding materials by name (datasheet "
                                                           "values); usable wherever a material is chosen")
        formulation: Literal["plane-strain", "generalized-plane-strain"] = Field(
            "plane-strain", description="plane strain (eps_zz = 0, a long section) or generalized plane strain "
                                        "(the section may shrink and bend out of plane, like a square package)")
        stress_cell_mm: float = Field(0.1, gt=0, description="side of the cells the stress outputs are averaged "
                                                              "over (keeps corner peaks mesh-independent)")
        save_fields: bool = Field(True, description="in setup, solve the default design and save fields.nc and "
                                                    "a field plot in the stage folder")

        @field_validator("materials", mode="before")
        @classmethod
        def _name_from_key(cls, value: Any) -> Any:
            """In YAML the key names the material; the record may leave ``name`` out."""
            if isinstance(value, Mapping):
                return {k: ({"name": k, **v} if isinstance(v, Mapping) else v) for k, v in value.items()}
            return value

        @field_validator("materials")
        @classmethod
        def _names_match(cls, value: dict[str, Material]) -> dict[str, Material]:
            for key, mat in value.items():
                if key != mat.name:
                    raise ValueError(f"materials: key {key!r} differs from the record's name {mat.name!r}")
            return value

        @model_validator(mode="after")
        def _known(self):
            if self.bump_diameter_mm > self.bump_pitch_mm:
                raise ValueError(f"bump_diameter_mm ({self.bump_diameter_mm}) exceeds bump_pitch_mm "
                                 f"({self.bump_pitch_mm})")
            matlib.get(self.die_material, self.materials)
            matlib.get(self.solder, self.materials, kind="solder")
            return self

    def input_variables(self) -> tuple[Variable, ...]:
        """The declared inputs, with the study's own materials added to the material choices."""
        extra = self.params.materials
        if not extra:
            return INPUTS
        out = []
        for v in INPUTS:
            if v.choices is not None:  # underfill, mold, substrate: each named after its material kind
                v = Variable(v.name, v.units, choices=matlib.names(v.name, extra), default=v.default,
                             description=v.description)
            out.append(v)
        return tuple(out)

    def setup(self, ctx: RunContext) -> None:
        """Solve the default design once; save its fields (netCDF) and their plot for the report."""
        if not self.params.save_fields:
            return
        from reflow.store import write_dataset

        fields = package_fields({v.name: v.default for v in INPUTS}, self.params)
        write_dataset(fields, Path(ctx.folder) / "fields.nc")
        plot_fields(fields, Path(ctx.folder) / "fea_fields.png")

    def evaluate_one(self, inputs: dict[str, Any]) -> dict[str, float]:
        return package_outputs(solve_package(inputs, self.params))


def _design(inputs: Mapping[str, Any] | None) -> dict[str, Any]:
    design = {v.name: v.default for v in INPUTS}
    design.update(inputs or {})
    return design


def package_blocks(inputs: Mapping[str, Any], params: FlipChipFEA.Params) -> tuple[list[Block], dict[str, Any]]:
    """The package's material rectangles for a design, and geometry facts the outputs need."""
    d = _design(inputs)
    for name in ("die_thickness_mm", "die_width_mm", "package_width_mm", "bump_height_mm",
                 "substrate_thickness_mm"):
        if not (isinstance(d[name], (int, float)) and d[name] > 0 and math.isfinite(d[name])):
            raise ValueError(f"{name} must be a positive number, got {d[name]!r}")
    tm = d["mold_thickness_mm"]
    if not (isinstance(tm, (int, float)) and tm >= 0 and math.isfinite(tm)):
        raise ValueError(f"mold_thickness_mm must be >= 0 (0 = no mold cap), got {tm!r}")
    if d["die_width_mm"] > d["package_width_mm"]:
        raise ValueError(f"die_width_mm ({d['die_width_mm']}) exceeds package_width_mm ({d['package_width_mm']})")
    extra = params.materials
    die = matlib.get(params.die_material, extra)
    solder = matlib.get(params.solder, extra, kind="solder")
    underfill = matlib.get(d["underfill"], extra, kind="underfill")
    substrate = matlib.get(d["substrate"], extra, kind="substrate")
    mold = matlib.get(d["mold"], extra, kind="mold")  # checked even when there is no mold cap
    pitch = params.bump_pitch_mm
    xe, xp = d["die_width_mm"] / 2, d["package_width_mm"] / 2
    if pitch >= xe:
        raise ValueError(f"bump_pitch_mm ({pitch}) must be below half the die width ({xe})")
    fraction = math.pi * params.bump_diameter_mm**2 / (4 * pitch**2)
    s, u = np.array(solder.lame_plane_strain()), np.array(underfill.lame_plane_strain())
    layer = tuple(float(v) for v in fraction * s + (1 - fraction) * u)
    y1 = d["substrate_thickness_mm"]
    y2 = y1 + d["bump_height_mm"]
    y3 = y2 + d["die_thickness_mm"]
    blocks = [
        Block(0.0, xp, 0.0, y1, "substrate", substrate.name, substrate.lame_plane_strain()),
        Block(0.0, xe, y1, y2, "bump_layer", f"{solder.name}+{underfill.name}", layer),
        Block(0.0, xe, y2, y3, "die", die.name, die.lame_plane_strain()),
    ]
    if tm > 0:
        if xp > xe:
            blocks.append(Block(xe, xp, y1, y3, "mold", mold.name, mold.lame_plane_strain()))
        blocks.append(Block(0.0, xp, y3, y3 + tm, "mold", mold.name, mold.lame_plane_strain()))
    meta = {"die_edge_mm": xe, "joint_zone_mm": (xe - pitch, xe), "solder_fraction": fraction,
            "solder_props": tuple(float(v) for v in s), "mesh_density": d["mesh_density"], "design": d,
            "layer_y_mm": {"bump_layer": (y1, y2), "die": (y2, y3)}, "stress_cell_mm": params.stress_cell_mm,
            "cell_rows_mm": [*cell_rows(y1, y2, params.stress_cell_mm), *cell_rows(y2, y3, params.stress_cell_mm)]}
    return blocks, meta


def solve_package(inputs: Mapping[str, Any], params: FlipChipFEA.Params | None = None) -> Solution:
    """Solve the package model for a design (inputs not given take their defaults)."""
    params = params if params is not None else FlipChipFEA.Params()
    blocks, meta = package_blocks(inputs, params)
    density = meta["mesh_density"]
    if not (isinstance(density, (int, float)) and math.isfinite(density) and density >= 1):
        raise ValueError(f"mesh_density must be a number >= 1, got {density!r}")
    density = int(round(density))
    xe = meta["die_edge_mm"]
    meta["mesh_density"] = density
    dt = meta["design"]["delta_t_k"]
    if not (isinstance(dt, (int, float)) and math.isfinite(dt)):
        raise ValueError(f"delta_t_k must be a finite number, got {dt!r}")
    cell = params.stress_cell_mm
    lines = [meta["joint_zone_mm"][0], *(xe - k * cell for k in (1, 2) if xe - k * cell > 0)]
    sol = solve_blocks(blocks, float(dt), density, x_lines=lines, y_lines=meta["cell_rows_mm"], hot_x=[xe],
                       hot_y=list(meta["layer_y_mm"]["bump_layer"]),
                       generalized=params.formulation == "generalized-plane-strain")
    sol.meta.update(meta)
    return sol


def _solder_stress(sol: Solution) -> np.ndarray:
    """Solder-phase stresses (4, elements) in the bump layer (NaN elsewhere), from the iso-strain assumption."""
    out = np.full_like(sol.stress, np.nan)
    layer = sol.role == "bump_layer"
    out[:, layer] = sol.stress_with(sol.meta["solder_props"])[:, layer]
    return out


def package_outputs(sol: Solution) -> dict[str, float]:
    """The evaluator's outputs from a solved package model (see the module docstring for definitions)."""
    die = sol.role == "die"
    layer = sol.role == "bump_layer"
    lo, hi = sol.meta["joint_zone_mm"]
    zone = layer & (sol.xq[0].mean(axis=1) > lo) & (sol.xq[0].mean(axis=1) < hi)
    gamma = float(np.sum(sol.strain_q[2, zone] * sol.dx[zone]) / np.sum(sol.dx[zone]))
    warpage = signed_warpage_um(sol)
    edge, cell = sol.meta["die_edge_mm"], sol.meta["stress_cell_mm"]
    return {
        "warpage_um": warpage,
        "warpage_abs_um": abs(warpage),
        "die_max_principal_stress_mpa": cell_max(sol, die, principal_max, edge, *sol.meta["layer_y_mm"]["die"], cell),
        "solder_max_von_mises_mpa": cell_max(sol, layer, von_mises, edge, *sol.meta["layer_y_mm"]["bump_layer"], cell,
                                             props=sol.meta["solder_props"]),
        "solder_shear_strain_range": abs(gamma),
    }


def solution_fields(sol: Solution) -> xr.Dataset:
    """Displacement and stress fields of a solution as an xarray Dataset.

    Dims ``node`` (mesh vertices: x, y, ux, uy) and ``element`` (centroid x, y, material, role, strains,
    stresses, von Mises, first principal; element averages) and ``corner`` for the connectivity
    ``element_node``. In the bump layer the stresses are the layer's (homogenized) ones and
    ``solder_von_mises_mpa`` the solder phase's.
    """
    import xarray as xr

    mesh, basis = sol.mesh, sol.basis
    ux = sol.u[basis.nodal_dofs[0]] * 1e3
    uy = sol.u[basis.nodal_dofs[1]] * 1e3
    centre = mesh.p[:, mesh.t].mean(axis=1)
    stress, strain = sol.stress, sol.strain
    sxx, syy, sxy, szz = stress

    def var(dim: str, values: Any, units: str, long_name: str) -> tuple:
        return (dim, np.asarray(values), {"units": units, "long_name": long_name})

    ds = xr.Dataset(
        {
            "x_mm": var("node", mesh.p[0], "mm", "x, from the symmetry line"),
            "y_mm": var("node", mesh.p[1], "mm", "y, from the substrate bottom"),
            "ux_um": var("node", ux, "um", "horizontal displacement"),
            "uy_um": var("node", uy, "um", "vertical displacement"),
            "element_node": (("element", "corner"), mesh.t.T.astype(np.int64), {"long_name": "vertex indices"}),
            "xc_mm": var("element", centre[0], "mm", "element centroid x"),
            "yc_mm": var("element", centre[1], "mm", "element centroid y"),
            "material": ("element", sol.label.astype(str), {"long_name": "material (solder+underfill: homogenized)"}),
            "role": ("element", sol.role.astype(str), {"long_name": "part of the package"}),
            "eps_xx": var("element", strain[0], "", "normal strain xx"),
            "eps_yy": var("element", strain[1], "", "normal strain yy"),
            "gamma_xy": var("element", strain[2], "", "engineering shear strain"),
            "eps_zz": var("element", strain[3], "", "out-of-plane strain (0 in plane strain)"),
            "sigma_xx_mpa": var("element", sxx, "MPa", "normal stress xx"),
            "sigma_yy_mpa": var("element", syy, "MPa", "normal stress yy"),
            "sigma_xy_mpa": var("element", sxy, "MPa", "shear stress xy"),
            "sigma_zz_mpa": var("element", szz, "MPa", "out-of-plane normal stress (plane strain)"),
            "von_mises_mpa": var("element", von_mises(stress), "MPa", "von Mises stress"),
            "s1_mpa": var("element", principal_max(stress), "MPa", "first principal stress"),
            "solder_von_mises_mpa": var("element", von_mises(_solder_stress(sol)), "MPa",
                                        "von Mises stress of the solder phase (bump layer only)"),
        },
        attrs={"model": "fea-package: thermo-elastic cross-section, half symmetry",
               "formulation": "generalized-plane-strain" if sol.meta.get("generalized") else "plane-strain",
               "dofs": sol.dofs, "delta_t_k": sol.delta_t_k},
    )
    design = sol.meta.get("design")
    if design:
        ds.attrs["design"] = {k: (v if isinstance(v, str) else float(v)) for k, v in design.items()}
        ds.attrs["outputs"] = package_outputs(sol)
    return ds


def package_fields(inputs: Mapping[str, Any] | None = None,
                   params: FlipChipFEA.Params | Mapping[str, Any] | None = None) -> xr.Dataset:
    """Solve a design (defaults for what ``inputs`` leaves out) and return its fields as a Dataset."""
    if params is None or isinstance(params, Mapping):
        params = FlipChipFEA.Params(**dict(params or {}))
    return solution_fields(solve_package(inputs or {}, params))


def plot_fields(fields: xr.Dataset, path: str | Path, magnify: float | None = None) -> Path:
    """Draw the materials, the von Mises stress on the (magnified) deformed section and the warpage profile.

    The section is long and thin, so the vertical axis is stretched; the figure says by how much the
    displacements are magnified.
    """
    plt = pyplot()
    from matplotlib.collections import PolyCollection

    path = Path(path)
    x, y = fields["x_mm"].values, fields["y_mm"].values
    ux, uy = fields["ux_um"].values * 1e-3, fields["uy_um"].values * 1e-3
    conn = fields["element_node"].values
    height = float(np.ptp(y)) or 1.0
    umax = float(np.max(np.hypot(ux, uy)))
    if magnify is None:
        magnify = 0.3 * height / umax if umax > 0 else 1.0
    materials = fields["material"].values.astype(str)
    kinds = list(dict.fromkeys(materials))
    colours = plt.get_cmap("tab10")
    fig, axes = plt.subplots(3, 1, figsize=(10, 8.5), gridspec_kw={"height_ratios": [1, 1.3, 1]})

    polys = np.stack([x[conn], y[conn]], axis=-1)
    ax = axes[0]
    ax.add_collection(PolyCollection(polys, facecolors=[colours(kinds.index(m) % 10) for m in materials],
                                     edgecolors="k", linewidths=0.15))
    for i, m in enumerate(kinds):
        ax.plot([], [], "s", color=colours(i % 10), label=m)
    ax.legend(loc="upper right", fontsize=7, ncol=len(kinds))
    ax.set(title="materials and mesh (half section, symmetry line at x = 0)", xlabel="x (mm)", ylabel="y (mm)")
    ax.autoscale()

    ax = axes[1]
    deformed = np.stack([(x + magnify * ux)[conn], (y + magnify * uy)[conn]], axis=-1)
    vm = fields["von_mises_mpa"].values
    coll = PolyCollection(deformed, array=vm, cmap="viridis", edgecolors="none")
    ax.add_collection(coll)
    fig.colorbar(coll, ax=ax, label="von Mises (MPa)")
    dt = fields.attrs.get("delta_t_k", float("nan"))
    ax.set(title=f"von Mises stress on the deformed section (displacements x{magnify:.0f}), dT = {dt:g} K",
           xlabel="x (mm)", ylabel="y (mm)")
    ax.autoscale()

    ax = axes[2]
    bottom = np.isclose(y, y.min())
    order = np.argsort(x[bottom])
    ax.plot(x[bottom][order], fields["uy_um"].values[bottom][order], "-", color="C3")
    out = fields.attrs.get("outputs") or {}
    w = out.get("warpage_um") if isinstance(out, dict) else None
    ax.set(title="bottom-surface profile" + (f": warpage {w:+.1f} um" if w is not None else ""),
           xlabel="x (mm)", ylabel="u_y (um)")
    ax.grid(alpha=0.3)
    return save_figure(fig, path)

"""fea-package: the plane-strain FE model against Timoshenko (1925), mesh convergence and physical sanity."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
from reflow.plugins.physics import fea
from reflow.plugins.physics import materials as matlib
from reflow.plugins.physics.bilayer import bilayer
from reflow.plugins.physics.fea import FlipChipFEA, package_outputs, solve_package
from reflow.plugins.physics.fem import solve_strip
from reflow.plugins.physics.materials import Material, UnknownMaterialError

OUTPUT_NAMES = [v.name for v in FlipChipFEA.outputs]


def _plane_strain(m: Material) -> tuple[float, float]:
    """E and CTE of Timoshenko's beam that behaves like a plane-strain layer: E/(1-nu^2), (1+nu) alpha."""
    return m.e_gpa / (1 - m.poisson**2), m.cte_ppm * (1 + m.poisson)


def _biaxial(m: Material) -> tuple[float, float]:
    """E and CTE of Timoshenko's beam that behaves like a layer of an equibiaxially bent plate: E/(1-nu)."""
    return m.e_gpa / (1 - m.poisson), m.cte_ppm


STRIPS = [  # (bottom layer, thickness), (top layer, thickness), length (mm), dT (K)
    (("FR-4", 1.0), ("Si", 0.5), 20.0, -200.0),  # the bilayer-warpage worked example, made longer
    (("BT", 0.4), ("Si", 0.1), 12.0, -125.0),  # a thinned die on a thin substrate
    (("Si", 0.3), ("Cu", 0.6), 15.0, 150.0),  # copper on silicon, heated
]


@pytest.mark.parametrize("generalized", [False, True], ids=["plane-strain", "generalized"])
@pytest.mark.parametrize("case", STRIPS, ids=["si-on-fr4", "thin-si-on-bt", "cu-on-si"])
def test_two_layer_strip_matches_timoshenko_1925(case, generalized):
    """Timoshenko, 'Analysis of bi-metal thermostats', J. Opt. Soc. Am. 11 (1925): curvature within 3 %.

    The strip is meshed at the default density by the very solver the package model uses. Its curvature
    is read from the bottom surface's central half (away from the free-edge zones beam theory ignores).
    Plane strain is Timoshenko's beam with E/(1-nu^2) and (1+nu) alpha per layer; generalized plane
    strain bends like a plate, E/(1-nu) and alpha. Using the wrong one of these is a 15-35 % error.
    """
    (bottom, t2), (top, t1), length, dt = case
    m2, m1 = matlib.get(bottom), matlib.get(top)
    convert = _biaxial if generalized else _plane_strain
    (e1, a1), (e2, a2) = convert(m1), convert(m2)
    reference = bilayer(t1, t2, e1, e2, a1, a2, length, dt)
    fe = solve_strip([(m2, t2), (m1, t1)], length, dt, generalized=generalized)
    kappa = reference["curvature_1_per_m"]
    assert fe["curvature_1_per_m"] == pytest.approx(kappa, rel=0.03)
    # The sag over the whole strip includes the free-edge zones, yet stays within 3 % of kappa L^2 / 8
    # for strips this long; its sign says which way it bends (+: edges up, as bilayer's curvature).
    assert fe["warpage_um"] == pytest.approx(math.copysign(reference["warpage_um"], kappa), rel=0.03)


def test_plane_strain_and_plate_strips_differ():
    """The two formulations are not the same model (the test above could not tell them apart otherwise)."""
    layers = [("FR-4", 1.0), ("Si", 0.5)]
    plain = solve_strip(layers, 20.0, -200.0)["curvature_1_per_m"]
    plate = solve_strip(layers, 20.0, -200.0, generalized=True)["curvature_1_per_m"]
    assert abs(plain / plate - 1) > 0.1


def test_mesh_convergence():
    """Refining the mesh changes warpage and the joint shear strain less and less; stresses settle."""
    runs = [package_outputs(solve_package({"mesh_density": n})) for n in (2, 4, 8, 16)]
    for name in ("warpage_um", "solder_shear_strain_range"):
        values = np.array([r[name] for r in runs])
        steps = np.abs(np.diff(values))
        assert np.all(steps[1:] < steps[:-1]), f"{name}: {values} does not converge"
        assert steps[-1] < 0.01 * abs(values[-1])
    # The stress outputs average over fixed cells, so the die-edge singularity does not make them grow.
    for name in ("die_max_principal_stress_mpa", "solder_max_von_mises_mpa"):
        assert runs[-1][name] == pytest.approx(runs[-2][name], rel=0.01), name


def test_default_mesh_is_close_to_a_fine_one():
    """The default density is within 0.5 % (warpage) and 3 % (joint strain) of a 4x finer mesh."""
    default = package_outputs(solve_package({}))
    fine = package_outputs(solve_package({"mesh_density": 4 * fea.DEFAULT_MESH_DENSITY}))
    assert default["warpage_um"] == pytest.approx(fine["warpage_um"], rel=0.005)
    assert default["solder_shear_strain_range"] == pytest.approx(fine["solder_shear_strain_range"], rel=0.03)


def test_no_temperature_change_gives_no_stress_or_warpage():
    sol = solve_package({"delta_t_k": 0.0, "mold_thickness_mm": 0.3})
    assert np.all(sol.u == 0.0)
    assert np.all(sol.stress == 0.0)
    assert package_outputs(sol) == {name: 0.0 for name in OUTPUT_NAMES}


def test_warpage_sign_flips_with_temperature_change():
    cool = package_outputs(solve_package({"delta_t_k": -125.0}))
    heat = package_outputs(solve_package({"delta_t_k": 125.0}))
    double = package_outputs(solve_package({"delta_t_k": -250.0}))
    # Cooling shrinks the substrate more than the silicon: its bottom bows down at the edges.
    assert cool["warpage_um"] < 0 < heat["warpage_um"]
    assert heat["warpage_um"] == pytest.approx(-cool["warpage_um"], rel=1e-9)
    assert double["warpage_um"] == pytest.approx(2 * cool["warpage_um"], rel=1e-9)
    assert heat["warpage_abs_um"] == pytest.approx(cool["warpage_abs_um"], rel=1e-9)
    assert heat["solder_shear_strain_range"] == pytest.approx(cool["solder_shear_strain_range"], rel=1e-9)
    assert double["solder_shear_strain_range"] == pytest.approx(2 * cool["solder_shear_strain_range"], rel=1e-9)


def _uniform_cte(poisson: float) -> dict[str, Material]:
    """Library materials re-made with one CTE (and one Poisson ratio), moduli kept."""
    names = ["Si", "SAC305", "UF-B", "BT", "EMC-A"]
    return {n: matlib.get(n).model_copy(update={"cte_ppm": 10.0, "poisson": poisson}) for n in names}


def test_uniform_expansion_is_stress_free():
    """With one CTE everywhere nothing constrains the expansion: no warpage and no in-plane stress.

    In plane strain eps_zz = 0 still leaves sigma_zz = -E alpha dT; generalized plane strain lets the
    section expand out of plane too, so every stress vanishes. Different moduli per material stay, so a
    wrong thermal load (beta inconsistent with the stiffness) would show up here.
    """
    inputs = {"mold_thickness_mm": 0.4, "delta_t_k": -150.0}
    plain = solve_package(inputs, FlipChipFEA.Params(materials=_uniform_cte(0.3)))
    assert np.max(np.abs(plain.stress[:3])) < 1e-6
    assert abs(package_outputs(plain)["warpage_um"]) < 1e-6
    e = np.array([matlib.get(n).e_gpa for n in plain.label if "+" not in n]) * 1e3
    szz = plain.stress[3][[("+" not in n) for n in plain.label]]
    np.testing.assert_allclose(szz, -e * 10e-6 * -150.0, rtol=1e-6)

    mixed = {n: m.model_copy(update={"poisson": p})
             for (n, m), p in zip(_uniform_cte(0.3).items(), (0.28, 0.36, 0.33, 0.2, 0.25), strict=True)}
    gps = solve_package(inputs, FlipChipFEA.Params(materials=mixed, formulation="generalized-plane-strain"))
    assert np.max(np.abs(gps.stress)) < 1e-6
    assert abs(package_outputs(gps)["warpage_um"]) < 1e-6
    assert gps.out_of_plane[0] == pytest.approx(10e-6 * -150.0, rel=1e-9)


def test_design_trends():
    """Taller bumps and stiffer underfill lower the joint shear strain; a mold cap lowers warpage."""
    base = package_outputs(solve_package({}))
    tall = package_outputs(solve_package({"bump_height_mm": 0.15}))
    assert tall["solder_shear_strain_range"] < base["solder_shear_strain_range"]
    strains = [package_outputs(solve_package({"underfill": u}))["solder_shear_strain_range"]
               for u in ("UF-A", "UF-B", "UF-C")]  # modulus 10, 6.5, 2.5 GPa
    assert strains[0] < strains[1] < strains[2]
    molded = package_outputs(solve_package({"mold_thickness_mm": 0.5}))
    assert molded["warpage_abs_um"] < base["warpage_abs_um"]


def test_unknown_material_is_a_clear_error():
    with pytest.raises(UnknownMaterialError, match=r"unknown material 'UF-Z'.*did you mean.*known materials: .*UF-A"):
        FlipChipFEA().evaluate_one({**{v.name: v.default for v in FlipChipFEA.inputs}, "underfill": "UF-Z"})
    with pytest.raises(UnknownMaterialError,
                       match=r"'BT' is a substrate material; an underfill must be one of: UF-A, UF-B, UF-C"):
        solve_package({"underfill": "BT"})
    with pytest.raises(ValueError, match="unknown material 'Unobtainium'"):
        FlipChipFEA(solder="Unobtainium")
    with pytest.raises(UnknownMaterialError, match="known materials: Si, Cu, SAC305"):
        matlib.get("silicone")
    assert matlib.get("si").name == "Si"  # case does not matter


def test_material_library_has_sources_for_every_entry():
    required = {"Si", "Cu", "SAC305", "FR-4", "BT"}
    assert required <= set(matlib.LIBRARY)
    assert len(matlib.names("underfill")) >= 2
    assert len(matlib.names("mold")) >= 2
    for name, m in matlib.LIBRARY.items():
        assert m.name == name
        assert len(m.source.strip()) >= 20 and any(ch.isdigit() for ch in m.source), f"{name}: weak source"
        assert m.e_gpa > 0 and -1 < m.poisson < 0.5 and m.cte_ppm > 0
    assert set(FlipChipFEA.inputs[6].choices) == set(matlib.names("underfill"))


def test_a_study_can_add_its_own_material():
    mine = Material(name="UF-X", kind="underfill", e_gpa=12.0, poisson=0.3, cte_ppm=20.0,
                    source="supplier datasheet TDS-123, 2024")
    ev = FlipChipFEA(materials={"UF-X": mine})
    underfill = next(v for v in ev.input_variables() if v.name == "underfill")
    assert "UF-X" in underfill.choices and "UF-A" in underfill.choices
    out = ev.evaluate_one({"underfill": "UF-X", **{v.name: v.default for v in FlipChipFEA.inputs
                                                   if v.name != "underfill"}})
    assert out["solder_shear_strain_range"] != pytest.approx(
        package_outputs(solve_package({}))["solder_shear_strain_range"], rel=1e-3)
    with pytest.raises(ValueError, match="differs from the record's name"):
        FlipChipFEA(materials={"other": mine})
    # From YAML: the key names the material, and the record is validated like the library's.
    yaml_like = {"UF-Y": {"kind": "underfill", "e_gpa": 8.0, "poisson": 0.3, "cte_ppm": 28.0,
                          "source": "supplier datasheet TDS-456, 2023"}}
    assert FlipChipFEA(materials=yaml_like).params.materials["UF-Y"].name == "UF-Y"
    with pytest.raises(ValueError, match="source"):
        FlipChipFEA(materials={"UF-Y": {**yaml_like["UF-Y"], "source": ""}})


@pytest.mark.parametrize("bad, message", [
    ({"die_width_mm": 30.0}, "exceeds package_width_mm"),
    ({"die_thickness_mm": 0.0}, "die_thickness_mm must be a positive number"),
    ({"bump_height_mm": float("nan")}, "bump_height_mm must be a positive number"),
    ({"mold_thickness_mm": -0.1}, "mold_thickness_mm must be >= 0"),
    ({"mesh_density": 0}, "mesh_density must be a number >= 1"),
    ({"delta_t_k": float("inf")}, "delta_t_k must be a finite number"),
])
def test_bad_designs_raise(bad, message):
    with pytest.raises(ValueError, match=message):
        solve_package(bad)


def test_fields_dataset_plot_and_setup(tmp_path):
    from reflow.store import read_dataset
    from reflow.testing import test_context

    ds = fea.package_fields({"mold_thickness_mm": 0.3})
    for name in ("x_mm", "y_mm", "ux_um", "uy_um", "von_mises_mpa", "s1_mpa", "material", "element_node"):
        assert name in ds, name
    assert ds["uy_um"].attrs["units"] == "um"
    assert set(ds["material"].values) == {"BT", "SAC305+UF-B", "Si", "EMC-A"}
    assert np.nanmax(ds["solder_von_mises_mpa"].values) > 0
    assert ds.attrs["outputs"]["warpage_um"] < 0
    # u_y along the bottom is what the warpage output reads
    bottom = np.isclose(ds["y_mm"].values, 0.0)
    span = np.ptp(ds["uy_um"].values[bottom])
    assert span == pytest.approx(ds.attrs["outputs"]["warpage_abs_um"], rel=1e-9)

    FlipChipFEA().setup(test_context(tmp_path))
    saved = read_dataset(tmp_path / "fields.nc")
    assert saved.sizes["element"] > 0 and "von_mises_mpa" in saved
    png = tmp_path / "fea_fields.png"
    assert png.stat().st_size > 10_000 and png.read_bytes()[:4] == b"\x89PNG"
    FlipChipFEA(save_fields=False).setup(test_context(tmp_path / "quiet"))
    assert not (tmp_path / "quiet" / "fields.nc").exists()


def test_evaluator_pickles_for_worker_processes():
    ev = FlipChipFEA(bump_pitch_mm=0.2)
    again = pickle.loads(pickle.dumps(ev))
    assert again.params == ev.params
    assert again.evaluate_one({v.name: v.default for v in FlipChipFEA.inputs}) == \
        ev.evaluate_one({v.name: v.default for v in FlipChipFEA.inputs})

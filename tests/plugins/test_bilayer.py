"""The bilayer-warpage evaluator against a worked example and against the physics it must satisfy."""

from __future__ import annotations

import math

import pytest
from reflow.evaluation import run_step
from reflow.plugins.physics.bilayer import BilayerWarpage, bilayer

REL = 1e-9

# The worked example: a 0.5 mm silicon die on a 1.0 mm FR-4 substrate, 10 mm long, cooled by 200 K.
SI_ON_FR4 = {
    "die_thickness_mm": 0.5,
    "substrate_thickness_mm": 1.0,
    "die_modulus_gpa": 130.0,
    "substrate_modulus_gpa": 22.0,
    "die_cte_ppm": 2.6,
    "substrate_cte_ppm": 17.0,
    "length_mm": 10.0,
    "delta_t_k": -200.0,
}


def _args(case: dict) -> tuple:
    return (case["die_thickness_mm"], case["substrate_thickness_mm"], case["die_modulus_gpa"],
            case["substrate_modulus_gpa"], case["die_cte_ppm"], case["substrate_cte_ppm"], case["length_mm"],
            case["delta_t_k"])


def _si(case: dict) -> tuple[float, float, float, float, float, float]:
    """t1, t2 (m), E1, E2 (Pa), a1, a2 (1/K) of a case."""
    return (case["die_thickness_mm"] * 1e-3, case["substrate_thickness_mm"] * 1e-3, case["die_modulus_gpa"] * 1e9,
            case["substrate_modulus_gpa"] * 1e9, case["die_cte_ppm"] * 1e-6, case["substrate_cte_ppm"] * 1e-6)


def _force_from_stress(out: dict, case: dict) -> float:
    """Axial force per width in the die from the returned interface stress.

    The die's bottom fibre carries sigma = P / t1 + E1 * kappa * t1 / 2 (membrane + bending, mechanics of
    a beam with the curvature convention of the module), so P = t1 * (sigma - E1 * kappa * t1 / 2).
    """
    t1, _, e1, _, _, _ = _si(case)
    sigma = out["die_interface_stress_mpa"] * 1e6
    kappa = out["curvature_1_per_m"]
    return t1 * (sigma - e1 * kappa * t1 / 2)


def test_worked_example_by_hand():
    # Inputs in SI: t1 = 0.5e-3 m, t2 = 1.0e-3 m, E1 = 130e9 Pa, E2 = 22e9 Pa, a1 = 2.6e-6, a2 = 17e-6 /K,
    # L = 10e-3 m, dT = -200 K.
    #
    # Ratios: m = t1/t2 = 0.5; n = E1/E2 = 130/22 = 5.909090...; h = t1 + t2 = 1.5e-3 m.
    m = 0.5
    n = 130.0 / 22.0
    h = 1.5e-3
    # Mismatch strain: (a2 - a1) dT = 14.4e-6 * (-200) = -2.88e-3
    mismatch = 14.4e-6 * -200.0
    assert mismatch == pytest.approx(-2.88e-3, rel=1e-12)
    # (1 + m)^2 = 1.5^2 = 2.25, so 3 (1 + m)^2 = 6.75
    # m n = 0.5 * 130/22 = 65/22 = 2.954545...; 1 + m n = 87/22 = 3.954545...
    # 1/(m n) = 22/65 = 0.338461...; m^2 + 1/(m n) = 0.25 + 22/65 = 153/260 = 0.588461...
    # (1 + m n)(m^2 + 1/(m n)) = (87/22)(153/260) = 13311/5720 = 2.327097902...
    # bracket = 6.75 + 2.327097902 = 51921/5720 = 9.077097902...
    bracket = 3 * (1 + m) ** 2 + (1 + m * n) * (m**2 + 1 / (m * n))
    assert bracket == pytest.approx(51921 / 5720, rel=1e-12)
    # numerator = 6 * (-2.88e-3) * 2.25 = -0.03888
    # denominator = h * bracket = 1.5e-3 * 9.077097902 = 0.013615646853...
    # kappa = -0.03888 / 0.013615646853 = -2.85553822153 1/m  (negative: convex seen from the die)
    kappa = 6 * mismatch * (1 + m) ** 2 / (h * bracket)
    assert kappa == pytest.approx(-0.03888 * 5720 / (1.5e-3 * 51921), rel=1e-12)
    assert kappa == pytest.approx(-2.8555382215, rel=1e-10)
    # Warpage: w = |kappa| L^2 / 8 = 2.85553822 * (10e-3)^2 / 8 = 3.5694e-5 m = 35.6942277691 um
    warpage_um = abs(kappa) * (10e-3) ** 2 / 8 * 1e6
    assert warpage_um == pytest.approx(35.6942277691, rel=1e-10)
    # Force per width: I1 = t1^3/12 = 1.0416667e-11 m^3, I2 = t2^3/12 = 8.3333333e-11 m^3
    # E1 I1 = 130e9 * 1.0416667e-11 = 1.3541667 N m; E2 I2 = 22e9 * 8.3333333e-11 = 1.8333333 N m
    # E1 I1 + E2 I2 = 3.1875 N m; P = 2 kappa 3.1875 / 1.5e-3 = -12136.0374 N/m (die in compression)
    force = 2 * kappa * (130e9 * 0.5e-3**3 / 12 + 22e9 * 1e-3**3 / 12) / h
    assert force == pytest.approx(2 * kappa * 3.1875 / 1.5e-3, rel=1e-12)
    assert force == pytest.approx(-12136.0374415, rel=1e-10)
    # Die stress at the interface: P/t1 = -24.2720749 MPa, E1 kappa t1 / 2 = -92.8049922 MPa,
    # sigma = -117.0770671 MPa
    sigma_mpa = (force / 0.5e-3 + 130e9 * kappa * 0.5e-3 / 2) / 1e6
    assert sigma_mpa == pytest.approx(-117.0770670827, rel=1e-10)

    out = BilayerWarpage().evaluate_one(dict(SI_ON_FR4))
    assert out["curvature_1_per_m"] == pytest.approx(kappa, rel=REL)
    assert out["warpage_um"] == pytest.approx(warpage_um, rel=REL)
    assert out["die_interface_stress_mpa"] == pytest.approx(sigma_mpa, rel=REL)


def test_defaults_are_the_worked_example():
    """Inputs a design leaves out take their declared defaults: the same Si-on-FR4 case."""
    out = run_step(BilayerWarpage(), {})
    assert out["warpage_um"] == pytest.approx(35.6942277691, rel=1e-10)
    assert out["curvature_1_per_m"] == pytest.approx(-2.8555382215, rel=1e-10)


CASES = [
    SI_ON_FR4,
    {**SI_ON_FR4, "die_thickness_mm": 0.1, "substrate_thickness_mm": 2.5, "length_mm": 30.0},
    {**SI_ON_FR4, "die_modulus_gpa": 70.0, "substrate_modulus_gpa": 200.0, "die_cte_ppm": 23.0,
     "substrate_cte_ppm": 12.0, "delta_t_k": 150.0},
    {**SI_ON_FR4, "die_thickness_mm": 1.7, "substrate_thickness_mm": 0.3, "delta_t_k": -60.0},
]


@pytest.mark.parametrize("case", CASES)
def test_strain_compatibility_at_the_interface(case):
    """Die bottom-fibre strain equals substrate top-fibre strain (the bond does not slip)."""
    out = bilayer(*_args(case))
    t1, t2, e1, e2, a1, a2 = _si(case)
    dt = case["delta_t_k"]
    kappa = out["curvature_1_per_m"]
    p = _force_from_stress(out, case)  # die carries +P, the substrate -P (no net force)
    # Positive kappa is concave seen from the die: upper fibres shorten, so a fibre at z above a layer's
    # mid-plane has bending strain -kappa z. The die's bottom is z = -t1/2, the substrate's top z = +t2/2.
    die_bottom = a1 * dt + p / (e1 * t1) + kappa * t1 / 2
    substrate_top = a2 * dt - p / (e2 * t2) - kappa * t2 / 2
    scale = abs((a2 - a1) * dt)
    assert abs(die_bottom - substrate_top) <= 1e-9 * scale


@pytest.mark.parametrize("case", CASES)
def test_moment_balance(case):
    """The couple of the two axial forces, P h / 2, balances the layers' bending moments (E1 I1 + E2 I2) kappa."""
    out = bilayer(*_args(case))
    t1, t2, e1, e2, _, _ = _si(case)
    kappa = out["curvature_1_per_m"]
    p = _force_from_stress(out, case)
    couple = p * (t1 + t2) / 2
    bending = (e1 * t1**3 / 12 + e2 * t2**3 / 12) * kappa
    assert couple == pytest.approx(bending, rel=1e-9)


@pytest.mark.parametrize("case", CASES)
def test_warpage_is_sag_of_uniform_curvature(case):
    out = bilayer(*_args(case))
    length = case["length_mm"] * 1e-3
    assert out["warpage_um"] == pytest.approx(abs(out["curvature_1_per_m"]) * length**2 / 8 * 1e6, rel=REL)
    assert out["warpage_um"] >= 0


def test_equal_ctes_give_no_warpage():
    out = bilayer(*_args({**SI_ON_FR4, "die_cte_ppm": 9.0, "substrate_cte_ppm": 9.0}))
    assert out == {"curvature_1_per_m": 0.0, "warpage_um": 0.0, "die_interface_stress_mpa": 0.0}


def test_no_temperature_change_gives_no_warpage():
    out = bilayer(*_args({**SI_ON_FR4, "delta_t_k": 0.0}))
    assert out["warpage_um"] == 0.0
    assert out["die_interface_stress_mpa"] == 0.0


def test_sign_flips_with_temperature_change():
    cool = bilayer(*_args(SI_ON_FR4))
    heat = bilayer(*_args({**SI_ON_FR4, "delta_t_k": 200.0}))
    assert cool["curvature_1_per_m"] < 0 < heat["curvature_1_per_m"]
    assert heat["curvature_1_per_m"] == pytest.approx(-cool["curvature_1_per_m"], rel=REL)
    assert heat["die_interface_stress_mpa"] == pytest.approx(-cool["die_interface_stress_mpa"], rel=REL)
    assert heat["warpage_um"] == pytest.approx(cool["warpage_um"], rel=REL)
    # Cooling a low-CTE die on a high-CTE substrate puts the die in compression.
    assert cool["die_interface_stress_mpa"] < 0


def test_linear_in_temperature_change():
    half = bilayer(*_args({**SI_ON_FR4, "delta_t_k": -100.0}))
    full = bilayer(*_args(SI_ON_FR4))
    assert full["curvature_1_per_m"] == pytest.approx(2 * half["curvature_1_per_m"], rel=REL)


@pytest.mark.parametrize("t_mm", [0.2, 0.5, 1.3])
def test_equal_layers_limit(t_mm):
    """m = n = 1: kappa = 6 d (4) / (h (12 + 2 * 2)) = 3/2 * dAlpha dT / h."""
    case = {**SI_ON_FR4, "die_thickness_mm": t_mm, "substrate_thickness_mm": t_mm,
            "die_modulus_gpa": 100.0, "substrate_modulus_gpa": 100.0}
    out = bilayer(*_args(case))
    h = 2 * t_mm * 1e-3
    expected = 1.5 * (17.0 - 2.6) * 1e-6 * -200.0 / h
    assert out["curvature_1_per_m"] == pytest.approx(expected, rel=REL)


def test_biaxial_uses_plate_moduli():
    ev = BilayerWarpage(biaxial=True, die_poisson=0.28, substrate_poisson=0.15)
    out = ev.evaluate_one(dict(SI_ON_FR4))
    expected = bilayer(0.5, 1.0, 130.0 / 0.72, 22.0 / 0.85, 2.6, 17.0, 10.0, -200.0)
    for key, value in expected.items():
        assert out[key] == pytest.approx(value, rel=REL)
    assert out["curvature_1_per_m"] != pytest.approx(BilayerWarpage().evaluate_one(dict(SI_ON_FR4))
                                                     ["curvature_1_per_m"], rel=1e-3)


@pytest.mark.parametrize("name", ["die_thickness_mm", "substrate_thickness_mm", "die_modulus_gpa",
                                  "substrate_modulus_gpa", "length_mm"])
@pytest.mark.parametrize("value", [0.0, -1.0])
def test_non_positive_inputs_raise(name, value):
    with pytest.raises(ValueError, match=name):
        BilayerWarpage().evaluate_one({**SI_ON_FR4, name: value})


def test_zero_thickness_fails_the_trial_not_the_batch(tmp_path):
    """Through the evaluator contract a bad point becomes a failed trial with its reason."""
    import xarray as xr
    from reflow.context import RunContext
    from reflow.executors import InProcessExecutor

    class _Run:
        executor = InProcessExecutor()

    ctx = RunContext(run=_Run(), stage="s", seed=1, device="cpu", folder=tmp_path, study_dir=tmp_path, quiet=True)
    designs = xr.Dataset({"die_thickness_mm": ("trial", [0.5, 0.0, 0.3])}, coords={"trial": [0, 1, 2]})
    trials = BilayerWarpage().evaluate(designs, ctx)
    assert isinstance(trials, xr.Dataset)
    assert trials.sizes["trial"] == 3
    assert list(trials["status"].values) == ["ok", "failed", "ok"]
    assert "die_thickness_mm must be positive" in str(trials["error"].values[1])
    assert math.isfinite(float(trials["warpage_um"].values[0]))
    assert math.isnan(float(trials["warpage_um"].values[1]))
    assert trials["warpage_um"].attrs["units"] == "um"
    assert list(trials["die_thickness_mm"].values) == [0.5, 0.0, 0.3]


def test_params_are_validated():
    with pytest.raises(ValueError):
        BilayerWarpage(die_poisson=0.6)
    with pytest.raises(ValueError):
        BilayerWarpage(unknown=1)

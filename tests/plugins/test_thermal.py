"""Foster-network junction temperature against closed forms, and die-attach degradation."""

from __future__ import annotations

import math

import pytest
from pydantic import ValidationError
from reflow.plugins.physics.thermal import JunctionTemperature, crack_fraction
from reflow.testing import check_component

BASE = {"power_w": 200.0, "ambient_c": 40.0, "aging_cycles": 0.0, "void_fraction": 0.0, "time_s": 1.0}


def test_steady_state_is_ambient_plus_power_times_total_resistance():
    # default network: 0.010 + 0.030 + 0.060 + 0.040 + 0.150 = 0.290 K/W; 40 + 200 * 0.29 = 98 degC
    out = JunctionTemperature().evaluate_one(BASE)
    assert out["rth_ja_k_per_w"] == pytest.approx(0.29)
    assert out["tj_c"] == pytest.approx(98.0)
    assert out["crack_fraction"] == 0.0


def test_single_rc_step_response_closed_form():
    # one layer R = 0.5 K/W, tau = 2 s, P = 10 W: rise(t) = 5 (1 - e^(-t/2)); at t = tau: 5 (1 - 1/e) = 3.16060
    model = JunctionTemperature(mode="transient", layers=[{"name": "die-attach", "rth_k_per_w": 0.5, "tau_s": 2.0}])
    out = model.evaluate_one({**BASE, "power_w": 10.0, "ambient_c": 0.0, "time_s": 2.0})
    assert out["tj_c"] == pytest.approx(5.0 * (1.0 - math.exp(-1.0)), rel=1e-12)
    late = model.evaluate_one({**BASE, "power_w": 10.0, "ambient_c": 0.0, "time_s": 1e4})
    assert late["tj_c"] == pytest.approx(5.0)
    start = model.evaluate_one({**BASE, "power_w": 10.0, "ambient_c": 0.0, "time_s": 0.0})
    assert start["tj_c"] == 0.0


def test_transient_rises_monotonically_to_the_steady_state():
    transient = JunctionTemperature(mode="transient")
    temps = [transient.evaluate_one({**BASE, "time_s": t})["tj_c"] for t in (0.001, 0.01, 0.1, 1, 10, 100, 1000)]
    assert temps == sorted(temps)
    assert temps[-1] == pytest.approx(JunctionTemperature().evaluate_one(BASE)["tj_c"], rel=1e-6)


def test_voids_and_cracks_raise_the_attach_resistance():
    model = JunctionTemperature()
    # half the area voided: R_attach 0.030 -> 0.060 K/W; Tj rises by 200 * 0.030 = 6 K
    half = model.evaluate_one({**BASE, "void_fraction": 0.5})
    assert half["die_attach_rth_k_per_w"] == pytest.approx(0.060)
    assert half["tj_c"] == pytest.approx(104.0)
    # 30,000 of 60,000 cycles with exponent 1.5: crack = 0.5^1.5 = 0.353553; R = 0.03 / 0.646447 = 0.046408
    aged = model.evaluate_one({**BASE, "aging_cycles": 30000.0})
    assert aged["crack_fraction"] == pytest.approx(0.5**1.5)
    assert aged["die_attach_rth_k_per_w"] == pytest.approx(0.03 / (1 - 0.5**1.5))
    tj = [model.evaluate_one({**BASE, "aging_cycles": n})["tj_c"] for n in (0, 1e4, 2e4, 4e4, 1e5)]
    assert tj == sorted(tj)
    assert crack_fraction(1e9, 60000.0, 1.5, 0.9) == 0.9  # capped


def test_bad_inputs_and_params():
    with pytest.raises(ValueError, match="void_fraction"):
        JunctionTemperature().evaluate_one({**BASE, "void_fraction": 1.0})
    with pytest.raises(ValueError, match="aging_cycles"):
        JunctionTemperature().evaluate_one({**BASE, "aging_cycles": -1.0})
    with pytest.raises(ValidationError, match="attach_layer 'solder' is not a layer"):
        JunctionTemperature(attach_layer="solder")


def test_contract(tmp_path):
    check_component(JunctionTemperature, tmp_path=tmp_path)
    check_component(JunctionTemperature, {"mode": "transient"}, tmp_path=tmp_path)

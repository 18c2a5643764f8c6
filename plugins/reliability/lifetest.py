"""Data source ``synthetic-life-test``: a censored accelerated thermal-cycling test with known ground truth.

Each unit's cycles to failure are Weibull, T = gamma + eta_i * E^(1/beta) with E standard exponential; the test
stops at ``test_cycles`` and the units still working are suspended there (right-censored, ``failed`` = 0).
With voids, each unit gets a void fraction v ~ U(0, max_void_fraction) and proportional hazards: the hazard is
multiplied by exp(c v), c = ``void_log_hazard``, which for a Weibull is eta_i = eta exp(-c v / beta) (the
Cox model's coefficient for ``void_fraction`` is then c). The ground truth goes into the dataset's attrs.
"""

from __future__ import annotations

import json
import math
from typing import Literal

import numpy as np
import reflow
from pydantic import Field, model_validator


class SyntheticLifeTest(reflow.DataSource):
    """Units of a thermal-cycling test: ``cycles`` (to failure or suspension), ``failed`` (1/0), ``void_fraction``.

    Drawn from the stage's seeded generator, so the same study seed gives the same test.
    """

    class Params(reflow.Params):
        units: int = Field(40, ge=2, le=10_000_000, description="units on test")
        shape: float = Field(2.0, gt=0.0, le=50.0, description="Weibull shape beta of the cycles to failure")
        scale: float = Field(3000.0, gt=0.0, description="Weibull scale eta in cycles (63.2 % failed) of a void-free "
                                                         "unit, counted from the location")
        location: float = Field(0.0, ge=0.0, description="failure-free cycles gamma (3-parameter Weibull)")
        test_cycles: float | None = Field(2500.0, gt=0.0, description="cycles at which the test stops; units still "
                                                                      "working are suspended (null: run to failure)")
        max_void_fraction: float = Field(0.0, ge=0.0, lt=1.0, description="voids drawn per unit uniformly in [0, "
                                                                          "this]; 0: no void_fraction variable")
        void_log_hazard: float = Field(0.0, description="Cox log hazard ratio per unit of void fraction (c: the "
                                                        "hazard is multiplied by exp(c v))")

    def load(self, ctx):
        import xarray as xr

        p = self.params
        rng = ctx.rng
        n = p.units
        voids = rng.uniform(0.0, p.max_void_fraction, n) if p.max_void_fraction > 0 else np.zeros(n)
        eta = p.scale * np.exp(-p.void_log_hazard * voids / p.shape)
        life = p.location + eta * rng.standard_exponential(n) ** (1.0 / p.shape)
        end = np.inf if p.test_cycles is None else p.test_cycles
        failed = life <= end
        cycles = np.where(failed, life, end)
        data = {
            "cycles": ("sample", cycles, {"units": "cycles", "description": "cycles to failure or suspension"}),
            "failed": ("sample", failed.astype(np.int64), {"units": "", "description": "1 failed, 0 suspended"}),
        }
        if p.max_void_fraction > 0:
            data["void_fraction"] = ("sample", voids, {"units": "", "description": "voided joint area fraction"})
        ds = xr.Dataset(data, coords={"sample": np.arange(n)})
        ds.attrs.update(source="synthetic-life-test", true_shape=p.shape, true_scale=p.scale,
                        true_location=p.location, true_void_log_hazard=p.void_log_hazard,
                        test_cycles=float(end) if np.isfinite(end) else -1.0)
        return ds


class SyntheticReadoutTest(reflow.DataSource):
    """``synthetic-readout-test``: a thermal-cycling test read out every ``readout_every`` cycles (JESD22-A104
    style), with known Weibull lives.

    Ground truth: unit i's life is T_i = ``location`` + ``scale`` * E_i^(1/``shape``), E_i standard exponential
    (a Weibull), from the stage's seeded generator. A unit is only looked at at the readouts 0, N, 2N, ... up to
    ``test_cycles``: it failed in (last readout before T_i, first readout at or after T_i]:

    - ``layout: units`` (one row per unit, dim ``sample``): ``lower`` and ``upper`` (the interval; ``lower`` = 0
      is left-censored at the first readout; ``upper`` = inf: still working at the last readout, suspended at
      ``lower``), ``failed`` (1/0) and ``true_cycles`` (T_i, the truth a real test never sees: for studies
      that show how close a fit gets);
    - ``layout: readings`` (one row per unit and readout, dim ``reading``): ``unit``, ``cycles`` and a
      degradation measure ``degradation`` that reaches ``threshold`` exactly at T_i along
      d_i(t) = threshold * (t / T_i)^``path_exponent`` plus N(0, ``noise``) measurement noise (the noise-free
      path crosses the threshold exactly at T_i), and ``true_cycles``.

    attrs: ``true_shape``, ``true_scale``, ``true_location``, ``true_b10`` (= location + scale (-ln 0.9)^(1/shape)),
    ``readout_every``, ``test_cycles``, ``threshold``.
    """

    class Params(reflow.Params):
        units: int = Field(50, ge=2, le=1_000_000, description="units on test")
        shape: float = Field(3.0, gt=0.0, le=50.0, description="true Weibull shape beta")
        scale: float = Field(2000.0, gt=0.0, description="true Weibull scale eta (cycles, from the location)")
        location: float = Field(0.0, ge=0.0, description="true failure-free cycles gamma")
        readout_every: float = Field(250.0, gt=0.0, description="cycles between readouts (JESD22-A104: 250 or 500)")
        test_cycles: float = Field(3000.0, gt=0.0, description="cycles at the last readout (end of the test)")
        layout: Literal["units", "readings"] = Field("units", description="units: one row per unit with lower/upper;"
                                                                          " readings: degradation per readout")
        threshold: float = Field(0.2, gt=0.0, description="degradation at which a unit has failed (readings)")
        path_exponent: float = Field(2.0, gt=0.0, description="degradation grows as (t / life)^this (readings)")
        noise: float = Field(0.0, ge=0.0, description="sd of the measurement noise on the degradation (readings)")

        @model_validator(mode="after")
        def _readouts(self) -> SyntheticReadoutTest.Params:
            if self.readout_every > self.test_cycles:
                raise ValueError(f"readout_every ({self.readout_every:g}) is longer than the test "
                                 f"({self.test_cycles:g} cycles): there would be no readout")
            return self

    def load(self, ctx):
        import xarray as xr

        p = self.params
        rng = ctx.rng
        life = p.location + p.scale * rng.standard_exponential(p.units) ** (1.0 / p.shape)
        readouts = np.arange(0.0, p.test_cycles + 1e-9 * p.test_cycles, p.readout_every)
        last = float(readouts[-1])
        attrs = {"source": "synthetic-readout-test", "true_shape": p.shape, "true_scale": p.scale,
                 "true_location": p.location,
                 "true_b10": p.location + p.scale * (-np.log(0.9)) ** (1.0 / p.shape),
                 "readout_every": p.readout_every, "test_cycles": last, "threshold": p.threshold}
        if p.layout == "units":
            k = np.searchsorted(readouts, life, side="left")  # first readout at or after the life
            failed = k < readouts.size
            upper = np.where(failed, readouts[np.minimum(k, readouts.size - 1)], np.inf)
            lower = np.where(failed, readouts[np.maximum(k - 1, 0)], last)
            ds = xr.Dataset({
                "lower": ("sample", lower, {"units": "cycles", "description": "last readout seen working"}),
                "upper": ("sample", upper, {"units": "cycles", "description": "first readout seen failed (inf: "
                                                                              "still working)"}),
                "failed": ("sample", failed.astype(np.int64), {"units": "", "description": "1 failed, 0 suspended"}),
                "true_cycles": ("sample", life, {"units": "cycles", "description": "true life (ground truth)"}),
            }, coords={"sample": np.arange(p.units)})
        else:
            t = np.tile(readouts, p.units)
            unit = np.repeat(np.arange(p.units), readouts.size)
            d = p.threshold * (t / life[unit]) ** p.path_exponent
            if p.noise > 0:
                d = d + rng.normal(0.0, p.noise, d.size)
            ds = xr.Dataset({
                "unit": ("reading", unit, {"units": "", "description": "unit id"}),
                "cycles": ("reading", t, {"units": "cycles", "description": "cycles at the readout"}),
                "degradation": ("reading", d, {"units": "", "description": f"failed above {p.threshold:g}"}),
                "true_cycles": ("reading", life[unit], {"units": "cycles", "description": "true life of the unit"}),
            }, coords={"reading": np.arange(t.size)})
        ds.attrs.update(attrs)
        return ds


class SyntheticAltTest(reflow.DataSource):
    """``synthetic-alt-test``: an accelerated life test at several stress conditions with a known life-stress law.

    Ground truth: at condition k the life is Weibull (shape ``shape``) or lognormal (sigma ``shape``) with scale
    (Weibull eta, lognormal median) L_k = ``reference_scale`` * AF_k, where the law gives
    AF_k = L(stress_k) / L(reference) for the ``relationship`` of the ``life-stress`` model:
    arrhenius exp(a (1/T - 1/T_ref)), a = ``activation_energy_ev`` / k_B; eyring (T_ref / T) exp(a (1/T -
    1/T_ref)); coffin-manson / inverse-power (S / S_ref)^n with n = ``exponent`` (negative: more stress, less
    life); norris-landzberg (dT/dT_ref)^n (f/f_ref)^m exp(a (1/Tmax - 1/Tmax_ref)), m = ``frequency_exponent``;
    peck (RH/RH_ref)^n exp(a (1/T - 1/T_ref)). The coefficients in the model's reporting convention (``true_a``,
    ``true_n``, ``true_m`` and the intercept ``true_b``, ``true_c`` or ``true_A``), ``true_shape``,
    ``true_reference_scale`` and ``true_b10_reference`` go into attrs.

    ``levels`` gives each stress role's value per condition (lists of equal length, K for temperatures), e.g.
    ``{temperature: [358, 378, 398]}``; each condition has ``units_per_condition`` units; the test stops at
    ``test_cycles`` (suspended) and, with ``readout_every``, units are only read out periodically (``lower``,
    ``upper`` instead of exact times). Variables: ``cycles``, ``failed``, (``lower``, ``upper``), one per stress
    named as the life-stress model expects by default (``temperature_k``, ``delta_t_k``, ``frequency_per_day``,
    ``t_max_k``, ``humidity_rh``, ``stress``) and ``condition``.
    """

    class Params(reflow.Params):
        relationship: Literal["arrhenius", "eyring", "inverse-power", "coffin-manson", "norris-landzberg",
                              "peck"] = Field("arrhenius", description="the true life-stress law")
        distribution: Literal["weibull", "lognormal"] = Field("weibull", description="true life distribution")
        levels: dict[str, list[float]] = Field(
            default_factory=lambda: {"temperature": [358.0, 378.0, 398.0]},
            description="stress role -> value at each test condition (K for temperatures)")
        reference: dict[str, float] = Field(default_factory=lambda: {"temperature": 328.0},
                                            description="the reference (use) condition, role -> value")
        reference_scale: float = Field(50000.0, gt=0.0, description="true scale (eta or median) at the reference")
        shape: float = Field(2.0, gt=0.0, le=50.0, description="true Weibull beta or lognormal sigma")
        activation_energy_ev: float = Field(0.7, description="Ea of the Arrhenius term (eV)")
        exponent: float = Field(-2.0, description="n of the power term (negative: life falls with the stress)")
        frequency_exponent: float = Field(0.33, description="m of the frequency term (norris-landzberg)")
        units_per_condition: int = Field(20, ge=1, le=1_000_000, description="units at each condition")
        test_cycles: float | None = Field(None, gt=0.0, description="the test stops here; units still working are "
                                                                   "suspended (null: run to failure)")
        readout_every: float | None = Field(None, gt=0.0, description="read units out only every this many cycles "
                                                                      "(interval data: lower/upper)")

        @model_validator(mode="after")
        def _levels(self) -> SyntheticAltTest.Params:
            from .alt import RELATIONSHIPS

            roles = [r for r, _, _ in RELATIONSHIPS[self.relationship][2]]
            for what, given in (("levels", self.levels), ("reference", self.reference)):
                if sorted(given) != sorted(roles):
                    raise ValueError(f"{self.relationship} needs {what} for {', '.join(roles)}; got "
                                     f"{', '.join(given) or 'none'}")
            sizes = {len(v) for v in self.levels.values()}
            if len(sizes) != 1 or sizes.pop() < 2:
                raise ValueError("levels: give every stress the same number of conditions, at least 2")
            for role, values in [*self.levels.items(), *((r, [v]) for r, v in self.reference.items())]:
                if any(v <= 0 for v in values):
                    raise ValueError(f"levels/reference of {role!r} must be > 0 (temperatures in K)")
            if self.readout_every is not None and self.test_cycles is None:
                raise ValueError("readout_every needs test_cycles (the last readout)")
            return self

    def true_coefficients(self) -> dict[str, float]:
        """The law in the ``life-stress`` model's reporting convention (a, n, m, and the intercept)."""
        from .alt import BOLTZMANN_EV, RELATIONSHIPS

        p = self.params
        intercept, how, terms, eyring = RELATIONSHIPS[p.relationship]
        coef = {"a": p.activation_energy_ev / BOLTZMANN_EV, "n": p.exponent, "m": p.frequency_exponent}
        ln_l = math.log(p.reference_scale)
        if eyring:
            ln_l += math.log(p.reference["temperature"])
        for role, tr, name in terms:
            s = p.reference[role]
            ln_l -= coef[name] * (1.0 / s if tr == "inv" else math.log(s))
        out = {name: coef[name] for _, _, name in terms}
        out[intercept] = math.exp(ln_l) if how == "exp" else -ln_l
        return out

    def scale_at(self, stresses: dict[str, np.ndarray]) -> np.ndarray:
        """The true scale at stresses given by role (arrays)."""
        from .alt import BOLTZMANN_EV, RELATIONSHIPS

        p = self.params
        _, _, terms, eyring = RELATIONSHIPS[p.relationship]
        coef = {"a": p.activation_energy_ev / BOLTZMANN_EV, "n": p.exponent, "m": p.frequency_exponent}
        ln_l = np.full(np.shape(next(iter(stresses.values()))), math.log(p.reference_scale))
        for role, tr, name in terms:
            s, ref = np.asarray(stresses[role], dtype=float), p.reference[role]
            ln_l = ln_l + coef[name] * (1.0 / s - 1.0 / ref if tr == "inv" else np.log(s / ref))
        if eyring:
            ln_l = ln_l + np.log(p.reference["temperature"] / np.asarray(stresses["temperature"], dtype=float))
        return np.exp(ln_l)

    def load(self, ctx):
        import xarray as xr

        from .alt import ROLES

        p = self.params
        rng = ctx.rng
        k = len(next(iter(p.levels.values())))
        cond = np.repeat(np.arange(k), p.units_per_condition)
        stress = {role: np.asarray(v, dtype=float)[cond] for role, v in p.levels.items()}
        scale = self.scale_at(stress)
        if p.distribution == "weibull":
            life = scale * rng.standard_exponential(cond.size) ** (1.0 / p.shape)
        else:
            life = scale * np.exp(p.shape * rng.standard_normal(cond.size))
        end = np.inf if p.test_cycles is None else float(p.test_cycles)
        failed = life <= end
        data: dict[str, tuple] = {
            "cycles": ("sample", np.where(failed, life, end), {"units": "cycles", "description": "cycles to failure "
                                                                                                "or suspension"}),
            "failed": ("sample", failed.astype(np.int64), {"units": "", "description": "1 failed, 0 suspended"}),
            "condition": ("sample", cond, {"units": "", "description": "test condition index"}),
        }
        if p.readout_every is not None:
            readouts = np.arange(0.0, end + 1e-9 * end, p.readout_every)
            j = np.searchsorted(readouts, life, side="left")
            hit = j < readouts.size
            data["lower"] = ("sample", np.where(hit, readouts[np.maximum(j - 1, 0)], readouts[-1]),
                             {"units": "cycles", "description": "last readout seen working"})
            data["upper"] = ("sample", np.where(hit, readouts[np.minimum(j, readouts.size - 1)], np.inf),
                             {"units": "cycles", "description": "first readout seen failed (inf: still working)"})
            data["failed"] = ("sample", hit.astype(np.int64), {"units": "", "description": "1 failed, 0 suspended"})
        for role, values in stress.items():
            data[ROLES[role][0]] = ("sample", values, {"units": "K" if ROLES[role][2] or role == "delta_t" else "",
                                                       "description": ROLES[role][1]})
        ds = xr.Dataset(data, coords={"sample": np.arange(cond.size)})
        ref = {r: np.array([v]) for r, v in p.reference.items()}
        from scipy.stats import norm

        q = ((-math.log(0.9)) ** (1.0 / p.shape) if p.distribution == "weibull"
             else math.exp(p.shape * float(norm.ppf(0.1))))
        ds.attrs.update(source="synthetic-alt-test", relationship=p.relationship, distribution=p.distribution,
                        true_shape=p.shape, true_reference_scale=float(self.scale_at(ref)[0]),
                        true_b10_reference=float(self.scale_at(ref)[0]) * q,
                        reference=json.dumps(p.reference), levels=json.dumps(p.levels),
                        **{f"true_{name}": v for name, v in self.true_coefficients().items()})
        return ds

"""Data source ``synthetic-life-test``: a censored accelerated thermal-cycling test with known ground truth.

Each unit's cycles to failure are Weibull, T = gamma + eta_i * E^(1/beta) with E standard exponential; the test
stops at ``test_cycles`` and the units still working are suspended there (right-censored, ``failed`` = 0).
With voids, each unit gets a void fraction v ~ U(0, max_void_fraction) and proportional hazards: the hazard is
multiplied by exp(c v), c = ``void_log_hazard``, which for a Weibull is eta_i = eta exp(-c v / beta) (the
Cox model's coefficient for ``void_fraction`` is then c). The ground truth goes into the dataset's attrs.
"""

from __future__ import annotations

import numpy as np
import reflow
from pydantic import Field


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

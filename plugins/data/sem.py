"""Data source ``synthetic-sem-sinter``: SEM-like micrographs of copper nanoparticle films sintered by a pulsed
laser (micro selective laser sintering), labelled by the burst count that sintered them (the set-up of seed 004:
copper nanoparticle ink, burst counts 50 to 250 at constant power, 100 bursts = 1 s exposure, several images per
sample; more bursts give more necking and less porosity).

Structural model, as functions of the burst count B (``burst_count``), with the defaults in brackets:

- neck radius ratio (neck radius x over particle radius r), a Kuczynski-type power law of the exposure time:
  ``x/r = a (B / 100)^(1/n)``, capped at 0.95 (a = ``neck_ratio_at_100`` [0.38], n = ``neck_exponent`` [3]);
- particle radius, coarsening towards a limit: ``r = r0 (1 + g (1 - exp(-B / B_c)))`` (r0 =
  ``particle_radius`` [4 px], g = ``grain_growth`` [0.4], B_c = ``coarsening_bursts`` [150]);
- porosity from the two-sphere model of initial-stage sintering: two touching spheres that grow a neck of
  radius x approach each other by ``h = r (1 - sqrt(1 - (x/r)^2))``, a linear shrinkage h/r, so the relative
  density rises from the green density rho0 (``green_density`` [0.55], random loose packing of the dried ink) to
  ``rho = rho0 / (1 - (x/r)^2)^(3/2)`` (capped at 0.98) and ``porosity = 1 - rho``. With the defaults:
  B = 50, 100, 150, 200, 250 give x/r = 0.30, 0.38, 0.43, 0.48, 0.52 and porosity 0.37, 0.31, 0.25, 0.19, 0.13.

Each sintered sample (``sample_id``, ``images_per_sample`` images) has its own effective exposure B x LN(0,
``sample_variation``) (local fluence and absorption scatter) and particle size r0 x LN(0, 0.05); ``porosity``,
``neck_ratio`` and ``particle_radius_px`` are the sample's model values.

Rendering of one image (a field of view of the sample's surface, periodic): N = -ln(porosity) A / (pi E[r^2])
particles at uniformly random centres (a Boolean model: the expected uncovered area fraction is the porosity),
radii r x LN(0, 0.15), depths z uniform in [-0.6 r, 0]. The surface height is the smooth union (log-sum-exp of
temperature k = r (0.06 + 0.3 (x/r)^2), so the fillets that join neighbours grow with the neck ratio) of caps,
computed as FFT convolutions of the particle centres with one kernel per radius class. The solid surface is then
levelled (by at most +-0.5 r) so that the image's pore area fraction equals the porosity (Delesse: area fraction
= volume fraction); ``pore_fraction`` is the fraction measured on the levelled surface. SEM contrast:
secondary-electron yield by the secant of the surface tilt (edges bright), grooves between particles darker,
pores dark, per-sample gain, a brightness gradient and scan-line drift (``drift``), beam blur
(``blur``) and Poisson shot noise of ``dose`` electrons per pixel at full brightness.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import reflow
from pydantic import Field, field_validator

RADIUS_CLASSES = 4


class SyntheticSemSinter(reflow.DataSource):
    """SEM micrographs of laser-sintered copper nanoparticles (``image``: sample, channel=1, y, x; float32 in
    [0, 1]) labelled by burst count (``label`` "b50", ... with ``label_index`` and ``attrs["classes"]``;
    ``burst_count``), with the structural model's ``porosity``, ``neck_ratio`` and ``particle_radius_px``, the
    image's ``pore_fraction`` and ``sample_id`` (images of one sintered sample: split by it). The model is in
    the module docstring and docs/inspection-data.md.
    """

    class Params(reflow.Params):
        burst_counts: list[int] = Field([50, 100, 150, 200, 250], min_length=1,
                                        description="laser burst counts, one class each (100 bursts = 1 s)")
        images_per_class: int = Field(20, ge=1, le=1_000_000, description="images of each burst count")
        images_per_sample: int = Field(5, ge=1, le=10_000, description="images of one sintered sample "
                                                                       "(sample_id)")
        size: int = Field(128, ge=32, le=2048, description="image height and width in pixels")
        particle_radius: float = Field(4.0, ge=1.5, le=40.0, description="mean radius r0 of the unsintered "
                                                                         "particles, pixels")
        green_density: float = Field(0.55, gt=0.2, lt=0.9, description="relative density rho0 of the dried, "
                                                                        "unsintered film")
        neck_ratio_at_100: float = Field(0.38, gt=0.0, lt=0.95, description="neck radius / particle radius "
                                                                            "after 100 bursts")
        neck_exponent: float = Field(3.0, ge=1.0, le=10.0, description="n of the neck growth law "
                                                                       "x/r ~ B^(1/n)")
        grain_growth: float = Field(0.4, ge=0.0, le=3.0, description="relative growth g of the particle radius "
                                                                     "when fully coarsened")
        coarsening_bursts: float = Field(150.0, gt=0.0, le=1e6, description="burst count B_c of the coarsening")
        sample_variation: float = Field(0.1, ge=0.0, le=1.0, description="sample-to-sample scatter of the "
                                                                         "effective exposure (log-normal sigma)")
        dose: float = Field(80.0, ge=1.0, le=1e6, description="electrons per pixel at full brightness (shot "
                                                             "noise: more is less noisy)")
        drift: float = Field(0.08, ge=0.0, le=0.5, description="amplitude of the brightness gradient and "
                                                              "scan-line drift")
        blur: float = Field(0.7, ge=0.0, le=5.0, description="beam blur, Gaussian sigma in pixels")

        @field_validator("burst_counts")
        @classmethod
        def _bursts(cls, value: list[int]) -> list[int]:
            if min(value) < 1:
                raise ValueError(f"burst_counts must be >= 1, got {value}")
            if len(set(value)) != len(value):
                raise ValueError(f"burst_counts must not repeat, got {value}")
            return value

    def load(self, ctx: Any) -> Any:
        return generate_sem(self.params, ctx.seed)

    def plot(self, data: Any, folder: Path) -> list[Path]:
        """Figure for the ``data`` task: example micrographs of every burst count."""
        from .wlp import sample_grid

        return [sample_grid(data, Path(folder) / "sem_examples.png", per_class=5,
                            title="synthetic SEM micrographs by burst count")]


def neck_ratio(bursts: np.ndarray, p: SyntheticSemSinter.Params) -> np.ndarray:
    """Neck radius / particle radius after ``bursts`` (see the module docstring)."""
    return np.minimum(0.95, p.neck_ratio_at_100 * (np.asarray(bursts, dtype=float) / 100.0) ** (1 / p.neck_exponent))


def particle_radius(bursts: np.ndarray, p: SyntheticSemSinter.Params, r0: float | np.ndarray | None = None,
                    ) -> np.ndarray:
    """Particle radius in pixels after ``bursts``: coarsening towards r0 (1 + g)."""
    r0 = p.particle_radius if r0 is None else r0
    return r0 * (1 + p.grain_growth * (1 - np.exp(-np.asarray(bursts, dtype=float) / p.coarsening_bursts)))


def porosity(bursts: np.ndarray, p: SyntheticSemSinter.Params) -> np.ndarray:
    """Porosity after ``bursts`` from the two-sphere shrinkage model: 1 - rho0 / (1 - (x/r)^2)^(3/2)."""
    x = neck_ratio(bursts, p)
    return 1.0 - np.minimum(0.98, p.green_density / (1.0 - x**2) ** 1.5)


def _kernel(size: int, radius: float, k: float) -> np.ndarray:
    """exp(h / k) of a spherical cap of ``radius`` (h = sqrt(r^2 - d^2), continued by a slope of -2 outside, cut
    where h < -8 k), centred at pixel (0, 0) of a periodic size x size grid."""
    reach = int(math.ceil(radius + 4.0 * k)) + 1
    offsets = np.arange(-reach, reach + 1)
    d = np.hypot(offsets[:, None], offsets[None, :]).astype(float)
    h = np.where(d <= radius, np.sqrt(np.clip(radius**2 - d**2, 0.0, None)), -2.0 * (d - radius))
    small = np.where(h > -8.0 * k, np.exp(h / k), 0.0)
    out = np.zeros((size, size))
    idx = offsets % size
    np.add.at(out, (idx[:, None], idx[None, :]), small)  # add.at: the window may wrap onto itself
    return out


def render_surface(centres: np.ndarray, radii: np.ndarray, depths: np.ndarray, size: int, k: float) -> np.ndarray:
    """Height map (size, size) of the smooth union of spherical caps: k log sum_i exp((h_i + z_i) / k), computed
    as periodic FFT convolutions, one per radius class; -inf where no particle reaches."""
    bins = np.quantile(radii, np.linspace(0, 1, RADIUS_CLASSES + 1)) if len(radii) else np.zeros(2)
    which = np.clip(np.searchsorted(bins, radii, side="right") - 1, 0, len(bins) - 2)
    total = np.zeros((size, size // 2 + 1), dtype=complex)
    x, y = centres[:, 0] - 0.5, centres[:, 1] - 0.5
    x0, y0 = np.floor(x).astype(np.int64), np.floor(y).astype(np.int64)
    tx, ty = x - x0, y - y0
    weight = np.exp(depths / k)
    for b in np.unique(which):
        sel = which == b
        grid = np.zeros(size * size)
        for dx, dy, w in ((0, 0, (1 - tx) * (1 - ty)), (1, 0, tx * (1 - ty)), (0, 1, (1 - tx) * ty), (1, 1, tx * ty)):
            flat = ((y0[sel] + dy) % size) * size + (x0[sel] + dx) % size
            grid += np.bincount(flat, weights=(w * weight)[sel], minlength=size * size)
        radius = float(radii[sel].mean())
        total += np.fft.rfft2(grid.reshape(size, size)) * np.fft.rfft2(_kernel(size, radius, k))
    field = np.fft.irfft2(total, s=(size, size))
    with np.errstate(divide="ignore"):
        return k * np.log(np.where(field > 1e-12 * max(field.max(), 1e-300), field, 0.0))


def generate_sem(p: SyntheticSemSinter.Params, seed: int) -> Any:
    """The ``synthetic-sem-sinter`` dataset for params ``p`` and ``seed`` (see the module docstring)."""
    import xarray as xr
    from scipy.ndimage import gaussian_filter, gaussian_filter1d

    sample_seq, image_seq = np.random.SeedSequence(int(seed)).spawn(2)
    sample_rng, rng = np.random.default_rng(sample_seq), np.random.default_rng(image_seq)
    size, n_classes = p.size, len(p.burst_counts)
    per_sample = min(p.images_per_sample, p.images_per_class)
    samples_per_class = -(-p.images_per_class // per_sample)
    n = n_classes * p.images_per_class
    images = np.empty((n, 1, size, size), dtype=np.float32)
    out = {k: np.empty(n) for k in ("porosity", "neck_ratio", "particle_radius_px", "pore_fraction")}
    bursts = np.empty(n, dtype=np.int64)
    sample_id = np.empty(n, dtype=np.int64)
    row = 0
    xs = np.arange(size) / size - 0.5
    for c, burst in enumerate(p.burst_counts):
        for s in range(samples_per_class):
            count = min(per_sample, p.images_per_class - s * per_sample)
            effective = burst * sample_rng.lognormal(0.0, p.sample_variation)
            x_r = float(neck_ratio(effective, p))
            radius = float(particle_radius(effective, p, p.particle_radius * sample_rng.lognormal(0.0, 0.05)))
            phi = float(porosity(effective, p))
            gain, offset = sample_rng.uniform(0.85, 1.15), sample_rng.uniform(-0.05, 0.05)
            k = radius * (0.06 + 0.3 * x_r**2)  # fillet scale; >= 0.06 r keeps the FFT's dynamic range enough
            mean_sq = radius**2 * math.exp(2 * 0.15**2)  # E[r^2] of r x LN(0, 0.15)
            for _ in range(count):
                count_particles = max(1, round(-math.log(phi) * size * size / (math.pi * mean_sq)))
                radii = radius * rng.lognormal(0.0, 0.15, count_particles)
                centres = rng.uniform(0, size, (count_particles, 2))
                depths = rng.uniform(-0.6, 0.0, count_particles) * radii
                height = np.maximum(render_surface(centres, radii, depths, size, k), -2.0 * radius)
                level = np.clip(np.quantile(height, phi), -0.5 * radius, 0.5 * radius)
                surface = np.maximum(height - level, -radius)
                pores = surface <= 0
                gy, gx = np.gradient(surface)
                secant = np.minimum(np.sqrt(1 + gx**2 + gy**2), 4.0)
                curvature = np.gradient(gx, axis=1) + np.gradient(gy, axis=0)  # > 0 in grooves, < 0 on crests
                solid = 1 / (1 + np.exp(-surface / (0.12 * radius)))
                signal = 0.12 + solid * (0.3 + 0.18 * (secant - 1) + 0.04 * surface / radius
                                         - 0.25 * np.clip(curvature, 0.0, 1.0) + 0.1 * np.clip(-curvature, 0.0, 1.0))
                ramp_dir = rng.uniform(0, 2 * math.pi)
                ramp = p.drift * rng.uniform(0.3, 1.0) * (math.cos(ramp_dir) * xs[None, :]
                                                          + math.sin(ramp_dir) * xs[:, None])
                lines = gaussian_filter1d(rng.normal(0.0, 1.0, size), 3.0) * p.drift * 0.4
                signal = gain * signal * (1 + ramp) + offset + lines[:, None]
                if p.blur > 0:
                    signal = gaussian_filter(signal, p.blur, mode="wrap")
                counts = rng.poisson(np.clip(signal, 0.0, 1.0) * p.dose)
                images[row, 0] = np.clip(counts / p.dose, 0.0, 1.0)
                out["pore_fraction"][row] = pores.mean()
                out["porosity"][row], out["neck_ratio"][row], out["particle_radius_px"][row] = phi, x_r, radius
                bursts[row], sample_id[row] = burst, c * samples_per_class + s
                row += 1
    classes = [f"b{b}" for b in p.burst_counts]
    labels = np.array([f"b{b}" for b in bursts])
    data = {
        "image": (("sample", "channel", "y", "x"), images, {"description": "SEM secondary-electron image"}),
        "label": ("sample", labels, {"classes": classes, "description": "burst count class"}),
        "label_index": ("sample", np.array([classes.index(c) for c in labels], dtype=np.int64),
                        {"description": "index of label in attrs['classes']"}),
        "burst_count": ("sample", bursts, {"units": "bursts", "description": "laser bursts (100 = 1 s exposure)"}),
        "sample_id": ("sample", sample_id, {"description": "sintered sample: its images share the structure"}),
        "porosity": ("sample", out["porosity"], {"description": "model porosity of the sample (two-sphere "
                                                                "shrinkage)"}),
        "neck_ratio": ("sample", out["neck_ratio"], {"description": "neck radius / particle radius"}),
        "particle_radius_px": ("sample", out["particle_radius_px"], {"units": "px"}),
        "pore_fraction": ("sample", out["pore_fraction"], {"description": "pore area fraction of the image"}),
    }
    ds = xr.Dataset(data, coords={"sample": np.arange(n)})
    ds.attrs.update(source="synthetic-sem-sinter", classes=classes)
    return ds

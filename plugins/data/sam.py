"""Data source ``synthetic-sam``: scanning-acoustic-microscopy (SAM) images of LED solder joints after thermal
shock cycling, labelled by a physical model of the lost thermal contact (the set-up of Röhrich et al.'s dataset:
nine LED types, five solder pastes, every LED imaged at 0, 100, 500, 1000 and 1500 cycles, Delta B_max from
transient thermal analysis, > 0.2 defective).

Geometry (field-of-view units 0..1, independent of the image size). Each LED type is a layout of 2 to 4 solder
pads (rectangles, rounded rectangles, stadiums, a circle, a chamfered polarity pad) under a package outline; each
pad has a thermal weight (1 for die-attach pads, less for electrode-only pads). Each LED gets a type and a paste
(balanced over the combinations) and, from its paste:

- voids, fixed for life: count ~ Poisson(v A_pads / E[pi r^2]), radius ~ lognormal (median 0.014, capped at
  0.06), centres uniform over the pads; v = the paste's void propensity x ``void_scale`` x LN(0, 0.5) scatter;
- cracks, growing with the cycles N: an edge-delamination front T(x) = N_i + depth(x) / (s k(x) e^(0.5 g1 +
  0.3 g2)) (depth: distance to the pad edge; k: distance to the package centre, the DNP that sets the thermal
  mismatch shear strain; g1, g2: smooth random fields), and thin cracks that start at pad edges (more at large
  DNP) and at voids and run as persistent random walks at twice the front speed, widening with age. A point is
  cracked at cycle N when T(x) <= N: one LED's images share the same voids and its cracks only grow. The crack
  speed s = 1.2e-5 / cycle x the paste's crack propensity x ``crack_scale`` x the LED type's factor x LN(0, 0.3)
  (clipped to [0.6, 1.6]), initiation N_i = 150 LN(0, 0.4) / sqrt(propensity) cycles.

Labels (computed on the generator's own high-resolution masks, never from the rendered picture):

- ``void_fraction``, ``crack_fraction``: voided and cracked (not voided) shares of the solder pad area;
- ``contact_loss`` L: the thermally weighted share of the pad area that no longer conducts (voids or cracks);
- ``delta_bmax`` = phi L / (1 - L) + N(0, ``label_noise``): heat crosses the solder layer through the remaining
  contact, so the layer's resistance grows as R_s / (1 - L), a relative rise of L / (1 - L); the total
  junction-to-board resistance (what TTA measures) rises by phi times that, phi = R_s / R_total =
  ``thermal_share`` (0.5). Lateral heat spreading around small voids is neglected (conservative).
  With the defaults, about 20-35 % of the images at 1000 and 1500 cycles are above 0.2;
- ``defective`` = ``delta_bmax`` > 0.2.

Rendering: the masks are drawn at 2-16 x the output size (at least 256 px across), area-averaged to the output
size (dark pads, bright gaps, brighter voids and cracks, a textured pad level), then each image gets its own
small shift and rotation, Gaussian blur, contrast and brightness, multiplicative speckle and additive noise.
Same ``ctx.seed``, same images. The geometry and labels do not depend on the noise params, nor on ``size`` beyond
rasterization (they are identical for the sizes that divide 256, which all render their masks at 256 px).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import reflow
from pydantic import Field, field_validator, model_validator
from reflow.plotting import pyplot, save_figure

THRESHOLD = 0.2
"""Delta B_max above which an LED counts as defective (the dataset's 20 % criterion)."""


@dataclass(frozen=True)
class Pad:
    """A solder pad in field-of-view units (y down): a rectangle with rounded corners (``radius``; half the
    smaller side gives a stadium or a circle), optionally with its top-left corner cut off (``chamfer``)."""

    cx: float
    cy: float
    w: float
    h: float
    radius: float = 0.0
    chamfer: float = 0.0
    thermal: float = 1.0

    def contains(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Which points (x, y) lie on the pad (a signed-distance test of the rounded rectangle)."""
        qx = np.abs(x - self.cx) - (self.w / 2 - self.radius)
        qy = np.abs(y - self.cy) - (self.h / 2 - self.radius)
        dist = np.hypot(np.maximum(qx, 0.0), np.maximum(qy, 0.0)) + np.minimum(np.maximum(qx, qy), 0.0)
        inside = dist <= self.radius
        if self.chamfer > 0:
            inside &= (x - (self.cx - self.w / 2)) + (y - (self.cy - self.h / 2)) >= self.chamfer
        return inside


@dataclass(frozen=True)
class LedType:
    """An LED package: its pads, what they look like, and how fast its joints crack (CTE mismatch, stand-off)."""

    name: str
    description: str
    pads: tuple[Pad, ...]
    crack_rate: float = 1.0

    @property
    def package(self) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1) of the package outline: the pads' bounding box plus a margin."""
        m = 0.07
        x0 = min(p.cx - p.w / 2 for p in self.pads) - m
        x1 = max(p.cx + p.w / 2 for p in self.pads) + m
        y0 = min(p.cy - p.h / 2 for p in self.pads) - m
        y1 = max(p.cy + p.h / 2 for p in self.pads) + m
        return max(x0, 0.02), max(y0, 0.02), min(x1, 0.98), min(y1, 0.98)

    def pad_index(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Index of the pad each point lies on, -1 for none."""
        index = np.full(np.shape(x), -1, dtype=np.int8)
        for i, pad in enumerate(self.pads):
            index[pad.contains(x, y)] = i
        return index


LED_TYPES: dict[str, LedType] = {t.name: t for t in (
    LedType("T1", "two equal rectangular pads (anode, cathode)",
            (Pad(0.33, 0.5, 0.26, 0.5), Pad(0.67, 0.5, 0.26, 0.5)), 1.0),
    LedType("T2", "large die-attach pad and a small electrode",
            (Pad(0.42, 0.5, 0.44, 0.56), Pad(0.78, 0.5, 0.12, 0.4, thermal=0.3)), 1.1),
    LedType("T3", "central thermal pad between two electrode strips",
            (Pad(0.5, 0.5, 0.3, 0.56), Pad(0.22, 0.5, 0.12, 0.56, thermal=0.3),
             Pad(0.78, 0.5, 0.12, 0.56, thermal=0.3)), 0.9),
    LedType("T4", "wide thermal pad below two small electrodes",
            (Pad(0.5, 0.62, 0.6, 0.32), Pad(0.32, 0.28, 0.24, 0.16, thermal=0.3),
             Pad(0.68, 0.28, 0.24, 0.16, thermal=0.3)), 1.2),
    LedType("T5", "four rounded square pads (multi-chip)",
            tuple(Pad(cx, cy, 0.26, 0.26, radius=0.03) for cy in (0.34, 0.66) for cx in (0.34, 0.66)), 0.8),
    LedType("T6", "circular thermal pad between two rectangles",
            (Pad(0.5, 0.5, 0.36, 0.36, radius=0.18), Pad(0.18, 0.5, 0.1, 0.44, thermal=0.3),
             Pad(0.82, 0.5, 0.1, 0.44, thermal=0.3)), 1.0),
    LedType("T7", "two large pads and two small corner pads",
            (Pad(0.35, 0.42, 0.24, 0.5), Pad(0.65, 0.42, 0.24, 0.5), Pad(0.3, 0.8, 0.12, 0.1, thermal=0.3),
             Pad(0.7, 0.8, 0.12, 0.1, thermal=0.3)), 1.15),
    LedType("T8", "chamfered (polarity) die pad and a rounded electrode",
            (Pad(0.36, 0.5, 0.3, 0.6, chamfer=0.08), Pad(0.68, 0.5, 0.22, 0.6, radius=0.04, thermal=0.6)), 0.95),
    LedType("T9", "three stadium-shaped strips",
            (Pad(0.3, 0.5, 0.14, 0.6, radius=0.07, thermal=0.5), Pad(0.5, 0.5, 0.14, 0.6, radius=0.07),
             Pad(0.7, 0.5, 0.14, 0.6, radius=0.07, thermal=0.5)), 0.85),
)}

PASTES: dict[str, tuple[float, float]] = {
    "A": (0.02, 0.8),
    "B": (0.035, 1.0),
    "C": (0.05, 1.25),
    "D": (0.03, 1.5),
    "E": (0.08, 0.9),
}
"""Solder pastes: (mean void fraction, crack propensity). Change them per study with ``void_propensity`` /
``crack_propensity`` or scale them all with ``void_scale`` / ``crack_scale``."""

# grey levels of the materials before per-image contrast; a SAM image of the solder layer shows bonded solder
# dark (the sound goes through) and every solder/air interface (gaps, voids, cracks) bright
LEVEL_OUTSIDE, LEVEL_GAP, LEVEL_PAD, LEVEL_VOID, LEVEL_CRACK = 0.42, 0.8, 0.22, 0.95, 0.88
CRACK_SPEED = 1.2e-5
CRACK_START = 150.0  # median cycles to crack initiation at propensity 1
STEP = 1.0 / 400.0  # random-walk step of the thin cracks (field-of-view units)
WIDEN_CYCLES = 200.0  # cycles a thin crack takes to open from its centre line to its full width
CHUNK_PIXELS = 16_000_000  # high-resolution pixels rendered at once (memory bound)


def delta_bmax_model(contact_loss: np.ndarray, thermal_share: float) -> np.ndarray:
    """Relative rise of the thermal resistance when a share ``contact_loss`` of the solder contact is lost:
    phi L / (1 - L) (see the module docstring)."""
    loss = np.clip(np.asarray(contact_loss, dtype=float), 0.0, 0.999)
    return thermal_share * loss / (1.0 - loss)


class SyntheticSam(reflow.DataSource):
    """SAM images of LED solder joints (``image``: sample, channel, y, x; float32 in [0, 1]) after thermal shock
    cycles, one sample per LED and cycle count, with ``led_id``, ``led_type``, ``paste``, ``cycles``,
    ``void_fraction``, ``crack_fraction``, ``contact_loss``, ``delta_bmax`` and ``defective`` (> 0.2).

    Split by ``led_id`` so that no LED is both trained and tested on. The generator and its label model are
    described in the module docstring and in docs/vision-data.md.
    """

    class Params(reflow.Params):
        leds: int = Field(60, ge=1, le=200_000, description="LEDs; each gives one image per entry of cycles")
        cycles: list[int] = Field([0, 100, 500, 1000, 1500], min_length=1,
                                  description="thermal shock cycles at which every LED is imaged")
        size: int = Field(64, ge=16, le=512, description="image height and width in pixels")
        led_types: list[str] | None = Field(None, description=f"LED types to use (default all: "
                                                              f"{', '.join(LED_TYPES)})")
        pastes: list[str] | None = Field(None, description=f"solder pastes to use (default all: {', '.join(PASTES)})")
        void_scale: float = Field(1.0, ge=0.0, le=10.0, description="multiplies every paste's void fraction")
        crack_scale: float = Field(1.0, ge=0.0, le=10.0, description="multiplies every paste's crack propensity")
        void_propensity: dict[str, float] = Field(default_factory=dict,
                                                  description="mean void fraction by paste, replacing the "
                                                              "built-in value, e.g. {C: 0.1}")
        crack_propensity: dict[str, float] = Field(default_factory=dict,
                                                   description="crack propensity by paste (1 = typical), "
                                                               "replacing the built-in value")
        thermal_share: float = Field(0.5, gt=0.0, le=1.0, description="share phi of the solder layer in the "
                                                                      "measured thermal resistance")
        label_noise: float = Field(0.02, ge=0.0, le=1.0, description="standard deviation of the Delta B_max "
                                                                     "measurement noise")
        speckle: float = Field(0.08, ge=0.0, le=1.0, description="multiplicative speckle (log-normal sigma)")
        noise: float = Field(0.02, ge=0.0, le=1.0, description="additive Gaussian noise (grey levels)")
        blur: float = Field(0.6, ge=0.0, le=5.0, description="Gaussian blur sigma in pixels (each image +-20 %)")
        contrast: float = Field(0.08, ge=0.0, le=0.5, description="per-image contrast jitter (sd of the gain; "
                                                                  "brightness jitter is half of it)")
        alignment_px: float = Field(1.5, ge=0.0, le=16.0, description="per-image shift, uniform in +-this, pixels")
        rotation_deg: float = Field(2.0, ge=0.0, le=45.0, description="per-image rotation, uniform in +-this")
        masks: bool = Field(False, description="also return pad_mask, void_mask and crack_mask (sample, y, x): "
                                               "the area fraction of each pixel, aligned with the image")

        @field_validator("cycles")
        @classmethod
        def _cycles(cls, value: list[int]) -> list[int]:
            if min(value) < 0:
                raise ValueError(f"cycles must be >= 0, got {value}")
            if len(set(value)) != len(value):
                raise ValueError(f"cycles must not repeat, got {value}")
            return value

        @field_validator("led_types")
        @classmethod
        def _types(cls, value: list[str] | None) -> list[str] | None:
            return _known(value, LED_TYPES, "LED type")

        @field_validator("pastes")
        @classmethod
        def _pastes(cls, value: list[str] | None) -> list[str] | None:
            return _known(value, PASTES, "paste")

        @field_validator("void_propensity", "crack_propensity")
        @classmethod
        def _propensities(cls, value: dict[str, float], info: Any) -> dict[str, float]:
            if value:
                _known(list(value), PASTES, "paste")
            high = 0.5 if info.field_name == "void_propensity" else 20.0
            bad = {k: v for k, v in value.items() if not 0.0 <= v <= high}
            if bad:
                raise ValueError(f"{info.field_name} must lie in [0, {high}], got {bad}")
            return value

        @model_validator(mode="after")
        def _used_pastes(self) -> SyntheticSam.Params:
            if self.pastes is not None:
                unused = [k for k in (*self.void_propensity, *self.crack_propensity) if k not in self.pastes]
                if unused:
                    raise ValueError(f"propensities given for paste(s) {unused} that are not in pastes {self.pastes}")
            return self

    def load(self, ctx: Any) -> Any:
        return generate_sam(self.params, ctx.seed)

    def plot(self, data: Any, folder: Path) -> list[Path]:
        """Figure for the ``data`` task: example images of a few LEDs at every cycle count with Delta B_max."""
        return [sample_grid(data, Path(folder) / "sam_examples.png")]


def _known(value: list[str] | None, allowed: dict, what: str) -> list[str] | None:
    if value is None:
        return None
    unknown = [v for v in value if v not in allowed]
    if unknown:
        raise ValueError(f"unknown {what}(s) {unknown}; allowed: {', '.join(allowed)}")
    if not value:
        raise ValueError(f"give at least one {what} (allowed: {', '.join(allowed)})")
    if len(set(value)) != len(value):
        raise ValueError(f"{what}s must not repeat, got {value}")
    return value


# ---- geometry: everything random about the LEDs, in field-of-view units -------------------------------------


@dataclass
class _Geometry:
    types: list[LedType]
    pastes: list[str]
    led_type: np.ndarray  # (n,) index into types
    paste: np.ndarray  # (n,) index into pastes
    start: np.ndarray  # (n,) cycles to crack initiation
    speed: np.ndarray  # (n,) crack front speed, field-of-view units per cycle (0: never cracks)
    front_coarse: np.ndarray  # (n, 8, 8) random coefficients of the smooth front field
    front_fine: np.ndarray  # (n, 20, 20) ... and of its finer part
    texture: np.ndarray  # (n, 6, 6) ... of the pad's grey-level texture
    voids: np.ndarray  # (m, 4): led, x, y, radius
    cracks: np.ndarray  # (k, 5): led, x, y, cycle the point cracks, half width of the crack


@lru_cache(maxsize=16)
def _reference_maps(type_name: str, resolution: int) -> dict[str, np.ndarray]:
    """Per-type maps on a ``resolution``-pixel grid: pad index, package, depth below the pad edge, DNP factor,
    thermal weight. Cached: every LED of a type shares them."""
    from scipy.ndimage import distance_transform_edt

    led = LED_TYPES[type_name]
    centres = (np.arange(resolution) + 0.5) / resolution
    y, x = np.meshgrid(centres, centres, indexing="ij")
    pad = led.pad_index(x, y)
    on_pad = pad >= 0
    x0, y0, x1, y1 = led.package
    package = (x >= x0) & (x <= x1) & (y >= y0) & (y <= y1)
    depth = (distance_transform_edt(on_pad) - 0.5).clip(0.0) / resolution
    dnp = np.hypot(x - 0.5, y - 0.5) / 0.35
    thermal = np.zeros((resolution, resolution), dtype=np.float32)
    for i, p in enumerate(led.pads):
        thermal[pad == i] = p.thermal
    return {"pad": pad, "package": package, "depth": depth.astype(np.float32),
            "speed_factor": (0.3 + dnp).astype(np.float32), "thermal": thermal}


@lru_cache(maxsize=2)
def _stacked_maps(type_names: tuple[str, ...], resolution: int) -> dict[str, np.ndarray]:
    """:func:`_reference_maps` of several types stacked on a first axis, for gathering per LED."""
    maps = [_reference_maps.__wrapped__(name, resolution) for name in type_names]  # not cached twice
    return {key: np.stack([m[key] for m in maps]) for key in maps[0]}


@lru_cache(maxsize=16)
def _edge_points(type_name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Points on the pad edges (x, y), the inward direction there, and the DNP-squared weight of each."""
    from scipy.ndimage import binary_erosion

    led = LED_TYPES[type_name]
    maps = _reference_maps(type_name, 400)
    on_pad = maps["pad"] >= 0
    edge = on_pad & ~binary_erosion(on_pad)
    iy, ix = np.nonzero(edge)
    x, y = (ix + 0.5) / 400, (iy + 0.5) / 400
    pads = maps["pad"][iy, ix]
    cx = np.array([led.pads[i].cx for i in pads])
    cy = np.array([led.pads[i].cy for i in pads])
    inward = np.arctan2(cy - y, cx - x)
    weight = np.hypot(x - 0.5, y - 0.5) ** 2
    return np.column_stack([x, y]), inward, weight / weight.sum()


def _walks(led: np.ndarray, start: np.ndarray, heading: np.ndarray, t0: np.ndarray, speed: np.ndarray,
           half_width: np.ndarray, geometry_types: list[LedType], led_type: np.ndarray, last_cycle: float,
           rng: np.random.Generator) -> np.ndarray:
    """Thin cracks as persistent random walks from ``start``: rows (led, x, y, cycle cracked, half width) of the
    points reached by ``last_cycle`` before the walk leaves its pad."""
    k = len(led)
    if k == 0:
        return np.zeros((0, 5))
    length = speed * np.maximum(last_cycle - t0, 0.0)
    steps = int(min(math.ceil(length.max() / STEP) + 1, 600))
    turn = rng.normal(0.0, 0.06, (k, steps))
    turn[:, 0] = 0.0
    theta = heading[:, None] + np.cumsum(turn, axis=1)
    dx, dy = STEP * np.cos(theta), STEP * np.sin(theta)
    dx[:, 0] = dy[:, 0] = 0.0
    x = start[:, 0:1] + np.cumsum(dx, axis=1)
    y = start[:, 1:2] + np.cumsum(dy, axis=1)
    t = t0[:, None] + np.arange(steps) * STEP / np.maximum(speed[:, None], 1e-12)
    on_pad = np.zeros((k, steps), dtype=bool)
    for ti, led_t in enumerate(geometry_types):
        rows = np.flatnonzero(led_type[led] == ti)
        if rows.size:
            pad = led_t.pad_index(x[rows], y[rows])
            on_pad[rows] = (pad == pad[:, :1]) & (pad[:, :1] >= 0)
    alive = np.cumprod(on_pad, axis=1).astype(bool) & (t <= last_cycle)
    r, c = np.nonzero(alive)
    return np.column_stack([led[r], x[r, c], y[r, c], t[r, c], half_width[r]])


def _simulate(p: SyntheticSam.Params, rng: np.random.Generator) -> _Geometry:
    """Draw types, pastes, voids and cracks for ``p.leds`` LEDs."""
    types = [LED_TYPES[name] for name in (p.led_types or LED_TYPES)]
    pastes = list(p.pastes or PASTES)
    n = p.leds
    combos = np.array([(t, q) for t in range(len(types)) for q in range(len(pastes))])
    pick = rng.permutation(np.resize(rng.permutation(len(combos)), n))  # balanced over type x paste
    led_type, paste = combos[pick, 0], combos[pick, 1]

    void_mean = np.array([p.void_propensity.get(q, PASTES[q][0]) for q in pastes])[paste] * p.void_scale
    scatter = np.clip(rng.lognormal(0.0, 0.3, n), 0.6, 1.6)  # LED to LED; clipped: no runaway joints
    propensity = (np.array([p.crack_propensity.get(q, PASTES[q][1]) for q in pastes])[paste] * p.crack_scale
                  * np.array([t.crack_rate for t in types])[led_type] * scatter)
    start = CRACK_START * rng.lognormal(0.0, 0.4, n) / np.sqrt(np.maximum(propensity, 1e-9))
    speed = CRACK_SPEED * propensity
    front_coarse = rng.normal(size=(n, 8, 8))
    front_fine = rng.normal(size=(n, 20, 20))
    texture = rng.normal(size=(n, 6, 6))

    # voids: fixed for the LED's life, uniform over its pads
    void_fraction = np.minimum(void_mean * rng.lognormal(0.0, 0.5, n), 0.45)
    mu, sigma = math.log(0.014), 0.45
    mean_area = math.pi * math.exp(2 * mu + 2 * sigma**2)
    pad_area = np.array([(_reference_maps(t.name, 400)["pad"] >= 0).mean() for t in types])
    counts = rng.poisson(void_fraction * pad_area[led_type] / mean_area)
    void_led = np.repeat(np.arange(n), counts)
    radius = np.minimum(rng.lognormal(mu, sigma, void_led.size), 0.06)
    centre = np.zeros((void_led.size, 2))
    for ti, led_t in enumerate(types):
        rows = np.flatnonzero(led_type[void_led] == ti)
        x0, y0, x1, y1 = led_t.package
        todo = rows
        while todo.size:
            cand = rng.uniform((x0, y0), (x1, y1), (todo.size * 3, 2))
            cand = cand[led_t.pad_index(cand[:, 0], cand[:, 1]) >= 0][:todo.size]
            centre[todo[:len(cand)]] = cand
            todo = todo[len(cand):]
    voids = np.column_stack([void_led, centre, radius])

    # thin cracks from the pad edges (more where the DNP is large) ...
    last = float(max(p.cycles))
    n_edge = rng.poisson(1.5 * propensity)
    edge_led = np.repeat(np.arange(n), n_edge)
    edge_start = np.zeros((edge_led.size, 2))
    edge_heading = np.zeros(edge_led.size)
    for ti, led_t in enumerate(types):
        rows = np.flatnonzero(led_type[edge_led] == ti)
        points, inward, weight = _edge_points(led_t.name)
        chosen = rng.choice(len(points), rows.size, p=weight)
        edge_heading[rows] = inward[chosen] + rng.normal(0.0, 0.5, rows.size)
        edge_start[rows] = points[chosen] + 2 * STEP * np.column_stack([np.cos(inward[chosen]),
                                                                         np.sin(inward[chosen])])
    # ... and from voids, radially outwards
    from_void = rng.uniform(size=void_led.size) < np.minimum(0.3 * propensity[void_led], 0.9)
    vl, vc, vr = void_led[from_void], centre[from_void], radius[from_void]
    angle = rng.uniform(0.0, 2 * math.pi, vl.size)
    void_start = vc + (vr + STEP)[:, None] * np.column_stack([np.cos(angle), np.sin(angle)])
    crack_led = np.concatenate([edge_led, vl])
    crack_start = np.concatenate([edge_start, void_start])
    heading = np.concatenate([edge_heading, angle + rng.normal(0.0, 0.3, vl.size)])
    t0 = start[crack_led] * rng.uniform(0.6, 1.4, crack_led.size)
    crack_speed = 2.0 * speed[crack_led] * rng.uniform(0.7, 1.3, crack_led.size)
    half_width = rng.uniform(0.006, 0.011, crack_led.size)
    cracks = _walks(crack_led, crack_start, heading, t0, crack_speed, half_width, types, led_type, last, rng)
    return _Geometry(types, pastes, led_type, paste, start, speed, front_coarse, front_fine, texture, voids, cracks)


# ---- rendering --------------------------------------------------------------------------------------------


def _basis(n_out: int, n_coef: int) -> np.ndarray:
    """Smooth interpolation matrix (n_out x n_coef): Gaussian bumps on a regular grid over the field of view."""
    out = (np.arange(n_out) + 0.5) / n_out
    centres = (np.arange(n_coef) + 0.5) / n_coef
    b = np.exp(-0.5 * ((out[:, None] - centres[None, :]) * n_coef / 0.8) ** 2)
    return (b / b.sum(axis=1, keepdims=True)).astype(np.float32)


def _smooth_field(coef: np.ndarray, n_out: int) -> np.ndarray:
    """A smooth random field (leds, n_out, n_out) from coefficients (leds, c, c), normalised to unit sd."""
    b = _basis(n_out, coef.shape[-1])
    n, c, _ = coef.shape
    half = (coef.astype(np.float32).reshape(n * c, c) @ b.T).reshape(n, c, n_out)  # two plain GEMMs: fast
    field = (b @ half.transpose(1, 0, 2).reshape(c, n * n_out)).reshape(n_out, n, n_out).transpose(1, 0, 2)
    field = np.ascontiguousarray(field)
    field -= field.mean(axis=(1, 2), keepdims=True)
    field /= field.std(axis=(1, 2), keepdims=True) + 1e-6
    return field


def _stamp_voids(voids: np.ndarray, n_leds: int, hr: int) -> np.ndarray:
    """Boolean void masks (leds, hr, hr) from rows (led, x, y, radius)."""
    mask = np.zeros(n_leds * hr * hr, dtype=bool)
    if len(voids):
        reach = int(math.ceil(voids[:, 3].max() * hr)) + 1
        off = np.arange(-reach, reach + 1)
        oy, ox = [a.ravel() for a in np.meshgrid(off, off, indexing="ij")]
        px, py = voids[:, 1] * hr, voids[:, 2] * hr
        ix = np.floor(px)[:, None].astype(np.int64) + ox
        iy = np.floor(py)[:, None].astype(np.int64) + oy
        inside = ((ix + 0.5 - px[:, None]) ** 2 + (iy + 0.5 - py[:, None]) ** 2 <= (voids[:, 3:4] * hr) ** 2)
        inside &= (ix >= 0) & (ix < hr) & (iy >= 0) & (iy < hr)
        led = np.broadcast_to(voids[:, :1].astype(np.int64), ix.shape)
        mask[((led * hr + iy) * hr + ix)[inside]] = True
    return mask.reshape(n_leds, hr, hr)


def _stamp_cracks(arrival: np.ndarray, cracks: np.ndarray, hr: int) -> None:
    """Lower the arrival-cycle field (leds, hr, hr) along the thin cracks: rows (led, x, y, cycle, half width);
    a pixel at distance d from the centre line cracks WIDEN_CYCLES (d / half width)^2 after the centre."""
    if not len(cracks):
        return
    reach = int(math.ceil(cracks[:, 4].max() * hr)) + 1
    off = np.arange(-reach, reach + 1)
    oy, ox = [a.ravel() for a in np.meshgrid(off, off, indexing="ij")]
    px, py = cracks[:, 1] * hr, cracks[:, 2] * hr
    ix = np.floor(px)[:, None].astype(np.int64) + ox
    iy = np.floor(py)[:, None].astype(np.int64) + oy
    dist = np.hypot(ix + 0.5 - px[:, None], iy + 0.5 - py[:, None]) / (cracks[:, 4:5] * hr)
    keep = (dist <= 1.0) & (ix >= 0) & (ix < hr) & (iy >= 0) & (iy < hr)
    led = np.broadcast_to(cracks[:, :1].astype(np.int64), ix.shape)
    cycle = cracks[:, 3:4] + WIDEN_CYCLES * dist**2
    flat = ((led * hr + iy) * hr + ix)[keep]
    np.minimum.at(arrival.reshape(-1), flat, cycle[keep].astype(arrival.dtype))


def _block_mean(a: np.ndarray, factor: int) -> np.ndarray:
    """Area-average the last two axes by ``factor`` (anti-aliased downsampling of masks)."""
    *lead, h, w = a.shape
    return a.reshape(*lead, h // factor, factor, w // factor, factor).sum(axis=(-3, -1), dtype=np.float32) / (
        factor * factor)


def _render_chunk(g: _Geometry, leds: np.ndarray, cycles: np.ndarray, size: int, factor: int,
                  share: float) -> dict[str, np.ndarray]:
    """High-resolution masks of ``leds`` at every cycle count -> label fractions and low-resolution maps."""
    hr = size * factor
    maps = _stacked_maps(tuple(t.name for t in g.types), hr)
    types = g.led_type[leds]
    n = len(leds)
    pad = maps["pad"][types] >= 0
    thermal = maps["thermal"][types]
    depth = maps["depth"][types]
    factor_map = maps["speed_factor"][types]

    # crack arrival cycle of every pixel: the edge front, then the thin cracks
    rough = np.exp(0.5 * _smooth_field(g.front_coarse[leds], hr) + 0.3 * _smooth_field(g.front_fine[leds], hr))
    speed = g.speed[leds, None, None].astype(np.float32) * factor_map * rough
    with np.errstate(divide="ignore", invalid="ignore"):
        arrival = g.start[leds, None, None].astype(np.float32) + np.where(speed > 0, depth / speed, np.inf)
    local = {int(led): i for i, led in enumerate(leds)}
    rows = np.isin(g.cracks[:, 0].astype(np.int64), leds)
    cracks = g.cracks[rows].copy()
    cracks[:, 0] = [local[int(v)] for v in cracks[:, 0]]
    _stamp_cracks(arrival, cracks, hr)
    arrival[~pad] = np.inf

    rows = np.isin(g.voids[:, 0].astype(np.int64), leds)
    voids = g.voids[rows].copy()
    voids[:, 0] = [local[int(v)] for v in voids[:, 0]]
    void = _stamp_voids(voids, n, hr) & pad

    cracked = (arrival[:, None] <= cycles[None, :, None, None]) & ~void[:, None]  # (leds, cycles, hr, hr)
    pad_area = pad.sum(axis=(1, 2), dtype=np.float64)
    weight = (thermal * pad).sum(axis=(1, 2), dtype=np.float64)
    lost = (cracked | void[:, None]).reshape(n, len(cycles), hr * hr).astype(np.float32)
    loss = np.matmul(lost, thermal.reshape(n, hr * hr, 1))[..., 0].astype(np.float64) / weight[:, None]
    return {
        "void_fraction": np.repeat((void.sum(axis=(1, 2)) / pad_area)[:, None], len(cycles), axis=1),
        "crack_fraction": cracked.sum(axis=(2, 3)) / pad_area[:, None],
        "contact_loss": loss,
        "pad": _block_mean(maps["pad"] >= 0, factor)[types],
        "void": _block_mean(void, factor),
        "crack": _block_mean(cracked, factor),
        "package": _block_mean(maps["package"], factor)[types],
    }


def _image_transforms(n: int, p: SyntheticSam.Params, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Per-image imaging conditions: alignment, blur, contrast, brightness."""
    return {"shift": rng.uniform(-p.alignment_px, p.alignment_px, (n, 2)),
            "angle": np.deg2rad(rng.uniform(-p.rotation_deg, p.rotation_deg, n)),
            "blur": p.blur * rng.uniform(0.8, 1.2, n),
            "gain": np.clip(1.0 + p.contrast * rng.normal(size=n), 0.5, 1.5),
            "offset": 0.5 * p.contrast * rng.normal(size=n)}


def _align(stack: np.ndarray, shift: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """Rotate each image of (n, s, s) about its centre and shift it by (x, y) pixels (bilinear, edges extended)."""
    from scipy.ndimage import affine_transform

    centre = np.full(2, (stack.shape[-1] - 1) / 2.0)
    out = np.empty(stack.shape, dtype=np.float32)
    for i in range(len(stack)):
        cos, sin = math.cos(angle[i]), math.sin(angle[i])
        rotation = np.array([[cos, -sin], [sin, cos]])  # output (y, x) -> input (y, x)
        offset = centre - rotation @ centre - shift[i, ::-1]
        out[i] = affine_transform(stack[i], rotation, offset=offset, order=1, mode="nearest")
    return out


def generate_sam(p: SyntheticSam.Params, seed: int) -> Any:
    """The ``synthetic-sam`` dataset for params ``p`` and ``seed`` (see the module docstring)."""
    import xarray as xr
    from scipy.ndimage import gaussian_filter

    geometry_seq, label_seq, imaging_seq, noise_seq = np.random.SeedSequence(int(seed)).spawn(4)
    g = _simulate(p, np.random.default_rng(geometry_seq))
    cycles = np.asarray(p.cycles, dtype=np.float32)
    n_leds, n_cyc, size = p.leds, len(p.cycles), p.size
    factor = max(2, math.ceil(256 / size))  # masks at >= 256 px: label fractions resolve small voids
    chunk = max(1, CHUNK_PIXELS // ((size * factor) ** 2 * (n_cyc + 4)))
    n = n_leds * n_cyc
    tf = _image_transforms(n, p, np.random.default_rng(imaging_seq))
    noise_rng = np.random.default_rng(noise_seq)
    texture = 1.0 + 0.25 * _smooth_field(g.texture, size)  # pad grey-level texture, per LED

    images = np.empty((n, 1, size, size), dtype=np.float32)
    labels = {k: np.empty((n_leds, n_cyc)) for k in ("void_fraction", "crack_fraction", "contact_loss")}
    masks = {k: np.empty((n, size, size), dtype=np.float32) for k in ("pad", "void", "crack")} if p.masks else {}
    for lo in range(0, n_leds, chunk):
        leds = np.arange(lo, min(lo + chunk, n_leds))
        r = _render_chunk(g, leds, cycles, size, factor, p.thermal_share)
        for k in labels:
            labels[k][leds] = r[k]
        pad, void, crack = r["pad"][:, None], r["void"][:, None], r["crack"]
        gap = r["package"][:, None] - pad
        intact = np.clip(pad - void - crack, 0.0, None)
        clean = ((1.0 - r["package"][:, None]) * LEVEL_OUTSIDE + gap * LEVEL_GAP
                 + intact * LEVEL_PAD * texture[leds][:, None] + void * LEVEL_VOID + crack * LEVEL_CRACK)
        rows = slice(lo * n_cyc, (lo + len(leds)) * n_cyc)
        shift, angle = tf["shift"][rows], tf["angle"][rows]
        img = _align(clean.reshape(-1, size, size), shift, angle)
        for i in range(len(img)):
            if tf["blur"][rows][i] > 0:
                img[i] = gaussian_filter(img[i], tf["blur"][rows][i], mode="nearest")
        img = 0.5 + tf["gain"][rows, None, None] * (img - 0.5) + tf["offset"][rows, None, None]
        if p.speckle > 0:
            img *= np.exp(p.speckle * noise_rng.standard_normal(img.shape, dtype=np.float32) - p.speckle**2 / 2)
        if p.noise > 0:
            img += p.noise * noise_rng.standard_normal(img.shape, dtype=np.float32)
        images[rows, 0] = np.clip(img, 0.0, 1.0)
        if p.masks:
            full = {"pad": np.broadcast_to(pad, crack.shape), "void": np.broadcast_to(void, crack.shape),
                    "crack": crack}
            for k in masks:
                masks[k][rows] = np.clip(_align(np.ascontiguousarray(full[k]).reshape(-1, size, size), shift,
                                                angle), 0.0, 1.0)

    loss = labels["contact_loss"].reshape(-1)
    delta = delta_bmax_model(loss, p.thermal_share)
    delta = delta + p.label_noise * np.random.default_rng(label_seq).standard_normal(n)
    sample = np.arange(n)
    dims = ("sample",)
    data = {
        "image": (("sample", "channel", "y", "x"), images, {"description": "SAM grey level of the solder layer"}),
        "led_id": (dims, np.repeat(np.arange(n_leds), n_cyc), {"description": "LED: its images share voids"}),
        "led_type": (dims, np.array([t.name for t in g.types])[np.repeat(g.led_type, n_cyc)],
                     {"description": "pad layout"}),
        "paste": (dims, np.array(g.pastes)[np.repeat(g.paste, n_cyc)], {"description": "solder paste"}),
        "cycles": (dims, np.tile(np.asarray(p.cycles, dtype=np.int64), n_leds),
                   {"units": "cycles", "description": "thermal shock cycles before imaging"}),
        "void_fraction": (dims, labels["void_fraction"].reshape(-1), {"units": "1", "description":
                          "voided share of the solder pad area"}),
        "crack_fraction": (dims, labels["crack_fraction"].reshape(-1), {"units": "1", "description":
                           "cracked (not voided) share of the solder pad area"}),
        "contact_loss": (dims, loss, {"units": "1", "description": "thermally weighted share of the pad area "
                                                                  "that no longer conducts (voids, cracks)"}),
        "delta_bmax": (dims, delta, {"units": "1", "description": f"relative thermal-resistance rise "
                                                                  f"{p.thermal_share} L/(1-L) + noise"}),
        "defective": (dims, delta > THRESHOLD, {"description": f"delta_bmax > {THRESHOLD}"}),
    }
    for k, v in masks.items():
        data[f"{k}_mask"] = (("sample", "y", "x"), v, {"units": "1", "description": f"{k} area fraction per pixel"})
    ds = xr.Dataset(data, coords={"sample": sample})
    ds.attrs.update(source="synthetic-sam", threshold=THRESHOLD, thermal_share=p.thermal_share,
                    label_model="delta_bmax = thermal_share * L / (1 - L) + N(0, label_noise), "
                                "L = contact_loss", label_noise=p.label_noise)
    return ds


# ---- figure -------------------------------------------------------------------------------------------------


def sample_grid(ds: Any, path: Path, leds: int = 6) -> Path:
    """Example images: one column per LED (different types, the worst ones first), one row per cycle count,
    each titled with its Delta B_max (red when defective). Works on any dataset with ``image``, ``led_id``,
    ``cycles`` and ``delta_bmax``."""
    plt = pyplot()
    led_id = np.asarray(ds["led_id"].values)
    delta = np.asarray(ds["delta_bmax"].values, dtype=float)
    kinds = np.asarray(ds["led_type"].values) if "led_type" in ds else led_id
    worst = {}
    for i in np.argsort(-delta):  # each LED type's worst LED, worst types first
        worst.setdefault(kinds[i], led_id[i])
    chosen = list(worst.values())[:leds]
    cycles = sorted(np.unique(ds["cycles"].values).tolist())
    fig, axes = plt.subplots(len(cycles), len(chosen), figsize=(1.6 * len(chosen) + 0.6, 1.7 * len(cycles)),
                             squeeze=False)
    for col, led in enumerate(chosen):
        for row, cyc in enumerate(cycles):
            ax = axes[row, col]
            ax.set_xticks([])
            ax.set_yticks([])
            hit = np.flatnonzero((led_id == led) & (np.asarray(ds["cycles"].values) == cyc))
            if not hit.size:
                continue
            i = int(hit[0])
            ax.imshow(np.asarray(ds["image"][i].values)[0], cmap="gray", vmin=0.0, vmax=1.0)
            ax.set_title(f"dBmax {delta[i]:.2f}", fontsize=8, color="tab:red" if delta[i] > THRESHOLD else "black")
            if col == 0:
                ax.set_ylabel(f"{cyc} cycles", fontsize=8)
        label = f"LED {led}" + (f" ({kinds[np.flatnonzero(led_id == led)[0]]})" if "led_type" in ds else "")
        axes[0, col].annotate(label, (0.5, 1.35), xycoords="axes fraction", ha="center", fontsize=8)
    fig.suptitle("SAM images by thermal shock cycles (red: Delta B_max > 0.2)", fontsize=9)
    return save_figure(fig, path)

"""Data source ``synthetic-wlp``: top-view optical inspection images of wafer-level packages (WLP) with one
labelled, boxed defect per image, for defect classifiers and detectors (the set-up of seed 001, ADRCS: 256 x 256
grey-level images, classes chip crack, mold crack, die shift, ball (bump) defects, metal trace break,
through-silicon-via defects and more).

Scene (pixel units of the output image, size S). A die (a rectangle of half-sides 0.33-0.40 S, a seal ring just
inside its edge) sits in darker, grainy mold compound (fan-out WLP). On it, in the redistribution layer (RDL):
a regular array of solder bumps (pitch drawn from ``bump_pitch`` x S, radius 0.27-0.33 pitch, shaded domes with
a specular highlight and a dark rim), Manhattan RDL traces from peripheral pads at the left and right die edges
along the channels between bump rows to a bump, and a row of through-silicon vias (TSVs, copper discs in a dark
liner) along the top and bottom die margins. The layout (die size, pitch, traces, TSVs, grey levels) belongs to
the wafer: the ``dies_per_wafer`` images of one ``wafer_id`` share it and differ by pose, lighting and defect.

Defects (at most one per image; its class is drawn with probability proportional to ``class_weights``):

- ``chip-crack``: a dark persistent random-walk crack (0.15-0.35 S long) from a die edge into the silicon;
- ``mold-crack``: a dark crack from a die edge obliquely out into the mold compound (0.12-0.25 S);
- ``die-shift``: the die (edge, seal ring, TSVs) displaced by 0.02-0.045 S against the RDL (bumps, traces);
- ``missing-bump``: one bump absent, its bare under-bump metal pad visible;
- ``bridged-bump``: a solder bridge joining two neighbouring bumps;
- ``trace-break``: a 0.02-0.035 S gap in one RDL trace;
- ``tsv-void``: a dark void (0.35-0.6 of the TSV radius) in one TSV's copper fill;
- ``delamination``: a brighter irregular patch (radius 0.06-0.12 S) with a bright fringe on the die;
- ``particle``: a small dark or bright foreign particle (radius 0.012-0.03 S) with its shadow, anywhere;
- ``scratch``: a long thin bright or dark arc (0.3-0.6 S) across the die.

With ``merge_bump_defects`` the two bump classes are labelled ``bump-defect`` (seed 001's "ball defects");
``defect`` always keeps the fine kind.

Boxes: one per defect image on the side dim ``box`` (``box_sample``, ``box_x0``, ``box_y0``, ``box_x1``,
``box_y1`` in pixels, ``box_label``), the bounding box of the pixels the defect covers (rendered coverage above
0.05, in the image's own rotated pose), widened by 2 blur sigmas (at least 1 px), clipped to the image. Pixel
column c spans [c, c + 1), so a box is ``[x0, x1) x [y0, y1)``, as in COCO. Good images have no box.

Imaging: each image gets its own rotation (uniform in +-``rotation_deg``), shift (+-0.015 S), gain
(1 +- ``brightness``), offset, linear illumination ramp, Gaussian blur (``blur`` +-30 %) and Gaussian noise
(``noise`` +-30 %). Everything is rendered analytically (signed distances with a 1 px soft edge), so a box is
computed from the same geometry as the picture. The same ``ctx.seed`` gives the same images.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import reflow
from pydantic import Field, field_validator, model_validator
from reflow.plotting import pyplot, save_figure

from ._boxes import box_variables

CLASSES = ("good", "chip-crack", "mold-crack", "die-shift", "missing-bump", "bridged-bump", "trace-break",
           "tsv-void", "delamination", "particle", "scratch")
"""The defect kinds, in label-index order (``good``: no defect)."""
BUMP_KINDS = ("missing-bump", "bridged-bump")
MERGED_BUMP = "bump-defect"
MERGED_CLASSES = tuple(MERGED_BUMP if c == BUMP_KINDS[0] else c for c in CLASSES if c != BUMP_KINDS[1])
"""The classes with ``merge_bump_defects``: missing and bridged bumps are one ``bump-defect`` class."""
MASK_THRESHOLD = 0.05


class SyntheticWlp(reflow.DataSource):
    """Top-view WLP inspection images (``image``: sample, channel=1, y, x; float32 in [0, 1]) with one defect
    class per image (``label``, ``label_index``, class order in ``attrs["classes"]``), its bounding box in the
    ``box_*`` side table, ``wafer_id`` (images of one wafer share the layout: split by it), ``defect`` (the fine
    kind), ``bump_pitch_px`` and ``rotation_deg``. The scene model is in the module docstring and
    docs/inspection-data.md.
    """

    class Params(reflow.Params):
        images: int = Field(200, ge=1, le=1_000_000, description="number of images")
        size: int = Field(256, ge=64, le=2048, description="image height and width in pixels")
        class_weights: dict[str, float] = Field(
            default_factory=dict,
            description="relative frequency of each class, e.g. {good: 20, tsv-void: 0.5}; classes not given "
                        "weigh 1, weight 0 leaves a class out")
        merge_bump_defects: bool = Field(False, description="label missing and bridged bumps as one class "
                                                            "'bump-defect' (seed 001's ball defects)")
        dies_per_wafer: int = Field(25, ge=1, le=100_000, description="images that share one wafer's layout "
                                                                     "(wafer_id)")
        bump_pitch: tuple[float, float] = Field((0.09, 0.13), description="range of the bump pitch as a fraction "
                                                                          "of the image side [low, high]")
        rotation_deg: float = Field(3.0, ge=0.0, le=15.0, description="per-image rotation, uniform in +-this")
        brightness: float = Field(0.15, ge=0.0, le=0.5, description="per-image gain jitter, uniform in +-this")
        noise: float = Field(0.03, ge=0.0, le=0.5, description="Gaussian noise sigma (grey levels), +-30 % "
                                                               "per image")
        blur: float = Field(0.8, ge=0.0, le=5.0, description="Gaussian blur sigma in pixels, +-30 % per image")
        masks: bool = Field(False, description="also return defect_mask (sample, y, x): each pixel's defect "
                                               "coverage")

        @field_validator("bump_pitch")
        @classmethod
        def _pitch(cls, value: tuple[float, float]) -> tuple[float, float]:
            low, high = value
            if not 0.06 <= low <= high <= 0.2:
                raise ValueError(f"bump_pitch must satisfy 0.06 <= low <= high <= 0.2 (fractions of the image "
                                 f"side), got {list(value)}")
            return value

        @model_validator(mode="after")
        def _weights(self) -> SyntheticWlp.Params:
            allowed = MERGED_CLASSES if self.merge_bump_defects else CLASSES
            for name, weight in self.class_weights.items():
                if name not in allowed:
                    close = difflib.get_close_matches(name, allowed, n=1)
                    hint = f" (did you mean {close[0]!r}?)" if close else ""
                    if name in CLASSES + MERGED_CLASSES:
                        hint = (" (with merge_bump_defects: true use 'bump-defect')" if self.merge_bump_defects
                                else " (set merge_bump_defects: true to use 'bump-defect')")
                    raise ValueError(f"class_weights: unknown class {name!r}{hint}; classes: {', '.join(allowed)}")
                if not (math.isfinite(weight) and weight >= 0):
                    raise ValueError(f"class_weights: weight of {name!r} must be a finite number >= 0, got {weight}")
            if sum(self.class_weights.get(c, 1.0) for c in allowed) <= 0:
                raise ValueError("class_weights: at least one class needs a weight > 0")
            return self

    def load(self, ctx: Any) -> Any:
        return generate_wlp(self.params, ctx.seed)

    def plot(self, data: Any, folder: Path) -> list[Path]:
        """Figure for the ``data`` task: examples of every class with their boxes."""
        return [sample_grid(data, Path(folder) / "wlp_examples.png", title="synthetic WLP images by class")]


def class_probabilities(p: SyntheticWlp.Params) -> dict[str, float]:
    """The probability of each fine defect kind (``CLASSES``) under ``p.class_weights``."""
    if p.merge_bump_defects:
        merged = p.class_weights.get(MERGED_BUMP, 1.0)
        weights = {c: (merged / 2 if c in BUMP_KINDS else p.class_weights.get(c, 1.0)) for c in CLASSES}
    else:
        weights = {c: p.class_weights.get(c, 1.0) for c in CLASSES}
    total = sum(weights.values())
    return {c: w / total for c, w in weights.items()}


# ---- scene description: every random number is drawn here, rendering is deterministic ------------------------


@dataclass
class Wafer:
    """A wafer's layout in the die frame (pixels, origin at the die centre, y down) and its grey levels."""

    half: tuple[float, float]  # die half-sides
    pitch: float
    bump_r: float
    bump_u: np.ndarray  # bump column centres
    bump_v: np.ndarray  # bump row centres
    traces: list[tuple[float, float, float, float]]  # axis-aligned rectangles (cu, cv, half_u, half_v)
    trace_segments: list[tuple[float, float, float]]  # the long horizontal run of each trace: (u0, u1, v)
    pads: list[tuple[float, float]]  # peripheral pad centres
    pad_half: float
    trace_half: float
    tsv: np.ndarray  # (k, 2) TSV centres
    tsv_r: float
    levels: dict[str, float]


@dataclass
class Scene:
    """One image: its wafer, pose, imaging and defect (``kind`` and its geometry in ``defect``)."""

    wafer: Wafer
    kind: str
    angle: float  # radians
    centre: tuple[float, float]  # pixel position of the die-frame origin
    gain: float
    offset: float
    ramp: tuple[float, float]  # illumination gradient per pixel along x and y
    blur: float
    noise: float
    noise_seed: int
    defect: dict[str, Any] = field(default_factory=dict)


def _draw_wafer(p: SyntheticWlp.Params, rng: np.random.Generator) -> Wafer:
    s = float(p.size)
    half = (s * rng.uniform(0.33, 0.40), s * rng.uniform(0.33, 0.40))
    pitch = s * rng.uniform(*p.bump_pitch)
    bump_r = pitch * rng.uniform(0.27, 0.33)
    counts = [max(2, int((2 * h - 2.4 * pitch) // pitch) + 1) for h in half]
    bump_u = (np.arange(counts[0]) - (counts[0] - 1) / 2) * pitch
    bump_v = (np.arange(counts[1]) - (counts[1] - 1) / 2) * pitch
    trace_half = max(0.8, 0.006 * s)
    pad_half = 0.018 * s
    traces, segments, pads = [], [], []
    channels = bump_v[:-1] + pitch / 2
    for side in (-1, 1):  # left and right die edges; left traces end in the left half of the array, right in the right
        columns = np.flatnonzero(bump_u * side > 0)  # never empty: there are at least two columns
        used = np.flatnonzero(rng.uniform(size=len(channels)) < 0.75)
        for j in used if used.size else [int(rng.integers(len(channels)))]:
            i = int(rng.choice(columns))
            v = float(channels[j])
            u_pad = side * (half[0] - 0.06 * s)
            u_end = float(bump_u[i])
            lo, hi = sorted((u_pad, u_end))
            traces.append(((lo + hi) / 2, v, (hi - lo) / 2 + trace_half, trace_half))
            segments.append((lo, hi, v))
            row = int(j + rng.integers(0, 2))  # the stub runs to the bump above or below the channel
            traces.append((u_end, (v + bump_v[row]) / 2, trace_half, abs(v - bump_v[row]) / 2))
            pads.append((u_pad, v))
    tsv_u = bump_u[:-1] + pitch / 2
    keep = rng.uniform(size=len(tsv_u)) < 0.8
    tsv_u = tsv_u[keep] if keep.any() else tsv_u
    margin_v = bump_v[-1] + 0.6 * pitch
    tsv = np.array([(u, sign * margin_v) for sign in (-1, 1) for u in tsv_u]).reshape(-1, 2)
    levels = {"mold": rng.uniform(0.14, 0.22), "die": rng.uniform(0.40, 0.50), "ring": rng.uniform(0.55, 0.65),
              "trace": rng.uniform(0.62, 0.72), "bump": rng.uniform(0.78, 0.88), "tsv": rng.uniform(0.66, 0.76)}
    return Wafer(half, pitch, bump_r, bump_u, bump_v, traces, segments, pads, pad_half, trace_half, tsv,
                 0.2 * pitch, levels)


def _walk(rng: np.random.Generator, start: tuple[float, float], heading: float, length: float, step: float,
          wiggle: float) -> np.ndarray:
    """A persistent random walk (crack path) of ``length`` from ``start``: (points, 2)."""
    n = max(2, int(math.ceil(length / step)))
    turns = np.concatenate([[0.0], rng.normal(0.0, wiggle, n - 1)])
    theta = heading + np.cumsum(turns)
    steps = step * np.column_stack([np.cos(theta), np.sin(theta)])
    return np.vstack([start, start + np.cumsum(steps, axis=0)])


def _blob_shape(rng: np.random.Generator) -> np.ndarray:
    """Harmonic perturbations (amplitude, phase) for k = 2, 3, 4 of an irregular blob outline."""
    return np.column_stack([rng.uniform(0.0, 0.12, 3), rng.uniform(0.0, 2 * math.pi, 3)])


def _draw_defect(kind: str, w: Wafer, s: float, rng: np.random.Generator) -> dict[str, Any]:
    """The geometry of one defect of ``kind`` in the die frame."""
    hx, hy = w.half
    if kind == "chip-crack":
        side = int(rng.integers(4))
        t = rng.uniform(-0.8, 0.8)
        start, normal = [((-hx, t * hy), 0.0), ((hx, t * hy), math.pi), ((t * hx, -hy), math.pi / 2),
                         ((t * hx, hy), -math.pi / 2)][side]
        path = _walk(rng, np.array(start), normal + rng.uniform(-0.6, 0.6), s * rng.uniform(0.15, 0.35),
                     max(2.0, 0.015 * s), 0.3)
        return {"path": path, "half_width": rng.uniform(0.5, 1.0) * max(1.0, s / 256)}
    if kind == "mold-crack":  # from a die edge obliquely out, so that it runs along the mold margin
        side = int(rng.integers(4))
        t = rng.uniform(-0.9, 0.9)
        start, normal = [((-hx, t * hy), math.pi), ((hx, t * hy), 0.0), ((t * hx, -hy), -math.pi / 2),
                         ((t * hx, hy), math.pi / 2)][side]
        heading = normal + rng.choice([-1, 1]) * rng.uniform(0.6, 1.1)
        path = _walk(rng, np.array(start), heading, s * rng.uniform(0.12, 0.25), max(2.0, 0.012 * s), 0.3)
        return {"path": path, "half_width": rng.uniform(0.6, 1.1) * max(1.0, s / 256)}
    if kind == "die-shift":
        angle = rng.uniform(0, 2 * math.pi)
        amount = s * rng.uniform(0.02, 0.045)
        return {"shift": (amount * math.cos(angle), amount * math.sin(angle))}
    if kind == "missing-bump":
        return {"bump": (int(rng.integers(len(w.bump_u))), int(rng.integers(len(w.bump_v))))}
    if kind == "bridged-bump":
        i, j = int(rng.integers(len(w.bump_u))), int(rng.integers(len(w.bump_v)))
        di, dj = (1, 0) if rng.uniform() < 0.5 else (0, 1)
        if i + di >= len(w.bump_u):
            i -= 1
        if j + dj >= len(w.bump_v):
            j -= 1
        a = (w.bump_u[i], w.bump_v[j])
        b = (w.bump_u[i + di], w.bump_v[j + dj])
        return {"path": np.array([a, b]), "half_width": w.bump_r * rng.uniform(0.35, 0.55)}
    if kind == "trace-break":
        if not w.trace_segments:
            raise AssertionError("a wafer without traces cannot have a trace break")
        u0, u1, v = w.trace_segments[int(rng.integers(len(w.trace_segments)))]
        centre = u0 + (u1 - u0) * rng.uniform(0.25, 0.75)
        gap = s * rng.uniform(0.02, 0.035) / 2
        return {"gap": (centre - gap, centre + gap, v), "segment": (u0, u1, v)}
    if kind == "tsv-void":
        k = int(rng.integers(len(w.tsv)))
        offset = rng.normal(0.0, 0.12 * w.tsv_r, 2)
        return {"centre": w.tsv[k] + offset, "radius": w.tsv_r * rng.uniform(0.35, 0.6), "shape": _blob_shape(rng)}
    if kind == "delamination":
        r = s * rng.uniform(0.06, 0.12)
        centre = rng.uniform((-hx + r, -hy + r), (hx - r, hy - r))
        return {"centre": centre, "radius": r, "shape": _blob_shape(rng) * 1.5}
    if kind == "particle":
        r = s * rng.uniform(0.012, 0.03)
        centre = rng.uniform(-0.38 * s, 0.38 * s, 2)
        dark = rng.uniform() < 0.7
        return {"centre": centre, "radius": r, "shape": _blob_shape(rng) * 2,
                "value": rng.uniform(0.03, 0.12) if dark else rng.uniform(0.9, 1.0),
                "shadow": r * rng.uniform(0.3, 0.6)}
    if kind == "scratch":
        length = s * rng.uniform(0.3, 0.6)
        radius = s * rng.uniform(1.0, 4.0) * rng.choice([-1, 1])
        heading = rng.uniform(0, math.pi)
        start = rng.uniform((-0.6 * hx, -0.6 * hy), (0.6 * hx, 0.6 * hy)) - 0.5 * length * np.array(
            [math.cos(heading), math.sin(heading)])
        arc = np.linspace(0.0, length, 24)
        theta = heading + arc / radius
        path = start + np.column_stack([np.cumsum(np.r_[0, np.diff(arc)] * np.cos(theta)),
                                        np.cumsum(np.r_[0, np.diff(arc)] * np.sin(theta))])
        return {"path": path, "half_width": rng.uniform(0.4, 0.8) * max(1.0, s / 256),
                "bright": bool(rng.uniform() < 0.5)}
    return {}


def draw_scenes(p: SyntheticWlp.Params, seed: int) -> list[Scene]:
    """Every random choice of the dataset (layouts, classes, poses, lighting, defect geometry) for ``seed``."""
    kind_seq, layout_seq, scene_seq = np.random.SeedSequence(int(seed)).spawn(3)
    probs = class_probabilities(p)
    kinds = np.random.default_rng(kind_seq).choice(np.array(CLASSES), size=p.images, p=list(probs.values()))
    layout_rng, rng = np.random.default_rng(layout_seq), np.random.default_rng(scene_seq)
    s = float(p.size)
    wafers = [_draw_wafer(p, layout_rng) for _ in range(-(-p.images // p.dies_per_wafer))]
    scenes = []
    for i, kind in enumerate(kinds):
        wafer = wafers[i // p.dies_per_wafer]
        ramp_dir = rng.uniform(0, 2 * math.pi)
        ramp = rng.uniform(0.0, 0.08) / s
        scenes.append(Scene(
            wafer=wafer, kind=str(kind), angle=math.radians(rng.uniform(-1, 1) * p.rotation_deg),
            centre=tuple(s / 2 + rng.uniform(-0.015, 0.015, 2) * s),
            gain=1.0 + rng.uniform(-1, 1) * p.brightness, offset=rng.uniform(-1, 1) * p.brightness / 3,
            ramp=(ramp * math.cos(ramp_dir), ramp * math.sin(ramp_dir)),
            blur=p.blur * rng.uniform(0.7, 1.3), noise=p.noise * rng.uniform(0.7, 1.3),
            noise_seed=int(rng.integers(2**63)), defect=_draw_defect(str(kind), wafer, s, rng)))
    return scenes


# ---- rendering ------------------------------------------------------------------------------------------------


def _soft(distance: np.ndarray) -> np.ndarray:
    """Coverage of a pixel from the signed distance (pixels, negative inside) to a shape's edge: a 1 px ramp."""
    return np.clip(0.5 - distance, 0.0, 1.0)


class _Frame:
    """Pixel grid of one image and its die-frame coordinates (u, v): rotated by ``angle`` about ``centre``."""

    def __init__(self, size: int, angle: float, centre: tuple[float, float]):
        self.size = size
        self.cos, self.sin = math.cos(angle), math.sin(angle)
        self.cx, self.cy = centre
        pix = np.arange(size, dtype=np.float32) + 0.5
        x, y = pix[None, :] - np.float32(self.cx), pix[:, None] - np.float32(self.cy)
        self.u = (self.cos * x + self.sin * y).astype(np.float32)
        self.v = (-self.sin * x + self.cos * y).astype(np.float32)

    def window(self, u: np.ndarray, v: np.ndarray, margin: float) -> tuple[slice, slice] | None:
        """Pixel rows and columns within ``margin`` of the die-frame points (u, v); None if off the image."""
        x = self.cos * np.asarray(u) - self.sin * np.asarray(v) + self.cx
        y = self.sin * np.asarray(u) + self.cos * np.asarray(v) + self.cy
        c0, c1 = int(max(0, math.floor(x.min() - margin))), int(min(self.size, math.ceil(x.max() + margin)))
        r0, r1 = int(max(0, math.floor(y.min() - margin))), int(min(self.size, math.ceil(y.max() + margin)))
        if c0 >= c1 or r0 >= r1:
            return None
        return slice(r0, r1), slice(c0, c1)

    def rect_distance(self, cu: float, cv: float, hu: float, hv: float) -> np.ndarray:
        """Signed distance (pixels, negative inside) to an axis-aligned (in the die frame) rectangle."""
        qu, qv = np.abs(self.u - np.float32(cu)) - np.float32(hu), np.abs(self.v - np.float32(cv)) - np.float32(hv)
        outside = np.hypot(np.maximum(qu, 0), np.maximum(qv, 0))
        return outside + np.minimum(np.maximum(qu, qv), 0)

    def paint_rect(self, layer: np.ndarray, cu: float, cv: float, hu: float, hv: float) -> None:
        """layer = max(layer, rectangle coverage), computed only in the rectangle's window."""
        win = self.window(np.array([cu - hu, cu + hu]), np.array([cv - hv, cv + hv]), 2.0)
        if win is None:
            return
        qu, qv = np.abs(self.u[win] - cu) - hu, np.abs(self.v[win] - cv) - hv
        outside = np.hypot(np.maximum(qu, 0), np.maximum(qv, 0))
        np.maximum(layer[win], _soft(outside + np.minimum(np.maximum(qu, qv), 0)), out=layer[win])

    def stroke(self, path: np.ndarray, half_width: float) -> np.ndarray:
        """Coverage of a polyline of ``half_width`` (a capsule per segment), over the whole image."""
        out = np.zeros((self.size, self.size), dtype=np.float32)
        win = self.window(path[:, 0], path[:, 1], half_width + 2.0)
        if win is None:
            return out
        u, v = self.u[win], self.v[win]
        best = np.full(u.shape, np.inf, dtype=np.float32)
        for (au, av), (bu, bv) in zip(path[:-1], path[1:], strict=True):
            du, dv = bu - au, bv - av
            t = np.clip(((u - au) * du + (v - av) * dv) / max(du * du + dv * dv, 1e-12), 0.0, 1.0)
            np.minimum(best, np.hypot(u - au - t * du, v - av - t * dv), out=best)
        out[win] = _soft(best - half_width)
        return out

    def blob(self, centre: np.ndarray, radius: float, shape: np.ndarray) -> np.ndarray:
        """Coverage of a disc of ``radius`` whose outline is perturbed by harmonics k = 2, 3, 4 (``shape``)."""
        out = np.zeros((self.size, self.size), dtype=np.float32)
        reach = radius * (1 + shape[:, 0].sum()) + 2.0
        win = self.window(np.array([centre[0] - reach, centre[0] + reach]),
                          np.array([centre[1] - reach, centre[1] + reach]), 0.0)
        if win is None:
            return out
        du, dv = self.u[win] - centre[0], self.v[win] - centre[1]
        theta = np.arctan2(dv, du)
        outline = radius * (1 + sum(a * np.cos(k * theta + ph) for k, (a, ph) in zip((2, 3, 4), shape, strict=True)))
        out[win] = _soft(np.hypot(du, dv) - outline)
        return out


def _smooth_field(coarse: np.ndarray, size: int) -> np.ndarray:
    """A smooth random field (size, size): ``coarse`` (n, n) interpolated bilinearly, edges clamped."""
    n = coarse.shape[0]
    pos = np.clip((np.arange(size) + 0.5) * n / size - 0.5, 0.0, n - 1.0)
    lo = np.minimum(pos.astype(np.int64), n - 2)
    t = (pos - lo).astype(np.float32)
    c = coarse.astype(np.float32)
    rows = c[lo] * (1 - t[:, None]) + c[lo + 1] * t[:, None]  # (size, n)
    return rows[:, lo] * (1 - t[None, :]) + rows[:, lo + 1] * t[None, :]


def render(scene: Scene, size: int, defect: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The image (size, size) of ``scene`` and its defect coverage; ``defect=False`` renders the same scene (same
    pose, lighting and noise) without its defect, so the two differ only where the defect is."""
    from scipy.ndimage import gaussian_filter

    w, kind, d = scene.wafer, scene.kind if defect else "good", scene.defect
    lv = w.levels
    f = _Frame(size, scene.angle, scene.centre)
    noise_rng = np.random.default_rng(scene.noise_seed)
    grain = _smooth_field(noise_rng.normal(size=(12, 12)), size)
    mask = np.zeros((size, size), dtype=np.float32)

    # die (moves with a die shift; the RDL above it does not) with its seal ring
    shift = d["shift"] if kind == "die-shift" else (0.0, 0.0)
    edge = f.rect_distance(shift[0], shift[1], *w.half)
    die = _soft(edge)
    if kind == "die-shift":
        mask = np.abs(die - _soft(f.rect_distance(0.0, 0.0, *w.half)))
    img = lv["mold"] * (1.0 + 0.12 * grain) * (1 - die) + lv["die"] * (1.0 + 0.02 * grain) * die
    ring_half = max(0.5, 0.003 * size)
    ring = _soft(np.abs(edge + np.float32(0.02 * size + ring_half)) - np.float32(ring_half))
    img = img * (1 - ring) + lv["ring"] * ring

    # TSVs: a dark liner around a bright copper fill
    tsv_u, tsv_v = w.tsv[:, 0] + shift[0], w.tsv[:, 1] + shift[1]
    win = f.window(tsv_u, tsv_v, w.tsv_r + 3.0)
    if win is not None and len(w.tsv):
        du = f.u[win][..., None] - tsv_u
        dv = f.v[win][..., None] - tsv_v
        dist = np.hypot(du, dv).min(axis=-1)
        liner, fill = _soft(dist - w.tsv_r - 1.0), _soft(dist - w.tsv_r)
        img[win] = img[win] * (1 - liner) + 0.12 * liner
        img[win] = img[win] * (1 - fill) + lv["tsv"] * fill
    if kind == "tsv-void":
        void = f.blob(d["centre"] + np.asarray(shift), d["radius"], d["shape"])
        img = img * (1 - void) + 0.08 * void
        mask = np.maximum(mask, void)

    # RDL: traces and their peripheral pads
    traces = np.zeros((size, size), dtype=np.float32)
    for cu, cv, hu, hv in w.traces:
        f.paint_rect(traces, cu, cv, hu, hv)
    for pu, pv in w.pads:
        f.paint_rect(traces, pu, pv, w.pad_half, w.pad_half)
    if kind == "trace-break":
        g0, g1, v = d["gap"]
        gap = np.zeros_like(traces)
        f.paint_rect(gap, (g0 + g1) / 2, v, (g1 - g0) / 2, w.trace_half + 1.0)
        broken = traces * (1 - gap)
        mask = np.maximum(mask, traces - broken)
        traces = broken
    img = img * (1 - traces) + lv["trace"] * traces

    # solder bridge (under the bumps)
    if kind == "bridged-bump":
        bridge = f.stroke(d["path"], d["half_width"])
        img = img * (1 - bridge) + 0.9 * lv["bump"] * bridge
        mask = np.maximum(mask, bridge)

    # bumps: the nearest bump centre of every pixel in the array's window
    nu, nv = len(w.bump_u), len(w.bump_v)
    r = w.bump_r
    win = f.window(w.bump_u[[0, -1, 0, -1]] + np.array([-1, 1, -1, 1]) * r,
                   w.bump_v[[0, 0, -1, -1]] + np.array([-1, -1, 1, 1]) * r, 3.0)
    if win is not None:
        u, v = f.u[win], f.v[win]
        i = np.clip(np.rint(u / w.pitch + (nu - 1) / 2), 0, nu - 1).astype(np.int64)
        j = np.clip(np.rint(v / w.pitch + (nv - 1) / 2), 0, nv - 1).astype(np.int64)
        du, dv = u - w.bump_u[i].astype(np.float32), v - w.bump_v[j].astype(np.float32)
        dist = np.hypot(du, dv)
        dome = np.sqrt(np.clip(1.0 - (dist / r) ** 2, 0.0, 1.0))
        shade = lv["bump"] * (0.55 + 0.45 * dome) * (1 - 0.5 * np.exp(-((dist - r) / 1.2) ** 2))
        shade += 0.22 * np.exp(-((du + 0.3 * r) ** 2 + (dv + 0.3 * r) ** 2) / (2 * (0.22 * r) ** 2))
        bump = _soft(dist - r)
        part = img[win]
        if kind == "missing-bump":
            gone = (i == d["bump"][0]) & (j == d["bump"][1])
            mask[win] = np.maximum(mask[win], np.where(gone, _soft(dist - r - 1.0), 0.0))
            ubm = np.where(gone, _soft(dist - 0.8 * r), 0.0)
            rim = np.where(gone, np.exp(-((dist - 0.8 * r) / 1.0) ** 2), 0.0)
            bump = np.where(gone, 0.0, bump)
            part = part * (1 - ubm) + (lv["die"] + 0.18) * ubm
            part = part * (1 - 0.4 * rim)
        img[win] = part * (1 - bump) + shade * bump

    # surface defects on top
    if kind in ("chip-crack", "mold-crack"):
        crack = f.stroke(d["path"], d["half_width"])
        crack = crack * (die if kind == "chip-crack" else 1 - die)
        img = img * (1 - crack) + (0.05 if kind == "chip-crack" else 0.03) * crack
        mask = np.maximum(mask, crack)
    if kind == "scratch":
        line = 0.8 * f.stroke(d["path"], d["half_width"])
        img = img * (1 - line) + (np.minimum(img + 0.3, 1.0) if d["bright"] else 0.55 * img) * line
        mask = np.maximum(mask, line / 0.8)
    if kind == "delamination":
        patch = f.blob(d["centre"], d["radius"], d["shape"])
        fringe = np.exp(-(((patch - 0.5) * 2.5) ** 2)) * (patch > 0.01) * 0.12
        img = img + (0.3 * (1 - img) * patch + fringe) * (1 - img)
        mask = np.maximum(mask, np.maximum(patch, fringe / 0.12))
    if kind == "particle":
        shadow = f.blob(d["centre"] + d["shadow"], d["radius"], d["shape"])
        body = f.blob(d["centre"], d["radius"], d["shape"])
        img = img * (1 - 0.3 * shadow)
        img = img * (1 - body) + d["value"] * body
        mask = np.maximum(mask, np.maximum(body, shadow))

    # imaging: lighting, blur, noise
    x = np.arange(size, dtype=np.float32) - size / 2
    img = scene.gain * img + scene.offset + scene.ramp[0] * x[None, :] + scene.ramp[1] * x[:, None]
    if scene.blur > 0:
        img = gaussian_filter(img, scene.blur, mode="nearest")
    img = img + scene.noise * noise_rng.standard_normal((size, size), dtype=np.float32)
    return np.clip(img, 0.0, 1.0).astype(np.float32), np.clip(mask, 0.0, 1.0).astype(np.float32)


def defect_box(mask: np.ndarray, blur: float) -> tuple[float, float, float, float] | None:
    """(x0, y0, x1, y1) of the pixels whose defect coverage exceeds 0.05, widened by 2 blur sigmas (>= 1 px)."""
    rows = np.flatnonzero((mask > MASK_THRESHOLD).any(axis=1))
    cols = np.flatnonzero((mask > MASK_THRESHOLD).any(axis=0))
    if not rows.size:
        return None
    pad = max(1, math.ceil(2 * blur))
    h, w = mask.shape
    return (float(max(0, cols[0] - pad)), float(max(0, rows[0] - pad)), float(min(w, cols[-1] + 1 + pad)),
            float(min(h, rows[-1] + 1 + pad)))


def generate_wlp(p: SyntheticWlp.Params, seed: int) -> Any:
    """The ``synthetic-wlp`` dataset for params ``p`` and ``seed`` (see the module docstring)."""
    import xarray as xr

    scenes = draw_scenes(p, seed)
    n, size = len(scenes), p.size
    images = np.empty((n, 1, size, size), dtype=np.float32)
    masks = np.empty((n, size, size), dtype=np.float32) if p.masks else None
    boxes, box_kind = [], []
    for k, scene in enumerate(scenes):
        img, mask = render(scene, size)
        images[k, 0] = img
        if masks is not None:
            masks[k] = mask
        if scene.kind != "good":
            box = defect_box(mask, scene.blur)
            if box is None:  # cannot happen by construction (every defect starts inside the image)
                raise AssertionError(f"synthetic-wlp: {scene.kind} in image {k} covers no pixel")
            boxes.append((k, *box))
            box_kind.append(scene.kind)
    classes = list(MERGED_CLASSES if p.merge_bump_defects else CLASSES)
    kinds = np.array([s.kind for s in scenes])
    labels = np.array([_label(k, p.merge_bump_defects) for k in kinds])
    box_labels = np.array([_label(k, p.merge_bump_defects) for k in box_kind], dtype=labels.dtype)
    table = np.array(boxes, dtype=np.float64).reshape(-1, 5)
    wafer_id = np.arange(n) // p.dies_per_wafer
    data = {
        "image": (("sample", "channel", "y", "x"), images, {"description": "grey level of the top-view image"}),
        "label": ("sample", labels, {"classes": classes, "description": "defect class ('good': none)"}),
        "label_index": ("sample", np.array([classes.index(c) for c in labels], dtype=np.int64),
                        {"description": "index of label in attrs['classes']"}),
        "defect": ("sample", kinds, {"description": "fine defect kind (as label unless bump defects are merged)"}),
        "wafer_id": ("sample", wafer_id.astype(np.int64), {"description": "wafer: its images share the layout"}),
        "bump_pitch_px": ("sample", np.array([s.wafer.pitch for s in scenes]), {"units": "px"}),
        "rotation_deg": ("sample", np.degrees([s.angle for s in scenes]), {"units": "deg"}),
        **box_variables(table, box_labels, "defect class of the box"),
    }
    if masks is not None:
        data["defect_mask"] = (("sample", "y", "x"), masks, {"description": "defect coverage of each pixel"})
    ds = xr.Dataset(data, coords={"sample": np.arange(n), "box": np.arange(len(table))})
    ds.attrs.update(source="synthetic-wlp", classes=classes)
    return ds


def _label(kind: str, merge: bool) -> str:
    return MERGED_BUMP if merge and kind in BUMP_KINDS else kind


# ---- figures ---------------------------------------------------------------------------------------------------


def sample_grid(ds: Any, path: Path, by: str = "label", per_class: int = 5, title: str = "") -> Path:
    """Up to ``per_class`` example images for each value of ``by`` (one row each, in ``attrs["classes"]`` order
    when there is one), with the ``box_*`` side table drawn when the dataset has one. Works on any image dataset
    with a ``by`` variable on ``sample``."""
    from matplotlib.patches import Rectangle

    plt = pyplot()
    values = np.asarray(ds[by].values).astype(str)
    order = [str(c) for c in ds[by].attrs.get("classes", ds.attrs.get("classes", []))] if by == "label" else []
    present = [c for c in order if c in set(values)] + sorted(set(values) - set(order), key=_natural)
    rows = [(c, np.flatnonzero(values == c)[:per_class]) for c in present[:16]]
    cols = max(1, max((len(idx) for _, idx in rows), default=1))
    fig, axes = plt.subplots(len(rows), cols, figsize=(1.5 * cols + 0.9, 1.5 * len(rows) + 0.5), squeeze=False)
    has_boxes = all(f"box_{k}" in ds for k in ("sample", "x0", "y0", "x1", "y1"))
    box_sample = np.asarray(ds["box_sample"].values) if has_boxes else np.zeros(0, dtype=int)
    for r, (name, idx) in enumerate(rows):
        for c in range(cols):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(idx):
                ax.axis("off")
                continue
            i = int(idx[c])
            img = np.asarray(ds["image"][i].values, dtype=np.float32)
            img = img / 255.0 if ds["image"].dtype == np.uint8 else img
            ax.imshow(img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0), cmap="gray", vmin=0.0, vmax=1.0)
            for b in np.flatnonzero(box_sample == i):
                x0, y0, x1, y1 = (float(ds[f"box_{k}"].values[b]) for k in ("x0", "y0", "x1", "y1"))
                ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, edgecolor="tab:red",
                                       linewidth=1.0))
            if c == 0:
                ax.set_ylabel(name, fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    return save_figure(fig, path)


def _natural(text: str) -> tuple:
    """Sort key that orders 'b50' before 'b100'."""
    import re

    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text))

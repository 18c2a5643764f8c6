"""Data source ``synthetic-ic-package``: RGB top-view microscope images of IC packages of three packaging
materials, for material classifiers (the set-up of seed 002, the CTI model: plastic, ceramic and metallic
packages photographed under a reflected-light microscope, augmented by rotations of +-15 and +-30 degrees).

What tells the materials apart (seed 002: "plastic packages and metal packages typically have longer and fewer
pins, with the latter also featuring identifiers that are laser-marked ..., whereas ceramic packages have
shorter and denser pins"):

- ``plastic``: black epoxy mold body (a DIP/SOP outline, width 0.35-0.5 of its length) with a matte grain,
  3-8 long gull-wing tin leads per long side (0.18-0.30 of the body length), printed white marking and a
  moulded pin-1 dimple;
- ``ceramic``: light (white to beige) alumina body, often with a gold seal lid, 10-20 short gold or silver
  pins per side (0.05-0.10), on two sides or on all four (chip carriers), dark printed marking;
- ``metal``: a silver lid with a metallic sheen (a bright specular band whose position and direction change
  with the lighting) and brushed streaks, a seam ring, 2-6 long gold or silver leads per side, and a
  laser-marked identifier (slightly darker engraving, no ink).

One package (``package_id``) is photographed ``views_per_package`` times; its body, pins, colours and marking
are fixed, while each view gets its own pose (rotation uniform in +-``rotation_deg``, sometimes turned by 180
degrees; body length ``scale`` x the image side; shift +-``offset`` x the side), background (grey, blue or
green ESD mat, glass, black), lighting (gain 1 +- ``lighting``, a colour tint, an illumination ramp) and noise.
Shapes are rendered at twice the size with analytic signed distances and averaged down (anti-aliased). Split
by ``package_id`` so that no package is seen in training and testing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import reflow
from pydantic import Field, field_validator

from .wlp import _smooth_field

MATERIALS = ("plastic", "ceramic", "metal")
"""The classes, in label-index order."""
BACKGROUNDS = {"grey": (0.55, 0.55, 0.55), "blue mat": (0.22, 0.32, 0.52), "green mat": (0.22, 0.42, 0.32),
               "glass": (0.84, 0.85, 0.87), "black": (0.10, 0.10, 0.11)}
SUPERSAMPLE = 2


class SyntheticIcPackage(reflow.DataSource):
    """RGB IC package images (``image``: sample, channel=3, y, x; float32 in [0, 1]) labelled by packaging
    material (``label``: plastic, ceramic, metal; ``label_index``; ``attrs["classes"]``), with ``package_id``
    (views of one package: split by it), ``rotation_deg``, ``scale`` and ``pins_per_side``. The rendering model is
    in the module docstring and docs/inspection-data.md.
    """

    class Params(reflow.Params):
        per_class: int = Field(60, ge=1, le=1_000_000, description="images of each material")
        size: int = Field(96, ge=32, le=1024, description="image height and width in pixels")
        views_per_package: int = Field(3, ge=1, le=1000, description="images of each package (package_id), each "
                                                                      "in its own pose and lighting")
        materials: list[str] | None = Field(None, description=f"materials to generate (default all: "
                                                              f"{', '.join(MATERIALS)})")
        rotation_deg: float = Field(30.0, ge=0.0, le=180.0, description="rotation, uniform in +-this")
        scale: tuple[float, float] = Field((0.45, 0.7), description="body length as a fraction of the image "
                                                                    "side [low, high]")
        offset: float = Field(0.06, ge=0.0, le=0.3, description="shift, uniform in +-this x the image side")
        lighting: float = Field(0.2, ge=0.0, le=0.6, description="gain jitter of the illumination, +-this")
        noise: float = Field(0.02, ge=0.0, le=0.5, description="Gaussian noise sigma per channel (grey levels)")

        @field_validator("materials")
        @classmethod
        def _materials(cls, value: list[str] | None) -> list[str] | None:
            if value is None:
                return None
            unknown = [v for v in value if v not in MATERIALS]
            if unknown:
                raise ValueError(f"unknown material(s) {unknown}; allowed: {', '.join(MATERIALS)}")
            if not value or len(set(value)) != len(value):
                raise ValueError(f"materials must be a non-empty list without repeats, got {value}")
            return value

        @field_validator("scale")
        @classmethod
        def _scale(cls, value: tuple[float, float]) -> tuple[float, float]:
            if not 0.2 <= value[0] <= value[1] <= 0.8:
                raise ValueError(f"scale must satisfy 0.2 <= low <= high <= 0.8 (body length / image side; the "
                                 f"pins must fit in the image), got {list(value)}")
            return value

    def load(self, ctx: Any) -> Any:
        return generate_ic_packages(self.params, ctx.seed)

    def plot(self, data: Any, folder: Path) -> list[Path]:
        """Figure for the ``data`` task: examples of every material."""
        from .wlp import sample_grid

        return [sample_grid(data, Path(folder) / "ic_package_examples.png", per_class=6,
                            title="synthetic IC packages by material")]


@dataclass
class Package:
    """One physical package in body units (body length 1, u along the length, v across, y down)."""

    material: str
    width: float
    corner: float
    pins: int  # per side
    pin_length: float
    pin_width: float
    four_sided: bool
    body_rgb: np.ndarray
    pin_rgb: np.ndarray
    mark_rgb: np.ndarray | None  # printed ink; None: laser marking (a darkening)
    lid: tuple[float, float] | None  # half sizes of a seal lid / seam ring
    lid_rgb: np.ndarray | None
    glyphs: np.ndarray  # (rows, chars, 5, 3) bits of the marking
    glyph_height: float
    texture: np.ndarray  # (16, 16) smooth grain coefficients


def _draw_package(material: str, rng: np.random.Generator) -> Package:
    if material == "plastic":
        width, pins, pin_length = rng.uniform(0.35, 0.5), int(rng.integers(3, 9)), rng.uniform(0.18, 0.3)
        body = np.full(3, rng.uniform(0.06, 0.12)) + rng.normal(0, 0.008, 3)
        pin = np.array([0.74, 0.75, 0.77]) * rng.uniform(0.9, 1.05)
        mark, four, lid, lid_rgb = np.array([0.86, 0.86, 0.82]) * rng.uniform(0.9, 1.0), False, None, None
    elif material == "ceramic":
        width, pins, pin_length = rng.uniform(0.45, 0.9), int(rng.integers(10, 21)), rng.uniform(0.05, 0.1)
        body = np.array([0.88, 0.85, 0.76]) * rng.uniform(0.92, 1.05) + rng.normal(0, 0.02, 3)
        gold = rng.uniform() < 0.6
        pin = np.array([0.88, 0.72, 0.36]) if gold else np.array([0.78, 0.78, 0.8])
        mark, four = np.array([0.18, 0.18, 0.22]), bool(rng.uniform() < 0.4)
        if four:  # chip carriers are square-ish, so the pins fit along the short sides too
            width = rng.uniform(0.8, 1.0)
        has_lid = rng.uniform() < 0.5
        lid = (rng.uniform(0.25, 0.35), width * rng.uniform(0.25, 0.35)) if has_lid else None
        lid_rgb = np.array([0.86, 0.7, 0.34]) * rng.uniform(0.92, 1.05) if has_lid else None
    else:
        width, pins, pin_length = rng.uniform(0.4, 0.7), int(rng.integers(2, 7)), rng.uniform(0.2, 0.35)
        body = np.array([0.66, 0.67, 0.7]) * rng.uniform(0.9, 1.05)
        gold = rng.uniform() < 0.5
        pin = np.array([0.86, 0.72, 0.4]) if gold else np.array([0.8, 0.8, 0.82])
        mark, four = None, False
        lid, lid_rgb = (0.47, width / 2 - 0.03), None
    corner = rng.uniform(0.01, 0.04)
    rows, chars = int(rng.integers(1, 4)), int(rng.integers(4, 9))
    glyph_height = min(rng.uniform(0.07, 0.11), 0.7 * width / (rows * 1.5))
    return Package(material, width, corner, pins, pin_length, 0.9 / pins * rng.uniform(0.4, 0.55), four,
                   np.clip(body, 0, 1), pin, mark, lid, lid_rgb, rng.uniform(size=(rows, chars, 5, 3)) < 0.55,
                   glyph_height, rng.normal(size=(16, 16)))


@dataclass
class View:
    """One photograph of a package: pose, background and lighting."""

    package: Package
    package_id: int
    angle: float  # radians
    scale: float  # body length in pixels / image side
    shift: tuple[float, float]  # fraction of the side
    background: np.ndarray
    gain: float
    tint: float
    ramp: tuple[float, float]
    sheen: tuple[float, float, float]  # direction, position, width of the specular band (metal)
    noise: float
    noise_seed: int


def _soft(distance: np.ndarray, edge: float) -> np.ndarray:
    """Coverage from a signed distance in body units; ``edge`` is one supersampled pixel in body units."""
    return np.clip(0.5 - distance / edge, 0.0, 1.0)


def _box_distance(u: np.ndarray, v: np.ndarray, hu: float, hv: float, corner: float = 0.0) -> np.ndarray:
    """Signed distance to a centred rounded rectangle of half sizes (hu, hv)."""
    qu, qv = np.abs(u) - hu + corner, np.abs(v) - hv + corner
    return np.hypot(np.maximum(qu, 0), np.maximum(qv, 0)) + np.minimum(np.maximum(qu, qv), 0) - corner


def _pins(u: np.ndarray, v: np.ndarray, pkg: Package, half_length: float, half_width: float, edge: float,
          ) -> tuple[np.ndarray, np.ndarray]:
    """Coverage and position along the pin (0 at the body, 1 at the tip) of one row of pins on each long side
    (of a body whose long half side is ``half_length``), in body units."""
    pitch = 2 * half_length * 0.9 / pkg.pins
    k = np.clip(np.rint(u / pitch + (pkg.pins - 1) / 2), 0, pkg.pins - 1)
    du = u - (k - (pkg.pins - 1) / 2) * pitch
    along = (np.abs(v) - half_width) / pkg.pin_length
    qu, qv = np.abs(du) - pkg.pin_width / 2, np.abs(along - 0.5) * pkg.pin_length - pkg.pin_length / 2
    dist = np.hypot(np.maximum(qu, 0), np.maximum(qv, 0)) + np.minimum(np.maximum(qu, qv), 0)
    return _soft(dist, edge), np.clip(along, 0.0, 1.0)


def _glyph_mask(u: np.ndarray, v: np.ndarray, pkg: Package, centre: tuple[float, float]) -> np.ndarray:
    """1 where the marking's glyph bits (rows x chars of 5 x 3 cells, one cell gap) are set."""
    rows, chars = pkg.glyphs.shape[:2]
    cell = pkg.glyph_height / 5
    gu, gv = (u - centre[0]) / cell + chars * 2, (v - centre[1]) / cell + rows * 3
    col, row = np.floor(gu).astype(np.int64), np.floor(gv).astype(np.int64)
    char, cx = col // 4, col % 4
    line, cy = row // 6, row % 6
    inside = (char >= 0) & (char < chars) & (line >= 0) & (line < rows) & (cx < 3) & (cy < 5)
    bits = pkg.glyphs[np.clip(line, 0, rows - 1), np.clip(char, 0, chars - 1), np.clip(cy, 0, 4), np.clip(cx, 0, 2)]
    return (inside & bits).astype(np.float32)


def render(view: View, size: int) -> np.ndarray:
    """The RGB image (3, size, size) of one view."""
    pkg = view.package
    n = size * SUPERSAMPLE
    length_px = view.scale * n
    edge = 1.0 / length_px  # one supersampled pixel in body units
    pix = (np.arange(n, dtype=np.float32) + 0.5) / n - 0.5
    x = (pix[None, :] - view.shift[0]) * n / length_px
    y = (pix[:, None] - view.shift[1]) * n / length_px
    cos, sin = math.cos(view.angle), math.sin(view.angle)
    u, v = cos * x + sin * y, -sin * x + cos * y
    noise_rng = np.random.default_rng(view.noise_seed)

    grain = _smooth_field(noise_rng.normal(size=(12, 12)), n)
    img = view.background.astype(np.float32)[:, None, None] * (1 + 0.05 * grain)[None]

    # pins: along the long sides (and the short sides of four-sided ceramic carriers)
    half_u, half_v = 0.5, pkg.width / 2
    cover, along = _pins(u, v, pkg, half_u, half_v - 0.01, edge)
    if pkg.four_sided:
        cover2, along2 = _pins(v, u, pkg, half_v, half_u - 0.01, edge)
        along = np.where(cover2 > cover, along2, along)
        cover = np.maximum(cover, cover2)
    bend = 1 - 0.35 * np.exp(-((along - 0.45) / 0.12) ** 2) if pkg.material == "plastic" else 1.0
    pin_rgb = pkg.pin_rgb.astype(np.float32)[:, None, None] * (bend * (0.85 + 0.15 * np.cos(along * 3)))[None]
    img = img * (1 - cover) + pin_rgb * cover

    # body
    body_d = _box_distance(u, v, half_u, half_v, pkg.corner)
    body = _soft(body_d, edge)
    texture = _smooth_field(pkg.texture, n)  # the body's grain (in the image frame: it is faint)
    grain_depth = 0.03 if pkg.material == "ceramic" else 0.06
    colour = pkg.body_rgb.astype(np.float32)[:, None, None] * (1 + grain_depth * texture)[None]
    bevel = np.exp(-((body_d + 0.012) / 0.008) ** 2)
    if pkg.material == "metal":
        direction, position, width = view.sheen
        across = math.cos(direction) * u + math.sin(direction) * v
        sheen = 0.75 + 0.5 * np.exp(-(((across - position) / width) ** 2))
        streaks = np.interp(v, np.linspace(-0.6, 0.6, 97), noise_rng.normal(size=97) * 0.03).astype(np.float32)
        colour = colour * (sheen + streaks)[None]
        seam = np.exp(-((_box_distance(u, v, *pkg.lid, pkg.corner) / 0.006) ** 2))
        colour = colour * (1 - 0.25 * seam)[None]
    colour = colour * (1 - 0.25 * bevel)[None]
    if pkg.lid_rgb is not None:
        lid = _soft(_box_distance(u, v, *pkg.lid, 0.01), edge)
        colour = colour * (1 - lid) + (pkg.lid_rgb.astype(np.float32)[:, None, None] * (1 + 0.08 * texture)[None]) * lid

    # marking: printed ink, or a laser-engraved darkening on metal
    glyphs = _glyph_mask(u, v, pkg, (0.0, 0.0))
    if pkg.mark_rgb is not None:
        colour = colour * (1 - glyphs) + pkg.mark_rgb.astype(np.float32)[:, None, None] * glyphs
    else:
        colour = colour * (1 - 0.3 * glyphs)[None]
    if pkg.material == "plastic":  # pin-1 dimple
        dimple = _soft(np.hypot(u + 0.36, v + half_v - 0.1) - 0.05, edge)
        colour = colour * (1 + 0.5 * dimple)[None]
    img = img * (1 - body) + colour * body

    # lighting, averaging down, noise
    img = img.reshape(3, size, SUPERSAMPLE, size, SUPERSAMPLE).mean(axis=(2, 4))
    ramp = (view.ramp[0] * (np.arange(size) / size - 0.5))[None, :] + (view.ramp[1] * (np.arange(size) / size
                                                                                        - 0.5))[:, None]
    tint = np.array([1 + view.tint, 1.0, 1 - view.tint], dtype=np.float32)[:, None, None]
    img = img * np.float32(view.gain) * tint * (1 + ramp.astype(np.float32))[None]
    img = img + np.float32(view.noise) * noise_rng.standard_normal(img.shape, dtype=np.float32)
    return np.clip(img, 0.0, 1.0).astype(np.float32)


def draw_views(p: SyntheticIcPackage.Params, seed: int) -> list[View]:
    """Every package and view of the dataset: the materials cycle package by package, so any prefix is balanced."""
    materials = list(p.materials or MATERIALS)
    package_seq, view_seq = np.random.SeedSequence(int(seed)).spawn(2)
    pkg_rng, rng = np.random.default_rng(package_seq), np.random.default_rng(view_seq)
    per_material = -(-p.per_class // p.views_per_package)
    views = []
    names = list(BACKGROUNDS)
    for k in range(per_material * len(materials)):
        material = materials[k % len(materials)]
        pkg = _draw_package(material, pkg_rng)
        done = (k // len(materials)) * p.views_per_package
        for _ in range(min(p.views_per_package, p.per_class - done)):
            # the whole package (pin tips included) stays in the image whatever the pose
            reach = math.hypot(0.5 + (pkg.pin_length if pkg.four_sided else 0.0), pkg.width / 2 + pkg.pin_length)
            scale = min(rng.uniform(*p.scale), (0.5 - p.offset) / reach)
            background = np.array(BACKGROUNDS[names[int(rng.integers(len(names)))]]) * rng.uniform(0.85, 1.1, 3)
            views.append(View(
                package=pkg, package_id=k,
                angle=math.radians(rng.uniform(-1, 1) * p.rotation_deg + (180.0 if rng.uniform() < 0.5 else 0.0)),
                scale=scale, shift=tuple(rng.uniform(-1, 1, 2) * p.offset), background=np.clip(background, 0, 1),
                gain=1 + rng.uniform(-1, 1) * p.lighting, tint=rng.uniform(-0.06, 0.06),
                ramp=tuple(rng.uniform(-0.25, 0.25, 2)),
                sheen=(rng.uniform(0, 2 * math.pi), rng.uniform(-0.3, 0.3), rng.uniform(0.1, 0.25)),
                noise=p.noise * rng.uniform(0.7, 1.3), noise_seed=int(rng.integers(2**63))))
    return views


def generate_ic_packages(p: SyntheticIcPackage.Params, seed: int) -> Any:
    """The ``synthetic-ic-package`` dataset for params ``p`` and ``seed`` (see the module docstring)."""
    import xarray as xr

    views = draw_views(p, seed)
    images = np.stack([render(view, p.size) for view in views])
    classes = list(MATERIALS)
    labels = np.array([view.package.material for view in views])
    data = {
        "image": (("sample", "channel", "y", "x"), images, {"description": "RGB microscope image"}),
        "label": ("sample", labels, {"classes": classes, "description": "packaging material"}),
        "label_index": ("sample", np.array([classes.index(c) for c in labels], dtype=np.int64),
                        {"description": "index of label in attrs['classes']"}),
        "package_id": ("sample", np.array([view.package_id for view in views], dtype=np.int64),
                       {"description": "package: its views share body, pins and marking"}),
        "rotation_deg": ("sample", np.degrees([view.angle for view in views]), {"units": "deg"}),
        "scale": ("sample", np.array([view.scale for view in views]),
                  {"description": "body length / image side"}),
        "pins_per_side": ("sample", np.array([view.package.pins for view in views], dtype=np.int64)),
    }
    ds = xr.Dataset(data, coords={"sample": np.arange(len(views))})
    ds.attrs.update(source="synthetic-ic-package", classes=classes)
    return ds

"""Plane-strain thermo-elastic finite elements (scikit-fem) over rectangles of material: the solver of the
``fea-package`` model (:mod:`.fea`) and of the bimetal-strip check (:func:`solve_strip`).

Load: a uniform temperature change dT from the stress-free state (the cool-down after reflow or underfill
cure, or one leg of a thermal cycle). In plane strain (eps_zz = 0) each material's free thermal strain
alpha dT acts as the in-plane initial strain (1 + nu) alpha dT; in stress form
sigma = 2 mu eps + lambda tr(eps) I - beta dT I with beta = (3 lambda + 2 mu) alpha = E alpha / (1 - 2 nu),
and sigma_zz = lambda tr(eps) - beta dT. Materials are linear elastic and isotropic (``materials.py``).
Plane strain holds the section at its stress-free length out of plane, as in a long strip; the middle of
a square package also shrinks and bends out of plane, which ``formulation: generalized-plane-strain``
models (eps_zz = e0 + b y, with e0 and b set by zero out-of-plane force and moment). Plane strain gives
the larger warpage and out-of-plane die stress sigma_zz; generalized plane strain is closer to a plate.

Elements: 9-node quadrilaterals (``ElementQuad2``), which represent the linear through-thickness strain
of a bent layer exactly, so one or two elements per layer give the Timoshenko bimetal curvature (see
``solve_strip`` and tests/plugins/test_fea.py). The mesh is a tensor grid whose lines follow every
material boundary, with ``mesh_density`` elements per mm away from the die edge, graded down to four
times smaller towards it, where the shear in the bump layer and the die-edge stresses concentrate.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import materials as matlib
from .materials import Material

DEFAULT_MESH_DENSITY = 4
"""Elements per mm away from the die edge at the default mesh (see benchmarks/fea.py for the cost)."""

EDGE_REFINEMENT = 4.0
"""Elements at the die edge are this many times smaller than far from it."""

EDGE_GROWTH = 0.3
"""Element size grows by this fraction of the distance from the die edge (a smooth grading)."""


@dataclass(frozen=True)
class Block:
    """A rectangle of one (possibly homogenized) material, in mm.

    ``props`` are the plane-strain constants (lambda, mu, beta) in MPa, MPa and MPa/K.
    """

    x0: float
    x1: float
    y0: float
    y1: float
    role: str
    label: str
    props: tuple[float, float, float]


@dataclass
class Solution:
    """A solved model: mesh, basis, displacement (mm), strains at the quadrature points, material constants.

    ``props`` holds (lambda, mu, beta) per element in MPa, MPa, MPa/K; ``strain_q`` the strains
    (eps_xx, eps_yy, gamma_xy, eps_zz) at every quadrature point, ``xq`` their coordinates (mm) and
    ``dx`` their integration weights (mm^2). Element values are area-weighted averages over the element.
    """

    mesh: Any
    basis: Any
    u: np.ndarray
    delta_t_k: float
    role: np.ndarray
    label: np.ndarray
    props: np.ndarray  # (3, elements)
    strain_q: np.ndarray  # (4, elements, quadrature points)
    xq: np.ndarray  # (2, elements, quadrature points)
    dx: np.ndarray  # (elements, quadrature points)
    out_of_plane: tuple[float, float] = (0.0, 0.0)  # eps_zz = e0 + b y (generalized plane strain)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def dofs(self) -> int:
        """Number of unknowns (before the boundary conditions remove a few)."""
        return int(self.basis.N) + (2 if self.meta.get("generalized") else 0)

    @property
    def area(self) -> np.ndarray:
        """Element areas (mm^2)."""
        return self.dx.sum(axis=1)

    @property
    def strain(self) -> np.ndarray:
        """Element-averaged strains (4, elements): eps_xx, eps_yy, gamma_xy (engineering), eps_zz."""
        return (self.strain_q * self.dx).sum(axis=-1) / self.area

    @property
    def stress(self) -> np.ndarray:
        """Element-averaged stresses (4, elements) in MPa: sigma_xx, sigma_yy, sigma_xy, sigma_zz."""
        return self.stress_with(self.props)

    def stress_with(self, props: Sequence[Any], at_quadrature: bool = False) -> np.ndarray:
        """Stresses that a material with ``props`` (lambda, mu, beta; scalars or per element) has at the strains.

        Element averages (4, elements), or with ``at_quadrature`` (4, elements, quadrature points).
        """
        strain = self.strain_q if at_quadrature else self.strain
        lam, mu, beta = (np.asarray(p, dtype=float) for p in props)
        if at_quadrature:
            lam, mu, beta = (p[..., None] if p.ndim else p for p in (lam, mu, beta))
        exx, eyy, gxy, ezz = strain
        tr = exx + eyy + ezz
        thermal = beta * self.delta_t_k
        return np.array([2 * mu * exx + lam * tr - thermal, 2 * mu * eyy + lam * tr - thermal, mu * gxy,
                         2 * mu * ezz + lam * tr - thermal])

    def bottom_profile(self) -> tuple[np.ndarray, np.ndarray]:
        """x (mm) and vertical displacement u_y (mm) of the bottom surface's vertices, sorted by x."""
        p = self.mesh.p
        nodes = np.flatnonzero(np.isclose(p[1], p[1].min()))
        nodes = nodes[np.argsort(p[0, nodes])]
        return p[0, nodes], self.u[self.basis.nodal_dofs[1, nodes]]


def von_mises(stress: np.ndarray) -> np.ndarray:
    """Von Mises stress of (sigma_xx, sigma_yy, sigma_xy, sigma_zz) arrays (plane strain, tau_xz = tau_yz = 0)."""
    sxx, syy, sxy, szz = stress
    return np.sqrt(0.5 * ((sxx - syy) ** 2 + (syy - szz) ** 2 + (szz - sxx) ** 2) + 3.0 * sxy**2)


def principal_max(stress: np.ndarray) -> np.ndarray:
    """First (largest) principal stress in 3-D: the larger in-plane principal value or sigma_zz."""
    sxx, syy, sxy, szz = stress
    in_plane = 0.5 * (sxx + syy) + np.sqrt(0.25 * (sxx - syy) ** 2 + sxy**2)
    return np.maximum(in_plane, szz)


def _graded(a: float, b: float, h_far: float, hot: Sequence[float]) -> np.ndarray:
    """Nodes from a to b: size h_far, shrinking to h_far / EDGE_REFINEMENT towards the ``hot`` points."""
    if not hot:
        n = max(1, math.ceil((b - a) / h_far - 1e-9))
        return np.linspace(a, b, n + 1)
    s = np.linspace(a, b, 4001)
    dist = np.min(np.abs(s[:, None] - np.asarray(hot)[None, :]), axis=1)
    size = np.minimum(h_far, h_far / EDGE_REFINEMENT + EDGE_GROWTH * dist)
    cum = np.concatenate([[0.0], np.cumsum(0.5 * (1 / size[1:] + 1 / size[:-1]) * np.diff(s))])
    n = max(1, math.ceil(cum[-1] - 1e-9))
    nodes = np.interp(np.linspace(0.0, cum[-1], n + 1), cum, s)
    nodes[0], nodes[-1] = a, b
    return nodes


def _grid(lines: Sequence[float], h_far: float, hot: Sequence[float] = ()) -> np.ndarray:
    """Grid coordinates through every line, each interval meshed with :func:`_graded`."""
    cuts = np.unique(np.round(np.asarray(lines, dtype=float), 12))
    parts = [_graded(a, b, h_far, hot) for a, b in zip(cuts[:-1], cuts[1:], strict=True)]
    return np.unique(np.concatenate(parts))


def solve_blocks(blocks: Sequence[Block], delta_t_k: float, mesh_density: float, *,
                 x_lines: Sequence[float] = (), y_lines: Sequence[float] = (), hot_x: Sequence[float] = (),
                 hot_y: Sequence[float] = (), generalized: bool = False) -> Solution:
    """Solve the thermo-elastic problem over rectangles of material (the one solver every model uses).

    Args:
        blocks: the material rectangles (mm); the domain is their union, x >= 0, with the symmetry line
            at x = 0. Grid lines follow every block edge, ``x_lines`` and ``y_lines``.
        delta_t_k: uniform temperature change from the stress-free state.
        mesh_density: elements per mm away from ``hot_x`` (graded finer towards those x).
        generalized: generalized plane strain: eps_zz = e0 + b y with e0 and b unknowns set by zero net
            out-of-plane force and moment (the section may shrink and bend out of its plane, as the middle
            of a square package does) instead of eps_zz = 0.

    Returns:
        the :class:`Solution`; displacements in mm, strains dimensionless, stresses in MPa.
    """
    from scipy.sparse.linalg import splu
    from skfem import Basis, BilinearForm, ElementQuad2, ElementVector, LinearForm, MeshQuad, asm, condense, solve
    from skfem.helpers import ddot, eye, sym_grad, trace

    if not (mesh_density >= 1):
        raise ValueError(f"mesh_density must be >= 1, got {mesh_density}")
    if not math.isfinite(delta_t_k):
        raise ValueError(f"delta_t_k must be a finite number, got {delta_t_k}")
    h = 1.0 / mesh_density
    xs = _grid([0.0, *x_lines, *(b.x0 for b in blocks), *(b.x1 for b in blocks)], h, hot_x)
    ys = _grid([*y_lines, *(b.y0 for b in blocks), *(b.y1 for b in blocks)], h, hot_y)
    mesh = MeshQuad.init_tensor(xs, ys)
    centre = mesh.p[:, mesh.t].mean(axis=1)
    owner = np.full(mesh.t.shape[1], -1)
    for i, b in enumerate(blocks):
        inside = (centre[0] > b.x0) & (centre[0] < b.x1) & (centre[1] > b.y0) & (centre[1] < b.y1)
        owner[inside & (owner < 0)] = i
    if (owner < 0).any():
        mesh = mesh.remove_elements(np.flatnonzero(owner < 0))
        owner = owner[owner >= 0]
    # 3x3 Gauss points integrate the stiffness of 9-node rectangles exactly
    basis = Basis(mesh, ElementVector(ElementQuad2()), intorder=5)
    props = np.array([blocks[i].props for i in owner]).T  # (3, elements)
    nq = basis.X.shape[-1]
    lam, mu, beta = (np.repeat(row[:, None], nq, axis=1) for row in props)

    @BilinearForm
    def stiffness(u, v, w):
        eps = sym_grad(u)
        return ddot(2.0 * w.mu * eps + w.lam * eye(trace(eps), 2), sym_grad(v))

    @LinearForm
    def thermal(v, w):
        return w.beta * delta_t_k * trace(sym_grad(v))

    K = asm(stiffness, basis, lam=lam, mu=mu)
    f = asm(thermal, basis, beta=beta)
    x_min = mesh.p[0].min()
    symmetry = basis.get_dofs(lambda x: np.isclose(x[0], x_min)).all("u^1")
    corner = np.flatnonzero(np.isclose(mesh.p[0], x_min) & np.isclose(mesh.p[1], mesh.p[1].min()))[0]
    fixed = np.unique(np.concatenate([symmetry, [basis.nodal_dofs[1, corner]]]))
    xq = np.array(basis.global_coordinates())  # (2, elements, quadrature points)
    if generalized:
        # Extra unknowns g = (e0, b) with eps_zz = e0 + b y: couplings lambda tr(eps(v)) eps_zz, the
        # out-of-plane stiffness (lambda + 2 mu) eps_zz^2 and thermal work beta dT eps_zz.
        @LinearForm
        def coupling(v, w):
            return w.lam * w.g * trace(sym_grad(v))

        y = xq[1]
        shapes = (np.ones_like(y), y)
        K_ug = np.column_stack([asm(coupling, basis, lam=lam, g=g) for g in shapes])
        stiff_zz = (lam + 2 * mu) * basis.dx
        K_gg = np.array([[np.sum(stiff_zz * a * b) for b in shapes] for a in shapes])
        f_g = np.array([np.sum(beta * delta_t_k * a * basis.dx) for a in shapes])
        # Two dense columns would ruin the sparse factorization: eliminate the two unknowns instead
        # (Schur complement) with one factorization and three right-hand sides.
        free = np.setdiff1d(np.arange(basis.N), fixed)
        lu = splu(K[free][:, free].tocsc())
        rhs = lu.solve(np.column_stack([f[free], K_ug[free]]))
        g = np.linalg.solve(K_gg - K_ug[free].T @ rhs[:, 1:], f_g - K_ug[free].T @ rhs[:, 0])
        u = np.zeros(basis.N)
        u[free] = rhs[:, 0] - rhs[:, 1:] @ g
        e0, b = float(g[0]), float(g[1])
    else:
        u = solve(*condense(K, f, D=fixed))
        e0 = b = 0.0

    grad = np.array(basis.interpolate(u).grad)  # (2, 2, elements, quadrature points)
    strain_q = np.array([grad[0, 0], grad[1, 1], grad[0, 1] + grad[1, 0], e0 + b * xq[1]])
    return Solution(mesh=mesh, basis=basis, u=u, delta_t_k=float(delta_t_k),
                    role=np.array([blocks[i].role for i in owner], dtype=object),
                    label=np.array([blocks[i].label for i in owner], dtype=object),
                    props=props, strain_q=strain_q, xq=xq, dx=basis.dx, out_of_plane=(e0, b),
                    meta={"generalized": generalized})


def cell_rows(y0: float, y1: float, cell: float) -> list[float]:
    """Row boundaries of the sampling cells across a layer: a row of height ``cell`` at each face, the rest
    between (one row when the layer is thinner than two cells)."""
    if y1 - y0 < 2 * cell:
        return [y0, y1]
    return sorted({y0, y0 + cell, y1 - cell, y1})


def cell_max(sol: Solution, elements: np.ndarray, value: Any, x_edge: float, y0: float, y1: float, cell: float,
             props: Sequence[float] | None = None) -> float:
    """Largest ``value(stress)`` over stresses averaged in cells about ``cell`` (mm) in size.

    The cells tile the selected elements' region in columns ``cell`` wide from ``x_edge`` inwards and in
    the rows of :func:`cell_rows` from y0 to y1. Averaging over a fixed physical size makes the peak
    stress at a bi-material corner, which is singular in linear elasticity, a number that converges as
    the mesh is refined instead of one that grows without bound. The package mesh has grid lines on the
    cell boundaries next to the die edge, so those averages are exact integrals over whole elements.

    Args:
        elements: boolean mask of the elements to look at.
        value: function of a (4, cells) stress array returning (cells,) values (von Mises, principal).
        props: (lambda, mu, beta) of a phase whose stress to recover (default: the elements' own).
    """
    stress = sol.stress_with(sol.props if props is None else props, at_quadrature=True)[:, elements]
    x, y = sol.xq[0, elements].ravel(), sol.xq[1, elements].ravel()
    w = sol.dx[elements].ravel()
    rows = np.asarray(cell_rows(y0, y1, cell))
    ix = np.maximum(np.floor((x_edge - x) / cell), 0).astype(int)
    iy = np.clip(np.searchsorted(rows, y) - 1, 0, len(rows) - 2)
    key = ix * (len(rows) - 1) + iy
    weight = np.bincount(key, weights=w)
    used = weight > 0
    means = np.array([np.bincount(key, weights=w * s.ravel())[used] / weight[used] for s in stress])
    return float(np.max(value(means)))


def curvature_of(sol: Solution, fraction: float = 0.5) -> float:
    """Curvature (1/m) of the bottom surface: a parabola fitted over the central ``fraction`` of it.

    Positive when the surface is concave seen from above (edges up), the sign convention of
    :func:`reflow.plugins.physics.bilayer.bilayer`. Away from the free edges a bent strip's curvature is
    uniform, so the fit reads the curvature that beam theory predicts.
    """
    x, uy = sol.bottom_profile()
    keep = x <= fraction * x.max()
    a = np.polyfit(x[keep], uy[keep], 2)[0]  # uy (mm) = a x^2 + ...: kappa = 2 a (1/mm)
    return float(2.0 * a * 1e3)


def signed_warpage_um(sol: Solution) -> float:
    """Bottom-surface displacement range (um), positive when the edge is above the centre."""
    _, uy = sol.bottom_profile()
    span = float(uy.max() - uy.min()) * 1e3
    return span if uy[-1] >= uy[0] else -span


def solve_strip(layers: Sequence[tuple[Material | str, float]], length_mm: float, delta_t_k: float,
                mesh_density: float = DEFAULT_MESH_DENSITY,
                extra_materials: Mapping[str, Material] | None = None, generalized: bool = False) -> dict[str, float]:
    """A free strip of full-length layers (bottom first) with the same solver as the package model.

    This is the check against Timoshenko's bimetal formula: two layers, long against their thickness.
    In plane strain it is Timoshenko's strip with E / (1 - nu^2) and CTE (1 + nu) alpha (cylindrical
    bending of a wide plate); in generalized plane strain the plate bends equally both ways and it is
    Timoshenko's with the biaxial modulus E / (1 - nu) and alpha.

    Args:
        layers: (material or its name, thickness in mm) from the bottom up.
        length_mm: the strip's full length (the model meshes half of it).
        generalized: generalized instead of plain plane strain (see :func:`solve_blocks`).

    Returns:
        ``curvature_1_per_m`` (central fit, + = edges up), ``warpage_um`` (signed bottom-surface range),
        ``dofs``.
    """
    if not layers:
        raise ValueError("a strip needs at least one layer")
    if not (length_mm > 0):
        raise ValueError(f"length_mm must be positive, got {length_mm}")
    blocks, y = [], 0.0
    for item, thickness in layers:
        mat = item if isinstance(item, Material) else matlib.get(item, dict(extra_materials or {}))
        if not (thickness > 0):
            raise ValueError(f"layer {mat.name}: thickness must be positive, got {thickness}")
        blocks.append(Block(0.0, length_mm / 2, y, y + thickness, mat.kind, mat.name, mat.lame_plane_strain()))
        y += thickness
    sol = solve_blocks(blocks, delta_t_k, mesh_density, generalized=generalized)
    return {"curvature_1_per_m": curvature_of(sol), "warpage_um": signed_warpage_um(sol), "dofs": sol.dofs}

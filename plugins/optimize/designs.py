"""Designs of experiments: space-filling (scipy.stats.qmc) and classical (pyDOE3).

Space-filling designs draw points in the unit cube of the varying factors and map them onto each factor
(continuous, log, integer, categorical). Classical designs work in coded levels (-1, 0, +1, axial
points) and map the extreme coded levels onto each factor's bounds.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

import numpy as np
import reflow
from pydantic import Field
from reflow.space import Space, design_size_problem


def _seed(rng: np.random.Generator) -> int:
    return int(rng.integers(0, 2**31 - 1))


class _SpaceFilling(reflow.Design):
    class Params(reflow.Params):
        samples: int = Field(16, ge=1, description="number of design points")

    def unit(self, d: int, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError

    def space_problems(self, space: Space) -> list[str]:
        problem = design_size_problem("samples", self.params.samples, space)
        return [problem] if problem else []

    def generate(self, space: Space, rng: np.random.Generator):
        d = len(space.free)
        u = self.unit(d, rng) if d else np.zeros((self.params.samples, 0))
        ds = space.to_dataset(space.from_unit(u))
        ds.attrs["design"] = type(self).__name__
        ds.attrs.update(self.design_attrs())
        return ds

    def design_attrs(self) -> dict:
        """Extra ``attrs`` of the generated design (what a size-dependent choice settled on)."""
        return {}


OPTIMIZE_LIMIT = 500
"""Default size limit of LHS optimization: scipy's ``random-cd`` and ``lloyd`` cost grows as samples^2
(about 2 s at 500 points and 4 factors on a busy 2-core machine, 17 s at 3000 points); above it a Latin
hypercube is decorrelated instead (linear cost)."""


def latin_hypercube(n: int, d: int, rng: np.random.Generator, scramble: bool = True) -> np.ndarray:
    """A plain Latin hypercube of ``n`` points in ``[0, 1)^d``: each column a random permutation of the ``n``
    strata, at a random position inside each (``scramble``) or at its centre.

    Why not scipy's: importing ``scipy.stats`` for it takes a second or more, longer than drawing 10^6 points.
    """
    strata = rng.permuted(np.broadcast_to(np.arange(n, dtype=float)[:, None], (n, d)), axis=0)
    offset = rng.random((n, d)) if scramble else 0.5
    return (strata + offset) / n


def decorrelate(sample: np.ndarray) -> np.ndarray:
    """Re-pair the columns of a Latin hypercube so their rank correlations shrink (Iman and Conover, 1982).

    Why: a cheap space-filling improvement for designs too large for ``random-cd``. Each column keeps its
    values (so its strata: still one point per stratum per factor); only the pairing of the columns changes,
    towards van der Waerden scores whose correlation matrix is the identity. Cost: one sort per column.
    """
    n, d = sample.shape
    if d < 2 or n <= d + 1:
        return sample
    from scipy.special import ndtri

    strata = np.minimum((sample * n).astype(np.int64), n - 1)  # a point's stratum is its rank in the column
    for j in range(d):
        if np.bincount(strata[:, j], minlength=n).max() != 1:
            raise ValueError("decorrelate needs a Latin hypercube: one point per stratum per column")
    scores = ndtri(np.arange(1, n + 1) / (n + 1.0))[strata]  # van der Waerden scores in the sample's order
    try:
        lower = np.linalg.cholesky(np.corrcoef(scores, rowvar=False))
    except np.linalg.LinAlgError:  # a degenerate pairing: leave it
        return sample
    target = np.linalg.solve(lower, scores.T)  # rows: uncorrelated scores, close to the sample's own pairing
    del scores
    out = np.empty_like(sample)
    by_stratum = np.empty(n)
    for j in range(d):  # the k-th smallest target score gets the value of stratum k
        by_stratum[strata[:, j]] = sample[:, j]
        out[np.argsort(target[j]), j] = by_stratum
    return out


class LatinHypercube(_SpaceFilling):
    """Latin hypercube sample (scipy.stats.qmc): each factor's range cut into ``samples`` strata.

    ``random-cd`` (scipy's centred-discrepancy optimization) and ``lloyd`` run up to ``optimize_limit``
    samples; above it the hypercube is decorrelated (Iman-Conover rank pairing), which keeps one point per
    stratum per factor at a linear cost. ``attrs["optimization"]`` of the design says which ran.
    """

    class Params(_SpaceFilling.Params):
        optimization: Literal["random-cd", "lloyd", "decorrelate"] | None = Field(
            "random-cd", description="improve space filling: scipy's LatinHypercube optimization (random-cd, "
                                     "lloyd; lloyd moves points off the strata) up to optimize_limit samples, "
                                     "or decorrelate (rank correlations of the factors removed, any size)")
        optimize_limit: int = Field(
            OPTIMIZE_LIMIT, ge=0, le=10_000,
            description="most samples that random-cd or lloyd optimize (their cost grows as samples^2: about "
                        "2 s at 500); a larger design is decorrelated instead")
        scramble: bool = Field(True, description="random positions inside strata (else centred)")

    @property
    def method(self) -> str | None:
        """The optimization that runs for this size."""
        opt = self.params.optimization
        if opt in ("random-cd", "lloyd") and self.params.samples > self.params.optimize_limit:
            return "decorrelate"
        return opt

    def unit(self, d, rng):
        method = self.method
        if method in ("random-cd", "lloyd"):
            from scipy.stats import qmc

            sampler = qmc.LatinHypercube(d, scramble=self.params.scramble, optimization=method, seed=_seed(rng))
            return sampler.random(self.params.samples)
        sample = latin_hypercube(self.params.samples, d, rng, scramble=self.params.scramble)
        return decorrelate(sample) if method == "decorrelate" else sample

    def design_attrs(self) -> dict:
        return {"optimization": self.method or "none"}


class Sobol(_SpaceFilling):
    """Scrambled Sobol sequence (scipy.stats.qmc); a power of two of samples keeps its balance."""

    class Params(_SpaceFilling.Params):
        scramble: bool = Field(True, description="Owen scrambling")

    def unit(self, d, rng):
        import warnings

        from scipy.stats import qmc

        sampler = qmc.Sobol(d, scramble=self.params.scramble, seed=_seed(rng))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # non-power-of-two sizes are allowed
            return sampler.random(self.params.samples)


class Halton(_SpaceFilling):
    """Scrambled Halton sequence (scipy.stats.qmc)."""

    class Params(_SpaceFilling.Params):
        scramble: bool = Field(True, description="scramble the sequence")

    def unit(self, d, rng):
        from scipy.stats import qmc

        return qmc.Halton(d, scramble=self.params.scramble, seed=_seed(rng)).random(self.params.samples)


class RandomDesign(_SpaceFilling):
    """Independent uniform random points."""

    def unit(self, d, rng):
        return rng.random((self.params.samples, d))


class _Coded(reflow.Design):
    """Designs in coded levels; ``coded()`` returns an (n, d) array in [-a, a]."""

    def coded(self, space: Space) -> np.ndarray:
        raise NotImplementedError

    def generate(self, space: Space, rng: np.random.Generator):
        coded = np.atleast_2d(self.coded(space))
        scale = np.max(np.abs(coded), axis=0)
        scale[scale == 0] = 1.0
        u = (coded / scale + 1.0) / 2.0  # extreme coded levels -> bounds
        values = {}
        j = 0
        for p in space.parameters:
            if p.kind == "fixed":
                values[p.name] = p.from_unit(np.zeros(len(u)))
                continue
            col = u[:, j]
            j += 1
            if p.kind == "continuous":
                values[p.name] = p.from_unit(col)
            else:  # integer/categorical: spread the coded levels over the available values
                levels = np.unique(np.round(col, 12))
                index = np.searchsorted(levels, np.round(col, 12))
                values[p.name] = p.from_level(index, len(levels))
        ds = space.to_dataset(values)
        ds.attrs["design"] = type(self).__name__
        return ds

    def space_problems(self, space: Space) -> list[str]:
        if not space.free:
            return ["the space has no varying factor"]
        return []


MAX_FACTORIAL = 1_000_000
"""Most points of a full factorial (a million trials run in about a minute on a closed form)."""


def _grid(levels: list[int]) -> np.ndarray:
    """Every combination of level indices, (prod(levels), d), the last factor varying fastest (as
    ``itertools.product``); built as arrays, so a million points take milliseconds."""
    if not levels:
        return np.zeros((1, 0), dtype=np.int64)
    return np.indices(levels, dtype=np.int64).reshape(len(levels), -1).T


class FullFactorial(_Coded):
    """Every combination of levels; categorical factors use all their choices."""

    class Params(reflow.Params):
        levels: int = Field(3, ge=2, le=20, description="levels per continuous factor")

    def _levels(self, space: Space) -> list[int]:
        out = []
        for p in space.free:
            if p.kind in ("categorical", "integer"):
                out.append(min(p.levels, self.params.levels) if p.kind == "integer" else p.levels)
            else:
                out.append(self.params.levels)
        return out

    def space_problems(self, space):
        problems = super().space_problems(space)
        n = math.prod(self._levels(space)) if space.free else 0
        if n > MAX_FACTORIAL:
            problems.append(f"a full factorial of this space has {n:,} points (at most {MAX_FACTORIAL:,}); "
                            "lower 'levels' or use lhs")
        else:
            too_big = design_size_problem("this full factorial design", n, space)
            problems += [too_big + "; lower 'levels' or use lhs"] if too_big else []
        return problems

    def coded(self, space):
        levels = self._levels(space)
        return _grid(levels).astype(float) - (np.array(levels) - 1) / 2.0

    def generate(self, space, rng):
        levels = self._levels(space)
        grid = _grid(levels)
        values = {}
        j = 0
        for p in space.parameters:
            if p.kind == "fixed":
                values[p.name] = p.from_unit(np.zeros(len(grid)))
                continue
            values[p.name] = p.from_level(grid[:, j], levels[j])
            j += 1
        ds = space.to_dataset(values)
        ds.attrs["design"] = "FullFactorial"
        return ds


class FractionalFactorial(_Coded):
    """Two-level fractional factorial of a given resolution (pyDOE3 ``fracfact_by_res``)."""

    class Params(reflow.Params):
        resolution: int = Field(3, ge=3, le=6, description="design resolution (III to VI)")

    def space_problems(self, space):
        problems = super().space_problems(space)
        for p in space.free:
            if p.kind == "categorical" and len(p.choices) != 2:
                problems.append(f"factor {p.name!r} has {len(p.choices)} choices; two-level designs need 2")
        if space.free and not problems:
            from pyDOE3 import fracfact_by_res

            try:
                fracfact_by_res(len(space.free), self.params.resolution)
            except ValueError:
                problems.append(
                    f"no two-level fraction of resolution {self.params.resolution} exists for "
                    f"{len(space.free)} factors; lower the resolution or use full-factorial with levels: 2")
        return problems

    def coded(self, space):
        from pyDOE3 import fracfact_by_res

        return fracfact_by_res(len(space.free), self.params.resolution)


def _response_surface_problems(space: Space, design: str, min_factors: int) -> list[str]:
    """Response-surface designs need numeric factors, and enough of them."""
    problems = [f"factor {p.name!r} is categorical; {design} designs need numeric factors"
                for p in space.free if p.kind == "categorical"]
    if len(space.free) < min_factors:
        problems.append(f"a {design} design needs at least {min_factors} varying factors")
    return problems


class CentralComposite(_Coded):
    """Central composite design (pyDOE3 ``ccdesign``) for response surfaces; continuous factors only."""

    class Params(reflow.Params):
        face: Literal["circumscribed", "inscribed", "faced"] = Field(
            "faced", description="where the axial points go; 'faced' keeps three levels per factor")
        alpha: Literal["orthogonal", "rotatable"] = Field("orthogonal", description="axial distance rule")
        center: tuple[Annotated[int, Field(ge=0, le=1000)], Annotated[int, Field(ge=0, le=1000)]] = Field(
            (1, 1), description="centre points in the factorial and axial blocks")

    def space_problems(self, space):
        problems = super().space_problems(space) + _response_surface_problems(space, "central composite", 2)
        d = len(space.free)  # a two-level full factorial, two axial points per factor, the centre points
        too_big = design_size_problem("this central composite design", 2**d + 2 * d + sum(self.params.center), space)
        return problems + ([too_big + "; use fewer factors or box-behnken"] if too_big else [])

    def coded(self, space):
        from pyDOE3 import ccdesign

        face = {"circumscribed": "ccc", "inscribed": "cci", "faced": "ccf"}[self.params.face]
        return ccdesign(len(space.free), center=self.params.center, alpha=self.params.alpha, face=face)


class BoxBehnken(_Coded):
    """Box-Behnken design (pyDOE3 ``bbdesign``): three levels, no corner points; 3+ numeric factors."""

    class Params(reflow.Params):
        center: int | None = Field(None, ge=1, le=1000, description="centre points (default: pyDOE3's choice)")

    def space_problems(self, space):
        problems = super().space_problems(space) + _response_surface_problems(space, "Box-Behnken", 3)
        d = len(space.free)  # four runs for every pair of factors, plus the centre points
        too_big = design_size_problem("this Box-Behnken design", 2 * d * (d - 1) + (self.params.center or d), space)
        return problems + ([too_big + "; use fewer factors or lhs"] if too_big else [])

    def coded(self, space):
        from pyDOE3 import bbdesign

        return bbdesign(len(space.free), center=self.params.center)

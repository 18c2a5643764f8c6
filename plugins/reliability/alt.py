"""Accelerated life (life-stress) model ``life-stress``: one Weibull or lognormal fitted jointly to every test
condition, its scale a function of the stresses, extrapolated to use conditions with bounds.

The life L (the Weibull scale eta, or the lognormal median exp(mu)) depends on the stresses through a law that
is linear in its coefficients once logged: ``ln L = w0 + sum_j w_j g_j(s_j) + offset``, with g = 1/s or ln s:

==================  =========================================  ====================================
relationship        L(stress)                                  stresses (roles)
==================  =========================================  ====================================
arrhenius           b exp(a / T)                               temperature (K)
eyring              (1 / T) exp(-(c - a / T))                  temperature (K)
inverse-power       a S^n                                      stress
coffin-manson       a dT^n  (n < 0: the Coffin-Manson          delta_t (K)
                    exponent is -n)
norris-landzberg    A dT^n f^m exp(a / T_max)                  delta_t, frequency, t_max (K)
peck                A RH^n exp(a / T)                          humidity (%RH), temperature (K)
==================  =========================================  ====================================

a / T terms are Arrhenius terms: a = Ea / k_B, reported as ``activation_energy_ev`` too. The conventions are the
`reliability` library's (Reid, ``ALT_fitters``: Exponential, Eyring, Power, Power-Exponential), so its numbers
can be compared directly. The shape (Weibull beta or lognormal sigma) is common to every condition; a
likelihood-ratio test compares that with one shape per condition (each condition's own scale in both, so the
test is about the shape alone, as in ReliaSoft ALTA): chi-square with (conditions - 1) degrees of freedom.

The fit (:mod:`.loglinear`) maximizes the censored log-likelihood of :mod:`.censoring` (exact, right-, left-,
interval-censored units; ``time`` + ``failed`` or ``lower`` + ``upper``) on centred and scaled stress terms (for
a well conditioned optimum) by BFGS; the covariance is the inverse observed information (central differences), and
B-life bounds at any stress are Fisher (Wald) bounds on ln B_p, as in Meeker and Escobar (1998), ch. 17.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import reflow
from pydantic import Field, model_validator
from reflow.errors import DataError
from reflow.plotting import pyplot, save_figure

from .censoring import Censored
from .lifedata import LifeParams, has_variable
from .lifemodel import BLifeOutputs, b_lives_field, b_lives_validator, column, finite_values, output_dim
from .loglinear import fit_log_linear, frozen, log_linear_loglik, quantile_term, read_censored, require_failures
from .mle import maximize
from .probplot import adjusted_ranks, finish_probability_plot, weibull_y

if TYPE_CHECKING:
    import xarray as xr
    from reflow.context import RunContext

BOLTZMANN_EV = 8.617333262e-5  # eV/K (CODATA 2018)

# role -> default variable name in the data, what it is, whether it is an absolute temperature
ROLES: dict[str, tuple[str, str, bool]] = {
    "temperature": ("temperature_k", "absolute temperature", True),
    "t_max": ("t_max_k", "maximum temperature of the cycle", True),
    "delta_t": ("delta_t_k", "temperature swing of the cycle", False),
    "frequency": ("frequency_per_day", "cycling frequency", False),
    "humidity": ("humidity_rh", "relative humidity (%)", False),
    "stress": ("stress", "stress", False),
}

# relationship -> (intercept name, how it is reported, [(role, transform, coefficient name)], eyring offset)
RELATIONSHIPS: dict[str, tuple[str, str, list[tuple[str, str, str]], bool]] = {
    "arrhenius": ("b", "exp", [("temperature", "inv", "a")], False),
    "eyring": ("c", "neg", [("temperature", "inv", "a")], True),
    "inverse-power": ("a", "exp", [("stress", "log", "n")], False),
    "coffin-manson": ("a", "exp", [("delta_t", "log", "n")], False),
    "norris-landzberg": ("A", "exp", [("delta_t", "log", "n"), ("frequency", "log", "m"), ("t_max", "inv", "a")],
                         False),
    "peck": ("A", "exp", [("humidity", "log", "n"), ("temperature", "inv", "a")], False),
}


# ---- the model --------------------------------------------------------------------------------------------------
class LifeStress(BLifeOutputs, reflow.Model):
    """Weibull or lognormal life-stress (accelerated life) model, fitted jointly to all test conditions.

    Train it on an ALT, e.g. ``{life-stress: {relationship: arrhenius, time: hours, failed: failed,
    use: {temperature_k: 328}}}``; used as an evaluator (``{stage: alt}``) it takes the stresses of a design
    (its features, e.g. ``temperature_k``) and returns ``b10_<time>`` with ``_lower``/``_upper`` at them.
    """

    family = "life-model"

    class Params(LifeParams):
        relationship: Literal["arrhenius", "eyring", "inverse-power", "coffin-manson", "norris-landzberg",
                              "peck"] = Field("arrhenius", description="how the life depends on the stresses")
        distribution: Literal["weibull", "lognormal"] = Field("weibull", description="life distribution at a "
                                                                                     "given stress")
        stresses: dict[str, str] = Field(default_factory=dict, description="role -> variable, e.g. {temperature: "
                                                                           "temp_k}; default names: "
                                         + ", ".join(f"{r}: {v[0]}" for r, v in ROLES.items()))
        temperature_unit: Literal["K", "C"] = Field("K", description="unit of the temperature and t_max variables "
                                                                     "(C: converted to K by + 273.15)")
        use: dict[str, float] = Field(default_factory=dict, description="use (field) condition, variable -> value, "
                                                                        "for the summary: e.g. {temperature_k: 328}")
        b_lives: list[float] = b_lives_field()
        bounds: Literal["fisher", "likelihood-ratio"] = Field(
            "fisher", description="B-life bounds at a stress: fisher (delta method, instant) or likelihood-ratio "
                                  "(profile likelihood; about 0.1-0.5 s per stress condition and B-life)")

        _percent = b_lives_validator()

        @model_validator(mode="after")
        def _roles(self) -> LifeStress.Params:
            wanted = [r for r, _, _ in RELATIONSHIPS[self.relationship][2]]
            extra = [r for r in self.stresses if r not in wanted]
            if extra:
                raise ValueError(f"{self.relationship} takes the stresses {', '.join(wanted)}; "
                                 f"not {', '.join(map(repr, extra))}")
            names = [self.stresses.get(r, ROLES[r][0]) for r in wanted]
            if self.use and sorted(self.use) != sorted(names):
                raise ValueError(f"use: give the use condition of each stress variable, {', '.join(names)}; got "
                                 f"{', '.join(self.use)}")
            return self

    # ---- structure ----------------------------------------------------------------------------------------
    def _terms(self) -> list[tuple[str, str, str]]:
        return RELATIONSHIPS[self.params.relationship][2]

    def stress_variables(self) -> list[str]:
        """The data variables holding the stresses, in the order of the relationship's terms."""
        return [self.params.stresses.get(role, ROLES[role][0]) for role, _, _ in self._terms()]

    def _stress_matrix(self, data: Any, who: str, n: int | None = None) -> np.ndarray:
        """(units, terms) stresses in model units (K for temperatures), checked: a DataError names the column,
        the row and what is allowed."""
        cols = []
        for (role, _, _), name in zip(self._terms(), self.stress_variables(), strict=True):
            if not has_variable(data, name):
                raise DataError(f"{who}: no stress variable {name!r} ({ROLES[role][1]}; params.stresses."
                                f"{role}); the data has {', '.join(map(str, data.data_vars))}")
            try:
                v = np.asarray(data[name].values, dtype=float).reshape(-1)
            except (TypeError, ValueError):
                raise DataError(f"{who}: stress variable {name!r} must be numeric") from None
            bad = np.flatnonzero(~np.isfinite(v))
            if bad.size:
                raise DataError(f"{who}: stress {name!r} is missing or infinite at row {bad[0]}; every unit needs "
                                f"its {ROLES[role][1]}")
            if ROLES[role][2]:
                if self.params.temperature_unit == "C":
                    v = v + 273.15
                cold = np.flatnonzero(v <= 0)
                if cold.size:
                    raise DataError(f"{who}: stress {name!r} at row {cold[0]} is {v[cold[0]]:g} K; an absolute "
                                    f"temperature must be above 0 K (temperature_unit: "
                                    f"{self.params.temperature_unit})")
            else:
                low = np.flatnonzero(v <= 0)
                if low.size:
                    raise DataError(f"{who}: stress {name!r} at row {low[0]} is {v[low[0]]:g}; the {ROLES[role][1]} "
                                    "enters the law through its logarithm and must be > 0")
            cols.append(v)
        out = np.stack(cols, axis=1)
        if n is not None and out.shape[0] != n:
            raise DataError(f"{who}: the stresses have {out.shape[0]} rows but there are {n} units")
        return out

    def _raw_terms(self, s: np.ndarray) -> np.ndarray:
        return np.stack([1.0 / s[:, j] if tr == "inv" else np.log(s[:, j])
                         for j, (_, tr, _) in enumerate(self._terms())], axis=1)

    def _offset(self, s: np.ndarray) -> np.ndarray:
        eyring = RELATIONSHIPS[self.params.relationship][3]
        return -np.log(s[:, 0]) if eyring else np.zeros(s.shape[0])

    def _design(self, s: np.ndarray) -> np.ndarray:
        z = (self._raw_terms(s) - self.center_) / self.spread_
        return np.column_stack([np.ones(s.shape[0]), z])

    # ---- fit ------------------------------------------------------------------------------------------------
    def fit(self, data: xr.Dataset, ctx: RunContext, validation: xr.Dataset | None = None) -> LifeStress:
        who = "life-stress"
        units = read_censored(data, self.params, who)
        life = units.life
        s = self._stress_matrix(units.rows, who, life.n)
        names = self.stress_variables()
        n_coef = 1 + len(self._terms())
        _, codes = np.unique(s, axis=0, return_inverse=True)
        codes = codes.reshape(-1)
        n_cond = int(codes.max()) + 1
        for j, name in enumerate(names):
            if np.unique(s[:, j]).size < 2:
                raise DataError(f"{who}: stress {name!r} has the single value {s[0, j]:g} in all {life.n} rows "
                                f"(rows 0-{life.n - 1}); an ALT needs at least 2 levels of each stress to fit "
                                f"the {self.params.relationship} law")
        raw = self._raw_terms(s)
        self.center_ = raw.mean(axis=0)
        self.spread_ = np.where(raw.std(axis=0) > 0, raw.std(axis=0), 1.0)
        X = self._design(s)
        levels = X[np.unique(codes, return_index=True)[1]]
        if np.linalg.matrix_rank(levels) < n_coef:
            raise DataError(f"{who}: the {n_cond} stress conditions of {', '.join(map(repr, names))} cannot separate "
                            f"the {n_coef} coefficients of the {self.params.relationship} law; vary each stress "
                            "independently over at least that many conditions")
        require_failures(life, n_coef + 1, who, "the test")
        fit = fit_log_linear(life, X, self._offset(s), self.params.distribution)
        self.x_ = fit.x
        self.cov_ = fit.cov
        self.log_likelihood_ = fit.loglik
        self.lower_, self.upper_ = life.lower, life.upper
        self.truncation_ = np.zeros(life.n) if life.truncation is None else life.truncation
        self.stress_ = s
        self.shape_test_, self.separate_ = self._shape_test(life, codes, n_cond)
        self._set_io()
        return self

    def _shape_test(self, life: Censored, codes: np.ndarray, n_cond: int
                    ) -> tuple[dict[str, float], dict[str, list[float]]]:
        """Likelihood-ratio test of a common shape: per-condition scales with one shape vs one shape each; and
        each condition's own fit (scale, shape), the 'original' parameters of the reliability library."""
        from scipy.stats import chi2

        ok = [k for k in range(n_cond) if life.subset(codes == k).failures >= 2]
        if len(ok) < 2:
            return {}, {}
        keep = np.isin(codes, ok)
        sub = life.subset(keep)
        c = np.searchsorted(ok, codes[keep])
        onehot = np.eye(len(ok))[c]
        zero = np.zeros(sub.n)
        # the joint fit's scale at each condition and its shape are close to both optima: start there
        mu = self._mu(self.stress_)[0]
        mu_k = np.array([mu[codes == k][0] for k in ok])
        common = fit_log_linear(sub, onehot, zero, self.params.distribution, covariance=False,
                                x0=np.r_[mu_k, self.x_[-1]])
        separate = 0.0
        own: dict[str, list[float]] = {}
        for k in range(len(ok)):
            part = sub.subset(c == k)
            one = fit_log_linear(part, np.ones((part.n, 1)), np.zeros(part.n), self.params.distribution,
                                 covariance=False, x0=np.r_[common.x[k], common.x[-1]])
            separate += one.loglik
            own[str(ok[k])] = [math.exp(one.x[0]), math.exp(one.x[1])]
        stat = max(2.0 * (separate - common.loglik), 0.0)
        df = len(ok) - 1
        return {"shape_lr_statistic": stat, "shape_lr_df": float(df), "shape_lr_p_value": float(chi2.sf(stat, df)),
                "conditions_log_likelihood_separate": separate, "conditions_log_likelihood_common_shape":
                    common.loglik}, own

    def _set_io(self) -> None:
        self._set_targets("life-stress")
        self.features = self.stress_variables()

    # ---- fitted quantities ----------------------------------------------------------------------------------
    @property
    def shape(self) -> float:
        """Weibull beta or lognormal sigma, common to all conditions."""
        return math.exp(self.x_[-1])

    def _transform(self) -> tuple[np.ndarray, np.ndarray]:
        """(M, m0): raw coefficients (intercept w0, w_j) = M @ standardized coefficients."""
        k = len(self._terms())
        M = np.zeros((k + 1, k + 1))
        M[0, 0] = 1.0
        M[0, 1:] = -self.center_ / self.spread_
        M[1:, 1:] = np.diag(1.0 / self.spread_)
        return M, np.zeros(k + 1)

    def coefficients(self) -> dict[str, tuple[float, float, float]]:
        """The law's parameters (reported as in the module table) with Fisher bounds."""
        intercept, how, terms = RELATIONSHIPS[self.params.relationship][:3]
        M, _ = self._transform()
        p = len(terms) + 1
        w = M @ self.x_[:p]
        cov = M @ self.cov_[:p, :p] @ M.T
        se = np.sqrt(np.diag(cov))
        zc = self._z()
        out: dict[str, tuple[float, float, float]] = {}
        w0, s0 = float(w[0]), float(se[0])
        if how == "exp":
            out[intercept] = (math.exp(w0), math.exp(w0 - zc * s0), math.exp(w0 + zc * s0))
        else:  # eyring: c = -w0
            out[intercept] = (-w0, -w0 - zc * s0, -w0 + zc * s0)
        for j, (_, _, name) in enumerate(terms):
            out[name] = (float(w[j + 1]), float(w[j + 1] - zc * se[j + 1]), float(w[j + 1] + zc * se[j + 1]))
        if "a" in out and any(tr == "inv" for _, tr, _ in terms):
            a, lo, hi = out["a"]
            out["activation_energy_ev"] = (a * BOLTZMANN_EV, lo * BOLTZMANN_EV, hi * BOLTZMANN_EV)
        sname = "beta" if self.params.distribution == "weibull" else "sigma"
        ss = math.sqrt(self.cov_[-1, -1])
        out[sname] = (self.shape, self.shape * math.exp(-zc * ss), self.shape * math.exp(zc * ss))
        return out

    def _mu(self, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """ln L at the stresses and the gradient of it with respect to the fitted vector."""
        X = self._design(s)
        p = X.shape[1]
        mu = X @ self.x_[:p] + self._offset(s)
        grad = np.column_stack([X, np.zeros(s.shape[0])])
        return mu, grad

    def life_at(self, s: np.ndarray) -> np.ndarray:
        """The scale (Weibull eta, lognormal median) at each row of stresses (model units)."""
        return np.exp(self._mu(s)[0])

    def b_life_at(self, s: np.ndarray, percent: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """B-life at each row of stresses with its Fisher lower and upper bounds (on ln B)."""
        mu, grad = self._mu(s)
        q = quantile_term(self.params.distribution, self.shape, percent / 100.0)
        grad = grad.copy()
        grad[:, -1] = -q if self.params.distribution == "weibull" else q  # d q / d ln(shape)
        ln_b = mu + q
        se = np.sqrt(np.einsum("ij,jk,ik->i", grad, self.cov_, grad))
        zc = self._z()
        return np.exp(ln_b), np.exp(ln_b - zc * se), np.exp(ln_b + zc * se)

    def lr_b_life_at(self, s: np.ndarray, percent: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """B-life at each row of stresses with profile-likelihood bounds (Meeker and Escobar 1998, 8.3 and 17.4):
        the model reparameterized by ln B at that stress (the intercept solved from it), the other coefficients
        and the shape maximized out; each end is where the profile falls chi2_1 / 2 below the maximum."""
        from .bounds import _roots, chi2_value

        life = Censored(self.lower_, self.upper_, self.truncation_ if np.any(self.truncation_ > 0) else None)
        X, off = self._design(self.stress_), self._offset(self.stress_)
        loglik = log_linear_loglik(life, X, off, self.params.distribution)
        p = X.shape[1]
        target = self.log_likelihood_ - chi2_value(self.params.confidence, self.params.one_sided) / 2.0
        value, f_lo, f_hi = self.b_life_at(s, percent)
        lows, highs = np.empty(len(s)), np.empty(len(s))
        for r in range(len(s)):
            x0 = self._design(s[r:r + 1])[0]
            o0 = float(self._offset(s[r:r + 1])[0])
            state = {"z": self.x_[1:].copy()}

            def full(z: np.ndarray, ln_b: float, x0=x0, o0=o0) -> np.ndarray:
                q = quantile_term(self.params.distribution, math.exp(z[-1]), percent / 100.0)
                return np.concatenate([[ln_b - o0 - q - x0[1:] @ z[:p - 1]], z])

            def profile(ln_b: float, full=full, state=state) -> float:
                x = maximize(lambda z: loglik(full(z, ln_b)), state["z"])
                ll = loglik(full(x, ln_b))
                if np.isfinite(ll):
                    state["z"] = x
                return float(ll)

            step = 0.5 * math.log(f_hi[r] / value[r]) if np.isfinite(f_hi[r]) else 0.1
            lo, hi = _roots(profile, math.log(value[r]), max(step, 1e-6), target)
            lows[r], highs[r] = math.exp(lo), math.exp(hi)
        return value, lows, highs

    def b_life_bounded(self, s: np.ndarray, percent: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """B-life and bounds at the stresses by the method of ``params.bounds``."""
        if self.params.bounds == "likelihood-ratio":
            return self.lr_b_life_at(s, percent)
        return self.b_life_at(s, percent)

    def mean_life_at(self, s: np.ndarray) -> np.ndarray:
        scale = self.life_at(s)
        if self.params.distribution == "weibull":
            return scale * math.gamma(1.0 + 1.0 / self.shape)
        return scale * math.exp(self.shape ** 2 / 2.0)

    def _use_stress(self) -> np.ndarray | None:
        if not self.params.use:
            return None
        import xarray as xr

        names = self.stress_variables()
        missing = [n for n in names if n not in self.params.use]
        if missing:
            raise DataError(f"life-stress: params.use gives {', '.join(self.params.use)} but the use condition "
                            f"needs {', '.join(names)} (missing {', '.join(missing)})")
        ds = xr.Dataset({n: ("sample", [float(self.params.use[n])]) for n in names})
        return self._stress_matrix(ds, "life-stress: params.use")

    def summary(self):
        out: dict[str, float] = {}
        for name, (v, lo, hi) in self.coefficients().items():
            out.update({name: v, f"{name}_lower": lo, f"{name}_upper": hi})
        n_par = self.x_.size
        n = int(self.lower_.size)
        out["log_likelihood"] = self.log_likelihood_
        out["aicc"] = 2 * n_par - 2 * self.log_likelihood_ + (2 * n_par * (n_par + 1) / (n - n_par - 1)
                                                               if n - n_par - 1 > 0 else math.nan)
        out["bic"] = n_par * math.log(n) - 2 * self.log_likelihood_
        out["units"] = n
        out["failures"] = int(np.isfinite(self.upper_).sum())
        out["conditions"] = int(np.unique(self.stress_, axis=0).shape[0])
        out.update(self.shape_test_)
        use = self._use_stress()
        if use is not None:
            out["use_scale"] = float(self.life_at(use)[0])
            out["use_mean_life"] = float(self.mean_life_at(use)[0])
            for p, name in zip(self.params.b_lives, self._b_names(), strict=True):
                v, lo, hi = (float(a[0]) for a in self.b_life_bounded(use, p))
                out.update({f"use_{name}": v, f"use_{name}_lower": lo, f"use_{name}_upper": hi})
        out["confidence"] = self.params.confidence
        return finite_values(out)

    def conditions(self) -> list[dict[str, float]]:
        """Per test condition: stresses, units, failures, the model's scale, the condition's own fit (scale and shape,
        where it has 2 failures or more) and the acceleration factor to the use condition."""
        levels, codes = np.unique(self.stress_, axis=0, return_inverse=True)
        codes = codes.reshape(-1)
        use = self._use_stress()
        rows = []
        for k, level in enumerate(levels):
            mine = codes == k
            row = dict(zip(self.stress_variables(), map(float, level), strict=True))
            row.update(units=int(mine.sum()), failures=int(np.isfinite(self.upper_[mine]).sum()),
                       scale=float(self.life_at(level[None, :])[0]))
            if str(k) in self.separate_:
                row["own_scale"], row["own_shape"] = self.separate_[str(k)]
            if use is not None:
                row["acceleration_factor"] = float(self.life_at(use)[0] / row["scale"])
            rows.append(row)
        return rows

    # ---- predict (evaluator) --------------------------------------------------------------------------------
    def predict(self, data, ctx):
        import xarray as xr

        self.require_fitted("x_")
        dim, n = output_dim(data, self.features[0])
        for name in self.features:
            column(data, name, "life-stress", "the stress")  # raises, naming it
        s = self._stress_matrix(data, "life-stress")
        out = {}
        for p, name in zip(self.params.b_lives, self._b_names(), strict=True):
            v, lo, hi = self.b_life_bounded(s, p)
            out.update({f"{name}_mean": (dim, v), f"{name}_lower": (dim, lo), f"{name}_upper": (dim, hi)})
        coords = {dim: data[dim].values} if dim in data.coords else None
        return xr.Dataset(out, coords=coords)

    # ---- state ------------------------------------------------------------------------------------------------
    def save_state(self, directory):
        np.savez(Path(directory) / "state.npz", x=self.x_, cov=self.cov_, log_likelihood=self.log_likelihood_,
                 lower=self.lower_, upper=self.upper_, truncation=self.truncation_, stress=self.stress_,
                 center=self.center_,
                 spread=self.spread_, shape_test=json.dumps(self.shape_test_),
                 separate=json.dumps(self.separate_))
        (Path(directory) / "life_stress.json").write_text(json.dumps(
            {"summary": self.summary(), "conditions": self.conditions()}, indent=2))

    def load_state(self, directory):
        with np.load(Path(directory) / "state.npz", allow_pickle=False) as st:
            self.x_, self.cov_ = st["x"], st["cov"]
            self.log_likelihood_ = float(st["log_likelihood"])
            self.lower_, self.upper_, self.stress_ = st["lower"], st["upper"], st["stress"]
            self.truncation_ = st["truncation"]
            self.center_, self.spread_ = st["center"], st["spread"]
            self.shape_test_ = json.loads(str(st["shape_test"]))
            self.separate_ = json.loads(str(st["separate"]))

    # ---- plots --------------------------------------------------------------------------------------------------
    def plot(self, folder: Path) -> list[Path]:
        """A probability plot per condition (data and the common-shape fit) and the life-stress plot."""
        plt = pyplot()

        weib = self.params.distribution == "weibull"
        levels, codes = np.unique(self.stress_, axis=0, return_inverse=True)
        codes = codes.reshape(-1)
        names = self.stress_variables()

        def paper(p):
            from scipy.stats import norm

            p = np.asarray(p, dtype=float)
            return weibull_y(p) if weib else norm.ppf(p)

        life = Censored(self.lower_, self.upper_)
        t_mid = life.midpoint
        fig, ax = plt.subplots(figsize=(7, 5.2))
        for k, level in enumerate(levels):
            mine = codes == k
            t, ev = t_mid[mine], life.failed[mine]
            label = ", ".join(f"{n}={v:g}" for n, v in zip(names, level, strict=True))
            if ev.sum():
                ax.plot(np.sort(t[ev]), paper(adjusted_ranks(t, ev)), "o", ms=4, color=f"C{k}", label=label)
            scale = self.life_at(level[None, :])[0]
            grid = np.geomspace(max(t.min() * 0.3, 1e-9), t.max() * 3, 100)
            cdf = frozen(self.params.distribution, np.log(scale), self.shape).cdf(grid)
            keep = (cdf > 1e-4) & (cdf < 0.999)
            ax.plot(grid[keep], paper(cdf[keep]), "-", color=f"C{k}", lw=1.2)
        prob = finish_probability_plot(
            fig, ax, paper, xlabel=f"{self.params.time} (interval midpoints for interval-censored units)",
            ylabel=f"unreliability F (%), {'Weibull' if weib else 'lognormal'} scale",
            title=f"{self.params.relationship} {self.params.distribution}: one shape "
                  f"({'beta' if weib else 'sigma'} = {self.shape:.3g}) for all conditions",
            path=Path(folder) / "life_stress_probability.png")

        # life-stress: B-life (first b_lives entry, and the scale) against the first stress, others at their levels
        p = self.params.b_lives[-1]
        fig, ax = plt.subplots(figsize=(7, 5.2))
        use = self._use_stress()
        first = self.stress_[:, 0]
        lo_s, hi_s = first.min(), first.max()
        if use is not None:
            lo_s, hi_s = min(lo_s, use[0, 0]), max(hi_s, use[0, 0])
        span = np.linspace(lo_s - 0.05 * (hi_s - lo_s), hi_s + 0.05 * (hi_s - lo_s), 120)
        others = {tuple(level[1:]) for level in levels}
        if use is not None:
            others.add(tuple(use[0, 1:]))
        for k, rest in enumerate(sorted(others)):
            s = np.column_stack([span, np.tile(rest, (span.size, 1))]) if rest else span[:, None]
            v, lo, hi = self.b_life_at(s, p)
            tag = ", ".join(f"{n}={r:g}" for n, r in zip(names[1:], rest, strict=True))
            ax.plot(span, v, "-", color=f"C{k}", label=f"B{p:g} {tag}".strip())
            ax.fill_between(span, lo, hi, color=f"C{k}", alpha=0.15)
        fail = life.failed
        ax.plot(first[fail], t_mid[fail], "k.", ms=4, label="failures")
        if (~fail).any():
            ax.plot(first[~fail], t_mid[~fail], "x", color="grey", ms=4, label="suspensions")
        if use is not None:
            v, lo, hi = (float(a[0]) for a in self.b_life_at(use, p))
            ax.errorbar([use[0, 0]], [v], yerr=[[v - lo], [hi - v]], fmt="s", color="C3", capsize=4,
                        label=f"use: B{p:g} = {v:.4g} ({lo:.4g}-{hi:.4g})")
        ax.set_yscale("log")
        ax.set_xlabel(names[0] + (" (K)" if ROLES[self._terms()[0][0]][2] else ""))
        ax.set_ylabel(self.params.time)
        ax.set_title(f"life-stress ({self.params.relationship}), {self.params.confidence:.0%} Fisher bounds",
                     fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        return [prob, save_figure(fig, Path(folder) / "life_stress.png")]

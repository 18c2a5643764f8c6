"""Surrogate families on FEA data and on IGBT junction temperatures: accuracy per sample, fit and predict cost.

Three measurements, each printed as a Markdown table:

1. Learning curves on fea-package data. A Latin hypercube (scipy.stats.qmc, fixed seed) of 200 training designs
   and an independent one of 100 held-out designs over die_thickness_mm 0.1..0.8, substrate_thickness_mm 0.3..1.2,
   bump_height_mm 0.04..0.12, die_width_mm 5..15 and mold_thickness_mm 0..0.8 (every other input at its default)
   are solved with ``FlipChipFEA.evaluate_one`` and cached in ``benchmarks/fea_samples.npz`` (git-ignored; the
   cache is keyed on the designs, the evaluator's params and the FEA source files, so a change re-solves). Each
   family is fit on the first n training designs (the first n of one 200-point hypercube: a random subset, not a
   hypercube of its own) for n in 25, 50, 100, 200, through the reflow models' own path
   (``reflow.surrogates.plugin`` model -> ``make_surrogate``: z-scored inputs, as the ``train`` task fits them,
   the family's default params), targets warpage_abs_um and die_max_principal_stress_mpa (one model for both).
   Reported: held-out R2 per target and fit seconds (medians over ``--repeats`` seeds).
2. Predict speedup: FEA seconds per design (mean over the solved designs, timed while solving) against each
   surrogate's (fit on the largest n) predict seconds per design on a batch of 10,000 designs, and per call on one
   design (latency); the ratio FEA / surrogate.
3. ELM against the BP-NN on junction temperatures: igbt-junction-samples (8 modules, aging 0..40k cycles, 200..450
   A, ambient 25/45/65 degC, duty 0.25, the default noise), features vce_sat_v, ic_a, aging_cycles (Liu et al.
   2021), target tj_c, 2 of the 8 modules held out (grouped split). ELM with 20/40/80 hidden units, untuned and
   tuned (pymoo, population 20, generations 15), against the ``mlp`` (hidden [32, 32], its defaults): R2, RMSE,
   fit seconds (medians over repeats) and the BP-NN / ELM fit-time ratio at the cheapest ELM that is at least as
   accurate. If no model reaches R2 0.9 on those three features, the same comparison is repeated with ambient_c
   added.

Run:  .venv/bin/python benchmarks/surrogates.py [--quick] [--threads 1] [--repeats 3] [--fresh]
``--quick`` (n 25 and 50, five families, one repeat, 20 held-out designs, a shorter BP-NN training) only checks
that everything runs. Writes benchmarks/surrogates.json (raw numbers, git-ignored) and benchmarks/surrogates.png
(the learning curves). Everything runs on the CPU.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import inspect
import json
import os
import platform
import statistics
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent

SPACE: dict[str, tuple[float, float]] = {
    "die_thickness_mm": (0.1, 0.8),
    "substrate_thickness_mm": (0.3, 1.2),
    "bump_height_mm": (0.04, 0.12),
    "die_width_mm": (5.0, 15.0),
    "mold_thickness_mm": (0.0, 0.8),
}
TARGETS = ("warpage_abs_um", "die_max_principal_stress_mpa")
TARGET_SHORT = {"warpage_abs_um": "warpage", "die_max_principal_stress_mpa": "die stress"}
N_TRAIN_MAX, N_TEST = 200, 100
TRAIN_SEED, TEST_SEED, BATCH_SEED = 2024, 2025, 2026
SIZES, QUICK_SIZES = (25, 50, 100, 200), (25, 50)
QUICK_TEST = 20
PREDICT_BATCH = 10_000

FAMILIES: dict[str, tuple[str, dict[str, Any]]] = {
    "gp": ("gp", {}),
    "elm": ("elm", {}),
    "mlp": ("mlp", {}),
    "ensemble": ("ensemble", {}),
    "random-forest": ("sklearn", {"estimator": "random-forest"}),
    "gradient-boosting": ("sklearn", {"estimator": "gradient-boosting"}),
    "svr": ("sklearn", {"estimator": "svr"}),
    "knn": ("sklearn", {"estimator": "knn"}),
    "ols": ("sklearn", {"estimator": "ols"}),
}
"""Benchmark name -> (reflow model name, params); every family at its defaults (z-scored inputs)."""
QUICK_FAMILIES = ("gp", "elm", "mlp", "random-forest", "ols")

IGBT_PARAMS: dict[str, Any] = {
    "modules": 8, "aging_cycles": [0.0, 10000.0, 20000.0, 30000.0, 40000.0],
    "currents_a": [200.0, 250.0, 300.0, 350.0, 400.0, 450.0], "ambient_c": [25.0, 45.0, 65.0], "duty": 0.25,
}
IGBT_FEATURES = ["vce_sat_v", "ic_a", "aging_cycles"]
IGBT_TARGET = "tj_c"
IGBT_HELD_OUT_MODULES = 2
IGBT_SEED = 0
ELM_HIDDEN = (20, 40, 80)
ELM_TUNE = {"population": 20, "generations": 15}
BPNN = {"hidden": [32, 32]}
QUICK_BPNN_EPOCHS = 60
FAST_FIT_S, FAST_FIT_BUDGET_S, FAST_FIT_MAX_REPEATS = 0.05, 0.25, 25
"""Fits faster than FAST_FIT_S are timed again until FAST_FIT_BUDGET_S or FAST_FIT_MAX_REPEATS (median)."""
LOW_R2 = 0.9
"""Below this held-out R2 for every model, the three features are said not to identify Tj well."""


# ---------------------------------------------------------------------------------------------- machine
def machine_info(threads: int) -> dict[str, Any]:
    """What the numbers were measured on (the CPU is often shared: the load average says how busy it was)."""
    import scipy
    import sklearn
    import torch

    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
            "numpy": np.__version__, "scipy": scipy.__version__, "sklearn": sklearn.__version__,
            "threads": threads, "torch_threads": torch.get_num_threads(), "device": "cpu",
            "load_average_1_5_15min": [round(x, 2) for x in load],
            "date": datetime.datetime.now().isoformat(timespec="seconds")}


def machine_line(m: dict[str, Any]) -> str:
    return (f"{m['platform']}, {m['processor']}, {m['cpus']} CPUs, Python {m['python']}, torch {m['torch']}, "
            f"scikit-learn {m['sklearn']}, {m['threads']} thread(s) (torch {m['torch_threads']}), CPU only, "
            f"load average {m['load_average_1_5_15min'][0]} at start")


# ---------------------------------------------------------------------------------------------- FEA data
def latin_hypercube(n: int, seed: int) -> np.ndarray:
    """``n`` designs (n, 5) over SPACE from a seeded Latin hypercube."""
    from scipy.stats import qmc

    low = np.array([lo for lo, _ in SPACE.values()])
    high = np.array([hi for _, hi in SPACE.values()])
    unit = qmc.LatinHypercube(d=len(SPACE), rng=np.random.default_rng(seed)).random(n)
    return qmc.scale(unit, low, high)


@dataclass
class FeaSet:
    """Designs with their solved outputs (NaN where not solved or failed) and solve seconds."""

    X: np.ndarray  # (n, len(SPACE))
    Y: np.ndarray  # (n, len(outputs))
    seconds: np.ndarray  # (n,)
    done: np.ndarray  # (n,) bool: solved (or tried and failed)


def fea_cache_key(outputs: list[str]) -> str:
    """Hash of everything the cached FEA numbers depend on: designs, evaluator params, FEA source code."""
    from reflow.plugins.physics import fea
    from reflow.plugins.physics import materials as matlib

    parts = {"space": SPACE, "n": [N_TRAIN_MAX, N_TEST], "seeds": [TRAIN_SEED, TEST_SEED], "outputs": outputs,
             "params": fea.FlipChipFEA.Params(save_fields=False).model_dump(mode="json"),
             "defaults": {v.name: v.default for v in fea.INPUTS}}
    h = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode())
    for module in (fea, matlib):
        h.update(Path(inspect.getsourcefile(module)).read_bytes())
    return h.hexdigest()


def load_cache(path: Path, key: str, sets: dict[str, FeaSet]) -> dict[str, str]:
    """Fill ``sets`` from the cache when its key and designs match; returns the cache's facts (machine, date)."""
    if not path.exists():
        return {}
    with np.load(path, allow_pickle=False) as data:
        if str(data["key"]) != key:
            print(f"{path.name}: made by other FEA code or settings; solving again")
            return {}
        for name, s in sets.items():
            if data[f"{name}_X"].shape != s.X.shape or not np.allclose(data[f"{name}_X"], s.X):
                print(f"{path.name}: holds other designs; solving again")
                return {}
        for name, s in sets.items():
            s.Y[:] = data[f"{name}_Y"]
            s.seconds[:] = data[f"{name}_seconds"]
            s.done[:] = data[f"{name}_done"]
        return {"machine": str(data["machine"])}


def save_cache(path: Path, key: str, sets: dict[str, FeaSet], machine: str) -> None:
    """Write the cache atomically (plain arrays, no pickles)."""
    arrays: dict[str, Any] = {"key": np.array(key), "machine": np.array(machine)}
    for name, s in sets.items():
        arrays.update({f"{name}_X": s.X, f"{name}_Y": s.Y, f"{name}_seconds": s.seconds, f"{name}_done": s.done})
    tmp = path.with_name(path.stem + ".tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(path)


def fea_samples(path: Path, n_train: int, n_test: int, fresh: bool, machine: str) -> tuple[dict[str, FeaSet], list]:
    """The train and test designs, the first ``n_train`` / ``n_test`` of them solved (from the cache or now)."""
    from reflow.plugins.physics.fea import OUTPUTS, FlipChipFEA

    outputs = [v.name for v in OUTPUTS]
    sets = {}
    for name, n, seed in (("train", N_TRAIN_MAX, TRAIN_SEED), ("test", N_TEST, TEST_SEED)):
        sets[name] = FeaSet(latin_hypercube(n, seed), np.full((n, len(outputs)), np.nan), np.full(n, np.nan),
                            np.zeros(n, dtype=bool))
    key = fea_cache_key(outputs)
    facts = {} if fresh else load_cache(path, key, sets)
    todo = [(name, i) for name, n in (("train", n_train), ("test", n_test)) for i in range(n)
            if not sets[name].done[i]]
    if facts and not todo:
        print(f"FEA: {n_train} + {n_test} designs from {path.name} (solved on: {facts['machine']})")
    if todo:
        print(f"FEA: solving {len(todo)} designs ({sum(s.done.sum() for s in sets.values())} cached)", flush=True)
        evaluator = FlipChipFEA(save_fields=False)
        evaluator.evaluate_one({})  # imports scikit-fem; not timed
        failures = []
        for k, (name, i) in enumerate(todo, 1):
            s = sets[name]
            design = {var: float(x) for var, x in zip(SPACE, s.X[i], strict=True)}
            t0 = time.perf_counter()
            try:
                out = evaluator.evaluate_one(design)
                s.seconds[i] = time.perf_counter() - t0
                s.Y[i] = [out[o] for o in outputs]
            except Exception as err:  # a failed design is recorded as NaN, never stops the benchmark
                failures.append(f"{name}[{i}]: {err}")
            s.done[i] = True
            if k % 20 == 0 or k == len(todo):
                save_cache(path, key, sets, machine)
                print(f"  {k}/{len(todo)} solved", flush=True)
        for f in failures:
            print(f"  FEA failed: {f}")
    return sets, outputs


# ---------------------------------------------------------------------------------------------- models
def make_model(family: str, seed: int, overrides: dict[str, Any] | None = None) -> Any:
    """The unfitted surrogate the reflow model for ``family`` would train (preprocessing + family), on the CPU."""
    from reflow.surrogates.plugin import MODELS

    model_name, params = FAMILIES[family] if family in FAMILIES else (family, {})
    surrogate = MODELS[model_name]({**params, **(overrides or {})}).make_surrogate("cpu", seed)
    surrogate.quiet = True
    return surrogate


def r2_rmse(y: np.ndarray, pred: np.ndarray) -> tuple[float, float]:
    from sklearn.metrics import r2_score

    return float(r2_score(y, pred)), float(np.sqrt(np.mean((y - pred) ** 2)))


def timed_fit(surrogate: Any, X: np.ndarray, Y: np.ndarray) -> float:
    """Seconds of ``surrogate.fit(X, Y)``; a fit under FAST_FIT_S is repeated (same seed) and the median taken,
    since one millisecond-scale timing on a shared CPU is mostly noise."""
    times: list[float] = []
    while True:
        t0 = time.perf_counter()
        surrogate.fit(X, Y)
        times.append(time.perf_counter() - t0)
        if times[0] >= FAST_FIT_S or sum(times) >= FAST_FIT_BUDGET_S or len(times) >= FAST_FIT_MAX_REPEATS:
            return statistics.median(times)


def learning_curves(sets: dict[str, FeaSet], outputs: list[str], families: list[str], sizes: tuple[int, ...],
                    n_test: int, repeats: int) -> tuple[list[dict], dict[str, Any]]:
    """Held-out R2 and fit seconds per family, n and seed; plus the seed-0 model at the largest n per family."""
    cols = [outputs.index(t) for t in TARGETS]
    train, test = sets["train"], sets["test"]
    Xte, Yte = test.X[:n_test], test.Y[:n_test][:, cols]
    ok_test = np.all(np.isfinite(Yte), axis=1)
    Xte, Yte = Xte[ok_test], Yte[ok_test]
    rows, largest = [], {}
    for family in families:
        try:  # warm-up: imports (torch, BoTorch, scikit-learn) and first-call costs are not fit time
            make_model(family, 0).fit(train.X[:10], train.Y[:10][:, cols])
        except Exception as err:
            print(f"  {family}: warm-up failed: {err}")
    for n in sizes:
        Xtr, Ytr = train.X[:n], train.Y[:n][:, cols]
        ok = np.all(np.isfinite(Ytr), axis=1)
        Xtr, Ytr = Xtr[ok], Ytr[ok]
        for family in families:
            for seed in range(repeats):
                row: dict[str, Any] = {"family": family, "n": n, "n_used": int(len(Xtr)), "seed": seed}
                try:
                    surrogate = make_model(family, seed)
                    row["fit_seconds"] = timed_fit(surrogate, Xtr, Ytr)
                    pred = surrogate.predict(Xte)[0]
                    for j, t in enumerate(TARGETS):
                        row[f"{t}_r2"], row[f"{t}_rmse"] = r2_rmse(Yte[:, j], pred[:, j])
                    if seed == 0 and n == max(sizes):
                        largest[family] = surrogate
                except Exception as err:  # one family's failure is a row, not the end of the benchmark
                    row["error"] = f"{type(err).__name__}: {err}"
                rows.append(row)
            done = [r for r in rows if r["family"] == family and r["n"] == n]
            print(f"  n={n:>3} {family:18s} " + _r2_cell(done) + f"  fit {_median(done, 'fit_seconds'):.3g} s",
                  flush=True)
    return rows, largest


def predict_speed(models: dict[str, Any], fea_seconds: float, quick: bool) -> list[dict]:
    """Predict seconds per design on a 10,000-design batch and on single designs, against the FEA."""
    X = latin_hypercube(PREDICT_BATCH, BATCH_SEED)
    repeats, calls = (1, 10) if quick else (3, 50)
    rows = []
    for family, surrogate in models.items():
        surrogate.predict(X[:100])  # warm-up
        batch = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            surrogate.predict(X)
            batch.append(time.perf_counter() - t0)
        single = []
        for i in range(calls):
            t0 = time.perf_counter()
            surrogate.predict(X[i:i + 1])
            single.append(time.perf_counter() - t0)
        per_design = statistics.median(batch) / len(X)
        latency = statistics.median(single)
        rows.append({"family": family, "batch_seconds_per_design": per_design, "single_call_seconds": latency,
                     "speedup_batch": fea_seconds / per_design, "speedup_single": fea_seconds / latency})
    return rows


# ---------------------------------------------------------------------------------------------- IGBT
def igbt_data() -> tuple[Any, np.ndarray, np.ndarray, list[int]]:
    """The junction-temperature set and a grouped split: train and test sample indices, held-out module ids."""
    from reflow.plugins.physics.igbt import IgbtJunctionSamples
    from reflow.testing import test_context
    from sklearn.model_selection import GroupShuffleSplit

    with tempfile.TemporaryDirectory(prefix="reflow-bench-") as tmp:
        ds = IgbtJunctionSamples(**IGBT_PARAMS).load(test_context(Path(tmp), seed=IGBT_SEED))
    groups = ds["module_id"].values
    split = GroupShuffleSplit(n_splits=1, test_size=IGBT_HELD_OUT_MODULES, random_state=IGBT_SEED)
    train, test = next(split.split(np.zeros(len(groups)), groups=groups))
    return ds, train, test, sorted(int(g) for g in np.unique(groups[test]))


def tsep_note() -> str:
    """Why Vce(sat) pins Tj only loosely in this data: its temperature coefficient against scatter and noise."""
    from reflow.plugins.physics.igbt import IgbtJunctionSamples

    p = IgbtJunctionSamples.Params(**IGBT_PARAMS)
    low, high = min(p.currents_a), max(p.currents_a)
    tc_low, tc_high = (p.chip.temperature_coefficient(i) * 1e3 for i in (low, high))
    # V0 and r_chip scatter independently by chip_rel (relative sd) between modules
    scatter_mv = p.spread.chip_rel * float(np.hypot(p.chip.v0_v, high * p.chip.r_chip_ohm)) * 1e3
    return (f"dVce(sat)/dTj is {tc_low:+.1f} mV/K at {low:g} A and {tc_high:+.1f} mV/K at {high:g} A, against a "
            f"{p.noise.vce_v * 1e3:g} mV measurement noise and a module scatter of Vce(sat) of about "
            f"{scatter_mv:.0f} mV (1 sd at {high:g} A, 25 degC); Vce(sat) and Ic give the loss, but not the "
            f"ambient ({', '.join(f'{a:g}' for a in p.ambient_c)} degC) that Tj rises from.")


def igbt_settings(quick: bool) -> list[tuple[str, str, dict[str, Any]]]:
    """(label, reflow model, params) of every compared setting: the ELMs, then the BP-NN."""
    out = []
    for hidden in ELM_HIDDEN:
        out.append((f"elm-{hidden}", "elm", {"n_hidden": hidden}))
        out.append((f"elm-{hidden} tuned", "elm", {"n_hidden": hidden, "tune": ELM_TUNE}))
    bpnn = {**BPNN, **({"epochs": QUICK_BPNN_EPOCHS} if quick else {})}
    out.append(("bp-nn [32, 32]", "mlp", bpnn))
    return out


def igbt_compare(ds: Any, train: np.ndarray, test: np.ndarray, features: list[str], repeats: int,
                 quick: bool) -> list[dict]:
    """R2, RMSE (K) and fit seconds, medians over seeds, of every ELM setting and the BP-NN."""
    X = np.column_stack([ds[f].values for f in features]).astype(float)
    y = ds[IGBT_TARGET].values.astype(float)
    rows = []
    for label, model, params in igbt_settings(quick):
        make_model(model, 0, params).fit(X[train][:50], y[train][:50])  # warm-up
        fits, r2s, rmses = [], [], []
        for seed in range(repeats):
            surrogate = make_model(model, seed, params)
            fits.append(timed_fit(surrogate, X[train], y[train]))
            r2, rmse = r2_rmse(y[test], surrogate.predict(X[test])[0][:, 0])
            r2s.append(r2)
            rmses.append(rmse)
        rows.append({"setting": label, "model": model, "params": params, "features": features,
                     "r2": statistics.median(r2s), "rmse_k": statistics.median(rmses),
                     "fit_seconds": statistics.median(fits), "r2_all": r2s, "fit_seconds_all": fits})
        print(f"  {label:16s} R2 {rows[-1]['r2']:.4f}  RMSE {rows[-1]['rmse_k']:.2f} K  "
              f"fit {rows[-1]['fit_seconds']:.3g} s", flush=True)
    return rows


def bpnn_vs_elm(rows: list[dict]) -> dict[str, Any]:
    """The fit-time ratio BP-NN / ELM at the cheapest ELM setting at least as accurate (R2) as the BP-NN."""
    bpnn = next(r for r in rows if r["model"] == "mlp")
    elms = [r for r in rows if r["model"] == "elm"]
    good = [r for r in elms if r["r2"] >= bpnn["r2"]]
    if good:
        elm = min(good, key=lambda r: r["fit_seconds"])
        return {"elm": elm["setting"], "ratio": bpnn["fit_seconds"] / elm["fit_seconds"], "as_accurate": True}
    elm = max(elms, key=lambda r: r["r2"])
    return {"elm": elm["setting"], "ratio": bpnn["fit_seconds"] / elm["fit_seconds"], "as_accurate": False}


# ---------------------------------------------------------------------------------------------- output
def _median(rows: list[dict], key: str) -> float:
    values = [r[key] for r in rows if key in r]
    return statistics.median(values) if values else float("nan")


def _r2_cell(rows: list[dict]) -> str:
    if not any(f"{TARGETS[0]}_r2" in r for r in rows):
        return "failed"
    return " / ".join(f"{_median(rows, f'{t}_r2'):.3f}" for t in TARGETS)


def _fit_cell(rows: list[dict]) -> str:
    return f"{_median(rows, 'fit_seconds'):.3g}"


def learning_tables(rows: list[dict], families: list[str], sizes: tuple[int, ...], repeats: int) -> None:
    def cells(family: str, fmt) -> str:
        return " | ".join(fmt([r for r in rows if r["family"] == family and r["n"] == n]) for n in sizes)

    head = "| family | " + " | ".join(f"n = {n}" for n in sizes) + " |\n|" + "---|" * (len(sizes) + 1)
    print(f"\n### Held-out R2 (warpage / die stress), median of {repeats} seed(s)\n\n{head}")
    for family in families:
        print(f"| {family} | {cells(family, _r2_cell)} |")
    print(f"\n### Fit seconds, median of {repeats} seed(s)\n\n{head}")
    for family in families:
        print(f"| {family} | {cells(family, _fit_cell)} |")
    errors = {(r["family"], r["n"]): r["error"] for r in rows if "error" in r}
    for (family, n), err in errors.items():
        print(f"- {family} at n = {n} failed: {err}")


def speed_table(rows: list[dict], fea_seconds: float, n_fit: int) -> None:
    print(f"\n### Predict cost against the FEA ({fea_seconds:.3f} s per design), surrogates fit on {n_fit} designs\n\n"
          "(predict includes the std where the family has one: gp, ensemble, random-forest)\n")
    print(f"| family | s/design, batch of {PREDICT_BATCH:,} | s per call, 1 design | FEA / surrogate (batch) | "
          "FEA / surrogate (1 design) |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['family']} | {r['batch_seconds_per_design']:.2e} | {r['single_call_seconds']:.2e} | "
              f"{r['speedup_batch']:,.0f} | {r['speedup_single']:,.0f} |")


def igbt_table(rows: list[dict], verdict: dict[str, Any], repeats: int, title: str) -> None:
    bpnn = next(r for r in rows if r["model"] == "mlp")
    print(f"\n### {title}, median of {repeats} repeat(s)\n")
    print("| model | R2 | RMSE (K) | fit s | BP-NN fit s / this |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['setting']} | {r['r2']:.4f} | {r['rmse_k']:.2f} | {r['fit_seconds']:.3g} | "
              f"{bpnn['fit_seconds'] / r['fit_seconds']:,.1f} |")
    if verdict["as_accurate"]:
        print(f"\nBP-NN / ELM fit time at the cheapest ELM with R2 >= the BP-NN's ({verdict['elm']}): "
              f"{verdict['ratio']:,.0f}x")
    else:
        print(f"\nNo ELM setting reaches the BP-NN's R2 ({bpnn['r2']:.4f}); at the most accurate ELM "
              f"({verdict['elm']}) the BP-NN / ELM fit-time ratio is {verdict['ratio']:,.0f}x")


def plot(rows: list[dict], families: list[str], sizes: tuple[int, ...], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(TARGETS), figsize=(5.5 * len(TARGETS), 4.2))
    lowest = 0.0
    for ax, target in zip(axes, TARGETS, strict=True):
        for k, family in enumerate(families):
            r2 = [_median([r for r in rows if r["family"] == family and r["n"] == n], f"{target}_r2") for n in sizes]
            ax.plot(sizes, r2, marker="o", color=plt.get_cmap("tab10")(k % 10), label=family)
            lowest = min([lowest, *(v for v in r2 if np.isfinite(v))])
        ax.set_xscale("log")
        ax.set_xticks(sizes, [str(n) for n in sizes])
        ax.minorticks_off()
        ax.set(title=f"{target}", xlabel="training designs (FEA runs)", ylabel="held-out R2")
        ax.grid(alpha=0.3)
    for ax in axes:
        ax.set_ylim(max(lowest - 0.05, -0.5), 1.02)
        if lowest < -0.45:
            ax.set_ylabel("held-out R2 (axis cut at -0.5)")
    axes[0].legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"wrote {path}")


# ---------------------------------------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="n 25 and 50, five families, 1 repeat, 20 held-out designs")
    ap.add_argument("--threads", type=int, default=1, help="torch and BLAS/OpenMP threads (default 1)")
    ap.add_argument("--repeats", type=int, default=3, help="seeds per fit (medians are reported); 1 with --quick")
    ap.add_argument("--fresh", action="store_true", help="solve the FEA designs again instead of using the cache")
    ap.add_argument("--cache", type=Path, default=HERE / "fea_samples.npz", help="the solved-FEA cache (npz)")
    ap.add_argument("--out", type=Path, default=HERE / "surrogates.json", help="raw numbers; the figure goes "
                                                                               "next to it as .png")
    args = ap.parse_args()
    if args.threads < 1:
        ap.error(f"--threads must be >= 1, got {args.threads}")
    if args.repeats < 1:
        ap.error(f"--repeats must be >= 1, got {args.repeats}")
    import torch
    from reflow.device import quiet_torch_imports
    from threadpoolctl import threadpool_limits

    quiet_torch_imports()
    warnings.simplefilter("ignore")
    torch.set_num_threads(args.threads)
    with threadpool_limits(limits=args.threads):
        run(args)


def run(args: argparse.Namespace) -> None:
    started = time.perf_counter()
    quick = args.quick
    sizes = QUICK_SIZES if quick else SIZES
    n_test = QUICK_TEST if quick else N_TEST
    repeats = 1 if quick else args.repeats
    families = list(QUICK_FAMILIES if quick else FAMILIES)
    machine = machine_info(args.threads)
    print(f"# Surrogate benchmark{' (--quick)' if quick else ''}\n\nmachine: {machine_line(machine)}\n")

    sets, outputs = fea_samples(args.cache, max(sizes), n_test, args.fresh, machine_line(machine))
    solved = np.concatenate([s.seconds[np.isfinite(s.seconds)] for s in sets.values()])
    fea_seconds = float(np.mean(solved))
    print(f"FEA: {fea_seconds:.3f} s per design (mean over {len(solved)} solved designs)")

    print("\n## 1. Learning curves on fea-package data\n", flush=True)
    rows, largest = learning_curves(sets, outputs, families, sizes, n_test, repeats)
    learning_tables(rows, families, sizes, repeats)

    print("\n## 2. Predict speed against the FEA\n", flush=True)
    speed = predict_speed(largest, fea_seconds, quick)
    speed_table(speed, fea_seconds, max(sizes))

    print("\n## 3. ELM against the BP-NN on IGBT junction temperatures\n", flush=True)
    ds, train, test, held = igbt_data()
    from reflow.plugins.physics.igbt import IgbtJunctionSamples

    max_tj = IgbtJunctionSamples.Params(**IGBT_PARAMS).max_tj_c
    print(f"igbt-junction-samples: {ds.sizes['sample']} operating points "
          f"({ds.attrs['skipped_over_temperature']} over {max_tj:g} degC not measured); train {len(train)}, test "
          f"{len(test)} (held-out modules {held})" + (f"; BP-NN trained {QUICK_BPNN_EPOCHS} epochs (--quick), not "
                                                      "its default" if quick else ""))
    igbt = {"n_samples": int(ds.sizes["sample"]), "held_out_modules": held, "n_train": int(len(train)),
            "n_test": int(len(test)), "runs": {}}
    feature_sets = [IGBT_FEATURES]
    while feature_sets:
        features = feature_sets.pop(0)
        print(f"features {', '.join(features)}:")
        results = igbt_compare(ds, train, test, features, repeats, quick)
        verdict = bpnn_vs_elm(results)
        igbt["runs"][",".join(features)] = {"results": results, "verdict": verdict}
        igbt_table(results, verdict, repeats, f"Tj from {', '.join(features)}")
        if features == IGBT_FEATURES and max(r["r2"] for r in results) < LOW_R2:
            print(f"\nNote: no model reaches R2 {LOW_R2} from {', '.join(features)} alone: these three "
                  f"features do not identify Tj well. {tsep_note()} The same comparison with ambient_c added:\n")
            feature_sets.append([*IGBT_FEATURES, "ambient_c"])

    total = time.perf_counter() - started
    print(f"\ntotal {total:.1f} s")
    report = {"machine": machine, "quick": quick, "repeats": repeats, "space": SPACE, "targets": TARGETS,
              "sizes": sizes, "n_test": n_test, "seeds": {"train": TRAIN_SEED, "test": TEST_SEED},
              "fea_seconds_per_design": fea_seconds, "fea_designs_timed": int(len(solved)),
              "learning_curves": rows, "predict": speed, "igbt": igbt, "total_seconds": total}
    args.out.write_text(json.dumps(report, indent=1, default=float))
    print(f"wrote {args.out}")
    plot(rows, families, sizes, args.out.with_suffix(".png"),
         f"fea-package surrogates: held-out R2 on {n_test} designs{' (--quick)' if quick else ''}; "
         f"{machine['processor']}, {args.threads} thread(s)")


if __name__ == "__main__":
    main()

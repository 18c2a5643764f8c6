"""The ``optimize`` task's own figures: convergence, the Pareto front and each parameter against each objective.

Drawn from the stored ``trials`` and ``history`` outputs only (``reflow report`` draws them again), through
:mod:`reflow.plotting`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from reflow.plotting import pyplot, save_figure
from reflow.problem import OptimizationProblem

from ._pareto import pareto_mask


def plot_convergence(history: Any, trials: Any, problem: OptimizationProblem, folder: Path) -> Path | None:
    """``convergence.png``: the best feasible value (one objective) or the hypervolume after each evaluation."""
    if not history.sizes.get("evaluation"):
        return None
    plt = pyplot()
    name = next(iter(n for n in history.data_vars if n not in ("trial", "initial")))
    fig, ax = plt.subplots(figsize=(6.5, 4))
    x = history["evaluation"].values
    ax.step(x, history[name].values, where="post", color="#c44e52", lw=2)
    n_initial = int(history["initial"].values.sum())
    if n_initial:
        ax.axvspan(0.5, n_initial + 0.5, color="0.9", label="initial design")
        ax.legend(loc="lower right")
    ax.set_xlabel("evaluations")
    ax.set_ylabel(name.replace("_", " "))
    ax.set_title("convergence: " + ("hypervolume of the feasible trials" if name == "hypervolume"
                                    else f"best feasible {problem.objectives[0].name} so far"))
    ax.grid(alpha=0.3)
    return save_figure(fig, folder / "convergence.png")


def plot_front(trials: Any, problem: OptimizationProblem, folder: Path) -> Path | None:
    """``pareto_front.png``: two objectives as a scatter with the front; more in parallel coordinates."""
    ok = trials["status"].values == "ok"
    if ok.sum() < 2:
        return None
    plt = pyplot()
    names = [o.name for o in problem.objectives]
    raw = np.column_stack([trials[n].values.astype(float) for n in names])
    values = problem.objective_values(trials)
    feasible = problem.feasible(trials) & np.all(np.isfinite(values), axis=1)
    front = np.zeros(len(raw), dtype=bool)
    if feasible.any():
        front[np.flatnonzero(feasible)[pareto_mask(values[feasible])]] = True
    if len(names) == 2:
        fig, ax = plt.subplots(figsize=(6, 5))
        order = np.arange(len(raw))
        sc = ax.scatter(raw[feasible, 0], raw[feasible, 1], c=order[feasible], cmap="Blues", s=28,
                        edgecolor="0.4", linewidth=0.3, label="feasible")
        infeasible = ok & ~feasible
        if infeasible.any():
            ax.scatter(raw[infeasible, 0], raw[infeasible, 1], marker="x", color="0.5", label="infeasible")
        f = raw[front][np.argsort(raw[front, 0])]
        ax.plot(f[:, 0], f[:, 1], "o-", color="#c44e52", ms=7, label="Pareto front")
        fig.colorbar(sc, ax=ax, label="evaluation")
        ax.set_xlabel(f"{names[0]} ({problem.objectives[0].goal})")
        ax.set_ylabel(f"{names[1]} ({problem.objectives[1].goal})")
        ax.legend()
        ax.set_title(f"Pareto front: {int(front.sum())} of {int(ok.sum())} trials")
    else:  # parallel coordinates of every feasible trial, the Pareto set in colour
        fig, ax = plt.subplots(figsize=(1.8 * len(names) + 2, 4.5))
        lo, hi = np.nanmin(raw[ok], axis=0), np.nanmax(raw[ok], axis=0)
        scaled = (raw - lo) / np.where(hi > lo, hi - lo, 1.0)
        for i in np.flatnonzero(feasible & ~front):
            ax.plot(range(len(names)), scaled[i], color="0.8", lw=0.8)
        for i in np.flatnonzero(front):
            ax.plot(range(len(names)), scaled[i], color="#c44e52", lw=1.5)
        ax.set_xticks(range(len(names)), [f"{n}\n({o.goal})" for n, o in zip(names, problem.objectives,
                                                                             strict=True)])
        ax.set_ylabel("scaled value (0 = lowest seen)")
        ax.set_title(f"Pareto set (red, {int(front.sum())} trials) in parallel coordinates")
    return save_figure(fig, folder / "pareto_front.png")


def plot_parameters(trials: Any, problem: OptimizationProblem, folder: Path) -> Path | None:
    """``parameters_vs_objectives.png``: a scatter per free parameter and objective, coloured by evaluation."""
    ok = trials["status"].values == "ok"
    params = [prm for prm in problem.free]
    if ok.sum() < 1 or not params:
        return None
    plt = pyplot()
    objs = problem.objectives
    fig, axes = plt.subplots(len(objs), len(params), figsize=(2.6 * len(params) + 1, 2.4 * len(objs) + 0.6),
                             squeeze=False)
    order = np.arange(trials.sizes["trial"])[ok]
    for i, o in enumerate(objs):
        y = trials[o.name].values[ok].astype(float)
        for j, prm in enumerate(params):
            ax = axes[i, j]
            x = trials[prm.name].values[ok]
            if prm.kind == "categorical":
                codes = {c: k for k, c in enumerate(prm.choices)}
                x = np.array([codes.get(v, codes.get(str(v), -1)) for v in x], dtype=float)
                ax.set_xticks(range(len(prm.choices)), [str(c) for c in prm.choices], rotation=30, fontsize=7)
            ax.scatter(x, y, c=order, cmap="viridis", s=12)
            if i == len(objs) - 1:
                ax.set_xlabel(f"{prm.name} [{prm.units}]" if prm.units else prm.name, fontsize=8)
            if j == 0:
                ax.set_ylabel(o.name, fontsize=8)
            ax.tick_params(labelsize=7)
    fig.suptitle("each parameter against each objective (colour: evaluation order)", fontsize=10)
    return save_figure(fig, folder / "parameters_vs_objectives.png", dpi=100)

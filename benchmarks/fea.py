"""What does a fea-package evaluation cost, and how accurate is it, as the mesh is refined?

Run by hand: ``.venv/bin/python benchmarks/fea.py [repeats]``. For each mesh density it prints the
number of unknowns (DOFs) of the default package design, the median seconds of one evaluation
(``FlipChipFEA.evaluate_one``: mesh, assembly, solve and outputs; ``repeats`` runs after one warm-up), the
package outputs' change against the finest mesh, and the error of the two-layer strip (Si on FR-4, the
same solver) against Timoshenko's bimetal curvature (plane-strain moduli). Last, the log-log slope of
time against DOFs (1 = linear cost), fitted over the densities whose evaluations take over 50 ms, where
fixed per-call overheads no longer dominate.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time

import numpy as np
from reflow.plugins.physics import fea, fem
from reflow.plugins.physics import materials as matlib
from reflow.plugins.physics.bilayer import bilayer

DENSITIES = (1, 2, 4, 8, 12, 16, 24, 32)


def strip_error(density: int) -> float:
    """Relative curvature error of a 20 mm Si-on-FR-4 strip against Timoshenko (plane strain)."""
    si, fr4 = matlib.get("Si"), matlib.get("FR-4")

    def ps(m: matlib.Material) -> tuple[float, float]:
        return m.e_gpa / (1 - m.poisson**2), m.cte_ppm * (1 + m.poisson)

    (e1, a1), (e2, a2) = ps(si), ps(fr4)
    ref = bilayer(0.5, 1.0, e1, e2, a1, a2, 20.0, -200.0)["curvature_1_per_m"]
    fe = fem.solve_strip([(fr4, 1.0), (si, 0.5)], 20.0, -200.0, density)["curvature_1_per_m"]
    return fe / ref - 1.0


def main() -> None:
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    evaluator = fea.FlipChipFEA()
    defaults = {v.name: v.default for v in fea.INPUTS}
    evaluator.evaluate_one(defaults)  # imports scikit-fem, warms caches
    rows = []
    for n in DENSITIES:
        design = {**defaults, "mesh_density": n}
        times, out = [], None
        for _ in range(repeats):
            t0 = time.perf_counter()
            out = evaluator.evaluate_one(design)
            times.append(time.perf_counter() - t0)
        rows.append((n, fea.solve_package(design).dofs, statistics.median(times), out, strip_error(n)))
    finest = rows[-1][3]
    print(f"fea-package, default design; {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, median of {repeats}")
    print(f"{'density':>7} {'DOFs':>7} {'s/eval':>8} {'warpage_um':>11} {'d_warp%':>8} {'gamma':>9} {'d_gamma%':>8} "
          f"{'die_s1':>7} {'solder_vm':>9} {'strip err':>10}")
    for n, dofs, sec, out, err in rows:
        dw = 100 * (out["warpage_um"] / finest["warpage_um"] - 1)
        dg = 100 * (out["solder_shear_strain_range"] / finest["solder_shear_strain_range"] - 1)
        mark = "*" if n == fea.DEFAULT_MESH_DENSITY else " "
        print(f"{n:>6}{mark} {dofs:>7} {sec:>8.3f} {out['warpage_um']:>11.3f} {dw:>8.3f} "
              f"{out['solder_shear_strain_range']:>9.6f} {dg:>8.3f} {out['die_max_principal_stress_mpa']:>7.2f} "
              f"{out['solder_max_von_mises_mpa']:>9.2f} {err:>10.2e}")
    dofs = np.array([r[1] for r in rows], dtype=float)
    secs = np.array([r[2] for r in rows])
    fit = secs > 0.05
    if fit.sum() >= 2:
        slope = np.polyfit(np.log(dofs[fit]), np.log(secs[fit]), 1)[0]
        print(f"time ~ DOFs^{slope:.2f} (log-log fit over {int(fit.sum())} densities with > 50 ms per evaluation)")
    slope_all = np.polyfit(np.log(dofs), np.log(secs), 1)[0]
    print(f"time ~ DOFs^{slope_all:.2f} (all densities)")
    print("* default mesh; d_warp%, d_gamma%: change against the finest mesh; strip err: strip curvature vs "
          "Timoshenko 1925")


if __name__ == "__main__":
    main()

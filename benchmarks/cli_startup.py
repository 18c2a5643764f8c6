"""How fast does ``reflow --help`` answer, and what does ``import reflow.cli`` pull in?

Run by hand: ``.venv/bin/python benchmarks/cli_startup.py [repeats]``. Prints the median and best
wall-clock seconds of ``reflow --help`` (a fresh interpreter each time) and of a bare ``python -c pass``
for reference, plus the heavy libraries the CLI module imports at start-up (should be none).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time


def timed(argv: list[str], repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True)
        times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    python = timed([sys.executable, "-c", "pass"], repeats)
    cli = timed([sys.executable, "-m", "reflow.cli", "--help"], repeats)
    probe = ("import sys, reflow.cli; print(','.join(m for m in ('numpy', 'xarray', 'scipy', 'pandas', "
             "'matplotlib', 'torch', 'botorch', 'dask', 'distributed') if m in sys.modules) or 'none')")
    heavy = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True).stdout.strip()
    print(f"python -c pass      median {statistics.median(python):.3f} s  best {min(python):.3f} s")
    print(f"reflow --help       median {statistics.median(cli):.3f} s  best {min(cli):.3f} s  ({repeats} runs)")
    print(f"heavy imports at start-up: {heavy}")


if __name__ == "__main__":
    main()

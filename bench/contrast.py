"""Does the contrast preset separate glibc from jemalloc, run after run?

Runs ``stair-stepper experiment --preset contrast`` RUNS times (glibc and
jemalloc, one after the other, loopback only) and prints, per run, the
glibc/jemalloc ratio of the median pause floor (robust to jemalloc's noisy
idle floor) and of the last floor, plus the run's wall time. Target: median
floor ratio >= 2.0 in every run, each run under 5 minutes on 2 cores.

    python bench/contrast.py [--runs 3] [--out results/bench-contrast]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", default=None, help="parent folder for the runs")
    parser.add_argument("extra", nargs="*", help="more experiment flags, after --")
    args = parser.parse_args()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    parent = Path(args.out or f"results/bench-contrast-{stamp}")
    rows, folders = [], []
    for run in range(1, args.runs + 1):
        folder = parent / f"run{run}"
        began = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "stair_stepper", "experiment", "--preset", "contrast",
             "--allocators", "glibc,jemalloc", "--out", str(folder), *args.extra],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        took = time.monotonic() - began
        if done.returncode != 0:
            print(f"run {run} failed (exit {done.returncode}); see {folder}", file=sys.stderr)
            return 1
        v = json.loads((folder / "summary.json").read_text())["variants"]
        g, j = v["glibc"], v["jemalloc"]
        rows.append((run, g["median_floor_bytes"] / j["median_floor_bytes"],
                     g["last_floor_bytes"] / j["last_floor_bytes"], took,
                     g["median_floor_bytes"], j["median_floor_bytes"],
                     g["after_trim_bytes"]))  # fmt: skip
        folders.append(str(folder))
    mb = 2**20
    print("run  median-floor ratio  last-floor ratio  wall   glibc med  jemalloc med  glibc trim")
    for run, median, last, took, gm, jm, gt in rows:
        print(f"{run:>3}  {median:18.2f}  {last:16.2f}  {took / 60:4.1f}m  {gm / mb:6.0f} MB"
              f"  {jm / mb:9.0f} MB  {gt / mb:7.0f} MB")  # fmt: skip
    met = sum(r[1] >= 2.0 for r in rows)
    print(f"\nmedian-floor ratio >= 2.0 in {met} of {len(rows)} runs; "
          f"slowest run {max(r[3] for r in rows) / 60:.1f} min")  # fmt: skip
    subprocess.run([sys.executable, "-m", "stair_stepper", "plot", *folders, "-o", str(parent)],
                   stdout=subprocess.DEVNULL)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

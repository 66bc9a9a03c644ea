"""Does the contrast preset separate glibc from jemalloc, run after run?

Runs ``stair-stepper experiment --preset contrast`` RUNS times (glibc, jemalloc
and jemalloc+bg, one after the other, loopback only) and prints, per run, the
glibc/jemalloc and glibc/jemalloc+bg ratios of the median pause floor (robust
to plain jemalloc's noisy idle floor) and of the last floor, plus the run's
wall time. Target: glibc/jemalloc median-floor ratio >= 2.0 in every run, each
run under 5 minutes on 2 cores. Extra experiment flags go after ``--``, e.g.
``-- --poll-interval 0.1`` (the allocator polls are idle traffic; see README).

    python bench/contrast.py [--runs 3] [--out DIR] [-- experiment flags]
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
             "--out", str(folder), *args.extra],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        took = time.monotonic() - began
        if done.returncode != 0:
            print(f"run {run} failed (exit {done.returncode}); see {folder}", file=sys.stderr)
            return 1
        v = json.loads((folder / "summary.json").read_text())["variants"]
        rows.append((run, took, v))
        folders.append(str(folder))
    mb = 2**20
    others = [n for n in rows[0][2] if n != "glibc"]
    head = "run  wall   glibc median floor  " + "  ".join(
        f"{n}: median floor, glibc/{n} median (last)" for n in others
    )
    print(head)
    for run, took, v in rows:
        g = v["glibc"]
        cells = [
            f"{v[n]['median_floor_bytes'] / mb:6.0f} MB, "
            f"{g['median_floor_bytes'] / v[n]['median_floor_bytes']:4.2f} "
            f"({g['last_floor_bytes'] / v[n]['last_floor_bytes']:4.2f})"
            for n in others
        ]
        print(f"{run:>3}  {took / 60:4.1f}m  {g['median_floor_bytes'] / mb:14.0f} MB  "
              + "    ".join(cells))  # fmt: skip
    for n in others:
        met = sum(v["glibc"]["median_floor_bytes"] / v[n]["median_floor_bytes"] >= 2.0
                  for _, _, v in rows)  # fmt: skip
        print(f"glibc/{n} median-floor ratio >= 2.0 in {met} of {len(rows)} runs")
    print(f"slowest run {max(r[1] for r in rows) / 60:.1f} min")
    subprocess.run([sys.executable, "-m", "stair_stepper", "plot", *folders, "-o", str(parent)],
                   stdout=subprocess.DEVNULL)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

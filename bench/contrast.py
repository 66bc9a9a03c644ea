"""Does the default run show the stairs and the contrast, run after run, within 5 minutes?

Runs ``stair-stepper experiment`` (the default preset: glibc, jemalloc and
jemalloc+bg side by side, settled pauses, no idle traffic, loopback only)
``--repeat N`` times into one folder, then prints per run and as median
(min–max):

- the run's wall time (target: <= 300 s each);
- glibc's floor-to-floor rises of >= 16 MB (target: >= 3);
- glibc/jemalloc+bg by median settled floor (target: >= 2.5);
- glibc/jemalloc by median settled floor (no target: reported with its spread);

and one verdict line per target. Extra experiment flags go after ``--``.

    python bench/contrast.py [--repeat 3] [--out DIR] [-- experiment flags]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

TARGETS = {"wall_s": 300.0, "rises": 3, "glibc/jemalloc+bg": 2.5}


def spread(values: list[float], digits: int = 2) -> str:
    f = f"{{:.{digits}f}}"
    return (
        f"{f.format(statistics.median(values))} ({f.format(min(values))}–{f.format(max(values))})"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", default=None, help="result folder (default results/bench-…)")
    parser.add_argument("extra", nargs="*", help="more experiment flags, after --")
    args = parser.parse_args()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    folder = Path(args.out or f"results/bench-contrast-{stamp}")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "stair_stepper",
            "experiment",
            "--repeat",
            str(args.repeat),
            "--out",
            str(folder),
            *args.extra,
        ],
        stdout=subprocess.DEVNULL,
    )
    if done.returncode != 0:
        print(f"the experiment failed (exit {done.returncode}); see {folder}", file=sys.stderr)
        return 1
    rows = []
    for run in sorted(folder.glob("run-*"), key=lambda p: int(p.name[4:])):
        meta = json.loads((run / "meta.json").read_text())
        v = json.loads((run / "summary.json").read_text())["variants"]
        g = v["glibc"]["median_floor_bytes"]
        rows.append(
            {
                "run": run.name,
                "wall_s": meta["finished_at"] - meta["started_at"],
                "rises": v["glibc"]["steps"],
                "glibc floors MB": [round(f / 2**20) for f in v["glibc"]["floors_bytes"]],
                "glibc/jemalloc+bg": g / v["jemalloc+bg"]["median_floor_bytes"],
                "glibc/jemalloc": g / v["jemalloc"]["median_floor_bytes"],
                "unsettled": sum(not ok for s in v.values() for ok in s["floors_settled"]),
            }
        )
    print(f"results: {folder}")
    for r in rows:
        print(
            f"{r['run']}: wall {r['wall_s']:.0f} s; glibc floors {r['glibc floors MB']} MB, "
            f"{r['rises']} rises; glibc/jemalloc+bg {r['glibc/jemalloc+bg']:.2f}; "
            f"glibc/jemalloc {r['glibc/jemalloc']:.2f}; unsettled floors {r['unsettled']}"
        )
    n = len(rows)
    for key in ("wall_s", "rises", "glibc/jemalloc+bg", "glibc/jemalloc"):
        print(
            f"{key}: {spread([r[key] for r in rows], 0 if key in ('wall_s', 'rises') else 2)}"
            f" over {n} runs"
        )
    walls = sum(r["wall_s"] <= TARGETS["wall_s"] for r in rows)
    rises = sum(r["rises"] >= TARGETS["rises"] for r in rows)
    ratio = sum(r["glibc/jemalloc+bg"] >= TARGETS["glibc/jemalloc+bg"] for r in rows)
    for label, met in (
        ("wall time <= 300 s", walls),
        ("glibc rises >= 3", rises),
        ("glibc/jemalloc+bg >= 2.5", ratio),
    ):
        print(f"{'MET' if met == n else 'NOT MET'}: {label} in {met} of {n} runs")
    print(f"reported: glibc/jemalloc {spread([r['glibc/jemalloc'] for r in rows])}, no target")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

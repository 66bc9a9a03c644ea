"""How does analysis time grow with trace length? (targets: 10 h ÷ 10 min <= 3 for 2 variants;
1 h × 2 variants at least 2× faster than the code before decimation)

Writes synthetic result folders at 10 Hz — 10 minutes, 1 hour and 10 hours, with 2 and 6
variants, batches and pauses — and times ``plot.analyse`` on each (CSV
reading, summary, every figure as PNG and SVG; each in a fresh interpreter, imports
included), then prints the growth ratios. With
``--baseline REV`` it also times the 1 h × 2 variant folder with the analysis code of that
git revision (from a temporary worktree, in a subprocess), side by side in the same run.

    python bench/analysis_speed.py [--baseline 28fb4b3] [--skip-10h] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from stair_stepper.record.schema import BATCH_COLUMNS, TRACE_COLUMNS, RowWriter

MB = 2**20
ROOT = Path(__file__).resolve().parent.parent


def synthetic(folder: Path, name: str, growth: float, seed: int, hours: float = 1.0) -> None:
    rng = random.Random(seed)
    batches = []
    with RowWriter(folder / f"{name}.trace.csv", TRACE_COLUMNS) as w:
        floor = 60 * MB
        rows = int(hours * 36_000)
        for i in range(rows):
            t = i / 10
            cycle, k = t % 120, int(t // 120) + 1  # 60 s batch + 60 s pause, 30 batches
            if t < 10:
                phase = "baseline"
            elif t > rows / 10 - 10:
                phase = "after trim"
            elif cycle < 60:
                phase = f"batch {k}"
            else:
                phase = f"pause {k}"
            if phase.startswith("batch"):
                rss = floor + 300 * MB * abs(math.sin(t)) + rng.random() * MB
                if cycle > 59.8:
                    floor += growth
                    batches.append({"batch": k, "start_s": t - 60, "end_s": t})
            else:
                rss = floor + rng.random() * MB
            w.write(
                {
                    "t_s": t,
                    "wall_time": 1.7e9 + t,
                    "phase": phase,
                    "rss_bytes": int(rss),
                    "live_bytes": int(rss / 3),
                    "held_bytes": int(rss * 0.9),
                }
            )
    with RowWriter(folder / f"{name}.batches.csv", BATCH_COLUMNS) as w:
        for row in batches:
            w.write(row)


def make(folder: Path, hours: float, variants: int) -> Path:
    folder.mkdir(parents=True)
    (folder / "meta.json").write_text(json.dumps({"config": {"preset": f"synthetic-{hours:.3g}h"}}))
    for k in range(variants):
        synthetic(folder, f"variant{k + 1}", (25 - 4 * k) * MB, k + 1, hours)
    return folder


# One analysis, timed in a fresh interpreter: matplotlib's import and every first-use cost
# count the same for every length and for the old code.
ANALYSE = (
    "import sys, time; t = time.perf_counter(); from pathlib import Path; "
    "from stair_stepper.analysis import plot; f = Path(sys.argv[1]); "
    "plot.analyse(f, f / sys.argv[2]); print(time.perf_counter() - t)"
)


def timed(folder: Path, out: str = "out", env: dict | None = None, cwd: Path = ROOT) -> float:
    done = subprocess.run(
        [sys.executable, "-c", ANALYSE, str(folder), out],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return float(done.stdout.strip().splitlines()[-1])


def old_code_times(rev: str, folder: Path, tmp: Path, repeat: int) -> list[float]:
    """The same folder analysed by the code of ``rev`` (a git worktree, a subprocess)."""
    tree = tmp / f"tree-{rev}"
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "-q", "--detach", str(tree), rev], check=True
    )
    try:
        env = dict(os.environ, PYTHONPATH=str(tree / "src"))
        return [timed(folder, f"old-out-{k}", env, tree) for k in range(repeat)]
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)])


def spread(times: list[float]) -> str:
    return f"{statistics.median(times):.2f} s ({min(times):.2f}–{max(times):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", help="git revision whose analysis code to time as well")
    parser.add_argument("--skip-10h", action="store_true", help="leave out the 10-hour traces")
    parser.add_argument("--repeat", type=int, default=3, help="timings per case (median shown)")
    args = parser.parse_args()
    lengths = [("10 min", 1 / 6), ("1 h", 1.0)] + ([] if args.skip_10h else [("10 h", 10.0)])
    times: dict[tuple[str, int], list[float]] = {}
    print(f"median (min–max) of {args.repeat} analyses in fresh interpreters, imports included")
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        for variants in (2, 6):
            for label, hours in lengths:
                folder = make(base / f"{label.replace(' ', '')}-{variants}", hours, variants)
                times[label, variants] = [timed(folder, f"out-{k}") for k in range(args.repeat)]
                print(
                    f"{label:>6} × {variants} variants ({int(hours * 36_000):,} rows each): "
                    f"{spread(times[label, variants])}",
                    flush=True,
                )
        median = {key: statistics.median(value) for key, value in times.items()}
        for variants in (2, 6):
            longest = lengths[-1][0]
            ratio = median[longest, variants] / median["10 min", variants]
            target = " (target <= 3)" if variants == 2 else ""
            print(f"growth {longest} ÷ 10 min, {variants} variants: {ratio:.2f}{target}")
        if args.baseline:
            old = old_code_times(args.baseline, base / "1h-2", base, args.repeat)
            new = median["1 h", 2]
            print(
                f"1 h × 2 variants: code of {args.baseline} {spread(old)}, this code "
                f"{spread(times['1 h', 2])}: {statistics.median(old) / new:.2f}× faster "
                "(target >= 2)"
            )


if __name__ == "__main__":
    main()

"""How long do summary + figures take for a long run? (target: <= 3 s)

Writes a synthetic result folder: 2 variants, 1 hour at 10 Hz (36,000 rows
each), with batches and pauses, then times ``stair-stepper plot`` on it in
this process (CSV reading, summary, both figures as PNG and SVG).

    python bench/analysis_speed.py
"""

from __future__ import annotations

import json
import math
import random
import tempfile
import time
from pathlib import Path

from stair_stepper.analysis import plot
from stair_stepper.traces import BATCH_COLUMNS, TRACE_COLUMNS, RowWriter

MB = 2**20


def synthetic(folder: Path, name: str, growth: float, seed: int) -> None:
    rng = random.Random(seed)
    batches = []
    with RowWriter(folder / f"{name}.trace.csv", TRACE_COLUMNS) as w:
        floor = 60 * MB
        for i in range(36_000):
            t = i / 10
            cycle, k = t % 120, int(t // 120) + 1  # 60 s batch + 60 s pause, 30 batches
            if t < 10:
                phase = "baseline"
            elif t > 3590:
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


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "meta.json").write_text(json.dumps({"config": {"preset": "synthetic-1h"}}))
        synthetic(folder, "glibc", 25 * MB, 1)
        synthetic(folder, "jemalloc", 2 * MB, 2)
        began = time.perf_counter()
        summary, written = plot.analyse(folder)
        took = time.perf_counter() - began
    rows = sum(v["samples"] for v in summary["variants"].values())
    print(
        f"{rows} samples, 2 variants: summary + 2 figures (PNG+SVG) in {took:.2f} s "
        f"(target <= 3 s); {len(written)} files"
    )


if __name__ == "__main__":
    main()

"""Does the default run show the stairs and the contrast, run after run, within 5 minutes?

Runs ``stair-stepper experiment --repeat N`` (the default preset: glibc, jemalloc and
jemalloc+bg side by side, settled pauses, no idle traffic, loopback only) into one folder,
then prints per run and as median (min–max) the wall time (target <= 300 s), glibc's
floor-to-floor rises of >= 16 MB (target >= 3), glibc/jemalloc+bg by median settled floor
(target >= 2.5) and glibc/jemalloc (no target), with a verdict line per target. The same
table is the README's ``published:targets`` block (analysis/publish.py builds both).

    python bench/contrast.py [--repeat 3] [--out DIR] [-- experiment flags]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from stair_stepper.analysis import publish


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", default=None, help="result folder (default results/bench-…)")
    parser.add_argument("extra", nargs="*", help="more experiment flags, after --")
    args = parser.parse_args()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    folder = Path(args.out or f"results/bench-contrast-{stamp}")
    command = [sys.executable, "-m", "stair_stepper", "experiment", "--repeat", str(args.repeat)]
    done = subprocess.run([*command, "--out", str(folder), *args.extra], stdout=subprocess.DEVNULL)
    if done.returncode != 0:
        print(f"the experiment failed (exit {done.returncode}); see {folder}", file=sys.stderr)
        return 1
    print(f"results: {folder}\n")
    print(publish.targets_block([folder]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

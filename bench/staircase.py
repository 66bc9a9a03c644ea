"""What makes glibc's floors climb batch after batch? A sweep of the workload, with arenas.

Each configuration is one ``stair-stepper experiment`` on glibc alone (the widget handler on
the drill plans, pauses until RSS settles), varied one setting at a time from the default:
the threads that allocate (``--offload-threads``), the requests in flight
(``--concurrency``), the requests a batch (``--iterations``), the body sizes (``--tags``)
and the number of batches. Per run it prints glibc's settled floors, the floor-to-floor
rises of at least 16 MB, what the trim left as a share of the last floor, and from the
arena data read at each floor (malloc_info): how many arenas there were, and per batch how
many of them grew their held bytes by at least 4 MB and by how much in all. Then one line
per configuration: runs with at least 3 rises, median rises and the median share kept.

    python bench/staircase.py [--repeat 3] [--batches 8] [--only NAME …] [--out DIR]

Every configuration's raw data stays in ``OUT/NAME`` (a --repeat folder), so the table can
be rebuilt with ``--table OUT`` and published (``docs/results/staircase-sweep``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import _experiment

from stair_stepper.analysis import publish_blocks as publish
from stair_stepper.experiment.presets import PRESETS

#: name -> flags beside the default's (the default preset's workload, glibc alone)
GRID = {
    "default": [],
    # the threads that allocate: the default's 32 share glibc's 16 arenas (8 a core); 8 was
    # the default before this sweep (an arena each, full after the first batch)
    "threads-0": ["--offload-threads", "0"],
    "threads-4": ["--offload-threads", "4"],
    "threads-8": ["--offload-threads", "8"],
    "threads-16": ["--offload-threads", "16"],
    "threads-64": ["--offload-threads", "64"],
    "inflight-16": ["--concurrency", "16"],
    "inflight-32": ["--concurrency", "32"],
    "batch-128": ["--iterations", "32", "--concurrency", "32"],  # drill: in flight ≤ iterations
    "iterations-128": ["--iterations", "128"],
    "large-only": ["--tags", "large"],
    "medium-only": ["--tags", "medium"],
    # fewer batches: the default before this sweep had five
    "batches-5": ["--batches", "5"],
}


def run(name: str, flags: list[str], out: Path, repeat: int, batches: int) -> int:
    print(f"{name}: {' '.join(flags) or '(the default)'}", file=sys.stderr, flush=True)
    common = ["--allocators", "glibc", "--batches", str(batches), "--no-plot"]
    return _experiment.run(out / name, *common, "--repeat", str(repeat), *flags)


def table(out: Path) -> str:
    """The README's ``published:staircase-sweep`` block, from every configuration under out."""
    folders = sorted(p for p in out.iterdir() if (p / "meta.json").exists())
    return publish.staircase_block(folders)


def main() -> int:
    parser = _experiment.parser(__doc__)
    parser.add_argument(
        "--batches", type=int, default=PRESETS["contrast"].pacing.batches, help="the default's (8)"
    )
    parser.add_argument("--only", nargs="*", choices=sorted(GRID), help="these configurations")
    parser.add_argument("--table", type=Path, help="only print the table of an earlier sweep")
    args = parser.parse_args()
    if args.table:
        print(table(args.table))
        return 0
    out = _experiment.folder(args.out, "staircase")
    out.mkdir(parents=True, exist_ok=True)
    failed = [
        name
        for name in args.only or GRID
        if run(name, [*GRID[name], *args.extra], out, args.repeat, args.batches) != 0
    ]
    print(table(out))
    if failed:
        print(f"failed: {', '.join(failed)} (see their folders)", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())

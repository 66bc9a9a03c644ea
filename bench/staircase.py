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

    python bench/staircase.py [--repeat 3] [--batches 6] [--only NAME …] [--out DIR]

Every configuration's raw data stays in ``OUT/NAME`` (a --repeat folder), so the table can
be rebuilt with ``--table OUT`` and published (``docs/results/staircase-sweep``).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from stair_stepper.analysis import layers, summary

MB = 2**20
GROWN = 4 * MB  # an arena "grew" in a batch when its held bytes rose at least this much

#: name -> flags beside the default's (the default preset's workload, glibc alone)
GRID = {
    "default": [],
    "threads-0": ["--offload-threads", "0"],
    "threads-2": ["--offload-threads", "2"],
    "threads-4": ["--offload-threads", "4"],
    "threads-16": ["--offload-threads", "16"],
    "threads-32": ["--offload-threads", "32"],
    "inflight-16": ["--concurrency", "16"],
    "inflight-32": ["--concurrency", "32"],
    "iterations-32": ["--iterations", "32"],
    "iterations-128": ["--iterations", "128"],
    "large-only": ["--tags", "large"],
    "medium-only": ["--tags", "medium"],
}


def run(name: str, flags: list[str], out: Path, repeat: int, batches: int) -> int:
    command = [
        sys.executable,
        "-m",
        "stair_stepper",
        "experiment",
        "--allocators",
        "glibc",
        "--batches",
        str(batches),
        "--repeat",
        str(repeat),
        "--no-plot",
        "--out",
        str(out / name),
        *flags,
    ]
    print(f"{name}: {' '.join(flags) or '(the default)'}", file=sys.stderr, flush=True)
    return subprocess.run(command, stdout=subprocess.DEVNULL).returncode


def arena_growth(run_folder: Path) -> tuple[int | None, list[tuple[int, float]]]:
    """Arenas at the last floor; per batch after the first: (arenas grown ≥ 4 MB, MB grown)."""
    data, _, _ = summary.load_folder(run_folder)
    v = data.get("glibc")
    if v is None or v.arenas is None:
        return None, []
    floors = layers.arenas_by_floor(v.arenas, summary.pause_phases(v.trace))
    held = [{a["arena"]: a["system_bytes"] or 0 for a in floor} for floor in floors]
    growth = []
    for before, after in zip(held, held[1:]):  # noqa: B905 - consecutive floors
        rises = [after[a] - before.get(a, 0) for a in after]
        growth.append((sum(r >= GROWN for r in rises), sum(r for r in rises if r > 0) / MB))
    return (len(held[-1]) if held else None), growth


def table(out: Path) -> str:
    lines = [
        "| configuration | run | glibc floors, MB | rises ≥ 16 MB | after trim / last floor | "
        "arenas | per later batch: arenas grown ≥ 4 MB (MB grown) |",
        "|---|---|---|---|---|---|---|",
    ]
    verdicts = []
    for folder in sorted(p for p in out.iterdir() if (p / "meta.json").exists()):
        flags = " ".join(GRID.get(folder.name, [])) or "the default"
        rises_all, kept_all = [], []
        for run_folder in summary.run_folders(folder):
            s = summary.summarise(run_folder)["variants"].get("glibc")
            if not s or not s.get("floors_bytes"):
                continue
            floors = s["floors_bytes"]
            kept = (s.get("after_trim_bytes") or 0) / floors[-1]
            arenas, growth = arena_growth(run_folder)
            rises_all.append(s["steps"])
            kept_all.append(kept)
            grown = ", ".join(f"{n} ({mb:.0f})" for n, mb in growth)
            lines.append(
                f"| {folder.name} | {run_folder.name} | "
                + " → ".join(f"{f / MB:.0f}" for f in floors)
                + f" | {s['steps']} | {kept:.0%} | {arenas if arenas is not None else '–'} "
                f"| {grown} |"
            )
        if rises_all:
            verdicts.append(
                f"- {folder.name} ({flags}): {sum(r >= 3 for r in rises_all)} of "
                f"{len(rises_all)} runs with ≥ 3 rises; median rises "
                f"{statistics.median(rises_all):g}, median kept after trim "
                f"{statistics.median(kept_all):.0%}."
            )
    return "\n".join(lines + [""] + verdicts) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--batches", type=int, default=6)
    parser.add_argument("--only", nargs="*", choices=sorted(GRID), help="these configurations")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--table", type=Path, help="only print the table of an earlier sweep")
    args = parser.parse_args()
    if args.table:
        print(table(args.table))
        return 0
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = args.out or Path(f"results/bench-staircase-{stamp}")
    out.mkdir(parents=True, exist_ok=True)
    failed = []
    for name in args.only or GRID:
        if run(name, GRID[name], out, args.repeat, args.batches) != 0:
            failed.append(name)
    print(table(out))
    if failed:
        print(f"failed: {', '.join(failed)} (see their folders)", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())

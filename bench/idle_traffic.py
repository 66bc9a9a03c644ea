"""Plain jemalloc returns memory only while requests keep arriving: floors against idle traffic.

For each idle rate R (requests per second of GET /__stair_stepper__/healthz during the pauses;
0 is a quiet service), runs ``stair-stepper experiment --allocators jemalloc,jemalloc+bg
--idle-rps R --repeat N`` (the default preset otherwise: side by side, settled
pauses, loopback only) and prints each variant's median settled floor as median
(min–max) over the N runs, then draws ``idle-traffic.png/.svg`` in the output folder.

    python bench/idle_traffic.py [--rates 0,0.2,1,5] [--repeat 3] [--out DIR]
"""

from __future__ import annotations

from pathlib import Path

import _experiment

from stair_stepper.analysis import publish_blocks as publish


def main() -> int:
    parser = _experiment.parser(__doc__)
    parser.add_argument("--rates", default="0,0.2,1,5")
    args = parser.parse_args()
    parent = _experiment.folder(args.out, "idle")
    folders = []
    for rate in (float(r) for r in args.rates.split(",")):
        folder = parent / f"idle-{rate:g}"
        flags = ["--allocators", ",".join(publish.IDLE_VARIANTS), "--idle-rps", f"{rate:g}"]
        if _experiment.run(folder, *flags, "--repeat", str(args.repeat), *args.extra) != 0:
            return 1
        folders.append(folder)
    print(f"results: {parent}\n")
    print(publish.idle_block(folders))  # the README's published:idle block, from these folders
    draw(publish.idle_table(folders), parent)
    return 0


def draw(table: dict[float, dict], folder: Path) -> None:
    try:
        from stair_stepper.analysis import figures_floors
    except ImportError:  # matplotlib is the [analysis] extra
        return
    figures_floors.floors_against_idle(table, folder, ("jemalloc", "jemalloc+bg"))


if __name__ == "__main__":
    raise SystemExit(main())

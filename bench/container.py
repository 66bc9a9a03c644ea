"""Will it fit in its container? The default workload under one memory limit, 5 runs.

First one run without a limit (each server still in a memory cgroup of its own) gives each
variant's charged peak; the limit is then put halfway between jemalloc+bg's peak and glibc's
(or given with --limit), and the default run (glibc, jemalloc, jemalloc+bg) repeats under it
``--repeat`` times. Known answer: glibc is OOM-killed and jemalloc+bg spared in at least 4 of
5 runs; plain jemalloc is reported as it comes, with its LazyFree and dirty pages. The
README's ``published:container`` block (analysis/publish_production.py) is built from the folder.

    python bench/container.py [--repeat 5] [--limit SIZE] [--out DIR] [-- experiment flags]
"""

from __future__ import annotations

import json

import _experiment

from stair_stepper.analysis import publish_production as publish
from stair_stepper.validate import memory_size

MIB = 1 << 20


def main() -> int:
    p = _experiment.parser(__doc__, repeat=5)
    p.add_argument("--limit", help="the limit (default: halfway between the two peaks)")
    args = p.parse_args()
    folder = _experiment.folder(args.out, "container")
    folder.mkdir(parents=True)
    if args.limit:
        limit = memory_size("--limit", args.limit)
    else:
        free = folder / "unlimited"
        if _experiment.run(free, *args.extra) != 0:
            return 1
        peaks = {
            name: v["cgroup_peak_bytes"]
            for name, v in json.loads((free / "summary.json").read_text())["variants"].items()
        }
        limit = (peaks["glibc"] + peaks["jemalloc+bg"]) // 2 // MIB * MIB
        print(f"unlimited peaks: {', '.join(f'{n} {b // MIB} MiB' for n, b in peaks.items())}")
    print(f"the limit: {limit // MIB} MiB")
    limited = folder / "limited"
    flags = ["--repeat", str(args.repeat), "--memory-limit", f"{limit // MIB}M", *args.extra]
    code = _experiment.run(limited, *flags)
    if code not in (0, 3):  # 3: some variant was OOM-killed, the outcome this measures
        return 1
    print(f"results: {folder}\n")
    print(publish.container_block([folder]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

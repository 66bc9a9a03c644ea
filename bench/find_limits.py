"""The smallest memory limit for each allocator on the default workload: ``experiment
--find-limit`` for glibc, jemalloc and jemalloc+bg (bisection over whole workloads, from
each unlimited run's charged peak, to within 5 % or 16 MiB). The README's
``published:find-limit`` block is built from its folder: per variant the smallest limit that
passed, the largest that failed, the unlimited run's peak and the gap, the workloads it took.

    python bench/find_limits.py [--out DIR] [-- experiment flags]
"""

from __future__ import annotations

import _experiment

from stair_stepper.analysis import publish_production as publish


def main() -> int:
    args = _experiment.parser(__doc__, repeat=1).parse_args()
    folder = _experiment.folder(args.out, "find-limit")
    if _experiment.run(folder, "--find-limit", *args.extra) != 0:
        return 1
    print(f"results: {folder}\n")
    print(publish.find_limit_block([folder]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Does the default run show the stairs and the contrast, run after run, within 5 minutes?

Runs ``stair-stepper experiment --repeat N`` (the default preset: glibc, jemalloc and
jemalloc+bg side by side, settled pauses, no idle traffic, loopback only) into one folder,
then prints per run and as median (min–max) the wall time (target <= 300 s), glibc's
floor-to-floor rises of >= 16 MB (target >= 3), glibc/jemalloc+bg by median settled floor
(target >= 2.5) and glibc/jemalloc (no target), with a verdict line per target. The same
table is the README's ``published:targets`` block (analysis/publish_blocks.py builds both).

    python bench/contrast.py [--repeat 3] [--out DIR] [-- experiment flags]
"""

from __future__ import annotations

import _experiment

from stair_stepper.analysis import publish_blocks as publish


def main() -> int:
    args = _experiment.parser(__doc__).parse_args()
    folder = _experiment.folder(args.out, "contrast")
    if _experiment.run(folder, "--repeat", str(args.repeat), *args.extra) != 0:
        return 1
    print(f"results: {folder}\n")
    print(publish.targets_block([folder]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The cost measurement's known answer: does immediate decay cost what it must?

jemalloc with ``MALLOC_CONF=dirty_decay_ms:0,muzzy_decay_ms:0`` returns every freed page to
the kernel at once and faults it back in at the next allocation, so beside plain jemalloc it
must spend more system CPU per request and take more minor page faults per request. This
runs both, one after another at the ``price`` preset's open-loop rate, ``--repeat`` times
(3 by default, the order rotated each run), and prints the figures as median (min–max) with
one line per check: is je-eager's figure above plain jemalloc's in every run? If not, the
cost columns are not measuring what they say, and no cost figure should be published.

The same table is the README's ``published:decay-cost`` block (analysis/publish_blocks.py).

    python bench/decay_cost.py [--repeat 3] [--out DIR] [-- experiment flags]
"""

from __future__ import annotations

import _experiment

from stair_stepper.analysis import publish_blocks as publish

EAGER = "je-eager=jemalloc MALLOC_CONF=dirty_decay_ms:0,muzzy_decay_ms:0"


def main() -> int:
    args = _experiment.parser(__doc__).parse_args()
    folder = _experiment.folder(args.out, "decay-cost")
    flags = ["--preset", "price", "--allocators", "jemalloc", "--variant", EAGER]
    if _experiment.run(folder, *flags, "--repeat", str(args.repeat), *args.extra) != 0:
        return 1
    print(f"results: {folder}\n")
    print(publish.decay_block([folder]))
    found = publish.decay_cost(folder)
    return 0 if all(outside for _, outside in found["checks"]) else 3


if __name__ == "__main__":
    raise SystemExit(main())

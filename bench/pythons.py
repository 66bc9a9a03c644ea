"""The default workload under two Pythons: glibc and jemalloc+bg on this machine's Python
(3.11 on Debian 12) and on Debian 13's python3.13 (its own C library, glibc 2.41, and its own
allocator builds), and CPython 3.13's mimalloc for objects (``PYTHONMALLOC=mimalloc``), side
by side, 3 runs. The README's ``published:pythons`` block (analysis/publish_production.py) is
built from its folder: the table over the runs, then where the memory sits and the diagnosis.

The second interpreter is $STAIR_STEPPER_TRIXIE_PYTHON, else the Debian 13 root's, made (or
found in its cache) by ``tests/trixie/root.py python`` (root needed).

    python bench/pythons.py [--repeat 3] [--out DIR] [-- experiment flags]
"""

from __future__ import annotations

import os
import subprocess
import sys

import _experiment

from stair_stepper.analysis import publish_production as publish


def second_python() -> str:
    given = os.environ.get("STAIR_STEPPER_TRIXIE_PYTHON")
    if given:
        return given
    done = subprocess.run(
        [sys.executable, str(_experiment.ROOT / "tests" / "trixie" / "root.py"), "python"],
        stdout=subprocess.PIPE,
        text=True,
    )
    if done.returncode != 0:
        raise SystemExit("bench/pythons.py: no Debian 13 interpreter (tests/trixie/root.py python)")
    return done.stdout.strip().splitlines()[-1]


def variants(there: str) -> list[str]:
    """The variants beside the default preset's glibc and jemalloc+bg."""
    bg = "MALLOC_CONF=background_thread:true"
    return [
        "--allocators",
        "glibc,jemalloc+bg",
        "--variant",
        f"glibc-3.13=glibc python={there}",
        "--variant",
        f"jemalloc+bg-3.13=jemalloc {bg} python={there}",
        "--variant",
        f"mimalloc-objects-3.13=glibc PYTHONMALLOC=mimalloc python={there}",
    ]


def main() -> int:
    args = _experiment.parser(__doc__).parse_args()
    folder = _experiment.folder(args.out, "pythons")
    flags = ["--repeat", str(args.repeat), *variants(second_python()), *args.extra]
    if _experiment.run(folder, *flags) != 0:
        return 1
    print(f"results: {folder}\n")
    print(publish.pythons_block([folder]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

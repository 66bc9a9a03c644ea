"""The default workload on a prefork server of our own: gunicorn, 2 workers of 16 threads
(gthread) forked from a master, serving examples/prefork_widgets.py (the widget app's
wasteful POST /widgets as a WSGI app). glibc, glibc with MALLOC_ARENA_MAX=2, jemalloc,
jemalloc+bg, and jemalloc+bg with the remedy (``post_fork=background_thread``), one after
another, 3 runs. The README's ``published:prefork`` block (analysis/publish_production.py) is
built from its folder: the table over the runs, the findings, each process at the last
floor, the layers and the diagnosis.

    python bench/prefork.py [--repeat 3] [--out DIR] [-- experiment flags]
"""

from __future__ import annotations

import sys

import _experiment

from stair_stepper.analysis import publish_production as publish

#: the server, as a team runs it: gunicorn from this interpreter, the app from examples/
COMMAND = (
    f"{sys.executable} -m gunicorn --workers 2 --worker-class gthread --threads 16 "
    f"--bind {{host}}:{{port}} --chdir {_experiment.ROOT / 'examples'} "
    "prefork_widgets:application"
)
VARIANTS = (
    "--allocators",
    "glibc,jemalloc,jemalloc+bg",
    "--variant",
    "glibc-arenas2=glibc MALLOC_ARENA_MAX=2",
    "--variant",
    "jemalloc+bg+post_fork=jemalloc MALLOC_CONF=background_thread:true post_fork=background_thread",
)


def main() -> int:
    args = _experiment.parser(__doc__).parse_args()
    folder = _experiment.folder(args.out, "prefork")
    flags = ["--repeat", str(args.repeat), "--command", COMMAND, "--health-path", "/healthz"]
    if _experiment.run(folder, *flags, *VARIANTS, *args.extra) != 0:
        return 1
    print(f"results: {folder}\n")
    print(publish.prefork_block([folder]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

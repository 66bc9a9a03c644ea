"""The ``stair-stepper`` command line: parse flags, call one function per subcommand.

Heavy imports happen inside the subcommand that needs them, so ``serve`` never
loads the load driver, the recorder or matplotlib into the measured process.
"""

from __future__ import annotations

import argparse
import sys

from . import __version__
from .allocators import PYTHON_MALLOC_MODES, VARIANTS
from .errors import UserError


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}")
    return value


def _cmd_serve(args: argparse.Namespace, argv: list[str]) -> int:
    from .serve import DEFAULT_BIND, ServeOptions, serve

    options = ServeOptions(
        variant=args.allocator,
        binds=tuple(args.bind or [DEFAULT_BIND]),
        sleep_ms=args.sleep_ms,
        python_malloc=args.python_malloc,
        workers=args.workers,
        offload_threads=args.offload_threads,
        max_body_bytes=args.max_body_bytes,
        ready_file=args.ready_file,
        access_log=args.access_log,
    )
    return serve(options, argv)


def _cmd_allocators(args: argparse.Namespace, argv: list[str]) -> int:
    import json

    from .inventory import format_table, inventory

    rows = inventory()
    print(json.dumps(rows, indent=2) if args.json else format_table(rows))
    return 0


def _cmd_plans(args: argparse.Namespace, argv: list[str]) -> int:
    from pathlib import Path

    from . import plans

    sizes = plans.parse_sizes(args.size)
    if args.only:
        sizes = {tag: n for tag, n in sizes.items() if tag in args.only.split(",")}
    for path in plans.generate(Path(args.out), sizes, args.seed):
        print(f"wrote {path} ({path.stat().st_size} bytes)")
    return 0


def _cmd_load(args: argparse.Namespace, argv: list[str]) -> int:
    import json
    from pathlib import Path

    from . import drillfile, load

    bench = drillfile.load(
        args.benchmark, iterations=args.iterations, concurrency=args.concurrency, base=args.base
    )
    items = drillfile.select(bench, args.tags, args.skip_tags)
    total = bench.total_requests(items)
    if not args.quiet:
        names = ", ".join(i.name for i in items)
        print(
            f"{bench.iterations} iterations x {len(items)} items ({names}) = {total} requests, "
            f"concurrency {bench.concurrency}, base {args.base or bench.base}",
            file=sys.stderr,
        )
    progress = None if args.quiet else load.ProgressBar()
    result = load.run_load(
        bench,
        items,
        base=args.base,
        timeout=args.timeout,
        progress=progress,
        allow_non_loopback=args.allow_non_loopback,
    )
    if args.stats:
        print(load.format_stats(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result.to_json(), indent=2) + "\n")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stair-stepper",
        description="Why does a Python service's memory climb in stair steps, "
        "and does swapping the allocator fix it?",
    )
    parser.add_argument("--version", action="version", version=f"stair-stepper {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("serve", help="serve the wasteful widget service on one allocator")
    p.add_argument(
        "--allocator",
        default="glibc",
        choices=list(VARIANTS),
        metavar="VARIANT",
        help=f"allocator variant: {', '.join(VARIANTS)} (default glibc)",
    )
    p.add_argument(
        "--bind",
        action="append",
        metavar="HOST:PORT",
        help="address to listen on, repeatable (default localhost:3000, "
        "which means 127.0.0.1 and ::1)",
    )
    p.add_argument(
        "--sleep-ms",
        type=_non_negative,
        default=None,
        help="simulated database time per request (default: $SLEEP_MS or 150)",
    )
    p.add_argument(
        "--python-malloc",
        choices=PYTHON_MALLOC_MODES,
        default="pymalloc",
        help="'malloc' sets PYTHONMALLOC=malloc so small objects reach the allocator",
    )
    p.add_argument("--workers", type=int, default=1, help="Hypercorn worker processes")
    p.add_argument(
        "--offload-threads",
        type=_non_negative,
        default=None,
        help="parse/copy/serialise in N worker threads (0: on the event loop)",
    )
    p.add_argument(
        "--max-body-bytes",
        type=_non_negative,
        default=None,
        help="largest accepted request body (default 64 MiB)",
    )
    p.add_argument("--ready-file", help="write pid and URLs as JSON here once listening")
    p.add_argument("--access-log", action="store_true", help="log every request to stderr")
    p.set_defaults(func=_cmd_serve)

    p = sub.add_parser("allocators", help="which allocators work here, with versions")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_cmd_allocators)

    p = sub.add_parser("plans", help="generate the drill plan files (request bodies)")
    plans_sub = p.add_subparsers(dest="plans_command", required=True, metavar="ACTION")
    g = plans_sub.add_parser("generate", help="write plans/<tag>.yml with deterministic bodies")
    g.add_argument("--out", default="plans", help="folder to write (default plans/)")
    g.add_argument("--seed", type=int, default=None, help="random seed (default: the fixed one)")
    g.add_argument(
        "--size",
        action="append",
        metavar="TAG=BYTES",
        help="add or resize a tag, e.g. huge=5mb (repeatable)",
    )
    g.add_argument("--only", metavar="TAGS", help="write only these tags (comma-separated)")
    g.set_defaults(func=_cmd_plans)

    p = sub.add_parser("load", help="run a drill benchmark file against a local server")
    p.add_argument("--benchmark", "-b", required=True, help="drill benchmark file")
    p.add_argument("--tags", help="run only items with these tags (comma-separated)")
    p.add_argument("--skip-tags", help="skip items with these tags")
    p.add_argument("--stats", "-s", action="store_true", help="print drill-style statistics")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress output")
    p.add_argument("--iterations", type=int, help="override the file's iterations")
    p.add_argument("--concurrency", type=int, help="override the file's concurrency")
    p.add_argument("--base", help="override the file's base URL")
    p.add_argument("--timeout", type=float, default=120.0, help="per-request timeout, seconds")
    p.add_argument("--json", metavar="FILE", help="write the statistics as JSON")
    p.add_argument("--allow-non-loopback", action="store_true", help=argparse.SUPPRESS)
    p.set_defaults(func=_cmd_load)

    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    try:
        return args.func(args, argv)
    except UserError as exc:
        print(f"stair-stepper: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("stair-stepper: interrupted.", file=sys.stderr)
        return 130

"""The ``stair-stepper`` command line: parse flags, call one function per subcommand.

Heavy imports happen inside the subcommand that needs them, so ``serve`` never
loads the load driver, the recorder or matplotlib into the measured process.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import __version__
from .allocators import PYTHON_MALLOC_MODES, VARIANTS
from .errors import Terminated, UserError
from .validate import (
    flag,
    non_negative_float,
    non_negative_int,
    port,
    positive_float,
    positive_int,
    seconds_or_auto,
)

COUNT = flag(non_negative_int)  # 0, 1, 2 ...
AT_LEAST_ONE = flag(positive_int)
SECONDS = flag(positive_float)  # > 0
NON_NEGATIVE = flag(non_negative_float)
PORT = flag(port)


class _Parser(argparse.ArgumentParser):
    """Usage mistakes are one sentence and exit 2, like every other user error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: {message.rstrip('.')}. (--help lists the options)\n")


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
        public=args.public,
        debug_endpoints=args.debug_endpoints,
        app=args.app,
        app_dir=args.app_dir,
    )
    return serve(options, argv)


def _cmd_allocators(args: argparse.Namespace, argv: list[str]) -> int:
    import json

    from .allocator_trials import format_table, try_all

    rows = try_all()
    print(json.dumps(rows, indent=2) if args.json else format_table(rows))
    return 0


def _cmd_plans(args: argparse.Namespace, argv: list[str]) -> int:

    from . import plans

    sizes = plans.parse_sizes(args.size)
    if args.only:
        sizes = {tag: n for tag, n in sizes.items() if tag in args.only.split(",")}
    for path in plans.generate(Path(args.out), sizes, args.seed):
        print(f"wrote {path} ({path.stat().st_size} bytes)")
    return 0


def _cmd_load(args: argparse.Namespace, argv: list[str]) -> int:
    import json

    from . import drillfile, load

    bench = drillfile.read_benchmark(
        args.benchmark, iterations=args.iterations, concurrency=args.concurrency, base=args.base
    )
    items = drillfile.select(bench, args.tags, args.skip_tags)
    for warning in bench.warnings:
        print(f"warning: {bench.path}: {warning}", file=sys.stderr)
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


def _cmd_record(args: argparse.Namespace, argv: list[str]) -> int:

    from .record import record_command

    command = args.command_line[1:] if args.command_line[:1] == ["--"] else args.command_line
    if (args.pid is None) == (not command):
        raise UserError("give either --pid PID or -- COMMAND ..., not both or neither.")
    return record_command(
        args.pid,
        command or None,
        Path(args.out),
        args.interval,
        args.duration,
        args.service_url,
        args.pss_interval,
        args.poll_interval,
        args.append,
        args.include_children,
    )


def _cmd_experiment(args: argparse.Namespace, argv: list[str]) -> int:
    from dataclasses import replace

    from . import experiment

    config = experiment.PRESETS.get(args.preset)
    if config is None:
        raise UserError(
            f"unknown preset {args.preset!r}; choose one of: {', '.join(experiment.PRESETS)}."
        )
    overrides = {
        "variants": tuple(a.strip() for a in args.allocators.split(","))
        if args.allocators
        else None,
        "batches": args.batches,
        "pause_cap_s": args.pause_cap,
        "idle_rps": args.idle_rps,
        "repeat": args.repeat,
        "tags": args.tags,
        "iterations": args.iterations,
        "concurrency": args.concurrency,
        "sleep_ms": args.sleep_ms,
        "python_malloc": args.python_malloc,
        "offload_threads": args.offload_threads,
        "driver": args.driver,
        "parallel": args.parallel or None,
        "port": args.port,
        "interval_s": args.interval,
        "poll_s": args.poll_interval,
        "benchmark": args.benchmark or experiment.default_benchmark(),
        "app": args.app,
        "app_dir": args.app_dir,
        "command": args.command,
        "health_path": args.health_path,
    }
    if args.benchmark:  # the user's own workload runs at its own size, with all its plans
        config = replace(config, iterations=None, concurrency=None, tags=None)
    config = replace(config, **{k: v for k, v in overrides.items() if v is not None})
    if args.pause is not None:
        config = replace(config, pause_s=None if args.pause == "auto" else args.pause)
    try:
        folder = experiment.run(config, args.out)
    except experiment.Fault as exc:
        print(f"stair-stepper: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("stair-stepper: interrupted; partial results are kept.", file=sys.stderr)
        return 130
    except Terminated as exc:
        print(f"stair-stepper: terminated by {exc}; partial results are kept.", file=sys.stderr)
        return 128 + exc.signum
    return experiment.report(folder, figures=not args.no_plot)


def _cmd_plot(args: argparse.Namespace, argv: list[str]) -> int:
    from .analysis import plot

    return plot.run_args(args)


def _cmd_compare(args: argparse.Namespace, argv: list[str]) -> int:
    from .analysis import compare

    return compare.run_args(args)


def _app_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--app",
        metavar="MODULE:ATTR",
        help="serve your own ASGI or WSGI application instead of the widget app "
        "(MODULE:factory() calls a factory); the memory endpoints are under /__stair_stepper__/",
    )
    p.add_argument("--app-dir", metavar="DIR", help="import --app from here (default: .)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
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
        type=COUNT,
        default=None,
        help="simulated database time per request (default: $SLEEP_MS or 150)",
    )
    p.add_argument(
        "--python-malloc",
        choices=PYTHON_MALLOC_MODES,
        default="pymalloc",
        help="'malloc' sets PYTHONMALLOC=malloc so small objects reach the allocator",
    )
    p.add_argument("--workers", type=AT_LEAST_ONE, default=1, help="Hypercorn worker processes")
    p.add_argument(
        "--offload-threads",
        type=COUNT,
        default=None,
        help="parse/copy/serialise in N worker threads (0: on the event loop)",
    )
    p.add_argument(
        "--max-body-bytes",
        type=COUNT,
        default=None,
        help="largest accepted request body (default 64 MiB)",
    )
    p.add_argument("--ready-file", help="write pid and URLs as JSON here once listening")
    p.add_argument("--access-log", action="store_true", help="log every request to stderr")
    p.add_argument(
        "--public",
        action="store_true",
        help="allow a non-loopback --bind (allocator internals then need --debug-endpoints)",
    )
    p.add_argument(
        "--debug-endpoints",
        action="store_true",
        help="with --public: keep the memory and trim endpoints on",
    )
    _app_arguments(p)
    p.set_defaults(func=_cmd_serve)

    p = sub.add_parser("allocators", help="which allocators work here, with versions")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_cmd_allocators)

    p = sub.add_parser("plans", help="generate the drill plan files (request bodies)")
    plans_sub = p.add_subparsers(dest="plans_command", required=True, metavar="ACTION")
    g = plans_sub.add_parser("generate", help="write plans/<tag>.yml with deterministic bodies")
    g.add_argument("--out", default="plans", help="folder to write (default plans/)")
    g.add_argument("--seed", type=COUNT, default=None, help="random seed (default: the fixed one)")
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
    p.add_argument("--iterations", type=AT_LEAST_ONE, help="override the file's iterations")
    p.add_argument("--concurrency", type=AT_LEAST_ONE, help="override the file's concurrency")
    p.add_argument("--base", help="override the file's base URL")
    p.add_argument("--timeout", type=SECONDS, default=120.0, help="per-request timeout, seconds")
    p.add_argument("--json", metavar="FILE", help="write the statistics as JSON")
    p.add_argument("--allow-non-loopback", action="store_true", help=argparse.SUPPRESS)
    p.set_defaults(func=_cmd_load)

    p = sub.add_parser("record", help="sample a process's memory into a CSV trace")
    p.add_argument("--pid", type=AT_LEAST_ONE, help="process to record")
    p.add_argument("--out", "-o", required=True, help="trace CSV to write (must not exist)")
    p.add_argument(
        "--append",
        action="store_true",
        help="continue an existing trace (its clock goes on from the last row)",
    )
    p.add_argument("--interval", type=SECONDS, default=0.1, help="seconds between samples")
    p.add_argument("--duration", type=SECONDS, help="stop after this many seconds")
    p.add_argument("--service-url", help="our service's base URL, for allocator accounting")
    p.add_argument(
        "--include-children",
        action="store_true",
        help="record the whole process tree: memory and CPU summed over it, with a process count",
    )
    p.add_argument(
        "--pss-interval",
        type=NON_NEGATIVE,
        default=1.0,
        help="seconds between PSS/USS reads (smaps_rollup is costly; default 1; 0: every sample)",
    )
    p.add_argument(
        "--poll-interval",
        type=SECONDS,
        default=0.5,
        help="seconds between allocator polls with --service-url (default 0.5)",
    )
    p.add_argument("command_line", nargs=argparse.REMAINDER, metavar="-- COMMAND ...")
    p.set_defaults(func=_cmd_record)

    p = sub.add_parser("experiment", help="the main job: load each allocator, record, analyse")
    p.add_argument("--preset", default="contrast", help="contrast (default), seed, arenas, quick")
    p.add_argument("--allocators", help=f"comma-separated variants: {', '.join(VARIANTS)}")
    p.add_argument("--batches", type=AT_LEAST_ONE)
    p.add_argument(
        "--pause",
        type=flag(seconds_or_auto),
        help="'auto' (default: until RSS moved < 1 MB over 2 s, at most --pause-cap) or seconds",
    )
    p.add_argument("--pause-cap", type=SECONDS, help="longest auto pause, seconds (default 30)")
    p.add_argument(
        "--idle-rps",
        type=NON_NEGATIVE,
        help="light requests per second during pauses (default 0: a quiet service)",
    )
    p.add_argument(
        "--repeat",
        type=AT_LEAST_ONE,
        help="run the whole comparison N times (run-1 … run-N in one folder)",
    )
    p.add_argument("--tags", help="plan tags to run (default: the preset's)")
    p.add_argument("--iterations", type=AT_LEAST_ONE, help="iterations per batch")
    p.add_argument("--concurrency", type=AT_LEAST_ONE)
    p.add_argument("--sleep-ms", type=COUNT)
    p.add_argument("--python-malloc", choices=PYTHON_MALLOC_MODES)
    p.add_argument("--offload-threads", type=COUNT)
    p.add_argument("--driver", choices=("builtin", "drill", "auto"))
    p.add_argument("--parallel", action="store_true", help="run the variants side by side")
    p.add_argument("--port", type=PORT, help="first server port (default: a free one)")
    p.add_argument("--interval", type=SECONDS, help="sampling interval, seconds (default 0.1)")
    p.add_argument(
        "--poll-interval",
        type=SECONDS,
        help="seconds between allocator polls during batches (default 0.5; never during "
        "the baseline or a pause, where the allocator is read once at the end)",
    )
    p.add_argument(
        "--benchmark",
        help="drill benchmark file (default ./benchmark.yml); its base is pointed at the "
        "server under test",
    )
    _app_arguments(p)
    p.add_argument(
        "--command",
        metavar='"CMD … {port} …"',
        help="run any HTTP server instead: {host} and {port} are filled in (or give --port "
        "for one that binds a fixed port); its whole process tree is recorded",
    )
    p.add_argument(
        "--health-path",
        metavar="PATH",
        help="with --command: GET this until it answers 2xx/3xx (default: a TCP connect)",
    )
    p.add_argument("--out", help="result folder (default results/<UTC time>-<preset>)")
    p.add_argument("--no-plot", action="store_true", help="tables only, no figures")
    p.set_defaults(func=_cmd_experiment)

    # plot and compare own their command lines (analysis/plot.py, analysis/compare.py). Their
    # modules are imported only when one of them runs, never into `serve`'s measured process.
    p = sub.add_parser("plot", help="summary tables and figures from result folders")
    p.set_defaults(func=_cmd_plot, add_arguments="plot")
    p = sub.add_parser("compare", help="two result folders side by side")
    p.set_defaults(func=_cmd_compare, add_arguments="compare")

    return parser


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = build_parser()
    command = next((a for a in argv if not a.startswith("-")), None)
    if command in ("plot", "compare"):  # complete that subcommand's own arguments first
        import importlib

        module = importlib.import_module(f".analysis.{command}", __package__)
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        module.add_arguments(sub.choices[command])
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = _parse(argv)
    try:
        return args.func(args, argv)
    except UserError as exc:
        print(f"stair-stepper: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("stair-stepper: interrupted.", file=sys.stderr)
        return 130

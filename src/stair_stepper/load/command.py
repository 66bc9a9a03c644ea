"""``stair-stepper load``: run a drill benchmark file against a local server, drill's way or
at a rate, and print drill's statistics (the driver itself is ``driver.py``)."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

from stair_stepper.load.driver import LoadResult, run_load
from stair_stepper.load.openloop import ARRIVALS, fell_behind


class ProgressBar:
    """A one-line progress bar on a terminal; silent elsewhere."""

    def __init__(
        self,
        stream=sys.stderr,
        enabled: bool | None = None,
        label: str = "",
        suffix: Callable[[], str] | None = None,
    ) -> None:
        self.stream = stream
        self.enabled = stream.isatty() if enabled is None else enabled
        self.label = label
        self.suffix = suffix
        self.started = time.monotonic()
        self.last = 0.0

    def __call__(self, done: int, total: int, failed: int) -> None:
        now = time.monotonic()
        if not self.enabled or (now - self.last < 0.25 and done < total):
            return
        self.last = now
        width = 30
        filled = int(width * done / total) if total else width
        rate = done / (now - self.started) if now > self.started else 0.0
        self.stream.write(
            f"\r{self.label}[{'#' * filled}{'.' * (width - filled)}] {done}/{total} "
            f"{rate:7.1f} req/s  {failed} failed"
            + (f"  {self.suffix()}" if self.suffix else "")
            + "\x1b[K"
        )
        if done >= total:
            self.stream.write("\n")
        self.stream.flush()


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{round(value)}ms"


def _rows(f: dict) -> list[tuple[str, object]]:
    return [
        ("Total requests", f["total_requests"]),
        ("Successful requests", f["successful_requests"]),
        ("Failed requests", f["failed_requests"]),
        ("Median time per request", _ms(f["median_ms"])),
        ("Average time per request", _ms(f["mean_ms"])),
        ("Sample standard deviation", _ms(f["stdev_ms"])),
        ("99.0'th percentile", _ms(f["p99_ms"])),
        ("99.5'th percentile", _ms(f["p99_5_ms"])),
        ("99.9'th percentile", _ms(f["p99_9_ms"])),
    ]


def format_stats(result: LoadResult) -> str:
    """drill's --stats layout: nine lines per request name, then the global block."""
    lines: list[str] = []
    for name, samples in result.per_item.items():
        lines.append("")
        lines.extend(f"{name:<25} {label:<25} {value}" for label, value in _rows(samples.figures()))
    data = result.to_json()
    rows = _rows(data)
    rps = f"{data['requests_per_second'] or 0.0:.2f} [#/sec]"
    global_rows = [
        ("Time taken for tests", f"{result.duration_s:.1f} seconds"),
        *rows[:3],
        ("Requests per second", rps),
        *rows[3:],
    ]
    lines.append("")
    lines.extend(f"{label:<25} {value}" for label, value in global_rows)
    return "\n".join(lines)


def add_arguments(p) -> None:
    """``load``'s flags."""
    import argparse

    from stair_stepper.validate import flag, positive_float, positive_int

    p.add_argument("--benchmark", "-b", required=True, help="drill benchmark file")
    p.add_argument("--tags", help="run only items with these tags (comma-separated)")
    p.add_argument("--skip-tags", help="skip items with these tags")
    p.add_argument("--stats", "-s", action="store_true", help="print drill-style statistics")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress output")
    p.add_argument("--iterations", type=flag(positive_int), help="override the file's iterations")
    p.add_argument("--concurrency", type=flag(positive_int), help="override the file's concurrency")
    p.add_argument("--base", help="override the file's base URL")
    p.add_argument(
        "--timeout", type=flag(positive_float), default=120.0, help="per-request timeout, seconds"
    )
    p.add_argument(
        "--rate",
        type=flag(positive_float),
        help="an open loop: send this many requests a second whatever the answers, latency "
        "from when each was due (default: drill's closed loop of --concurrency)",
    )
    p.add_argument(
        "--arrivals",
        choices=ARRIVALS,
        default="constant",
        help="with --rate: evenly spaced, or a seeded Poisson process (default constant)",
    )
    p.add_argument("--json", metavar="FILE", help="write the statistics as JSON")
    p.add_argument("--allow-non-loopback", action="store_true", help=argparse.SUPPRESS)


def run_args(args) -> int:
    from stair_stepper.load import drillfile

    bench = drillfile.read_benchmark(
        args.benchmark, iterations=args.iterations, concurrency=args.concurrency, base=args.base
    )
    items = drillfile.select(bench, args.tags, args.skip_tags)
    for warning in bench.warnings:
        print(f"warning: {bench.path}: {warning}", file=sys.stderr)
    if not args.quiet:
        names = ", ".join(i.name for i in items)
        how = (
            f"at {args.rate:g} a second ({args.arrivals})"
            if args.rate
            else f"concurrency {bench.concurrency}"
        )
        print(
            f"{bench.iterations} iterations x {len(items)} items ({names}) = "
            f"{bench.total_requests(items)} requests, {how}, base {args.base or bench.base}",
            file=sys.stderr,
        )
    result = run_load(
        bench,
        items,
        base=args.base,
        timeout=args.timeout,
        progress=None if args.quiet else ProgressBar(),
        allow_non_loopback=args.allow_non_loopback,
        rate=args.rate,
        arrivals=args.arrivals,
    )
    if args.stats:
        print(format_stats(result))
    lag = result.lag_figures()
    if fell_behind(lag.get("lag_max_ms"), args.rate):
        print(
            f"warning: the sender fell behind its schedule by up to {lag['lag_max_ms']:.0f} ms "
            "(this machine could not keep the rate; latencies are still from when each "
            "request was due)",
            file=sys.stderr,
        )
    if args.json:
        Path(args.json).write_text(json.dumps(result.to_json(), indent=2) + "\n")
    return 0

"""The drill-compatible load driver and drill-style statistics.

Runs a benchmark the way drill does: ``concurrency`` iterations at once, each
running the selected plan items in order, iteration *i* delayed by drill's
integer rampup rule. Bodies are encoded once; connections are kept alive;
non-2xx answers and connection errors are counted as failures, never raised.
Latencies are kept exactly (a list of floats), so a 30-second request is
reported like any other.
"""

from __future__ import annotations

import asyncio
import math
import resource
import statistics
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from stair_stepper.errors import UserError
from stair_stepper.load.drillfile import Benchmark, RequestItem
from stair_stepper.record.schema import fell_behind

ProgressFn = Callable[[int, int, int], None]  # done, total, failed


@dataclass
class Samples:
    """Every request's outcome for one plan item (or for all of them)."""

    durations_ms: list[float] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)  # HTTP status, or 0 for no answer
    errors: Counter = field(default_factory=Counter)  # exception class name -> count

    def add(self, duration_ms: float, status: int, error: str | None = None) -> None:
        self.durations_ms.append(duration_ms)
        self.statuses[status] += 1
        if error:
            self.errors[error] += 1

    @property
    def total(self) -> int:
        return len(self.durations_ms)

    @property
    def successful(self) -> int:
        return sum(n for status, n in self.statuses.items() if 200 <= status < 300)

    def figures(self) -> dict:
        values = sorted(self.durations_ms)
        n = len(values)
        return {
            "total_requests": n,
            "successful_requests": self.successful,
            "failed_requests": n - self.successful,
            "median_ms": percentile(values, 0.5),
            "mean_ms": statistics.fmean(values) if n else None,
            "stdev_ms": statistics.stdev(values) if n > 1 else 0.0 if n else None,
            "p99_ms": percentile(values, 0.99),
            "p99_5_ms": percentile(values, 0.995),
            "p99_9_ms": percentile(values, 0.999),
            "max_ms": values[-1] if n else None,
            "status_counts": {str(k): v for k, v in sorted(self.statuses.items())},
            "errors": dict(self.errors),
        }


def percentile(ordered: list[float], q: float) -> float | None:
    """The nearest-rank percentile, the one definition used for every latency we report (the
    median too): the smallest value with at least a share ``q`` of the samples at or below it
    (HdrHistogram's, and so drill's, ``value_at_quantile`` is of the same kind)."""
    if not ordered:
        return None
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


@dataclass
class LoadResult:
    started_at: float
    finished_at: float
    per_item: dict[str, Samples]
    overall: Samples
    client_cpu_s: float
    concurrency: int
    iterations: int
    base: str
    rate: float | None = None  # requests a second (open loop), None: closed loop
    arrivals: str | None = None
    lags: list[float] | None = None  # open loop: seconds each request was sent late

    @property
    def duration_s(self) -> float:
        return self.finished_at - self.started_at

    def to_json(self) -> dict:
        figures = self.overall.figures()
        return {
            **figures,
            "requests_per_second": figures["total_requests"] / self.duration_s
            if self.duration_s > 0
            else None,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "duration_s": self.duration_s,
            "client_cpu_s": self.client_cpu_s,
            "concurrency": self.concurrency,
            "iterations": self.iterations,
            "base": self.base,
            "rate": self.rate,
            "arrivals": self.arrivals,
            **self.lag_figures(),
            "requests": {name: s.figures() for name, s in self.per_item.items()},
        }

    def lag_figures(self) -> dict:
        """The sender's own schedule lag (open loop): how late requests went out."""
        if not self.lags:
            return {"lag_p99_ms": None, "lag_max_ms": None}
        ordered = sorted(self.lags)
        return {"lag_p99_ms": percentile(ordered, 0.99) * 1000, "lag_max_ms": ordered[-1] * 1000}


def check_loopback(url: str) -> None:
    """Refuse targets that do not resolve to loopback only (this lab never loads anything else)."""
    from stair_stepper.load.client import outside_loopback

    host = urlsplit(url).hostname
    if not host:
        raise UserError(f"{url!r} has no host.")
    address = outside_loopback(host)
    if address == "":
        raise UserError(f"cannot resolve {host!r}.")
    if address is not None:
        raise UserError(
            f"{host} resolves to {address}, which is not loopback; stair-stepper only loads "
            "local servers (pass --allow-non-loopback if you really mean it)."
        )


@dataclass(frozen=True)
class _Prepared:
    name: str
    method: str
    url: str
    headers: dict[str, str]
    body: bytes | None


def _prepare(bench: Benchmark, items: tuple[RequestItem, ...], base: str | None) -> list[_Prepared]:
    return [
        _Prepared(
            i.name,
            i.method,
            bench.absolute_url(i, base),
            i.headers,
            i.body.encode() if i.body is not None else None,
        )
        for i in items
    ]


class _Recorder:
    """Every request's outcome, per item and overall, and the progress line."""

    def __init__(self, prepared: list, total: int, progress: ProgressFn | None) -> None:
        self.per_item = {p.name: Samples() for p in prepared}
        self.overall = Samples()
        self.total, self.progress = total, progress
        self.done = self.failed = 0

    def add(self, name: str, elapsed_ms: float, status: int, error: str | None) -> None:
        self.per_item[name].add(elapsed_ms, status, error)
        self.overall.add(elapsed_ms, status, error)
        self.done += 1
        if not 200 <= status < 300:
            self.failed += 1
        if self.progress:
            self.progress(self.done, self.total, self.failed)


async def _request(session, p: _Prepared) -> tuple[int, str | None]:
    """One request: (HTTP status or 0, the error's class name or None). Never raises."""
    import aiohttp

    try:
        async with session.request(p.method, p.url, data=p.body, headers=p.headers) as resp:
            await resp.read()
            return resp.status, None
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        return 0, type(exc).__name__


async def _closed_loop(session, bench, prepared, rec: _Recorder, cancel) -> None:
    """drill's way: ``concurrency`` iterations at once, each sending its items in order, the
    next only when the last answered; latency from each request's actual send."""
    state = {"next": 0}

    async def worker() -> None:
        while state["next"] < bench.iterations and not (cancel and cancel.is_set()):
            iteration = state["next"]
            state["next"] += 1
            # As drill's run_iteration: the delay starts when the iteration gets its slot.
            delay = bench.rampup_delay(iteration)
            if delay > 0:
                await asyncio.sleep(delay)
            for p in prepared:
                begin = time.perf_counter()
                status, error = await _request(session, p)
                rec.add(p.name, (time.perf_counter() - begin) * 1000, status, error)

    await asyncio.gather(*(worker() for _ in range(bench.concurrency)))


def schedule(total: int, rate: float, arrivals: str, seed: int = 1) -> list[float]:
    """Seconds from the start at which each request is due: every 1/rate (constant), or a
    Poisson process of that rate (exponential gaps from a seeded generator, so runs repeat)."""
    if arrivals == "constant":
        return [k / rate for k in range(total)]
    import random

    rng, at, due = random.Random(seed), 0.0, []
    for _ in range(total):
        due.append(at)
        at += rng.expovariate(rate)
    return due


async def _open_loop(session, prepared, rec: _Recorder, cancel, due: list[float]) -> list:
    """wrk2's way: requests sent at their scheduled times whatever the answers, each one's
    latency measured from when it was *due* (so a stall shows in the tail instead of slowing
    the sender: no coordinated omission). Returns each request's schedule lag (seconds late)."""
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.05
    lags, tasks = [], []

    async def one(p: _Prepared, at: float) -> None:
        status, error = await _request(session, p)
        rec.add(p.name, (loop.time() - at) * 1000, status, error)

    for k, offset in enumerate(due):
        if cancel and cancel.is_set():
            break
        at = start + offset
        wait = at - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
        lags.append(max(0.0, loop.time() - at))
        tasks.append(asyncio.ensure_future(one(prepared[k % len(prepared)], at)))
    await asyncio.gather(*tasks)
    return lags


async def _run(
    bench: Benchmark,
    items: tuple[RequestItem, ...],
    *,
    base: str | None,
    timeout: float,
    progress: ProgressFn | None,
    cancel: threading.Event | None = None,
    rate: float | None = None,
    arrivals: str = "constant",
) -> LoadResult:
    import aiohttp

    prepared = _prepare(bench, items, base)
    total = bench.iterations * len(prepared)
    rec = _Recorder(prepared, total, progress)
    # open loop: as many connections as requests in flight, up to a bound (a stalled server
    # must not make the sender wait for a connection: that would be coordinated omission)
    limit = OPEN_LOOP_CONNECTIONS if rate else bench.concurrency
    connector = aiohttp.TCPConnector(limit=limit, force_close=False, ttl_dns_cache=None)
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    started, lags = time.time(), None
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=timeout), auto_decompress=False
    ) as session:
        if rate:
            due = schedule(total, rate, arrivals)
            lags = await _open_loop(session, prepared, rec, cancel, due)
        else:
            await _closed_loop(session, bench, prepared, rec, cancel)
    finished = time.time()
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    return LoadResult(
        started,
        finished,
        rec.per_item,
        rec.overall,
        cpu,
        bench.concurrency,
        bench.iterations,
        (base or bench.base),
        rate,
        arrivals if rate else None,
        lags,
    )


#: the open loop's bound on connections (requests in flight beyond it wait, and the wait is
#: in their latency, measured from when they were due)
OPEN_LOOP_CONNECTIONS = 1024
ARRIVALS = ("constant", "poisson")


def run_load(
    bench: Benchmark,
    items: tuple[RequestItem, ...],
    *,
    base: str | None = None,
    timeout: float = 120.0,
    progress: ProgressFn | None = None,
    allow_non_loopback: bool = False,
    cancel: threading.Event | None = None,
    rate: float | None = None,
    arrivals: str = "constant",
) -> LoadResult:
    """Run the benchmark to completion (bounded: iterations × items requests), or until
    ``cancel`` is set: then no new iteration starts and the requests in flight finish."""
    if not allow_non_loopback:
        for p in _prepare(bench, items, base):
            check_loopback(p.url)
    return asyncio.run(
        _run(
            bench,
            items,
            base=base,
            timeout=timeout,
            progress=progress,
            cancel=cancel,
            rate=rate,
            arrivals=arrivals,
        )
    )


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
    import json
    from pathlib import Path

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

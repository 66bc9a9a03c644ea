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
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from stair_stepper.errors import UserError
from stair_stepper.load.drillfile import Benchmark, RequestItem
from stair_stepper.load.openloop import OPEN_LOOP_CONNECTIONS, schedule

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

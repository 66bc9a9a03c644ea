"""How much CPU does the load driver cost, next to the server it loads?

Starts one local server (SLEEP_MS=0, glibc, loopback only), then for each tag
runs a bounded number of requests and reports client CPU seconds per 1,000
requests beside the server's CPU seconds for the same requests. Then the
same comparison at the default experiment settings (the contrast preset's
batch: SLEEP_MS=450, PYTHONMALLOC=malloc, all four sizes, concurrency 64,
64 iterations), which is what the < 10 % target is about. Then at the price
preset's settings: the server's saturated rate (closed loop), and the preset's
open loop (its rate and arrivals): the driver's CPU beside the server's, and
the sender's schedule lag (p99, max), so that the driver is seen not to be
what limits the rate. A last part
compares the HTTP clients the driver could use (aiohttp, httpx) on the same
requests, which is how the driver's client was chosen.

    python bench/driver_cost.py [--iterations 200] [--concurrency 16] [--only-price]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import resource
import statistics
import time
from pathlib import Path

import _experiment

from stair_stepper.experiment.launch import start_server
from stair_stepper.load import drillfile
from stair_stepper.load import driver as load
from stair_stepper.record import procfs

ROOT = Path(__file__).resolve().parent.parent


def cpu_self() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def httpx_run(url: str, body: bytes, n: int, concurrency: int) -> None:
    import httpx

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    headers = {"Content-Type": "application/json"}
    async with httpx.AsyncClient(limits=limits, timeout=120) as client:
        todo = iter(range(n))

        async def worker():
            for _ in todo:
                (await client.post(url, content=body, headers=headers)).read()

        await asyncio.gather(*(worker() for _ in range(concurrency)))


def price_part(batches: int = 3) -> None:
    """At the price preset's settings: the server's capacity (a closed loop, the preset's
    concurrency, saturated), then the preset's open loop at its rate (the driver's CPU beside
    the server's, and how late the sender sent), ``batches`` batches each on one server."""
    price, bench, server_args = _experiment.preset("price")
    print(
        f"\nprice preset ({bench.iterations * len(bench.items)} requests a batch, SLEEP_MS="
        f"{price.service.sleep_ms}, {price.service.offload_threads} offload threads), glibc, "
        f"{batches} batches each:"
    )
    with start_server("glibc", extra_args=server_args) as server:
        closed = [load.run_load(bench, bench.items, base=server.base_url) for _ in range(batches)]
        rates = [r.overall.total / r.duration_s for r in closed]
        print(
            f"  saturated (closed loop, {price.load.concurrency} in flight): "
            f"{' / '.join(f'{r:.1f}' for r in rates)} req/s"
        )
        for _ in range(batches):
            cpu0 = procfs.cpu(server.pid)["cpu_s"]
            r = load.run_load(
                bench,
                bench.items,
                base=server.base_url,
                rate=price.load.rate,
                arrivals=price.load.arrivals,
            )
            server_cpu = procfs.cpu(server.pid)["cpu_s"] - cpu0
            assert r.overall.successful == r.overall.total, "requests failed"
            lag = r.lag_figures()
            print(
                f"  open loop at {price.load.rate:g}/s ({price.load.arrivals}): "
                f"{r.overall.total / r.duration_s:.1f} req/s, client {r.client_cpu_s:.2f} CPU s "
                f"vs server {server_cpu:.2f} ({r.client_cpu_s / server_cpu:.1%}); sender lag "
                f"p99 {lag['lag_p99_ms']:.1f} ms, max {lag['lag_max_ms']:.1f} ms; "
                f"{price.load.rate / statistics.median(rates):.0%} of the saturated rate"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--only-price", action="store_true", help="the price preset part only")
    args = parser.parse_args()
    if args.only_price:
        price_part()
        return
    bench = drillfile.read_benchmark(
        ROOT / "benchmark.yml", iterations=args.iterations, concurrency=args.concurrency
    )
    print(f"{args.iterations} requests per tag, concurrency {args.concurrency}, SLEEP_MS=0\n")
    print(f"{'tag':<8} {'client s/1k':>12} {'server s/1k':>12} {'client/server':>14}")
    with start_server("glibc", extra_args=("--sleep-ms", "0")) as server:
        for item in bench.items:
            server_cpu0 = procfs.cpu(server.pid)["cpu_s"]
            result = load.run_load(bench, (item,), base=server.base_url)
            server_cpu = procfs.cpu(server.pid)["cpu_s"] - server_cpu0
            n = result.overall.total
            assert result.overall.successful == n, "requests failed; numbers would be meaningless"
            c, s = result.client_cpu_s * 1000 / n, server_cpu * 1000 / n
            print(f"{item.name:<8} {c:12.2f} {s:12.2f} {c / s:13.1%}")

    contrast, bench_c, args_c = _experiment.preset("contrast")
    with start_server("glibc", extra_args=args_c) as server:
        server_cpu0 = procfs.cpu(server.pid)["cpu_s"]
        result = load.run_load(bench_c, bench_c.items, base=server.base_url)
        server_cpu = procfs.cpu(server.pid)["cpu_s"] - server_cpu0
    assert result.overall.successful == result.overall.total, "requests failed"
    print(
        f"\ncontrast batch ({result.overall.total} requests, "
        f"concurrency {contrast.load.concurrency}, "
        f"SLEEP_MS={contrast.service.sleep_ms}): client {result.client_cpu_s:.2f} CPU s, server "
        f"{server_cpu:.2f} CPU s: client/server {result.client_cpu_s / server_cpu:.1%} "
        "(target < 10 %)"
    )

    price_part()

    with start_server("glibc", extra_args=("--sleep-ms", "0")) as server:
        print("\nHTTP client choice (medium bodies, same server, same requests):")
        medium = next(i for i in bench.items if i.name == "medium")
        url = bench.absolute_url(medium, server.base_url)
        for name in ("aiohttp", "httpx"):
            if name == "httpx" and importlib.util.find_spec("httpx") is None:
                print("  httpx    not installed (pip install httpx): not compared")
                continue
            before, t0 = cpu_self(), time.monotonic()
            if name == "aiohttp":
                load.run_load(bench, (medium,), base=server.base_url)
            else:
                asyncio.run(httpx_run(url, medium.body.encode(), args.iterations, args.concurrency))
            used = cpu_self() - before
            print(
                f"  {name:<8} {used * 1000 / args.iterations:6.2f} client CPU s per 1k requests"
                f"  ({time.monotonic() - t0:.1f} s wall)"
            )


if __name__ == "__main__":
    main()

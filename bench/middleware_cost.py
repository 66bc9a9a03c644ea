"""What does the endpoints middleware cost a request? (target: under 1 % of its latency)

Two measurements, both on examples/asgi_app.py:

1. In-process, exact: the same ASGI call (``GET /ping``, and ``POST /reports`` of 200 rows)
   made on the bare app and on the app behind the middleware
   (``stair_stepper.service.endpoints.wrapped``, what ``serve --app`` runs), 20 interleaved
   rounds of 2,000 calls each; the cost is the median of the per-round differences, with their range
   and a sign test (is the wrapped app slower in more rounds than chance gives?).
2. End to end, for scale: both served by the same Hypercorn command on loopback, the same
   requests over keep-alive connections in interleaved rounds; the median latency of each.
   On this shared 2-core machine two servers differ by more than the middleware's cost
   from round to round, so the share is the in-process cost over the bare latency.

    python bench/middleware_cost.py [--rounds 9] [--requests 300]
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from stair_stepper.experiment.command_server import free_port

ROOT = Path(__file__).resolve().parent.parent
KINDS = {
    "GET /ping (the cheapest request)": ("GET", "/ping", None),
    "POST /reports, 200 rows": ("POST", "/reports", {"rows": 200, "width": 80, "wait_ms": 0}),
}


def start(app: str, env: dict) -> tuple[subprocess.Popen, int]:
    port = free_port()
    command = [sys.executable, "-m", "hypercorn", "--bind", f"127.0.0.1:{port}", app]
    process = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/ping")
            connection.getresponse().read()
            connection.close()
            return process, port
        except OSError:
            time.sleep(0.1)
    process.kill()
    sys.exit(f"{app} did not start")


def median_latency(port: int, method: str, path: str, body, n: int) -> float:
    """Median seconds per request over ``n`` requests on one keep-alive connection."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"} if data else {}
    times = []
    for _ in range(n):
        began = time.perf_counter()
        connection.request(method, path, body=data, headers=headers)
        response = connection.getresponse()
        response.read()
        times.append(time.perf_counter() - began)
        if response.status >= 400:
            sys.exit(f"{method} {path} answered {response.status}")
    connection.close()
    return statistics.median(times)


async def _call(app, method: str, path: str, body: bytes) -> None:
    sent = []

    async def receive():
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path, "headers": []}
    await app(scope, receive, send)


def in_process_cost(method: str, path: str, body, rounds: int = 20, calls: int = 2000):
    """Median over rounds of (wrapped − bare) seconds per call, and the bare time per call."""
    import asyncio

    from examples.asgi_app import app as bare
    from stair_stepper.service.endpoints import Endpoints, wrapped

    fronted = wrapped(bare, Endpoints("examples.asgi_app:app"))
    data = json.dumps(body).encode() if body is not None else b""

    async def timed(app) -> float:
        began = time.perf_counter()
        for _ in range(calls):
            await _call(app, method, path, data)
        return (time.perf_counter() - began) / calls

    async def measure():
        differences, bares = [], []
        for _ in range(rounds):
            a, b = await timed(bare), await timed(fronted)
            differences.append(b - a)
            bares.append(a)
        return differences, statistics.median(bares)

    return asyncio.run(measure())


def sign_test(differences: list[float]) -> tuple[int, float]:
    """Rounds where the wrapped app was slower, and the two-sided sign test's p-value: how
    often a fair coin gives a split at least that uneven (no difference: about half)."""
    slower, n = sum(d > 0 for d in differences), len(differences)
    tail = min(slower, n - slower)
    p = 2 * sum(math.comb(n, k) for k in range(tail + 1)) / 2**n
    return slower, min(p, 1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--requests", type=int, default=300, help="per round and server")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    costs = {}
    for kind, (method, path, body) in KINDS.items():
        differences, alone = in_process_cost(method, path, body)
        costs[kind] = statistics.median(differences)
        slower, p = sign_test(differences)
        print(
            f"in-process, {kind}: the app {alone * 1e6:.1f} us per call; the middleware adds "
            f"{costs[kind] * 1e6:+.2f} us (median of 20 rounds of 2,000 calls, each round "
            f"{min(differences) * 1e6:+.2f} to {max(differences) * 1e6:+.2f} us; slower in "
            f"{slower} of {len(differences)} rounds, sign test "
            f"{'p < 0.001' if p < 0.001 else f'p = {p:.3f}'}"
            f"{'' if p < 0.05 else ': not told apart from no difference'})"
        )
    env = dict(
        os.environ, STAIR_STEPPER_APP="examples.asgi_app:app", STAIR_STEPPER_APP_DIR=str(ROOT)
    )
    servers = {
        "bare": start("examples.asgi_app:app", env),
        "middleware": start("stair_stepper.service.serve:served_app()", env),
    }
    try:
        print(f"end to end: {args.rounds} interleaved rounds of {args.requests} requests each")
        for kind, (method, path, body) in KINDS.items():
            rounds: dict[str, list[float]] = {name: [] for name in servers}
            for _ in range(args.rounds):
                for name, (_, port) in servers.items():
                    rounds[name].append(median_latency(port, method, path, body, args.requests))
            bare, wrapped = (statistics.median(rounds[n]) for n in ("bare", "middleware"))
            spread = {n: f"{min(v) * 1e3:.3f}–{max(v) * 1e3:.3f}" for n, v in rounds.items()}
            print(
                f"end to end, {kind}: bare {bare * 1e3:.3f} ms ({spread['bare']}), with the "
                f"middleware {wrapped * 1e3:.3f} ms ({spread['middleware']}); the middleware's "
                f"in-process cost is {costs[kind] / bare:.2%} of the bare latency (target < 1 %)"
            )
    finally:
        for process, _ in servers.values():
            process.terminate()
            process.wait(timeout=10)


if __name__ == "__main__":
    main()

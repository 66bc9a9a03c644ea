"""What does the endpoints middleware cost a request? (target: under 1 % of its latency)

Serves examples/asgi_app.py twice with the same Hypercorn command on loopback: bare, and
behind stair-stepper's middleware (``stair_stepper.service:app_from_env()``, which is what
``serve --app`` runs). Then sends the same requests to both over keep-alive connections,
in interleaved rounds (ABAB…, so drift on a shared machine hits both alike), and prints
the median latency of each, per request kind, with the spread over rounds and the cost.

    python bench/middleware_cost.py [--rounds 7] [--requests 300]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from stair_stepper.launch import free_port

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--requests", type=int, default=300, help="per round and server")
    args = parser.parse_args()
    env = dict(
        os.environ, STAIR_STEPPER_APP="examples.asgi_app:app", STAIR_STEPPER_APP_DIR=str(ROOT)
    )
    servers = {
        "bare": start("examples.asgi_app:app", env),
        "middleware": start("stair_stepper.service:app_from_env()", env),
    }
    try:
        print(f"{args.rounds} interleaved rounds of {args.requests} requests per server and kind")
        for kind, (method, path, body) in KINDS.items():
            rounds: dict[str, list[float]] = {name: [] for name in servers}
            for _ in range(args.rounds):
                for name, (_, port) in servers.items():
                    rounds[name].append(median_latency(port, method, path, body, args.requests))
            bare, wrapped = (statistics.median(rounds[n]) for n in ("bare", "middleware"))
            spread = {n: f"{min(v) * 1e3:.3f}–{max(v) * 1e3:.3f}" for n, v in rounds.items()}
            print(
                f"{kind}: bare {bare * 1e3:.3f} ms ({spread['bare']}), with the middleware "
                f"{wrapped * 1e3:.3f} ms ({spread['middleware']}): cost "
                f"{(wrapped - bare) * 1e6:+.1f} us = {(wrapped / bare - 1):+.2%} (target < 1 %)"
            )
    finally:
        for process, _ in servers.values():
            process.terminate()
            process.wait(timeout=10)


if __name__ == "__main__":
    main()

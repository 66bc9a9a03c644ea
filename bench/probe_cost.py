"""What do our probes cost the process we measure? (accounting polls, structure reads, tracemalloc)

For each allocator, one server at the default run's settings (the contrast preset's
SLEEP_MS, offload threads and PYTHONMALLOC) takes one batch of the default load (256 requests, 64 in
flight) while this script asks ``GET /__stair_stepper__/memory`` every 0.5 s, as the
recorder does during a batch; then, idle at the floor, it asks for the accounting and for
the structure (``?structure=1``: glibc's malloc_info and malloc_stats, jemalloc's
per-arena stats, tcmalloc's properties) 10 times each. The server times each itself, so the
numbers are what the served process spent, not the round trip: its own CPU
(``accounting_cpu_s``, ``probe_cpu_s``: the cost), and the wall time it held the handler
(``accounting_s``), which on busy cores also counts waiting for a core or for the GIL. The
first question is asked before the batch, idle, as the experiment asks its first at the
baseline, and printed apart. Printed: the first; median and max of the CPU under load and
idle, and of the wall time under load; the share of one core the 2 Hz polls' CPU takes
under load.

Then tracemalloc (``--trace-python``): the same batch on glibc with and without it,
``--rounds`` times interleaved; per round the server's CPU per request (from /proc), and
the ratio with/without as median (min–max).

    python bench/probe_cost.py [--rounds 3] [--allocators glibc,jemalloc,…] (default: every one)
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from pathlib import Path

import _experiment

from stair_stepper import allocators
from stair_stepper.experiment.launch import start_server
from stair_stepper.load import client, drillfile
from stair_stepper.load import driver as load
from stair_stepper.record import procfs

ROOT = Path(__file__).resolve().parent.parent
DEFAULT, DEFAULT_BATCH, SERVE = _experiment.preset("contrast")
POLL_S = 0.5


def batch(server) -> float:
    """One default batch against ``server``; its seconds."""
    bench = DEFAULT_BATCH
    result = load.run_load(bench, drillfile.select(bench, None, None), base=server.base_url)
    return result.duration_s


def timed(http: client.Client, path: str, *keys: str) -> tuple:
    """One question: what the server says it cost, by each of ``keys`` (None where absent)."""
    answer = http.get(path, timeout=30)
    return tuple(answer.get(key) for key in keys)


def probes(name: str) -> dict:
    with start_server(name, extra_args=SERVE) as server:
        http = client.Client(server.base_url, timeout=30)
        (first,) = timed(http, client.MEMORY, "accounting_cpu_s")  # idle, as at the baseline
        under, walls, done = [], [], threading.Event()

        def poll() -> None:
            while not done.is_set():
                cpu, wall = timed(http, client.MEMORY, "accounting_cpu_s", "accounting_s")
                if cpu is not None:
                    under.append(cpu)
                    walls.append(wall)
                done.wait(POLL_S)

        poller = threading.Thread(target=poll)
        poller.start()
        try:
            seconds = batch(server)
        finally:
            done.set()
            poller.join()
        time.sleep(3)  # the floor (glibc settles within about 2 s)
        idle = [timed(http, client.MEMORY, "accounting_cpu_s")[0] for _ in range(10)]
        structure = [
            timed(http, client.MEMORY + "?structure=1", "probe_cpu_s")[0] for _ in range(10)
        ]
        http.close()
    return {
        "first": first,
        "under": under,
        "walls": [t for t in walls if t is not None],
        "idle": [t for t in idle if t is not None],
        "structure": [t for t in structure if t is not None],
        "batch_s": seconds,
    }


def cpu_per_request(trace_python: bool) -> float:
    extra = (*SERVE, "--trace-python") if trace_python else SERVE
    with start_server("glibc", extra_args=extra) as server:
        before = procfs.cpu(server.pid)["cpu_s"]
        batch(server)
        return (procfs.cpu(server.pid)["cpu_s"] - before) * 1000 / 256


def ms(values: list[float]) -> str:
    if not values:
        return "–"
    return f"{statistics.median(values) * 1000:.2f} (max {max(values) * 1000:.2f}) ms"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--allocators", default=",".join(allocators.ALLOCATORS))
    args = parser.parse_args()
    print(
        "| allocator | first (idle) | accounting under load | its wall time under load "
        "| accounting idle | structure idle | polls' share of a core under load |"
    )
    print("|---|---|---|---|---|---|---|")
    for name in args.allocators.split(","):
        if allocators.find_library(allocators.ALLOCATORS[name]) is None and name != "glibc":
            print(f"| {name} | not installed | | | | | |")
            continue
        found = probes(name)
        share = sum(found["under"]) / found["batch_s"] if found["under"] else None
        first = "–" if found["first"] is None else f"{found['first'] * 1000:.2f} ms"
        print(
            f"| {name} | {first} | {ms(found['under'])} | {ms(found['walls'])} "
            f"| {ms(found['idle'])} "
            f"| {ms(found['structure'])} | {'–' if share is None else f'{share:.2%}'} |"
        )
    ratios = []
    for k in range(args.rounds):
        on, off = cpu_per_request(True), cpu_per_request(False)
        ratios.append(on / off)
        print(
            f"round {k + 1}: server CPU per request {on:.1f} ms with tracemalloc, {off:.1f} without"
        )
    if ratios:
        print(
            f"--trace-python: server CPU per request x{statistics.median(ratios):.2f} "
            f"({min(ratios):.2f}–{max(ratios):.2f}, {len(ratios)} rounds)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

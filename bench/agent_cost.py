"""What does the agent cost a server that is not ours? (service/agent.py, in every Python
process of a --command server)

Three measurements, each side by side with the same process without the agent, alternated
``--rounds`` times, reported as median (min–max):

1. start-up: the wall time of ``python -c pass`` with the agent's sitecustomize on
   PYTHONPATH and a folder to answer in, against without (what every process of the server,
   and every forked worker's hook, pays once);
2. memory at rest: RSS and USS of a process holding 20 MB of Python objects, started with
   and without the agent (the thread's stack and the modules the probe imports);
3. each question, as the lab asks it (the agent's round trip on its Unix socket, and what the
   served process spent on it by its own clocks: its CPU, and the wall time it held the
   question): health, memory, memory with the structure,
   on jemalloc.

An idle agent is a thread blocked in ``accept``: it takes no CPU between questions; the
questions are asked at the poll rate during a batch and once per pause, as for the widget
app (bench/probe_cost.py measures what the accounting and the structure cost under load).

    python bench/agent_cost.py [--rounds 20]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

from stair_stepper import allocators
from stair_stepper.allocators import settings
from stair_stepper.load import agents
from stair_stepper.record import procfs

HOLD = (
    "import time\nx = [str(i) * 4 for i in range(200_000)]\n"
    "print('ready', flush=True)\ntime.sleep(60)\n"
)


def spread(values: list[float], scale: float = 1.0, digits: int = 1) -> str:
    values = [v * scale for v in values]
    low, mid, high = min(values), statistics.median(values), max(values)
    return f"{mid:.{digits}f} ({low:.{digits}f}–{high:.{digits}f})"


def environment(with_agent: bool) -> tuple[dict, object]:
    var = settings.parse("jemalloc=jemalloc")
    env = allocators.server_env(var)
    env.update(settings.for_child(var))
    if not with_agent:
        return env, None
    folder, agent_env = agents.prepare()
    return agents.with_agents(env, agent_env), folder


def startup(with_agent: bool) -> float:
    env, folder = environment(with_agent)
    began = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], env=env, check=True)
    took = time.perf_counter() - began
    if folder:
        agents.remove(folder)
    return took


def at_rest(with_agent: bool) -> tuple[dict, dict]:
    env, folder = environment(with_agent)
    child = subprocess.Popen([sys.executable, "-c", HOLD], env=env, stdout=subprocess.PIPE)
    try:
        child.stdout.readline()
        if folder:  # the agent is listening before its process is measured
            while not Path(agents.socket_path(folder, child.pid)).exists():
                time.sleep(0.01)
        memory = procfs.memory(child.pid)
        asked = {}
        if folder:
            for name, request in (
                ("health", {"ask": "health"}),
                ("memory", {"ask": "memory"}),
                ("memory+structure", {"ask": "memory", "structure": True}),
            ):
                began = time.perf_counter()
                answer = agents.ask(folder, child.pid, request)
                answer = answer or {}
                asked[name] = (
                    time.perf_counter() - began,
                    answer.get("probe_s") or answer.get("accounting_s"),
                    answer.get("probe_cpu_s") or answer.get("accounting_cpu_s"),
                )
            after = procfs.memory(child.pid)  # the probe's modules, imported by the questions
            memory["asked_rss_bytes"], memory["asked_uss_bytes"] = (
                after["rss_bytes"],
                after["uss_bytes"],
            )
        return memory, asked
    finally:
        child.kill()
        child.wait()
        if folder:
            agents.remove(folder)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    if allocators.find_library(allocators.ALLOCATORS["jemalloc"]) is None:
        print("agent_cost: libjemalloc2 is not installed")
        return 2
    start = {True: [], False: []}
    rss = {True: [], False: []}
    uss = {True: [], False: []}
    asked_rss, asked_uss = [], []
    trips: dict[str, list] = {}
    for _ in range(args.rounds):
        for with_agent in (False, True):
            start[with_agent].append(startup(with_agent))
            memory, asked = at_rest(with_agent)
            rss[with_agent].append(memory["rss_bytes"])
            uss[with_agent].append(memory["uss_bytes"])
            if with_agent:
                asked_rss.append(memory["asked_rss_bytes"] - rss[False][-1])
                asked_uss.append(memory["asked_uss_bytes"] - uss[False][-1])
            for name, times in asked.items():
                trips.setdefault(name, []).append(times)
    extra_start = [a - b for a, b in zip(start[True], start[False], strict=True)]
    extra_rss = [a - b for a, b in zip(rss[True], rss[False], strict=True)]
    extra_uss = [a - b for a, b in zip(uss[True], uss[False], strict=True)]
    version = sys.version.split()[0]
    print(f"agent cost, {args.rounds} rounds, median (min–max), jemalloc, Python {version}")
    print(
        f"start-up of python -c pass: {spread(start[False], 1e3)} ms without, "
        f"{spread(start[True], 1e3)} ms with; added {spread(extra_start, 1e3)} ms"
    )
    mb = 1 / 2**20
    print(
        f"a process with 20 MB of objects, before any question: RSS added "
        f"{spread(extra_rss, mb, 2)} MB, USS added {spread(extra_uss, mb, 2)} MB; after the "
        f"lab's questions (the probe imported): RSS added {spread(asked_rss, mb, 2)} MB, "
        f"USS added {spread(asked_uss, mb, 2)} MB"
    )
    for name, values in trips.items():
        held = [v for _, v, _ in values if v is not None]
        cpu = [v for _, _, v in values if v is not None]
        spent = (
            f"; the process spent {spread(cpu, 1e3, 2)} ms of CPU, holding the question "
            f"{spread(held, 1e3, 2)} ms"
            if held and cpu
            else ""
        )
        print(f"{name}: round trip {spread([t for t, _, _ in values], 1e3, 2)} ms{spent}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""What does reading the memory cgroup cost the lab? (record/cgroups.py, at the sampling rate)

A cgroup of its own holding a process with 50 MB of touched memory; each read the recorder
and the OOM watch make, timed ``--calls`` times, ``--rounds`` rounds, median (min–max) per
call: the charge alone (every sample, 10 a second at the default interval), the whole
reading (charge, peak, memory.stat's anon and file, the events: with each PSS reading, once
a second) and the OOM-kill count (the watch, 10 a second). Then what that makes per second of
recording, as a share of one core. The lab reads the files; the served process pays nothing.

    python bench/cgroup_cost.py [--rounds 5] [--calls 2000]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

from stair_stepper.record import cgroups

HOLD = (
    "x = bytearray(50 << 20)\nfor i in range(0, len(x), 4096): x[i] = 1\n"
    "import time; time.sleep(600)"
)


def per_call(function, calls: int) -> float:
    began = time.perf_counter()
    for _ in range(calls):
        function()
    return (time.perf_counter() - began) / calls


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    where = cgroups.locate()
    if isinstance(where, str):
        print(f"cgroup_cost: {where}")
        return 2
    group = cgroups.Cgroup(where, "cost", None)
    holder = subprocess.Popen([sys.executable, "-c", HOLD])
    try:
        (group.path / "cgroup.procs").write_text(str(holder.pid))
        time.sleep(1.0)
        timed: dict[str, list[float]] = {"charged": [], "read": [], "oom_kills": []}
        for _ in range(args.rounds):
            for name in timed:
                timed[name].append(per_call(getattr(group, name), args.calls))
    finally:
        holder.kill()
        holder.wait()
        group.remove()
    print(f"cgroup v{where.version}, {args.rounds} rounds of {args.calls} calls, median (min–max)")
    for name, values in timed.items():
        us = [v * 1e6 for v in values]
        print(f"{name}: {statistics.median(us):.1f} µs ({min(us):.1f}–{max(us):.1f}) a call")
    second = 9 * statistics.median(timed["charged"]) + statistics.median(timed["read"])
    second += 10 * statistics.median(timed["oom_kills"])
    print(
        f"per second of recording (9 charges, 1 reading, 10 OOM checks): {second * 1e3:.2f} ms, "
        f"{second:.2%} of one core"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""What does sampling at 10 Hz cost? (target: under 1 % of a core)

Starts a local glibc server (loopback only), then runs ``stair-stepper record``
against it for DURATION seconds at 10 Hz, first from /proc only, then with the
allocator accounting from /debug/memory (polled at 2 Hz), and reports the
recorder's CPU time (start-up included) as a share of one core, plus the
server-side CPU the polls cost.

    python bench/record_cost.py [--duration 60] [--interval 0.1]
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

from stair_stepper import procfs
from stair_stepper.launch import start_server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--interval", type=float, default=0.1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, start_server("glibc") as server:
        for k, service in enumerate((None, server.base_url)):
            out = Path(tmp) / f"trace-{k}.csv"  # record refuses to mix two recordings
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            server0 = procfs.cpu_seconds(server.pid)
            command = [
                sys.executable,
                "-m",
                "stair_stepper",
                "record",
                "--pid",
                str(server.pid),
                "--out",
                str(out),
                "--interval",
                str(args.interval),
                "--duration",
                str(args.duration),
            ]
            if service:
                command += ["--service-url", service]
            subprocess.run(command, check=True, stderr=subprocess.DEVNULL)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
            server_cpu = procfs.cpu_seconds(server.pid) - server0
            label = "/proc + /debug/memory" if service else "/proc only          "
            print(
                f"{label}: recorder {cpu:.2f} CPU s in {args.duration:.0f} s = "
                f"{cpu / args.duration:.2%} of a core; server answered polls with "
                f"{server_cpu:.2f} CPU s = {server_cpu / args.duration:.2%}"
            )


if __name__ == "__main__":
    main()

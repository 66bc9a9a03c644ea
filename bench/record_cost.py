"""What does recording cost, against psrecord on the same target? (target: ours/psrecord <= 1.0)

Starts an idle Python process holding ~50 MB, then runs ``stair-stepper record --pid P``
and ``psrecord P --log …`` (a bench-only dependency: ``pip install psrecord``) side by side
on it, at the same interval for the same duration, PAIRS times. Each recorder's CPU time
(user + system, start-up included) comes from the kernel's accounting of that child
(``os.wait4``). Prints every pair, the median ratio ours/psrecord and the samples each
wrote. Ours records more (RSS, anonymous RSS and CPU every row; peak, PSS and USS once a
second) than psrecord (CPU %, RSS, virtual size).

With ``--service`` it then also measures ``record --service-url`` against a local glibc
server of ours (loopback only): the recorder's cost with the allocator polls, and the
server CPU those polls cost.

    python bench/record_cost.py [--pairs 3] [--duration 30] [--interval 0.1] [--service]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from stair_stepper.record import procfs

TARGET = "import time\nheld = b'x' * (50 * 2**20)\ntime.sleep(3600)\n"


def ours(pid: int, out: Path, interval: float, duration: float, service: str | None = None):
    command = [sys.executable, "-m", "stair_stepper", "record", "--pid", str(pid)]
    command += ["--out", str(out), "--interval", str(interval), "--duration", str(duration)]
    if service:
        command += ["--service-url", service]
    return subprocess.Popen(command, stderr=subprocess.DEVNULL)


def psrecord(pid: int, out: Path, interval: float, duration: float):
    command = [_psrecord(), str(pid), "--log", str(out)]
    command += ["--interval", str(interval), "--duration", str(duration)]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _psrecord() -> str:
    """psrecord from this project's own environment (``pip install -e '.[bench]'`` puts it beside
    the interpreter), not whatever PATH finds first."""
    beside = Path(sys.executable).parent / "psrecord"
    if beside.exists():
        return str(beside)
    found = shutil.which("psrecord")
    if found is None:
        sys.exit("psrecord is not installed here: .venv/bin/pip install -e '.[bench]'")
    return found


def cpu_of(child: subprocess.Popen) -> float:
    """The child's own CPU seconds, from the kernel when it is reaped."""
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        sys.exit(f"{child.args[0]} exited with {child.returncode}")
    return usage.ru_utime + usage.ru_stime


def rows(path: Path) -> int:
    return sum(1 for line in path.read_text().splitlines()[1:] if line.strip())


def peer_pairs(args, tmp: Path) -> None:
    _psrecord()  # here or one sentence
    # Both start from bytecode, as installed packages do (pip and Nix compile at install;
    # an editable checkout under PYTHONDONTWRITEBYTECODE would recompile ours every start).
    package = Path(sys.modules["stair_stepper"].__file__).parent
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(package)], check=True)
    target = subprocess.Popen([sys.executable, "-c", TARGET])
    try:
        time.sleep(1.0)  # let it build its 50 MB before anyone samples
        rss = procfs.memory(target.pid, rollup=False)["rss_bytes"] / 2**20
        print(
            f"target: pid {target.pid}, idle, RSS {rss:.0f} MB; {args.pairs} pairs of "
            f"{args.duration:.0f} s at {args.interval} s, both recorders at once"
        )
        ratios = []
        for k in range(args.pairs):
            mine, theirs = tmp / f"ours-{k}.csv", tmp / f"psrecord-{k}.log"
            a = ours(target.pid, mine, args.interval, args.duration)
            b = psrecord(target.pid, theirs, args.interval, args.duration)
            cpu_ours, cpu_theirs = cpu_of(a), cpu_of(b)
            ratios.append(cpu_ours / cpu_theirs)
            print(
                f"  pair {k + 1}: ours {cpu_ours:.2f} CPU s ({rows(mine)} rows), psrecord "
                f"{cpu_theirs:.2f} CPU s ({rows(theirs)} rows): ratio {ratios[-1]:.2f}"
            )
        print(
            f"ours/psrecord CPU, median of {len(ratios)} pairs: {statistics.median(ratios):.2f}"
            f" (range {min(ratios):.2f}-{max(ratios):.2f}; target <= 1.0)"
        )
    finally:
        target.kill()
        target.wait()


def service_cost(args, tmp: Path) -> None:
    from stair_stepper.experiment.launch import start_server

    with start_server("glibc") as server:
        server0 = procfs.cpu(server.pid)["cpu_s"]
        child = ours(server.pid, tmp / "service.csv", args.interval, args.duration, server.base_url)
        cpu = cpu_of(child)
        server_cpu = procfs.cpu(server.pid)["cpu_s"] - server0
    print(
        f"with allocator polls: recorder {cpu:.2f} CPU s in {args.duration:.0f} s = "
        f"{cpu / args.duration:.2%} of a core; the server answered them with "
        f"{server_cpu:.2f} CPU s = {server_cpu / args.duration:.2%}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--interval", type=float, default=0.1)
    parser.add_argument("--service", action="store_true", help="also measure the polls' cost")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        peer_pairs(args, Path(tmp))
        if args.service:
            service_cost(args, Path(tmp))


if __name__ == "__main__":
    main()

"""SIGTERM or SIGHUP at random moments of small experiments: every one must end like Ctrl-C.

    python bench/signals.py [--runs 50] [--seed 1]

Each run is a small experiment (two glibc variants, two batches of tiny requests), half of
them one variant after another and half side by side. A random signal (TERM or HUP) is sent
at a random moment of a random phase: start-up, a batch, a pause, the trim, or the report
after the measurements. A run passes when the experiment exits 128 + the signal within
10 s, its meta.json says ``terminated`` (or, for a signal before the result folder was made,
there is none), and no process of its is left (a /proc scan for anything started by it).
Prints one line per run and a summary; exits 1 if any run failed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SMALL = [
    "--preset",
    "quick",
    "--allocators",
    "glibc,glibc+arena2",
    "--batches",
    "2",
    "--iterations",
    "8",
    "--concurrency",
    "4",
    "--tags",
    "tiny",
    "--sleep-ms",
    "300",
]
MOMENTS = ("start-up", "batch", "pause", "trim", "report")


def ours() -> set[int]:
    """Processes whose command line names stair_stepper (our experiment, servers, children)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if b"stair_stepper" in (entry / "cmdline").read_bytes():
                    found.add(int(entry.name))
            except OSError:
                continue
    return found


def phase_seen(folder: Path, words: str) -> bool:
    for trace in folder.glob("*.trace.csv"):
        try:
            if words in trace.read_text():
                return True
        except OSError:
            continue
    return False


def reached(folder: Path, moment: str) -> bool:
    if moment == "start-up":
        return True
    if moment == "report":
        try:
            return json.loads((folder / "meta.json").read_text())["status"] == "complete"
        except (OSError, ValueError, KeyError):
            return False
    if moment == "trim":  # the trim request is one sample long: the recording after it too
        return phase_seen(folder, ",trim,") or phase_seen(folder, ",after trim,")
    return phase_seen(folder, {"batch": ",batch ", "pause": ",pause "}[moment])


def _default_signals() -> None:
    """In the experiment's child: TERM and HUP at their defaults, whatever this script
    inherited. Under ``nohup`` SIGHUP arrives ignored, and an ignored disposition survives
    exec: a SIGHUP sent before the experiment installs its handler would then be lost, which
    says nothing about the experiment (seen: one start-up run of 50 under nohup)."""
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_DFL)


def one(k: int, rng: random.Random, workdir: Path) -> tuple[bool, str]:
    signum = rng.choice([signal.SIGTERM, signal.SIGHUP])
    moment = rng.choice(MOMENTS)
    parallel = k % 2 == 1
    folder = workdir / f"run-{k}"
    before = ours()
    command = [sys.executable, "-m", "stair_stepper", "experiment", *SMALL, "--out", str(folder)]
    if parallel:
        command.append("--parallel")
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_default_signals,
    )
    deadline = time.monotonic() + 120
    while not reached(folder, moment):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            return False, f"{moment} was never reached (exit {process.poll()})"
        time.sleep(0.02)
    time.sleep(rng.uniform(0, 1.5 if moment in ("start-up", "batch", "pause") else 0.3))
    if process.poll() is not None:
        return True, f"skipped: the run ended before the signal ({moment})"
    sent = time.monotonic()
    process.send_signal(signum)
    try:
        _, err = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        return False, f"{signum.name} at {moment}: still running 30 s later"
    took = time.monotonic() - sent
    problems = []
    # killed by the signal's default action (it came before the handler was installed, while
    # the interpreter was starting: nothing had begun), which a shell reports as 128 + N too
    killed_early = process.returncode == -signum and not folder.exists()
    if process.returncode != 128 + signum and not killed_early:
        problems.append(f"exit {process.returncode}")
    if took > 10:
        problems.append(f"took {took:.1f} s")
    try:
        status = json.loads((folder / "meta.json").read_text())["status"]
    except FileNotFoundError:
        status = None  # the signal came before the result folder existed
    if status not in ("terminated", None):
        problems.append(f"status {status!r}")
    time.sleep(0.5)
    left = ours() - before - {os.getpid()}
    if left:
        problems.append(f"left running: {sorted(left)}")
    mode = "side by side" if parallel else "one after another"
    what = f"{signum.name} at {moment} ({mode}): exit {process.returncode} in {took:.1f} s"
    last = err.strip().splitlines()[-1] if err.strip() else ""
    return not problems, what + (f"; PROBLEMS: {', '.join(problems)}; {last}" if problems else "")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    failed, times = 0, []
    with tempfile.TemporaryDirectory(prefix="signals-") as tmp:
        for k in range(1, args.runs + 1):
            ok, line = one(k, rng, Path(tmp))
            failed += not ok
            print(f"{k:3d} {'ok  ' if ok else 'FAIL'} {line}", flush=True)
            if " in " in line:
                with contextlib.suppress(ValueError, IndexError):
                    times.append(float(line.split(" in ")[1].split(" s")[0]))
    print(
        f"\n{args.runs - failed} of {args.runs} runs ended like Ctrl-C"
        + (f"; slowest exit {max(times):.1f} s after the signal" if times else "")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())

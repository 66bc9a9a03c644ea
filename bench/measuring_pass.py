"""The measuring pass: every folder and file in docs/results measured again at one revision of the
measuring code, on a quiet machine, and the pages rewritten from them.

    python bench/measuring_pass.py [--dry-run] [--only NAME ...] [--no-commit] [--force]

Each step measures into docs/results/.pass/NAME/ and only when it completed replaces what
docs/results held (a failed or interrupted step leaves the old data where it was), packs it
(traces compressed, figures and reports left out: they are redrawn from the data), rewrites
the pages (``./dev docs --allow-stale``: the folders not measured again yet are still the old
ones) and commits the step's data and pages together. So a pass cut off anywhere resumes where
it stopped: a step whose folders were measured at a revision with
today's measuring code (``publish.provenance_problems``), or whose file ``pass.json`` records
at such a revision, is done. ``pass.json`` records each step's revision, start, wall time and
exit status. At the end, when every step is done, ``./dev docs`` (which refuses anything stale)
rewrites the pages once more.

Before it starts: a clean tree (an experiment records a dirty one, and ``./dev docs`` refuses
what it measured), no other experiment running, and a load average below ``--max-load`` (0.5:
on a shared 2-core machine another job's noise is in every number).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import _experiment

from stair_stepper.analysis import publish

ROOT = _experiment.ROOT
RESULTS = ROOT / publish.RESULTS
STAGING = RESULTS / ".pass"
RECORD = RESULTS / "pass.json"
BENCH = ROOT / "bench"


@dataclass(frozen=True)
class Step:
    """One measurement: ``command`` (a bench script and its flags, or experiment flags when
    ``experiment``), what it makes under docs/results (``folders``, or the one ``text`` file
    its output becomes), and about how long it takes here."""

    name: str
    command: tuple[str, ...]
    folders: tuple[str, ...] = ()
    text: str | None = None
    experiment: bool = False
    minutes: int = 10
    needs: tuple[str, ...] = field(default=())  # bench-only requirements (the [bench] extra)

    def argv(self, out: Path) -> list[str]:
        """The command line, its results written to ``out`` (a folder step's)."""
        if self.experiment:
            return [
                sys.executable,
                "-m",
                "stair_stepper",
                "experiment",
                *self.command,
                "--out",
                str(out),
            ]
        script, *flags = self.command
        return [
            sys.executable,
            str(BENCH / script),
            *flags,
            *(["--out", str(out)] * bool(self.folders)),
        ]


R3 = ("--repeat", "3")
#: the pass, in order: what open issues publish first, then the default run and the rest
STEPS = (
    Step("pythons", ("pythons.py",), ("pythons",), minutes=18),
    Step("prefork", ("prefork.py",), ("prefork",), minutes=25),
    Step("container", ("container.py",), ("container",), minutes=35),
    Step("find-limit", ("find_limits.py",), ("find-limit",), minutes=40),
    Step("contrast", ("contrast.py", "--repeat", "5"), ("contrast",), minutes=30),
    Step(
        "allocators",
        ("--allocators", "glibc,jemalloc,jemalloc+bg,mimalloc,tcmalloc,tbbmalloc", *R3),
        ("allocators",),
        experiment=True,
        minutes=25,
    ),
    Step("price", ("--preset", "price"), ("price",), experiment=True, minutes=20),  # 3 runs
    Step("decay-cost", ("decay_cost.py",), ("decay-cost",), minutes=15),
    Step(
        "arena-sweep",
        ("--allocators", "glibc", "--sweep", "arena=glibc MALLOC_ARENA_MAX=1|2|4|8", *R3),
        ("arena-sweep",),
        experiment=True,
        minutes=15,
    ),
    Step(
        "maintenance",
        (
            *("--allocators", "glibc,jemalloc+bg", "--variant", "trim5=glibc trim_every=5"),
            *("--variant", "recycle=glibc workers=2 max_requests=256", *R3),
        ),
        ("maintenance",),
        experiment=True,
        minutes=20,
    ),
    Step(
        "own-asgi",
        ("--app", "examples.asgi_app:app", "--benchmark", "examples/asgi.yml", *R3),
        ("own-asgi",),
        experiment=True,
        minutes=10,
    ),
    Step(
        "pymalloc", ("--python-malloc", "pymalloc", *R3), ("pymalloc",), experiment=True, minutes=15
    ),
    Step("arenas", ("--preset", "arenas", *R3), ("arenas",), experiment=True, minutes=15),
    Step("seed", ("--preset", "seed", "--repeat", "2"), ("seed",), experiment=True, minutes=40),
    Step(
        "staircase-sweep",
        ("staircase.py", "--only", "default", "threads-8", "batches-5", "--repeat", "2"),
        ("staircase-sweep",),
        minutes=25,
    ),
    Step("idle", ("idle_traffic.py",), ("idle-0", "idle-0.2", "idle-1", "idle-5"), minutes=45),
    Step("probe-cost", ("probe_cost.py",), text="probe-cost.txt", minutes=5),
    Step("driver-price", ("driver_cost.py", "--only-price"), text="driver-price.txt", minutes=5),
    Step("middleware-cost", ("middleware_cost.py",), text="middleware-cost.txt", minutes=5),
    Step("agent-cost", ("agent_cost.py",), text="agent-cost.txt", minutes=1),
    Step("cgroup-cost", ("cgroup_cost.py",), text="cgroup-cost.txt", minutes=1),
    Step(
        "record-cost",
        ("record_cost.py",),
        text="record-cost.txt",
        minutes=5,
        needs=("psrecord>=1.2",),
    ),
    Step("analysis-speed", ("analysis_speed.py",), text="analysis-speed.txt", minutes=15),
    Step("signals", ("signals.py",), text="signals.txt", minutes=10),
)


def _git(*args: str) -> str:
    """git's answer in this checkout (publishing's own way of asking), stripped."""
    return publish._git(ROOT, *args).stdout.strip()


def records() -> dict:
    try:
        return json.loads(RECORD.read_text())
    except (OSError, ValueError):
        return {}


def done(step: Step) -> bool:
    """Measured already with today's measuring code."""
    if step.folders:
        # the result folders each holds (container/limited and /unlimited, a folder per
        # find-limit workload); none where it was not measured
        measured = [
            [f for f in publish.result_folders(RESULTS / name) if (f / "meta.json").is_file()]
            for name in step.folders
        ]
        return all(
            found and not any(publish.provenance_problems(f, ROOT) for f in found)
            for found in measured
        )
    record = records().get(step.name) or {}
    rev = record.get("revision")
    return bool(rev and record.get("exit") == 0 and publish.measuring_changes(ROOT, rev) == [])


#: a fixed piece of pure-Python work, timed in a fresh interpreter before each step: the same
#: code ran 2.2 times slower per request on one day than on another on this shared machine
#: (glibc's CPU per request at the default run, old and new code alike), so each step records
#: how fast the machine was when it measured
SPEED_CHECK = "import time; t = time.perf_counter(); sum(i * i for i in range(10**7)); "
SPEED_CHECK += "print(time.perf_counter() - t)"


def machine_speed(times: int = 3) -> float:
    """The median seconds of ``SPEED_CHECK`` over ``times`` fresh interpreters."""
    check = [sys.executable, "-c", SPEED_CHECK]
    taken = [
        float(subprocess.run(check, capture_output=True, text=True, check=True).stdout)
        for _ in range(times)
    ]
    return statistics.median(taken)


def quiet(max_load: float, wait_s: float = 600.0) -> str | None:
    """Why the machine is not ready to measure on, or None. The load average is waited for
    (up to ``wait_s``): the step before has just loaded both cores, and a one-minute average
    takes a minute or two to come down."""
    if _git("status", "--porcelain", "--untracked-files=no"):
        return "the tree has uncommitted changes (an experiment records them; commit first)"
    others = subprocess.run(
        ["pgrep", "-f", "stair_stepper (experiment|serve)"], capture_output=True, text=True
    ).stdout.split()
    if others:
        return f"another experiment or server is running (pids {', '.join(others)})"
    deadline = time.monotonic() + wait_s
    while (load := os.getloadavg()[0]) > max_load and time.monotonic() < deadline:
        time.sleep(10)
    if load > max_load:
        return f"the load average is {load:.2f} (above {max_load}): another job is running"
    return None


#: what an experiment draws into its folder: derived from the data, and redrawn by ./dev docs
RENDERED = ("*.png", "*.svg", "*.html")


def pack(folder: Path) -> None:
    """A result folder as docs/results keeps it, small: every trace gzipped (the reader takes
    ``.trace.csv.gz``), and no figure or report (``RENDERED``: ./dev docs draws the pages'
    figures from the data, and ``stair-stepper report`` writes a folder's report again)."""
    for trace in folder.rglob("*.trace.csv"):
        with open(trace, "rb") as plain, gzip.open(f"{trace}.gz", "wb", compresslevel=9) as packed:
            shutil.copyfileobj(plain, packed)
        trace.unlink()
    for pattern in RENDERED:
        for drawn in folder.rglob(pattern):
            drawn.unlink()


def measure(step: Step) -> int:
    """Run one step into the staging folder; on success put its outputs in place."""
    staging = STAGING / step.name
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    out, log, errors = staging / "out", staging / "output.txt", staging / "errors.txt"
    argv = step.argv(out)
    print(f"==> {step.name}: {' '.join(argv[1:])}", flush=True)
    with open(log, "w") as handle, open(errors, "w") as progress:
        # a folder step's log is everything it printed (progress included), as the .log files
        # beside the folders; a text step's file is its report alone
        code = subprocess.run(
            argv,
            stdout=handle,
            stderr=progress if step.text else subprocess.STDOUT,
            cwd=ROOT,
        ).returncode
    if code != 0:
        print(f"    failed (exit {code}); its output: {log}, {errors}", flush=True)
        return code
    if step.text:
        shutil.move(log, RESULTS / step.text)
    else:
        # a bench script's --out is the folder itself, or (idle) a parent of several
        sources = [out] if len(step.folders) == 1 else [out / name for name in step.folders]
        for name, source in zip(step.folders, sources, strict=True):
            pack(source)
            shutil.rmtree(RESULTS / name, ignore_errors=True)
            shutil.move(source, RESULTS / name)
        target = "idle-bench.txt" if step.name == "idle" else f"{step.name}.log"
        shutil.move(log, RESULTS / target)
    shutil.rmtree(staging, ignore_errors=True)
    return 0


def publish_pages(final: bool) -> int:
    flags = [] if final else ["--allow-stale"]
    return subprocess.run(
        [sys.executable, "-m", "stair_stepper.analysis.publish", *flags]
    ).returncode


def commit(step: Step, seconds: float) -> None:
    paths = [str(publish.RESULTS), "README.md", "docs"]
    subprocess.run(["git", "-C", str(ROOT), "add", "--", *paths], check=True)
    message = (
        f"Measuring pass: {step.name} at {_git('rev-parse', '--short', 'HEAD')} "
        f"({seconds / 60:.0f} min), pages rewritten from it\n\n"
        f"python bench/measuring_pass.py --only {step.name}"
    )
    subprocess.run(["git", "-C", str(ROOT), "commit", "-q", "-m", message], check=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="list the steps and what is done")
    parser.add_argument("--only", nargs="*", choices=[s.name for s in STEPS], help="these steps")
    parser.add_argument("--force", action="store_true", help="measure done steps again too")
    parser.add_argument("--no-commit", action="store_true", help="leave the results uncommitted")
    parser.add_argument("--max-load", type=float, default=0.5)
    args = parser.parse_args()
    steps = [s for s in STEPS if not args.only or s.name in args.only]
    todo = [s for s in steps if args.force or not done(s)]
    for s in steps:
        state = "to measure" if s in todo else "done"
        print(f"{s.name:16} {state:10} ~{s.minutes:3d} min  {' '.join(s.command)}")
    print(f"{len(todo)} step(s) to measure, about {sum(s.minutes for s in todo)} minutes")
    if args.dry_run or not todo:
        return publish_pages(final=True) if not todo and not args.dry_run else 0
    for s in todo:
        if s.needs:  # the [bench] extra, into this interpreter's environment
            pip = [sys.executable, "-m", "pip", "install", "-q", *s.needs]
            if subprocess.run(pip).returncode != 0:
                print(f"{s.name} needs {', '.join(s.needs)}, which pip could not install")
                return 2
        why = quiet(args.max_load)
        if why:
            print(f"not measuring {s.name}: {why}")
            return 2
        speed = machine_speed()
        started, began = time.monotonic(), datetime.now(UTC).isoformat(timespec="seconds")
        revision = _git("rev-parse", "HEAD")
        code = measure(s)
        seconds = time.monotonic() - started
        entry = {
            "revision": revision,
            "started_at": began,
            "seconds": round(seconds),
            "exit": code,
            "speed_check_s": round(speed, 3),
        }
        RECORD.write_text(json.dumps(records() | {s.name: entry}, indent=1, sort_keys=True) + "\n")
        if code != 0:
            return 1
        if publish_pages(final=False) != 0:
            return 1
        if not args.no_commit:
            commit(s, seconds)
    if all(done(s) for s in STEPS):
        return publish_pages(final=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

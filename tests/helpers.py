"""Helpers the test modules share (fixtures and markers are conftest.py's): running the
experiment as a user does, waiting for its phases, the orphan check, synthetic traces."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import TINY, cli

from stair_stepper.record import procfs
from stair_stepper.record.schema import BATCH_COLUMNS, TRACE_COLUMNS, RowWriter

ROOT = Path(__file__).resolve().parent.parent
FAKES = Path(__file__).resolve().parent / "fakes"
MB = 2**20


def experiment(*args: str, env: dict | None = None):
    return cli("experiment", *args, env=env, timeout=240, cwd=ROOT)


def server_pids(folder: Path) -> list[int]:
    meta = json.loads((folder / "meta.json").read_text())
    return [v["pid"] for v in meta["variants"].values() if "pid" in v]


def assert_no_orphans(folder: Path) -> None:
    pids = server_pids(folder)
    assert pids, "the run recorded no server pid"
    for pid in pids:
        assert not procfs.alive(pid), f"server {pid} outlived the experiment"


def as_from_a_terminal(then=None):
    """A child's preexec: SIGINT and SIGHUP at their defaults, as a terminal gives them. A
    suite started in the background (``&``) or under nohup hands its children those signals
    ignored, and a run keeps an ignored signal ignored (errors.Stopper): the tests of what a
    signal does must not depend on how pytest was started. ``then``: one more preexec."""

    def preexec() -> None:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGHUP, signal.SIG_DFL)
        if then is not None:
            then()

    return preexec


def start_and_wait_for(folder: Path, ready, *extra: str, **popen) -> subprocess.Popen:
    """The tiny experiment (3 s requests unless ``extra`` says otherwise), once ``ready()``;
    ``popen``: more options for ``subprocess.Popen`` (its ``preexec_fn`` runs after SIGINT
    and SIGHUP are set to their defaults)."""
    popen["preexec_fn"] = as_from_a_terminal(popen.get("preexec_fn"))
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "stair_stepper",
            "experiment",
            *TINY,
            "--sleep-ms",
            "3000",
            "--out",
            str(folder),
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        **popen,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if ready():
            return process
        assert process.poll() is None, process.communicate()
        time.sleep(0.05)
    process.kill()
    raise AssertionError("the experiment never got there")


def start_and_wait_for_phase(folder: Path, phase: str, *extra: str) -> subprocess.Popen:
    trace = folder / "glibc.trace.csv"
    return start_and_wait_for(folder, lambda: trace.exists() and phase in trace.read_text(), *extra)


def start_and_wait_for_batch(folder: Path, *extra: str) -> subprocess.Popen:
    return start_and_wait_for_phase(folder, "batch 1", *extra)


def synthetic_variant(
    folder: Path,
    name: str,
    baseline: float,
    floors: list[float],
    after_trim: float,
    peak: float,
    falling: tuple[int, ...] = (),
) -> None:
    """10 Hz trace: 2 s baseline, then per batch 1 s at ``peak`` and a 3 s pause at the floor.

    The pauses numbered in ``falling`` never settle: RSS still drops 2 MB every 0.1 s at
    their end (as jemalloc's decay does when a pause is too short)."""
    rows, t = [], 0.0
    batches = []

    def add(
        phase: str, seconds: float, mb: float, live: float | None = None, slope: float = 0.0
    ) -> None:
        nonlocal t
        n = int(seconds * 10)
        for i in range(n):
            value = mb + slope * (n - 1 - i)  # ends at ``mb``
            rows.append(
                {
                    "t_s": t,
                    "wall_time": 1e9 + t,
                    "phase": phase,
                    "rss_bytes": int(value * MB),
                    "live_bytes": int((live or mb / 2) * MB),
                    "held_bytes": int(value * MB),
                }
            )
            t += 0.1

    add("baseline", 2, baseline)
    for k, floor in enumerate(floors, 1):
        start = t
        add(f"batch {k}", 1, peak)
        end = t
        add(f"pause {k}", 0.5, floor + 40)  # the floor is the pause's last second
        add(f"pause {k}", 2.5, floor, live=30, slope=2.0 if k in falling else 0.0)
        batches.append(
            {
                "batch": k,
                "start_s": start,
                "end_s": end,
                "pause_end_s": t,
                "requests": 10,
                "failures": 0,
            }
        )
    add("trim", 0.1, floors[-1])
    add("after trim", 2, after_trim)
    with RowWriter(folder / f"{name}.trace.csv", TRACE_COLUMNS) as w:
        for row in rows:
            w.write(row)
    with RowWriter(folder / f"{name}.batches.csv", BATCH_COLUMNS) as w:
        for row in batches:
            w.write(row)


# What a plan may omit or give, and what drill 0.8.3 / 0.9.0 make of it. Each row cites the
# source it follows (github fcsonline/drill, src/config.rs unless said otherwise):
# (the numbers in the file, expected (iterations, concurrency, rampup) or "error", warning?)
SETTINGS_TABLE = [
    # NITERATIONS = 1, NRAMPUP = 0; `read_i64_configuration(.., "concurrency", iterations)`
    ("", (1, 1, 0), False),
    # concurrency omitted: defaults to the iteration count, not to 1
    ("iterations: 3", (3, 3, 0), False),
    ("iterations: 3\nconcurrency: 2\nrampup: 5", (3, 2, 5), False),
    # `config_doc[name].as_str()` then `.parse::<i64>()`: numeric strings count
    ("iterations: '4'\nconcurrency: '2'", (4, 2, 0), False),
    # `if value < 0 { println!("Invalid negative {} value!") ; default }`
    ("iterations: 3\nconcurrency: -2", (3, 3, 0), True),
    ("iterations: 2\nrampup: -1", (2, 2, 0), True),
    # a float is neither i64 nor str: the default, silently
    ("iterations: 2.5", (1, 1, 0), False),
    # an unparsable string: `println!("Invalid {} value!")` and the default
    ("iterations: lots", (1, 1, 0), True),
    # `if concurrency > iterations { panic!(..) }`
    ("iterations: 2\nconcurrency: 3", "error", False),
    # concurrency 0: tokio panics "Worker threads cannot be set to 0" (src/benchmark.rs)
    ("iterations: 0\nconcurrency: 0", "error", False),
]


def drill_plan(tmp_path: Path, numbers: str, base: str = "http://127.0.0.1:1") -> Path:
    text = f"base: {base}\n{numbers}\nplan:\n  - name: h\n    request:\n      url: /healthz\n"
    path = tmp_path / "b.yml"
    path.write_text(text)
    return path


def synthetic_repeat(folder: Path) -> None:
    """A --repeat folder of three synthetic runs: glibc's floors 200 → 260 → 262, 210 → 280 →
    300 and 190 → 250 → 255 MB against jemalloc's 100 → 100 → 100."""
    for k, glibc_floors in enumerate(([200, 260, 262], [210, 280, 300], [190, 250, 255]), 1):
        run = folder / f"run-{k}"
        run.mkdir(parents=True)
        (run / "meta.json").write_text(
            json.dumps({"config": {"variants": ["glibc", "jemalloc"]}, "status": "complete"})
        )
        synthetic_variant(run, "glibc", 50, glibc_floors, 60, 400)
        synthetic_variant(run, "jemalloc", 50, [100, 100, 100], 70, 300)

"""One batch of load, by our built-in driver or by real drill.

Both read the same benchmark file. For drill, a copy of the benchmark is
written with the batch's base URL, iterations and concurrency (includes made
absolute), and drill's ``--stats`` output is parsed back into the same
figures the built-in driver returns.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import yaml

from stair_stepper import selfexec
from stair_stepper.errors import UserError
from stair_stepper.load import drillfile
from stair_stepper.load import driver as load

DRIVERS = ("builtin", "drill", "auto")


@dataclass(frozen=True)
class BatchOutcome:
    requests: int
    failures: int
    requests_per_second: float | None
    p50_ms: float | None
    p99_ms: float | None
    p99_9_ms: float | None
    lag_p99_ms: float | None = None  # open loop: how late the sender sent (its own lag)
    lag_max_ms: float | None = None


class Workload(NamedTuple):
    """What one batch sends: the benchmark, its selected items and the tags that chose them."""

    bench: drillfile.Benchmark
    items: tuple[drillfile.RequestItem, ...]
    tags: str | None = None

    @property
    def requests(self) -> int:
        return self.bench.total_requests(self.items)

    @property
    def names(self) -> list[str]:
        return [i.name for i in self.items]


def run_batch(
    driver: str,
    workload: Workload,
    base: str,
    folder: Path,
    name: str,
    cancel: threading.Event | None = None,
    progress: load.ProgressFn | None = None,
    rate: float | None = None,
    arrivals: str = "constant",
) -> BatchOutcome:
    """One batch against ``base`` by the built-in driver (closed loop, or at ``rate`` requests
    a second) or by real drill (``--driver``; closed loop only: drill has no rate mode)."""
    if driver == "drill":
        log = folder / f"{name}.drill.log"
        return run_drill(workload.bench, base, folder, workload.tags, log, name, cancel)
    return run_builtin(workload.bench, workload.items, base, progress, cancel, rate, arrivals)


def resolve(driver: str) -> str:
    """'auto' means drill when it is on PATH, else the built-in driver."""
    if driver not in DRIVERS:
        raise UserError(f"--driver must be one of {', '.join(DRIVERS)}, not {driver!r}.")
    if driver == "auto":
        return "drill" if shutil.which("drill") else "builtin"
    if driver == "drill" and not shutil.which("drill"):
        raise UserError("--driver drill needs drill on PATH (it is in `nix develop`).")
    return driver


def run_builtin(
    bench: drillfile.Benchmark,
    items: tuple[drillfile.RequestItem, ...],
    base: str,
    progress: load.ProgressFn | None = None,
    cancel: threading.Event | None = None,
    rate: float | None = None,
    arrivals: str = "constant",
) -> BatchOutcome:
    result = load.run_load(
        bench, items, base=base, progress=progress, cancel=cancel, rate=rate, arrivals=arrivals
    )
    f = result.to_json()
    return BatchOutcome(
        f["total_requests"],
        f["failed_requests"],
        f["requests_per_second"],
        f["median_ms"],
        f["p99_ms"],
        f["p99_9_ms"],
        f["lag_p99_ms"],
        f["lag_max_ms"],
    )


def drill_benchmark_file(
    bench: drillfile.Benchmark, base: str, folder: Path, name: str = "drill"
) -> Path:
    """A copy of the benchmark for drill: this batch's numbers, includes made absolute.

    One file per ``name`` (variant): side by side, each drill must load its own server.
    """
    doc = yaml.safe_load(bench.path.read_text())
    doc.update(base=base, iterations=bench.iterations, concurrency=bench.concurrency)
    for item in doc["plan"]:
        if isinstance(item, dict) and "include" in item:
            item["include"] = str((bench.path.parent / item["include"]).resolve())
    path = folder / f"{name}.drill-benchmark.yml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def parse_drill_stats(text: str) -> BatchOutcome:
    """The global block of ``drill --stats`` (the lines without a request name)."""
    figures: dict[str, str] = {}
    for line in _ANSI.sub("", text).splitlines():
        for label in (
            "Total requests",
            "Failed requests",
            "Requests per second",
            "Median time per request",
            "99.0'th percentile",
            "99.9'th percentile",
        ):
            if line.startswith(label):
                figures[label] = line[len(label) :].split()[0]

    def number(label: str) -> float | None:
        raw = figures.get(label)
        if raw is None:
            return None
        value = float(re.sub(r"[a-z]+$", "", raw))
        return value / 1e6 if raw.endswith("ns") else value

    if "Total requests" not in figures:
        raise UserError("drill's output had no statistics; was it interrupted?")
    return BatchOutcome(
        int(number("Total requests") or 0),
        int(number("Failed requests") or 0),
        number("Requests per second"),
        number("Median time per request"),
        number("99.0'th percentile"),
        number("99.9'th percentile"),
    )


def run_drill(
    bench: drillfile.Benchmark,
    base: str,
    folder: Path,
    tags: str | None,
    log: Path,
    name: str = "drill",
    cancel: threading.Event | None = None,
) -> BatchOutcome:
    path = drill_benchmark_file(bench, base, folder, name)
    command = ["drill", "--benchmark", str(path), "--stats", "--quiet"]
    if tags:
        command += ["--tags", tags]
    env = dict(os.environ, NO_COLOR="1")
    out = log.with_suffix(".stdout")
    with open(log, "a") as err, open(out, "w+") as stdout:
        process = subprocess.Popen(
            command, stdout=stdout, stderr=err, text=True, env=env, **selfexec.child_popen_options()
        )
        while process.poll() is None:
            if cancel is not None and cancel.wait(0.2):
                process.terminate()  # stopping: drill has no partial statistics to give
                process.wait()
                raise UserError("drill was stopped before the batch ended.")
            if cancel is None:
                process.wait()
        stdout.seek(0)
        text = stdout.read()
        err.write(text)
    out.unlink(missing_ok=True)
    if process.returncode != 0:
        raise UserError(_drill_failure(process.returncode, log))
    return parse_drill_stats(text)


# drill 0.8.3 and 0.9.0 record latencies in microseconds into a histogram bounded at 3,600,000
# (compute_stats in drill's src/main.rs): one request slower than about 4.2 s makes --stats
# panic after the whole run. The flake's dev shell ships drill with that bound raised.
_HISTOGRAM_PANIC = ("ValueOutOfRange", "value out of range", "HistogramError")


def _drill_failure(code: int, log: Path) -> str:
    tail = log.read_text(errors="replace")[-4000:]
    if code == 101 and any(marker in tail for marker in _HISTOGRAM_PANIC):
        return (
            "drill ran the batch but panicked computing its statistics (exit 101): a request "
            "took longer than drill's latency histogram allows (about 4.2 s in drill 0.8.3 and "
            "0.9.0); use --driver builtin, fewer requests in flight, or the flake's patched "
            f"drill (nix develop). drill's output is in {log}."
        )
    if code == 101 and "error reading DNS system conf" in tail:
        return (
            "drill could not build its HTTP client: its DNS resolver (reqwest with trust-dns) "
            "reads /etc/resolv.conf, which this machine lacks (a build sandbox?); use "
            f"--driver builtin. drill's output is in {log}."
        )
    return f"drill exited with code {code}; its output is in {log}."

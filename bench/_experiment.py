"""What every bench script that runs experiments shares: the child, the folder, the flags.

Imported by the scripts beside it (``python bench/NAME.py`` puts this folder on sys.path).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def parser(doc: str, repeat: int = 3) -> argparse.ArgumentParser:
    """``--repeat``, ``--out`` and the experiment flags after ``--``, for a script's own
    flags to be added to."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--repeat", type=int, default=repeat)
    p.add_argument("--out", type=Path, default=None, help="result folder (default results/…)")
    p.add_argument("extra", nargs="*", help="more experiment flags, after --")
    return p


def folder(out: Path | None, name: str) -> Path:
    """``out``, or ``results/bench-NAME-<UTC time>``."""
    return out or Path(f"results/bench-{name}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}")


def run(out: Path, *flags: str) -> int:
    """``stair-stepper experiment FLAGS --out OUT`` in a child (its tables not printed; its
    progress, on stderr, shown); its exit status, with a line when it failed."""
    command = [sys.executable, "-m", "stair_stepper", "experiment", *flags, "--out", str(out)]
    code = subprocess.run(command, stdout=subprocess.DEVNULL).returncode
    if code == 3:  # complete, with a variant OOM-killed under its limit: an outcome
        print(f"a variant was OOM-killed (exit 3); see {out}", file=sys.stderr)
    elif code != 0:
        print(f"the experiment failed (exit {code}); see {out}", file=sys.stderr)
    return code


def preset(name: str):
    """A preset's configuration, its batch of the benchmark, and serve's flags for it (for the
    scripts that start one server themselves instead of running an experiment)."""
    from stair_stepper.experiment.presets import PRESETS
    from stair_stepper.load import drillfile

    config = PRESETS[name]
    load = config.load
    bench = drillfile.read_benchmark(
        ROOT / "benchmark.yml", iterations=load.iterations, concurrency=load.concurrency
    )
    service = config.service
    flags = ("--sleep-ms", str(service.sleep_ms), "--python-malloc", service.python_malloc)
    return config, bench, (*flags, "--offload-threads", str(service.offload_threads))

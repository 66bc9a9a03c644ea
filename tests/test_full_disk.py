"""A full file system under --out, for real: a small tmpfs filled while the run goes on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import TINY, wait_until

from stair_stepper.errors import NoSpace
from stair_stepper.record import procfs

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")


@pytest.fixture
def small_fs(tmp_path):
    """A 4 MiB tmpfs of our own, unmounted afterwards whatever happened."""
    mount = tmp_path / "fs"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(mount: Path) -> None:
    """Write a file until the file system says it is full."""
    with open(mount / "filler", "wb") as filler:
        try:
            while True:
                filler.write(b"\0" * 65536)
                filler.flush()
        except OSError:
            pass


def server_pids(folder: Path) -> list[int]:
    meta = json.loads((folder / "meta.json").read_text())
    return [v["pid"] for v in meta["variants"].values() if "pid" in v]


def test_a_full_file_system_mid_run_is_one_sentence_stops_every_server_and_says_so(small_fs):
    folder = small_fs / "r"
    process = subprocess.Popen(
        [sys.executable, "-m", "stair_stepper", "experiment", *TINY, "--sleep-ms", "3000"]
        + ["--no-plot", "--out", str(folder)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    trace = folder / "glibc.trace.csv"
    assert wait_until(lambda: trace.exists() and "batch 1" in trace.read_text(), 60)
    pids = server_pids(folder)
    fill(small_fs)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 1, err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"stair-stepper: the file system under {folder} is full ("), last
    assert "the run stopped, and every server with it" in last
    assert pids and wait_until(lambda: not any(procfs.alive(p) for p in pids), 5)
    meta = json.loads((folder / "meta.json").read_text())  # rewritten in place, compact
    assert meta["status"] == "failed: no space left on the result folder's file system"
    assert not list(folder.glob("*.tmp"))


def test_a_full_file_system_while_reporting_keeps_the_measurements_and_says_so(small_fs):
    from stair_stepper.errors import Stopper
    from stair_stepper.experiment import command

    folder = small_fs / "r"
    done = subprocess.run(
        [sys.executable, "-m", "stair_stepper", "experiment", *TINY, "--no-plot"]
        + ["--out", str(folder)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    for name in ("summary.json", "summary.md"):
        (folder / name).unlink()
    fill(small_fs)
    began = time.monotonic()
    with pytest.raises(NoSpace) as info:
        command._report(folder, False, Stopper())
    assert time.monotonic() - began < 30
    assert "every measurement is complete, but the report could not be written" in str(info.value)
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["status"] == "complete"  # the measurements are
    assert meta["report"].startswith("not written: no space left")
    assert not (folder / "summary.json").exists()  # never half a summary

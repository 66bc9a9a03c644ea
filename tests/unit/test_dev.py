"""./dev, the entry point: package installation against a stand-in apt (tests/fakes/apt)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FAKE_APT = Path(__file__).resolve().parents[1] / "fakes" / "apt"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="./dev installs packages only as root")


def packages(tmp_path: Path, locked: int, wait: int, known: str) -> subprocess.CompletedProcess:
    """``./dev packages`` with apt-get, apt-cache and dpkg-query replaced by the stand-ins."""
    env = dict(
        os.environ,
        PATH=f"{FAKE_APT}{os.pathsep}{os.environ['PATH']}",
        FAKE_APT_LOG=str(tmp_path / "apt.log"),
        FAKE_APT_LOCKED=str(locked),
        FAKE_APT_KNOWN=known,
        STAIR_STEPPER_APT_WAIT=str(wait),
    )
    return subprocess.run(
        [str(ROOT / "dev"), "packages"], env=env, capture_output=True, text=True, timeout=60
    )


BOOKWORM = "libjemalloc2 libmimalloc2.0 libgoogle-perftools4 libtbbmalloc2"
TRIXIE = "libjemalloc2 libmimalloc3 libgoogle-perftools4t64 libtbbmalloc2"


def test_a_held_dpkg_lock_is_waited_for_and_said(tmp_path):
    done = packages(tmp_path, locked=2, wait=30, known=BOOKWORM)
    assert done.returncode == 0, done.stderr
    assert "another package manager holds the dpkg lock (held by process 4242" in done.stderr
    assert done.stderr.count("holds the dpkg lock") == 1  # said once, not every retry
    calls = (tmp_path / "apt.log").read_text().splitlines()
    assert calls[-1].startswith("apt-get -qq install -y libjemalloc2")


def test_a_lock_held_past_the_wait_is_one_sentence_and_exit_1(tmp_path):
    began = time.monotonic()
    done = packages(tmp_path, locked=1000, wait=3, known=BOOKWORM)
    assert done.returncode == 1
    assert time.monotonic() - began < 20
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("==> another package manager still holds the dpkg lock after 3 s")


def test_debian_13_package_names_are_found(tmp_path):
    """trixie renamed two of them (libmimalloc3, libgoogle-perftools4t64: the 64-bit time_t
    transition); setup takes whichever name this machine's apt knows."""
    done = packages(tmp_path, locked=0, wait=5, known=TRIXIE)
    assert done.returncode == 0, done.stderr
    install = (tmp_path / "apt.log").read_text().splitlines()[-1]
    assert "libmimalloc3" in install and "libgoogle-perftools4t64" in install
    assert "libmimalloc2.0" not in install

"""Python as a variant axis: a variant's server under another interpreter (python=PATH), its
version and its object allocator read back from the served process.

The second interpreter is the Debian 13 root's python3.13 here (tests/trixie/root.py python
writes a wrapper that runs it inside the root; $STAIR_STEPPER_TRIXIE_PYTHON names it, as
.ci/run sets it), or the flake's python312 environment in `nix flake check`
($STAIR_STEPPER_PYTHON_312, from the flake's libraryEnv). Without either, the run under
another interpreter skips with that reason; the refusals need nothing.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess

import pytest
from conftest import cli
from helpers import ROOT, assert_no_orphans

THERE = os.environ.get("STAIR_STEPPER_TRIXIE_PYTHON") or os.environ.get("STAIR_STEPPER_PYTHON_312")


def dry(*variant: str):
    return cli("experiment", "--dry-run", *(a for v in variant for a in ("--variant", v)), cwd=ROOT)


def test_an_interpreter_that_is_not_there_or_lacks_the_lab_is_one_sentence(tmp_path):
    done = dry("x=glibc python=/nope/python3")
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "stair-stepper: variant x: python=/nope/python3 is not an executable file."
    )
    bare = tmp_path / "bare"
    bare.write_text('#!/bin/sh\nexec python3 -I -S "$@"\n')  # a Python without our packages
    bare.chmod(0o755)
    done = dry(f"x=glibc python={bare}")
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "cannot import stair_stepper and hypercorn" in done.stderr


@pytest.mark.skipif(
    platform.python_version_tuple()[:2] >= ("3", "13"), reason="this Python has mimalloc"
)
def test_pythonmalloc_mimalloc_is_refused_where_the_interpreter_has_none():
    done = dry("x=glibc PYTHONMALLOC=mimalloc")
    assert done.returncode == 2
    assert f"this is CPython {platform.python_version()}, which has no mimalloc" in done.stderr


@pytest.mark.skipif(
    not THERE,
    reason="no second interpreter: $STAIR_STEPPER_TRIXIE_PYTHON or $STAIR_STEPPER_PYTHON_312",
)
def test_a_variant_runs_under_its_own_interpreter_and_says_which(tmp_path):
    version = subprocess.run(
        [THERE, "-c", "import platform; print(platform.python_version())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    has_mimalloc = tuple(map(int, version.split(".")[:2])) >= (3, 13)
    mimalloc = ["--variant", f"mi-there=glibc PYTHONMALLOC=mimalloc python={THERE}"]
    folder = tmp_path / "r"
    done = cli(
        "experiment",
        "--preset",
        "quick",
        "--batches",
        "1",
        "--iterations",
        "8",
        "--concurrency",
        "8",
        "--tags",
        "small",
        "--allocators",
        "glibc",
        "--variant",
        f"glibc-there=glibc python={THERE}",
        *(mimalloc if has_mimalloc else []),
        "--no-plot",
        "--out",
        str(folder),
        timeout=300,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    meta = json.loads((folder / "meta.json").read_text())
    ours, there = meta["variants"]["glibc"], meta["variants"]["glibc-there"]
    assert ours["health"]["python"] == platform.python_version()
    assert there["health"]["python"] == version
    assert there["settings"]["python"]["same"] and there["settings"]["python"]["given"] == THERE
    assert there["health"]["allocator"] == "glibc"  # proven in that interpreter's process
    summary = (folder / "summary.md").read_text()
    assert f"Python {version}" in summary
    if has_mimalloc:
        mi = meta["variants"]["mi-there"]["settings"]["read_back"]
        assert mi["python_allocator"] == "mimalloc"  # CPython's own statistics say so
        assert "objects on mimalloc" in summary
    assert_no_orphans(folder)

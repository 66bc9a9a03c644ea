"""Shared fixtures: real servers on ephemeral loopback ports, real allocators."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from stair_stepper import allocators
from stair_stepper.experiment.launch import start_server


def has_library(name: str) -> bool:
    return allocators.find_library(allocators.ALLOCATORS[name]) is not None


needs_jemalloc = pytest.mark.skipif(
    not has_library("jemalloc"),
    reason="libjemalloc2 is not installed (apt-get install libjemalloc2)",
)


ROOT = Path(__file__).resolve().parent.parent


def real_drill() -> Path | None:
    """Real drill for tests: $STAIR_STEPPER_TEST_DRILL, or drill on PATH (`nix develop` puts
    the flake's there). Without it, drill-format compatibility is held by the known-answer
    tests of tests/test_drillfile.py, written from drill's documented format."""
    for candidate in (os.environ.get("STAIR_STEPPER_TEST_DRILL"), shutil.which("drill")):
        if candidate and os.access(candidate, os.X_OK):
            return Path(candidate).resolve()
    return None


def _drill_missing() -> str | None:
    if real_drill() is None:
        return (
            "real drill is not here: run the suite in `nix develop`, or set "
            "$STAIR_STEPPER_TEST_DRILL"
        )
    if not Path("/etc/resolv.conf").exists():
        # drill enables reqwest's trust-dns resolver (Cargo.toml of 0.8.3 and 0.9.0), which
        # reads /etc/resolv.conf when its client is built and panics without it: the Nix build
        # sandbox has none (only fixed-output derivations get the host's)
        return "real drill cannot run without /etc/resolv.conf (its trust-dns resolver reads it)"
    return None


DRILL_MISSING = _drill_missing()  # asked once, at import
needs_drill = pytest.mark.skipif(DRILL_MISSING is not None, reason=str(DRILL_MISSING))


def cli(
    *args: str, env: dict | None = None, timeout: float = 120, cwd=None
) -> subprocess.CompletedProcess:
    """Run ``python -m stair_stepper ARGS`` as a user would, output captured."""
    return subprocess.run(
        [sys.executable, "-m", "stair_stepper", *args],
        env=dict(os.environ, **(env or {})),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
    )


def assert_images(folder: Path, stems=("memory", "floors")) -> None:
    """Each figure is a PNG of some size with the first variant's colour drawn in it, and an SVG
    holding a line or bar drawn in a variant's colour (a blank canvas or an empty axis fails)."""
    import matplotlib.image
    import numpy as np

    from stair_stepper.analysis.figures import COLORS

    first = np.array([int(COLORS[0][i : i + 2], 16) / 255 for i in (1, 3, 5)])
    for stem in stems:
        png = folder / f"{stem}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        pixels = matplotlib.image.imread(png)[..., :3]
        assert pixels.shape[0] > 200
        drawn = np.abs(pixels - first).max(axis=-1) < 0.06
        assert drawn.sum() > 200, f"{png.name}: nothing drawn in the first variant's colour"
        root = ET.parse(folder / f"{stem}.svg").getroot()
        assert root.tag.endswith("svg")
        lines = [
            e
            for e in root.iter()
            if e.tag.endswith("path")
            and " L " in f" {e.get('d', '')} "
            and any(
                f"{how}: {c}" in (e.get("style") or "")
                for c in COLORS
                for how in ("stroke", "fill")
            )
        ]
        assert lines, f"{stem}.svg has nothing drawn in a variant's colour"


def post(url: str, body: bytes, content_type: str = "application/json", timeout: float = 60):
    """POST and return (status, parsed JSON body) for any status."""
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": content_type}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def get(url: str, timeout: float = 10):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.fixture(scope="session")
def glibc_server():
    with start_server("glibc", extra_args=("--sleep-ms", "0", "--max-body-bytes", "3000000")) as s:
        yield s


@pytest.fixture(scope="session")
def jemalloc_server():
    if not has_library("jemalloc"):
        pytest.skip("libjemalloc2 is not installed (apt-get install libjemalloc2)")
    with start_server("jemalloc", extra_args=("--sleep-ms", "0")) as s:
        yield s


def wait_until(predicate, timeout: float, step: float = 0.05) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` seconds have passed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


#: one batch of four tiny requests, two at a time (the quick preset's kind of run)
SHORT = (
    "--preset",
    "quick",
    "--batches",
    "1",
    "--iterations",
    "4",
    "--concurrency",
    "2",
    "--tags",
    "tiny",
)
#: the smallest experiment that still runs a batch, a pause and the trim (glibc only)
TINY = (*SHORT, "--allocators", "glibc", "--pause", "0.5")


def serve_flags(ready: Path) -> list[str]:
    """``serve`` flags for a test: a free loopback port, its pid and URLs in ``ready``."""
    return ["--bind", "127.0.0.1:0", "--ready-file", str(ready), "--sleep-ms", "0"]


@pytest.fixture
def synthetic(tmp_path):
    """A synthetic result folder with known answers: glibc's floors 200 → 260 → 262 MB,
    jemalloc's 100 each, after trim 60 and 70 (helpers.synthetic_variant)."""
    from helpers import synthetic_variant

    folder = tmp_path / "run"
    folder.mkdir()
    meta = {
        "config": {"preset": "synthetic", "variants": ["glibc", "jemalloc"], "batches": 3},
        "provenance": {"python": "3.11.7", "glibc": "2.36"},
        "status": "complete",
    }
    (folder / "meta.json").write_text(json.dumps(meta))
    synthetic_variant(folder, "glibc", 50, [200, 260, 262], 60, 400)
    synthetic_variant(folder, "jemalloc", 50, [100, 100, 100], 70, 300)
    return folder

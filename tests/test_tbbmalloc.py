"""tbbmalloc, the fifth allocator: one module (allocators/tbbmalloc.py) and its registry line,
run end to end on the quick preset like the others."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import cli, has_library

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(
    not has_library("tbbmalloc"),
    reason="libtbbmalloc2 is not installed (apt-get install libtbbmalloc2)",
)


def test_tbbmalloc_runs_the_quick_preset_proven_checked_and_honest(tmp_path):
    folder = tmp_path / "r"
    done = cli(
        "experiment",
        "--preset",
        "quick",
        "--batches",
        "1",
        "--allocators",
        "tbbmalloc",
        "--variant",
        "tbb-huge=tbbmalloc TBB_MALLOC_USE_HUGE_PAGES=1",
        "--no-plot",
        "--out",
        str(folder),
        timeout=240,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    meta = json.loads((folder / "meta.json").read_text())
    for name in ("tbbmalloc", "tbb-huge"):
        health = meta["variants"][name]["health"]
        # proven from the served process's maps: malloc runs the proxy's code
        assert os.path.basename(health["malloc_provider"]).startswith("libtbbmalloc_proxy")
        assert health["allocator"] == "tbbmalloc"
        trim = json.loads((folder / f"{name}.trim.json").read_text())
        assert trim["call"] == "scalable_allocation_command(TBBMALLOC_CLEAN_ALL_BUFFERS)"
        assert trim["returned_memory"] is True
        assert trim["before"]["live_bytes"] is None  # no accounting: null, never a guess
    given = meta["variants"]["tbb-huge"]["settings"]["read_back"]["values"]
    assert given["TBB_MALLOC_USE_HUGE_PAGES"]["read"] is None  # no getter: said so
    assert "no getter" in given["TBB_MALLOC_USE_HUGE_PAGES"]["how"]
    assert meta["provenance"]["allocators"]["tbbmalloc"]["version"]  # from its own banner
    summary = json.loads((folder / "summary.json").read_text())["variants"]["tbbmalloc"]
    assert summary["last_floor_live_bytes"] is None and summary["after_trim_bytes"]


@pytest.mark.parametrize(
    ("setting", "said"),
    [
        ("TBB_MALLOC_USE_HUGE_PAGES=yes", "its banner says huge pages not requested"),
        ("TBB_MALLOC_SET_HUGE_SIZE_THRESHOLD=1M", "is not a number of bytes"),
        ("TBB_MALLOC_FOO=1", "TBB_MALLOC_FOO is not a setting tbbmalloc reads"),
    ],
)
def test_a_setting_tbbmalloc_does_not_take_is_one_sentence(setting, said):
    done = cli("experiment", "--dry-run", "--variant", f"t=tbbmalloc {setting}", cwd=ROOT)
    assert done.returncode == 2
    assert said in done.stderr and done.stderr.count("\n") == 1

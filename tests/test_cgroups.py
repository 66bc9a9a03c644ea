"""Real memory cgroups (v1 on this machine, v2 where the memory controller is unified): known
answers with real servers and the kernel's own OOM killer. Each test removes what it makes;
the lab's cgroups are named stair-stepper-<lab>-<variant> and checked gone afterwards."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TINY, wait_until
from helpers import ROOT, assert_no_orphans, experiment

from stair_stepper.record import cgroups

WHERE = cgroups.locate()
pytestmark = pytest.mark.skipif(
    isinstance(WHERE, str), reason=f"no memory cgroup can be made here: {WHERE}"
)


def cgroups_of(meta: dict) -> list[Path]:
    """The cgroups a run made, as its meta.json says (started variants and those killed)."""
    found = []
    for v in meta["variants"].values():
        found += [Path(p) for p in ((v.get("cgroup") or {}).get("path"),) if p]
        found += [Path(p) for p in ((v.get("outcome") or {}).get("cgroup"),) if p]
    return found


def test_a_limit_below_the_baseline_kills_every_variant_at_start_up_and_says_so(tmp_path):
    folder = tmp_path / "r"
    done = experiment(
        *TINY, "--allocators", "glibc,jemalloc", "--memory-limit", "24M", "--out", str(folder)
    )
    assert done.returncode == 3, done.stderr[-2000:]  # complete, with variants OOM-killed
    said = [line for line in done.stderr.splitlines() if "OOM-killed" in line]
    for name in ("glibc", "jemalloc"):
        assert f"stair-stepper: {name}: OOM-killed at 24 MiB at start-up" in said or (
            f"stair-stepper: {name}: OOM-killed at 24 MiB in batch 1 (of 2)" in said
        ), said
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["status"] == "complete"
    assert all(v["outcome"]["oom_killed"] for v in meta["variants"].values())
    made = cgroups_of(meta)
    assert len(made) == 2 and not any(p.exists() for p in made)  # every cgroup removed
    for variant in meta["variants"].values():  # no server left, started or not
        if "pid" in variant:
            assert not os.path.exists(f"/proc/{variant['pid']}")


def test_a_command_tree_is_charged_as_a_whole(tmp_path):
    """Two children of 30 MB each under a 50 MB limit: neither alone is over it, the tree is."""
    hold = (
        "x = bytearray(30 << 20)\nfor i in range(0, len(x), 4096): x[i] = 1\n"
        "import time; time.sleep(120)"
    )
    command = (
        f'sh -c \'{sys.executable} -c "{hold}" & {sys.executable} -c "{hold}" & '
        f"exec {sys.executable} -m http.server --bind 127.0.0.1 {{port}}'"
    )
    folder = tmp_path / "r"
    done = experiment(
        *TINY, "--command", command, "--memory-limit", "50M", "--out", str(folder), "--no-plot"
    )
    assert done.returncode == 3, done.stderr[-2000:]
    meta = json.loads((folder / "meta.json").read_text())
    [outcome] = [v["outcome"] for v in meta["variants"].values()]
    assert outcome["oom_killed"] and outcome["limit_bytes"] == 50 << 20
    assert cgroups_of(meta) and not any(p.exists() for p in cgroups_of(meta))


def test_an_unlimited_run_records_the_charge_beside_rss(tmp_path):
    folder = tmp_path / "r"
    done = experiment(*TINY, "--out", str(folder), "--no-plot")
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads((folder / "summary.json").read_text())
    v = summary["variants"]["glibc"]
    assert v["limit_bytes"] is None and v["outcome"] is None
    rows = (folder / "glibc.trace.csv").read_text().splitlines()
    head = rows[0].split(",")
    anon = [int(r.split(",")[head.index("rss_anon_bytes")]) for r in rows[1:]]
    # the kernel charges at least the anonymous memory RSS counts (and page cache besides)
    assert v["cgroup_peak_bytes"] >= max(anon)
    assert_no_orphans(folder)


def _clean_up_after_a_lab_killed_hard(elsewhere: Path, attempt: int) -> bool:
    """Leave a cgroup behind as a lab SIGKILLed would (its lab gone, a process still in it)
    and run ``stair-stepper cleanup``: whether cleanup said it removed it (False: it was gone,
    taken by another run). Fails if the cgroup or its process outlives cleanup."""
    dead = cgroups.Cgroup.__new__(cgroups.Cgroup)
    dead.version, dead.limit, dead.high = WHERE.version, None, None
    _, start, namespace = cgroups.lab_id().split(".")
    dead.path = elsewhere / f"stair-stepper-999999999.{start}.{namespace}-left{attempt}"
    dead.path.mkdir()
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        (dead.path / "cgroup.procs").write_text(str(sleeper.pid))
        done = subprocess.run(
            [sys.executable, "-m", "stair_stepper", "cleanup"],
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
        assert done.returncode == 0, done.stderr
        assert not dead.path.exists(), done.stdout
        assert wait_until(lambda: sleeper.poll() is not None, 5)  # what ran there is gone
        return f"removed {dead.path}" in done.stdout
    finally:
        sleeper.kill()
        sleeper.wait()
        if dead.path.exists():
            dead.remove()


def test_cleanup_removes_what_a_run_killed_hard_left_behind(tmp_path):
    """Where that run's lab was started from another cgroup (here one made below ours, as a
    previous session's would be beside it): found from anywhere in the hierarchy.

    Every experiment removes such cgroups before it starts, so one started meanwhile by another
    test worker may take ours first (it did, once, in CI): that attempt proves nothing about
    cleanup and another is made; one whose cgroup outlives cleanup fails at once."""
    elsewhere = WHERE.parent / f"elsewhere-{os.getpid()}"
    elsewhere.mkdir()
    if WHERE.version == 2:  # its children get the memory controller, as ours do
        (elsewhere / "cgroup.subtree_control").write_text("+memory")
    try:
        attempts = 5
        for attempt in range(attempts):
            if _clean_up_after_a_lab_killed_hard(elsewhere, attempt):
                break
        else:
            pytest.fail(f"in {attempts} attempts, another run removed the cgroup first every time")
    finally:
        elsewhere.rmdir()


def test_find_limit_brackets_the_smallest_limit_that_completes(tmp_path):
    folder = tmp_path / "f"
    done = experiment(*TINY, "--find-limit", "--out", str(folder))
    assert done.returncode == 0, done.stderr[-2000:]
    found = json.loads((folder / "find-limit.json").read_text())["variants"]["glibc"]
    passed, failed = found["smallest_passed_bytes"], found["largest_failed_bytes"]
    assert passed and failed and failed < passed
    assert passed - failed <= max(0.05 * passed, 16 << 20)  # within 5 % or 16 MiB
    assert found["workloads"] == len(found["tries"]) >= 3
    for tried in found["tries"]:  # each workload a complete result folder of its own
        meta = json.loads((folder / "glibc" / tried["folder"] / "meta.json").read_text())
        assert meta["status"] == "complete"
        assert tried["passed"] == (tried["limit_bytes"] is None or tried["limit_bytes"] >= passed)
    text = (folder / "find-limit.md").read_text()
    assert f"- glibc needs at least {passed >> 20} MiB for this workload" in text


def test_the_charge_is_read_afresh_every_time(tmp_path):
    """charged() keeps its file open between samples: each call still reads what the kernel
    charges now (a process in the cgroup touches 64 MiB; the charge follows)."""
    from stair_stepper import selfexec

    group = cgroups.Cgroup(WHERE, "afresh", None)
    hold = "input(); x = bytearray(64 << 20); x[::4096] = b'1' * len(x[::4096]); input()"
    child = subprocess.Popen(
        [sys.executable, "-c", hold],
        stdin=subprocess.PIPE,
        text=True,
        **selfexec.child_popen_options(group.procs_file),
    )
    try:
        assert wait_until(lambda: group.pids() == [child.pid], 10)
        before = group.charged()
        assert before is not None
        child.stdin.write("\n")
        child.stdin.flush()
        assert wait_until(lambda: group.charged() - before >= 48 << 20, 10), group.charged()
    finally:
        child.kill()
        child.wait()
        group.remove()
    assert not group.path.exists()


def test_a_limit_hit_is_counted(tmp_path):
    """A process in a cgroup limited to 32 MiB touches 96 MiB: the kernel's OOM killer ends it
    and the reading counts the kill and the times the charge hit the limit (on v1 these are
    counted only on the memory counter: limiting memsw too, with no swap, hid every one)."""
    from stair_stepper import selfexec

    group = cgroups.Cgroup(WHERE, "hits", 32 << 20)
    grow = "x = bytearray(96 << 20); x[::4096] = b'1' * len(x[::4096])"
    child = subprocess.Popen(
        [sys.executable, "-c", grow], **selfexec.child_popen_options(group.procs_file)
    )
    try:
        assert child.wait(30) == -9
        reading = group.read()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        group.remove()
    assert not group.path.exists()
    assert reading["oom_kills"] == 1, reading
    assert reading["limit_hits"] > 0, reading
    assert reading["peak_bytes"] <= 32 << 20, reading


def test_a_cgroup_left_behind_reads_back_its_limit():
    """cleanup takes up a cgroup a run killed hard left with the limits the kernel holds for
    it: v1's "no limit" is the page counter's maximum, not a number of bytes."""
    limited, free = cgroups.Cgroup(WHERE, "found", 32 << 20), cgroups.Cgroup(WHERE, "free", None)
    try:
        again = cgroups.Cgroup.found(WHERE, limited.path)
        assert (again.limit, again.memsw_limited) == (32 << 20, limited.memsw_limited)
        assert cgroups.Cgroup.found(WHERE, free.path).limit is None
        assert again.read().keys() == limited.read().keys()
    finally:
        limited.remove()
        free.remove()
    assert not limited.path.exists() and not free.path.exists()

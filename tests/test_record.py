"""The recorder on real processes: rows flushed as they come, exits handled."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import cli, wait_until

from stair_stepper.load.client import MEMORY, AllocatorPoller
from stair_stepper.record import procfs
from stair_stepper.record.recorder import Recorder
from stair_stepper.record.schema import TRACE_COLUMNS, RowWriter, read_trace

HOLD_50MB = (
    "import time; x = bytearray(50_000_000); x[::4096] = b'1' * len(x[::4096]); time.sleep(%s)"
)


def _rows_so_far(out: Path):
    """The trace as it is now; empty while the recorder has not yet written its header (the
    file exists from the moment it is opened)."""
    from stair_stepper.errors import TraceError
    from stair_stepper.record.schema import Table

    try:
        return read_trace(out)
    except TraceError:
        return Table(out)


def record(*args: str) -> subprocess.CompletedProcess:
    return cli("record", *args, timeout=60)


def test_record_a_command_until_it_exits(tmp_path):
    out = tmp_path / "trace.csv"
    done = record(
        "--out",
        str(out),
        "--interval",
        "0.05",
        "--pss-interval",
        "0",
        "--",
        sys.executable,
        "-c",
        HOLD_50MB % 1.0,
    )
    assert done.returncode == 0, done.stderr
    assert "exited after" in done.stderr and "samples" in done.stderr
    trace = read_trace(out)
    assert trace.warnings == []
    assert len(trace) >= 5
    assert max(trace.column("rss_bytes")) > 45_000_000
    # PSS every sample (--pss-interval 0); the last row may catch the process exiting between
    # its statm and its smaps_rollup read, and then honestly has no PSS
    assert all(v is not None for v in trace.column("pss_bytes")[:-1])
    assert all(a <= b for a, b in zip(trace.column("t_s"), trace.column("t_s")[1:], strict=False))


def test_rows_are_flushed_while_recording_and_kept_when_the_pid_vanishes(tmp_path):
    target = subprocess.Popen([sys.executable, "-c", HOLD_50MB % 3.0])
    out = tmp_path / "trace.csv"
    recorder = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "stair_stepper",
            "record",
            "--pid",
            str(target.pid),
            "--out",
            str(out),
            "--interval",
            "0.05",
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert wait_until(lambda: len(_rows_so_far(out)) >= 5, 30)
        assert recorder.poll() is None
        seen_while_running = len(read_trace(out))  # flushed rows, recorder still running
        target.kill()
        target.wait()
        _, err = recorder.communicate(timeout=20)
    finally:
        target.kill()
        recorder.kill()
    assert recorder.returncode == 0
    assert f"process {target.pid} exited" in err
    assert len(read_trace(out)) >= seen_while_running


def record_a_sleeper(out: Path, *args: str) -> subprocess.CompletedProcess:
    """Record a process that just sleeps, for a bounded time."""
    target = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        return record("--pid", str(target.pid), "--out", str(out), *args)
    finally:
        target.kill()


def test_pss_is_read_at_its_own_slower_pace(tmp_path):
    done = record_a_sleeper(tmp_path / "t.csv", "--duration", "2.5", "--interval", "0.1")
    assert done.returncode == 0
    trace = read_trace(tmp_path / "t.csv")
    pss_times = [
        t
        for t, p in zip(trace.column("t_s"), trace.column("pss_bytes"), strict=True)
        if p is not None
    ]
    # once a second by default, not at 10 Hz: readings at least a second apart (a busy machine
    # may delay one, never bring two closer), samples without PSS between them
    assert len(pss_times) >= 2
    assert all(b - a >= 0.95 for a, b in zip(pss_times, pss_times[1:], strict=False)), pss_times
    assert len(trace) > 2 * len(pss_times)
    assert all(v is not None for v in trace.column("rss_bytes"))


def test_duration_bounds_the_recording(tmp_path):
    done = record_a_sleeper(tmp_path / "t.csv", "--duration", "0.6", "--interval", "0.1")
    assert done.returncode == 0 and "stopped after" in done.stderr
    assert 3 <= len(read_trace(tmp_path / "t.csv")) <= 12


def test_an_appended_recording_runs_its_own_duration_and_says_how_long_it_ran(tmp_path):
    out = tmp_path / "t.csv"
    assert record_a_sleeper(out, "--duration", "1", "--interval", "0.1").returncode == 0
    first = len(read_trace(out))
    more = record_a_sleeper(out, "--append", "--duration", "1", "--interval", "0.1")
    assert more.returncode == 0, more.stderr
    trace = read_trace(out)
    times = trace.column("t_s")[first:]
    added = len(times)
    took = float(more.stderr.split("stopped after ")[1].split()[0])
    # it ran its own second (the deadline was once on the continued trace clock: it stopped at
    # once), sampling at its pace all along: rows over the whole second, one per 0.1 s at
    # most (a busy machine may take fewer, never more)
    assert took >= 0.95, more.stderr
    assert times[-1] - times[0] >= 0.8 and added <= took / 0.1 + 2, (added, took)
    # and it says its own time, not the continued clock's (which went on from the first
    # recording's last row, a second later)
    assert took <= times[-1] - times[0] + 0.5, (took, times[0], times[-1])


def test_bad_targets_are_one_sentence(tmp_path):
    done = record("--pid", "999999999", "--out", str(tmp_path / "t.csv"))
    assert done.returncode == 2 and done.stderr.startswith("stair-stepper: there is no process")
    done = record("--out", str(tmp_path / "t.csv"))
    assert done.returncode == 2 and "either --pid" in done.stderr
    done = record("--pid", "1", "--out", str(tmp_path / "missing" / "t.csv"))
    assert done.returncode == 2 and "cannot write" in done.stderr


def test_allocator_accounting_from_our_service(glibc_server, tmp_path):
    poller = AllocatorPoller(glibc_server.base_url, MEMORY, 0.1)
    poller.start()
    recorder = Recorder(glibc_server.pid, tmp_path / "t.csv", 0.05, allocator=poller)
    recorder.start()
    assert wait_until(lambda: recorder.samples >= 20, 30)
    recorder.stop()
    poller.stop()
    trace = read_trace(tmp_path / "t.csv")
    live = [v for v in trace.column("live_bytes") if v is not None]
    held = [v for v in trace.column("held_bytes") if v is not None]
    assert len(live) >= len(trace) // 2 and all(
        0 < a <= b for a, b in zip(live, held, strict=False)
    )


def test_reader_drops_a_truncated_last_line(tmp_path):
    path = tmp_path / "t.csv"
    with RowWriter(path, TRACE_COLUMNS) as writer:
        for i in range(3):
            writer.write({"t_s": i * 0.1, "wall_time": 1.0, "rss_bytes": 1000 + i, "phase": "x"})
    with open(path, "a") as handle:
        handle.write("0.3000,1.0,x,10")  # a crash mid-row
    trace = read_trace(path)
    assert trace.column("rss_bytes") == [1000, 1001, 1002]
    assert trace.warnings == ["t.csv: dropped a truncated last line."]


# A parent holding ~10 MB that starts two children holding ~30 MB each, writes their
# pids to a file and sleeps: a small process tree like a server with workers.
TREE = """
import subprocess, sys, time
hold = "x = bytearray(30_000_000); x[::4096] = b'1' * len(x[::4096]); import time; time.sleep(60)"
kids = [subprocess.Popen([sys.executable, "-c", hold]) for _ in range(2)]
mine = bytearray(10_000_000); mine[::4096] = b'1' * len(mine[::4096])
open(sys.argv[1], "w").write(" ".join(str(k.pid) for k in kids))
time.sleep(60)
"""


def rows_from(trace) -> list[dict]:
    names = list(trace.columns)
    values = zip(*(trace.column(n) for n in names), strict=True)
    return [row for row in (dict(zip(names, v, strict=True)) for v in values)]


def test_include_children_sums_the_tree_and_says_so(tmp_path):
    pids = tmp_path / "pids"
    parent = subprocess.Popen([sys.executable, "-c", TREE, str(pids)])
    try:
        assert wait_until(lambda: pids.exists() and pids.read_text(), 30)
        kids = [int(p) for p in pids.read_text().split()]
        # the pids are written as the children start: wait until each holds its 30 MB
        assert wait_until(
            lambda: all(procfs.memory(k, rollup=False)["rss_bytes"] > 35_000_000 for k in kids), 30
        )
        tree, alone = tmp_path / "tree.csv", tmp_path / "alone.csv"
        common = ("--pid", str(parent.pid), "--duration", "1.5", "--pss-interval", "0")
        assert record(*common, "--out", str(tree), "--include-children").returncode == 0
        assert record(*common, "--out", str(alone)).returncode == 0
        members = [procfs.memory(p, rollup=False)["rss_bytes"] for p in [parent.pid, *kids]]
    finally:
        for pid in [
            parent.pid,
            *([int(p) for p in pids.read_text().split()] if pids.exists() else []),
        ]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        parent.wait()
    first = tree.read_text().splitlines()[0]
    assert first.startswith("# process tree of pid") and "rss_bytes" in first and "sums" in first
    assert not alone.read_text().startswith("#")
    summed, single = rows_from(read_trace(tree)), rows_from(read_trace(alone))
    assert {r["processes"] for r in summed} == {3}
    assert {r["processes"] for r in single} == {1}
    for row in summed:
        assert row["rss_bytes"] >= row["largest_rss_bytes"] >= 25_000_000
        assert row["pss_bytes"] is not None and row["peak_rss_bytes"] >= row["rss_bytes"] * 0.9
        # the sum is the three members' RSS (give or take what they touched meanwhile)
        assert abs(row["rss_bytes"] - sum(members)) < 0.1 * sum(members)
    assert max(r["rss_bytes"] for r in single) < 0.5 * min(r["rss_bytes"] for r in summed)


def test_a_terminated_record_stops_its_command_and_the_command_s_children(tmp_path):
    pids = tmp_path / "pids"
    out = tmp_path / "t.csv"
    recorder = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "stair_stepper",
            "record",
            "--out",
            str(out),
            "--include-children",
            "--",
            sys.executable,
            "-c",
            TREE,
            str(pids),
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert wait_until(lambda: pids.exists() and pids.read_text(), 30)
        kids = [int(p) for p in pids.read_text().split()]
        # the tree is looked up again with each PSS reading: wait for a row with all three
        assert wait_until(lambda: 3 in _rows_so_far(out).column("processes"), 20)
        recorder.send_signal(signal.SIGTERM)
        _, err = recorder.communicate(timeout=20)
    finally:
        recorder.kill()
    assert recorder.returncode == 128 + signal.SIGTERM
    assert "terminated by SIGTERM" in err and "Traceback" not in err
    for pid in kids:
        assert wait_until(lambda pid=pid: not procfs.alive(pid), 5), f"{pid} outlived record"


def test_a_damaged_cell_is_reported_not_silently_read(tmp_path):
    from stair_stepper.analysis.summary import load_folder

    out = tmp_path / "t.trace.csv"
    with RowWriter(out, TRACE_COLUMNS) as w:
        for i in range(5):
            w.write({"t_s": i / 10, "phase": "baseline", "rss_bytes": 1000 + i})
    out.write_text(out.read_text().replace(",1002,", ",10x2,"))
    data, _, warnings = load_folder(out)
    assert data["t"].trace.column("rss_bytes") == [1000, 1001, None, 1003, 1004]
    assert warnings == ["t.trace.csv: unreadable rss_bytes on line 4."]


def test_pss_keeps_to_its_share_of_a_core(monkeypatch):
    """PSS (smaps_rollup) is read no more often than its own measured cost allows: after each
    reading, the next waits cost / PSS_BUDGET (at least the interval, at most PSS_MOST_S)."""
    from stair_stepper.record import recorder

    monkeypatch.setattr(recorder, "PSS_BUDGET", 0.01)  # a share that makes the pace visible
    held = subprocess.Popen([sys.executable, "-c", HOLD_50MB % 30])
    try:
        sampler = recorder.Sampler(held.pid, pss_interval=0.01)
        assert wait_until(lambda: sampler.sample()["rss_bytes"] > 40_000_000, 10)
        # (when the sampler decided to read, what the reading before it cost): the sampler's
        # own clock, not the test's after sample() returns — on a loaded machine the call that
        # read may be descheduled before it returns, and a gap timed from there looks short
        readings = []
        began = time.monotonic()
        while time.monotonic() - began < 2.0:
            cost = sampler.rollup_cost_s
            row = sampler.sample()
            if row["pss_bytes"] is not None:
                readings.append((sampler._last_rollup, cost))
            time.sleep(0.002)
        sampler.close()
    finally:
        held.kill()
        held.wait()
    assert len(readings) >= 2
    for (before, _), (after, cost) in zip(readings, readings[1:], strict=False):
        due = min(max(0.01, cost / 0.01), recorder.PSS_MOST_S)
        assert after - before >= due, (after - before, cost)

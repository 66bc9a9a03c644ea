"""No orphan, no clash, no unchecked number: every way a run can end, against real processes."""

from __future__ import annotations

import ctypes
import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest
from conftest import TINY, cli, wait_until
from helpers import (
    FAKES,
    assert_no_orphans,
    experiment,
    server_pids,
    start_and_wait_for,
    start_and_wait_for_batch,
    start_and_wait_for_phase,
)

from stair_stepper import cli as stair_cli
from stair_stepper.allocators import native
from stair_stepper.allocators import probe as probes
from stair_stepper.load import batch as drivers
from stair_stepper.record import procfs
from stair_stepper.record.schema import read_trace
from stair_stepper.service.app import Settings, create_app

ROOT = Path(__file__).resolve().parent.parent


MOMENTS = [
    (signal.SIGTERM, "batch 1", ()),
    (signal.SIGHUP, "batch 1", ()),
    # the built-in driver's event loop busy with callbacks (fast requests, many in flight)
    (
        signal.SIGTERM,
        "batch 1",
        ("--sleep-ms", "0", "--iterations", "3000", "--concurrency", "32"),
    ),
    (signal.SIGTERM, "pause 1", ("--pause", "30")),
    (signal.SIGHUP, "pause 1", ("--pause", "30")),
    # one after another: the second variant is being started
    (signal.SIGHUP, "second variant", ("--allocators", "glibc,glibc+arena2", "--sleep-ms", "0")),
]


@pytest.mark.parametrize(
    "signum, moment, extra",
    MOMENTS,
    ids=[f"{s.name}-{m}{'-busy' if '0' in e else ''}" for s, m, e in MOMENTS],
)
def test_sigterm_or_sighup_ends_like_ctrl_c(tmp_path, signum, moment, extra):
    """The main thread only waits: a signal is a request to stop that no library (asyncio
    drops exceptions raised in its callbacks) can swallow, wherever the run is."""
    folder = tmp_path / "r"
    if moment == "second variant":
        process = start_and_wait_for(
            folder, lambda: (folder / "glibc+arena2.server.log").exists(), *extra
        )
    else:
        process = start_and_wait_for_phase(folder, moment, *extra)
    began = time.monotonic()
    process.send_signal(signum)
    _, err = process.communicate(timeout=60)
    assert time.monotonic() - began < 10, err
    assert process.returncode == 128 + signum, err
    name = signal.Signals(signum).name
    assert err.strip().splitlines()[-1] == (
        f"stair-stepper: terminated by {name}; partial results are kept."
    )
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["status"] == "terminated" and meta["signal"] == name
    assert len(read_trace(folder / "glibc.trace.csv")) > 5  # rows kept
    assert_no_orphans(folder)


def test_a_sighup_ignored_at_start_stays_ignored(tmp_path):
    """Under nohup SIGHUP is ignored on purpose: the run must not turn it back into a stop."""
    folder = tmp_path / "r"

    def ignore_hup() -> None:
        signal.signal(signal.SIGHUP, signal.SIG_IGN)

    process = start_and_wait_for(
        folder,
        lambda: (
            (folder / "glibc.trace.csv").exists()
            and "batch 1" in (folder / "glibc.trace.csv").read_text()
        ),
        "--sleep-ms",
        "500",
        preexec_fn=ignore_hup,
    )
    process.send_signal(signal.SIGHUP)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    assert json.loads((folder / "meta.json").read_text())["status"] == "complete"


def test_sigkill_of_the_experiment_takes_its_server_along(tmp_path):
    folder = tmp_path / "r"
    process = start_and_wait_for_batch(folder)
    server = server_pids(folder)[0]
    assert procfs.alive(server)
    assert os.getpgid(server) != os.getpgid(process.pid)  # its own process group
    process.kill()
    process.wait()
    assert wait_until(lambda: not procfs.alive(server), 2.0), f"server {server} outlived SIGKILL"


def _in_process_experiment(tmp_path, monkeypatch, *extra: str) -> tuple[int, Path, str]:
    folder = tmp_path / "r"
    monkeypatch.chdir(ROOT)
    code = stair_cli.main(["experiment", *TINY, "--no-plot", "--out", str(folder), *extra])
    return code, folder, json.loads((folder / "meta.json").read_text())["status"]


def test_an_unexpected_exception_is_crashed_with_one_line(tmp_path, monkeypatch, capsys):
    def broken(*args, **kwargs):
        raise RuntimeError("injected for the test")

    monkeypatch.setattr(drivers, "run_builtin", broken)
    code, folder, status = _in_process_experiment(tmp_path, monkeypatch)
    err = capsys.readouterr().err
    assert code == 1
    assert status == "crashed: RuntimeError: injected for the test"
    last = err.strip().splitlines()[-1]
    assert last.startswith("stair-stepper: the run crashed (RuntimeError: injected for the test)")
    assert "Traceback" not in err
    assert "Traceback" in (folder / "crash.log").read_text()
    assert_no_orphans(folder)


def test_a_crash_in_a_repeat_folder_is_crashed_at_the_top_too(tmp_path, monkeypatch, capsys):
    def broken(*args, **kwargs):
        raise RuntimeError("injected for the test")

    monkeypatch.setattr(drivers, "run_builtin", broken)
    code, folder, status = _in_process_experiment(tmp_path, monkeypatch, "--repeat", "2")
    assert code == 1
    assert status == "crashed: RuntimeError: injected for the test"
    run = json.loads((folder / "run-1" / "meta.json").read_text())
    assert run["status"] == "crashed: RuntimeError: injected for the test"
    assert "Traceback" in (folder / "run-1" / "crash.log").read_text()
    assert not (folder / "run-2").exists()


def test_a_signal_inside_an_asyncio_callback_still_stops_the_run():
    """asyncio drops an exception raised inside one of its callbacks (the old handler raised
    Terminated there, and the run carried on); the Stopper's handler only sets the event."""
    import asyncio

    from stair_stepper.errors import Stopper, Terminated

    async def main() -> None:
        asyncio.get_running_loop().call_soon(os.kill, os.getpid(), signal.SIGTERM)
        await asyncio.sleep(0.2)

    with Stopper() as stopper:
        asyncio.run(main())
        assert stopper.event.is_set()
        with pytest.raises(Terminated):
            stopper.check()


def test_a_dead_recorder_ends_the_run_with_a_fault(tmp_path, monkeypatch, capsys):
    real, calls = procfs.Watch.sample, []

    def failing(watch, rollup=False):
        calls.append(watch.pid)
        if len(calls) > 15:
            raise OSError(5, "Input/output error")  # a full disk is test_full_disk's
        return real(watch, rollup=rollup)

    monkeypatch.setattr(procfs.Watch, "sample", failing)
    code, folder, status = _in_process_experiment(tmp_path, monkeypatch, "--sleep-ms", "1500")
    err = capsys.readouterr().err
    assert code == 1
    assert "the glibc recorder stopped during" in err and "Input/output error" in err
    assert status.startswith("failed: the glibc recorder stopped")
    assert_no_orphans(folder)


def test_parallel_drill_runs_each_load_their_own_server(tmp_path):
    record = tmp_path / "drill-calls"
    record.mkdir()
    folder = tmp_path / "r"
    args = [a if a != "glibc" else "glibc,glibc+arena2" for a in TINY]
    env = {
        "PATH": f"{FAKES}{os.pathsep}{os.environ['PATH']}",
        "FAKE_DRILL_PYTHON": sys.executable,
        "FAKE_DRILL_RECORD": str(record),
    }
    done = experiment(
        *args, "--parallel", "--driver", "drill", "--no-plot", "--out", str(folder), env=env
    )
    assert done.returncode == 0, done.stderr
    meta = json.loads((folder / "meta.json").read_text())
    urls = {v["url"] for v in meta["variants"].values()}
    assert len(urls) == 2
    given = [json.loads(p.read_text()) for p in record.iterdir()]
    assert sorted(g["base"] for g in given) == sorted(urls)  # each drill loaded its own server
    assert len({g["benchmark"] for g in given}) == 2  # from its own file


INVALID = [
    ("experiment", "--interval", "0"),
    ("experiment", "--interval", "nan"),
    ("experiment", "--batches", "-1"),
    ("experiment", "--batches", "0"),
    ("experiment", "--pause", "-2"),
    ("experiment", "--iterations", "0"),
    ("experiment", "--concurrency", "1.5"),
    ("experiment", "--port", "70000"),
    ("experiment", "--poll-interval", "-0.1"),
    ("experiment", "--sleep-ms", "-5"),
    ("experiment", "--offload-threads", "x"),
    ("serve", "--workers", "0"),
    ("serve", "--sleep-ms", "+3"),
    ("serve", "--max-body-bytes", "1e6"),
    ("record", "--interval", "0", "--out", "never.csv", "--pid", "1"),
    ("record", "--duration", "-1", "--out", "never.csv", "--pid", "1"),
    ("record", "--pss-interval", "inf", "--out", "never.csv", "--pid", "1"),
    ("record", "--pid", "0", "--out", "never.csv"),
    ("load", "-b", "benchmark.yml", "--concurrency", "0"),
    ("load", "-b", "benchmark.yml", "--timeout", "0"),
    ("load", "-b", "benchmark.yml", "--iterations", "-3"),
    ("plans", "generate", "--seed", "-1"),
    ("plot", "--step-threshold-mb", "-1", "x"),
]


@pytest.mark.parametrize("args", INVALID, ids=[" ".join(a) for a in INVALID])
def test_an_invalid_number_is_one_sentence_and_exit_2(tmp_path, args):
    done = cli(*args, cwd=tmp_path)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("stair-stepper"), done.stderr
    bad_flag = next(a for a in args if a.startswith("--"))
    assert f"argument {bad_flag}: " in lines[0]
    assert "Traceback" not in done.stderr
    assert list(tmp_path.iterdir()) == []  # nothing started, nothing written


def test_a_public_bind_needs_public(tmp_path):
    done = cli("serve", "--bind", "0.0.0.0:0", cwd=tmp_path)
    assert done.returncode == 2
    assert "is not a loopback address" in done.stderr and "--public" in done.stderr
    done = cli("serve", "--debug-endpoints", cwd=tmp_path)
    assert done.returncode == 2 and "goes with --public" in done.stderr


def test_public_turns_the_debug_endpoints_off(tmp_path):
    from stair_stepper.experiment.launch import start_server

    log = tmp_path / "serve.log"
    with start_server("glibc", extra_args=("--public", "--sleep-ms", "0"), log_path=log) as s:
        with pytest.raises(OSError, match="answered 404"):
            s.get("/debug/memory")
        assert s.get("/healthz")["status"] == "ok"
    assert "/debug/* endpoints off" in log.read_text()


async def _ask(app, path: str, method: str = "GET"):
    client = app.test_client()
    response = await client.open(path, method=method)
    return response.status_code, await response.get_json()


def test_a_missing_allocator_symbol_is_null_not_a_500(monkeypatch):
    """glibc before 2.33 has no mallinfo2. The dynamic linker stands in for such a libc: a real
    library, mapped in every process, that links to nothing and exports none of it."""
    import asyncio

    from stair_stepper.allocators import mapped_libraries

    ld_so = next(p for p in mapped_libraries() if "/ld-linux" in p)
    without = ctypes.CDLL(ld_so)
    monkeypatch.setattr(native, "libc", lambda: without)
    monkeypatch.setattr(probes, "live_allocator", lambda: "glibc")
    app = create_app(Settings(sleep_ms=0))
    status, memory = asyncio.run(_ask(app, "/debug/memory"))
    assert status == 200
    assert memory["live_bytes"] is None and memory["held_bytes"] is None
    assert "mallinfo2" in memory["note"] and memory["rss_bytes"] > 0
    status, trimmed = asyncio.run(_ask(app, "/debug/trim", "POST"))
    assert status == 200 and trimmed["returned_memory"] is None
    assert "malloc_trim" in trimmed["note"]


def test_probe_libraries_are_resolved_once():
    assert native.global_symbols() is native.global_symbols()
    assert native.libc() is native.libc()


def test_record_refuses_an_existing_trace_unless_append(tmp_path):
    out = tmp_path / "trace.csv"
    target = [sys.executable, "-c", "import time; time.sleep(0.6)"]
    first = cli("record", "--out", str(out), "--interval", "0.05", "--", *target)
    assert first.returncode == 0, first.stderr
    rows = len(read_trace(out))
    again = cli("record", "--out", str(out), "--", *target)
    assert again.returncode == 2
    assert again.stderr.strip() == (
        f"stair-stepper: {out} already exists; give --append to continue it, or another --out."
    )
    assert len(read_trace(out)) == rows  # untouched
    more = cli("record", "--out", str(out), "--append", "--interval", "0.05", "--", *target)
    assert more.returncode == 0, more.stderr
    times = read_trace(out).column("t_s")
    assert len(times) > rows
    assert all(a < b for a, b in zip(times, times[1:], strict=False))  # the clock went on


def test_sigterm_stops_side_by_side_variants_without_waiting_for_their_batches(tmp_path):
    """A batch of 20 iterations at 3 s each, two at a time, lasts 30 s: a stop must not wait."""
    folder = tmp_path / "r"
    process = start_and_wait_for_batch(
        folder, "--parallel", "--allocators", "glibc,glibc+arena2", "--iterations", "20"
    )
    began = time.monotonic()
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    took = time.monotonic() - began
    assert process.returncode == 143, err
    assert took < 12, f"took {took:.1f} s to stop"
    assert json.loads((folder / "meta.json").read_text())["status"] == "terminated"
    assert_no_orphans(folder)


def test_a_result_folder_moved_mid_run_is_one_sentence_and_leaves_nothing(tmp_path):
    folder, moved = tmp_path / "r", tmp_path / "elsewhere"
    process = start_and_wait_for_batch(folder)
    pids = server_pids(folder)
    folder.rename(moved)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 1, err
    assert "Traceback" not in err
    assert (
        err.strip()
        .splitlines()[-1]
        .startswith("stair-stepper: the result folder was moved or deleted during the run")
    )
    assert pids and not any(procfs.alive(pid) for pid in pids)

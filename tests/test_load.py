"""The load driver against a real service on loopback, and against misbehaving peers."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import cli

from stair_stepper.errors import UserError
from stair_stepper.experiment.launch import start_server
from stair_stepper.load import drillfile
from stair_stepper.load import driver as load
from stair_stepper.load.command import format_stats
from stair_stepper.load.openloop import fell_behind, schedule

ROOT = Path(__file__).resolve().parent.parent
JSON_KEYS = {
    "total_requests",
    "successful_requests",
    "failed_requests",
    "requests_per_second",
    "started_at",
    "finished_at",
    "requests",
}


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return cli("load", *args, timeout=300)


def test_driver_against_the_real_service(glibc_server, tmp_path):
    out = tmp_path / "load.json"
    done = run_cli(
        "--benchmark",
        str(ROOT / "benchmark.yml"),
        "--iterations",
        "6",
        "--concurrency",
        "3",
        "--base",
        glibc_server.base_url,
        "--stats",
        "--json",
        str(out),
    )
    assert done.returncode == 0, done.stderr
    data = json.loads(out.read_text())
    assert set(data) >= JSON_KEYS
    assert data["total_requests"] == data["successful_requests"] == 24
    assert data["failed_requests"] == 0
    assert set(data["requests"]) == {"tiny", "small", "medium", "large"}
    assert all(r["status_counts"] == {"201": 6} for r in data["requests"].values())
    assert data["finished_at"] > data["started_at"]
    lines = done.stdout.splitlines()
    for name in ("tiny", "large"):
        assert sum(line.startswith(name) for line in lines) == 9
    assert any(line.startswith("Time taken for tests") for line in lines)
    assert any(line.startswith("Requests per second") for line in lines)
    assert "[#" not in done.stderr  # not a terminal: no progress bar


def test_tag_selection_changes_the_total(glibc_server):
    bench = drillfile.read_benchmark(ROOT / "benchmark.yml", iterations=5, concurrency=5)
    items = drillfile.select(bench, "tiny,small")
    result = load.run_load(bench, items, base=glibc_server.base_url)
    assert result.overall.total == 10 and result.overall.successful == 10
    assert set(result.per_item) == {"tiny", "small"}


def test_long_requests_are_recorded_exactly():
    """drill 0.8.3 and 0.9.0 panic once a request takes longer than about 4.2 s; we must not."""
    with start_server("glibc", extra_args=("--sleep-ms", "3800")) as server:
        bench = drillfile.read_benchmark(ROOT / "benchmark.yml", iterations=2, concurrency=2)
        items = drillfile.select(bench, "tiny")
        result = load.run_load(bench, items, base=server.base_url)
    figures = result.overall.figures()
    assert figures["successful_requests"] == 2
    assert 3800 <= figures["median_ms"] < 30_000 and figures["p99_9_ms"] >= 3800
    assert "99.9'th percentile" in format_stats(result)


class _Misbehaving(BaseHTTPRequestHandler):
    def log_message(self, *args):  # keep test output clean
        pass

    def do_POST(self):  # noqa: N802 - http.server's naming
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.server.mode == "500":
            body = b'{"error": "boom"}'
            self.send_response(500)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        else:  # close the connection without answering
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True


@pytest.fixture(params=["500", "close"])
def misbehaving(request):
    """A test peer that fails on purpose; the real service never does this."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Misbehaving)
    server.mode = request.param
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", request.param
    server.shutdown()
    server.server_close()


def test_failures_are_counted_not_raised(misbehaving, tmp_path):
    base, mode = misbehaving
    out = tmp_path / "load.json"
    done = run_cli(
        "--benchmark",
        str(ROOT / "benchmark.yml"),
        "--tags",
        "tiny",
        "--iterations",
        "4",
        "--concurrency",
        "2",
        "--base",
        base,
        "--timeout",
        "10",
        "--json",
        str(out),
        "--quiet",
    )
    assert done.returncode == 0, done.stderr  # like drill: failures are reported, not fatal
    data = json.loads(out.read_text())
    assert data["total_requests"] == 4 and data["failed_requests"] == 4
    if mode == "500":
        assert data["requests"]["tiny"]["status_counts"] == {"500": 4}
    else:
        assert data["requests"]["tiny"]["status_counts"] == {"0": 4}
        assert sum(data["errors"].values()) == 4


def test_connection_refused_is_a_failure_too():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    bench = drillfile.read_benchmark(ROOT / "benchmark.yml", iterations=2, concurrency=1)
    result = load.run_load(bench, drillfile.select(bench, "tiny"), base=f"http://127.0.0.1:{port}")
    assert result.overall.total == 2 and result.overall.successful == 0


def test_non_loopback_targets_are_refused():
    with pytest.raises(UserError, match="not loopback"):
        load.check_loopback("http://192.0.2.1:3000/widgets")
    load.check_loopback("http://localhost:3000/widgets")
    load.check_loopback("http://[::1]:3000/widgets")


def test_cli_errors_are_one_sentence(tmp_path):
    done = run_cli("--benchmark", str(tmp_path / "missing.yml"))
    assert done.returncode == 2
    assert (
        done.stderr.strip().startswith("stair-stepper: plan file")
        and "Traceback" not in done.stderr
    )
    done = run_cli("--benchmark", str(ROOT / "benchmark.yml"), "--tags", "a", "--skip-tags", "a")
    assert done.returncode == 2 and "both name a" in done.stderr


def test_stats_quantiles_on_known_samples():
    samples = load.Samples()
    for value in range(1, 1001):
        samples.add(float(value), 201)
    f = samples.figures()
    assert f["median_ms"] == 500 and f["mean_ms"] == 500.5  # nearest rank, as the others
    assert (f["p99_ms"], f["p99_5_ms"], f["p99_9_ms"], f["max_ms"]) == (990, 995, 999, 1000)
    assert round(f["stdev_ms"], 3) == 288.819  # sample (n-1) standard deviation


def test_progress_bar_shows_on_a_terminal_only(glibc_server):
    import os
    import pty

    try:
        for fd in os.openpty():
            os.close(fd)
    except OSError:
        pytest.skip("no pseudo-terminals here (e.g. a build sandbox)")
    command = [
        sys.executable,
        "-m",
        "stair_stepper",
        "load",
        "--benchmark",
        str(ROOT / "benchmark.yml"),
        "--tags",
        "tiny",
        "--iterations",
        "3",
        "--concurrency",
        "1",
        "--base",
        glibc_server.base_url,
    ]
    pid, fd = pty.fork()
    if pid == 0:  # the child: stderr is the terminal
        os.execv(sys.executable, command)
    output = b""
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        output += chunk
    os.waitpid(pid, 0)
    text = output.decode(errors="replace")
    assert "3/3" in text and "req/s" in text and "0 failed" in text


def test_rampup_delay_starts_when_the_iteration_gets_its_slot(tmp_path):
    """drill's run_iteration (src/benchmark.rs) sleeps (rampup / iterations) * i seconds after
    buffer_unordered hands iteration i a slot, not from the start of the run: with one slot,
    rampup 4 and 2 iterations, iteration 1 waits 2 s after iteration 0 (1 s) has finished."""
    plan = tmp_path / "b.yml"
    plan.write_text(
        "base: http://127.0.0.1:1\niterations: 2\nconcurrency: 1\nrampup: 4\nplan:\n"
        "  - name: w\n    request:\n      url: /widgets\n      method: POST\n"
        "      headers: {Content-Type: application/json}\n"
        "      body: '{\"payload\": 1}'\n"
    )
    bench = drillfile.read_benchmark(plan)
    with start_server("glibc", extra_args=("--sleep-ms", "1000")) as server:
        began = time.monotonic()
        result = load.run_load(bench, bench.items, base=server.base_url)
        took = time.monotonic() - began
    assert result.to_json()["successful_requests"] == 2
    assert took >= 2.9, f"{took:.2f} s: the delay was counted from the start of the run"


def test_the_schedule_is_seeded_and_keeps_its_rate():
    constant = schedule(50, 10.0, "constant")
    assert constant[:3] == [0.0, 0.1, 0.2] and constant[-1] == pytest.approx(4.9)
    poisson = schedule(2000, 10.0, "poisson")
    assert poisson == schedule(2000, 10.0, "poisson")  # the same for every variant
    gaps = [b - a for a, b in zip(poisson, poisson[1:], strict=False)]
    assert 0.095 < sum(gaps) / len(gaps) < 0.105  # mean gap 1/rate
    assert min(gaps) < 0.01 < 0.3 < max(gaps)  # exponential, not even


def test_open_loop_latency_is_the_handler_time_below_capacity():
    """Known answer: 5 requests a second to a 200 ms handler (capacity far above): p50 is
    the handler's time, not time queued behind earlier requests, and the sender on schedule.
    The bounds hold on a busy machine: the handler's 200 ms is a floor no request can beat;
    a request queued behind the one before it would wait up to one more interval (200 ms),
    which the upper bound excludes; the sender's lateness is judged by the one rule the
    reports use (``openloop.fell_behind``: one interval)."""
    with start_server("glibc", extra_args=("--sleep-ms", "200")) as server:
        bench = drillfile.read_benchmark(ROOT / "benchmark.yml", iterations=15, concurrency=1)
        items = drillfile.select(bench, "tiny")
        result = load.run_load(bench, items, base=server.base_url, rate=5.0)
    figures = result.overall.figures()
    assert figures["successful_requests"] == 15
    assert 200 <= figures["median_ms"] < 400, figures
    lag = result.lag_figures()
    assert not fell_behind(lag["lag_max_ms"], 5.0), lag
    # 15 requests due every 0.2 s: the last is due at 2.8 s and ends at most its own time and
    # its sender's lateness later (plus the run's set-up and tear-down, half a second)
    slowest = max(result.overall.durations_ms) / 1000
    assert 2.8 <= result.duration_s <= 2.8 + slowest + lag["lag_max_ms"] / 1000 + 0.5
    assert result.to_json()["rate"] == 5.0


def _slow(result, ms: float) -> int:
    return sum(1 for d in result.overall.durations_ms if d >= ms)


def test_a_stall_shows_in_the_open_loop_tail_not_in_the_closed_loop():
    """Coordinated omission: the server stopped for 1 s (SIGSTOP) in the middle of a batch.
    The open loop keeps sending, so every request due in that second waits and says so; the
    closed loop stops sending while it waits, so only the requests in flight see the stall."""
    import os
    import signal

    def stalled(run) -> load.LoadResult:
        """The run, with the server stopped for 1 s once its 10th answer is in (not at a fixed
        time: on a busy machine the server's start-up may take longer than the timers)."""
        with start_server("glibc", extra_args=("--sleep-ms", "100")) as server:
            bench = drillfile.read_benchmark(ROOT / "benchmark.yml", iterations=40, concurrency=1)
            items = drillfile.select(bench, "tiny")
            resume = threading.Timer(1.0, os.kill, (server.pid, signal.SIGCONT))

            def progress(done: int, total: int, failed: int) -> None:
                if done == 10 and not resume.is_alive():
                    os.kill(server.pid, signal.SIGSTOP)
                    resume.start()

            try:
                return run(bench, items, server.base_url, progress)
            finally:
                resume.cancel()
                os.kill(server.pid, signal.SIGCONT)

    # the same load: 10 requests a second either way (one in flight, 100 ms each)
    opened = stalled(lambda b, i, base, p: load.run_load(b, i, base=base, rate=10.0, progress=p))
    closed = stalled(lambda b, i, base, p: load.run_load(b, i, base=base, progress=p))
    o, c = opened.overall.figures(), closed.overall.figures()
    assert o["successful_requests"] == c["successful_requests"] == 40
    assert o["p99_ms"] >= 1000, o
    assert _slow(opened, 500) >= 5, sorted(opened.overall.durations_ms)
    assert _slow(closed, 500) <= 2, sorted(closed.overall.durations_ms)
    assert _slow(closed, 500) < _slow(opened, 500)

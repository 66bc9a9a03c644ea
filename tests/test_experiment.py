"""The experiment end to end (quick preset, real servers, real jemalloc) and its faults."""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import sys
from pathlib import Path

import pytest
from conftest import (
    TINY,
    assert_images,
    has_library,
    needs_drill,
    needs_jemalloc,
    real_drill,
)
from helpers import (
    FAKES,
    ROOT,
    assert_no_orphans,
    experiment,
    server_pids,
    start_and_wait_for_batch,
)

from stair_stepper.load.openloop import fell_behind
from stair_stepper.record.schema import read_batches, read_trace


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    if not has_library("jemalloc"):
        pytest.skip("libjemalloc2 is not installed")
    folder = tmp_path_factory.mktemp("exp") / "quick"
    done = experiment("--preset", "quick", "--allocators", "glibc,jemalloc", "--out", str(folder))
    assert done.returncode == 0, done.stderr
    return folder, done


@needs_jemalloc
def test_quick_folder_is_complete_and_parseable(quick_run):
    folder, done = quick_run
    names = {p.name for p in folder.iterdir()}
    for variant in ("glibc", "jemalloc"):
        for suffix in (".trace.csv", ".batches.csv", ".server.log", ".trim.json"):
            assert f"{variant}{suffix}" in names
    for name in (
        "meta.json",
        "summary.json",
        "summary.md",
        "memory.png",
        "memory.svg",
        "floors.png",
        "floors.svg",
    ):
        assert name in names
    assert_images(folder)
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["status"] == "complete" and meta["config"]["preset"] == "quick"
    prov = meta["provenance"]
    for key in ("python", "glibc", "kernel", "cpu_count", "git_rev", "packages", "allocators"):
        assert key in prov
    assert prov["allocators"]["jemalloc"]["version"].startswith("5.")
    # Only a run through the flake (its wrappers set the variable) names a nixpkgs revision.
    through_nix = os.environ.get("STAIR_STEPPER_NIXPKGS_REV")
    assert prov["nixpkgs_rev"] == through_nix
    assert prov["nix"] == ("run through the flake" if through_nix else "not run through Nix")
    assert prov["packages"]["quart"] and prov["packages"]["hypercorn"]
    assert meta["variants"]["jemalloc"]["health"]["allocator"] == "jemalloc"
    assert "floors after each pause" in done.stdout and "results:" in done.stdout
    assert_no_orphans(folder)


@needs_jemalloc
def test_batch_markers_align_with_the_trace(quick_run):
    folder, _ = quick_run
    for variant in ("glibc", "jemalloc"):
        trace = read_trace(folder / f"{variant}.trace.csv")
        batches = read_batches(folder / f"{variant}.batches.csv")
        assert batches.column("batch") == [1, 2]
        assert batches.column("requests") == [64, 64] and batches.column("failures") == [0, 0]
        times, phases = trace.column("t_s"), trace.column("phase")
        for k, start, end in zip(
            batches.column("batch"), batches.column("start_s"), batches.column("end_s"), strict=True
        ):
            inside = [t for t, p in zip(times, phases, strict=True) if p == f"batch {k}"]
            assert inside and start - 0.2 <= inside[0] and inside[-1] <= end + 0.2
        assert phases[0] == "baseline"
        assert "trim" in phases or "after trim" in phases
        after = [t for t, p in zip(times, phases, strict=True) if p == "after trim"]
        assert after[-1] - after[0] >= 1.0  # kept recording after the trim
        # The allocator is read once after each idle phase, in a phase of its own, and
        # nothing else reached the service during the pauses.
        for k in (1, 2):
            read = [
                v
                for v, p in zip(trace.column("live_bytes"), phases, strict=True)
                if p == f"read {k}"
            ]
            assert read and read[-1] is not None
        assert batches.column("pause_requests") == [0, 0]
        # --pause auto (the quick preset's, as the main job's): each pause ends once settled
        assert batches.column("settled") == [1, 1]
        assert all(2.0 <= p < 30 for p in batches.column("pause_s"))
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["best_variant"] in ("glibc", "jemalloc")
    for s in summary["variants"].values():
        assert s["floors_settled"] == [True, True] and s["median_floor_bytes"] > 0


@needs_jemalloc
def test_summary_numbers_match_the_csvs(quick_run):
    folder, _ = quick_run
    summary = json.loads((folder / "summary.json").read_text())
    for variant, s in summary["variants"].items():
        with open(folder / f"{variant}.trace.csv") as handle:
            rss = [int(r["rss_bytes"]) for r in csv.DictReader(handle)]
        assert s["peak_bytes"] == max(rss)
        assert len(s["floors_bytes"]) == 2
        assert s["baseline_bytes"] <= s["peak_bytes"]
        assert all(s["baseline_bytes"] <= f <= s["peak_bytes"] for f in s["floors_bytes"])
        trim = json.loads((folder / f"{variant}.trim.json").read_text())
        assert trim["rss_after_bytes"] <= trim["rss_before_bytes"]


COST_KEYS = {
    "throughput_rps",
    "latency_p50_ms",
    "latency_p99_ms",
    "latency_p99_9_ms",
    "cpu_user_ms_per_request",
    "cpu_system_ms_per_request",
    "minor_faults_per_request",
    "major_faults_per_request",
}


@needs_jemalloc
def test_the_price_of_each_variant_is_measured_and_judged(quick_run):
    folder, done = quick_run
    summary = json.loads((folder / "summary.json").read_text())
    for variant, s in summary["variants"].items():
        batches = read_batches(folder / f"{variant}.batches.csv")
        user, system = batches.column("cpu_user_s"), batches.column("cpu_system_s")
        minor = batches.column("minor_faults")
        # the server's own CPU and faults, per batch: a 64-request batch of JSON parsing
        # costs the server far more than nothing and far less than the batch's wall time
        starts, ends = batches.column("start_s"), batches.column("end_s")
        walls = [e - b for b, e in zip(starts, ends, strict=True)]
        assert all(0.05 < u + s_ <= 2 * w for u, s_, w in zip(user, system, walls, strict=True))
        # a warm heap may serve a later batch without touching a new page, but the run
        # as a whole (the first batch grows the heap) faults in far more than 100 pages
        assert all(m >= 0 for m in minor) and sum(minor) > 100
        cost = s["cost"]
        assert set(cost) >= COST_KEYS, cost
        requests = batches.column("requests")
        # each figure per batch, kept as a spread over the batches (what one run is judged by)
        per_batch = cost["cpu_user_ms_per_request"]
        assert per_batch["over"] == "batches" and per_batch["n"] == len(requests)
        assert per_batch["values"] == pytest.approx(
            [u * 1000 / r for u, r in zip(user, requests, strict=True)]
        )
        faults = cost["minor_faults_per_request"]["values"]
        assert faults == pytest.approx([m / r for m, r in zip(minor, requests, strict=True)])
        p50, p99 = cost["latency_p50_ms"], cost["latency_p99_ms"]
        assert p50["median"] <= p99["median"] <= cost["latency_p99_9_ms"]["median"]
        assert cost["failures"] == 0
        trim = json.loads((folder / f"{variant}.trim.json").read_text())
        assert cost["trim_s"] == trim["took_s"] and 0 <= trim["took_s"] < 5
    assert "a closed loop of 16 requests in flight" in summary["mode"]
    md = (folder / "summary.md").read_text()
    assert md.index("## Verdict") < md.index("| variant |")
    assert "jemalloc against glibc:" in md and "p99 latency" in md and "```sh" in md
    assert "judged against the spread of this run's batches" in md
    assert "## Verdict" in done.stdout and "jemalloc against glibc:" in done.stdout
    svg = (folder / "tradeoff.svg").read_text()
    assert "glibc" in svg and "ms CPU/request" in svg and "Memory against latency" in svg
    assert (folder / "tradeoff.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_an_open_loop_experiment_keeps_its_rate_and_says_so(tmp_path):
    folder = tmp_path / "r"
    done = experiment(*TINY, "--iterations", "8", "--rate", "4", "--no-plot", "--out", str(folder))
    assert done.returncode == 0, done.stderr
    batches = read_batches(folder / "glibc.batches.csv")
    assert batches.column("rate") == [4.0]
    assert not fell_behind(batches.column("lag_max_ms")[0], 4.0)  # the sender kept its schedule
    # 8 requests due every 0.25 s: at least 1.75 s however fast the server answers
    assert batches.column("end_s")[0] - batches.column("start_s")[0] >= 1.75
    summary = json.loads((folder / "summary.json").read_text())
    assert "an open loop at 4 requests a second (constant arrivals)" in summary["mode"]
    assert not any("fell behind" in w for w in summary["warnings"])


def test_rate_with_real_drill_is_one_sentence(tmp_path):
    done = experiment(*TINY, "--driver", "drill", "--rate", "5", "--out", str(tmp_path / "r"))
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "drill has no rate mode" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "r").exists()


def test_an_existing_result_folder_is_refused(tmp_path):
    done = experiment(*TINY, "--out", str(tmp_path))
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"stair-stepper: result folder {tmp_path} already exists; choose another --out."
    )


def test_a_taken_port_is_one_sentence_and_leaves_nothing_running(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = experiment(*TINY, "--port", str(port), "--out", str(tmp_path / "r"))
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert f"port {port} on 127.0.0.1 is already in use" in last and "Partial results" in last
    assert "Traceback" not in done.stderr
    assert json.loads((tmp_path / "r" / "meta.json").read_text())["status"].startswith("failed")


def test_a_server_that_dies_mid_run(tmp_path):
    folder = tmp_path / "r"
    process = start_and_wait_for_batch(folder)
    os.kill(server_pids(folder)[0], signal.SIGKILL)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 1
    assert "the glibc server died during batch 1 (exit code -9)" in err
    assert "Traceback" not in err
    assert len(read_trace(folder / "glibc.trace.csv")) > 5  # rows kept
    assert_no_orphans(folder)


def test_ctrl_c_stops_cleanly_and_keeps_the_rows(tmp_path):
    folder = tmp_path / "r"
    process = start_and_wait_for_batch(folder)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130
    assert err.strip().splitlines()[-1] == "stair-stepper: interrupted; partial results are kept."
    assert json.loads((folder / "meta.json").read_text())["status"] == "interrupted"
    assert len(read_trace(folder / "glibc.trace.csv")) > 5
    assert_no_orphans(folder)


def test_drill_driver_without_drill_is_refused(tmp_path):
    env = {"PATH": os.path.dirname(sys.executable)}
    done = experiment(*TINY, "--driver", "drill", "--out", str(tmp_path / "r"), env=env)
    assert done.returncode == 2 and "needs drill on PATH" in done.stderr
    assert not (tmp_path / "r").exists()


def _fake_drill_env(**extra: str) -> dict:
    """tests/fakes/drill: for what real drill cannot do on demand (fail in a chosen way)."""
    path = f"{FAKES}{os.pathsep}{os.environ['PATH']}"
    return {"PATH": path, "FAKE_DRILL_PYTHON": sys.executable, **extra}


def _real_drill_env(tmp_path: Path) -> dict:
    """Real drill on PATH under the name the experiment looks for."""
    folder = tmp_path / "drill-bin"
    folder.mkdir()
    (folder / "drill").symlink_to(real_drill())
    return {"PATH": f"{folder}{os.pathsep}{os.environ['PATH']}"}


@needs_drill
def test_the_drill_driver_path(tmp_path):
    folder = tmp_path / "r"
    env = _real_drill_env(tmp_path)
    done = experiment(*TINY, "--driver", "drill", "--out", str(folder), env=env)
    assert done.returncode == 0, done.stderr
    batches = read_batches(folder / "glibc.batches.csv")
    assert batches.column("requests") == [4] and batches.column("failures") == [0]
    assert (folder / "glibc.drill-benchmark.yml").exists()
    assert json.loads((folder / "meta.json").read_text())["config"]["driver"] == "drill"


@needs_drill
def test_drills_histogram_panic_is_named(tmp_path):
    """Real drill 0.8.3/0.9.0 panic at --stats time after a request slower than ~4.2 s."""
    folder = tmp_path / "r"
    args = [*TINY, "--iterations", "1", "--concurrency", "1", "--sleep-ms", "4600"]
    done = experiment(
        *args, "--driver", "drill", "--out", str(folder), env=_real_drill_env(tmp_path)
    )
    if done.returncode == 0:
        pytest.skip("this drill has the histogram bound raised (the flake's patched drill)")
    assert done.returncode == 1
    assert "panicked computing its statistics (exit 101)" in done.stderr
    assert "--driver builtin" in done.stderr
    assert_no_orphans(folder)


def test_a_driver_that_fails(tmp_path):
    folder = tmp_path / "r"
    env = _fake_drill_env(FAKE_DRILL_EXIT="3")
    done = experiment(*TINY, "--driver", "drill", "--out", str(folder), env=env)
    assert done.returncode == 1
    assert "the load driver failed in batch 1: drill exited with code 3" in done.stderr
    assert_no_orphans(folder)


@needs_jemalloc
def test_parallel_runs_side_by_side(tmp_path):
    folder = tmp_path / "r"
    args = [a if a != "glibc" else "glibc,jemalloc" for a in TINY]
    done = experiment(*args, "--parallel", "--out", str(folder), "--no-plot")
    assert done.returncode == 0, done.stderr
    t_glibc = read_trace(folder / "glibc.trace.csv").column("wall_time")
    t_jemalloc = read_trace(folder / "jemalloc.trace.csv").column("wall_time")
    assert t_glibc[0] < t_jemalloc[-1] and t_jemalloc[0] < t_glibc[-1]  # overlapping in time
    assert_no_orphans(folder)


def test_unknown_or_missing_allocators_fail_before_anything_starts(tmp_path):
    done = experiment(
        "--preset", "quick", "--allocators", "glibc,hoard", "--out", str(tmp_path / "a")
    )
    assert done.returncode == 2 and "unknown allocator 'hoard'" in done.stderr
    missing = {"STAIR_STEPPER_JEMALLOC": "/nope/libjemalloc.so"}
    done = experiment(
        "--preset", "quick", "--allocators", "jemalloc", "--out", str(tmp_path / "b"), env=missing
    )
    assert done.returncode == 2
    assert (
        done.stderr.strip()
        .splitlines()[-1]
        .startswith("stair-stepper: STAIR_STEPPER_JEMALLOC points at /nope/libjemalloc.so")
    )
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_unknown_preset_and_bad_tags(tmp_path):
    done = experiment("--preset", "nope", "--out", str(tmp_path / "a"))
    assert done.returncode == 2 and "--preset: invalid choice: 'nope'" in done.stderr
    done = experiment(*TINY, "--tags", "huge", "--out", str(tmp_path / "b"))
    assert done.returncode == 2 and "no plan item matches" in done.stderr


def test_the_default_run_is_what_the_docs_say_it_is():
    """docs/experiments.md: `./dev run` is glibc, jemalloc and jemalloc+bg side by side, 64
    requests in flight, all four body sizes, 8 batches of 256 requests, pauses until RSS
    settles; the seed preset 2500 requests a batch of the medium body. The dry run resolves
    the preset and the workload file as a run does, and says so before anything starts."""
    done = experiment("--dry-run")
    assert done.returncode == 0, done.stderr
    plan = done.stdout.splitlines()[0]
    assert plan == (
        "plan: 3 variants (glibc, jemalloc, jemalloc+bg) side by side; 8 batches of 256 requests "
        "(64 iterations × 4 items: tiny, small, medium, large), 64 in flight; pauses until RSS "
        "settles (20–30 s each, at least 20 s for the allocator's decay)"
    )
    assert len(done.stdout.splitlines()) == 2  # built-in variants are not written out
    seed = experiment("--dry-run", "--preset", "seed").stdout
    assert "4 batches of 2500 requests (2500 iterations × 1 item: medium), 16 in flight" in seed


def test_the_plan_writes_out_each_variant_of_your_own():
    own = "t5=glibc trim_every=5 MALLOC_ARENA_MAX=2"
    done = experiment("--dry-run", "--allocators", "glibc", "--variant", own)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[2:] == [f"variant {own}"]


def test_a_benchmark_file_keeps_the_preset_s_batch_unless_asked():
    """benchmark.yml says 2,500 iterations: given with --benchmark, the default preset still
    sends its own 64 a batch (10,000 requests a batch took 12 minutes); --batch-from-file
    takes the file's."""
    own = experiment("--dry-run", "--benchmark", "benchmark.yml").stdout
    assert "8 batches of 256 requests (64 iterations × 4 items" in own
    assert "64 in flight" in own
    whole = experiment("--dry-run", "--benchmark", "benchmark.yml", "--batch-from-file").stdout
    assert "8 batches of 10000 requests (2500 iterations × 4 items" in whole
    assert "16 in flight" in whole
    assert "duration: at least" in whole.splitlines()[1]


def test_a_run_prints_its_plan_before_the_first_request(tmp_path):
    done = experiment(*TINY, "--no-plot", "--out", str(tmp_path / "r"))
    assert done.returncode == 0, done.stderr
    first = done.stderr.splitlines()[:3]
    assert first[0].startswith("stair-stepper: plan: 1 variant (glibc) one after another")
    assert first[1].startswith("stair-stepper: duration: at least")
    assert "serving on" not in "\n".join(first)


def test_every_preset_is_a_benchmark_drill_would_run():
    from stair_stepper.experiment.presets import PRESETS
    from stair_stepper.load import drillfile

    for name, c in PRESETS.items():
        load = c.load
        bench = drillfile.read_benchmark(
            ROOT / load.benchmark, iterations=load.iterations, concurrency=load.concurrency
        )
        assert drillfile.select(bench, load.tags, None), name


def test_idle_traffic_is_the_only_traffic_in_a_pause(tmp_path):
    """--idle-rps R: about R requests a second reach the service during a pause, and they are
    all it gets (the service's own count, read once after each pause); at 0 it gets none."""
    folder = tmp_path / "r"
    args = [*TINY, "--batches", "2", "--pause", "2", "--idle-rps", "5", "--no-plot"]
    done = experiment(*args, "--out", str(folder))
    assert done.returncode == 0, done.stderr
    batches = read_batches(folder / "glibc.batches.csv")
    for unasked, sent, pause in zip(
        batches.column("pause_requests"),
        batches.column("idle_requests_sent"),
        batches.column("pause_s"),
        strict=True,
    ):
        assert unasked == sent  # nothing but the idle traffic, exactly
        # about 5 a second: never ahead of its schedule (one at the start, then one each 0.2 s),
        # and on a busy machine starting or stopping at most a second off the pause's edges
        assert 5 * (pause - 1) <= sent <= 5 * pause + 1, (sent, pause)
    assert json.loads((folder / "meta.json").read_text())["config"]["idle_rps"] == 5

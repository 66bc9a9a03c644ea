"""Variants of one's own: settings checked before anything starts, read back in the measured
process, swept, and the maintenance strategies (periodic trim, worker recycling)."""

from __future__ import annotations

import json
import os

import pytest
from conftest import SHORT, cli, has_library, needs_jemalloc
from helpers import ROOT, assert_no_orphans, experiment

from stair_stepper.allocators import settings
from stair_stepper.errors import UserError
from stair_stepper.experiment.presets import PRESETS
from stair_stepper.record.schema import read_batches, read_trace


@needs_jemalloc
def test_each_variant_runs_with_its_settings_read_back_from_its_own_process(tmp_path):
    folder = tmp_path / "r"
    done = experiment(
        "--preset",
        "quick",
        "--variant",
        "je-eager=jemalloc MALLOC_CONF=dirty_decay_ms:0,muzzy_decay_ms:0",
        "--variant",
        "arena1=glibc MALLOC_ARENA_MAX=1",
        "--allocators",
        "glibc",
        "--no-plot",
        "--out",
        str(folder),
    )
    assert done.returncode == 0, done.stderr
    meta = json.loads((folder / "meta.json").read_text())
    assert list(meta["variants"]) == ["glibc", "je-eager", "arena1"]
    eager = meta["variants"]["je-eager"]["settings"]
    assert eager["given"] == {"MALLOC_CONF": "dirty_decay_ms:0,muzzy_decay_ms:0"}
    decay = eager["read_back"]["values"]["MALLOC_CONF dirty_decay_ms"]
    assert decay == {"given": "0", "read": 0, "same": True, "how": "mallctl opt.dirty_decay_ms"}
    arena = meta["variants"]["arena1"]["settings"]["read_back"]["values"]["glibc.malloc.arena_max"]
    assert int(arena["read"], 0) == 1 and arena["same"]
    assert eager["described"] == "jemalloc MALLOC_CONF=dirty_decay_ms:0,muzzy_decay_ms:0"
    summary = (folder / "summary.md").read_text()
    assert "- je-eager: `jemalloc MALLOC_CONF=dirty_decay_ms:0,muzzy_decay_ms:0`" in summary
    assert_no_orphans(folder)


MISTAKES = [
    ("x=jemalloc MALLOC_CONF=dirty_decay:0", "jemalloc refused MALLOC_CONF: Invalid conf pair"),
    ("x=jemalloc MALLOC_CONF=tcache_max:99999999999", "does not take MALLOC_CONF tcache_max"),
    ("x=glibc GLIBC_TUNABLES=glibc.malloc.bogus=1", "glibc.malloc.bogus is not a tunable"),
    ("x=glibc MALLOC_ARENA_MAX=0", "glibc does not take MALLOC_ARENA_MAX=0"),
    ("x=glibc MALLOC_CONF=narenas:1", "MALLOC_CONF is not a setting glibc reads"),
    ("x=jemalloc MIMALLOC_PURGE_DELAY=0", "MIMALLOC_PURGE_DELAY is not a setting jemalloc reads"),
    ("x=glibc PYTHONMALLOC=fast", "PYTHONMALLOC=fast is not one of this Python's allocators"),
    ("x/y=glibc", "variant name 'x/y' is not allowed"),
    ("x=hoard", "unknown allocator 'hoard'"),
    ("x=glibc trim_every=-1", "trim_every must be greater than 0"),
    ("x=glibc flavour=1", "'flavour' is not a maintenance strategy"),
]


@pytest.mark.parametrize("spec, words", MISTAKES, ids=[m[0] for m in MISTAKES])
def test_a_setting_the_allocator_does_not_read_or_take_is_one_sentence(tmp_path, spec, words):
    allocator = spec.partition("=")[2].split()[0] if "=" in spec else ""
    if allocator in ("jemalloc", "mimalloc") and not has_library(allocator):
        pytest.skip(f"{allocator} is not installed")
    done = experiment(
        *SHORT,
        "--no-plot",
        "--allocators",
        "glibc",
        "--variant",
        spec,
        "--out",
        str(tmp_path / "never"),
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "never").exists()  # no result folder claims the setting


@pytest.mark.skipif(not has_library("mimalloc"), reason="libmimalloc2.0 is not installed")
def test_mimalloc_options_are_this_mimalloc_s_and_read_back():
    var = settings.parse("mi=mimalloc MIMALLOC_VERBOSE=0 MIMALLOC_ARENA_EAGER_COMMIT_NOPE=1")
    with pytest.raises(UserError, match="MIMALLOC_ARENA_EAGER_COMMIT_NOPE is not an option"):
        settings.checked(var)
    known = settings.parse("mi=mimalloc MIMALLOC_SHOW_ERRORS=1")
    probe = settings.checked(known)
    spec = json.loads(settings.for_child(known, probe)[settings.ENV_SETTINGS])
    assert spec["indexes"]["show_errors"] == 0 and spec["expected"]["show_errors"] == 1


def test_variants_from_a_file_and_a_sweep_with_commas_in_its_values(tmp_path):
    path = tmp_path / "variants.yml"
    path.write_text("arena2: 'glibc MALLOC_ARENA_MAX=2'\ntrim: {allocator: glibc, trim_every: 5}\n")
    file_variants = settings.load_file(str(path))
    assert [v.name for v in file_variants] == ["arena2", "trim"]
    assert file_variants[1].strategy == {"trim_every": 5.0}
    variants, sweep = settings.expand_sweep(
        "decay=jemalloc MALLOC_CONF=background_thread:true,dirty_decay_ms:0|"
        "background_thread:true,dirty_decay_ms:1000"
    )
    assert [v.env["MALLOC_CONF"] for v in variants] == [
        "background_thread:true,dirty_decay_ms:0",
        "background_thread:true,dirty_decay_ms:1000",
    ]
    assert sweep["var"] == "MALLOC_CONF" and len(set(sweep["variants"])) == 2
    assert all(settings.NAME.fullmatch(n) for n in sweep["variants"])
    with pytest.raises(UserError, match="exactly one|one VAR with"):
        settings.expand_sweep("x=glibc MALLOC_ARENA_MAX=1|2 MALLOC_ARENA_TEST=1|2")


def test_a_sweep_is_laid_out_along_its_axis(tmp_path):
    folder = tmp_path / "r"
    done = experiment(
        *SHORT,
        "--allocators",
        "glibc",
        "--sweep",
        "arena=glibc MALLOC_ARENA_MAX=1|2",
        "--out",
        str(folder),
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads((folder / "summary.json").read_text())
    (sweep,) = summary["sweeps"]
    assert sweep["var"] == "MALLOC_ARENA_MAX"
    assert [r["variant"] for r in sweep["rows"]] == ["arena-1", "arena-2"]
    assert all(r["median_floor_bytes"]["median"] > 0 for r in sweep["rows"])  # spreads of one
    assert "Sweep `arena` over MALLOC_ARENA_MAX" in (folder / "summary.md").read_text()
    assert (folder / "sweep-arena.png").exists() and (folder / "sweep-arena.svg").exists()


def test_a_periodic_trim_is_made_and_timed_by_the_served_process(tmp_path):
    folder = tmp_path / "r"
    done = experiment(
        *SHORT,
        "--no-plot",
        "--batches",
        "2",
        "--variant",
        "trim=glibc trim_every=0.5",
        "--allocators",
        "glibc",
        "--out",
        str(folder),
    )
    assert done.returncode == 0, done.stderr
    trims = read_batches(folder / "trim.batches.csv").column("trims")
    spent = read_batches(folder / "trim.batches.csv").column("trims_s")
    assert trims[0] >= 2 and trims[1] > trims[0] and spent[1] > 0  # every 0.5 s, counting on
    assert read_batches(folder / "glibc.batches.csv").column("trims") == [None, None]
    summary = json.loads((folder / "summary.json").read_text())["variants"]["trim"]
    assert summary["periodic_trim"]["count"] == trims[1] and summary["periodic_trim"]["share"] > 0


def test_recycled_workers_are_recorded_as_a_tree_and_not_asked_as_one(tmp_path):
    folder = tmp_path / "r"
    done = experiment(
        *SHORT,
        "--no-plot",
        "--iterations",
        "24",
        "--allocators",
        "glibc",
        "--variant",
        "recycle=glibc workers=2 max_requests=8",
        "--out",
        str(folder),
    )
    assert done.returncode == 0, done.stderr
    trace = read_trace(folder / "recycle.trace.csv")
    assert max(trace.column("processes")) >= 3  # the master and two workers
    assert all(v is None for v in trace.column("live_bytes"))  # not one worker's numbers
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["variants"]["recycle"]["trim"] == "not measured"
    assert_no_orphans(folder)


def test_serve_takes_a_variant_written_out():
    done = cli(
        "serve", "--allocator", "x=glibc MALLOC_ARENA_MAX=0", "--bind", "127.0.0.1:0", cwd=ROOT
    )
    assert done.returncode == 2
    assert done.stderr.strip().startswith("stair-stepper: variant x: glibc does not take")


# --- where the memory sits: layers, arenas, the diagnosis ----------------------------------


def _leaky_benchmark(tmp_path):
    """Each request posts about 600 kB, which tests/apps/leaky.py keeps for ever: 24 MB a batch."""
    bench = tmp_path / "leaky.yml"
    body = '{"payload": "' + "x" * 600_000 + '"}'
    bench.write_text(
        "base: 'http://localhost:9'\niterations: 40\nconcurrency: 4\nplan:\n"
        f"  - name: keep\n    request:\n      url: /keep\n      method: POST\n"
        f"      body: '{body}'\n"
    )
    return bench


def _summary(folder):
    return json.loads((folder / "summary.json").read_text())["variants"]


def test_an_app_that_keeps_every_body_is_diagnosed_a_leak(tmp_path):
    folder = tmp_path / "r"
    done = experiment(
        "--preset",
        "quick",
        "--batches",
        "3",
        "--app",
        "apps.leaky:app",
        "--app-dir",
        str(ROOT / "tests"),
        "--benchmark",
        str(_leaky_benchmark(tmp_path)),
        "--batch-from-file",  # its own 24 MB a batch
        "--allocators",
        "glibc",
        "--no-plot",
        "--out",
        str(folder),
    )
    assert done.returncode == 0, done.stderr
    diagnosis = _summary(folder)["glibc"]["diagnosis"]
    assert diagnosis["verdict"] == "leak", diagnosis
    live = diagnosis["live_floors_bytes"]
    assert all(b - a > 16 * 2**20 for a, b in zip(live, live[1:], strict=False))  # 24 MB a batch


@needs_jemalloc
def test_the_widget_app_s_diagnoses_and_layers_under_the_default_load(tmp_path):
    """The default preset, shortened to two batches: glibc fragments, plain jemalloc holds its
    free space as pages waiting for decay, jemalloc with its background thread returns it."""
    folder = tmp_path / "r"
    done = experiment("--batches", "2", "--no-plot", "--out", str(folder))
    assert done.returncode == 0, done.stderr
    variants = _summary(folder)
    verdicts = {name: v["diagnosis"]["verdict"] for name, v in variants.items()}
    assert verdicts == {
        "glibc": "fragmentation",
        "jemalloc": "lazy-return",
        "jemalloc+bg": "returned",
    }, {n: v["diagnosis"]["why"] for n, v in variants.items()}
    glibc = variants["glibc"]["layers"]
    assert glibc["free_kinds"]["free_bin_bytes"] > glibc["free_held_bytes"] / 2  # in the bins
    assert variants["jemalloc"]["layers"]["free_kinds"]["dirty_bytes"] > 0
    for v in variants.values():
        layer = v["layers"]
        assert (
            layer["allocator_live_bytes"]
            + layer["free_held_bytes"]
            + (layer["allocator_metadata_bytes"] or 0)
            + layer["not_heap_bytes"]
            == layer["rss_bytes"]
        )  # the layers add up to RSS
    # the main arena and one per offload thread, up to glibc's cap of 8 arenas a core
    arenas = min(1 + PRESETS["contrast"].service.offload_threads, 8 * os.cpu_count())
    assert variants["glibc"]["arenas"] == arenas
    assert len(variants["glibc"]["arena_bytes_by_floor"][-1]) == arenas
    summary = (folder / "summary.md").read_text()
    assert "Where the memory sits at the last floor" in summary and "**fragmentation**" in summary


def test_threads_make_arenas_and_malloc_arena_max_bounds_them(tmp_path):
    folder = tmp_path / "r"
    done = experiment(
        *SHORT,
        "--no-plot",
        "--offload-threads",
        "8",
        "--allocators",
        "glibc",
        "--variant",
        "arena1=glibc MALLOC_ARENA_MAX=1",
        "--out",
        str(folder),
    )
    assert done.returncode == 0, done.stderr
    alone = tmp_path / "alone"
    done = experiment(
        *SHORT, "--no-plot", "--offload-threads", "0", "--allocators", "glibc", "--out", str(alone)
    )
    assert done.returncode == 0, done.stderr
    threaded, single = _summary(folder), _summary(alone)
    assert threaded["glibc"]["arenas"] > single["glibc"]["arenas"]
    assert threaded["arena1"]["arenas"] == 1


def test_trace_python_reports_python_s_traced_bytes_and_its_own_cost(tmp_path):
    folder = tmp_path / "r"
    done = experiment(
        *SHORT, "--no-plot", "--allocators", "glibc", "--trace-python", "--out", str(folder)
    )
    assert done.returncode == 0, done.stderr
    layer = _summary(folder)["glibc"]["layers"]
    assert 0 < layer["python_traced_bytes"] < layer["allocator_live_bytes"]
    assert layer["tracemalloc_bytes"] > 0
    assert "tracemalloc (--trace-python) held" in (folder / "summary.md").read_text()
    plain = tmp_path / "plain"
    assert (
        experiment(*SHORT, "--no-plot", "--allocators", "glibc", "--out", str(plain)).returncode
        == 0
    )
    assert _summary(plain)["glibc"]["layers"]["python_traced_bytes"] is None  # off by default

"""Analysis on synthetic traces with known answers, and on damaged input."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import assert_images, cli
from helpers import MB, synthetic_repeat, synthetic_variant

from stair_stepper.analysis import markdown, read, repeats, verdict
from stair_stepper.analysis import summary as numbers


def test_known_answers(synthetic):
    s = numbers.summarise(synthetic)
    g, j = s["variants"]["glibc"], s["variants"]["jemalloc"]
    assert g["baseline_bytes"] == 50 * MB and g["peak_bytes"] == 400 * MB
    assert g["floors_bytes"] == [200 * MB, 260 * MB, 262 * MB]
    assert g["last_floor_bytes"] == 262 * MB and g["median_floor_bytes"] == 260 * MB
    assert g["after_trim_bytes"] == 60 * MB and g["reclaimable_bytes"] == 202 * MB
    assert g["slope_bytes_per_batch"] == pytest.approx(31 * MB)
    # Floor to floor: 200→260 rises by more than 16 MB, 260→262 does not; the baseline (50→200)
    # is the load arriving, not a step.
    assert g["steps"] == 1
    assert j["steps"] == 0 and j["slope_bytes_per_batch"] == 0
    assert s["best_variant"] == "jemalloc"
    assert g["ratio_to_best"] == pytest.approx(2.6) and j["ratio_to_best"] == 1.0
    assert g["last_floor_ratio_to_best"] == pytest.approx(2.62)
    assert g["last_floor_live_bytes"] == 30 * MB and g["last_floor_held_bytes"] == 262 * MB
    assert numbers.summarise(synthetic, step_threshold=100 * MB)["variants"]["glibc"]["steps"] == 0
    assert g["floors_settled"] == [True, True, True] and s["warnings"] == []


def test_an_unsettled_pause_is_flagged_and_a_settled_one_is_not(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    synthetic_variant(folder, "jemalloc", 50, [120, 300, 100], 60, 400, falling=(2,))
    s = numbers.summarise(folder)
    v = s["variants"]["jemalloc"]
    assert v["floors_settled"] == [True, False, True]
    # The median of the settled 120 and 100 only: with the unsettled 300 it would be 120.
    assert v["median_floor_bytes"] == 110 * MB
    assert any("pause 2" in w and "had not settled" in w for w in s["warnings"])
    md = markdown.markdown(s)
    assert "| 120 | 300* | 100 |" in md and "marked * comes from a pause" in md


def test_requests_the_experiment_did_not_send_are_a_warning(synthetic):
    batches = synthetic / "glibc.batches.csv"
    lines = batches.read_text().splitlines()
    column = lines[0].split(",").index("pause_requests")
    cells = lines[2].split(",")
    cells[column] = "3"
    batches.write_text("\n".join([*lines[:2], ",".join(cells), *lines[3:]]) + "\n")
    s = numbers.summarise(synthetic)
    assert s["variants"]["glibc"]["unasked_pause_requests"] == [3]
    (warning,) = [w for w in s["warnings"] if "did not send" in w]
    assert warning.startswith("glibc: requests the experiment did not send reached the service")
    meta = json.loads((synthetic / "meta.json").read_text())
    meta["config"]["idle_rps"] = 1.0  # asked-for idle traffic is no disturbance
    (synthetic / "meta.json").write_text(json.dumps(meta))
    assert not [w for w in numbers.summarise(synthetic)["warnings"] if "did not send" in w]


def test_floors_across_runs_of_different_lengths_keep_their_columns(tmp_path):
    """A 1-batch run's after-trim floor belongs under "after trim", not under a 3-batch run's
    "after batch 2" (which only the longer run has)."""
    long, short = tmp_path / "long", tmp_path / "short"
    for folder, floors in ((long, [200, 600, 620]), (short, [210])):
        folder.mkdir()
        synthetic_variant(folder, "glibc", 50, floors, 70, 700)
    summaries = [numbers.summarise(long), numbers.summarise(short)]
    labels, columns = repeats.floor_columns(summaries)
    assert labels == ["baseline", "after batch 1", "after batch 2", "after batch 3", "after trim"]
    assert columns["glibc"] == [
        [50 * MB, 50 * MB],
        [200 * MB, 210 * MB],
        [600 * MB],
        [620 * MB],
        [70 * MB, 70 * MB],
    ]
    from stair_stepper.analysis import figures_floors

    fig = figures_floors.floors_runs_figure(summaries)
    medians = [line for line in fig.axes[0].get_lines() if line.get_marker() == "o"][0]
    assert list(medians.get_ydata()) == [50, 205, 600, 620, 70]
    band = fig.axes[0].collections[0].get_paths()[0].vertices[:, 1]
    assert band.max() == 620 and 70 in band


def test_assert_images_refuses_a_blank_figure(tmp_path):
    from stair_stepper.analysis.figures import COLORS, new_figure, save

    fig, ax = new_figure(figsize=(10, 5))
    ax.set_title("an empty axis")
    save(fig, tmp_path, "blank")
    with pytest.raises(AssertionError):
        assert_images(tmp_path, ("blank",))
    fig, ax = new_figure(figsize=(10, 5))
    ax.plot([0, 1, 2], [1, 3, 2], color=COLORS[0], lw=2)
    save(fig, tmp_path, "drawn")
    assert_images(tmp_path, ("drawn",))


def test_repeats_are_median_with_min_and_max(tmp_path):
    folder = tmp_path / "rep"
    synthetic_repeat(folder)
    result = repeats.summarise_repeats(folder)
    median_floor = result["variants"]["glibc"]["median_floor_bytes"]
    assert (median_floor["median"], median_floor["min"], median_floor["max"]) == (
        260 * MB,
        250 * MB,
        280 * MB,
    )
    ratio = result["ratios"]["glibc/jemalloc"]
    assert (ratio["median"], ratio["min"], ratio["max"], ratio["n"]) == (2.6, 2.5, 2.8, 3)
    assert any("varies" in w and "glibc" in w for w in result["warnings"])  # 250–280 > 10 %
    md = markdown.markdown_repeats(result)
    assert "| glibc | 50 (50–50) | 400 (400–400) | 260 (250–280) |" in md
    assert "glibc/jemalloc, median settled floor: 2.60 (2.50–2.80, 3 runs)" in md


def test_summary_json_has_the_fixed_shape(synthetic):
    markdown.write(synthetic, numbers.summarise(synthetic))
    data = json.loads((synthetic / "summary.json").read_text())
    keys = {
        "baseline_bytes",
        "peak_bytes",
        "floors_bytes",
        "last_floor_bytes",
        "median_floor_bytes",
        "after_trim_bytes",
        "reclaimable_bytes",
        "slope_bytes_per_batch",
        "steps",
        "ratio_to_best",
    }
    for variant in data["variants"].values():
        assert keys <= set(variant)
    md = (synthetic / "summary.md").read_text()
    assert "| glibc | 50 | 400 | 200 | 260 | 262 | 60 | 202 | 31.0 | 1 | 2.60 |" in md
    assert "2.6× jemalloc's" in md


def run_plot(*args) -> subprocess.CompletedProcess:
    return cli("plot", *map(str, args))


def test_not_a_result_folder_is_one_sentence(tmp_path):
    done = run_plot(tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip() == f"stair-stepper: {tmp_path} holds no usable stair-stepper trace."
    done = run_plot(tmp_path / "nope")
    assert done.returncode == 2 and "does not exist" in done.stderr
    (tmp_path / "x.csv").write_text("a,b\n1,2\n")
    done = run_plot(tmp_path)
    assert done.returncode == 2 and "x.csv is not a stair-stepper CSV" in done.stderr


def _repeat_folder(folder: Path, glibc_runs: list[list[float]]) -> Path:
    for k, floors in enumerate(glibc_runs, 1):
        run = folder / f"run-{k}"
        run.mkdir(parents=True)
        synthetic_variant(run, "glibc", 50, floors, 60, 400)
    return folder


def test_compare_says_within_noise_only_where_the_run_ranges_overlap(tmp_path):
    a = _repeat_folder(tmp_path / "a", [[200, 200, 200], [240, 240, 240]])
    overlapping = _repeat_folder(tmp_path / "b", [[230, 230, 230], [260, 260, 260]])
    apart = _repeat_folder(tmp_path / "c", [[300, 300, 300], [320, 320, 320]])
    done = cli("compare", str(a), str(overlapping))
    assert done.returncode == 0, done.stderr
    row = next(line for line in done.stdout.splitlines() if line.startswith("| glibc"))
    assert row.split(" | ")[3] == "within noise"  # median floor: 200–240 against 230–260
    row = next(
        line
        for line in cli("compare", str(a), str(apart)).stdout.splitlines()
        if line.startswith("| glibc")
    )
    assert row.split(" | ")[3] == "1.41"  # 310 / 220: 200–240 against 300–320


def test_tables_without_matplotlib(synthetic):
    """matplotlib is optional: without it the tables are still written, with a warning."""
    code = (
        "import sys; sys.modules['matplotlib'] = None\n"  # makes `import matplotlib` fail
        "from pathlib import Path\n"
        "from stair_stepper.analysis import plot\n"
        f"summary, written = plot.analyse(Path({str(synthetic)!r}))\n"
        "print(sorted(p.name for p in written)); print(summary['warnings'])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    # the page is written without figures too
    assert "['report.html', 'summary.json', 'summary.md']" in done.stdout
    assert "matplotlib is not installed" in done.stdout


def test_a_checkout_imports_the_package_from_src_and_nothing_else(tmp_path):
    """PYTHONPATH=src (as in `nix develop`), no install, no import hook: the analysis is a
    plain subpackage under src/, and bench/, tests/, docs/ are not part of the package."""
    root = Path(__file__).resolve().parents[2]
    code = (
        "import importlib, stair_stepper.analysis.summary as s; print(s.__file__)\n"
        "import stair_stepper.load.plans as p; print(p.__file__)\n"
        "for name in ('bench', 'tests', 'docs', 'examples'):\n"
        "    try:\n"
        "        importlib.import_module('stair_stepper.' + name); print('importable', name)\n"
        "    except ImportError:\n"
        "        pass\n"
    )
    # -S: no site-packages, so no installed or editable stair_stepper can answer instead.
    done = subprocess.run(
        [sys.executable, "-S", "-c", code],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PYTHONPATH": str(root / "src")},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        str(root / "src" / "stair_stepper" / "analysis" / "summary.py"),
        str(root / "src" / "stair_stepper" / "load" / "plans.py"),  # never the plans/ folder
    ]


def _spread(median, low, high, n=3, over="runs"):
    from stair_stepper.analysis.spread import Spread

    return Spread(median, low, high, n, over=over)


def _variant(floor, p99, rps, cpu, failures=0):
    """A variant's standing; a bare number is one value (a spread of one)."""

    def one(x):
        return x if not isinstance(x, int | float) else _spread(x, x, x, 1)

    return verdict.Standing(
        one(floor),
        {"latency_p99_ms": one(p99), "throughput_rps": one(rps), "cpu_ms_per_request": one(cpu)},
        failures,
    )


META = {
    "glibc": {"health": {"malloc_provider": "glibc"}, "settings": {"allocator": "glibc"}},
    "jemalloc+bg": {
        "health": {"malloc_provider": "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"},
        "settings": {
            "allocator": "jemalloc",
            "given": {"MALLOC_CONF": "background_thread:true"},
            "python_malloc": "malloc",
        },
    },
}
PROVENANCE = {"cpu_count": 2, "kernel": "6.1", "python": "3.11.7"}


def test_the_verdict_names_savings_prices_and_the_environment_to_paste():
    ranks = {
        "glibc": _variant(
            _spread(300 * MB, 280 * MB, 320 * MB),
            _spread(400, 380, 420),
            _spread(10, 9.9, 10.1),
            _spread(40, 39, 41),
        ),
        "jemalloc+bg": _variant(
            _spread(100 * MB, 95 * MB, 110 * MB),
            _spread(440, 430, 460),  # beyond glibc's range: a price with a number
            _spread(10, 9.8, 10.2),  # overlapping: within noise
            _spread(36, 35, 37),
        ),
    }
    found = verdict.verdict(ranks, META, {"rate": 10, "arrivals": "poisson"}, PROVENANCE)
    (line,) = found["lines"]
    assert line.startswith("jemalloc+bg against glibc: 3.00× less memory at the floors (200 MB")
    assert "p99 latency +10% (+2% to +21%)" in line  # 440/400; 430/420 and 460/380
    assert "throughput within noise" in line and "CPU per request -10%" in line
    assert found["best"] == "jemalloc+bg"
    assert found["environment"] == [
        "LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2",
        "MALLOC_CONF=background_thread:true",
        "PYTHONMALLOC=malloc",
    ]
    assert "an open loop at 10 requests a second" in found["caveats"]
    text = "\n".join(verdict.verdict_text({"verdict": found}))
    assert "Lowest memory without a failed request: **jemalloc+bg**" in text
    assert "```sh\nLD_PRELOAD=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2\n" in text


def test_a_saving_within_noise_or_a_failing_variant_changes_nothing():
    glibc = _variant(_spread(300 * MB, 250 * MB, 320 * MB), 400, 10, 40)
    lower_in_noise = _variant(_spread(290 * MB, 240 * MB, 310 * MB), 400, 10, 40)
    found = verdict.verdict({"glibc": glibc, "jemalloc+bg": lower_in_noise}, META, {}, PROVENANCE)
    assert found["best"] == "glibc"
    assert "memory at the floors within noise (-10 MB)" in found["lines"][0]
    text = "\n".join(verdict.verdict_text({"verdict": found}))
    assert "nothing to change" in text
    assert "```sh\n# nothing to set: glibc with its defaults" in text  # never an empty block
    failing = _variant(_spread(100 * MB, 90 * MB, 110 * MB), 400, 10, 40, failures=3)
    found = verdict.verdict({"glibc": glibc, "jemalloc+bg": failing}, META, {}, PROVENANCE)
    assert found["best"] == "glibc"  # the lowest floor, but it failed requests
    more = _variant(_spread(400 * MB, 390 * MB, 410 * MB), 400, 10, 40)
    found = verdict.verdict({"glibc": glibc, "x": more}, {}, {}, {})
    assert "1.33× more memory at the floors (100 MB more)" in found["lines"][0]


def test_one_value_on_a_side_judges_nothing_and_says_so():
    """A single run's verdict once printed "p99 latency -14%, throughput +17%" from one value
    each: without a spread there is no telling a change from noise."""
    glibc = _variant(300 * MB, 400, 10, 40)
    lower = _variant(100 * MB, 350, 12, 30)
    found = verdict.verdict({"glibc": glibc, "jemalloc+bg": lower}, META, {}, PROVENANCE)
    (line,) = found["lines"]
    assert "memory at the floors not judged (one run" in line
    assert "p99 latency not judged (one run" in line and "%" not in line
    assert found["best"] == "glibc"  # not lower beyond a noise nobody measured


def test_one_run_is_judged_against_its_batches(synthetic):
    """One run of the synthetic folder: glibc's floors 200 → 260 → 262 against jemalloc's
    100 → 100 → 100 (settled): the batches' ranges do not meet, so the saving is a finding,
    said with the range it was judged against; the summary says what the ranges are over."""
    s = numbers.summarise(synthetic)
    spread = s["variants"]["glibc"]["floor_spread"]
    assert (spread["n"], spread["over"], spread["min"]) == (3, "batches", 200 * MB)
    found = s["verdict"]
    assert found["over"] == "batches"
    (line,) = found["lines"]
    assert "less memory at the floors" in line and "not judged" not in line
    text = "\n".join(verdict.verdict_text(s))
    assert "judged against the spread of this run's batches" in text


def test_a_spread_of_one_judges_nothing_and_ranges_that_meet_are_noise():
    from stair_stepper.analysis.spread import change

    assert change(_spread(12, 10.5, 13), _spread(10, 9, 11)) == "within noise"
    assert change(_spread(12, 11.5, 13), _spread(10, 9, 11)).startswith("+20% (+5% to +44%)")
    assert change(_spread(12, 12, 12, 1), _spread(10, 9, 11)).startswith("not judged (one run")
    assert change(None, _spread(10, 9, 11)) == "not measured"


def test_the_tradeoff_marks_the_variants_no_other_beats_on_both_axes():
    from stair_stepper.analysis.figures_price import non_dominated

    points = {
        "glibc": (300, 400),
        "jemalloc": (120, 420),
        "jemalloc+bg": (100, 450),
        "x": (130, 430),
    }
    assert non_dominated(points) == {"glibc", "jemalloc", "jemalloc+bg"}  # x: jemalloc beats it
    assert non_dominated({"a": (1, 1), "b": (1, 1)}) == {"a", "b"}  # ties beat nobody


def test_a_sender_behind_its_schedule_is_a_warning():
    assert numbers._lag_warning("glibc", {"lag_max_ms": 20.0}, {"rate": 10}) == []
    (warning,) = numbers._lag_warning("glibc", {"lag_max_ms": 400.0}, {"rate": 10})
    assert "fell behind its schedule by up to 400 ms" in warning
    assert numbers._lag_warning("glibc", {"lag_max_ms": 400.0}, {}) == []  # closed loop


def test_a_lazy_return_whose_timer_fork_turned_off_says_so():
    """Dirty pages waiting for a timer in a worker whose background thread fork turned off are
    not waiting for time: the diagnosis says which finding, in its own words."""
    from stair_stepper.analysis import layers

    timed = layers.TIMED_KINDS[0]
    floor = {
        "allocator_live_bytes": 40 * MB,
        "free_held_bytes": 200 * MB,
        "rss_bytes": 300 * MB,
        "free_kinds": {timed: 180 * MB},
    }
    found = layers.diagnose({"peak_bytes": 400 * MB, "baseline_bytes": 50 * MB}, [floor], 16 * MB)
    assert found["verdict"] == "lazy-return"
    assert found["why"].endswith("time or a background thread returns them")
    sentence = "background_thread is off in 2 of 2 workers: jemalloc turns it off in a forked child"
    said = layers.with_findings(found, [{"sentence": sentence}])
    assert said["verdict"] == "lazy-return"
    assert f"but {sentence}, so they come back only as those processes allocate" in said["why"]
    assert "time or a background thread" not in said["why"]
    assert layers.with_findings(found, []) == found  # no finding: as it was
    fragmented = {**found, "verdict": "fragmentation"}
    assert layers.with_findings(fragmented, [{"sentence": sentence}]) == fragmented


def test_a_floor_held_outside_the_heap_is_not_returned():
    """PYTHONMALLOC=mimalloc on 3.13 (bench/pythons.py): the C allocator held 2 MB free beside
    1 MB live while 891 MB of the floor sat in CPython's own object allocator — "returned"
    said the floor came back. Growth outside the heap beyond the returned bound is its own
    verdict, and is added to another verdict's why (pymalloc's arenas, where read)."""
    from stair_stepper.analysis import layers

    before = {"free_held_bytes": 0.5 * MB, "not_heap_bytes": 43 * MB}
    run = {"peak_bytes": 1000 * MB, "baseline_bytes": 44 * MB, "after_trim_bytes": 894 * MB}
    held_outside = {
        "allocator_live_bytes": 1 * MB,
        "free_held_bytes": 2 * MB,
        "rss_bytes": 894 * MB,
        "not_heap_bytes": 891 * MB,
        "free_kinds": {},
    }
    found = layers.diagnose(run, [held_outside], 16 * MB, before)
    assert found["verdict"] == "outside-heap", found
    assert found["outside_heap_bytes"] == 848 * MB
    assert (
        "848 MB more of the 894 MB floor than before any load lie outside its heap" in found["why"]
    )
    assert found["why"].endswith("the trim left the floor at 894 MB")
    # the same floor with its memory in the heap's live bytes is not outside (nor returned)
    inside = {**held_outside, "not_heap_bytes": 44 * MB}
    assert layers.diagnose(run, [inside], 16 * MB, before)["verdict"] == "returned"
    # beside free space the trim returns: fragmentation, and what lies outside besides
    arenas = {"python_arena_bytes": 290 * MB, "python_arena_used_bytes": 21 * MB}
    both = {**held_outside, **arenas, "free_held_bytes": 271 * MB, "rss_bytes": 1164 * MB}
    both["free_kinds"] = {"free_bin_bytes": 271 * MB}
    run = {**run, "after_trim_bytes": 893 * MB}
    found = layers.diagnose(run, [both], 16 * MB, before)
    assert found["verdict"] == "fragmentation", found
    assert "; besides, 848 MB more than before any load lie outside its heap" in found["why"]
    assert found["why"].endswith("CPython's object arenas hold 290 MB, 21 MB of it in use")


def test_the_layers_table_shows_no_minus_zero_and_names_python_s_arenas():
    """A kind that rounds to nothing is left out (the published pythons table had "other free
    -0": a fraction of a MB below zero); CPython's object arenas are named in the not-heap
    column where they were read."""
    from stair_stepper.analysis import markdown

    layer = {
        "rss_bytes": 1094 * MB,
        "allocator_live_bytes": 36 * MB,
        "free_held_bytes": 1044 * MB,
        "free_kinds": {"free_bin_bytes": 1044 * MB, "other_free_bytes": -0.3 * MB},
        "allocator_metadata_bytes": None,
        "not_heap_bytes": 300 * MB,
        "python_arena_bytes": 290 * MB,
        "arenas": 16,
    }
    text = "\n".join(markdown.layers_text({"glibc": {"layers": layer, "diagnosis": {}}}))
    assert (
        "| glibc | 1,094 | 36 | 1,044 (free bin 1,044) | – | 300 (290 Python arenas) | 16 |" in text
    )


def test_lazyfree_at_the_last_floor_falls_back_to_the_pause_s_last_reading(synthetic):
    """The rollup is paced to its share of a core: on a large process its readings come
    seconds apart, and a pause's settled window may hold none. LazyFree is then the pause's
    last reading, never "not measured" when the pause has one."""
    trace = synthetic / "glibc.trace.csv"
    with trace.open() as handle:
        rows = list(csv.DictReader(handle))
    last_pause = [r for r in rows if r["phase"] == "pause 3"]
    last_pause[0]["lazyfree_bytes"] = str(5 * MB)  # 3 s before the pause ends: outside the window
    with trace.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    data, _, _ = read.load_folder(synthetic)
    assert numbers.container(data["glibc"], {})["last_floor_lazyfree_bytes"] == 5 * MB
    assert numbers.container(data["jemalloc"], {})["last_floor_lazyfree_bytes"] is None

"""drill's file format: tags, includes, totals and errors, against drill's own rules."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from helpers import SETTINGS_TABLE, drill_plan

from stair_stepper.errors import UserError
from stair_stepper.load import drillfile

ROOT = Path(__file__).resolve().parents[2]

# (item tags, --tags, --skip-tags, skipped?) — drill's tags.rs test table plus our own rows
TAG_TABLE = [
    ((), None, None, False),  # untagged, no filter: runs
    ((), "tag1", None, True),  # untagged with --tags: skipped
    ((), None, "tag1", False),
    (("tag1", "tag2"), None, None, False),
    (("tag1", "tag2"), "tag1", None, False),
    (("tag1", "tag2"), "tag2", None, False),
    (("tag1", "tag2"), "tag1,tag2", None, False),
    (("tag1", "tag2"), "tag99", None, True),
    (("tag1", "tag2"), None, "tag99", False),
    (("tag1", "tag2"), None, "tag1", True),
    (("tag1", "tag2"), None, "tag2", True),
    (("tag1", "tag2"), "tag1", "tag2", True),  # skip wins
    (("never", "tag2"), None, None, True),  # never skipped by default
    (("never", "tag2"), "tag2", None, True),  # ... even when another tag is asked
    (("never", "tag2"), "never", None, False),  # unless never is asked
    (("always", "tag2"), "tag99", None, False),  # always runs
    (("always", "tag2"), None, None, False),
    (("always", "tag2"), None, "always", True),  # unless skipped
    (("always",), None, "other", False),
]


@pytest.mark.parametrize(("item_tags", "tags", "skip", "skipped"), TAG_TABLE)
def test_tag_rules_follow_drill(item_tags, tags, skip, skipped):
    wanted = drillfile.parse_tag_list(tags)
    skipped_tags = drillfile.parse_tag_list(skip)
    assert drillfile.should_skip(item_tags, wanted, skipped_tags) is skipped


def test_same_tag_in_both_lists_is_an_error():
    bench = drillfile.read_benchmark(ROOT / "benchmark.yml")
    with pytest.raises(UserError, match="both name small"):
        drillfile.select(bench, "small,medium", "small")


@pytest.mark.parametrize(
    ("tags", "skip", "names", "total"),
    [
        (None, None, ["tiny", "small", "medium", "large"], 10_000),
        ("small,medium", None, ["small", "medium"], 5_000),
        ("medium", None, ["medium"], 2_500),
        (None, "large", ["tiny", "small", "medium"], 7_500),
        ("tiny,large", "small", ["tiny", "large"], 5_000),
    ],
)
def test_request_totals_for_tag_combinations(tags, skip, names, total):
    bench = drillfile.read_benchmark(ROOT / "benchmark.yml")
    items = drillfile.select(bench, tags, skip)
    assert [i.name for i in items] == names
    assert bench.total_requests(items) == total


def test_no_matching_item_is_an_error():
    bench = drillfile.read_benchmark(ROOT / "benchmark.yml")
    with pytest.raises(UserError, match="no plan item"):
        drillfile.select(bench, "nothing")


def test_includes_resolve_relative_to_the_including_file(tmp_path, monkeypatch):
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    (tmp_path / "bench.yml").write_text(
        "base: http://127.0.0.1:1\niterations: 3\nconcurrency: 2\nplan:\n"
        "  - include: sub/a.yml\n  - name: top\n    request: {url: /top}\n"
    )
    (tmp_path / "sub" / "a.yml").write_text(
        "- name: a\n  tags: [x]\n  request: {url: /a}\n- include: deeper/b.yml\n"
    )
    (tmp_path / "sub" / "deeper" / "b.yml").write_text("- name: b\n  request: {url: /b}\n")
    monkeypatch.chdir(ROOT / "tests")  # somewhere else entirely
    bench = drillfile.read_benchmark(os.path.relpath(tmp_path / "bench.yml"))
    assert [i.name for i in bench.items] == ["a", "b", "top"]
    assert [i.name for i in drillfile.select(bench, "x")] == ["a"]  # tags inside includes count
    assert bench.absolute_url(bench.items[0]) == "http://127.0.0.1:1/a"


def test_the_repository_benchmark_matches_the_spec():
    bench = drillfile.read_benchmark(ROOT / "benchmark.yml")
    assert (bench.concurrency, bench.iterations, bench.rampup) == (16, 2500, 1)
    assert bench.base == "http://localhost:3000"
    for item in bench.items:
        assert item.method == "POST" and item.url == "/widgets"
        assert item.headers == {"Content-Type": "application/json"}
        assert item.tags == (item.name,)


def test_rampup_uses_drills_integer_rule():
    bench = drillfile.read_benchmark(ROOT / "benchmark.yml")
    assert [bench.rampup_delay(i) for i in (0, 1, 2499)] == [0, 0, 0]  # 1 // 2500 == 0
    slow = drillfile.read_benchmark(ROOT / "benchmark.yml", iterations=4, concurrency=2)
    slow = drillfile.Benchmark(slow.path, slow.base, 2, 4, 10, slow.items)
    assert [slow.rampup_delay(i) for i in range(4)] == [0, 2, 4, 6]  # 10 // 4 == 2


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "b.yml"
    path.write_text(text)
    return path


HEAD = "base: http://127.0.0.1:1\niterations: 2\nconcurrency: 1\nplan:\n"


@pytest.mark.parametrize(
    ("plan", "message"),
    [
        ("  - name: x\n    assign: {key: a, value: b}\n", "'assign' is not supported"),
        ("  - name: x\n    assert: {key: a, value: b}\n", "'assert' is not supported"),
        ("  - name: x\n    exec: {command: ls}\n", "'exec' is not supported"),
        (
            "  - name: x\n    request: {url: /}\n    with_items: [1, 2]\n",
            "'with_items' is not supported",
        ),
        ("  - name: x\n    request: {url: /, body: {file: a.json}}\n", "not in drill 0.8.3"),
        ("  - name: x\n    request: {url: /, body: 'a {{ b }}'}\n", "template"),
        ("  - include: missing.yml\n", "does not exist"),
        ("  - name: x\n", "needs 'request' or 'include'"),
    ],
)
def test_unsupported_or_broken_items_name_the_problem(tmp_path, plan, message):
    with pytest.raises(UserError, match=message):
        drillfile.read_benchmark(_write(tmp_path, HEAD + plan))


def test_concurrency_above_iterations_is_an_error(tmp_path):
    path = _write(tmp_path, "base: http://x\niterations: 2\nconcurrency: 3\nplan: []\n")
    with pytest.raises(UserError, match="concurrency"):
        drillfile.read_benchmark(path)


def test_unreadable_and_invalid_files(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        drillfile.read_benchmark(tmp_path / "nope.yml")
    with pytest.raises(UserError, match="not valid YAML"):
        drillfile.read_benchmark(_write(tmp_path, "plan: [\n"))
    with pytest.raises(UserError, match="no 'plan'"):
        drillfile.read_benchmark(_write(tmp_path, "a: 1\n"))
    folder = tmp_path / "dir.yml"
    folder.mkdir()
    with pytest.raises(UserError, match="cannot read"):
        drillfile.read_benchmark(folder)


def test_self_include_is_caught(tmp_path):
    path = _write(tmp_path, HEAD + "  - include: b.yml\n")
    with pytest.raises(UserError, match="includes itself"):
        drillfile.read_benchmark(path)


SETTINGS_IDS = [r[0].replace("\n", ", ") or "nothing" for r in SETTINGS_TABLE]


@pytest.mark.parametrize(("numbers", "expected", "warns"), SETTINGS_TABLE, ids=SETTINGS_IDS)
def test_plan_numbers_follow_drill(tmp_path, numbers, expected, warns):
    path = drill_plan(tmp_path, numbers)
    if expected == "error":
        with pytest.raises(UserError):
            drillfile.read_benchmark(path)
        return
    bench = drillfile.read_benchmark(path)
    assert (bench.iterations, bench.concurrency, bench.rampup) == expected
    assert bool(bench.warnings) is warns


# --- drill's --stats output, known answers ----------------------------------------------------
# What drill 0.8.x prints with --stats (src/main.rs, show_stats): one block per plan item, each
# line led by the item's name padded to 25 columns, then the global block, whose labels are
# padded to 25 columns and start the line; values coloured (the `colored` crate) unless
# NO_COLOR; times rounded to whole ms ("ms"), or ns with --nanosec. The global block below is
# the shape drill's users publish (e.g. valve's README, drill 0.8): the parser must read it
# whatever the items are called, even an item named like a global label.
DRILL_STATS = """
small                     Total requests            4
small                     Successful requests       4
small                     Failed requests           0
small                     Median time per request   510ms
small                     Average time per request  510ms
small                     Sample standard deviation 2ms
small                     99.0'th percentile        516ms
small                     99.5'th percentile        518ms
small                     99.9'th percentile        518ms

Total requests            Total requests            1
Total requests            Successful requests       1
Total requests            Failed requests           0
Total requests            Median time per request   9ms

Time taken for tests      10.2 seconds
Total requests            100
Successful requests       97
Failed requests           3
Requests per second       9.78 [#/sec]
Median time per request   510ms
Average time per request  510ms
Sample standard deviation 2ms
99.0'th percentile        2556ms
99.5'th percentile        2556ms
99.9'th percentile        2601ms
"""


def _coloured(text: str) -> str:
    """Each value wrapped in ANSI colour codes, as drill prints them on a terminal."""
    return re.sub(r"(?m)( {2,}|^)(\S+( \S+)*)$", lambda m: f"{m[1]}\x1b[35m{m[2]}\x1b[0m", text)


@pytest.mark.parametrize("colour", [False, True], ids=["plain", "ansi"])
def test_drill_stats_are_read_from_the_global_block(colour):
    from stair_stepper.load.batch import parse_drill_stats

    text = _coloured(DRILL_STATS) if colour else DRILL_STATS
    got = parse_drill_stats(text)
    assert (got.requests, got.failures) == (100, 3)
    assert got.requests_per_second == pytest.approx(9.78)
    assert (got.p50_ms, got.p99_ms, got.p99_9_ms) == (510, 2556, 2601)


def test_drill_stats_in_nanoseconds_are_milliseconds():
    """--nanosec: drill prints round(1,000,000 × the time in ms) followed by "ns"."""
    from stair_stepper.load.batch import parse_drill_stats

    text = DRILL_STATS.replace("510ms", "509731000ns").replace("2601ms", "2601250000ns")
    got = parse_drill_stats(text)
    assert got.p50_ms == pytest.approx(509.731) and got.p99_9_ms == pytest.approx(2601.25)


def test_drill_output_without_statistics_is_one_sentence():
    from stair_stepper.load.batch import parse_drill_stats

    with pytest.raises(UserError, match="no statistics"):
        parse_drill_stats("thread 'main' panicked at src/main.rs\n")


def test_the_file_drill_gets_has_the_batch_numbers_and_absolute_includes(tmp_path):
    """drill resolves an include against its working directory's view of the file it was given
    (src/benchmark.rs reads the path as given): the copy we hand it lives elsewhere, so every
    include must be absolute, and base, iterations and concurrency are this batch's."""
    import yaml

    from stair_stepper.load.batch import drill_benchmark_file

    (tmp_path / "sub").mkdir()
    (tmp_path / "bench.yml").write_text(
        "base: http://localhost:3000\niterations: 9\nconcurrency: 3\nplan:\n"
        "  - include: sub/a.yml\n  - name: top\n    request: {url: /top}\n"
    )
    (tmp_path / "sub" / "a.yml").write_text("- name: a\n  request: {url: /a}\n")
    bench = drillfile.read_benchmark(tmp_path / "bench.yml", iterations=4, concurrency=2)
    out = tmp_path / "out"
    out.mkdir()
    written = yaml.safe_load(
        drill_benchmark_file(bench, "http://127.0.0.1:5", out, "v").read_text()
    )
    assert (written["base"], written["iterations"], written["concurrency"]) == (
        "http://127.0.0.1:5",
        4,
        2,
    )
    assert written["plan"][0]["include"] == str((tmp_path / "sub" / "a.yml").resolve())
    assert written["plan"][1]["name"] == "top"

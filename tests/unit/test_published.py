"""Published numbers come from committed raw data, and the figures do not mislead."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import pytest
from helpers import synthetic_variant

from stair_stepper.analysis import figures_floors, publish, read
from stair_stepper.analysis import summary as numbers
from stair_stepper.errors import Stale
from stair_stepper.record.schema import TRACE_COLUMNS, RowWriter

ROOT = Path(__file__).resolve().parents[2]
MB = 2**20


def test_every_published_block_is_what_the_data_says():
    """Edit a cell of a result table by hand, in the README or a page of docs/, and this
    fails; every block is on exactly one page."""
    blocks = publish.build_blocks(ROOT, allow_stale=True)
    assert set(blocks) == set(publish.PUBLISHED)
    texts = {page: page.read_text() for page in publish.pages(ROOT)}
    for name, text in blocks.items():
        marker = f"<!-- published:{name} -->\n"
        holding = [page for page, body in texts.items() if marker in body]
        assert len(holding) == 1, f"block {name} is on {len(holding)} pages"
        body = texts[holding[0]]
        start = body.index(marker) + len(marker)
        end = body.index(f"<!-- /published:{name} -->")
        assert body[start:end] == text, f"{holding[0].name}'s {name} block differs from the data"
    for body in texts.values():
        assert publish.rewrite(body, blocks) == body


def test_a_hand_edited_cell_is_caught():
    blocks = publish.build_blocks(ROOT, allow_stale=True)
    readme = (ROOT / "docs" / "results.md").read_text()
    start = readme.index("<!-- published:contrast -->")
    row = readme.index("| glibc |", start)
    cell = readme.index("|", row + 1) + 2  # the first number after the variant name
    assert readme[cell].isdigit()
    digit = "1" if readme[cell] != "1" else "2"  # another digit than the one published
    edited = readme[:cell] + digit + readme[cell + 1 :]
    assert edited != readme
    assert publish.rewrite(edited, blocks) == readme  # regeneration gives back the README exactly


def test_published_results_are_complete_and_small():
    results = ROOT / publish.RESULTS
    total = sum(p.stat().st_size for p in results.rglob("*") if p.is_file())
    # raw data and summaries only (bench/measuring_pass.py packs each folder: traces gzipped,
    # no figure or report); 11 MB for the first twelve folders, about 2 MB a folder since
    # (pythons: 2.0 MB); with prefork, container, find-limit and seed about 20 MB
    assert total < 30 * MB
    for drawn in [p for pattern in ("*.png", "*.svg", "*.html") for p in results.rglob(pattern)]:
        raise AssertionError(f"{drawn} is drawn from the data: ./dev docs draws the pages' own")
    for block, folders in publish.PUBLISHED.items():
        for name in folders:
            if block in publish.PENDING and not (results / name).exists():
                continue  # the next measuring pass makes it; the block says so
            runs = read.run_folders(results / name)
            # two runs: each configuration of the staircase sweep (six in all), and the seed
            # preset (`--repeat 2`, as its PENDING command and the pass's step say)
            least = 2 if name.startswith("staircase-sweep/") or name == "seed" else 3
            if name == "container":  # the unlimited run, then the runs under the limit
                runs, least = read.run_folders(results / name / "limited"), 5
            if name == "find-limit":  # every workload of every variant's search
                runs = [m.parent for m in sorted((results / name).glob("*/*/meta.json"))]
            assert len(runs) >= least, f"{name}: fewer than {least} runs"
            for run in runs:
                meta = json.loads((run / "meta.json").read_text())
                assert meta["status"] == "complete"
                for variant in meta["config"]["variants"]:
                    # a process tree (recycled workers) cannot be asked to trim, nor can a
                    # server the OOM killer ended (an outcome, not a gap): no trim.json
                    info = meta["variants"][variant]
                    killed = (info.get("outcome") or {}).get("oom_killed", False)
                    trimmed = info.get("trim") != "not measured" and not killed
                    suffixes = (".trace.csv.gz", ".batches.csv") + (".trim.json",) * trimmed
                    for suffix in suffixes:
                        assert (run / f"{variant}{suffix}").exists(), (run, variant, suffix)


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


def _folder_at(tmp_path: Path, rev: str, dirty: bool = False) -> Path:
    folder = tmp_path / f"at-{rev[:7]}{'-dirty' if dirty else ''}"
    folder.mkdir()
    (folder / "meta.json").write_text(
        json.dumps({"provenance": {"git_rev": rev, "git_dirty": dirty}})
    )
    return folder


needs_git_history = pytest.mark.skipif(
    not (ROOT / ".git").exists(), reason="needs the git history of a checkout"
)


@needs_git_history
def test_results_measured_by_other_code_are_refused(tmp_path):
    first = _git("rev-list", "--max-parents=0", "HEAD").splitlines()[-1]
    problems = publish.provenance_problems(_folder_at(tmp_path, first), ROOT)
    assert len(problems) == 1 and "its measuring code has changed since" in problems[0]
    differ = publish.measuring_changes(ROOT, first)  # what differs beyond comment lines
    everything = _git("diff", "--name-only", first, "--", *publish.MEASURING).split()
    assert set(differ) <= set(everything) and len(differ) > 12
    assert differ[0] in problems[0] and f"and {len(differ) - 12} more" in problems[0]
    dirty = publish.provenance_problems(_folder_at(tmp_path, _git("rev-parse", "HEAD"), True))
    assert "uncommitted changes" in dirty[0]
    head = publish.provenance_problems(_folder_at(tmp_path, _git("rev-parse", "HEAD")), ROOT)
    assert (head == []) is (publish.measuring_changes(ROOT, "HEAD") == [])


@needs_git_history
def test_a_folder_of_result_folders_is_checked_in_each(tmp_path):
    # bench/container.py writes limited/ and unlimited/, bench/find_limits.py a folder per
    # variant and limit: no meta.json at the top, so each one below is checked
    top = tmp_path / "container"
    top.mkdir()
    head = _git("rev-parse", "HEAD")
    for name, dirty in (("limited", False), ("unlimited", True)):
        (top / name).mkdir()
        (top / name / "meta.json").write_text(
            json.dumps({"provenance": {"git_rev": head, "git_dirty": dirty}})
        )
    assert publish.result_folders(top) == [top / "limited", top / "unlimited"]
    problems = publish.provenance_problems(top, ROOT)
    assert any("unlimited was measured on a tree with uncommitted changes" in p for p in problems)
    assert not any("no readable meta.json" in p for p in problems)
    empty = tmp_path / "empty"
    (empty / "nothing").mkdir(parents=True)
    assert publish.provenance_problems(empty, ROOT) == [f"{empty} has no readable meta.json."]


@needs_git_history
def test_every_published_folder_says_what_measured_it():
    # strict ./dev docs refuses a folder whose provenance it cannot read: every folder the
    # pages publish must have one (container/ had none at its top until this was checked)
    for folders in publish.PUBLISHED.values():
        for name in folders:
            folder = ROOT / publish.RESULTS / name
            if not folder.exists():
                continue  # a pending block says it is not measured yet
            for problem in publish.provenance_problems(folder, ROOT):
                assert "no readable meta.json" not in problem
                assert "records no git revision" not in problem


@needs_git_history
def test_a_change_to_comments_alone_leaves_results_current(tmp_path):
    repo = tmp_path / "repo"
    (repo / "src").mkdir(parents=True)
    code = repo / "src" / "measure.py"

    def commit(text: str) -> str:
        code.write_text(text)
        for args in (["add", "."], ["commit", "-qm", "step"]):
            subprocess.run(
                ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args],
                check=True,
            )
        return subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True
        ).stdout.strip()

    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    first = commit("BATCHES = 8\n# five showed the steps in half the runs\n")
    folder = _folder_at(tmp_path, first)
    commit("BATCHES = 8\n# eight give the arenas their chances\n")
    assert publish.provenance_problems(folder, repo) == []
    commit("BATCHES = 5\n# eight give the arenas their chances\n")
    assert "src/measure.py" in publish.provenance_problems(folder, repo)[0]


@needs_git_history
def test_publish_refuses_stale_results_with_one_sentence(tmp_path, monkeypatch):
    root = tmp_path / "checkout"
    folder = root / publish.RESULTS / "contrast"
    folder.mkdir(parents=True)
    first = _git("rev-list", "--max-parents=0", "HEAD").splitlines()[-1]
    (folder / "meta.json").write_text(json.dumps({"provenance": {"git_rev": first}}))
    monkeypatch.setattr(publish, "PUBLISHED", {"contrast": ["contrast"]})
    with pytest.raises(Stale, match="has changed since"):
        publish.build_blocks(root)


def test_no_line_is_drawn_across_missing_allocator_readings(tmp_path):
    from stair_stepper.analysis import figures

    folder = tmp_path / "gap"
    folder.mkdir()
    with RowWriter(folder / "glibc.trace.csv", TRACE_COLUMNS) as w:
        for i in range(300):  # 30 s at 10 Hz; the allocator did not answer from 10 s to 20 s
            t = i / 10
            held = None if 10 <= t < 20 else 100 * MB
            w.write(
                {
                    "t_s": t,
                    "phase": "batch 1",
                    "rss_bytes": 120 * MB,
                    "held_bytes": held,
                    "live_bytes": None if held is None else 50 * MB,
                }
            )
    data, _, _ = read.load_folder(folder)
    fig = figures.memory_figure(data, numbers.summarise(folder))
    lines = [line for ax in fig.axes for line in ax.get_lines() if line.get_gid() == "held_bytes"]
    assert lines
    xs = list(lines[0].get_xdata())
    finite = [
        (a, b) for a, b in zip(xs, xs[1:], strict=False) if not (math.isnan(a) or math.isnan(b))
    ]
    assert finite and max(b - a for a, b in finite) <= figures.MAX_GAP_S
    assert any(math.isnan(x) for x in xs)  # the gap is a gap
    assert min(x for x in xs if not math.isnan(x)) == 0 and max(xs) == pytest.approx(29.9)


def test_figures_are_byte_for_byte_stable(tmp_path):
    from stair_stepper.analysis import plot

    folder = tmp_path / "run"
    folder.mkdir()
    synthetic_variant(folder, "glibc", 50, [200, 260, 262], 60, 400)
    first, second = tmp_path / "a", tmp_path / "b"
    plot.analyse(folder, first)
    plot.analyse(folder, second)
    for path in sorted(first.iterdir()):
        assert path.read_bytes() == (second / path.name).read_bytes(), path.name


def test_the_title_names_every_setting_changed_from_the_preset(tmp_path):
    from stair_stepper.analysis import figures

    summary = {
        "preset": "contrast",
        "config": {"parallel": True, "offload_threads": 2},
        "overrides": {"offload_threads": 2, "pause_s": None},
    }
    title = figures._title(summary, "Memory over time")
    assert "variants side by side" in title
    assert "changed from the preset: offload_threads=2, pause_s=auto" in title


def test_decimation_keeps_every_columns_highest_and_lowest_point():
    """A 10-hour trace is drawn as at most two points per screen column: the column's lowest and
    highest. A one-sample spike and a one-sample dip survive; gaps stay gaps."""
    import random

    from stair_stepper.analysis import figures

    rng = random.Random(7)
    xs = [i / 10 for i in range(360_000)]
    ys = [100 + rng.random() for _ in xs]
    ys[123_457] = 900.0  # one sample high
    ys[300_001] = 3.0  # one sample low
    dx, dy = figures.decimate(xs, ys)
    assert len(dx) <= 2 * figures.SCREEN_COLUMNS + 2
    span, n = xs[-1] - xs[0], figures.SCREEN_COLUMNS

    def by_column(px, py):
        columns: dict[int, list] = {}
        for x, y in zip(px, py, strict=True):
            columns.setdefault(min(int((x - xs[0]) / span * n), n - 1), []).append(y)
        return {c: (min(v), max(v)) for c, v in columns.items()}

    assert by_column(dx, dy) == by_column(xs, ys)
    assert 900.0 in dy and 3.0 in dy
    gx, gy = figures.with_gaps(xs[:100_000] + xs[200_000:], ys[:100_000] + ys[200_000:], 1.0)
    gdx, _ = figures.decimate(gx, gy)
    after = next(i for i, x in enumerate(gdx) if x >= 20_000)
    assert math.isnan(gdx[after - 1]) and gdx[after - 2] < 10_000  # the gap is still a gap


def test_drawing_does_not_change_the_numbers(tmp_path):
    from stair_stepper.analysis import plot

    folder = tmp_path / "run"
    folder.mkdir()
    synthetic_variant(folder, "glibc", 50, [200, 260, 262], 60, 400)
    before = numbers.summarise(folder)
    summary, _ = plot.analyse(folder, tmp_path / "out")
    assert summary["variants"] == before["variants"]


def test_a_long_run_s_floors_are_lines_with_its_unsettled_pauses_hollow(tmp_path):
    """Over MAX_BARS batches, labelled bars would be unreadable and cost a second each."""
    from stair_stepper.analysis import plot

    folder = tmp_path / "run"
    folder.mkdir()
    floors = [100 + k for k in range(figures_floors.MAX_BARS + 6)]
    synthetic_variant(folder, "glibc", 50, floors, 60, 400, falling=(3, 7))
    summary, _ = plot.analyse(folder, tmp_path / "out")
    assert summary["variants"]["glibc"]["floors_settled"].count(False) == 2
    svg = (tmp_path / "out" / "floors.svg").read_text()
    assert "hollow: pause had not settled" in svg
    assert "after batch 30" not in svg  # no label per batch
    hollow = svg.split('id="unsettled-glibc"')[1].split("</g>")[0]
    assert hollow.count("<use") == 2  # the two unsettled pauses' markers


def test_a_block_not_measured_yet_says_how_it_will_be(tmp_path, monkeypatch):
    """A pending block without its folder names the command; once the folder exists it is
    published like any other (here: refused as having no readable meta.json)."""
    (tmp_path / publish.RESULTS).mkdir(parents=True)
    pending = {name: publish.PUBLISHED[name] for name in publish.PENDING}
    monkeypatch.setattr(publish, "PUBLISHED", pending)
    blocks = publish.build_blocks(tmp_path)
    for name, command in publish.PENDING.items():
        assert blocks[name] == (
            f"Not measured yet: the measuring pass makes `docs/results/{name}/` with `{command}`.\n"
        )
    (tmp_path / publish.RESULTS / "pythons").mkdir()
    with pytest.raises(Stale, match="no readable meta.json"):
        publish.build_blocks(tmp_path)

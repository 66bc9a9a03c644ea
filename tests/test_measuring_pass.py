"""bench/measuring_pass.py: every published result has a step that makes it, each experiment
step asks for what its published folder holds, and a step replaces a folder only when it
completed (a real experiment, small, into a temporary docs/results)."""

from __future__ import annotations

import gzip
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TINY

from stair_stepper.analysis import publish

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))  # as `python bench/measuring_pass.py` has it
import measuring_pass as passing  # noqa: E402


def test_every_published_result_has_one_step():
    folders = [f.split("/")[0] for names in publish.PUBLISHED.values() for f in names]
    made = [f for step in passing.STEPS for f in step.folders]
    assert sorted(set(folders)) == sorted(made), "a published folder without a step, or extra"
    assert len(made) == len(set(made))
    texts = {p.name for p in (ROOT / publish.RESULTS).glob("*.txt")}
    logs = {p.name for p in (ROOT / publish.RESULTS).glob("*.log")}
    written = {s.text for s in passing.STEPS if s.text} | {"idle-bench.txt"}
    assert texts <= written, texts - written  # every measured file is measured again
    assert logs <= {f"{s.name}.log" for s in passing.STEPS if s.folders}, logs


def test_every_row_of_the_benchmark_table_is_measured_again():
    """Each bench script with a row in docs/benchmarks.md runs in the pass (ruff_versions.py
    measures no number: CI runs it)."""
    table = (ROOT / "docs" / "benchmarks.md").read_text()
    rows = set(re.findall(r"^\| `bench/([a-z_]+\.py)`", table, re.M)) - {"ruff_versions.py"}
    assert rows, "no rows found"
    run = {s.command[0] for s in passing.STEPS if not s.experiment}
    assert rows <= run, rows - run


def _plan_text(flags: tuple[str, ...]) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "stair_stepper", "experiment", *flags, "--dry-run"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _plan(flags: tuple[str, ...]) -> str:
    return _plan_text(flags).splitlines()[0]


@pytest.mark.parametrize("step", [s for s in passing.STEPS if s.experiment], ids=lambda s: s.name)
def test_an_experiment_step_asks_for_what_its_folder_holds(step):
    """The variants, preset and run count of the folder as published (or, for a folder not
    there yet, of the block's command)."""
    plan = _plan(step.command)
    variants = re.search(r"plan: \d+ variants? \(([^)]*)\)", plan).group(1).split(", ")
    runs = re.search(r"(\d+) runs", plan)
    folder = ROOT / publish.RESULTS / step.folders[0]
    if not (folder / "meta.json").exists():
        assert step.name in publish.PENDING
        assert " ".join(step.command) in publish.PENDING[step.name]
        return
    meta = json.loads((folder / "meta.json").read_text())
    assert variants == meta["config"]["variants"]
    defined = re.findall(r"^variant (\S+=.*)$", _plan_text(step.command), re.M)
    assert defined == meta["config"].get("definitions", [])
    assert int(runs.group(1) if runs else 1) == meta.get("repeat", 1)
    given = dict(zip(step.command, step.command[1:], strict=False))  # flag -> its value
    config = meta["config"]
    assert config["preset"] == given.get("--preset", "contrast")
    assert (config.get("benchmark") or "benchmark.yml") == given.get("--benchmark", "benchmark.yml")
    assert config.get("app") == given.get("--app")
    if "--python-malloc" in given:
        assert config["python_malloc"] == given["--python-malloc"]


@pytest.fixture
def results(tmp_path, monkeypatch):
    """A docs/results of our own, holding an old folder."""
    monkeypatch.setattr(passing, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(passing, "STAGING", tmp_path / "results" / ".pass")
    old = tmp_path / "results" / "tiny"
    old.mkdir(parents=True)
    (old / "meta.json").write_text('{"old": true}')
    return tmp_path / "results"


def test_a_completed_step_replaces_the_folder_with_its_traces_compressed(results):
    step = passing.Step("tiny", TINY, ("tiny",), experiment=True)  # figures and report drawn
    assert passing.measure(step) == 0
    meta = json.loads((results / "tiny" / "meta.json").read_text())
    assert meta["config"]["variants"] == ["glibc"]
    assert not list((results / "tiny").glob("*.trace.csv"))
    assert not [p for r in passing.RENDERED for p in (results / "tiny").rglob(r)]  # redrawn
    with gzip.open(results / "tiny" / "glibc.trace.csv.gz", "rt") as trace:
        assert trace.readline().startswith("t_s,")
    assert "batch 1/" in (results / "tiny.log").read_text()  # its progress, as the .log files
    assert not (results / ".pass" / "tiny").exists()


def test_a_failed_step_leaves_the_old_folder_where_it_was(results):
    step = passing.Step("tiny", (*TINY, "--allocators", "nosuch"), ("tiny",), experiment=True)
    assert passing.measure(step) != 0
    assert json.loads((results / "tiny" / "meta.json").read_text()) == {"old": True}
    assert not (results / "tiny.log").exists()
    assert "nosuch" in (results / ".pass" / "tiny" / "output.txt").read_text()  # kept, to read


def test_a_step_whose_folder_holds_result_folders_is_judged_by_each(results, monkeypatch):
    """The container step publishes container/limited and container/unlimited, find-limit a
    folder per workload: none has a meta.json at its top, and the step is done when every
    result folder below is current — not never (it was measured again at every pass)."""
    current = []
    monkeypatch.setattr(
        passing.publish, "provenance_problems", lambda f, root: [] if f in current else ["old"]
    )
    step = passing.Step("nest", ("nest.py",), ("nest",))
    assert not passing.done(step)  # not there: to measure
    for part in ("limited", "unlimited/glibc"):
        (results / "nest" / part).mkdir(parents=True)
        (results / "nest" / part / "meta.json").write_text("{}")
    current.append(results / "nest" / "limited")
    assert not passing.done(step)  # one of them is stale
    current.append(results / "nest" / "unlimited" / "glibc")
    assert passing.done(step)


def test_each_step_can_record_how_fast_the_machine_was():
    """The speed check runs in a fresh interpreter and gives seconds (pass.json keeps them)."""
    assert 0 < passing.machine_speed(times=1) < 120

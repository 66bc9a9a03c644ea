"""Servers as they run in production: real gunicorn and uvicorn, their workers forked or
spawned, every setting read back in every worker by its agent (service/agent.py).

Known answers from jemalloc's source: ``background_thread_postfork_child``
(src/background_thread.c) turns the background threads off in a forked child, so under a
forking master every worker runs without them whatever MALLOC_CONF says; a worker started by
exec (uvicorn's spawn) reads MALLOC_CONF afresh and has them. ``post_fork=background_thread``
turns them back on in each forked worker, and so does the hook the verdict prints.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import threading
from pathlib import Path

import pytest
from conftest import has_library
from helpers import ROOT, assert_no_orphans, experiment

from stair_stepper.allocators import settings
from stair_stepper.analysis import verdict
from stair_stepper.experiment import launch
from stair_stepper.experiment.presets import Service

# run as modules of this interpreter: the one that has them, wherever its scripts point
GUNICORN, UVICORN = f"{sys.executable} -m gunicorn", f"{sys.executable} -m uvicorn"
pytestmark = [
    pytest.mark.skipif(not has_library("jemalloc"), reason="libjemalloc2 is not installed"),
    pytest.mark.skipif(
        not (importlib.util.find_spec("gunicorn") and importlib.util.find_spec("uvicorn")),
        reason="gunicorn and uvicorn are not installed for this Python",
    ),
]
BG = "MALLOC_CONF=background_thread:true"
APP = f"--chdir {ROOT / 'examples'} prefork_widgets:application"


def gunicorn(*flags: str) -> str:
    return f"{GUNICORN} --workers 2 {' '.join(flags)} --bind {{host}}:{{port}} {APP}"


UVICORN_SPAWN = (
    f"{UVICORN} --workers 2 --host {{host}} --port {{port}} --app-dir "
    f"{ROOT / 'examples'} asgi_app:app"
)


def serve(command: str, spec: str, tmp_path: Path, health: str = "/healthz"):
    var = settings.parse(spec)
    service = Service(command=command, health_path=health)
    return launch.start_variant(var, service, 0, tmp_path / "server.log", threading.Event())


def workers(health: dict) -> dict[str, dict]:
    """Each worker's read-back, by pid."""
    roles = health["roles"]
    return {p: h["settings"] for p, h in health["agents"].items() if roles[p] == "worker"}


def findings(health: dict, spec: str) -> list[dict]:
    from stair_stepper.allocators.proof import proof

    entry, problems = proof(settings.parse(spec), health, "", foreign=True)
    assert problems == []
    return entry["findings"]


@pytest.mark.parametrize(
    "command",
    [
        gunicorn("--worker-class sync"),
        gunicorn("--worker-class sync", "--preload"),
        gunicorn("--worker-class gthread", "--threads 4"),
        gunicorn("--worker-class gthread", "--threads 4", "--preload"),
    ],
    ids=["sync", "sync-preload", "gthread", "gthread-preload"],
)
def test_a_forked_worker_runs_without_jemalloc_s_background_thread(command, tmp_path):
    spec = f"bg=jemalloc {BG}"
    with serve(command, spec, tmp_path) as server:
        health = server.health
        assert sorted(health["roles"].values()) == ["master", "worker", "worker"]
        for read_back in workers(health).values():
            effective = read_back["effective"]
            assert effective["background_thread_option"] is True  # MALLOC_CONF was read
            assert effective["background_thread"] is False  # and fork turned it off
            assert effective["background_threads_running"] == 0
        [found] = findings(health, spec)
        assert found["sentence"] == (
            "background_thread is off in 2 of 2 workers: jemalloc turns it off in a forked child"
        )


def test_gunicorn_with_uvicorn_workers_forks_them_too(tmp_path):
    command = (
        f"{GUNICORN} --workers 2 --worker-class uvicorn.workers.UvicornWorker "
        f"--bind {{host}}:{{port}} --chdir {ROOT / 'examples'} asgi_app:app"
    )
    with serve(command, f"bg=jemalloc {BG}", tmp_path, "/ping") as server:
        assert [r["effective"]["background_thread"] for r in workers(server.health).values()] == [
            False,
            False,
        ]


def test_a_spawned_worker_reads_malloc_conf_afresh(tmp_path):
    spec = f"bg=jemalloc {BG}"
    with serve(UVICORN_SPAWN, spec, tmp_path, "/ping") as server:
        found = workers(server.health)
        assert len(found) == 2
        for read_back in found.values():
            assert read_back["effective"]["background_thread"] is True
            assert read_back["effective"]["background_threads_running"] >= 1
        assert findings(server.health, spec) == []


def test_the_remedy_turns_them_back_on_in_every_forked_worker(tmp_path):
    spec = f"fix=jemalloc {BG} post_fork=background_thread"
    with serve(gunicorn("--worker-class gthread", "--threads 4"), spec, tmp_path) as server:
        for pid, h in server.health["agents"].items():
            if server.health["roles"][pid] == "worker":
                assert h["fork"]["turned_off_by_fork"] is True
                assert h["fork"]["remedy_rc"] == 0
                assert h["settings"]["effective"]["background_thread"] is True
        assert findings(server.health, spec) == []


def test_the_hook_the_verdict_prints_is_a_working_remedy(tmp_path):
    """The environment block's post_fork lines, uncommented into gunicorn.conf.py, do in a
    real gunicorn what the agent's remedy does: proven by a run, not assumed."""
    spec = f"fix=jemalloc {BG} post_fork=background_thread"
    var = settings.parse(spec)
    info = {"settings": {"allocator": "jemalloc", "given": var.env, "strategy": var.strategy_text}}
    lines = verdict.environment(info, {})
    start = next(i for i, line in enumerate(lines) if line.startswith("# def post_fork"))
    hook = "\n".join("" if line == "#" else line.removeprefix("# ") for line in lines[start:])
    (tmp_path / "gunicorn.conf.py").write_text(hook + "\n")
    command = gunicorn("--worker-class sync", f"--config {tmp_path / 'gunicorn.conf.py'}")
    with serve(command, f"bg=jemalloc {BG}", tmp_path) as server:  # no agent remedy here
        for read_back in workers(server.health).values():
            assert read_back["effective"]["background_thread"] is True


def test_the_lab_measures_the_trap_and_the_remedy_under_load(tmp_path):
    """The whole run: the finding in the summary and the verdict, the floors staying up in the
    forked workers and coming back down with the remedy, layers, a diagnosis and a trim for
    a --command server, and each process's memory on the record."""
    folder = tmp_path / "r"
    done = experiment(
        *("--preset", "quick", "--batches", "1", "--tags", "medium", "--parallel"),
        *("--allocators", "jemalloc+bg"),
        *("--variant", f"remedy=jemalloc {BG} post_fork=background_thread"),
        *("--command", gunicorn("--worker-class gthread", "--threads 16")),
        *("--health-path", "/healthz", "--no-plot", "--out", str(folder)),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    meta = json.loads((folder / "meta.json").read_text())
    plain, fixed = meta["variants"]["jemalloc+bg"], meta["variants"]["remedy"]
    assert [f["what"] for f in plain["settings"]["findings"]] == ["background_thread is off"]
    assert fixed["settings"]["findings"] == []
    # twice jemalloc's dirty_decay_ms, read back: the master keeps its background thread
    assert plain["least_pause_s"] == fixed["least_pause_s"] == 20.0
    summary = json.loads((folder / "summary.json").read_text())
    s_plain, s_fixed = summary["variants"]["jemalloc+bg"], summary["variants"]["remedy"]
    assert s_plain["last_floor_bytes"] > 0.9 * s_plain["peak_bytes"]  # nothing came back
    assert s_fixed["last_floor_bytes"] < 0.8 * s_plain["last_floor_bytes"]  # the remedy's did
    # ... all of it, once the pause outlasts the thread's sleeps: what trim still finds is less
    # than a tenth of what the trap kept (a pause of one decay time left 52 MB of 125 MB)
    left = s_fixed["last_floor_bytes"] - s_fixed["after_trim_bytes"]
    assert left < 0.1 * (s_plain["last_floor_bytes"] - s_plain["after_trim_bytes"]), left
    for s in (s_plain, s_fixed):
        assert s["layers"]["allocator_live_bytes"] and s["diagnosis"]["verdict"]
        assert s["after_trim_bytes"] is not None
    # dirty pages held for a timer whose thread fork turned off: the diagnosis says so
    trap = s_plain["diagnosis"]
    assert trap["verdict"] == "lazy-return", trap
    assert "but background_thread is off in 2 of 2 workers" in trap["why"], trap["why"]
    assert "background_thread is off" not in s_fixed["diagnosis"]["why"]
    assert (folder / "remedy.trim.json").exists()
    rows = (folder / "remedy.processes.csv").read_text().splitlines()
    assert rows[0].startswith("t_s,phase,pid,role,rss_bytes,pss_bytes,uss_bytes,shared_bytes")
    assert {r.split(",")[3] for r in rows[1:]} == {"master", "worker"}
    text = (folder / "summary.md").read_text()
    assert "**background_thread is off in 2 of 2 workers" in text
    assert "Each process at the last floor" in text
    parts = [p["role"] for p in s_fixed["processes"]]
    assert sorted(parts) == ["master", "worker", "worker"]
    # the remedy's environment, as the verdict prints it for the best variant: with its hook
    assert "# def post_fork(server, worker):" in verdict.environment(fixed, meta["config"])
    assert_no_orphans(folder)


def test_agents_leave_nothing_behind(tmp_path):
    with serve(gunicorn("--worker-class sync"), f"bg=jemalloc {BG}", tmp_path) as server:
        folder = server.agents
        assert folder.exists() and (folder / "site" / "sitecustomize.py").exists()
    assert not folder.exists()

"""The lab pointed at a user's own service: --app (ASGI, WSGI) and --command, real processes."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from conftest import assert_images, get, has_library, wait_until
from helpers import ROOT, assert_no_orphans, experiment

from stair_stepper.experiment.launch import start_server
from stair_stepper.load import client
from stair_stepper.record import procfs
from stair_stepper.record.schema import read_trace

pytestmark = pytest.mark.skipif(not has_library("jemalloc"), reason="libjemalloc2 is missing")

SMALL = ("--preset", "quick", "--iterations", "32", "--concurrency", "16", "--no-plot")


def test_the_endpoints_answer_under_the_prefix_and_the_app_s_routes_are_untouched():
    args = ("--app", "examples.asgi_app:app", "--app-dir", str(ROOT))
    with start_server("jemalloc", extra_args=args) as server:
        health = server.get(client.HEALTH)
        assert health["app"] == "examples.asgi_app:app"
        assert "libjemalloc" in health["malloc_provider"]
        assert server.get("/ping") == {"ok": True}  # the app's own route
        assert get(server.base_url + "/healthz")[0] == 404  # ours are not added at the top
        assert get(server.base_url + "/debug/memory")[0] == 404
        before = server.get(client.MEMORY)
        assert before["allocator"] == "jemalloc" and before["requests_served"] >= 3
        assert server.post(client.TRIM)["pid"] == health["pid"]
        assert get(server.base_url + client.TRIM)[0] == 405  # GET on a POST endpoint
        assert get(server.base_url + client.PREFIX + "/nothing")[0] == 404
    with start_server("glibc") as widgets:  # the widget app keeps its documented paths too
        assert widgets.get("/healthz")["status"] == "ok"
        assert "requests_served" in widgets.get("/debug/memory")
        assert widgets.get(client.MEMORY)["allocator"] == "glibc"


def test_one_request_counter_answers_both_the_widget_app_and_the_middleware():
    with start_server("glibc") as widgets:
        first = widgets.get("/debug/memory")["requests_served"]
        assert widgets.get(client.MEMORY)["requests_served"] == first + 1
        for _ in range(5):
            widgets.get(client.HEALTH)
        widgets.get("/healthz")
        assert widgets.get("/debug/memory")["requests_served"] == first + 8


@pytest.mark.parametrize("spec", ["apps.modules:asgi", "apps.modules:wsgi"], ids=["asgi", "wsgi"])
def test_a_user_app_s_server_imports_nothing_of_the_widget_app(spec):
    """Quart, Jinja2 and MarkupSafe are the widget app's: in a user's server they would add
    about 12 MB to the very baseline and floors the lab measures."""
    args = ("--app", spec, "--app-dir", str(ROOT / "tests"))
    with start_server("glibc", extra_args=args) as server:
        loaded = set(server.get("/modules"))
    assert "hypercorn" in loaded and "stair_stepper.service.endpoints" in loaded  # the list is real
    for widget_only in ("quart", "jinja2", "markupsafe", "werkzeug", "stair_stepper.service.app"):
        assert widget_only not in loaded


@pytest.mark.parametrize(
    "spec, benchmark",
    [("examples.asgi_app:app", "asgi.yml"), ("examples.wsgi_app:application", "wsgi.yml")],
    ids=["asgi", "wsgi"],
)
def test_experiment_runs_a_user_app_with_its_own_workload(tmp_path, spec, benchmark):
    folder = tmp_path / "r"
    done = experiment(
        "--app",
        spec,
        "--benchmark",
        str(ROOT / "examples" / benchmark),
        "--allocators",
        "glibc,jemalloc",
        *SMALL[:-1],
        "--out",
        str(folder),
    )
    assert done.returncode == 0, done.stderr
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["status"] == "complete" and meta["config"]["app"] == spec
    jemalloc = meta["variants"]["jemalloc"]["health"]
    assert jemalloc["app"] == spec and "libjemalloc" in jemalloc["malloc_provider"]
    for name in ("glibc", "jemalloc"):
        trace = read_trace(folder / f"{name}.trace.csv")
        assert any(v is not None for v in trace.column("live_bytes"))  # probed in-process
        batches = (folder / f"{name}.batches.csv").read_text().splitlines()
        assert len(batches) == 3 and ",0," in batches[1]  # two batches, no failures
        assert (folder / f"{name}.trim.json").exists()
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["variants"]["jemalloc"]["after_trim_bytes"] > 0
    assert f"the application `{spec}`" in (folder / "summary.md").read_text()
    assert_images(folder)
    assert_no_orphans(folder)


def test_a_multi_process_command_is_recorded_as_a_tree_with_the_allocator_in_each(tmp_path):
    folder = tmp_path / "r"
    command = (
        f"{sys.executable} -m hypercorn --workers 2 --bind {{host}}:{{port}} examples.asgi_app:app"
    )
    done = experiment(
        "--command",
        command,
        "--health-path",
        "/ping",
        "--benchmark",
        str(ROOT / "examples" / "asgi.yml"),
        "--allocators",
        "jemalloc",
        *SMALL,
        "--out",
        str(folder),
    )
    assert done.returncode == 0, done.stderr
    health = json.loads((folder / "meta.json").read_text())["variants"]["jemalloc"]["health"]
    assert len(health["serving_pids"]) >= 3  # the master and both workers hold the socket
    assert set(health["allocator_by_pid"].values()) == {"jemalloc"}
    trace = read_trace(folder / "jemalloc.trace.csv")
    assert (folder / "jemalloc.trace.csv").read_text().startswith("# process tree of pid")
    assert max(trace.column("processes")) >= 3
    for total, largest, processes in zip(
        trace.column("rss_bytes"),
        trace.column("largest_rss_bytes"),
        trace.column("processes"),
        strict=True,
    ):
        # A sum over the members: every process holds some RSS, so with two or more members
        # the sum exceeds the largest (however Hypercorn spreads the load between workers).
        assert total > largest if processes >= 2 else total == largest
    # Python processes: each asked by its agent, the tree's allocator summed over them
    meta = json.loads((folder / "meta.json").read_text())["variants"]["jemalloc"]
    assert set(health["agents"]) == {str(p) for p in health["serving_pids"]}
    assert sorted(health["roles"].values()) == ["master", "worker", "worker"]
    assert any(v for v in trace.column("live_bytes") if v)  # measured, by the agents
    assert meta["trim"]["returned_memory"] is True and (folder / "jemalloc.trim.json").exists()
    md = (folder / "summary.md").read_text()
    assert "Each process at the last floor" in md and "not measured" not in md
    assert_no_orphans(folder)
    for pid in health["serving_pids"]:
        assert not procfs.alive(pid), f"worker {pid} outlived the experiment"


def test_a_command_that_dies_at_start_up_is_one_sentence_and_leaves_nothing(tmp_path):
    marker = f"stair-stepper-test-{os.getpid()}"
    leftover = f"import time; time.sleep(300)  # {marker}"
    script = (
        f"import subprocess, sys; subprocess.Popen([sys.executable, '-c', {leftover!r}]); "
        "print('starting'); print('fatal: cannot open config.toml', flush=True); sys.exit(3)"
    )
    command = f'{sys.executable} -c "{script}" --port {{port}}'
    folder = tmp_path / "r"
    done = experiment("--command", command, "--allocators", "glibc", *SMALL, "--out", str(folder))
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert "Traceback" not in done.stderr
    assert "the glibc command exited at start-up: fatal: cannot open config.toml" in lines[-1]

    def left() -> bool:  # a /proc scan, not pgrep: the Nix build sandbox has no procps
        for entry in Path("/proc").iterdir():
            try:
                if entry.name.isdigit() and marker.encode() in (entry / "cmdline").read_bytes():
                    return True
            except OSError:
                continue
        return False

    assert wait_until(lambda: not left(), 5), "the command's child outlived the experiment"


def test_service_mistakes_are_one_sentence(tmp_path):
    cases = [
        (("--app", "examples.nothing_here:app"), "cannot import examples.nothing_here"),
        (("--app", "examples.asgi_app:nope"), "has no attribute nope"),
        (("--app", "examples.asgi_app"), "wants MODULE:ATTR"),
        (("--app", "examples.asgi_app:app", "--command", "x {port}"), "not both"),
        (("--command", "server --listen 8080"), "give --port N"),
        (("--health-path", "/ping"), "goes with --command"),
    ]
    for args, words in cases:
        done = experiment(*args, "--preset", "quick", "--out", str(tmp_path / "never"))
        assert done.returncode == 2, (args, done.stderr)
        assert words in done.stderr and "Traceback" not in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "never").exists()


def test_an_app_gets_the_same_endpoints_through_hypercorn_workers():
    args = ("--app", "examples.wsgi_app:application", "--app-dir", str(ROOT), "--workers", "2")
    with start_server("jemalloc", extra_args=args) as server:
        pids = {get(server.base_url + client.HEALTH)[1]["pid"] for _ in range(20)}
        assert server.get("/ping") == {"ok": True}
        assert len(pids) >= 1 and server.process.pid not in pids  # workers, not the master
        for pid in pids:
            assert "libjemalloc" in " ".join(
                line for line in Path(f"/proc/{pid}/maps").read_text().splitlines()
            )


# A server that binds the port it is given on its command line (no {port} to fill in) and
# writes what it found in its environment: the user's setting and the variant's LD_PRELOAD.
FIXED_PORT_SERVER = """
import http.server, os, sys
with open(sys.argv[2], "w") as seen:
    seen.write(os.environ.get("MY_SETTING", "") + "|" + os.environ.get("LD_PRELOAD", ""))
server = http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])),
                                         http.server.SimpleHTTPRequestHandler)
server.serve_forever()
"""


def test_a_fixed_port_command_gets_the_user_s_environment_and_the_allocator(tmp_path):
    from stair_stepper.experiment.command_server import free_port

    script, seen = tmp_path / "server.py", tmp_path / "seen.txt"
    script.write_text(FIXED_PORT_SERVER)
    bench = tmp_path / "get.yml"
    bench.write_text(
        "base: 'http://localhost:9'\niterations: 16\nconcurrency: 4\nplan:\n"
        "  - name: listing\n    request:\n      url: /\n"
    )
    port = free_port()
    folder = tmp_path / "r"
    done = experiment(
        "--command",
        f"{sys.executable} {script} {port} {seen}",
        "--port",
        str(port),
        "--benchmark",
        str(bench),
        "--allocators",
        "jemalloc",
        "--preset",
        "quick",
        "--no-plot",
        "--out",
        str(folder),
        env={"MY_SETTING": "from-the-user"},
    )
    assert done.returncode == 0, done.stderr
    setting, preload = seen.read_text().split("|")
    assert setting == "from-the-user" and "libjemalloc" in preload
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["variants"]["jemalloc"]["url"] == f"http://127.0.0.1:{port}"
    assert (folder / "jemalloc.batches.csv").read_text().splitlines()[1].split(",")[5] == "0"
    assert_no_orphans(folder)
    refused = experiment(
        "--command",
        f"{sys.executable} {script} {port} {seen}",
        "--port",
        str(port),
        "--allocators",
        "glibc,jemalloc",
        "--parallel",
        "--out",
        str(tmp_path / "never"),
    )
    assert refused.returncode == 2 and "cannot run side by side" in refused.stderr


def test_a_fixed_port_command_runs_the_default_preset_one_variant_after_another(tmp_path):
    """The default preset runs side by side; a command that binds one fixed port cannot, so
    its variants run one after another, and the run says so in one line."""
    from stair_stepper.experiment.command_server import free_port

    script, seen = tmp_path / "server.py", tmp_path / "seen.txt"
    script.write_text(FIXED_PORT_SERVER)
    bench = tmp_path / "get.yml"
    bench.write_text(
        "base: 'http://localhost:9'\niterations: 8\nconcurrency: 2\nplan:\n"
        "  - name: listing\n    request:\n      url: /\n"
    )
    port = free_port()
    folder = tmp_path / "r"
    done = experiment(
        "--command",
        f"{sys.executable} {script} {port} {seen}",
        "--port",
        str(port),
        "--benchmark",
        str(bench),
        "--allocators",
        "glibc,jemalloc",
        "--batches",
        "1",
        "--no-plot",
        "--out",
        str(folder),
    )
    assert done.returncode == 0, done.stderr
    said = [line for line in done.stderr.splitlines() if f"fixed port {port}" in line]
    assert said and "run one after another" in said[0], done.stderr
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["config"]["preset"] == "contrast" and meta["config"]["parallel"] is False
    glibc = read_trace(folder / "glibc.trace.csv").column("wall_time")
    jemalloc = read_trace(folder / "jemalloc.trace.csv").column("wall_time")
    assert glibc[-1] < jemalloc[0]  # one after another
    assert_no_orphans(folder)


@pytest.mark.parametrize("preset", ["contrast", "seed", "arenas", "quick"])
def test_parallel_and_no_parallel_work_on_every_preset(preset):
    import argparse

    from stair_stepper.experiment import command as exp

    parser = argparse.ArgumentParser()
    exp.add_arguments(parser)
    for flag, expected in (("--no-parallel", False), ("--parallel", True)):
        config = exp.config_from_args(parser.parse_args(["--preset", preset, flag]))
        assert config.parallel is expected and config.preset == preset


# A server that is not Python: PYTHONMALLOC reaches its environment and does nothing.
PERL_SERVER = r"""
use IO::Socket::INET;
my $server = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => $ARGV[0],
                                   Listen => 64, ReuseAddr => 1) or die "listen: $!";
while (my $client = $server->accept) {
    while (my $line = <$client>) { last if $line =~ /^\r?\n$/; }
    print $client "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";
    close $client;
}
"""


def test_a_command_that_is_not_python_is_not_said_to_run_with_pythonmalloc(tmp_path):
    import shutil

    perl = shutil.which("perl")
    if perl is None:
        pytest.skip("no perl here for a server that is not Python")
    script = tmp_path / "server.pl"
    script.write_text(PERL_SERVER)
    bench = tmp_path / "get.yml"
    bench.write_text(
        "base: 'http://localhost:9'\niterations: 4\nconcurrency: 1\nplan:\n"
        "  - name: ok\n    request:\n      url: /\n"
    )
    folder = tmp_path / "r"
    done = experiment(
        "--command",
        f"{perl} {script} {{port}}",
        "--benchmark",
        str(bench),
        "--allocators",
        "glibc",
        "--preset",
        "quick",
        "--out",
        str(folder),
    )
    assert done.returncode == 0, done.stderr
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["variants"]["glibc"]["health"]["python"] is False
    assert "PYTHONMALLOC" not in (folder / "summary.md").read_text()
    assert "PYTHONMALLOC" not in (folder / "memory.svg").read_text()
    assert "PYTHONMALLOC" not in done.stderr.splitlines()[0]
    python = experiment(
        "--command",
        f"{sys.executable} -m http.server --bind 127.0.0.1 {{port}}",
        "--benchmark",
        str(bench),
        "--allocators",
        "glibc",
        "--preset",
        "quick",
        "--no-plot",
        "--out",
        str(tmp_path / "py"),
    )
    assert python.returncode == 0, python.stderr
    meta = json.loads((tmp_path / "py" / "meta.json").read_text())
    assert meta["variants"]["glibc"]["health"]["python"] is True
    assert "PYTHONMALLOC=malloc" in (tmp_path / "py" / "summary.md").read_text()

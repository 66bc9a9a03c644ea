"""The widget service, served by a real Hypercorn on an ephemeral loopback port."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import cli, get, needs_jemalloc, post

from stair_stepper import allocators
from stair_stepper.errors import UserError
from stair_stepper.experiment.launch import start_server


def widget(payload) -> bytes:
    return json.dumps({"eventType": "mem-test", "payload": payload}).encode()


def test_widget_contract_and_exact_size(glibc_server):
    payload = {"body": [{"name": "Ada", "tags": ["a", "b"], "n": 1.5, "ok": True, "x": None}]}
    status, answer = post(glibc_server.base_url + "/widgets", widget(payload))
    assert status == 201
    assert answer["size"] == len(json.dumps(payload, separators=(",", ":")))
    assert len(answer["id"]) == 36 and answer["id"][14] == "4"  # a uuid4


def test_size_counts_ascii_escapes_like_compact_json(glibc_server):
    payload = {"name": "Zoë – ünïcode", "list": [1, 2, 3]}
    status, answer = post(glibc_server.base_url + "/widgets", widget(payload))
    assert status == 201
    assert answer["size"] == len(json.dumps(payload, separators=(",", ":")))


BAD_INPUTS = {
    "malformed JSON": (b'{"eventType": "x", "payload": ', "application/json", 400),
    "not an object": (b"[1, 2, 3]", "application/json", 400),
    "missing payload": (b'{"eventType": "x"}', "application/json", 400),
    "100,000 levels": (
        b'{"payload": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        "application/json",
        400,
    ),
    "900 levels (parses, too deep to copy)": (
        b'{"payload": ' + b"[" * 900 + b"]" * 900 + b"}",
        "application/json",
        400,
    ),
    "5,000-digit integer": (b'{"payload": ' + b"7" * 5000 + b"}", "application/json", 400),
    "NaN": (b'{"payload": NaN}', "application/json", 400),
    "invalid UTF-8": (b'{"payload": "\xff\xfe"}', "application/json", 400),
    "wrong content type": (b'{"payload": 1}', "text/plain", 415),
    "empty body": (b"", "application/json", 400),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_a_4xx_json_error_and_the_server_goes_on(glibc_server, case):
    body, content_type, expected = BAD_INPUTS[case]
    status, answer = post(glibc_server.base_url + "/widgets", body, content_type)
    assert status == expected
    assert set(answer) == {"error"} and answer["error"].endswith(".")
    assert "\n" not in answer["error"]
    assert get(glibc_server.base_url + "/healthz")[0] == 200


def test_get_widgets_is_405_json(glibc_server):
    status, answer = get(glibc_server.base_url + "/widgets")
    assert status == 405 and "POST" in answer["error"]


def test_unknown_path_is_404_json(glibc_server):
    status, answer = get(glibc_server.base_url + "/nope")
    assert status == 404 and "error" in answer


def post_oversized(base_url: str, body: bytes) -> tuple[int, dict]:
    """POST like a real client that keeps uploading until the server answers.

    The server answers 413 from the Content-Length alone and closes; a client
    that insists on sending everything first (urllib) may hit a broken pipe
    before it reads that answer. So: send in chunks, stop once there is an
    answer to read, and read it.
    """
    import select
    from urllib.parse import urlsplit

    parts = urlsplit(base_url)
    head = (
        f"POST /widgets HTTP/1.1\r\nHost: {parts.hostname}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.sendall(head)
        sent = 0
        try:
            while sent < len(body) and not select.select([sock], [], [], 0)[0]:
                sent += sock.send(body[sent : sent + 65536])
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
                if b"\r\n\r\n" in answer:
                    header, _, rest = answer.partition(b"\r\n\r\n")
                    length = int(header.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                    if len(rest) >= length:
                        break
        except ConnectionResetError:
            pass
    header, _, rest = answer.partition(b"\r\n\r\n")
    return int(header.split()[1]), json.loads(rest)


def test_body_over_the_limit_is_413(glibc_server):
    big = widget({"blob": "x" * 3_100_000})  # the fixture's limit is 3,000,000 bytes
    status, answer = post_oversized(glibc_server.base_url, big)
    assert status == 413 and "3000000" in answer["error"]
    assert get(glibc_server.base_url + "/healthz")[0] == 200
    fits = widget({"blob": "x" * 2_000_000})
    assert post(glibc_server.base_url + "/widgets", fits)[0] == 201


def test_a_server_without_a_limit_flag_refuses_bodies_over_64_mib():
    """The README's table: with no --max-body-bytes and no variable, a body over 64 MiB gets 413
    (from its Content-Length, before the body is read) and one of 64 MiB fits the limit."""
    limit = 64 * 2**20
    with start_server("glibc", extra_args=("--sleep-ms", "0")) as server:
        status, answer = post_oversized(server.base_url, b"x" * (limit + 1))
        assert status == 413 and f"limit of {limit} bytes" in answer["error"]
        padding = limit - len(widget({"blob": ""}))
        status, _ = post(server.base_url + "/widgets", widget({"blob": "x" * padding}), timeout=120)
        assert status == 201


def test_sleep_ms_is_honoured():
    with start_server("glibc", extra_args=("--sleep-ms", "300")) as server:
        assert server.get("/healthz")["sleep_ms"] == 300
        started = time.monotonic()
        assert post(server.base_url + "/widgets", widget({"a": 1}))[0] == 201
        assert time.monotonic() - started >= 0.3


def test_sleep_ms_from_the_environment():
    import os

    env = dict(os.environ, SLEEP_MS="7")
    with start_server("glibc", env=env) as server:
        assert server.get("/healthz")["sleep_ms"] == 7


@pytest.mark.parametrize("bad", ["-1", "abc", "1.5", "+3"])
def test_bad_sleep_ms_stops_the_server_at_start_up(bad):
    done = _serve_exit("--bind", "127.0.0.1:0", env={"SLEEP_MS": bad})
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"stair-stepper: SLEEP_MS must be a non-negative integer, got {bad!r}."
    )


def test_glibc_variant_is_proven_from_maps(glibc_server):
    assert glibc_server.health["allocator"] == "glibc"
    assert glibc_server.health["malloc_provider"].endswith("libc.so.6")
    assert allocators.allocator_in_maps(glibc_server.pid) == "glibc"


@needs_jemalloc
def test_jemalloc_variant_is_proven_from_maps(jemalloc_server):
    assert jemalloc_server.health["allocator"] == "jemalloc"
    assert "libjemalloc" in jemalloc_server.health["malloc_provider"]
    assert allocators.allocator_in_maps(jemalloc_server.pid) == "jemalloc"
    assert any("libjemalloc" in p for p in allocators.mapped_libraries(jemalloc_server.pid))


def test_service_never_loads_numpy_or_matplotlib(glibc_server):
    post(glibc_server.base_url + "/widgets", widget({"a": 1}))
    loaded = " ".join(allocators.mapped_libraries(glibc_server.pid))
    assert "numpy" not in loaded and "matplotlib" not in loaded


def test_memory_numbers_are_plausible_glibc(glibc_server):
    status, mem = get(glibc_server.base_url + "/debug/memory")
    assert status == 200 and mem["allocator"] == "glibc"
    assert 0 < mem["live_bytes"] <= mem["held_bytes"]
    assert mem["held_bytes"] <= mem["rss_bytes"] * 1.5
    details = mem["details"]
    assert details["in_use_bytes"] + details["free_in_heap_bytes"] == details["arena_bytes"]


@needs_jemalloc
def test_memory_numbers_are_plausible_jemalloc(jemalloc_server):
    post(jemalloc_server.base_url + "/widgets", widget({"a": list(range(1000))}))
    status, mem = get(jemalloc_server.base_url + "/debug/memory")
    assert status == 200 and mem["allocator"] == "jemalloc"
    d = mem["details"]
    assert 0 < d["allocated_bytes"] <= d["active_bytes"] <= d["resident_bytes"] <= d["mapped_bytes"]
    assert mem["live_bytes"] == d["allocated_bytes"] and mem["held_bytes"] == d["resident_bytes"]
    assert d["resident_bytes"] <= mem["rss_bytes"]


def test_trim_returns_glibc_free_space_after_a_burst_of_large_requests():
    big = widget({"body": [{"k": "v" * 200, "n": i} for i in range(8000)]})  # ~1.8 MB
    args = ("--sleep-ms", "200", "--python-malloc", "malloc")
    with start_server("glibc", extra_args=args) as server:
        url = server.base_url + "/widgets"
        with ThreadPoolExecutor(16) as pool:
            statuses = list(pool.map(lambda _: post(url, big)[0], range(32)))
        assert statuses == [201] * 32
        before = server.get("/debug/memory")
        trimmed = server.post("/debug/trim")
        after = server.get("/debug/memory")
    assert trimmed["call"] == "malloc_trim(0)"
    free_before = trimmed["before"]["details"]["free_in_heap_bytes"]
    free_after = trimmed["after"]["details"]["free_in_heap_bytes"]
    # The burst left free space inside glibc's heap ...
    assert before["details"]["free_in_heap_bytes"] > 10 * 2**20
    # ... malloc_trim returned the top of the heap (free-in-heap falls by that much) ...
    assert free_after < free_before
    assert trimmed["after"]["details"]["top_releasable_bytes"] < 2**20
    # ... and handed the free pages inside it back with MADV_DONTNEED: glibc still counts them
    # as free chunks, but RSS fell by most of the free space.
    assert trimmed["rss_before_bytes"] - trimmed["rss_after_bytes"] > 0.5 * free_before
    assert after["rss_bytes"] < before["rss_bytes"]


def test_offload_threads_serve_the_same_contract():
    with start_server("glibc", extra_args=("--sleep-ms", "0", "--offload-threads", "4")) as s:
        assert s.get("/healthz")["offload_threads"] == 4
        payload = {"x": ["y"] * 100}
        status, answer = post(s.base_url + "/widgets", widget(payload))
        assert status == 201 and answer["size"] == len(json.dumps(payload, separators=(",", ":")))
        assert post(s.base_url + "/widgets", b"[1]")[0] == 400


def test_localhost_means_both_loopback_addresses():
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    with start_server("glibc", host="localhost") as server:
        port = int(server.base_url.rsplit(":", 1)[1])
        assert get(f"http://127.0.0.1:{port}/healthz")[0] == 200
        try:
            assert get(f"http://[::1]:{port}/healthz")[0] == 200
        except OSError:
            pytest.skip("::1 is not reachable here")


def _serve_exit(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return cli("serve", *args, env=env, timeout=30)


def test_port_in_use_is_one_sentence():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = _serve_exit("--bind", f"127.0.0.1:{port}")
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"stair-stepper: port {port} on 127.0.0.1 is already in use (127.0.0.1:{port})."
    )


def test_missing_allocator_library_is_one_sentence():
    done = _serve_exit("--allocator", "jemalloc", env={"STAIR_STEPPER_JEMALLOC": "/nope/lib.so"})
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0
    assert "STAIR_STEPPER_JEMALLOC points at /nope/lib.so" in done.stderr


def test_uninstalled_allocator_names_the_package():
    class Ghost(allocators.Allocator):  # no name: not registered
        env_var = "STAIR_STEPPER_GHOST"
        sonames = ("libghost.so.9",)
        packages = ("libghost9", "libghost9t64")

    with pytest.raises(UserError) as info:
        allocators.require_library(Ghost(), environ={})
    assert "package libghost9 or libghost9t64 (apt-get install libghost9)" in str(info.value)
    assert "ghost" not in allocators.ALLOCATORS


def test_unknown_allocator_is_one_sentence():
    done = _serve_exit("--allocator", "hoard")
    assert done.returncode == 2
    known = ", ".join(allocators.VARIANTS)  # every allocator module's built-in variants
    assert "glibc, glibc+arena2, jemalloc, jemalloc+bg, mimalloc" in known
    assert done.stderr.strip() == (
        f"stair-stepper: unknown allocator 'hoard'; choose one of: {known}, or write a variant "
        "as 'NAME=ALLOCATOR VAR=VALUE …'."
    )


@needs_jemalloc
def test_refuses_to_run_under_a_wrong_label():
    jemalloc = str(allocators.find_library(allocators.ALLOCATORS["jemalloc"]))
    done = _serve_exit(
        "--allocator",
        "glibc",
        "--bind",
        "127.0.0.1:0",
        env={"STAIR_STEPPER_SERVE_CHILD": "glibc", "LD_PRELOAD": jemalloc},
    )
    assert done.returncode == 2
    assert "refusing to run under a wrong label" in done.stderr


def test_several_hypercorn_workers_serve_from_their_own_pids():
    with start_server("glibc", extra_args=("--workers", "2", "--sleep-ms", "0")) as server:
        assert server.pid != server.process.pid
        assert post(server.base_url + "/widgets", widget({"a": 1}))[0] == 201


@pytest.mark.parametrize("variant", ["mimalloc", "tcmalloc", "jemalloc+bg", "glibc+arena2"])
def test_other_variants_are_proven_and_report_their_accounting(variant):
    var = allocators.variant(variant)
    if var.allocator.preloaded and allocators.find_library(var.allocator) is None:
        pytest.skip(f"{var.allocator.package} is not installed")
    with start_server(variant, extra_args=("--sleep-ms", "0")) as server:
        assert server.health["allocator"] == var.allocator.name
        assert server.health["variant"] == variant
        assert allocators.allocator_in_maps(server.pid) == var.allocator.name
        environ = Path(f"/proc/{server.pid}/environ").read_bytes().split(b"\0")
        for key, value in var.env.items():
            assert f"{key}={value}".encode() in environ
        assert post(server.base_url + "/widgets", widget({"a": list(range(100))}))[0] == 201
        mem = server.get("/debug/memory")
        assert mem["held_bytes"] and mem["held_bytes"] > 0
        if mem["live_bytes"] is not None:  # mimalloc has no cheap live count: null, not invented
            assert 0 < mem["live_bytes"] <= mem["held_bytes"]
        else:
            assert variant == "mimalloc"
        trimmed = server.post("/debug/trim")
        assert trimmed["call"] and trimmed["rss_after_bytes"] > 0


def test_a_question_says_what_asking_cost_by_the_clock_and_in_cpu(glibc_server):
    """The served process times each question twice: the wall time it held the handler and
    its own CPU. On busy cores the wall time also counts waiting for a core or the GIL (the
    allocator's ctypes calls release it), so a probe's cost is its CPU; CPU never exceeds the
    wall time of the same call (the two clocks are read in the same order around it)."""
    status, mem = get(glibc_server.base_url + "/__stair_stepper__/memory?structure=1")
    assert status == 200
    for wall, cpu in (("accounting_s", "accounting_cpu_s"), ("probe_s", "probe_cpu_s")):
        assert 0 < mem[cpu] <= mem[wall] + 1e-4, (wall, mem[wall], mem[cpu])

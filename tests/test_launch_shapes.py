"""Our command works however Python was set up to find it, as nixpkgs builds it included.

Every child we start (the LD_PRELOAD re-exec, the experiment's servers, the
allocator probes, Hypercorn's workers) must import what the parent imports.
Here the CLI runs through a script shaped like nixpkgs' wrapped application
(tests/nixpkgs_shape.py): a bare interpreter, the site dirs added inside the
script, no PYTHONPATH. No Nix needed.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
from conftest import needs_jemalloc, serve_flags
from nixpkgs_shape import (
    RUNTIME,
    SITE,
    bare_interpreter,
    clean_env,
    dependencies_site,
    editable_site,
    install_package,
    package_store_paths,
    with_packages,
    wrap_application,
)

from stair_stepper import allocators
from stair_stepper.load.client import Client


@pytest.fixture(scope="module")
def nix_shaped(tmp_path_factory) -> tuple[Path, Path]:
    """(the wrapped ``stair-stepper``, the bare interpreter it runs on)."""
    root = tmp_path_factory.mktemp("nix-shaped")
    try:
        bare = bare_interpreter(root / "python3")
    except subprocess.CalledProcessError:
        pytest.skip("cannot make a bare interpreter here (python -m venv failed)")
    sites = [install_package(root / "app-site"), dependencies_site(root / "deps-site")]
    wrapper = wrap_application(root / "bin", "stair-stepper", bare, sites, "stair_stepper.cli:main")
    return wrapper, bare


def run(command: list[str], timeout: float = 180, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        command, env=clean_env(), capture_output=True, text=True, timeout=timeout, **kw
    )


def test_the_bare_interpreter_really_is_bare(nix_shaped):
    """Otherwise the tests below could not fail."""
    _, bare = nix_shaped
    for module in ("stair_stepper", "quart", "hypercorn"):
        done = run([str(bare), "-c", f"import {module}"])
        assert done.returncode != 0, f"{module} importable without the wrapper's site dirs"


def serve_once(wrapper: Path, tmp_path: Path, *args: str) -> dict:
    """Start ``serve`` through the wrapper, read /healthz and the maps, stop it."""
    ready = tmp_path / "ready.json"
    log = tmp_path / "serve.log"
    command = [str(wrapper), "serve", *serve_flags(ready), *args]
    with open(log, "w") as handle:
        process = subprocess.Popen(command, env=clean_env(), stdout=handle, stderr=handle)
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert process.poll() is None, f"serve exited: {log.read_text()[-2000:]}"
            assert time.monotonic() < deadline, "serve never became ready"
            time.sleep(0.05)
        url = json.loads(ready.read_text())["urls"][0]
        while True:
            try:
                health = Client(url).get("/healthz", timeout=5)
                break
            except OSError:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.05)
        health["maps"] = allocators.allocator_in_maps(health["pid"])
        health["memory"] = Client(url).get("/debug/memory")
        return health
    finally:
        process.terminate()
        process.wait(30)


@needs_jemalloc
def test_serve_jemalloc_through_the_nixpkgs_wrapper(nix_shaped, tmp_path):
    health = serve_once(nix_shaped[0], tmp_path, "--allocator", "jemalloc")
    assert health["allocator"] == "jemalloc" and health["maps"] == "jemalloc"
    assert health["memory"]["live_bytes"] > 0


def test_serve_glibc_through_the_nixpkgs_wrapper(nix_shaped, tmp_path):
    health = serve_once(nix_shaped[0], tmp_path, "--allocator", "glibc")
    assert health["allocator"] == "glibc" and health["maps"] == "glibc"


def test_hypercorn_workers_through_the_nixpkgs_wrapper(nix_shaped, tmp_path):
    """Workers are spawned by multiprocessing from the re-executed child."""
    health = serve_once(nix_shaped[0], tmp_path, "--allocator", "glibc", "--workers", "2")
    assert health["allocator"] == "glibc" and health["maps"] == "glibc"


def test_allocators_through_the_nixpkgs_wrapper(nix_shaped):
    done = run([str(nix_shaped[0]), "allocators"])
    assert done.returncode == 0, done.stderr
    rows = {line.split()[0]: line.split()[1] for line in done.stdout.splitlines()[1:]}
    assert rows["glibc"] == "yes"
    for name in ("jemalloc", "mimalloc", "tcmalloc"):
        if allocators.find_library(allocators.ALLOCATORS[name]):
            assert rows[name] == "yes", done.stdout


@needs_jemalloc
def test_experiment_through_the_nixpkgs_wrapper(nix_shaped, tmp_path):
    out = tmp_path / "run"
    root = Path(__file__).resolve().parent.parent
    done = run(
        [
            str(nix_shaped[0]),
            "experiment",
            "--preset",
            "quick",
            "--allocators",
            "glibc,jemalloc",
            "--no-plot",
            "--out",
            str(out),
        ],
        cwd=root,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    meta = json.loads((out / "meta.json").read_text())
    assert meta["status"] == "complete"
    assert {v: meta["variants"][v]["health"]["allocator"] for v in ("glibc", "jemalloc")} == {
        "glibc": "glibc",
        "jemalloc": "jemalloc",
    }


@pytest.fixture(scope="module")
def with_packages_env(tmp_path_factory) -> Path:
    """``python.withPackages`` of stair-stepper and its dependencies, buildEnv-shaped: one store
    path per package, the interpreter a binary wrapper (tests/nixpkgs_shape.py)."""
    store = tmp_path_factory.mktemp("store")
    app = store / "stair-stepper"
    install_package(app / SITE)
    try:
        return with_packages(store / "env", [app, *package_store_paths(store, RUNTIME)], store)
    except FileNotFoundError as exc:  # no C compiler (the build sandbox has none)
        pytest.skip(str(exc))


def test_with_packages_interpreter_serves(with_packages_env, tmp_path):
    """``python.withPackages``: the interpreter sees the packages without PYTHONPATH, and so do
    the children it starts with ``sys.executable`` (the LD_PRELOAD re-exec)."""
    health = serve_once_with(with_packages_env, tmp_path)
    assert health["allocator"] == "glibc" and health["maps"] == "glibc"


def test_meta_json_names_the_glibc_that_runs_under_with_packages(with_packages_env):
    """Under withPackages ``sys.executable`` is a small C wrapper; the version recorded must be
    the running C library's (``gnu_get_libc_version``), not a symbol version in a binary."""
    probe = (
        "import os, sys; from stair_stepper.experiment import provenance; "
        "print(provenance.collect()['glibc']); print(os.confstr('CS_GNU_LIBC_VERSION')); "
        "print(sys.executable)"
    )
    done = run([str(with_packages_env), "-c", probe])
    assert done.returncode == 0, done.stderr
    recorded, running, executable = done.stdout.split("\n")[:3]
    assert executable == str(with_packages_env)  # the wrapper, as under nixpkgs
    assert f"glibc {recorded}" == running


def serve_once_with(python: Path, tmp_path: Path) -> dict:
    script = tmp_path / "stair-stepper"
    script.write_text(f'#!/bin/sh\nexec {python} -m stair_stepper "$@"\n')
    script.chmod(0o755)
    return serve_once(script, tmp_path, "--allocator", "glibc")


@needs_jemalloc
def test_an_editable_install_s_importing_pth_reaches_the_re_executed_child(tmp_path):
    """``pip install -e``'s ``.pth`` imports its finder: the child's bootstrap must put the site
    folder on sys.path before that line runs, or the LD_PRELOAD re-exec cannot import us."""
    pytest.importorskip("setuptools", reason="setuptools builds the editable install")
    bare = bare_interpreter(tmp_path / "python3")
    work = tmp_path / "checkout"
    work.mkdir()
    sites = [editable_site(tmp_path / "app-site", work), dependencies_site(tmp_path / "deps")]
    assert any(p.suffix == ".pth" and "import" in p.read_text() for p in sites[0].iterdir())
    wrapper = wrap_application(
        tmp_path / "bin", "stair-stepper", bare, sites, "stair_stepper.cli:main"
    )
    health = serve_once(wrapper, tmp_path, "--allocator", "jemalloc")
    assert health["allocator"] == "jemalloc" and health["maps"] == "jemalloc"

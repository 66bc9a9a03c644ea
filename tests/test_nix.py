"""The Nix flake, checked as far as a machine without nixpkgs allows.

1. flake.nix parses (nix-instantiate --parse);
2. flake.lock is a well-formed version-7 lock pinning github NixOS/nixpkgs, and
   its ``original`` is the URL flake.nix asks for;
3. with the host-backed stand-in for nixpkgs (tests/nix/, clearly not the real
   thing), passed only through --override-input and --no-write-lock-file: the
   flake shows and evaluates every output, ``nix run .#jemalloc`` and
   ``.#glibc`` really serve with the allocator proven from /proc/<pid>/maps, and
   ``nix develop -c`` finds python, pytest and ruff (the stand-in has no drill).

A full ``nix flake check`` needs a machine that reaches nixpkgs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nixpkgs_shape
import pytest
from conftest import TINY, real_drill, serve_flags

from stair_stepper import allocators
from stair_stepper.load.client import Client

ROOT = Path(__file__).resolve().parent.parent
STANDIN = Path(__file__).resolve().parent / "nix" / "standin"
# No binary cache (none is reachable); no sandbox and builds as the calling user, because the
# stand-in's builders run the host's Python and copy the host's libraries.
NIX_CONFIG = (
    "experimental-features = nix-command flakes\nsubstituters =\nsandbox = false\n"
    "build-users-group =\n"
)

needs_nix = pytest.mark.skipif(shutil.which("nix") is None, reason="nix is not installed here")
pytestmark = pytest.mark.nix


def flake_url() -> dict:
    match = re.search(
        r'inputs\.nixpkgs\.url\s*=\s*"github:([^/"]+)/([^/"]+)/([^"]+)"',
        (ROOT / "flake.nix").read_text(),
    )
    assert match, "flake.nix has no github nixpkgs input"
    owner, repo, ref = match.groups()
    return {"owner": owner, "repo": repo, "ref": ref, "type": "github"}


def locked_rev() -> str:
    lock = json.loads((ROOT / "flake.lock").read_text())
    return lock["nodes"]["nixpkgs"]["locked"]["rev"]


def test_flake_lock_pins_nixpkgs():
    lock = json.loads((ROOT / "flake.lock").read_text())
    assert lock["version"] == 7
    root = lock["nodes"][lock["root"]]
    node = lock["nodes"][root["inputs"]["nixpkgs"]]
    locked = node["locked"]
    assert (locked["type"], locked["owner"], locked["repo"]) == ("github", "NixOS", "nixpkgs")
    assert re.fullmatch(r"[0-9a-f]{40}", locked["rev"])
    assert re.fullmatch(r"sha256-[A-Za-z0-9+/]{43}=", locked["narHash"])
    assert isinstance(locked["lastModified"], int) and locked["lastModified"] > 1_600_000_000
    assert node["original"] == flake_url()


@pytest.mark.skipif(shutil.which("nix-instantiate") is None, reason="nix is not installed here")
def test_flake_nix_parses():
    done = subprocess.run(
        ["nix-instantiate", "--parse", str(ROOT / "flake.nix")], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def standin(tmp_path_factory):
    """A copy of the stand-in with this host's paths in host.nix."""
    if shutil.which("nix") is None:
        pytest.skip("nix is not installed here")
    if not (ROOT / ".git").exists():
        pytest.skip("the flake is read from git: run from a checkout")
    folder = tmp_path_factory.mktemp("standin")
    shutil.copy(STANDIN / "flake.nix", folder / "flake.nix")
    # nixpkgs' pieces that our code depends on, modelled once in tests/nixpkgs_shape.py.
    bare = nixpkgs_shape.bare_interpreter(folder / "python3-bare")
    wanted = nixpkgs_shape.DEV_PYTHON
    deps = nixpkgs_shape.package_store_paths(folder / "pkgs", wanted)

    def lib(name: str) -> str:
        path = allocators.find_library(allocators.ALLOCATORS[name])
        return str(path.resolve()) if path else "/nonexistent"

    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    host = {
        "python": sys.executable,  # the build tool (pip), never the interpreter of an output
        "bare": str(bare),
        "depsSiteArgs": " ".join(f"--site-dir {d / nixpkgs_shape.SITE}" for d in deps),
        "shape": str(Path(nixpkgs_shape.__file__).resolve()),
        "drill": str(real_drill() or ""),
        "nixpkgsRev": locked_rev(),
        "pythonVersion": f"{sys.version_info.major}.{sys.version_info.minor}",
        "ruff": ruff or "/nonexistent",
        "jemalloc": lib("jemalloc"),
        "mimalloc": lib("mimalloc"),
        "tcmalloc": lib("tcmalloc"),
        "tbbmalloc": lib("tbbmalloc"),
    }
    body = "".join(f'  {k} = "{v}";\n' for k, v in host.items())
    (folder / "host.nix").write_text("{\n" + body + "}\n")
    return folder


def nix_env() -> dict:
    return dict(os.environ, NIX_CONFIG=NIX_CONFIG)


def nix_args(standin: Path) -> list[str]:
    return ["--override-input", "nixpkgs", f"path:{standin}", "--no-write-lock-file"]


def nix(
    standin: Path, command: str, *args: str, timeout: float = 600
) -> subprocess.CompletedProcess:
    """``nix COMMAND <stand-in flags> ARGS`` on the real flake, retried on stray SIGKILLs."""
    for _ in range(3):
        done = subprocess.run(
            ["nix", *command.split(), *nix_args(standin), *args],
            cwd=ROOT,
            env=nix_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if "signal 9" not in done.stderr:
            break
    return done


@needs_nix
def test_flake_show_lists_every_output(standin):
    lock_before = (ROOT / "flake.lock").read_bytes()
    done = nix(standin, "flake show", "--json")
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    for system in ("x86_64-linux", "aarch64-linux"):
        assert {
            "default",
            "stair-stepper",
            "drill",
            "glibc",
            "jemalloc",
            "mimalloc",
            "tcmalloc",
            "tbbmalloc",
            "experiment-python312",
        } <= set(shown["packages"][system])
        assert {
            "default",
            "experiment",
            "experiment-python312",
            "glibc",
            "jemalloc",
            "mimalloc",
            "tcmalloc",
            "tbbmalloc",
        } <= set(shown["apps"][system])
        assert set(shown["devShells"][system]) == {"default"}
        assert {"package", "tests", "ruff"} <= set(shown["checks"][system])
        assert shown["formatter"][system]["type"] == "derivation"
    assert (ROOT / "flake.lock").read_bytes() == lock_before  # never rewritten


@needs_nix
def test_flake_check_evaluates(standin):
    done = nix(standin, "flake check", "--no-build")
    assert done.returncode == 0, done.stderr


def _nix_run_serves(standin: Path, app: str, tmp_path: Path) -> dict:
    ready = tmp_path / f"{app}.ready.json"
    command = ["nix", "run", *nix_args(standin), f".#{app}", "--", *serve_flags(ready)]
    for _ in range(3):
        log = tmp_path / f"{app}.log"
        with open(log, "w") as handle:
            process = subprocess.Popen(
                command,
                cwd=ROOT,
                env=nix_env(),
                stdout=handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline and process.poll() is None and not ready.exists():
                time.sleep(0.2)
            if ready.exists():
                info = json.loads(ready.read_text())
                health = Client(info["urls"][0]).get("/healthz")
                health["maps"] = allocators.allocator_in_maps(health["pid"])
                return health
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(30)
        if "signal 9" not in log.read_text():
            break
    raise AssertionError(f"nix run .#{app} did not serve:\n{log.read_text()[-3000:]}")


@needs_nix
def test_nix_run_jemalloc_serves_on_jemalloc(standin, tmp_path):
    if allocators.find_library(allocators.ALLOCATORS["jemalloc"]) is None:
        pytest.skip("libjemalloc2 is not installed")
    health = _nix_run_serves(standin, "jemalloc", tmp_path)
    assert health["allocator"] == "jemalloc" and health["maps"] == "jemalloc"
    assert health["malloc_provider"].startswith("/nix/store/")  # the flake's library, not Debian's


@needs_nix
def test_nix_run_glibc_serves_on_glibc(standin, tmp_path):
    health = _nix_run_serves(standin, "glibc", tmp_path)
    assert health["allocator"] == "glibc" and health["maps"] == "glibc"


@needs_nix
def test_nix_develop_has_the_tools(standin):
    script = (
        "for tool in python pytest ruff drill; do command -v $tool; done; "
        "python -c 'import stair_stepper.analysis.summary'; "
        'echo "benchmark=${STAIR_STEPPER_BENCHMARK:-checkout}"; '
        "stair-stepper allocators"
    )
    done = nix(standin, "develop", "-c", "sh", "-c", script)
    assert done.returncode == 0, done.stderr
    found = done.stdout.split()
    assert [Path(p).name for p in found[:4]] == ["python", "pytest", "ruff", "drill"]
    assert "benchmark=checkout" in done.stdout  # the checkout's workload runs in the dev shell
    assert re.search(r"^jemalloc\s+yes\s.*/nix/store/", done.stdout, re.M), done.stdout
    if real_drill():
        version = nix(standin, "develop", "-c", "drill", "--version")
        assert version.stdout.startswith("drill 0.8"), version.stdout + version.stderr


@needs_nix
def test_nix_run_default_is_the_experiment_with_the_pinned_workload(standin, tmp_path):
    out = tmp_path / "run"
    args = [*TINY, "--no-plot", "--out", str(out)]
    for _ in range(3):
        done = subprocess.run(
            ["nix", "run", *nix_args(standin), f"git+file://{ROOT}", "--", *args],
            cwd=tmp_path,
            env=nix_env(),
            capture_output=True,
            text=True,
            timeout=600,
        )
        if "signal 9" not in done.stderr:
            break
    assert done.returncode == 0, done.stderr[-3000:]
    meta = json.loads((out / "meta.json").read_text())
    assert meta["status"] == "complete"
    assert meta["config"]["benchmark"].startswith("/nix/store/")  # the flake's copy of the workload
    assert meta["provenance"]["nixpkgs_rev"] == locked_rev()
    assert meta["provenance"]["nix"] == "run through the flake"
    assert (out / "glibc.trace.csv").exists() and (out / "summary.md").exists()


@needs_nix
def test_python312_app_plans_its_variants_under_the_pins_older_python(standin):
    """``nix run .#experiment-python312``: the extra variants name an interpreter the flake
    built with stair-stepper in it, and the run accepts it (the stand-in's python312 is the
    host's interpreter: the wiring is checked, not the version)."""
    done = nix(standin, "run", ".#experiment-python312", "--", "--dry-run", "--allocators", "glibc")
    assert done.returncode == 0, done.stderr[-3000:]
    plan = done.stdout
    assert "3 variants (glibc, glibc-py312, jemalloc-bg-py312)" in plan, plan
    for name in ("glibc-py312", "jemalloc-bg-py312"):
        assert re.search(
            rf"^variant {name}=\S+ .*python=/nix/store/\S+-env/bin/python$", plan, re.M
        ), plan

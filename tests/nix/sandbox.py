"""Run the test suite the way ``nix flake check`` runs ``checks.tests``: inside a model of
Nix's Linux build sandbox, made with bubblewrap (Debian's ``bubblewrap``; run as root).

    python tests/nix/sandbox.py [--drill PATH] [--keep DIR] [-- PYTEST ARGS]

nixpkgs and its binary cache are out of reach here, so nothing is built by Nix: a store is
made from this machine's parts (tests/nixpkgs_shape.py lays the Python parts out as
nixpkgs does), and the build script is ``checks.tests``' own text, read from flake.nix and
with its ``${…}`` filled in. Then it runs under these properties of the real sandbox, each
from Nix's source (github NixOS/nix; paths under src/libstore):

- only ``/bin/sh`` under ``/bin``: ``sandboxPaths`` holds ``/bin/sh`` alone (globals.cc,
  ``SANDBOX_SHELL``, a busybox); no ``/usr/bin/env``, no ``/bin/bash``, no ``/usr/bin``;
  bash is on ``PATH`` as stdenv's, in the store;
- the inputs' closure in the store and nothing else of the host
  (unix/build/chroot-derivation-builder.cc ``prepareSandbox``); the model's store is a
  folder ``…/nix/store`` seen at its own path (``NIX_STORE`` says which), so that the
  absolute symlinks buildEnv made resolve inside as they do outside;
- ``/etc`` holds ``passwd``, ``group`` (nixbld, uid 1000, gid 100) and ``hosts`` with just
  ``127.0.0.1 localhost`` and ``::1 localhost`` (unix/build/chroot.cc, linux/build/
  linux-derivation-builder.cc); no ``resolv.conf``, ``nsswitch.conf`` or ``ld.so.cache``;
- private user, mount, PID, IPC, UTS and network namespaces; the network has only the
  loopback interface, up; the host name is ``localhost`` (linux-derivation-builder.cc
  ``enterChroot``); a new ``/proc``, a minimal ``/dev`` with ``/dev/shm`` and ``/dev/pts``,
  no ``/sys``; a writable ``/tmp``;
- the environment is only Nix's (unix/build/derivation-builder.cc ``initEnv``):
  ``HOME=/homeless-shelter`` (absent), ``TMPDIR=TEMPDIR=TMP=TEMP=NIX_BUILD_TOP=PWD=/build``,
  ``NIX_STORE``, ``NIX_BUILD_CORES``, ``NIX_LOG_FD=2``, ``TERM=xterm-256color``, the
  derivation's own attributes, and stdenv's ``PATH`` of the inputs' ``bin`` folders then
  its own tools (pkgs/stdenv/generic/setup.sh), ``SOURCE_DATE_EPOCH``;
- the source is a read-only store path without ``.git`` (flake sources are git's tracked
  files; ``lib.fileset.toSource`` keeps the listed ones), copied to a writable ``work`` by
  the script itself, as ``checks.tests`` does; ``patchShebangs`` rewrites its scripts'
  interpreters to what ``PATH`` has (pkgs/build-support/setup-hooks/patch-shebangs.sh);
- the store itself is writable and sticky (unix/build/chroot.cc: ``chmod 01775``, group
  nixbld), every input in it read-only, and ``$out`` is *not* there: the builder must make
  it, and a build that exits 0 without it fails;
- the script runs as stdenv's default builder runs it (pkgs/stdenv/generic/
  default-builder.sh): ``set -o errexit -o nounset -o pipefail`` and ``shopt -s
  inherit_errexit``;
- the builder is PID 1 of its PID namespace (linux-derivation-builder.cc: ``CLONE_NEWPID``,
  "the build starts as PID 1"): orphans are reparented to it, not to an init;
- stdin is ``/dev/null``; stderr is a pseudo-terminal slave in raw mode and stdout a copy of
  it (unix/build/derivation-builder.cc ``openSlave``, unix/build/child.cc): ``isatty`` is
  true for both, so a test's colour and progress output is what the log gets;
- the interpreter's own files only: its store path when it has one of its own (a prefix
  like pyenv's), or, when it lives in ``/usr``, its binary, its standard library and
  libpython, never the rest of ``/usr``.

Not modelled (differences a test could meet, none that our code is known to depend on):
the system libraries sit at ``/usr/lib/x86_64-linux-gnu`` (only the inputs' closure, found
with ldd), not in per-library store paths with RUNPATHs; the interpreter is this machine's
Python 3.11 at its own path, not the pin's; package versions are this venv's; the build user
is mapped by bubblewrap, not a nixbld user with a uid range (inside, the store's files are
owned by the build user, who could chmod them; in Nix they belong to root); seccomp filters
(linux-derivation-builder.cc ``setupSeccomp``), cgroups, ``/dev/kvm`` and timing; no
``--option sandbox-paths`` extras. The expected skips are docs/nix.md's list, between the
``<!-- sandbox-skips -->`` markers: the run fails if the skips differ from it.
"""

from __future__ import annotations

import argparse
import json
import os
import pty
import re
import shutil
import subprocess
import sys
import tempfile
import tty
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(HERE.parent))
import nixpkgs_shape as shape  # noqa: E402  (tests/nixpkgs_shape.py)

#: what stdenv puts on PATH (pkgs/stdenv/generic/common-path.nix), Debian's packages of them
STDENV_TOOLS = (
    "coreutils findutils diffutils sed grep gawk tar gzip bzip2 xz-utils make bash patch"
).split()
SANDBOX_UID, SANDBOX_GID = 1000, 100  # linux-derivation-builder.cc sandboxUid/sandboxGid
BUILD_DIR = "/build"  # globals.cc sandboxBuildDir


def store_path(store: Path, name: str) -> Path:
    path = store / shape._store_name(name)
    path.mkdir(parents=True, exist_ok=True)
    return path


# --- reading flake.nix ------------------------------------------------------------------


def nix_string(flake: str, binding: str) -> str:
    """The text of ``binding = '' … '';`` in flake.nix (Nix's indented string, unindented)."""
    found = re.search(rf"\n(\s*){re.escape(binding)}\s*=\s*''\n(.*?)\n\s*'';", flake, re.S)
    if not found:
        raise SystemExit(f"sandbox model: flake.nix has no {binding} = '' … '';")
    return _unindent(found.group(2))


def tests_script(flake: str) -> str:
    """checks.tests' build script: the indented string after its runCommand's attributes."""
    found = re.search(
        r'runCommand "stair-stepper-tests".*?\}\s*\n\s*\'\'\n(.*?)\n\s*\'\';', flake, re.S
    )
    if not found:
        raise SystemExit('sandbox model: flake.nix has no runCommand "stair-stepper-tests"')
    return _unindent(found.group(1))


def _unindent(text: str) -> str:
    lines = text.split("\n")
    indent = min(len(line) - len(line.lstrip()) for line in lines if line.strip())
    return "\n".join(line[indent:] for line in lines) + "\n"


def fileset(flake: str, name: str) -> list[str]:
    """The ``./paths`` a fileset list names (``packageFiles = [ ./a ./b ];``)."""
    found = re.search(rf"{name}\s*=\s*\[(.*?)\];", flake, re.S)
    if not found:
        raise SystemExit(f"sandbox model: flake.nix has no {name} = [ … ];")
    return re.findall(r"\./([\w.-]+)", found.group(1))


def test_files(flake: str) -> list[str]:
    found = re.search(r"testSrc\s*=\s*source\s*\((.*?)\);", flake, re.S)
    if not found:
        raise SystemExit("sandbox model: flake.nix has no testSrc = source ( … );")
    names = re.findall(r"\./([\w.-]+)", found.group(1))
    return fileset(flake, "packageFiles") + fileset(flake, "workloadFiles") + names


def render(text: str, values: dict[str, str]) -> str:
    """Nix's interpolation: ``${expr}`` from ``values`` (an unknown one is an error), and the
    escape ``''${`` is a literal ``${``."""

    def one(match: re.Match) -> str:
        expr = match.group(1)
        if expr not in values:
            raise SystemExit(f"sandbox model: no value for ${{{expr}}} in flake.nix")
        return values[expr]

    text = text.replace("''${", "\0")
    return re.sub(r"\$\{([^}]*)\}", one, text).replace("\0", "${")


# --- the store ----------------------------------------------------------------------------


def copy_source(store: Path, names: list[str], name: str = "source") -> Path:
    """A store path of the checkout's tracked files under ``names``: what a git flake's
    ``lib.fileset.toSource`` gives (no .git, nothing untracked), read-only."""
    out = store_path(store, name)
    tracked = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "-z", "--", *names],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\0")
    for rel in filter(None, tracked):
        source = ROOT / rel
        if source.is_file():
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, out / rel)
    _read_only(out)
    return out


def _read_only(path: Path) -> None:
    for folder, _, files in os.walk(path):
        for name in files:
            p = Path(folder, name)
            p.chmod(p.stat().st_mode & 0o555)
    for folder, _, _ in sorted(os.walk(path), reverse=True):
        Path(folder).chmod(0o555)


def library(store: Path) -> Path:
    """``buildPythonPackage``: the package installed from pyproject.toml (a wheel's contents,
    dist-info included), not editable."""
    out = store_path(store, f"{shape.PYTHON_X_Y}-stair-stepper")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--no-cache-dir",
            "--target",
            str(out / shape.SITE),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    shutil.rmtree(out / shape.SITE / "bin", ignore_errors=True)
    return out


def program(store: Path, name: str, source: str | Path | None) -> Path:
    """A store path whose bin/NAME is a copy of ``source``."""
    out = store_path(store, name)
    (out / "bin").mkdir(exist_ok=True)
    if source:
        shutil.copy2(Path(source).resolve(), out / "bin" / name)
    return out


def stdenv_tools(store: Path) -> Path:
    """stdenv's own tools (coreutils, bash, sed …) in one store path's bin/."""
    out = store_path(store, "stdenv-tools")
    (out / "bin").mkdir(exist_ok=True)
    listed = subprocess.run(["dpkg", "-L", *STDENV_TOOLS], capture_output=True, text=True)
    for line in listed.stdout.splitlines():
        path = Path(line)
        if path.parent.name in ("bin", "sbin") and path.is_file() and os.access(path, os.X_OK):
            target = out / "bin" / path.name
            if not target.exists():
                shutil.copy2(path.resolve(), target)
    if not (out / "bin" / "sh").exists():
        (out / "bin" / "sh").symlink_to("bash")  # bash's package provides bin/sh
    return out


def allocator(store: Path, name: str, library_file: str) -> Path:
    from stair_stepper import allocators

    out = store_path(store, name)
    (out / "lib").mkdir(exist_ok=True)
    found = allocators.find_library(allocators.ALLOCATORS[name.split("-")[0]])
    if found:
        shutil.copy2(found.resolve(), out / "lib" / library_file)
    return out


def closure_libraries(roots: list[Path], into: Path) -> None:
    """Every shared library the ELF files under ``roots`` need (ldd), into one folder: what
    the dynamic linker of the sandbox finds in its default folder."""
    into.mkdir(parents=True, exist_ok=True)
    elves = []
    for root in roots:
        if root.is_file() and _is_elf(root):
            elves.append(root)
        for folder, _, files in os.walk(root):
            for name in files:
                path = Path(folder, name)
                if not path.is_symlink() and _is_elf(path):
                    elves.append(path)
    needed: set[Path] = set()
    for chunk in range(0, len(elves), 100):
        out = subprocess.run(
            ["ldd", *map(str, elves[chunk : chunk + 100])], capture_output=True, text=True
        )
        needed |= {Path(p) for p in re.findall(r"=> (/\S+) \(", out.stdout)}
    for lib in needed:
        if "/x86_64-linux-gnu/" in str(lib) or str(lib).startswith(("/lib", "/usr/lib")):
            target = into / lib.name
            if not target.exists():
                shutil.copy2(lib.resolve(), target)


def _is_elf(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            return handle.read(4) == b"\x7fELF"
    except OSError:
        return False


# --- the run ------------------------------------------------------------------------------


def build(work: Path, drill: str | None) -> dict:
    """The store, the script and the environment of checks.tests, under ``work``."""
    flake = (ROOT / "flake.nix").read_text()
    store = work / "nix" / "store"
    store.mkdir(parents=True)
    wanted = shape.DEV_PYTHON
    env_path = store / shape._store_name(f"{shape.PYTHON_X_Y}-env")
    python = shape.with_packages(env_path, shape.package_store_paths(store, wanted), store)
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    built = library(store)
    # buildFor's interpreter: python.withPackages (runtimeDeps ++ [ library ]), one for the
    # pin's python3 and one for python312. Not modelled: the second one's version (this
    # machine has one Python); the flake's wiring of it is what runs.
    runtime = shape.package_store_paths(store, [*shape.RUNTIME, "matplotlib"])
    pythons = {}
    for which in ("python3", "python312"):
        folder = store / shape._store_name(f"{which}-{shape.PYTHON_X_Y}-env")
        pythons[which] = shape.with_packages(folder, [*runtime, built], store).parent / "python"
    paths = {
        "python-env": env_path,
        "ruff": program(store, "ruff", ruff),
        "drill": program(store, "drill", drill),
        "stdenv": stdenv_tools(store),
        "library": built,
        "jemalloc": allocator(store, "jemalloc", "libjemalloc.so"),
        "mimalloc": allocator(store, "mimalloc", "libmimalloc.so"),
        "gperftools": allocator(store, "tcmalloc-gperftools", "libtcmalloc.so"),
        "tbb": allocator(store, "tbbmalloc-tbb", "libtbbmalloc_proxy.so"),
        "testSrc": copy_source(store, test_files(flake)),
        "workloadSrc": copy_source(store, fileset(flake, "workloadFiles"), "workload"),
    }
    out = store / shape._store_name("stair-stepper-tests")  # made by the build, not here
    rev = json.loads((ROOT / "flake.lock").read_text())["nodes"]["nixpkgs"]["locked"]["rev"]
    values = {
        "pkgs.jemalloc": str(paths["jemalloc"]),
        "pkgs.mimalloc": str(paths["mimalloc"]),
        "pkgs.gperftools": str(paths["gperftools"]),
        "pkgs.tbb_2022": str(paths["tbb"]),
        "pythons.python3.interpreter": str(pythons["python3"]),
        "pythons.python312.interpreter": str(pythons["python312"]),
        'nixpkgs.rev or "unknown"': rev,
        "workloadSrc": str(paths["workloadSrc"]),
        "testSrc": str(paths["testSrc"]),
        "library": str(paths["library"]),
        "python.sitePackages": shape.SITE,
    }
    values["libraryEnv"] = render(nix_string(flake, "libraryEnv"), values)
    values["workloadEnv"] = render(nix_string(flake, "workloadEnv"), values)
    script = render(tests_script(flake), values)
    interpreter = interpreter_files()
    closure_libraries([*paths.values(), *interpreter], work / "libs")
    inputs = [paths["python-env"], paths["ruff"], paths["drill"]]  # nativeBuildInputs
    for entry in store.iterdir():  # every input read-only, as the store's paths are
        _read_only(entry)
    store.chmod(0o1777)  # chroot.cc: 01775 root:nixbld; the build user may add $out
    return {
        "store": store,
        "out": out,
        "interpreter": interpreter,
        "script": PATCH_SHEBANGS + script,
        "python": python,
        "path": ":".join(f"{p}/bin" for p in [*inputs, paths["stdenv"]]),
        "bash": paths["stdenv"] / "bin" / "bash",
    }


def interpreter_files(base: Path | None = None, binary: Path | None = None) -> list[Path]:
    """What of an interpreter (default: this one) the sandbox sees: its own prefix when it
    has one (pyenv's, like a store path of its own), else (``/usr``, ``/usr/local``: shared
    with everything else) its binary, its standard library and its libpython alone."""
    base = base or Path(sys.base_prefix)
    if str(base) not in ("/usr", "/usr/local"):
        return [base]
    binary = binary or Path(getattr(sys, "_base_executable", sys.executable))
    version = re.search(r"python\d+\.\d+", binary.resolve().name)
    name = version.group(0) if version else shape.PYTHON_X_Y
    files = [binary, binary.resolve(), base / "lib" / name, *base.glob(f"lib/lib{name}*")]
    return sorted({f for f in files if f.exists()})


# stdenv's default builder (pkgs/stdenv/generic/default-builder.sh) before it sources setup:
# the build script runs under these.
STDENV_BUILDER = "set -o errexit -o nounset -o pipefail\nshopt -s inherit_errexit\n"

# Our model of stdenv's patchShebangs (pkgs/build-support/setup-hooks/patch-shebangs.sh):
# executable files only; "#!…/bin/env X" becomes the X on PATH, any other interpreter the one
# of its base name on PATH; interpreters already in the store are left alone.
PATCH_SHEBANGS = r"""
patchShebangs() {
  find "$@" -type f -perm -0100 | while read -r f; do
    head -c2 "$f" | grep -q '^#!' || continue
    read -r old arg0 args < <(head -n1 "$f" | cut -c3-)
    case "$old" in "$NIX_STORE"/*) continue ;; esac
    if [[ "$old" == */bin/env ]]; then new="$(type -P "$arg0")"; rest="$args"
    else new="$(type -P "$(basename "$old")")"; rest="$arg0 $args"; fi
    [ -n "$new" ] || continue
    line="#!$new $rest"; line="${line%"${line##*[![:space:]]}"}"
    sed -i "1 s|.*|$line|" "$f"
    echo "$f: interpreter directive changed to \"$line\""
  done
}
"""


def minimal(work: Path, interpreter: list[Path] | None = None) -> dict:
    """A model with stdenv's tools and an interpreter's files (``interpreter_files()``) and
    nothing else, for checking the sandbox's own properties (tests/test_sandbox_model.py)."""
    store = work / "nix" / "store"
    store.mkdir(parents=True)
    tools = stdenv_tools(store)
    interpreter = interpreter or interpreter_files()
    closure_libraries([tools, *interpreter], work / "libs")
    for entry in store.iterdir():
        _read_only(entry)
    store.chmod(0o1777)
    return {
        "store": store,
        "out": store / shape._store_name("minimal"),
        "interpreter": interpreter,
        "path": f"{tools}/bin",
        "bash": tools / "bin" / "bash",
    }


def run(work: Path, model: dict, script: str, echo: bool = False) -> tuple[int, str]:
    """The build: ``script`` as stdenv runs a build command, in the sandbox, its stdout and
    stderr one pseudo-terminal (raw, as Nix's ``openSlave`` makes it); the exit status, and
    the log with terminal escapes and carriage returns taken out. A build that exits 0
    without making ``$out`` failed, as Nix says (``builder … failed to produce output
    path``)."""
    master, slave = pty.openpty()
    tty.setraw(slave)
    command = bwrap_command(work, model, STDENV_BUILDER + script)
    with open(os.devnull, "rb") as nothing:
        process = subprocess.Popen(command, stdin=nothing, stdout=slave, stderr=slave)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: every end of the slave is closed
            break
        if not data:
            break
        chunks.append(data)
        if echo:
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
    code = process.wait()
    os.close(master)
    log = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", b"".join(chunks).decode(errors="replace"))
    log = log.replace("\r", "")
    if code == 0 and not model["out"].exists():
        code = 1
        log += f"sandbox model: builder failed to produce output path '{model['out']}'\n"
    return code, log


def bwrap_command(work: Path, model: dict, script: str) -> list[str]:
    etc = work / "etc"
    etc.mkdir(exist_ok=True)
    (etc / "passwd").write_text(
        f"root:x:0:0:Nix build user:{BUILD_DIR}:/noshell\n"
        f"nixbld:x:{SANDBOX_UID}:{SANDBOX_GID}:Nix build user:{BUILD_DIR}:/noshell\n"
        "nobody:x:65534:65534:Nobody:/:/noshell\n"
    )
    (etc / "group").write_text(f"root:x:0:\nnixbld:!:{SANDBOX_GID}:\nnogroup:x:65534:\n")
    (etc / "hosts").write_text("127.0.0.1 localhost\n::1 localhost\n")
    build = work / "build"
    build.mkdir(exist_ok=True)
    (build / ".attr-script").write_text(script)
    loader = Path("/lib64/ld-linux-x86-64.so.2").resolve()
    env = {
        "PATH": model["path"],
        "HOME": "/homeless-shelter",
        "NIX_STORE": str(model["store"]),
        "NIX_BUILD_CORES": str(os.cpu_count() or 1),
        "NIX_BUILD_TOP": BUILD_DIR,
        "TMPDIR": BUILD_DIR,
        "TEMPDIR": BUILD_DIR,
        "TMP": BUILD_DIR,
        "TEMP": BUILD_DIR,
        "PWD": BUILD_DIR,
        "NIX_LOG_FD": "2",
        "TERM": "xterm-256color",
        "out": str(model["out"]),
        "name": "stair-stepper-tests",
        "system": "x86_64-linux",
        "SOURCE_DATE_EPOCH": "315532800",
        "SHELL": str(model["bash"]),
    }
    command = [
        "bwrap",
        "--unshare-user",
        "--uid",
        str(SANDBOX_UID),
        "--gid",
        str(SANDBOX_GID),
        "--unshare-ipc",
        "--unshare-pid",
        "--unshare-net",
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--hostname",
        "localhost",
        "--die-with-parent",
        "--as-pid-1",
        "--new-session",
        "--clearenv",
        "--perms",
        "1777",
        "--tmpfs",
        "/tmp",  # first: the model may sit below /tmp
        "--bind",
        str(model["store"]),
        str(model["store"]),
        *(arg for path in model["interpreter"] for arg in ("--ro-bind", str(path), str(path))),
        "--ro-bind",
        str(work / "libs"),
        "/usr/lib/x86_64-linux-gnu",
        "--ro-bind",
        str(loader),
        "/usr/lib64/ld-linux-x86-64.so.2",
        "--symlink",
        "usr/lib",
        "/lib",
        "--symlink",
        "usr/lib64",
        "/lib64",
        "--ro-bind",
        shutil.which("busybox") or "/usr/bin/busybox",
        "/bin/sh",
        "--ro-bind",
        str(etc / "passwd"),
        "/etc/passwd",
        "--ro-bind",
        str(etc / "group"),
        "/etc/group",
        "--ro-bind",
        str(etc / "hosts"),
        "/etc/hosts",
        "--bind",
        str(build),
        BUILD_DIR,
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--chdir",
        BUILD_DIR,
    ]
    for key, value in env.items():
        command += ["--setenv", key, value]
    return [*command, str(model["bash"]), f"{BUILD_DIR}/.attr-script"]


def _quote(arg: str) -> str:
    return "'" + arg.replace("'", "'\\''") + "'"


def expected_skips() -> list[str]:
    """docs/nix.md's list of what skips in the real sandbox (one reason a bullet)."""
    readme = (ROOT / "docs" / "nix.md").read_text()
    found = re.search(r"<!-- sandbox-skips -->\n(.*?)<!-- /sandbox-skips -->", readme, re.S)
    if not found:
        raise SystemExit("sandbox model: docs/nix.md has no <!-- sandbox-skips --> list")
    # each bullet: "- what: `the reason pytest prints` (why)"
    return re.findall(r"^- [^\n]*?:\s+`([^`]+)`", found.group(1), re.M)


def seen_skips(output: str) -> list[str]:
    """pytest -ra's SKIPPED lines: the test file and reason of each."""
    return re.findall(r"^SKIPPED \[\d+\] (\S+?):\d+: (.*)$", output, re.M)


#: docs/nix.md lists the real sandbox's skip, where the flake's drill is on PATH; a model run
#: without a drill (none on this machine) sees the skip for that instead.
DRILL_IN_SANDBOX = "real drill cannot run without /etc/resolv.conf"
NO_DRILL = "real drill is not here"


def compare_skips(output: str, with_drill: bool = True) -> list[str]:
    """Problems: a skip docs/nix.md does not list, or a listed reason nothing skipped for."""
    expected, seen = expected_skips(), seen_skips(output)
    if not with_drill:
        expected = [NO_DRILL if e == DRILL_IN_SANDBOX else e for e in expected]
    problems = [
        f"skipped, but not in docs/nix.md's list: {where}: {reason}"
        for where, reason in seen
        if not any(e in reason for e in expected)
    ]
    problems += [
        f"docs/nix.md lists {e!r}, but no test skipped for it"
        for e in expected
        if not any(e in reason for _, reason in seen)
    ]
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--drill",
        default=os.environ.get("STAIR_STEPPER_SANDBOX_DRILL") or shutil.which("drill"),
        help="the drill that checks.tests puts on PATH (default: $STAIR_STEPPER_SANDBOX_DRILL, "
        "else the one on PATH; without one, the drill tests skip for that reason)",
    )
    parser.add_argument("--keep", type=Path, help="build the model here and keep it")
    parser.add_argument("pytest_args", nargs="*", help="more pytest arguments (after --)")
    args = parser.parse_args(argv)
    if shutil.which("bwrap") is None:
        print("sandbox model: bubblewrap is not installed (apt-get install bubblewrap)")
        return 2
    work = args.keep or Path(tempfile.mkdtemp(prefix="stair-stepper-sandbox-", dir="/var/tmp"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        drill = args.drill if args.drill and Path(args.drill).exists() else None
        model = build(work, drill)
        script = model["script"].replace(
            "python -m pytest -q -p no:cacheprovider",
            "python -m pytest -q -p no:cacheprovider " + " ".join(map(_quote, args.pytest_args)),
        )
        print(
            "sandbox model: checks.tests in bubblewrap "
            f"({model['python']}, drill {drill or 'none'})",
            flush=True,
        )
        code, log = run(work, model, script, echo=True)
        # docs/nix.md's list is of a whole run: a partial one (pytest arguments) is not checked
        whole = code == 0 and not args.pytest_args
        problems = compare_skips(log, drill is not None) if whole else []
        for problem in problems:
            print(f"sandbox model: {problem}")
        return code or (1 if problems else 0)
    finally:
        if not args.keep:
            subprocess.run(["chmod", "-R", "u+w", str(work)], check=False)
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())

#!/usr/bin/env python3
"""A Debian 13 (trixie) root for the suite: Python 3.13 and glibc 2.41, the world users meet.

``build`` makes the root with debootstrap from Debian's packages (minbase, plus python3,
python3-venv, git and the allocators' packages as trixie names them) and keeps it in a cache
outside the checkout, keyed by what it holds, so later runs reuse it. ``run -- COMMAND`` runs a
command inside it as root, in a mount namespace of its own (``unshare --mount``): the root's
own /proc, /dev, /sys (with the memory cgroup) and a /tmp bound from the host, the host's
network (loopback and the package registries), so a process there is a process here too
(same pids, same loopback, recordable from the host). ``ci`` makes a clean clone of this
checkout inside the root and runs the README's two commands there: ``./dev setup`` and the
suite, then the quick experiment.

    python3 tests/trixie/root.py build            # the root (cached); prints its path
    python3 tests/trixie/root.py run -- python3 -V
    python3 tests/trixie/root.py ci [-- PYTEST ARGS]
    python3 tests/trixie/root.py python           # an interpreter for a variant's python=PATH

``python`` installs this checkout's HEAD at the root's /opt/stair-stepper (``./dev setup``: a
venv on the root's python3.13) and writes, beside the root, a wrapper that runs that venv's
python inside the root: give its path as a variant's ``python=PATH``. A server started through
it runs on the root's own C library (2.41) and the root's allocator libraries (Debian 13's
jemalloc, mimalloc 3, gperftools, tbbmalloc): a comparison against a variant on the host's
Python compares interpreter, C library and allocator builds together, not the interpreter
alone. Its pids and loopback are the host's, so the lab records it as any server.

Nothing is left behind: the namespace's mounts vanish with it, and the clone lives in the
root's /work, replaced by each ``ci``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SUITE = "trixie"
MIRROR = "http://deb.debian.org/debian"
#: what the root holds beside minbase: the interpreter, venv, git for the clone, a compiler for
#: the tests that build an executable, and the allocators as trixie names them
PACKAGES = (
    "python3",
    "python3-venv",
    "python3-dev",
    "git",
    "gcc",
    "libc6-dev",
    "ca-certificates",
    "libjemalloc2",
    "libmimalloc3",
    "libgoogle-perftools4t64",
    "libtbbmalloc2",
    "procps",
)
CACHE = Path(os.environ.get("STAIR_STEPPER_TRIXIE_CACHE", "/var/cache/stair-stepper"))
CLONE = "/work/stair-stepper"
INSTALLED = "/opt/stair-stepper"
#: how a process enters the root: its own mounts in a mount namespace (they end with it)
ENTER = (
    'mount --make-rprivate / && mount -t proc proc "$r/proc" && mount --rbind /dev "$r/dev" '
    '&& mount --rbind /sys "$r/sys" && mount --bind /tmp "$r/tmp"'
)


def key() -> str:
    return hashlib.sha256(" ".join((SUITE, MIRROR, *PACKAGES)).encode()).hexdigest()[:12]


def root_path() -> Path:
    return CACHE / f"{SUITE}-{key()}"


def say(text: str) -> None:
    print(f"trixie root: {text}", file=sys.stderr, flush=True)


def build() -> Path:
    """The root, made once (debootstrap), reused while what it holds is the same."""
    target = root_path()
    if (target / ".complete").exists():
        return target
    if shutil.which("debootstrap") is None:
        sys.exit("trixie root: debootstrap is not installed (apt-get install debootstrap)")
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.parent.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    say(f"debootstrap {SUITE} into {partial} (minbase + {len(PACKAGES)} packages)")
    command = [
        "debootstrap",
        "--variant=minbase",
        f"--include={','.join(PACKAGES)}",
        SUITE,
        str(partial),
        MIRROR,
    ]
    done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        shutil.rmtree(partial, ignore_errors=True)
        sys.exit(f"trixie root: debootstrap failed: {done.stderr.strip()[-2000:]}")
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
    (target / ".complete").write_text(" ".join(PACKAGES) + "\n")
    say(f"made in {time.monotonic() - began:.0f} s")
    return target


def inside(target: Path, command: list[str], cwd: str = "/", env: dict | None = None) -> int:
    """Run ``command`` in the root, in a mount namespace of its own (its mounts end with it)."""
    # the host's resolver and the certificates it trusts (a registry may be reached through a
    # TLS-inspecting proxy whose authority only the host's bundle holds)
    shutil.copy2("/etc/resolv.conf", target / "etc" / "resolv.conf")
    bundle = Path("/etc/ssl/certs/ca-certificates.crt")
    if bundle.exists():
        (target / "etc" / "ssl" / "certs").mkdir(parents=True, exist_ok=True)
        shutil.copy2(bundle, target / "etc" / "ssl" / "certs" / "ca-certificates.crt")
    script = f'set -e\nr="$1"; shift\n{ENTER}\nexec chroot "$r" "$@"\n'
    environment = {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": "/root",
        "LANG": "C.UTF-8",
        "DEBIAN_FRONTEND": "noninteractive",
        "SSL_CERT_FILE": "/etc/ssl/certs/ca-certificates.crt",
        "PIP_CERT": "/etc/ssl/certs/ca-certificates.crt",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        **(env or {}),
    }
    wrapped = ["/bin/sh", "-c", f'cd {cwd} && exec "$@"', "sh", *command]
    return subprocess.call(
        ["unshare", "--mount", "--fork", "/bin/sh", "-c", script, "sh", str(target), *wrapped],
        env=environment,
    )


def clone(target: Path, where: str = CLONE) -> None:
    """A clean clone of this checkout's HEAD at ``where`` in the root."""
    work = target / where.lstrip("/")
    shutil.rmtree(work, ignore_errors=True)
    work.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "clone", "-q", str(ROOT), str(work)], check=True)


def ci(pytest_args: list[str]) -> int:
    target = build()
    clone(target)
    say("the README's two commands in the root: ./dev setup && .venv/bin/python -m pytest")
    code = inside(
        target,
        ["/bin/sh", "-c", './dev setup && .venv/bin/python -m pytest "$@"', "sh", *pytest_args],
        cwd=CLONE,
    )
    if code != 0:
        return code
    say("the quick experiment in the root, with every allocator found there")
    names = ",".join(["glibc", "jemalloc", "jemalloc+bg", "mimalloc", "tcmalloc", "tbbmalloc"])
    return inside(
        target,
        [
            ".venv/bin/stair-stepper",
            "experiment",
            "--preset",
            "quick",
            "--allocators",
            names,
            "--out",
            "/tmp/trixie-quick-" + str(os.getpid()),
            "--no-plot",
        ],
        cwd=CLONE,
    )


def python() -> Path:
    """This checkout's HEAD installed in the root (its python3.13, a venv), and a wrapper on the
    host that runs that interpreter inside the root; the wrapper's path."""
    target = build()
    clone(target, INSTALLED)
    code = inside(target, ["./dev", "setup"], cwd=INSTALLED)
    if code != 0:
        sys.exit(f"trixie root: ./dev setup in {INSTALLED} failed (exit {code})")
    wrapper = target.with_name(target.name + "-python")
    wrapper.write_text(
        "#!/bin/sh\n"
        "# python3.13 of the Debian 13 root (tests/trixie/root.py), stair-stepper installed: it\n"
        "# runs on the root's C library and libraries, with the host's pids and loopback.\n"
        f"export r={target}\n"
        "exec unshare --mount --fork --kill-child=SIGTERM /bin/sh -c '"
        f"{ENTER} && "
        f'exec chroot "$r" /bin/sh -c "cd /tmp && exec {INSTALLED}/.venv/bin/python '
        '\\"\\$@\\"" sh "$@"'
        '\' sh "$@"\n'
    )
    wrapper.chmod(0o755)
    return wrapper


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("build", "run", "ci", "python"))
    parser.add_argument("rest", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    rest = args.rest[1:] if args.rest[:1] == ["--"] else args.rest
    if os.geteuid() != 0:
        sys.exit("trixie root: debootstrap, chroot and mounts need root")
    if args.action == "build":
        print(build())
        return 0
    if args.action == "run":
        return inside(build(), rest or ["/bin/sh"])
    if args.action == "python":
        print(python())
        return 0
    return ci(rest)


if __name__ == "__main__":
    raise SystemExit(main())

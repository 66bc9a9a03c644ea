"""Where a result came from: versions, machine, source revision (for meta.json)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]  # the checkout, when run from one


def _package_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(ROOT), *args], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


NIXPKGS_REV_VAR = "STAIR_STEPPER_NIXPKGS_REV"


def nixpkgs() -> dict:
    """The nixpkgs this run used: only what the flake's wrappers or dev shell say.

    A checkout's flake.lock says what a Nix run *would* use, not what this run used,
    so a run from a venv records no revision.
    """
    rev = os.environ.get(NIXPKGS_REV_VAR) or None
    return {"nixpkgs_rev": rev, "nix": "run through the flake" if rev else "not run through Nix"}


def glibc_version() -> str | None:
    """The C library that runs this process, as it reports itself (``gnu_get_libc_version``).
    ``platform.libc_ver()`` reads ``sys.executable`` instead, which under nixpkgs'
    ``python.withPackages`` is a small C wrapper (makeBinaryWrapper): its GLIBC symbol
    version is not the glibc that runs."""
    import ctypes

    try:
        fn = ctypes.CDLL(None).gnu_get_libc_version
    except (AttributeError, OSError):
        return None  # not glibc (musl has no such function)
    fn.restype = ctypes.c_char_p
    return fn().decode()


def collect(allocator_rows: list[dict] | None = None) -> dict:
    """Everything about this machine and build that could change a memory result."""
    rev = _git("rev-parse", "HEAD")
    dirty = bool(_git("status", "--porcelain", "--untracked-files=no")) if rev else None
    return {
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "glibc": glibc_version(),
        "allocators": {
            row["name"]: {k: row[k] for k in ("available", "version", "library")}
            for row in (allocator_rows or [])
        },
        "packages": {
            name: _package_version(name)
            for name in (
                "stair-stepper",
                "quart",
                "hypercorn",
                "aiohttp",
                "pyyaml",
                "psutil",
                "matplotlib",
            )
        },
        "kernel": platform.release(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "memory_bytes": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"),
        "git_rev": rev,
        "git_dirty": dirty,
        **nixpkgs(),
    }

"""The allocator table: the one place that knows each allocator and variant.

An *allocator* is a malloc implementation (glibc's own, or a library we put in
front of it with LD_PRELOAD). A *variant* is an allocator plus the environment
settings that change its behaviour (``jemalloc+bg``, ``glibc+arena2``). Every
other module asks this table; none hard-codes a library name or a path.
"""

from __future__ import annotations

import os
import platform
import sysconfig
from collections import namedtuple
from pathlib import Path

from stair_stepper.errors import UserError


class Allocator(namedtuple("Allocator", "name env_var sonames package maps_prefix")):
    """A malloc implementation. ``env_var`` names the library file (the Nix flake sets it;
    None for glibc's own), ``sonames`` are the file names to look for in the usual library
    folders, best first, ``package`` the Debian/Ubuntu package that ships it, and
    ``maps_prefix`` the basename prefix that marks it in /proc/<pid>/maps. (A named tuple,
    not a dataclass: ``record`` imports this table, and dataclasses cost it 5 ms a start.)"""

    __slots__ = ()

    @property
    def preloaded(self) -> bool:
        return self.env_var is not None


class Variant(namedtuple("Variant", "name allocator env strategy spec")):
    """An allocator plus its settings: ``env``, what goes into the server's environment
    (checked by ``settings``), and ``strategy``, what the lab does around it (``trim_every``
    seconds, ``workers``, ``max_requests``); ``spec`` is how it was written."""

    __slots__ = ()

    def __new__(cls, name, allocator, env=None, strategy=None, spec=None):
        env, strategy = dict(env or {}), dict(strategy or {})
        if spec is None:
            words = [f"{k}={v}" for k, v in {**env, **strategy}.items()]
            spec = " ".join([f"{name}={allocator.name}", *words])
        return super().__new__(cls, name, allocator, env, strategy, spec)

    @property
    def strategy_text(self) -> dict[str, str]:
        return {k: f"{v:g}" if isinstance(v, float) else str(v) for k, v in self.strategy.items()}

    @property
    def builtin(self) -> bool:
        return VARIANTS.get(self.name) == self


ALLOCATORS: dict[str, Allocator] = {
    a.name: a
    for a in (
        Allocator("glibc", None, (), "libc6", "libc.so"),
        Allocator(
            "jemalloc",
            "STAIR_STEPPER_JEMALLOC",
            ("libjemalloc.so.2", "libjemalloc.so"),
            "libjemalloc2",
            "libjemalloc",
        ),
        Allocator(
            "mimalloc",
            "STAIR_STEPPER_MIMALLOC",
            ("libmimalloc.so.2", "libmimalloc.so"),
            "libmimalloc2.0",
            "libmimalloc",
        ),
        Allocator(
            "tcmalloc",
            "STAIR_STEPPER_TCMALLOC",
            ("libtcmalloc.so.4", "libtcmalloc_minimal.so.4", "libtcmalloc.so"),
            "libgoogle-perftools4",
            "libtcmalloc",
        ),
    )
}

# A variant is an allocator plus its tuning (the environment it runs in).
VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("glibc", ALLOCATORS["glibc"]),
        Variant("glibc+arena2", ALLOCATORS["glibc"], {"MALLOC_ARENA_MAX": "2"}),
        Variant("jemalloc", ALLOCATORS["jemalloc"]),
        Variant("jemalloc+bg", ALLOCATORS["jemalloc"], {"MALLOC_CONF": "background_thread:true"}),
        Variant("mimalloc", ALLOCATORS["mimalloc"]),
        Variant("tcmalloc", ALLOCATORS["tcmalloc"]),
    )
}

#: glibc's environment aliases of its malloc tunables (glibc elf/dl-tunables.list); glibc also
#: reads GLIBC_TUNABLES
GLIBC_ALIASES = {
    "MALLOC_CHECK_": "glibc.malloc.check",
    "MALLOC_TOP_PAD_": "glibc.malloc.top_pad",
    "MALLOC_PERTURB_": "glibc.malloc.perturb",
    "MALLOC_MMAP_THRESHOLD_": "glibc.malloc.mmap_threshold",
    "MALLOC_TRIM_THRESHOLD_": "glibc.malloc.trim_threshold",
    "MALLOC_MMAP_MAX_": "glibc.malloc.mmap_max",
    "MALLOC_ARENA_MAX": "glibc.malloc.arena_max",
    "MALLOC_ARENA_TEST": "glibc.malloc.arena_test",
}
#: the variables gperftools 2.10's tcmalloc reads (the EnvTo* calls of its src/)
TCMALLOC_VARIABLES = (
    "TCMALLOC_AGGRESSIVE_DECOMMIT TCMALLOC_DEVMEM_LIMIT TCMALLOC_DEVMEM_START "
    "TCMALLOC_DISABLE_MEMORY_RELEASE TCMALLOC_HEAP_LIMIT_MB TCMALLOC_LARGE_ALLOC_REPORT_THRESHOLD "
    "TCMALLOC_MAX_FREE_QUEUE_SIZE TCMALLOC_MAX_TOTAL_THREAD_CACHE_BYTES "
    "TCMALLOC_MEMFS_ABORT_ON_FAIL TCMALLOC_MEMFS_DISABLE_FALLBACK TCMALLOC_MEMFS_IGNORE_MMAP_FAIL "
    "TCMALLOC_MEMFS_LIMIT_MB TCMALLOC_MEMFS_MALLOC_PATH TCMALLOC_MEMFS_MAP_PRIVATE "
    "TCMALLOC_PAGE_FENCE TCMALLOC_PAGE_FENCE_NEVER_RECLAIM TCMALLOC_PAGE_FENCE_READABLE "
    "TCMALLOC_RECLAIM_MEMORY TCMALLOC_RELEASE_RATE TCMALLOC_SAMPLE_PARAMETER TCMALLOC_SKIP_MMAP "
    "TCMALLOC_SKIP_SBRK TCMALLOC_STACKTRACE_METHOD_VERBOSE TCMALLOC_SYMBOLIZE_STACKTRACE "
    "TCMALLOC_TRACE"
).split()


def reads(allocator: str, key: str) -> bool:
    """Does ``allocator`` read the environment variable ``key``?"""
    if allocator == "glibc":
        return key in GLIBC_ALIASES or key == "GLIBC_TUNABLES"
    if allocator == "jemalloc":
        return key == "MALLOC_CONF"
    if allocator == "mimalloc":
        return key.startswith("MIMALLOC_")
    return allocator == "tcmalloc" and key in TCMALLOC_VARIABLES


def controlled(key: str) -> bool:
    """A variable a variant controls: inherited values are removed so a label never lies (a
    shell's own MALLOC_ARENA_MAX would otherwise change the 'glibc' baseline unseen)."""
    return key in ("LD_PRELOAD", "PYTHONMALLOC") or any(reads(a, key) for a in ALLOCATORS)


PYTHON_MALLOC_MODES = ("pymalloc", "malloc")


def variant(name: str) -> Variant:
    try:
        return VARIANTS[name]
    except KeyError:
        known = ", ".join(VARIANTS)
        raise UserError(f"unknown allocator {name!r}; choose one of: {known}.") from None


def library_dirs() -> list[Path]:
    """The usual Debian/Ubuntu (multiarch) and generic library folders."""
    multiarch = sysconfig.get_config_var("MULTIARCH") or f"{platform.machine()}-linux-gnu"
    dirs = [
        f"/usr/lib/{multiarch}",
        f"/lib/{multiarch}",
        "/usr/local/lib",
        "/usr/lib64",
        "/usr/lib",
    ]
    return [Path(d) for d in dirs]


def find_library(alloc: Allocator, environ: dict[str, str] | None = None) -> Path | None:
    """Path of the allocator's library, or None when it is not installed.

    The per-allocator environment variable wins; a variable that points at a
    missing file is an error of its own (a typo must not silently fall back).
    """
    if not alloc.preloaded:
        return None
    environ = os.environ if environ is None else environ
    configured = environ.get(alloc.env_var or "")
    if configured:
        path = Path(configured)
        if not path.is_file():
            raise UserError(
                f"{alloc.env_var} points at {configured}, which is not a file; "
                f"fix the variable or unset it to use the system {alloc.name}."
            )
        return path
    for folder in library_dirs():
        for soname in alloc.sonames:
            candidate = folder / soname
            if candidate.is_file():
                return candidate
    return None


def require_library(alloc: Allocator, environ: dict[str, str] | None = None) -> Path:
    path = find_library(alloc, environ)
    if path is None:
        raise UserError(
            f"{alloc.name} is not installed here: install the Debian/Ubuntu package "
            f"{alloc.package} (apt-get install {alloc.package}) or set {alloc.env_var} "
            f"to the library file."
        )
    return path


def server_env(
    var: Variant, python_malloc: str = "pymalloc", base: dict[str, str] | None = None
) -> dict[str, str]:
    """The environment a server of this variant runs in (raises if the library is missing)."""
    if python_malloc not in PYTHON_MALLOC_MODES:
        raise UserError(f"--python-malloc must be one of {', '.join(PYTHON_MALLOC_MODES)}.")
    env = {k: v for k, v in (os.environ if base is None else base).items() if not controlled(k)}
    if var.allocator.preloaded:
        env["LD_PRELOAD"] = str(require_library(var.allocator, env))
    if python_malloc == "malloc":
        env["PYTHONMALLOC"] = "malloc"
    env.update(var.env)  # the variant's own PYTHONMALLOC wins over the run's --python-malloc
    return env


def mapped_libraries(pid: int | str = "self") -> list[str]:
    """Paths of the shared objects mapped into a process."""
    paths: list[str] = []
    with open(f"/proc/{pid}/maps", encoding="utf-8", errors="replace") as maps:
        for line in maps:
            parts = line.split(maxsplit=5)
            if len(parts) == 6 and ".so" in parts[5]:
                path = parts[5].strip()
                if path not in paths:
                    paths.append(path)
    return paths


def identify_path(path: str) -> str | None:
    """Which allocator a library path belongs to (None: not an allocator library)."""
    base = os.path.basename(path)
    for alloc in ALLOCATORS.values():
        if base.startswith(alloc.maps_prefix):
            return alloc.name
    return None


def allocator_in_maps(pid: int | str = "self") -> str:
    """The allocator a process has mapped, judged from outside via /proc/<pid>/maps.

    An LD_PRELOAD allocator library in the maps means that allocator; none of
    them means glibc. (Inside the process, probes.malloc_provider() is stricter:
    it finds the library that actually serves ``malloc``.)
    """
    found = {identify_path(p) for p in mapped_libraries(pid)} - {None, "glibc"}
    if len(found) > 1:
        return "+".join(sorted(found))  # type: ignore[arg-type]
    return found.pop() if found else "glibc"  # type: ignore[return-value]

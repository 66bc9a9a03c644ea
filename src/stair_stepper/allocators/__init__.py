"""The allocators the lab knows: one module each, behind one interface (``base.Allocator``).

Everything that knows a particular allocator lives in its module: how to find and preload its
library, which settings it reads and how they are checked and read back, its accounting,
structure and trim inside the served process, and the layers the analysis draws from it.
Nothing outside this package names one. The import line below is the registry: a new
allocator is one module and its name on that line.
"""

from __future__ import annotations

from stair_stepper.allocators import glibc, jemalloc, mimalloc, tbbmalloc, tcmalloc  # noqa: F401
from stair_stepper.allocators.base import ENV_SETTINGS, REGISTRY, Allocator, Variant
from stair_stepper.allocators.library import (
    PYTHON_MALLOC_MODES,
    allocator_in_maps,
    controlled,
    find_library,
    identify_path,
    malloc_provider,
    mapped_libraries,
    require_library,
    server_env,
)
from stair_stepper.errors import UserError

ALLOCATORS: dict[str, Allocator] = REGISTRY
#: every allocator's built-in variants, by name
VARIANTS: dict[str, Variant] = {
    name: Variant(name, alloc, env)
    for alloc in REGISTRY.values()
    for name, env in alloc.variants.items()
}
#: the system's own allocator (the one nothing is preloaded for): the reference of a verdict
SYSTEM: str = next(a.name for a in REGISTRY.values() if not a.preloaded)


def get(name: str) -> Allocator | None:
    return REGISTRY.get(name)


def variant(name: str) -> Variant:
    try:
        return VARIANTS[name]
    except KeyError:
        known = ", ".join(VARIANTS)
        raise UserError(f"unknown allocator {name!r}; choose one of: {known}.") from None


def free_kinds() -> dict[str, str]:
    """Every kind of free space an allocator's structure names, in words (for the layers)."""
    return {k: words for a in REGISTRY.values() for k, words in a.free_kinds.items()}


def timed_kinds() -> tuple[str, ...]:
    """The kinds of free space a timer or a background thread gives back."""
    return tuple(k for a in REGISTRY.values() for k in a.timed_kinds)


def structure_columns() -> tuple[str, ...]:
    """Every allocator's structure totals, each once, in registry order."""
    return tuple(dict.fromkeys(c for a in REGISTRY.values() for c in a.structure_columns))


def arena_columns() -> tuple[str, ...]:
    """Every allocator's per-arena columns, each once, in registry order."""
    return tuple(dict.fromkeys(c for a in REGISTRY.values() for c in a.arena_columns))


def arena_parts() -> tuple[tuple[str, str], ...]:
    """How an arena's held bytes split, by every allocator that tells (the arenas figure)."""
    return tuple(dict.fromkeys(p for a in REGISTRY.values() for p in a.arena_parts))


def packages() -> list[str]:
    """Every allocator's Debian packages, alternatives joined with '|' (``./dev setup``)."""
    return ["|".join(a.packages) for a in REGISTRY.values() if a.preloaded]


__all__ = [
    "ALLOCATORS",
    "ENV_SETTINGS",
    "PYTHON_MALLOC_MODES",
    "SYSTEM",
    "VARIANTS",
    "Allocator",
    "Variant",
    "allocator_in_maps",
    "arena_columns",
    "arena_parts",
    "controlled",
    "find_library",
    "free_kinds",
    "get",
    "identify_path",
    "malloc_provider",
    "mapped_libraries",
    "packages",
    "require_library",
    "server_env",
    "structure_columns",
    "timed_kinds",
    "variant",
]

"""Inside the served process: what its allocator says, through the allocator's own module.

RSS tells how much memory the process holds; only the allocator can tell how much of it is
live data and how much is free space it keeps. Each allocator module answers through its own
API (``base.Allocator``); fields an allocator cannot report are ``None``, never invented. This
module adds what is Python's own (tracemalloc, pymalloc's arenas) and the proof of which
library serves ``malloc``.

Run as ``python -m stair_stepper.allocators.probe`` it prints, as JSON, which library serves
``malloc`` in this process, its version and the settings read back (the trial process of
``stair-stepper allocators`` and of every variant check).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time

from stair_stepper.allocators.base import ENV_SETTINGS, REGISTRY
from stair_stepper.allocators.library import identify_path, malloc_provider
from stair_stepper.allocators.native import captured_stderr, missing


def live_allocator() -> str:
    """Name of the allocator serving malloc here ('unknown' if not in the table)."""
    return identify_path(malloc_provider()) or "unknown"


def rss_bytes() -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def memory(allocator: str) -> dict:
    """RSS plus the allocator's accounting; an unknown allocator or a missing symbol: nulls."""
    snapshot: dict = {"allocator": allocator, "rss_bytes": rss_bytes()}
    unknown = {"live_bytes": None, "held_bytes": None, "details": {}}
    found = REGISTRY.get(allocator)
    if found is None:
        snapshot.update(unknown, note=f"no accounting for allocator {allocator!r}")
        return snapshot
    try:
        snapshot.update(found.accounting())
    except AttributeError as exc:
        snapshot.update(unknown, note=missing(exc))
    return snapshot


def structure(allocator: str) -> dict | None:
    """The allocator's structure (None where it is not known; a note where a symbol is
    missing)."""
    found = REGISTRY.get(allocator)
    if found is None:
        return None
    try:
        return found.structure()
    except (AttributeError, OSError) as exc:
        return {"note": missing(exc) if isinstance(exc, AttributeError) else str(exc)}


def release(allocator: str) -> None:
    """Ask the allocator to give free memory back, nothing more (the periodic trim's call)."""
    found = REGISTRY.get(allocator)
    if found is not None:
        with contextlib.suppress(AttributeError):  # an allocator without that symbol: no trim
            found.trim()


def trim(allocator: str) -> dict:
    """Ask the allocator to return free memory to the OS; report before and after."""
    before = memory(allocator)
    found = REGISTRY.get(allocator)
    action: dict = {"call": None, "returned_memory": None}
    began = time.perf_counter()
    try:
        if found is not None:
            action = found.trim()
    except AttributeError as exc:
        action["note"] = missing(exc)
    action["took_s"] = time.perf_counter() - began  # how long the trim held the allocator
    after = memory(allocator)
    return {
        **action,
        "allocator": allocator,
        "rss_before_bytes": before["rss_bytes"],
        "rss_after_bytes": after["rss_bytes"],
        "before": before,
        "after": after,
    }


def version(allocator: str) -> str | None:
    found = REGISTRY.get(allocator)
    try:
        return found.version() if found is not None else None
    except (AttributeError, OSError):
        return None


def read_back(spec: dict) -> dict:
    """What this process's allocator runs with, for the settings ``spec`` names (what
    ``settings.for_child`` put in the environment): each ``{"given", "read", "same", "how"}``;
    what it runs with regardless (``effective``: decay times, background threads); and whether
    pymalloc holds blocks (PYTHONMALLOC)."""
    import sys

    answer: dict = {
        "values": {},
        "pymalloc": sys.getallocatedblocks() > 0,
        "python_allocator": python_allocator(),
    }
    found = REGISTRY.get(spec.get("allocator") or "")
    if found is None:
        return answer
    try:
        answer["values"] = found.read_back(spec)
        answer["effective"] = found.effective()
    except AttributeError as exc:
        answer["note"] = missing(exc)
    return answer


def python_allocator() -> str:
    """The allocator CPython gives its objects here, as its own statistics say: pymalloc's and
    3.13's mimalloc's print their size classes (mimalloc's a medium block threshold too);
    PYTHONMALLOC=malloc prints neither."""
    import sys

    text = captured_stderr(sys._debugmallocstats)
    if "Medium block threshold" in text:
        return "mimalloc"
    if "Small block threshold" in text:
        return "pymalloc"
    return "malloc"


_PYMALLOC = re.compile(r"(\d+) arenas \* (\d+) bytes/arena")
_PYMALLOC_BYTES = re.compile(r"# bytes in allocated blocks\s+=\s+([\d,]+)")


def python_layer(trace: bool) -> dict:
    """Python's own layer: tracemalloc's traced bytes and its own cost, when on (--trace-python),
    and with pymalloc its arenas (sys._debugmallocstats, captured)."""
    import sys

    layer: dict = {"python_traced_bytes": None, "tracemalloc_bytes": None}
    if trace:
        import tracemalloc

        if tracemalloc.is_tracing():
            layer["python_traced_bytes"] = tracemalloc.get_traced_memory()[0]
            layer["tracemalloc_bytes"] = tracemalloc.get_tracemalloc_memory()
    if sys.getallocatedblocks() > 0:  # pymalloc holds the small objects
        text = captured_stderr(sys._debugmallocstats)
        arenas = _PYMALLOC.search(text)
        used = _PYMALLOC_BYTES.search(text)
        layer["pymalloc_arenas"] = int(arenas.group(1)) if arenas else None
        layer["pymalloc_arena_bytes"] = (
            int(arenas.group(1)) * int(arenas.group(2)) if arenas else None
        )
        layer["pymalloc_used_bytes"] = int(used.group(1).replace(",", "")) if used else None
    return layer


def main() -> None:
    import platform

    provider = malloc_provider()
    name = identify_path(provider) or "unknown"
    spec = os.environ.get(ENV_SETTINGS)
    answer = {
        "pid": os.getpid(),
        "malloc_provider": provider,
        "allocator": name,
        "version": version(name),
        "python": platform.python_version(),
        "read_back": read_back(json.loads(spec)) if spec else None,
    }
    print(json.dumps(answer))


if __name__ == "__main__":
    main()

"""What the allocator modules share inside the served process: symbols through ctypes, libc,
and the output a C function writes to file descriptor 2."""

from __future__ import annotations

import ctypes
import functools
import os
import tempfile


@functools.cache
def global_symbols() -> ctypes.CDLL:
    """Symbols as the dynamic linker resolves them for this process (preloads first).

    Resolved once per process: every /debug/memory poll would otherwise reopen it.
    """
    return ctypes.CDLL(None)


@functools.cache
def libc() -> ctypes.CDLL:
    return ctypes.CDLL("libc.so.6")


def missing(exc: AttributeError) -> str:
    """ctypes' AttributeError names the symbol the library lacks (e.g. mallinfo2 before
    glibc 2.33, mallctl in a jemalloc built without it)."""
    return f"not measured: {exc}"


def captured_stderr(call) -> str:
    """What ``call()`` writes to file descriptor 2 (glibc's malloc_stats and pymalloc's
    _debugmallocstats print there), captured through a temporary file swapped in."""
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        try:
            os.dup2(capture.fileno(), 2)
            call()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        capture.seek(0)
        return capture.read().decode(errors="replace")

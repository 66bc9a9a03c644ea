"""In-process allocator accounting, through ctypes: what the allocator itself says.

RSS tells how much memory the process holds; only the allocator can tell how
much of it is live data and how much is free space it keeps. Each allocator
has its own API (glibc ``mallinfo2``, jemalloc ``mallctl``, mimalloc
``mi_process_info``, gperftools ``MallocExtension_*``). Fields an allocator
cannot report are ``None``, never invented.

Run as ``python -m stair_stepper.allocators.probe`` it prints, as JSON, which library
serves ``malloc`` in this process and its version (used by
``stair-stepper allocators`` to test a library in a throw-away process).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import json
import os
import re
import tempfile
from ctypes import POINTER, byref, c_char_p, c_int, c_size_t, c_uint64, c_void_p

from stair_stepper.allocators import identify_path

MALLCTL_ARENAS_ALL = 4096  # jemalloc's "all arenas" index


@functools.cache
def _global() -> ctypes.CDLL:
    """Symbols as the dynamic linker resolves them for this process (preloads first).

    Resolved once per process: every /debug/memory poll would otherwise reopen it.
    """
    return ctypes.CDLL(None)


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL("libc.so.6")


def _missing(exc: AttributeError) -> str:
    """ctypes' AttributeError names the symbol the library lacks (e.g. mallinfo2 before
    glibc 2.33, mallctl in a jemalloc built without it)."""
    return f"not measured: {exc}"


def malloc_provider() -> str:
    """Path of the mapped library whose code ``malloc`` resolves to.

    This is the proof that a preload took effect: the address of ``malloc``
    seen by the dynamic linker lies inside that library's mapping in
    /proc/self/maps.
    """
    addr = ctypes.cast(_global().malloc, c_void_p).value or 0
    with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
        for line in maps:
            parts = line.split(maxsplit=5)
            start, end = (int(x, 16) for x in parts[0].split("-"))
            if start <= addr < end:
                return parts[5].strip() if len(parts) == 6 else "[anonymous]"
    return "[unknown]"


def live_allocator() -> str:
    """Name of the allocator serving malloc here ('unknown' if not in the table)."""
    return identify_path(malloc_provider()) or "unknown"


def rss_bytes() -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


# --- glibc ----------------------------------------------------------------


class _Mallinfo2(ctypes.Structure):
    _fields_ = [
        (name, c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def _glibc_stats() -> dict:
    libc = _libc()
    libc.mallinfo2.restype = _Mallinfo2
    mi = libc.mallinfo2()
    return {
        "live_bytes": mi.uordblks + mi.hblkhd,
        "held_bytes": mi.arena + mi.hblkhd,
        "details": {
            "in_use_bytes": mi.uordblks,
            "free_in_heap_bytes": mi.fordblks,
            "mmapped_bytes": mi.hblkhd,
            "arena_bytes": mi.arena,
            "top_releasable_bytes": mi.keepcost,
            "free_chunks": mi.ordblks,
        },
    }


def _glibc_trim() -> dict:
    libc = _libc()
    libc.malloc_trim.argtypes = [c_size_t]
    libc.malloc_trim.restype = c_int
    return {"call": "malloc_trim(0)", "returned_memory": bool(libc.malloc_trim(0))}


def _glibc_version() -> str:
    libc = _libc()
    libc.gnu_get_libc_version.restype = c_char_p
    return libc.gnu_get_libc_version().decode()


# --- jemalloc -------------------------------------------------------------


def _mallctl():
    fn = _global().mallctl
    fn.argtypes = [c_char_p, c_void_p, POINTER(c_size_t), c_void_p, c_size_t]
    fn.restype = c_int
    return fn


def _mallctl_read(name: str, ctype=c_size_t):
    value = ctype()
    size = c_size_t(ctypes.sizeof(value))
    rc = _mallctl()(name.encode(), byref(value), byref(size), None, 0)
    return value.value if rc == 0 else None


def _jemalloc_stats() -> dict:
    epoch = c_uint64(1)
    size = c_size_t(ctypes.sizeof(epoch))
    _mallctl()(b"epoch", byref(epoch), byref(size), byref(epoch), size)  # refresh the stats
    keys = ("allocated", "active", "resident", "mapped", "retained", "metadata")
    stats = {k: _mallctl_read(f"stats.{k}") for k in keys}
    return {
        "live_bytes": stats["allocated"],
        "held_bytes": stats["resident"],
        "details": {f"{k}_bytes": v for k, v in stats.items()},
    }


def _jemalloc_trim() -> dict:
    name = f"arena.{MALLCTL_ARENAS_ALL}.purge".encode()
    rc = _mallctl()(name, None, None, None, 0)
    return {"call": f"mallctl('arena.{MALLCTL_ARENAS_ALL}.purge')", "returned_memory": rc == 0}


def _jemalloc_version() -> str | None:
    raw = _mallctl_read("version", c_char_p)
    return raw.decode() if raw else None


# --- mimalloc -------------------------------------------------------------


def _mimalloc_stats() -> dict:
    fn = _global().mi_process_info
    values = [c_size_t() for _ in range(8)]
    fn.argtypes = [POINTER(c_size_t)] * 8
    fn(*[byref(v) for v in values])
    names = (
        "elapsed_ms",
        "user_ms",
        "system_ms",
        "current_rss",
        "peak_rss",
        "current_commit",
        "peak_commit",
        "page_faults",
    )
    info = dict(zip(names, (v.value for v in values), strict=True))
    return {
        "live_bytes": None,  # mimalloc keeps no cheap count of live bytes
        "held_bytes": info["current_commit"],
        "details": {
            "committed_bytes": info["current_commit"],
            "peak_committed_bytes": info["peak_commit"],
        },
    }


def _mimalloc_trim() -> dict:
    fn = _global().mi_collect
    fn.argtypes = [ctypes.c_bool]
    fn(True)
    return {"call": "mi_collect(true)", "returned_memory": None}


def _mimalloc_version() -> str:
    fn = _global().mi_version
    fn.restype = c_int
    v = fn()
    return f"{v // 100}.{(v % 100) // 10}.{v % 10}"


# --- gperftools tcmalloc --------------------------------------------------


def _tc_property(name: str) -> int | None:
    fn = _global().MallocExtension_GetNumericProperty
    fn.argtypes = [c_char_p, POINTER(c_size_t)]
    fn.restype = c_int
    value = c_size_t()
    return value.value if fn(name.encode(), byref(value)) else None


def _tcmalloc_stats() -> dict:
    allocated = _tc_property("generic.current_allocated_bytes")
    heap = _tc_property("generic.heap_size")
    unmapped = _tc_property("tcmalloc.pageheap_unmapped_bytes")
    free = _tc_property("tcmalloc.pageheap_free_bytes")
    held = heap - unmapped if heap is not None and unmapped is not None else None
    return {
        "live_bytes": allocated,
        "held_bytes": held,
        "details": {
            "heap_bytes": heap,
            "pageheap_free_bytes": free,
            "pageheap_unmapped_bytes": unmapped,
        },
    }


def _tcmalloc_trim() -> dict:
    _global().MallocExtension_ReleaseFreeMemory()
    return {"call": "MallocExtension_ReleaseFreeMemory()", "returned_memory": None}


def _tcmalloc_version() -> str | None:
    fn = _global().tc_version
    fn.argtypes = [POINTER(c_int), POINTER(c_int), POINTER(c_char_p)]
    fn.restype = c_char_p
    raw = fn(None, None, None)
    return raw.decode() if raw else None


# --- the allocator's structure: arenas, pages waiting, caches ------------------------------

_HEAP = re.compile(r'<heap nr="(\d+)">(.*?)</heap>', re.S)
_TOTAL = re.compile(r'<total type="(\w+)" count="(\d+)" size="(\d+)"/>')
_SYSTEM = re.compile(r'<system type="current" size="(\d+)"/>')
_STATS_ARENA = re.compile(r"Arena (\d+):\s+system bytes\s+=\s+(\d+)\s+in use bytes\s+=\s+(\d+)")


def _captured_stderr(call) -> str:
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


def _glibc_structure() -> dict:
    """Each arena (glibc's malloc_info(3), read into memory, and malloc_stats(3) for what each
    arena has in use): bytes it holds from the system, in use, free in fastbins and in the
    other bins, and its top chunk (the rest: held, not in use, not in a bin); mmapped chunks
    apart."""
    libc = _libc()
    libc.open_memstream.restype = c_void_p
    libc.open_memstream.argtypes = [POINTER(c_char_p), POINTER(c_size_t)]
    libc.malloc_info.argtypes, libc.fclose.argtypes = [c_int, c_void_p], [c_void_p]
    buffer, size = c_char_p(), c_size_t()
    stream = libc.open_memstream(byref(buffer), byref(size))
    libc.malloc_info(0, stream)
    libc.fclose(stream)
    xml = ctypes.string_at(buffer, size.value).decode()
    libc.free.argtypes = [c_void_p]
    libc.free(buffer)
    in_use = {
        int(i): int(u) for i, _, u in _STATS_ARENA.findall(_captured_stderr(libc.malloc_stats))
    }
    arenas = []
    for nr, body in _HEAP.findall(xml):
        totals = {kind: int(size) for kind, _, size in _TOTAL.findall(body)}
        system = int(_SYSTEM.search(body).group(1))
        used = in_use.get(int(nr))
        free = totals.get("fast", 0) + totals.get("rest", 0)
        arenas.append(
            {
                "arena": int(nr),
                "system_bytes": system,
                "in_use_bytes": used,
                "fastbin_bytes": totals.get("fast", 0),
                "bin_bytes": totals.get("rest", 0),
                "top_bytes": None if used is None else max(0, system - used - free),
            }
        )
    tail = xml.rsplit("</heap>", 1)[-1]
    mmap = {kind: (int(c), int(sz)) for kind, c, sz in _TOTAL.findall(tail)}.get("mmap", (0, 0))
    return {"arenas": arenas, "mmapped": {"count": mmap[0], "bytes": mmap[1]}}


def _jemalloc_structure() -> dict:
    """stats.* (after an ``epoch`` refresh), the number of arenas, each arena's dirty and
    muzzy pages (decay's waiting room), and the background threads."""
    page = _mallctl_read("arenas.page") or 4096
    narenas = _mallctl_read("arenas.narenas", ctypes.c_uint) or 0
    arenas = []
    for i in range(narenas):
        dirty = _mallctl_read(f"stats.arenas.{i}.pdirty")
        if dirty is None:  # an arena index not (yet) in use
            continue
        muzzy = _mallctl_read(f"stats.arenas.{i}.pmuzzy") or 0
        arenas.append({"arena": i, "dirty_bytes": dirty * page, "muzzy_bytes": muzzy * page})
    return {
        "arenas": arenas,
        "narenas_option": _mallctl_read("opt.narenas", ctypes.c_uint),
        "background_threads": _mallctl_read("stats.background_thread.num_threads"),
        "dirty_bytes": sum(a["dirty_bytes"] for a in arenas),
        "muzzy_bytes": sum(a["muzzy_bytes"] for a in arenas),
    }


def _tcmalloc_structure() -> dict:
    names = (
        "pageheap_free_bytes",
        "pageheap_unmapped_bytes",
        "current_total_thread_cache_bytes",
        "central_cache_free_bytes",
        "transfer_cache_free_bytes",
    )
    return {name: _tc_property(f"tcmalloc.{name}") for name in names}


def _mimalloc_structure() -> dict:
    return {}  # mi_process_info (in memory()) is all mimalloc 2.0's C API gives cheaply


_STRUCTURE = {
    "glibc": _glibc_structure,
    "jemalloc": _jemalloc_structure,
    "tcmalloc": _tcmalloc_structure,
    "mimalloc": _mimalloc_structure,
}


def structure(allocator: str) -> dict | None:
    """The allocator's structure (None where it gives nothing, or a symbol is missing)."""
    probe = _STRUCTURE.get(allocator)
    try:
        return probe() if probe else None
    except (AttributeError, OSError) as exc:
        return {"note": _missing(exc) if isinstance(exc, AttributeError) else str(exc)}


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
        text = _captured_stderr(sys._debugmallocstats)
        arenas = _PYMALLOC.search(text)
        used = _PYMALLOC_BYTES.search(text)
        layer["pymalloc_arenas"] = int(arenas.group(1)) if arenas else None
        layer["pymalloc_arena_bytes"] = (
            int(arenas.group(1)) * int(arenas.group(2)) if arenas else None
        )
        layer["pymalloc_used_bytes"] = int(used.group(1).replace(",", "")) if used else None
    return layer


# --- settings read back in this process ----------------------------------------------------

#: the type of each ``opt.*`` mallctl, from jemalloc 5.3's manual (doc/jemalloc.xml.in)
JEMALLOC_OPT_TYPES = {
    **dict.fromkeys(
        "abort confirm_conf abort_conf cache_oblivious trust_madvise retain background_thread "
        "stats_print zero utrace xmalloc tcache prof prof_active prof_thread_active_init "
        "prof_accum prof_gdump prof_final prof_leak prof_leak_error".split(),
        "bool",
    ),
    **dict.fromkeys(
        "metadata_thp dss percpu_arena stats_print_opts stats_interval_opts junk thp "
        "prof_prefix zero_realloc".split(),
        "str",
    ),
    "narenas": "unsigned",
    **dict.fromkeys(
        "oversize_threshold max_background_threads lg_extent_max_active_fit tcache_max "
        "lg_prof_sample".split(),
        "size_t",
    ),
    **dict.fromkeys("dirty_decay_ms muzzy_decay_ms lg_prof_interval".split(), "ssize_t"),
    "stats_interval": "int64",
}
_CTYPES = {
    "bool": ctypes.c_bool,
    "str": c_char_p,
    "unsigned": ctypes.c_uint,
    "size_t": c_size_t,
    "ssize_t": ctypes.c_ssize_t,
    "int64": ctypes.c_int64,
}
#: TCMALLOC_* -> the MallocExtension property that tells it back (gperftools src/tcmalloc.cc)
TCMALLOC_PROPERTIES = {
    "TCMALLOC_MAX_TOTAL_THREAD_CACHE_BYTES": "tcmalloc.max_total_thread_cache_bytes",
    "TCMALLOC_AGGRESSIVE_DECOMMIT": "tcmalloc.aggressive_memory_decommit",
    "TCMALLOC_HEAP_LIMIT_MB": "tcmalloc.heap_limit_mb",
}


def _as(kind: str, text: str):
    if kind == "bool":
        return text.strip().lower() in ("true", "1", "yes", "t", "y")
    if kind == "str":
        return text
    return int(text, 0)


def _jemalloc_read_back(conf: str) -> dict:
    values = {}
    for pair in filter(None, conf.split(",")):
        name, _, given = pair.partition(":")
        kind = JEMALLOC_OPT_TYPES.get(name)
        entry = {"given": given, "read": None, "how": f"mallctl opt.{name}"}
        if kind is None:
            entry["how"] = "not read back: jemalloc's manual gives no type for it"
        else:
            read = _mallctl_read(f"opt.{name}", _CTYPES[kind])
            read = read.decode() if isinstance(read, bytes) else read
            entry.update(read=read, same=read == _as(kind, given))
        values[f"MALLOC_CONF {name}"] = entry
    return values


def _mimalloc_read_back(env: dict, indexes: dict, expected: dict) -> dict:
    fn = _global().mi_option_get
    fn.argtypes, fn.restype = [c_int], ctypes.c_long
    values = {}
    for key in (k for k in env if k.startswith("MIMALLOC_")):
        option = key.removeprefix("MIMALLOC_").lower()
        entry = {"given": env[key], "read": None, "how": "not read back: no index for it"}
        if option in indexes:
            read = fn(indexes[option])
            entry.update(read=read, same=read == expected.get(option), how="mi_option_get")
        values[key] = entry
    return values


def _tcmalloc_read_back(env: dict) -> dict:
    values = {}
    for key, given in env.items():
        entry = {
            "given": given,
            "read": None,
            "how": "not read back: MallocExtension has no getter",
        }
        if key == "TCMALLOC_RELEASE_RATE":
            # The C API has no getter; tcmalloc's own implementation of the C++ method
            # (TCMallocImplementation::GetMemoryReleaseRate, src/tcmalloc.cc: it returns the
            # flag the variable set) is called on MallocExtension::instance().
            instance = _global()._ZN15MallocExtension8instanceEv
            instance.restype = c_void_p
            fn = _global()._ZN22TCMallocImplementation20GetMemoryReleaseRateEv
            fn.argtypes, fn.restype = [c_void_p], ctypes.c_double
            read = fn(instance())
            entry.update(
                read=read,
                same=abs(read - float(given)) < 1e-9,
                how="TCMallocImplementation::GetMemoryReleaseRate",
            )
        elif key in TCMALLOC_PROPERTIES:
            read = _tc_property(TCMALLOC_PROPERTIES[key])
            wanted = _as("bool", given) if "DECOMMIT" in key else int(given)
            entry.update(
                read=read,
                same=(bool(read) if "DECOMMIT" in key else read) == wanted,
                how=f"MallocExtension property {TCMALLOC_PROPERTIES[key]}",
            )
        values[key] = entry
    return values


def read_back(spec: dict) -> dict:
    """What this process's allocator runs with, for the settings ``spec`` names (what
    ``settings.for_child`` put in the environment): each ``{"given", "read", "same", "how"}``,
    and whether pymalloc holds blocks (PYTHONMALLOC)."""
    import sys

    allocator, env = spec.get("allocator"), spec.get("env") or {}
    values: dict = {}
    try:
        if allocator == "jemalloc" and env.get("MALLOC_CONF"):
            values = _jemalloc_read_back(env["MALLOC_CONF"])
        elif allocator == "mimalloc":
            values = _mimalloc_read_back(env, spec.get("indexes") or {}, spec.get("expected") or {})
        elif allocator == "tcmalloc":
            values = _tcmalloc_read_back(
                {k: v for k, v in env.items() if k.startswith("TCMALLOC_")}
            )
    except AttributeError as exc:
        return {"values": {}, "note": _missing(exc), "pymalloc": sys.getallocatedblocks() > 0}
    return {"values": values, "pymalloc": sys.getallocatedblocks() > 0}


_PROBES = {
    "glibc": (_glibc_stats, _glibc_trim, _glibc_version),
    "jemalloc": (_jemalloc_stats, _jemalloc_trim, _jemalloc_version),
    "mimalloc": (_mimalloc_stats, _mimalloc_trim, _mimalloc_version),
    "tcmalloc": (_tcmalloc_stats, _tcmalloc_trim, _tcmalloc_version),
}


def memory(allocator: str) -> dict:
    """RSS plus the allocator's accounting; unknown allocator → nulls."""
    snapshot: dict = {"allocator": allocator, "rss_bytes": rss_bytes()}
    probe = _PROBES.get(allocator)
    unknown = {"live_bytes": None, "held_bytes": None, "details": {}}
    if probe is None:
        snapshot.update(unknown, note=f"no accounting for allocator {allocator!r}")
        return snapshot
    try:
        snapshot.update(probe[0]())
    except AttributeError as exc:
        snapshot.update(unknown, note=_missing(exc))
    return snapshot


def release(allocator: str) -> None:
    """Ask the allocator to give free memory back, nothing more (the periodic trim's call)."""
    probe = _PROBES.get(allocator)
    if probe:
        with contextlib.suppress(AttributeError):  # a probe without that symbol: no trim
            probe[1]()


def trim(allocator: str) -> dict:
    """Ask the allocator to return free memory to the OS; report before and after."""
    import time

    before = memory(allocator)
    probe = _PROBES.get(allocator)
    action: dict = {"call": None, "returned_memory": None}
    began = time.perf_counter()
    try:
        if probe:
            action = probe[1]()
    except AttributeError as exc:
        action["note"] = _missing(exc)
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
    probe = _PROBES.get(allocator)
    try:
        return probe[2]() if probe else None
    except (AttributeError, OSError):
        return None


def main() -> None:
    provider = malloc_provider()
    name = identify_path(provider) or "unknown"
    spec = os.environ.get("STAIR_STEPPER_SETTINGS")  # settings.ENV_SETTINGS
    answer = {
        "pid": os.getpid(),
        "malloc_provider": provider,
        "allocator": name,
        "version": version(name),
        "read_back": read_back(json.loads(spec)) if spec else None,
    }
    print(json.dumps(answer))


if __name__ == "__main__":
    main()

"""gperftools' tcmalloc (Debian's libgoogle-perftools4, libgoogle-perftools4t64 from Debian 13),
preloaded.

Settings: the ``TCMALLOC_*`` variables its source reads (gperftools 2.10, the ``EnvTo*`` calls
of its src/); four are read back through ``MallocExtension``. Inside the process:
``MallocExtension_GetNumericProperty`` (allocated bytes, heap size less unmapped, the free page
heap and the caches) and ``MallocExtension_ReleaseFreeMemory``.
"""

from __future__ import annotations

import ctypes
from ctypes import POINTER, byref, c_char_p, c_int, c_size_t, c_void_p

from stair_stepper.allocators import native
from stair_stepper.allocators.base import Allocator

#: the variables gperftools 2.10's tcmalloc reads (the EnvTo* calls of its src/)
VARIABLES = (
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
#: TCMALLOC_* -> the MallocExtension property that tells it back (gperftools src/tcmalloc.cc)
PROPERTIES = {
    "TCMALLOC_MAX_TOTAL_THREAD_CACHE_BYTES": "tcmalloc.max_total_thread_cache_bytes",
    "TCMALLOC_AGGRESSIVE_DECOMMIT": "tcmalloc.aggressive_memory_decommit",
    "TCMALLOC_HEAP_LIMIT_MB": "tcmalloc.heap_limit_mb",
}


def _property(name: str) -> int | None:
    fn = native.global_symbols().MallocExtension_GetNumericProperty
    fn.argtypes = [c_char_p, POINTER(c_size_t)]
    fn.restype = c_int
    value = c_size_t()
    return value.value if fn(name.encode(), byref(value)) else None


class Tcmalloc(Allocator):
    name = "tcmalloc"
    env_var = "STAIR_STEPPER_TCMALLOC"
    sonames = ("libtcmalloc.so.4", "libtcmalloc_minimal.so.4", "libtcmalloc.so")
    packages = ("libgoogle-perftools4", "libgoogle-perftools4t64")
    maps_prefix = "libtcmalloc"
    settings_words = "TCMALLOC_*"
    variants = {"tcmalloc": {}}
    free_kinds = {"pageheap_free_bytes": "tcmalloc's free page-heap pages, waiting for release"}
    timed_kinds = ("pageheap_free_bytes",)

    structure_columns = ("pageheap_free_bytes", "thread_cache_bytes")
    arena_columns = ()

    def reads(self, key: str) -> bool:
        return key in VARIABLES

    def accounting(self) -> dict:
        allocated = _property("generic.current_allocated_bytes")
        heap = _property("generic.heap_size")
        unmapped = _property("tcmalloc.pageheap_unmapped_bytes")
        free = _property("tcmalloc.pageheap_free_bytes")
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

    def structure(self) -> dict:
        names = (
            "pageheap_free_bytes",
            "pageheap_unmapped_bytes",
            "current_total_thread_cache_bytes",
            "central_cache_free_bytes",
            "transfer_cache_free_bytes",
        )
        found = {name: _property(f"tcmalloc.{name}") for name in names}
        return {
            "totals": {
                "pageheap_free_bytes": found["pageheap_free_bytes"],
                "thread_cache_bytes": found["current_total_thread_cache_bytes"],
            },
            "arenas": [],
            **found,
        }

    def trim(self) -> dict:
        native.global_symbols().MallocExtension_ReleaseFreeMemory()
        return {"call": "MallocExtension_ReleaseFreeMemory()", "returned_memory": None}

    def version(self) -> str | None:
        fn = native.global_symbols().tc_version
        fn.argtypes = [POINTER(c_int), POINTER(c_int), POINTER(c_char_p)]
        fn.restype = c_char_p
        raw = fn(None, None, None)
        return raw.decode() if raw else None

    def read_back(self, spec: dict) -> dict:
        env = {k: v for k, v in (spec.get("env") or {}).items() if k.startswith("TCMALLOC_")}
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
                instance = native.global_symbols()._ZN15MallocExtension8instanceEv
                instance.restype = c_void_p
                fn = native.global_symbols()._ZN22TCMallocImplementation20GetMemoryReleaseRateEv
                fn.argtypes, fn.restype = [c_void_p], ctypes.c_double
                read = fn(instance())
                entry.update(
                    read=read,
                    same=abs(read - float(given)) < 1e-9,
                    how="TCMallocImplementation::GetMemoryReleaseRate",
                )
            elif key in PROPERTIES:
                read = _property(PROPERTIES[key])
                decommit = "DECOMMIT" in key
                wanted = (
                    given.strip().lower() in ("true", "1", "yes", "t", "y")
                    if decommit
                    else int(given)
                )
                entry.update(
                    read=read,
                    same=(bool(read) if decommit else read) == wanted,
                    how=f"MallocExtension property {PROPERTIES[key]}",
                )
            values[key] = entry
        return values

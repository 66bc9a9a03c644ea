"""Intel's oneTBB scalable allocator (Debian's libtbbmalloc2), preloaded through its proxy.

``libtbbmalloc_proxy.so.2`` defines ``malloc`` and the rest of the C and C++ allocation
functions and forwards them to ``scalable_malloc`` & co. in ``libtbbmalloc.so.2``
(oneTBB src/tbbmalloc_proxy/proxy.cpp); preloading the proxy is oneTBB's documented way to
replace malloc in a program unchanged.

Settings: the two variables the allocator reads (oneTBB src/tbbmalloc: ``TBB_MALLOC_USE_HUGE_
PAGES`` in frontend.cpp, ``TBB_MALLOC_SET_HUGE_SIZE_THRESHOLD`` in large_objects.cpp). It has
no getter for either: the huge-pages request is checked in the trial process, whose
``TBB_VERSION=1`` banner says "huge pages requested" or "not requested"; the threshold is not
read back. Inside the process it gives no accounting (``null``, never a guess) and one
command, ``scalable_allocation_command(TBBMALLOC_CLEAN_ALL_BUFFERS)``, as the trim.
"""

from __future__ import annotations

import re
from ctypes import c_int, c_void_p

from stair_stepper.allocators.base import Allocator, Variant
from stair_stepper.allocators.native import global_symbols

VARIABLES = ("TBB_MALLOC_USE_HUGE_PAGES", "TBB_MALLOC_SET_HUGE_SIZE_THRESHOLD")
TBBMALLOC_CLEAN_ALL_BUFFERS = (
    0  # oneTBB include/oneapi/tbb/scalable_allocator.h, ScalableAllocationCmd
)
TBBMALLOC_OK = 0


class Tbbmalloc(Allocator):
    name = "tbbmalloc"
    env_var = "STAIR_STEPPER_TBBMALLOC"
    sonames = ("libtbbmalloc_proxy.so.2", "libtbbmalloc_proxy.so")
    packages = ("libtbbmalloc2",)
    maps_prefix = "libtbbmalloc"
    settings_words = "TBB_MALLOC_USE_HUGE_PAGES and TBB_MALLOC_SET_HUGE_SIZE_THRESHOLD"
    variants = {"tbbmalloc": {}}

    def reads(self, key: str) -> bool:
        return key in VARIABLES

    def trial_env(self, var: Variant) -> dict[str, str]:
        return {"TBB_VERSION": "1"}  # its banner: version, and whether huge pages were asked

    def needs_trial(self, var: Variant) -> bool:
        return bool(var.env)

    def check(self, var: Variant, trial: dict | None) -> str | None:
        threshold = var.env.get("TBB_MALLOC_SET_HUGE_SIZE_THRESHOLD")
        if threshold is not None and not threshold.strip().isdigit():
            # GetIntegralEnvironmentVariable (oneTBB src/tbb/environment.h): digits or nothing
            return f"TBB_MALLOC_SET_HUGE_SIZE_THRESHOLD={threshold} is not a number of bytes."
        wanted = var.env.get("TBB_MALLOC_USE_HUGE_PAGES")
        if wanted is None:
            return None
        banner = re.search(r"TBBmalloc: huge pages\s+(.+)", (trial or {}).get("stderr") or "")
        said = banner.group(1).strip() if banner else "nothing"
        asked = banner is not None and not said.startswith("not requested")
        if asked != (wanted == "1") or wanted not in ("0", "1"):
            return (
                f"tbbmalloc does not take TBB_MALLOC_USE_HUGE_PAGES={wanted}: its banner says "
                f"huge pages {said} (it takes 1 to ask for them, 0 not to)."
            )
        return None

    def version_in_output(self, stderr: str) -> str | None:
        found = re.search(r"TBBmalloc: VERSION\s+(\S+)", stderr)
        return found.group(1) if found else None

    def trim(self) -> dict:
        fn = global_symbols().scalable_allocation_command
        fn.argtypes, fn.restype = [c_int, c_void_p], c_int
        rc = fn(TBBMALLOC_CLEAN_ALL_BUFFERS, None)
        return {
            "call": "scalable_allocation_command(TBBMALLOC_CLEAN_ALL_BUFFERS)",
            "returned_memory": rc == TBBMALLOC_OK,
        }

    def read_back(self, spec: dict) -> dict:
        return {
            key: {"given": value, "read": None, "how": "not read back: tbbmalloc has no getter"}
            for key, value in (spec.get("env") or {}).items()
            if key in VARIABLES
        }

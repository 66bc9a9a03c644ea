"""glibc's malloc (ptmalloc2): the system's own allocator, no library to preload.

Settings: its malloc variables (``MALLOC_ARENA_MAX`` …, the aliases glibc's
``elf/dl-tunables.list`` gives its malloc tunables) and ``GLIBC_TUNABLES``, every name in it
one that ``ld.so --list-tunables`` lists here; read back as ``ld.so --list-tunables`` reports
them under the variant's environment (a value glibc refuses, outside a tunable's range, stays
the default there): glibc has no call that tells a running process its tunables.

Inside the process: ``mallinfo2`` (live and held bytes), ``malloc_info(3)`` and
``malloc_stats(3)`` for each arena (held, in use, free in bins and fastbins, top chunk),
``malloc_trim(0)``.
"""

from __future__ import annotations

import ctypes
import re
from ctypes import POINTER, c_char_p, c_int, c_size_t, c_void_p

from stair_stepper.allocators import native
from stair_stepper.allocators.base import Allocator, Variant

#: glibc's environment aliases of its malloc tunables (glibc elf/dl-tunables.list); glibc also
#: reads GLIBC_TUNABLES
ALIASES = {
    "MALLOC_CHECK_": "glibc.malloc.check",
    "MALLOC_TOP_PAD_": "glibc.malloc.top_pad",
    "MALLOC_PERTURB_": "glibc.malloc.perturb",
    "MALLOC_MMAP_THRESHOLD_": "glibc.malloc.mmap_threshold",
    "MALLOC_TRIM_THRESHOLD_": "glibc.malloc.trim_threshold",
    "MALLOC_MMAP_MAX_": "glibc.malloc.mmap_max",
    "MALLOC_ARENA_MAX": "glibc.malloc.arena_max",
    "MALLOC_ARENA_TEST": "glibc.malloc.arena_test",
}


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


_HEAP = re.compile(r'<heap nr="(\d+)">(.*?)</heap>', re.S)
_TOTAL = re.compile(r'<total type="(\w+)" count="(\d+)" size="(\d+)"/>')
_SYSTEM = re.compile(r'<system type="current" size="(\d+)"/>')
_STATS_ARENA = re.compile(r"Arena (\d+):\s+system bytes\s+=\s+(\d+)\s+in use bytes\s+=\s+(\d+)")


class Glibc(Allocator):
    name = "glibc"
    packages = ("libc6",)
    maps_prefix = "libc.so"
    settings_words = "MALLOC_ARENA_MAX, MALLOC_TRIM_THRESHOLD_ … and GLIBC_TUNABLES"
    variants = {"glibc": {}, "glibc+arena2": {"MALLOC_ARENA_MAX": "2"}}
    free_kinds = {
        "free_bin_bytes": "free chunks in glibc's bins and fastbins",
        "top_bytes": "glibc's top chunks, not yet trimmed",
    }

    structure_columns = ("free_bin_bytes", "top_bytes", "mmapped_bytes")
    arena_columns = ("system_bytes", "in_use_bytes", "fastbin_bytes", "bin_bytes", "top_bytes")
    arena_parts = (
        ("in_use_bytes", "in use"),
        ("bin_bytes", "free in bins"),
        ("fastbin_bytes", "free in fastbins"),
        ("top_bytes", "top"),
    )

    def reads(self, key: str) -> bool:
        return key in ALIASES or key == "GLIBC_TUNABLES"

    # --- settings: ld.so --list-tunables is the only place glibc tells them -----------------

    def needs_trial(self, var: Variant) -> bool:
        return False  # ld.so lists the tunables; no preloaded process to ask

    def check(self, var: Variant, trial: dict | None) -> str | None:
        given = given_tunables(var)
        if not given:
            return None
        taken = tunables({k: v for k, v in var.env.items() if k != "PYTHONMALLOC"})
        for tunable, value in given.items():
            if tunable not in taken:
                return (
                    f"{tunable} is not a tunable of this glibc (ld.so --list-tunables lists them)."
                )
            read, low, high = taken[tunable]
            try:
                inside = int(low, 0) <= int(value, 0) <= int(high, 0)
            except ValueError:
                inside = False
            if not inside or not same_number(read, value):
                alias = [k for k, t in ALIASES.items() if t == tunable and k in var.env]
                written = f"{alias[0]}={value} ({tunable})" if alias else f"{tunable}={value}"
                return (
                    f"glibc does not take {written}: it takes {low} to {high}, and would run "
                    f"with {read}."
                )
        return None

    def read_back_outside(self, var: Variant) -> dict:
        given = given_tunables(var)
        env = {k: v for k, v in var.env.items() if k != "PYTHONMALLOC"}
        taken = tunables(env) if given else {}
        return {
            "values": {
                t: {
                    "given": v,
                    "read": taken.get(t, (None,))[0],
                    "same": same_number(taken.get(t, ("",))[0], v),
                    "how": "ld.so --list-tunables under the variant's environment",
                }
                for t, v in given.items()
            }
        }

    # --- inside the served process -----------------------------------------------------------

    def accounting(self) -> dict:
        lib = native.libc()
        lib.mallinfo2.restype = _Mallinfo2
        mi = lib.mallinfo2()
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

    def structure(self) -> dict:
        """Each arena (malloc_info(3), read into memory, and malloc_stats(3) for what each arena
        has in use): bytes it holds from the system, in use, free in fastbins and in the other
        bins, and its top chunk (the rest: held, not in use, not in a bin); mmapped chunks
        apart."""
        lib = native.libc()
        lib.open_memstream.restype = c_void_p
        lib.open_memstream.argtypes = [POINTER(c_char_p), POINTER(c_size_t)]
        lib.malloc_info.argtypes, lib.fclose.argtypes = [c_int, c_void_p], [c_void_p]
        buffer, size = c_char_p(), c_size_t()
        stream = lib.open_memstream(ctypes.byref(buffer), ctypes.byref(size))
        lib.malloc_info(0, stream)
        lib.fclose(stream)
        xml = ctypes.string_at(buffer, size.value).decode()
        lib.free.argtypes = [c_void_p]
        lib.free(buffer)
        in_use = {
            int(i): int(u)
            for i, _, u in _STATS_ARENA.findall(native.captured_stderr(lib.malloc_stats))
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
        mmap = {k: (int(c), int(sz)) for k, c, sz in _TOTAL.findall(tail)}.get("mmap", (0, 0))
        tops = [a["top_bytes"] for a in arenas]
        return {
            "totals": {
                "free_bin_bytes": sum(a["bin_bytes"] + a["fastbin_bytes"] for a in arenas),
                "top_bytes": sum(tops) if None not in tops else None,
                "mmapped_bytes": mmap[1],
            },
            "arenas": arenas,
            "mmapped": {"count": mmap[0], "bytes": mmap[1]},
        }

    def trim(self) -> dict:
        lib = native.libc()
        lib.malloc_trim.argtypes, lib.malloc_trim.restype = [c_size_t], c_int
        return {"call": "malloc_trim(0)", "returned_memory": bool(lib.malloc_trim(0))}

    def version(self) -> str:
        lib = native.libc()
        lib.gnu_get_libc_version.restype = c_char_p
        return lib.gnu_get_libc_version().decode()


def loader() -> str:
    """The dynamic linker this interpreter runs under (for ``--list-tunables``)."""
    with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
        for line in maps:
            path = line.split(maxsplit=5)[-1].strip()
            if "/ld-linux" in path or "/ld-musl" in path:
                return path
    return "/lib64/ld-linux-x86-64.so.2"


def tunables(env: dict[str, str]) -> dict[str, tuple[str, str, str]]:
    """``ld.so --list-tunables`` under ``env``: tunable -> (value as glibc took it, min, max)."""
    import subprocess

    done = subprocess.run([loader(), "--list-tunables"], env=env, capture_output=True, text=True)
    found = {}
    for line in done.stdout.splitlines():
        row = re.match(r"(\S+): (\S+) \(min: (\S+), max: (\S+)\)", line)
        if row:
            found[row.group(1)] = (row.group(2), row.group(3), row.group(4))
    return found


def given_tunables(var: Variant) -> dict[str, str]:
    """The tunables a glibc variant sets: its aliases and GLIBC_TUNABLES' malloc entries."""
    from stair_stepper.errors import UserError

    given = {ALIASES[k]: v for k, v in var.env.items() if k in ALIASES}
    for entry in filter(None, var.env.get("GLIBC_TUNABLES", "").split(":")):
        key, sep, value = entry.partition("=")
        if not sep:
            raise UserError(
                f"variant {var.name}: GLIBC_TUNABLES entry {entry!r} is not name=value."
            )
        given[key] = value
    return given


def same_number(a: str, b: str) -> bool:
    try:
        return int(str(a), 0) == int(str(b), 0)
    except ValueError:
        return str(a) == str(b)

"""jemalloc (Debian's libjemalloc2), preloaded.

Settings: ``MALLOC_CONF``, tried in a process preloaded with this jemalloc: its "Invalid conf
pair/value" on stderr refuses the variant; read back in the measured process through
``mallctl("opt.<name>")`` (the types jemalloc's manual gives). Inside the process: ``stats.*``
after an ``epoch`` refresh, each arena's dirty and muzzy pages (decay's waiting room), the
background threads, and ``arena.<all>.purge`` as the trim.

Fork: jemalloc turns its background threads off in a forked child
(``background_thread_postfork_child``, src/background_thread.c): every worker a prefork server
forks from a master that had them runs without, whatever ``MALLOC_CONF`` says. ``after_fork``
reports that and, asked to, turns them back on (``mallctl("background_thread", true)``), which
is what a team's ``post_fork`` hook must do.
"""

from __future__ import annotations

import ctypes
import os
import re
from ctypes import POINTER, byref, c_bool, c_char_p, c_int, c_size_t, c_uint64, c_void_p

from stair_stepper.allocators import native
from stair_stepper.allocators.base import Allocator, Variant

MALLCTL_ARENAS_ALL = 4096  # jemalloc's "all arenas" index
#: what jemalloc prints when it does not take a MALLOC_CONF pair (src/jemalloc.c, conf parsing)
REFUSED = r"<jemalloc>: ((?:Invalid conf (?:pair|value)|Out-of-range conf value): \S+)"
#: jemalloc's default dirty_decay_ms (doc/jemalloc.xml.in: opt.dirty_decay_ms)
DEFAULT_DIRTY_DECAY_MS = 10_000
#: and its default muzzy_decay_ms, as Debian's jemalloc 5.3 reads back opt.muzzy_decay_ms
DEFAULT_MUZZY_DECAY_MS = 0
#: the name jemalloc gives its background threads (src/background_thread.c, pthread_setname_np)
THREAD_NAME = "jemalloc_bg_thd"

#: the type of each ``opt.*`` mallctl, from jemalloc 5.3's manual (doc/jemalloc.xml.in)
OPT_TYPES = {
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
    "bool": c_bool,
    "str": c_char_p,
    "unsigned": ctypes.c_uint,
    "size_t": c_size_t,
    "ssize_t": ctypes.c_ssize_t,
    "int64": ctypes.c_int64,
}


def _mallctl():
    fn = native.global_symbols().mallctl
    fn.argtypes = [c_char_p, c_void_p, POINTER(c_size_t), c_void_p, c_size_t]
    fn.restype = c_int
    return fn


def mallctl_read(name: str, ctype=c_size_t):
    value = ctype()
    size = c_size_t(ctypes.sizeof(value))
    rc = _mallctl()(name.encode(), byref(value), byref(size), None, 0)
    return value.value if rc == 0 else None


def mallctl_write(name: str, value, ctype=c_bool) -> int:
    """Set a writable mallctl; jemalloc's return code (0: done)."""
    new = ctype(value)
    return _mallctl()(name.encode(), None, None, byref(new), ctypes.sizeof(new))


def _as(kind: str, text: str):
    if kind == "bool":
        return text.strip().lower() in ("true", "1", "yes", "t", "y")
    if kind == "str":
        return text
    return int(text, 0)


def background_threads_running() -> int:
    """How many of this process's threads are jemalloc's background threads, by their name."""
    count = 0
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/comm", encoding="utf-8") as comm:
                count += comm.read().strip() == THREAD_NAME
        except OSError:
            continue
    return count


class Jemalloc(Allocator):
    name = "jemalloc"
    env_var = "STAIR_STEPPER_JEMALLOC"
    sonames = ("libjemalloc.so.2", "libjemalloc.so")
    packages = ("libjemalloc2",)
    maps_prefix = "libjemalloc"
    settings_words = "MALLOC_CONF"
    variants = {"jemalloc": {}, "jemalloc+bg": {"MALLOC_CONF": "background_thread:true"}}
    free_kinds = {
        "dirty_bytes": "jemalloc's dirty pages, waiting for decay",
        "muzzy_bytes": "jemalloc's muzzy pages, waiting for decay",
    }
    timed_kinds = ("dirty_bytes", "muzzy_bytes")

    post_fork_remedies = ("background_thread",)
    structure_columns = ("dirty_bytes", "muzzy_bytes", "retained_bytes", "metadata_bytes")
    arena_columns = ("dirty_bytes", "muzzy_bytes")

    def reads(self, key: str) -> bool:
        return key == "MALLOC_CONF"

    def check(self, var: Variant, trial: dict | None) -> str | None:
        bad = self.complaints((trial or {}).get("stderr") or "")
        return f"jemalloc refused MALLOC_CONF: {'; '.join(bad)}." if bad else None

    def complaints(self, log: str) -> list[str]:
        """What jemalloc said in a process's output about MALLOC_CONF pairs it did not take."""
        return list(dict.fromkeys(re.findall(REFUSED, log)))

    # --- inside the served process -----------------------------------------------------------

    def accounting(self) -> dict:
        epoch = c_uint64(1)
        size = c_size_t(ctypes.sizeof(epoch))
        _mallctl()(b"epoch", byref(epoch), byref(size), byref(epoch), size)  # refresh the stats
        keys = ("allocated", "active", "resident", "mapped", "retained", "metadata")
        stats = {k: mallctl_read(f"stats.{k}") for k in keys}
        return {
            "live_bytes": stats["allocated"],
            "held_bytes": stats["resident"],
            "details": {f"{k}_bytes": v for k, v in stats.items()},
        }

    def structure(self) -> dict:
        """stats.* (after an ``epoch`` refresh, made by ``accounting``), each arena's dirty and
        muzzy pages (decay's waiting room), and the background threads."""
        page = mallctl_read("arenas.page") or 4096
        narenas = mallctl_read("arenas.narenas", ctypes.c_uint) or 0
        arenas = []
        for i in range(narenas):
            dirty = mallctl_read(f"stats.arenas.{i}.pdirty")
            if dirty is None:  # an arena index not (yet) in use
                continue
            muzzy = mallctl_read(f"stats.arenas.{i}.pmuzzy") or 0
            arenas.append({"arena": i, "dirty_bytes": dirty * page, "muzzy_bytes": muzzy * page})
        return {
            "totals": {
                "dirty_bytes": sum(a["dirty_bytes"] for a in arenas),
                "muzzy_bytes": sum(a["muzzy_bytes"] for a in arenas),
                "retained_bytes": mallctl_read("stats.retained"),
                "metadata_bytes": mallctl_read("stats.metadata"),
            },
            "arenas": arenas,
            "narenas_option": mallctl_read("opt.narenas", ctypes.c_uint),
            "background_threads": mallctl_read("stats.background_thread.num_threads"),
        }

    def trim(self) -> dict:
        name = f"arena.{MALLCTL_ARENAS_ALL}.purge".encode()
        rc = _mallctl()(name, None, None, None, 0)
        return {"call": f"mallctl('arena.{MALLCTL_ARENAS_ALL}.purge')", "returned_memory": rc == 0}

    def version(self) -> str | None:
        raw = mallctl_read("version", c_char_p)
        return raw.decode() if raw else None

    def read_back(self, spec: dict) -> dict:
        values = {}
        conf = (spec.get("env") or {}).get("MALLOC_CONF") or ""
        for pair in filter(None, conf.split(",")):
            name, _, given = pair.partition(":")
            kind = OPT_TYPES.get(name)
            entry = {"given": given, "read": None, "how": f"mallctl opt.{name}"}
            if kind is None:
                entry["how"] = "not read back: jemalloc's manual gives no type for it"
            else:
                read = mallctl_read(f"opt.{name}", _CTYPES[kind])
                read = read.decode() if isinstance(read, bytes) else read
                entry.update(read=read, same=read == _as(kind, given))
            values[f"MALLOC_CONF {name}"] = entry
        return values

    def effective(self) -> dict:
        """What this jemalloc runs with now, given or not: its decay times, and whether its
        background threads are asked for (opt), on (the runtime switch) and running."""
        return {
            "dirty_decay_ms": mallctl_read("opt.dirty_decay_ms", ctypes.c_ssize_t),
            "muzzy_decay_ms": mallctl_read("opt.muzzy_decay_ms", ctypes.c_ssize_t),
            "background_thread_option": mallctl_read("opt.background_thread", c_bool),
            "background_thread": mallctl_read("background_thread", c_bool),
            "background_threads_running": background_threads_running(),
        }

    def after_fork(self, remedy: bool) -> dict:
        """In a forked child: the background threads asked for (``opt``) but turned off by the
        fork, and with ``remedy`` turned back on (``mallctl("background_thread", true)``)."""
        state = self.effective()
        asked, on = state["background_thread_option"], state["background_thread"]
        state["turned_off_by_fork"] = bool(asked and not on)
        if remedy and state["turned_off_by_fork"]:
            state["remedy"] = "mallctl('background_thread', true)"
            state["remedy_rc"] = mallctl_write("background_thread", True)
            state["background_thread"] = mallctl_read("background_thread", c_bool)
        return state

    def findings(self, effective: dict) -> list[tuple[str, str]]:
        if (
            effective.get("background_thread_option")
            and effective.get("background_thread") is False
        ):
            return [("background_thread is off", "jemalloc turns it off in a forked child")]
        return []

    def remedy_code(self, remedy: str) -> str:
        return (  # newlen a size_t, not ctypes' default int: a wrong length is EINVAL
            "import ctypes\n"
            "\n"
            "on = ctypes.c_bool(True)\n"
            "ctypes.CDLL(None).mallctl(\n"
            '    b"background_thread", None, None, ctypes.byref(on), '
            "ctypes.c_size_t(ctypes.sizeof(on))\n"
            ")"
        )

    def planned_pause_s(self, env: dict[str, str]) -> float:
        conf = dict(
            pair.partition(":")[::2] for pair in (env.get("MALLOC_CONF") or "").split(",") if pair
        )
        effective: dict = {"background_thread": conf.get("background_thread") == "true"}
        for name in ("dirty_decay_ms", "muzzy_decay_ms"):
            try:
                effective[name] = int(conf[name]) if name in conf else None
            except ValueError:
                effective[name] = None
        return self.least_pause_s({"effective": effective})

    def least_pause_s(self, read_back: dict) -> float:
        """The decay times (dirty, then muzzy: a page purged from dirty waits again as muzzy
        before its memory leaves RSS), doubled when a background thread does the purging: it
        sleeps until enough pages are due, and an arena holding few (at most
        BACKGROUND_THREAD_NPAGES_THRESHOLD, 1024 pages) sleeps a whole decay time between
        wakes (``decay_ns_until_purge``, src/decay.c), so the last pages of a burst can leave
        up to twice the decay time after it. Seen: two gunicorn workers, 16 threads each,
        returned 73 MB 8 s after a burst and the last 52 MB 17.6 s after it, with stillness
        in between (tests/test_prefork.py's whole run)."""
        effective = read_back.get("effective") or {}
        dirty, muzzy = effective.get("dirty_decay_ms"), effective.get("muzzy_decay_ms")
        dirty = DEFAULT_DIRTY_DECAY_MS if dirty is None else dirty
        muzzy = DEFAULT_MUZZY_DECAY_MS if muzzy is None else muzzy
        if dirty < 0:  # -1: dirty pages never decay, nothing to wait for
            return 0.0
        waits = dirty + max(0, muzzy)
        return (2 if effective.get("background_thread") else 1) * waits / 1000

"""Memory cgroups: one per server, made before it starts and removed after it ends, with a
limit if asked; what the kernel charges it, read beside RSS.

A container's memory limit is a cgroup's: cgroup v2's ``memory.max``
(Documentation/admin-guide/cgroup-v2.rst, "Memory Interface Files"), or v1's
``memory.limit_in_bytes`` (Documentation/admin-guide/cgroup-v1/memory.rst). The kernel
charges a cgroup for more than RSS shows (page cache, kernel memory) and, under pressure,
reclaims part of what RSS counts (pages given back with MADV_FREE, clean file pages), but
never the free chunks an allocator keeps mapped: what decides an OOM kill is the charge.

Both versions behind one interface (``Cgroup``): where a child can be made is found once
(``locate``); v2 where the memory controller is on the unified hierarchy and enabled (or can
be enabled) for our cgroup's children, v1 where it is not. Each cgroup is named
``stair-stepper-<lab>-<variant>``, where ``<lab>`` is ``<pid>.<start>.<pid namespace>``
(``lab_id``), so that a run killed hard leaves nothing that the next run, or ``stair-stepper
cleanup``, cannot find and remove (``cleanup.stale``, ``Cgroup.found``) — wherever in the
hierarchy it was left (a lab started from another cgroup makes its own beside that one), and
without ever taking a live run's: a pid used again starts later, and a pid of another
namespace is not judged.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from stair_stepper.errors import UserError
from stair_stepper.record import procfs

PREFIX = "stair-stepper-"
MIB = 1 << 20
#: the fields a reading has (bytes; counts since the cgroup was made)
FIELDS = (
    "charged_bytes",
    "peak_bytes",
    "anon_bytes",
    "file_bytes",
    "oom_kills",
    "oom_events",
    "limit_hits",
    "high_events",
)


@dataclass(frozen=True)
class Where:
    """Where this process may make memory cgroups: the version and the parent folder."""

    version: int
    parent: Path
    #: the hierarchy's root as mounted here, where cleanup.stale looks (None: beside ``parent``)
    mount: Path | None = None


def _read(path: Path) -> str:
    with open(path, encoding="ascii") as handle:
        return handle.read()


def _swap_on(swaps: Path = Path("/proc/swaps")) -> bool:
    """Whether any swap is on (``/proc/swaps`` lists a device under its heading)."""
    try:
        return len(_read(swaps).splitlines()) > 1
    except OSError:
        return True  # not knowable: limit memory plus swap too, as if it were on


def _flat(text: str) -> dict[str, int]:
    """A flat-keyed file ("key value" lines: memory.stat, memory.events, memory.oom_control)."""
    found = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        with contextlib.suppress(ValueError):
            found[key] = int(value)
    return found


def _our_paths(proc_cgroup: str) -> tuple[str | None, str | None]:
    """Our cgroup on the unified hierarchy ("0::/path") and on v1's memory one."""
    unified = memory = None
    for line in proc_cgroup.splitlines():
        number, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if number == "0" and controllers == "":
            unified = path
        elif "memory" in controllers.split(","):
            memory = path
    return unified, memory


def _mounts(proc_mounts: str) -> tuple[Path | None, Path | None]:
    """The cgroup2 mount and v1's memory mount."""
    unified = memory = None
    for line in proc_mounts.splitlines():
        parts = line.split()
        if len(parts) < 4:
            continue
        where, kind, options = parts[1], parts[2], parts[3].split(",")
        if kind == "cgroup2" and unified is None:
            unified = Path(where)
        elif kind == "cgroup" and "memory" in options and memory is None:
            memory = Path(where)
    return unified, memory


def locate(proc: Path = Path("/proc/self")) -> Where | str:
    """Where a child memory cgroup can be made, or one sentence saying why none can."""
    try:
        unified_path, memory_path = _our_paths(_read(proc / "cgroup"))
        unified_mount, memory_mount = _mounts(_read(proc / "mounts"))
    except OSError as exc:
        return f"this system shows no cgroups ({exc.strerror})"
    if unified_mount is not None and unified_path is not None:
        ours = unified_mount / unified_path.lstrip("/")
        try:
            available = _read(ours / "cgroup.controllers").split()
        except OSError:
            available = []
        if "memory" in available:
            enabled = _read(ours / "cgroup.subtree_control").split()
            if "memory" not in enabled:
                try:  # cgroup-v2.rst, "No Internal Process Constraint": a cgroup with
                    # processes (but the root) cannot give its children controllers
                    with open(ours / "cgroup.subtree_control", "w") as handle:
                        handle.write("+memory")
                except OSError as exc:
                    return (
                        f"cgroup v2's memory controller cannot be enabled below {ours} "
                        f"({exc.strerror}: it holds processes, and only leaves may)"
                    )
            return _writable(Where(2, ours, unified_mount))
    if memory_mount is not None and memory_path is not None:
        return _writable(Where(1, memory_mount / memory_path.lstrip("/"), memory_mount))
    return "no memory cgroup controller is mounted here (neither v2's nor v1's)"


def _writable(where: Where) -> Where | str:
    if not os.access(where.parent, os.W_OK):
        return f"cgroup {where.parent} is not writable here (run as root)"
    return where


class Cgroup:
    """One server's memory cgroup (v1 or v2): made with a limit or none, its processes, its
    charge read, and removed."""

    def __init__(self, where: Where, name: str, limit: int | None, high: int | None = None):
        self.version, self.limit, self.high = where.version, limit, high
        self.memsw_limited = False
        self.path = where.parent / f"{PREFIX}{lab_id()}-{name}"
        try:
            self._make()
        except FileExistsError:
            self.remove()
            self._make()
        except OSError as exc:
            raise UserError(f"cannot make cgroup {self.path}: {exc.strerror}.") from None
        try:
            self._configure()
        except OSError as exc:
            self.remove()
            raise UserError(
                f"cannot set the limit of cgroup {self.path}: {exc.strerror}."
            ) from None

    @classmethod
    def found(cls, where: Where, path: Path) -> Cgroup:
        """One made earlier (by a run killed hard), as it was made: its limits read back from
        its files, to read, kill or remove."""
        group = cls.__new__(cls)
        group.version, group.path = where.version, path
        if where.version == 2:
            group.limit, group.high = group._limit("memory.max"), group._limit("memory.high")
            group.memsw_limited = False
        else:
            group.limit, group.high = group._limit("memory.limit_in_bytes"), None
            group.memsw_limited = group._limit("memory.memsw.limit_in_bytes") is not None
        return group

    def _limit(self, name: str) -> int | None:
        """A limit file's bytes (None: no limit, or no such file). Unlimited reads "max" on
        v2 and, on v1, the page counter's maximum (PAGE_COUNTER_MAX pages, about 2**63)."""
        try:
            text = _read(self.path / name).strip()
        except OSError:
            return None
        return None if text == "max" or int(text) >= 1 << 62 else int(text)

    def _make(self) -> None:
        """mkdir: the kernel fills the new folder with the controller's files."""
        self.path.mkdir()

    def _rmdir(self) -> None:
        """rmdir: the kernel removes an empty cgroup's folder, its files with it."""
        self.path.rmdir()

    def _configure(self) -> None:
        if self.version == 2:
            if self.limit is not None:
                self._write("memory.max", str(self.limit))
                self._write("memory.swap.max", "0", optional=True)  # the limit is all it gets
            if self.high is not None:
                self._write("memory.high", str(self.high))
            # a container's processes die together (kubelet sets memory.oom.group on v2)
            self._write("memory.oom.group", "1", optional=True)
        elif self.limit is not None:
            self._write("memory.limit_in_bytes", str(self.limit))
            if _swap_on():
                # swap limited to the same: memory plus swap may not exceed the limit either.
                # Without swap memsw is the memory counter again, and limiting it too would
                # hide every limit hit: the kernel charges memsw first, so memsw is the counter
                # that fails, and since Linux 6.13 only the memory counter counts failures
                # (mm/memcontrol.c sets track_failcnt on it alone; measured here on 6.18).
                self._write("memory.memsw.limit_in_bytes", str(self.limit), optional=True)
                self.memsw_limited = True

    def _write(self, name: str, value: str, optional: bool = False) -> None:
        try:
            with open(self.path / name, "w") as handle:
                handle.write(value)
        except FileNotFoundError:
            if not optional:
                raise

    @property
    def procs_file(self) -> str:
        return str(self.path / "cgroup.procs")

    def pids(self) -> list[int]:
        try:
            return [int(p) for p in _read(self.path / "cgroup.procs").split()]
        except OSError:
            return []

    def read(self) -> dict[str, int | None]:
        """The charge now, its peak, its anonymous and file parts, and the events so far."""
        try:
            if self.version == 2:
                return self._read_v2()
            return self._read_v1()
        except OSError:
            return dict.fromkeys(FIELDS)

    def charged(self) -> int | None:
        """The charge alone, for every sample: its one small file held open and read again
        with ``pread`` (as procfs reads statm; the kernel makes the text afresh at offset 0),
        about 1 µs a call where opening it each time took 19."""
        try:
            fd = getattr(self, "_charge_fd", None)
            if fd is None:
                name = "memory.current" if self.version == 2 else "memory.usage_in_bytes"
                fd = self._charge_fd = os.open(self.path / name, os.O_RDONLY | os.O_CLOEXEC)
            return int(os.pread(fd, 64, 0))
        except (OSError, ValueError):
            return None

    def _close(self) -> None:
        fd, self._charge_fd = getattr(self, "_charge_fd", None), None
        if fd is not None:
            os.close(fd)

    def _read_v2(self) -> dict[str, int | None]:
        stat = _flat(_read(self.path / "memory.stat"))
        events = _flat(_read(self.path / "memory.events"))
        try:
            peak: int | None = int(_read(self.path / "memory.peak"))  # Linux 5.19 and later
        except (OSError, ValueError):
            peak = None
        return {
            "charged_bytes": int(_read(self.path / "memory.current")),
            "peak_bytes": peak,
            "anon_bytes": stat.get("anon"),
            "file_bytes": stat.get("file"),
            "oom_kills": events.get("oom_kill"),
            "oom_events": events.get("oom"),
            "limit_hits": events.get("max"),
            "high_events": events.get("high"),
        }

    def _read_v1(self) -> dict[str, int | None]:
        stat = _flat(_read(self.path / "memory.stat"))
        oom = _flat(_read(self.path / "memory.oom_control"))
        return {
            "charged_bytes": int(_read(self.path / "memory.usage_in_bytes")),
            "peak_bytes": int(_read(self.path / "memory.max_usage_in_bytes")),
            "anon_bytes": stat.get("total_rss", stat.get("rss")),
            "file_bytes": stat.get("total_cache", stat.get("cache")),
            "oom_kills": oom.get("oom_kill"),  # Linux 4.13 and later
            "oom_events": None,  # v1 counts no OOM events (under_oom is a state, not a count)
            # failures of the memory counter; where memsw is limited too the kernel counts
            # them on memsw's, which Linux 6.13 and later no longer count: not measured then
            "limit_hits": None if self.memsw_limited else int(_read(self.path / "memory.failcnt")),
            "high_events": None,  # v1 has no memory.high
        }

    def oom_kills(self) -> int | None:
        """How many of its processes the OOM killer has killed (cheap: one small file)."""
        try:
            if self.version == 2:
                return _flat(_read(self.path / "memory.events")).get("oom_kill")
            return _flat(_read(self.path / "memory.oom_control")).get("oom_kill")
        except OSError:
            return None

    def kill(self) -> None:
        """Every process in it, at once (v2's cgroup.kill where there is one)."""
        if self.version == 2 and (self.path / "cgroup.kill").exists():
            with contextlib.suppress(OSError):
                self._write("cgroup.kill", "1")
                return
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def remove(self, timeout: float = 10.0) -> None:
        """Kill what is left in it, wait until it is empty, and remove it."""
        self._close()
        if not self.path.exists():
            return
        deadline = time.monotonic() + timeout
        while self.pids() and time.monotonic() < deadline:
            self.kill()
            time.sleep(0.05)
        try:
            self._rmdir()
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise OSError(f"cgroup {self.path} could not be removed: {exc.strerror}") from None


def lab_id() -> str:
    """Who makes a cgroup: ``<pid>.<start>.<pid namespace>`` of this process (its pid alone
    where /proc does not say)."""
    start, namespace = procfs.started("self"), procfs.pid_namespace()
    if start is None or namespace is None:
        return str(os.getpid())
    return f"{os.getpid()}.{start}.{namespace}"


class OomWatch(threading.Thread):
    """Watches a cgroup's OOM kills (every ``interval`` seconds); at the first, reads the
    cgroup as it was, kills what is left in it (a container dies whole: kubelet's
    ``memory.oom.group`` on v2, and here on v1 too) and sets ``killed``."""

    def __init__(self, cgroup: Cgroup, interval: float = 0.1) -> None:
        super().__init__(name="oom-watch", daemon=True)
        self.cgroup, self.interval = cgroup, interval
        self.killed = threading.Event()
        self.reading: dict | None = None
        self._stopping = threading.Event()

    def run(self) -> None:
        while not self._stopping.wait(self.interval):
            if self.check():
                return

    def check(self) -> bool:
        """Whether an OOM kill happened (and, the first time, its reading and the kill)."""
        if self.killed.is_set():
            return True
        if not self.cgroup.oom_kills():
            return False
        self.reading = self.cgroup.read()
        self.cgroup.kill()
        self.killed.set()
        return True

    def stop(self) -> None:
        self._stopping.set()

"""Reading a process's (or a process tree's) memory and CPU from /proc, from the outside.

Works for any process this user may inspect, not only our service. A ``Watch`` keeps
``/proc/<pid>/statm`` and ``stat`` open and re-reads them with ``pread``: a sample is two
system calls into the kernel's two cheapest per-process files, which is what keeps a
10 Hz recorder at or below psrecord's cost (bench/record_cost.py). The costly files
(``status`` for the peak, ``smaps_rollup`` for PSS/USS) are read only when asked, once a
second in the recorder. An open /proc file also pins the process it was opened for: once
that process is gone a read fails, even if its pid is reused.
"""

from __future__ import annotations

import contextlib
import os
import re

from stair_stepper.errors import ProcessGone
from stair_stepper.record.schema import SUMMED_COLUMNS as SUMMED  # what a tree sample sums

_CLK_TCK = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")
_HWM = re.compile(rb"^VmHWM:\s+(\d+)", re.MULTILINE)
_ROLLUP = re.compile(rb"^(Pss|Private_Clean|Private_Dirty|LazyFree):\s+(\d+)", re.MULTILINE)


def _open(path: str) -> int:
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except (FileNotFoundError, ProcessLookupError):
        raise ProcessGone(path) from None


def _pread(fd: int, path: str) -> bytes:
    try:
        data = os.pread(fd, 65536, 0)
    except (ProcessLookupError, FileNotFoundError):
        raise ProcessGone(path) from None
    if not data:
        raise ProcessGone(path)
    return data


def _read(path: str) -> bytes:
    fd = _open(path)
    try:
        return _pread(fd, path)
    finally:
        os.close(fd)


def _fields(stat: bytes) -> list[bytes]:
    """/proc/<pid>/stat after the command name (which may hold spaces and parentheses):
    [0] state, [7] minflt, [9] majflt, [11] utime, [12] stime (proc(5))."""
    return stat[stat.rindex(b")") + 2 :].split()


def _gone(fields: list[bytes]) -> bool:
    """A zombie or a dead process: it has no memory left to read."""
    return fields[0] in (b"Z", b"X")


def _cpu(stat: bytes) -> dict[str, float | int]:
    """CPU seconds (user, system, and both) and page faults (minor, major) so far."""
    fields = _fields(stat)
    user, system = int(fields[11]) / _CLK_TCK, int(fields[12]) / _CLK_TCK
    return {
        "cpu_s": user + system,
        "cpu_user_s": user,
        "cpu_system_s": system,
        "minor_faults": int(fields[7]),
        "major_faults": int(fields[9]),
    }


def _rollup(pid: int) -> dict[str, int | None]:
    """Peak RSS (status's VmHWM), PSS and private (USS) bytes (smaps_rollup).

    smaps_rollup makes the kernel walk the process's page tables: ~0.7 ms for a 60 MB
    process, more as it grows, a hundred times the cost of statm. Samplers read it less
    often (see record.Recorder's ``pss_interval``). The peak loses nothing by it: the
    kernel's high-water mark covers the time between two reads.
    """
    try:
        peak = _HWM.search(_read(f"/proc/{pid}/status"))
    except ProcessGone:
        peak = None
    rolled = {"peak_rss_bytes": int(peak.group(1)) * 1024 if peak else None}
    try:
        found = {k: int(v) * 1024 for k, v in _ROLLUP.findall(_read(f"/proc/{pid}/smaps_rollup"))}
    except (ProcessGone, PermissionError):
        return rolled | {"pss_bytes": None, "uss_bytes": None, "lazyfree_bytes": None}
    private = None
    if b"Private_Clean" in found and b"Private_Dirty" in found:
        private = found[b"Private_Clean"] + found[b"Private_Dirty"]
    return rolled | {
        "pss_bytes": found.get(b"Pss"),
        "uss_bytes": private,
        # pages freed with MADV_FREE, still in RSS until the kernel needs them (proc(5))
        "lazyfree_bytes": found.get(b"LazyFree"),
    }


_NOT_ROLLED = {"peak_rss_bytes": None, "pss_bytes": None, "uss_bytes": None, "lazyfree_bytes": None}


class Watch:
    """One process, its statm and stat files held open for cheap repeated samples."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._statm_path, self._stat_path = f"/proc/{pid}/statm", f"/proc/{pid}/stat"
        self._statm = _open(self._statm_path)
        try:
            self._stat = _open(self._stat_path)
        except ProcessGone:
            os.close(self._statm)
            raise

    def sample(self, rollup: bool = True) -> dict[str, int | float | None]:
        """RSS, anonymous RSS, CPU seconds (user, system), page faults and, with ``rollup``,
        peak RSS, PSS and USS.

        statm's resident and shared pages are the kernel's own counters behind status's
        VmRSS and RssFile + RssShmem, so anonymous RSS is their difference, exactly.
        """
        pages = _pread(self._statm, self._statm_path).split()
        resident, shared = int(pages[1]), int(pages[2])
        stat = _pread(self._stat, self._stat_path)
        if resident == 0 and _gone(_fields(stat)):
            raise ProcessGone(self._stat_path)
        row: dict[str, int | float | None] = {
            "rss_bytes": resident * _PAGE,
            "rss_anon_bytes": (resident - shared) * _PAGE,
            **_cpu(stat),
        }
        row.update(_rollup(self.pid) if rollup else _NOT_ROLLED)
        return row

    def close(self) -> None:
        for fd in (self._statm, self._stat):
            with contextlib.suppress(OSError):
                os.close(fd)


def children(pid: int) -> list[int]:
    """The direct children of ``pid`` (of all its threads), [] once it is gone."""
    found: list[int] = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except (FileNotFoundError, ProcessLookupError):
        return found
    for tid in tids:
        try:
            found += [int(c) for c in _read(f"/proc/{pid}/task/{tid}/children").split()]
        except (ProcessGone, FileNotFoundError):
            continue
    return found


def parent(pid: int) -> int:
    """The parent's pid (ProcessGone once it is gone)."""
    return int(_fields(_read(f"/proc/{pid}/stat"))[1])


def started(pid: int | str) -> int | None:
    """When a process started (clock ticks after boot: /proc/<pid>/stat's 22nd field), or
    None if there is none. With the pid it names one process: a pid used again starts later."""
    try:
        return int(_fields(_read(f"/proc/{pid}/stat"))[19])
    except (ProcessGone, OSError, ValueError, IndexError):
        return None


def pid_namespace(pid: int | str = "self") -> int | None:
    """A process's pid namespace (the inode of /proc/<pid>/ns/pid), or None."""
    try:
        return os.stat(f"/proc/{pid}/ns/pid").st_ino
    except OSError:
        return None


def descendants(pid: int) -> list[int]:
    """Every process below ``pid``, parents before their children."""
    found, frontier = [], [pid]
    while frontier:
        kids = [c for p in frontier for c in children(p)]
        found += kids
        frontier = kids
    return found


class TreeWatch:
    """A process and, with ``include_children``, every process below it.

    A sample sums ``SUMMED`` over the members alive at that moment and counts them in
    ``processes``; ``largest_rss_bytes`` is the biggest member's RSS. The tree is looked up
    again on every ``refresh()`` (the recorder does it with each PSS reading, once a
    second), so workers that start or are replaced join the sum within a second.
    """

    def __init__(self, pid: int, include_children: bool = False) -> None:
        self.pid = pid
        self.include_children = include_children
        self.members: dict[int, Watch] = {pid: Watch(pid)}
        if include_children:
            self.refresh()

    def refresh(self) -> None:
        if not self.include_children:
            return
        now = set(descendants(self.pid)) | {self.pid}
        for gone in set(self.members) - now:
            self.members.pop(gone).close()
        for new in sorted(now - set(self.members)):
            try:
                self.members[new] = Watch(new)
            except ProcessGone:
                continue

    def sample(self, rollup: bool = True) -> dict[str, int | float | None]:
        """One row for the tree; ProcessGone once the root process is gone."""
        if not self.include_children:
            row = self.members[self.pid].sample(rollup)
            row["processes"], row["largest_rss_bytes"] = 1, row["rss_bytes"]
            return row
        if rollup:
            self.refresh()
        rows = []
        for pid, watch in list(self.members.items()):
            try:
                rows.append(watch.sample(rollup))
            except ProcessGone:
                if pid == self.pid:
                    raise
                self.members.pop(pid).close()
        tree: dict[str, int | float | None] = {}
        for name in SUMMED:
            values = [r[name] for r in rows if r[name] is not None]
            tree[name] = sum(values) if len(values) == len(rows) else None
        tree["processes"] = len(rows)
        tree["largest_rss_bytes"] = max(r["rss_bytes"] for r in rows)
        return tree

    def close(self) -> None:
        for watch in self.members.values():
            watch.close()
        self.members.clear()


def memory(pid: int, rollup: bool = True) -> dict[str, int | float | None]:
    """One sample of ``pid`` (opens and closes its files; samplers keep a ``Watch``)."""
    watch = Watch(pid)
    try:
        return watch.sample(rollup)
    finally:
        watch.close()


def cpu(pid: int) -> dict[str, float | int]:
    """CPU seconds (user, system, both) and page faults the process has had so far."""
    return _cpu(_read(f"/proc/{pid}/stat"))


def alive(pid: int) -> bool:
    try:
        return not _gone(_fields(_read(f"/proc/{pid}/stat")))
    except ProcessGone:
        return False


def runs_python(pid: int) -> bool:
    """Is the process a CPython interpreter (so that PYTHONMALLOC means something to it)? Its
    executable is named python… or it maps libpython (a shared-library build)."""
    try:
        exe = os.path.basename(os.readlink(f"/proc/{pid}/exe"))
    except OSError:
        exe = ""
    if re.fullmatch(r"python[\d.]*", exe):
        return True
    try:
        with open(f"/proc/{pid}/maps", encoding="utf-8", errors="replace") as maps:
            return any("/libpython" in line for line in maps)
    except OSError:
        return False

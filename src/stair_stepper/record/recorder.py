"""Sample a process's memory from outside into a flushed CSV trace.

Three parts, each testable alone: a ``Sampler`` turns a process (or its tree) into one
row from /proc, with the allocator's newest reading when a poller is given (our service
answers ``GET /__stair_stepper__/memory``); a ``TraceWriter`` owns the file and its clock
(a continued trace's clock goes on from its last row); a ``Recorder`` runs them every
``interval`` seconds, on a background thread (the experiment) or in the caller's thread
(``stair-stepper record``). The allocator poll runs on its own thread
(``client.AllocatorPoller``) so that a busy server cannot stall the /proc samples.
"""

from __future__ import annotations

import collections
import threading
import time
from pathlib import Path

from stair_stepper.errors import ProcessGone
from stair_stepper.record import procfs
from stair_stepper.record.schema import PYTHON_COLUMNS, TRACE_COLUMNS, RowWriter, read_trace

#: default pause between allocator polls. Each poll is an HTTP round trip that costs
#: both sides CPU, and every request allocates in the server, which is exactly what lets
#: an allocator that decays only while it allocates purge while idle: the poll rate is part of
#: the experiment (recorded in meta.json), not a detail.
POLL_S = 0.5


#: the share of one core the PSS readings may take: smaps_rollup makes the kernel walk every
#: page table of the process (3.5 ms a read for an idle 60 MB process on this machine's
#: kernel 6.18, where it was 0.7 ms on an earlier one), so its pace follows its own cost
PSS_BUDGET = 0.002
#: ... but the tree and the PSS are looked at at least this often, however costly
PSS_MOST_S = 5.0


class Sampler:
    """One row for ``pid`` (with ``include_children``, for its whole tree: sums, a process
    count, the largest member) each time ``sample()`` is called. PSS, USS and the peak are
    read at most every ``pss_interval`` seconds, and no more often than keeps their own cost
    under ``PSS_BUDGET`` of a core (measured at each reading; at least every ``PSS_MOST_S``);
    ``pss_interval`` 0 reads them at every sample, whatever the cost. ``allocator``, a
    ``client.AllocatorPoller`` or None, gives live and held bytes while its reading is fresh."""

    def __init__(
        self,
        pid: int,
        include_children: bool = False,
        pss_interval: float = 1.0,
        allocator=None,
        cgroup=None,
    ) -> None:
        self._watch = procfs.TreeWatch(pid, include_children)  # ProcessGone if pid is gone
        self.pss_interval = pss_interval
        self.allocator = allocator
        self.cgroup = cgroup  # a cgroups.Cgroup: what the kernel charges, on the same clock
        self._last_rollup = -float("inf")
        self.rollup_gap_s = pss_interval  # the pace now: the interval, or the cost's
        self.rollup_cost_s: float | None = None  # what the last reading cost, in CPU time
        self.sampled_at: float | None = None  # when the last sample began (time.monotonic)

    def sample(self) -> dict:
        """A row of the trace's memory and CPU columns; ProcessGone once the process is gone."""
        self.sampled_at = now = time.monotonic()
        rollup = now - self._last_rollup >= self.rollup_gap_s
        began = time.thread_time() if rollup else 0.0
        row: dict = self._watch.sample(rollup)
        if rollup:
            self._last_rollup = now
            self.rollup_cost_s = cost = time.thread_time() - began
            if self.pss_interval > 0:
                paced = min(cost / PSS_BUDGET, PSS_MOST_S)
                self.rollup_gap_s = max(self.pss_interval, paced)
        if self.cgroup is not None:  # the charge every sample; its parts with the rollup
            if rollup:
                charge = self.cgroup.read()
                row["cgroup_bytes"] = charge["charged_bytes"]
                row["cgroup_peak_bytes"] = charge["peak_bytes"]
                row["cgroup_anon_bytes"] = charge["anon_bytes"]
                row["cgroup_file_bytes"] = charge["file_bytes"]
            else:
                row["cgroup_bytes"] = self.cgroup.charged()
        reading = self.allocator.fresh() if self.allocator else None
        if reading:
            row["live_bytes"] = reading.get("live_bytes")
            row["held_bytes"] = reading.get("held_bytes")
        return row

    def close(self) -> None:
        self._watch.close()


class TraceWriter:
    """The trace file and its clock. A new or empty file starts at 0; an existing one is an
    error (FileExistsError) unless ``append``: then the clock goes on one ``interval`` after
    its last row, so two recordings never share a time axis."""

    def __init__(self, out: Path, interval: float, append: bool = False, comment: str = ""):
        self.out = Path(out)
        self.t0 = time.monotonic() - self._continued_from(interval, append)
        self._rows = RowWriter(self.out, TRACE_COLUMNS, comment)

    def _continued_from(self, interval: float, append: bool) -> float:
        if not self.out.exists() or self.out.stat().st_size == 0:
            return 0.0
        if not append:
            raise FileExistsError(self.out)
        times = [t for t in read_trace(self.out).column("t_s") if t is not None]
        return (max(times) + interval) if times else 0.0

    def now(self, at: float | None = None) -> float:
        """Seconds on the trace's own clock: now, or at a ``time.monotonic()`` reading."""
        return (time.monotonic() if at is None else at) - self.t0

    def write(self, row: dict) -> None:
        self._rows.write(row)

    def close(self) -> None:
        self._rows.close()


class Recorder:
    """A ``Sampler`` into a ``TraceWriter`` every ``interval`` seconds until stopped or the
    process exits. ``phase`` is a free-text label written with every row; the experiment
    sets it ("baseline", "batch 1", "pause 1", "trim" ...), which aligns batches with the
    trace without a second clock. ``stop`` (an Event) ends the recording when set."""

    def __init__(
        self,
        pid: int,
        out: Path,
        interval: float = 0.1,
        *,
        include_children: bool = False,
        pss_interval: float = 1.0,
        allocator=None,
        append: bool = False,
        stop: threading.Event | None = None,
        cgroup=None,
    ) -> None:
        self.interval = interval
        self.started = time.monotonic()  # this recording's start (the trace's clock may go on)
        comment = ""
        if include_children:
            summed = ", ".join(procfs.SUMMED)
            comment = f"process tree of pid {pid}: {summed} are sums over the 'processes' column"
        self.sampler = Sampler(pid, include_children, pss_interval, allocator, cgroup)
        try:
            self.writer = TraceWriter(out, interval, append, comment)
        except BaseException:
            self.sampler.close()
            raise
        self.phase = ""
        self.last: dict | None = None
        self.gone = False
        self.samples = 0
        self.error: BaseException | None = None  # why the sampling thread died, if it did
        self._stop = stop or threading.Event()
        self._thread: threading.Thread | None = None
        self.recent: collections.deque = collections.deque(maxlen=4096)  # (t_s, rss_bytes)

    def now(self) -> float:
        return self.writer.now()

    def take(self) -> dict | None:
        """Take and write one row; None (and ``gone``) once the process has exited."""
        try:
            row = self.sampler.sample()
        except ProcessGone:
            self.gone = True
            return None
        # the row's time is when its reading began, as the sampler paced it: a call
        # descheduled before it returned would otherwise bring two PSS readings closer
        now = self.writer.now(self.sampler.sampled_at)
        row.update(t_s=now, wall_time=time.time(), phase=self.phase)
        self.writer.write(row)
        self.recent.append((now, row.get("rss_bytes")))
        self.last = row
        self.samples += 1
        return row

    def run(self, duration: float | None = None) -> None:
        """Sample until stopped, for ``duration`` seconds, or until the process exits."""
        deadline = None if duration is None else time.monotonic() + duration
        # On the recorder's own thread, stop() must wake it; run in the caller's thread
        # (the record command) it sleeps plainly: an Event wait costs ~45 us more per
        # sample than time.sleep, more than the sample itself (bench/record_cost.py).
        wait = self._stop.wait if threading.current_thread() is self._thread else time.sleep
        tick = time.monotonic()
        try:
            while not self._stop.is_set():
                if self.take() is None:
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    break
                tick += self.interval
                delay = tick - time.monotonic()
                if delay < 0:  # fell behind (a stalled machine): do not burst to catch up
                    tick, delay = time.monotonic(), 0
                wait(delay)
        finally:
            self.writer.close()
            self.sampler.close()

    def _run_noting_errors(self) -> None:
        try:
            self.run()
        except BaseException as exc:  # noqa: BLE001 - kept for the experiment to report
            self.error = exc

    def start(self) -> Recorder:
        """Sample on a background thread (the experiment's way; see ``healthy``)."""
        self._thread = threading.Thread(
            target=self._run_noting_errors, name="recorder", daemon=True
        )
        self._thread.start()
        return self

    def healthy(self) -> bool:
        """False once the sampling thread has died of an error (not of the process exiting)."""
        if self.error is not None:
            return False
        thread = self._thread
        return thread is None or thread.is_alive() or self.gone or self._stop.is_set()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.writer.close()


class StructureLog:
    """The allocator's structure from each reading of the accounting, into
    ``<variant>.structure.csv`` (totals by kind) and ``<variant>.arenas.csv`` (per arena), on
    the trace's clock and with its phase (``recorder``). Installed as the poller's
    ``on_reading``."""

    def __init__(self, folder: Path, name: str, recorder: Recorder) -> None:
        from stair_stepper.record.schema import (
            ARENAS_SUFFIX,
            STRUCTURE_SUFFIX,
            arena_columns,
            structure_columns,
        )

        self.recorder = recorder
        self.totals = RowWriter(folder / f"{name}{STRUCTURE_SUFFIX}", structure_columns())
        self.arenas = RowWriter(folder / f"{name}{ARENAS_SUFFIX}", arena_columns())

    def __call__(self, reading: dict) -> None:
        if "structure" not in reading:
            return  # a plain poll during a batch: the accounting only, in the trace
        when = {"t_s": self.recorder.now(), "phase": self.recorder.phase}
        structure = reading.get("structure") or {}
        totals = structure.get("totals") or {}
        arenas = structure.get("arenas") or []
        python = reading.get("python") or {}
        row = {
            **when,
            "live_bytes": reading.get("live_bytes"),
            "held_bytes": reading.get("held_bytes"),
            "arenas": len(arenas) if arenas else None,
            "probe_s": reading.get("probe_s"),
            **{k: v for k, v in totals.items() if k in self.totals.columns},
            **{k: python.get(k) for k in PYTHON_COLUMNS},
        }
        self.totals.write(row)
        for arena in arenas:
            self.arenas.write({**when, **arena})

    def close(self) -> None:
        self.totals.close()
        self.arenas.close()


class ProcessLog:
    """A process tree's members at each reading after an idle phase, into
    ``<variant>.processes.csv``: each process's part, RSS, PSS, USS and shared bytes from
    /proc, and its allocator's live and held bytes from its agent's answer."""

    def __init__(self, folder: Path, name: str, recorder: Recorder, root: int, roles: dict):
        from stair_stepper.record.schema import PROCESS_COLUMNS, PROCESSES_SUFFIX

        self.recorder, self.root, self.roles = recorder, root, dict(roles)
        self.writer = RowWriter(folder / f"{name}{PROCESSES_SUFFIX}", PROCESS_COLUMNS)

    def write(self, reading: dict | None) -> None:
        from stair_stepper.record import procfs

        when = {"t_s": self.recorder.now(), "phase": self.recorder.phase}
        asked = (reading or {}).get("processes") or {}
        masters = {p for p, r in self.roles.items() if r == "master"}
        for pid in [self.root, *procfs.descendants(self.root)]:
            try:
                kernel = procfs.memory(pid)
                parent = procfs.parent(pid)
            except (OSError, ProcessGone):
                continue
            role = self.roles.get(str(pid)) or ("worker" if str(parent) in masters else "process")
            rss, uss = kernel.get("rss_bytes"), kernel.get("uss_bytes")
            own = asked.get(str(pid)) or {}
            self.writer.write(
                {
                    **when,
                    "pid": pid,
                    "role": role,
                    "rss_bytes": rss,
                    "pss_bytes": kernel.get("pss_bytes"),
                    "uss_bytes": uss,
                    "shared_bytes": rss - uss if rss is not None and uss is not None else None,
                    "live_bytes": own.get("live_bytes"),
                    "held_bytes": own.get("held_bytes"),
                }
            )

    def close(self) -> None:
        self.writer.close()

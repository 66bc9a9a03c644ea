"""Sample a process's memory from outside into a flushed CSV trace.

The sampler reads /proc/<pid> (any process), and, when the target is our
service (any app ``serve`` runs), the allocator's own accounting from ``GET
/__stair_stepper__/memory``. The HTTP
poll runs on its own thread so that a busy server cannot stall the /proc
samples; each row takes the newest allocator reading if it is fresh.
"""

from __future__ import annotations

import collections
import sys
import threading
import time
from pathlib import Path

from . import procfs
from .service import MEMORY
from .traces import TRACE_COLUMNS, RowWriter, read_trace, settled

FRESH_S = 1.0  # an allocator reading older than this is left blank, not repeated
#: default pause between allocator polls. Each poll is an HTTP round trip that costs
#: both sides CPU, and every request allocates in the server, which is exactly what lets
#: plain jemalloc advance its decay clock and purge while idle: the poll rate is part of
#: the experiment (recorded in meta.json), not a detail.
POLL_S = 0.5


class _AllocatorPoller(threading.Thread):
    """Keeps the newest allocator reading (service.MEMORY) (one keep-alive connection).

    Every poll is a request the service answers, and every request allocates: idle
    traffic that lets plain jemalloc purge. So the experiment silences the poller while
    the service should be idle (``quiet()``, which also waits out a poll in flight) and
    reads the accounting once with ``poll_now()`` after the floor is taken. ``sent``
    counts every request this poller made.
    """

    def __init__(self, service_url: str, interval: float) -> None:
        super().__init__(name="allocator-poller", daemon=True)
        from urllib.parse import urlsplit

        parts = urlsplit(service_url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.interval = max(interval, 0.05)
        self.latest: tuple[float, dict] | None = None
        self.stopping = threading.Event()
        self.active = threading.Event()
        self.active.set()
        self.sent = 0
        self._busy = threading.Lock()
        self._conn = None  # an http.client.HTTPConnection once connected

    def _get(self) -> dict | None:
        """One GET of service.MEMORY on the kept-alive connection (caller holds ``_busy``)."""
        import http.client  # here: a recorder without --service-url never pays for it
        import json

        self.sent += 1
        try:
            if self._conn is None:
                self._conn = http.client.HTTPConnection(self.host, self.port, timeout=5)
            self._conn.request("GET", MEMORY)
            response = self._conn.getresponse()
            data = json.loads(response.read())
        except (OSError, http.client.HTTPException, ValueError):
            if self._conn is not None:
                self._conn.close()
            self._conn = None
            return None
        if response.status != 200:
            return None
        self.latest = (time.monotonic(), data)
        return data

    def run(self) -> None:
        while not self.stopping.is_set():
            if not self.active.wait(0.2):
                continue
            began = time.monotonic()
            with self._busy:
                if self.active.is_set() and not self.stopping.is_set():
                    self._get()
            self.stopping.wait(max(0.0, self.interval - (time.monotonic() - began)))
        with self._busy:
            if self._conn is not None:
                self._conn.close()

    def quiet(self) -> None:
        """No more polls until ``resume()``; returns once no poll is in flight."""
        self.active.clear()
        with self._busy:
            pass

    def resume(self) -> None:
        self.active.set()

    def poll_now(self) -> dict | None:
        with self._busy:
            return self._get()

    def fresh(self) -> dict | None:
        if self.latest and time.monotonic() - self.latest[0] <= FRESH_S:
            return self.latest[1]
        return None


class Recorder:
    """Samples ``pid`` every ``interval`` seconds into ``out`` until stopped or the pid exits.

    With ``include_children`` a row covers the whole process tree below ``pid``
    (``procfs.TreeWatch``: sums, a process count, the largest member).

    ``phase`` is a free-text label written with every row; the experiment sets
    it ("baseline", "batch 1", "pause 1", "trim" ...), which aligns batches
    with the trace without a second clock. An existing, non-empty ``out`` is an
    error (FileExistsError) unless ``append``: then the trace's clock goes on
    from its last row, so two recordings never share a time axis.
    """

    def __init__(
        self,
        pid: int,
        out: Path,
        interval: float = 0.1,
        service_url: str | None = None,
        pss_interval: float = 1.0,
        poll_interval: float = POLL_S,
        append: bool = False,
        include_children: bool = False,
    ) -> None:
        self.pid = pid
        self.include_children = include_children
        self.out = Path(out)
        self.interval = interval
        self.pss_interval = pss_interval
        self._last_pss = -float("inf")
        self.phase = ""
        self.started = time.monotonic()  # this recording's start (``t0`` is the trace's)
        self.t0 = self.started - self._continued_from(append)
        self.last: dict | None = None
        self.gone = False
        self.samples = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None  # why the sampling thread died, if it did
        self._poller = _AllocatorPoller(service_url, poll_interval) if service_url else None
        self._watch = procfs.TreeWatch(pid, include_children)  # ProcessGone if pid is gone
        comment = ""
        if include_children:
            summed = ", ".join(procfs.SUMMED)
            comment = f"process tree of pid {pid}: {summed} are sums over the 'processes' column"
        self._writer = RowWriter(self.out, TRACE_COLUMNS, comment)
        self._recent: collections.deque = collections.deque(maxlen=4096)  # (t_s, rss_bytes)

    def _continued_from(self, append: bool) -> float:
        """Where the clock starts: 0, or one interval after an appended trace's last row."""
        if not self.out.exists() or self.out.stat().st_size == 0:
            return 0.0
        if not append:
            raise FileExistsError(self.out)
        times = [t for t in read_trace(self.out).column("t_s") if t is not None]
        return (max(times) + self.interval) if times else 0.0

    def healthy(self) -> bool:
        """False once the sampling thread has died of an error (not of the process exiting)."""
        if self.error is not None:
            return False
        thread = self._thread
        return thread is None or thread.is_alive() or self.gone or self._stop.is_set()

    def settled_since(self, start: float) -> bool:
        """Has RSS settled (``traces.settled``) in the samples taken since ``start``?"""
        recent = [(t, r) for t, r in list(self._recent) if t >= start]
        return settled([t for t, _ in recent], [r for _, r in recent])

    # The allocator accounting, on the experiment's terms (see _AllocatorPoller).
    def quiet(self) -> None:
        if self._poller:
            self._poller.quiet()

    def resume(self) -> None:
        if self._poller:
            self._poller.resume()

    def poll_now(self) -> dict | None:
        return self._poller.poll_now() if self._poller else None

    @property
    def polls_sent(self) -> int:
        return self._poller.sent if self._poller else 0

    def now(self) -> float:
        """Seconds on the trace's own clock."""
        return time.monotonic() - self.t0

    def sample(self) -> dict | None:
        """Take and write one row; None (and ``gone``) once the process has exited."""
        now = self.now()
        rollup = now - self._last_pss >= self.pss_interval
        try:
            row: dict = self._watch.sample(rollup)
        except procfs.ProcessGone:
            self.gone = True
            return None
        if rollup:
            self._last_pss = now
        row.update(t_s=now, wall_time=time.time(), phase=self.phase)
        allocator = self._poller.fresh() if self._poller else None
        if allocator:
            row["live_bytes"] = allocator.get("live_bytes")
            row["held_bytes"] = allocator.get("held_bytes")
        self._writer.write(row)
        self._recent.append((now, row.get("rss_bytes")))
        self.last = row
        self.samples += 1
        return row

    def run(self, duration: float | None = None) -> None:
        """Sample in the calling thread until stop(), the duration, or the process exits."""
        if self._poller:
            self._poller.start()
        deadline = None if duration is None else time.monotonic() + duration
        # On the recorder's own thread, stop() must wake it; run in the caller's thread
        # (the record command) it sleeps plainly: an Event wait costs ~45 us more per
        # sample than time.sleep, more than the sample itself (bench/record_cost.py).
        wait = self._stop.wait if threading.current_thread() is self._thread else time.sleep
        tick = time.monotonic()
        try:
            while not self._stop.is_set():
                if self.sample() is None:
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    break
                tick += self.interval
                delay = tick - time.monotonic()
                if delay < 0:  # fell behind (a stalled machine): do not burst to catch up
                    tick = time.monotonic()
                    delay = 0
                wait(delay)
        finally:
            self._writer.close()
            self._watch.close()
            if self._poller:
                self._poller.stopping.set()

    def _run_noting_errors(self) -> None:
        try:
            self.run()
        except BaseException as exc:  # noqa: BLE001 - kept for the experiment to report
            self.error = exc

    def start(self) -> Recorder:
        """Sample on a background thread (the experiment's way; see ``healthy``)."""
        target = self._run_noting_errors
        self._thread = threading.Thread(target=target, name="recorder", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._writer.close()
        if self._poller:
            self._poller.stopping.set()


def record_command(
    pid: int | None,
    command: list[str] | None,
    out: Path,
    interval: float,
    duration: float | None,
    service_url: str | None,
    pss_interval: float = 1.0,
    poll_interval: float = POLL_S,
    append: bool = False,
    include_children: bool = False,
) -> int:
    """``stair-stepper record``: sample a pid or a command it starts; a clean end either way.

    A command it starts is its child in its own session, killed with its whole group when
    the recording ends, is interrupted or is terminated, and by the kernel if we die first.
    """
    from . import selfexec, validate
    from .errors import Terminated, UserError, on_termination

    validate.positive_float("--interval", interval)
    if not append and out.exists() and out.stat().st_size > 0:
        raise UserError(f"{out} already exists; give --append to continue it, or another --out.")
    child = None
    ended = 0
    with on_termination():
        try:
            if command:
                import subprocess

                try:
                    child = subprocess.Popen(command, **selfexec.child_popen_options())
                except OSError as exc:
                    raise UserError(f"cannot start {command[0]}: {exc.strerror}.") from None
                pid = child.pid
            assert pid is not None
            if not procfs.alive(pid):
                raise UserError(f"there is no process {pid} to record.")
            try:
                recorder = Recorder(
                    pid, out, interval, service_url, pss_interval, poll_interval, append,
                    include_children,
                )  # fmt: skip
            except procfs.ProcessGone:
                raise UserError(f"process {pid} exited before the first sample.") from None
            except OSError as exc:
                raise UserError(f"cannot write {out}: {exc.strerror}.") from None
            what = "the process tree of pid" if include_children else "pid"
            print(
                f"recording {what} {pid} every {interval} s into {out} (Ctrl-C stops)",
                file=sys.stderr,
            )
            try:
                recorder.run(duration)
            except KeyboardInterrupt:
                ended = 130
            except Terminated as exc:
                ended = 128 + exc.signum
                print(f"stair-stepper: terminated by {exc}.", file=sys.stderr)
        finally:
            if child is not None:
                selfexec.stop_group(child)
    took = time.monotonic() - recorder.started
    if recorder.gone:
        print(
            f"process {pid} exited after {took:.1f} s; kept {recorder.samples} samples in {out}.",
            file=sys.stderr,
        )
    else:
        print(f"stopped after {took:.1f} s; {recorder.samples} samples in {out}.", file=sys.stderr)
    return ended

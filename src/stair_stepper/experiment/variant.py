"""One variant's run: its server and recorder, the baseline, each batch and the pause after
it, the one allocator read after each idle phase, and the trim, each a step of its own.

Everything is written as it happens (trace rows, batch rows, meta.json), so a variant that
fails, or a run that is stopped, keeps what was measured. A variant runs on a thread of
its own (``experiment`` waits for it); ``stop`` is the run's stop event (a signal, or
another variant's failure), watched by every wait here.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

from stair_stepper.allocators import Variant, settings
from stair_stepper.errors import Fault, Stopped, UserError
from stair_stepper.experiment import launch
from stair_stepper.experiment.presets import AUTO, Config
from stair_stepper.files import no_space
from stair_stepper.load import batch as drivers
from stair_stepper.load import client
from stair_stepper.load.client import AllocatorPoller, IdleTraffic
from stair_stepper.record import phases
from stair_stepper.record.phases import SETTLE_WINDOW_S, settled
from stair_stepper.record.recorder import Recorder, StructureLog
from stair_stepper.record.results import NOT_MEASURED
from stair_stepper.record.schema import (
    BATCH_COLUMNS,
    BATCHES_SUFFIX,
    TRACE_SUFFIX,
    BatchRow,
    RowWriter,
)


class Watched:
    """A variant's server, its recorder and its allocator poller, and the waits that watch
    them: any wait ends at once when the run is stopped, and fails when the server or the
    recorder has died."""

    def __init__(
        self, var: Variant, config: Config, folder: Path, port: int, stop, tree: bool
    ) -> None:
        name = var.name
        self.name, self.stop = name, stop
        log = folder / f"{name}.server.log"
        self.server = launch.start_variant(var, config.service, port, log, stop)
        pacing = config.pacing
        self.poller: AllocatorPoller | None = None
        try:
            # A foreign process has no accounting endpoint to poll; several worker processes
            # would answer one at a time, each for itself: neither is the tree's.
            if not tree:
                self.poller = AllocatorPoller(self.server.base_url, client.MEMORY, pacing.poll_s)
                self.poller.quiet()  # polls only while a batch runs (resume() ... quiet())
                self.poller.start()
            # a tree is recorded from its root: a worker's pid (what /healthz says) comes and goes
            root = self.server.process.pid if tree else self.server.pid
            self.recorder = Recorder(
                root,
                folder / f"{name}{TRACE_SUFFIX}",
                pacing.interval_s,
                include_children=tree,
                allocator=self.poller,
            )
        except BaseException:
            if self.poller is not None:
                self.poller.stop()
            self.server.stop()  # nothing else knows of it yet
            raise
        self.structure = None
        if self.poller is not None:  # each reading's structure, beside the trace
            self.structure = StructureLog(folder, name, self.recorder)
            self.poller.on_reading = self.structure
        self.recorder.phase = phases.BASELINE  # labelled from its very first row
        self.recorder.start()

    @property
    def polls(self) -> int:
        return self.poller.sent if self.poller else 0

    def wait(self, seconds: float, during: str) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.stop.wait(min(0.2, max(0.0, deadline - time.monotonic()))):
                raise Stopped(f"the {self.name} variant was stopped during {during}.")
            self.check_alive(during)

    def check_alive(self, during: str) -> None:
        server, rec = self.server, self.recorder
        if not server.alive() or rec.gone:
            raise Fault(
                f"the {self.name} server died during {during} (exit code "
                f"{server.process.poll()}); its log is {server.log_path}."
            )
        if not rec.healthy():
            why = rec.error
            if no_space(why):
                raise why  # type: ignore[misc] (the run says what a full file system means)
            reason = f"{type(why).__name__}: {why}" if why else "its thread ended"
            raise Fault(f"the {self.name} recorder stopped during {during} ({reason}).")

    def read_allocator(self, after: int | str) -> dict | None:
        """The one allocator read (client.MEMORY) after an idle phase, in a phase of its own
        ("read K"), so the request cannot touch the floor it follows; held until a sample
        carries it. None for a --command server."""
        rec = self.recorder
        rec.phase = phases.read_phase(after)
        reading = self.poller.poll_now("structure=1") if self.poller else None
        taken, deadline = rec.samples, time.monotonic() + 1.0
        while rec.samples == taken and time.monotonic() < deadline:
            time.sleep(0.01)
        return reading

    def settled_since(self, start: float) -> bool:
        recent = [(t, r) for t, r in list(self.recorder.recent) if t >= start]
        return settled([t for t, _ in recent], [r for _, r in recent])

    def cleanup(self) -> int | None:
        """Stop the recorder, the poller and the server; the server's exit code. The server is
        stopped whatever closing the files says: on a full file system a file's last flush
        fails (the run already knows why it stops), and nothing may be left running."""
        failed: OSError | None = None
        for step in (self.recorder.stop, self._stop_poller):
            try:
                step()
            except OSError as exc:
                failed = failed or exc
        code = self.server.stop()
        if failed is not None and not no_space(failed):
            raise failed
        return code

    def _stop_poller(self) -> None:
        if self.poller is not None:
            self.poller.stop()
            self.poller.join(5)  # no reading is written after the files close
        if self.structure is not None:
            self.structure.close()


class VariantRun:
    """One variant's steps: start, the baseline, each batch with its pause, the trim."""

    def __init__(
        self,
        var: Variant,
        config: Config,
        folder: Path,
        workload: drivers.Workload,
        port: int,
        stop: threading.Event,
        console,
        save_meta: Callable[[], None],
    ) -> None:
        self.var, self.name, self.config = var, var.name, config
        self.pacing, self.service, self.load = config.pacing, config.service, config.load
        self.folder, self.workload = folder, workload
        self.port, self.stop, self.console, self.save_meta = port, stop, console, save_meta
        #: a foreign command, or several worker processes: recorded as a tree, not asked
        self.tree = bool(self.service.command) or multi_process(var)
        self.w: Watched | None = None
        self.info: dict = {}  # this variant's entry in meta.json
        self._reading: dict | None = None  # the last allocator read (its request count)
        self._cleaned = False

    def run(self) -> None:
        self.start()
        self.baseline()
        with RowWriter(self.folder / f"{self.name}{BATCHES_SUFFIX}", BATCH_COLUMNS) as log:
            for k in range(1, self.pacing.batches + 1):
                log.write(self.batch(k))
        self.trim()

    def start(self) -> None:
        self.w = Watched(self.var, self.config, self.folder, self.port, self.stop, self.tree)
        server = self.w.server
        self.info.update(pid=server.pid, url=server.base_url, health=server.health)
        self.save_meta()  # the pid is on disk before any load: nothing can be orphaned unseen
        log = server.log_path.read_text(errors="replace") if server.log_path else ""
        proof, problems = settings.proof(
            self.var, server.health, log, bool(self.service.command), self.service.python_malloc
        )
        self.info["settings"] = proof
        self.save_meta()
        if problems:
            raise Fault(
                f"the {self.name} variant does not run with what it says: {'; '.join(problems)}; "
                "refusing to measure it under that label."
            )
        self.console.serving(self.name, server)

    def baseline(self) -> None:
        """Idle, no request at all; then the first allocator read (and request count)."""
        assert self.w is not None
        self.w.wait(self.pacing.baseline_s, "the baseline")
        self._reading = self.w.read_allocator(phases.BASELINE)

    def batch(self, k: int) -> BatchRow:
        """Batch k and the pause after it, as one row of the batch log."""
        w = self.w
        assert w is not None
        rec = w.recorder
        rec.phase = phases.batch_phase(k)
        polls_before = w.polls
        if w.poller:
            w.poller.resume()
        start, before = rec.now(), dict(rec.last or {})
        outcome = self._load(k)
        end = rec.now()
        w.check_alive(f"batch {k}")
        rss_batch, after = _rss(rec.last), dict(rec.last or {})
        spent = {key: _delta(before, after, key) for key in COST_COLUMNS}
        rec.phase = phases.pause_phase(k)
        if w.poller:
            w.poller.quiet()
        polls_in_batch = w.polls - polls_before
        pause_s, is_settled, idle_sent = self.pause(k)
        rss_pause = _rss(rec.last)
        reading = w.read_allocator(k)
        unasked = _unasked(self._reading, reading, outcome.requests + polls_in_batch + 1)
        self._reading = reading
        trims = (reading or {}).get("periodic_trim") or {}  # the server's own count and time
        row = BatchRow(
            batch=k,
            start_s=start,
            end_s=end,
            pause_end_s=rec.now(),
            requests=outcome.requests,
            failures=outcome.failures,
            requests_per_second=outcome.requests_per_second,
            p50_ms=outcome.p50_ms,
            p99_ms=outcome.p99_ms,
            p99_9_ms=outcome.p99_9_ms,
            rss_end_batch_bytes=rss_batch,
            rss_end_pause_bytes=rss_pause,
            pause_s=pause_s,
            settled=int(is_settled),
            pause_requests=unasked,
            idle_requests_sent=idle_sent,
            trims=trims.get("count"),
            trims_s=trims.get("total_s"),
            rate=self.load.rate,
            lag_p99_ms=outcome.lag_p99_ms,
            lag_max_ms=outcome.lag_max_ms,
            **spent,
        )
        self.console.batch(self.name, row, self.pacing.batches)
        return row

    def pause(self, k: int) -> tuple[float, bool, int]:
        """A fixed pause, or one until RSS settles (--pause auto, capped). No request reaches
        the service but the idle traffic asked for. (length, settled, idle requests sent)"""
        c, w = self.pacing, self.w
        assert w is not None
        rec = w.recorder
        idle = None
        if c.idle_rps > 0:
            idle = IdleTraffic(w.server.base_url, client.HEALTH, c.idle_rps)
        start = rec.now()
        try:
            if c.pause != AUTO:
                w.wait(float(c.pause), f"pause {k}")
            else:
                w.wait(SETTLE_WINDOW_S, f"pause {k}")
                while not w.settled_since(start) and rec.now() - start < c.pause_cap_s:
                    w.wait(0.2, f"pause {k}")
        finally:
            sent = idle.stop() if idle else 0
        return rec.now() - start, w.settled_since(start), sent

    def trim(self) -> None:
        """Ask the allocator to give free memory back, and keep recording."""
        if self.tree:
            self.info["trim"] = NOT_MEASURED
            why = "a --command server" if self.service.command else "several worker processes"
            self.console.say(self.name, f"trim: not measured ({why} cannot be asked as one)")
            return
        w = self.w
        assert w is not None
        w.recorder.phase = phases.TRIM
        try:
            trim = w.server.post(client.TRIM)
        except OSError as exc:
            w.check_alive("the trim")
            raise Fault(f"the {self.name} server did not answer the trim: {exc}.") from None
        self.info["trim"] = {k: v for k, v in trim.items() if k not in ("before", "after")}
        (self.folder / f"{self.name}.trim.json").write_text(json.dumps(trim, indent=2))
        w.recorder.phase = phases.AFTER_TRIM
        w.wait(self.pacing.after_trim_s, "the after-trim recording")
        w.read_allocator(phases.AFTER_TRIM)
        self.console.trim(self.name, trim)

    def _load(self, k: int) -> drivers.BatchOutcome:
        assert self.w is not None
        progress = self.console.progress(self.name, k, self.pacing.batches, self.w.recorder)
        try:
            return drivers.run_batch(
                self.load.driver,
                self.workload,
                self.w.server.base_url,
                self.folder,
                self.name,
                self.stop,
                progress,
                self.load.rate,
                self.load.arrivals,
            )
        except UserError as exc:
            raise Fault(f"the load driver failed in batch {k}: {exc}") from None

    def cleanup(self) -> None:
        """Once, whoever calls it first (the variant's thread, or the run when it stops)."""
        if self._cleaned:
            return
        self._cleaned = True
        if self.w is not None:
            self.info["exit_code"] = self.w.cleanup()


def multi_process(var) -> bool:
    """A variant served by several processes (workers, or workers recycled by max_requests)."""
    return var.strategy.get("workers", 1) > 1 or "max_requests" in var.strategy


#: what the server spent during a batch, from its /proc counters (the tree's, for a tree)
COST_COLUMNS = ("cpu_user_s", "cpu_system_s", "minor_faults", "major_faults")


def _delta(before: dict, after: dict, key: str):
    """How much a cumulative counter grew; None if unknown, or if it shrank (a tree whose
    recycled worker took its counts along)."""
    a, b = before.get(key), after.get(key)
    return b - a if a is not None and b is not None and b >= a else None


def _rss(row: dict | None) -> int | None:
    return row["rss_bytes"] if row else None


def _unasked(before: dict | None, after: dict | None, asked: int) -> int | None:
    """Requests the service answered between two allocator reads beyond those the experiment
    made (the batch, the polls during it, and the read itself): what reached the service
    during the pause. Exactly the idle traffic (0 at --idle-rps 0)."""
    served_before = (before or {}).get("requests_served")
    served_after = (after or {}).get("requests_served")
    if served_before is None or served_after is None:
        return None
    return served_after - served_before - asked

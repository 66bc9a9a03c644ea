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
from collections.abc import Callable
from pathlib import Path

from stair_stepper.allocators import Variant
from stair_stepper.allocators import proof as variant_proof
from stair_stepper.errors import Fault, OomKilled, UserError
from stair_stepper.experiment.presets import AUTO, Config
from stair_stepper.experiment.watched import Watched
from stair_stepper.load import agents, client
from stair_stepper.load import batch as drivers
from stair_stepper.load.client import IdleTraffic
from stair_stepper.record import phases
from stair_stepper.record.phases import SETTLE_WINDOW_S
from stair_stepper.record.results import NOT_MEASURED
from stair_stepper.record.schema import (
    BATCH_COLUMNS,
    BATCHES_SUFFIX,
    BatchRow,
    RowWriter,
)


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
        where=None,
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
        self.least_pause_s = 0.0  # the allocator's decay as read back (start())
        self.where = where  # where its memory cgroup is made (cgroups.Where), or None
        self._cleaned = False

    def run(self) -> None:
        """Every step; an OOM kill in its memory cgroup ends the variant as an outcome (the
        batch it happened in is not a row: its requests failed because the server died)."""
        try:
            self.start()
            self.baseline()
            with RowWriter(self.folder / f"{self.name}{BATCHES_SUFFIX}", BATCH_COLUMNS) as log:
                for k in range(1, self.pacing.batches + 1):
                    log.write(self.batch(k))
            self.trim()
        except OomKilled as killed:
            self.info["outcome"] = killed.to_json()
            self.save_meta()
            self.console.say(self.name, str(killed).removeprefix(f"{self.name}: "))

    def start(self) -> None:
        self.w = Watched(
            self.var, self.config, self.folder, self.port, self.stop, self.tree, self.where
        )
        if self.w.cgroup is not None:
            self.info["cgroup"] = {
                "version": self.w.cgroup.version,
                "path": str(self.w.cgroup.path),
                "limit_bytes": self.w.limit,
                "high_bytes": self.config.service.memory_high,
            }
        server = self.w.server
        self.info.update(pid=server.pid, url=server.base_url, health=server.health)
        self.save_meta()  # the pid is on disk before any load: nothing can be orphaned unseen
        log = server.log_path.read_text(errors="replace") if server.log_path else ""
        proof, problems = variant_proof.proof(
            self.var, server.health, log, bool(self.service.command), self.service.python_malloc
        )
        self.info["settings"] = proof
        read_backs = [e["read_back"] for e in (proof.get("by_process") or {}).values()]
        self.least_pause_s = max(
            self.var.allocator.least_pause_s(r) for r in read_backs or [proof["read_back"]]
        )
        self.info["least_pause_s"] = self.least_pause_s
        self.save_meta()
        if problems:
            raise Fault(
                f"the {self.name} variant does not run with what it says: {'; '.join(problems)}; "
                "refusing to measure it under that label."
            )
        self.console.serving(self.name, server)
        heard = server.health.get("agents")
        if heard is not None:
            parts = server.health.get("roles") or {}
            kinds = ", ".join(
                f"{sum(1 for r in parts.values() if r == role)} {role}"
                for role in ("master", "worker", "process")
                if role in parts.values()
            )
            self.console.say(
                self.name,
                f"asked through their agents: {len(heard)} of {len(parts)} serving processes "
                f"({kinds})",
            )
        for finding in proof.get("findings") or []:
            self.console.say(self.name, f"FINDING: {finding['sentence']}")
        cap = self.pacing.pause_cap_s
        if (
            self.pacing.pause == AUTO
            and self.least_pause_s
            and self.least_pause_s + SETTLE_WINDOW_S > cap
        ):
            self.console.say(
                self.name,
                f"pauses are capped at {cap:g} s, too short for the allocator's decay as read "
                f"back ({self.least_pause_s:g} s) and then {SETTLE_WINDOW_S:g} s of stillness: "
                "its floors may still be falling (--pause-cap sets the cap)",
            )

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
        charge_before = w.cgroup.read() if w.cgroup else {}
        outcome = self._load(k)
        end = rec.now()
        w.check_alive(f"batch {k}", outcome.failures)
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
        charge = w.cgroup.read() if w.cgroup else {}
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
            cgroup_peak_bytes=charge.get("peak_bytes"),
            limit_hits=_delta(charge_before, charge, "limit_hits"),
            high_events=_delta(charge_before, charge, "high_events"),
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
            else:  # at least the allocator's decay as read back: stillness before it is not a floor
                w.wait(min(max(SETTLE_WINDOW_S, self.least_pause_s), c.pause_cap_s), f"pause {k}")
                while not w.settled_since(start) and rec.now() - start < c.pause_cap_s:
                    w.wait(0.2, f"pause {k}")
        finally:
            sent = idle.stop() if idle else 0
        return rec.now() - start, w.settled_since(start), sent

    def trim(self) -> None:
        """Ask the allocator to give free memory back, and keep recording."""
        w = self.w
        assert w is not None
        if self.tree and w.agents is None:
            self.info["trim"] = NOT_MEASURED
            why = (
                "a --command server without agents"
                if self.service.command
                else "several worker processes"
            )
            self.console.say(self.name, f"trim: not measured ({why} cannot be asked as one)")
            return
        w.recorder.phase = phases.TRIM
        try:
            if w.agents is not None:  # every process of the command, each by its agent
                trim = agents.combine_trims(w.agents.ask_all({"ask": "trim"}))
            else:
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

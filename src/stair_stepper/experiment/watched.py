"""A variant's server and what watches it: its recorder, the allocator poller (over HTTP, or
through a --command's agents), the structure and process logs, and the waits that end at once
when the run is stopped or fail when the server or the recorder has died."""

from __future__ import annotations

import contextlib
import subprocess
import time
from pathlib import Path

from stair_stepper.allocators import Variant
from stair_stepper.errors import Fault, OomKilled, Stopped, UserError
from stair_stepper.experiment import launch
from stair_stepper.experiment.presets import Config
from stair_stepper.files import no_space
from stair_stepper.load import agents, client
from stair_stepper.load.client import AllocatorPoller
from stair_stepper.record import cgroups, phases, procfs
from stair_stepper.record.phases import settled
from stair_stepper.record.recorder import ProcessLog, Recorder, StructureLog
from stair_stepper.record.schema import TRACE_SUFFIX


class Watched:
    """A variant's server, its recorder and its allocator poller, and the waits that watch
    them: any wait ends at once when the run is stopped, and fails when the server or the
    recorder has died."""

    def __init__(
        self,
        var: Variant,
        config: Config,
        folder: Path,
        port: int,
        stop,
        tree: bool,
        where: cgroups.Where | None = None,
    ) -> None:
        name = var.name
        self.name, self.stop, self.batches = name, stop, config.pacing.batches
        log = folder / f"{name}.server.log"
        # its own memory cgroup (where one can be made), with the variant's limit or the run's
        self.limit = var.strategy.get("limit") or config.service.memory_limit
        self.cgroup: cgroups.Cgroup | None = None
        self.oom: cgroups.OomWatch | None = None
        if where is not None:
            self.cgroup = cgroups.Cgroup(where, name, self.limit, config.service.memory_high)
            self.oom = cgroups.OomWatch(self.cgroup)
            self.oom.start()
        procs = self.cgroup.procs_file if self.cgroup else None
        try:
            self.server = launch.start_variant(var, config.service, port, log, stop, procs)
        except BaseException as exc:
            killed = self.oom_killed("at start-up") if isinstance(exc, UserError) else None
            self.remove_cgroup()
            if killed is not None:
                raise killed from None
            raise
        pacing = config.pacing
        self.poller: AllocatorPoller | None = None
        try:
            # a tree is recorded from its root: a worker's pid (what /healthz says) comes and goes
            root = self.server.process.pid if tree else self.server.pid
            # A --command's Python processes are asked through their agents, all at once; our
            # own several workers would answer one at a time, each for itself: not the tree's.
            self.agents = None
            if tree and self.server.health.get("agents"):
                self.agents = agents.Tree(
                    self.server.agents, lambda: [root, *procfs.descendants(root)]
                )
            if not tree or self.agents is not None:
                self.poller = AllocatorPoller(
                    self.server.base_url, client.MEMORY, pacing.poll_s, client=self.agents
                )
                self.poller.quiet()  # polls only while a batch runs (resume() ... quiet())
                self.poller.start()
            self.recorder = Recorder(
                root,
                folder / f"{name}{TRACE_SUFFIX}",
                pacing.interval_s,
                include_children=tree,
                allocator=self.poller,
                cgroup=self.cgroup,
            )
        except BaseException:
            if self.poller is not None:
                self.poller.stop()
            self.server.stop()  # nothing else knows of it yet
            self.remove_cgroup()
            raise
        self.structure = None
        if self.poller is not None:  # each reading's structure, beside the trace
            self.structure = StructureLog(folder, name, self.recorder)
            self.poller.on_reading = self.structure
        self.processes = None  # a tree's members at each reading: master, workers, shared
        if tree:
            roles = self.server.health.get("roles") or {}
            self.processes = ProcessLog(folder, name, self.recorder, root, roles)
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

    def oom_killed(self, during: str) -> OomKilled | None:
        """The OOM kill of this variant's server, if its cgroup has had one, and when: "at
        start-up", "in batch 5 (of 8)", "in the pause after batch 5 (of 8)", "in the baseline"."""
        if self.oom is None or not self.oom.check():
            return None
        number = during.rpartition(" ")[2]
        if during.startswith("batch "):
            when = f"in batch {number} (of {self.batches})"
        elif during.startswith("pause "):
            when = f"in the pause after batch {number} (of {self.batches})"
        else:
            when = during if during.startswith("at ") else f"in {during}"
        reading = {**(self.oom.reading or {}), "cgroup": str(self.cgroup.path)}
        return OomKilled(self.name, when, self.limit, reading)

    def remove_cgroup(self) -> None:
        if self.oom is not None:
            self.oom.stop()
        if self.cgroup is not None:
            self.cgroup.remove()

    def check_alive(self, during: str, failures: int = 0) -> None:
        """Raise if the server or the recorder is gone. After a phase with ``failures`` the
        server gets a second to finish dying: a killed server closes its sockets (its
        requests fail at once) a moment before it can be reaped, and the death belongs to
        the phase whose requests it failed, not to the next one."""
        killed = self.oom_killed(during)
        if killed is not None:
            raise killed
        server, rec = self.server, self.recorder
        if failures and server.alive():
            with contextlib.suppress(subprocess.TimeoutExpired):
                server.process.wait(1.0)
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
        if self.processes is not None:
            self.processes.write(reading)
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
        self.remove_cgroup()
        if failed is not None and not no_space(failed):
            raise failed
        return code

    def _stop_poller(self) -> None:
        if self.poller is not None:
            self.poller.stop()
            self.poller.join(5)  # no reading is written after the files close
        if self.structure is not None:
            self.structure.close()
        if self.processes is not None:
            self.processes.close()

"""Every exception of ours, each with the exit status it ends a command with, and the signals
that ask a run to stop."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path


class StairStepperError(Exception):
    """Every way a command of ours ends other than well, except a signal: the command line prints
    its message as one line (never a traceback) and exits with ``exit_code``, as memray's
    ``MemrayCommandError`` does."""

    exit_code = 1


class UserError(StairStepperError):
    """A problem the user caused (bad flag, missing library, busy port...): one sentence, exit
    2, before anything started or with nothing left behind."""

    exit_code = 2


class Fault(StairStepperError):
    """The run cannot go on (a server died, the driver failed); partial results are kept.
    ``reason`` is the sentence; ``folder``, when known, where the partial results are."""

    exit_code = 1
    status = "failed"

    def __init__(self, reason: str, folder: Path | None = None) -> None:
        super().__init__(reason)
        self.reason, self.folder = reason, folder

    def __str__(self) -> str:
        kept = f" Partial results are kept in {self.folder}." if self.folder else ""
        return self.reason + kept

    def located(self, folder: Path) -> Fault:
        """The same fault, naming where its partial results are."""
        return self if self.folder is not None else type(self)(self.reason, folder)


class Crashed(Fault):
    """A bug of ours: the traceback is in the result folder's crash.log; ``why`` is the
    exception's type and message, for meta.json."""

    status = "crashed"

    def __init__(self, reason: str, folder: Path | None = None, why: str = "") -> None:
        super().__init__(reason, folder)
        self.why = why or reason

    def located(self, folder: Path) -> Crashed:
        return self if self.folder is not None else Crashed(self.reason, folder, self.why)


class NoSpace(Fault):
    """The file system under the result folder is full: nothing more can be written there."""


class Stopped(StairStepperError):
    """The run was asked to stop (a signal, or another variant's failure) while this waited."""


class NewerFormat(StairStepperError, ValueError):
    """A file written by a newer stair-stepper than this one."""

    exit_code = 2


class TraceError(StairStepperError, ValueError):
    """A file that is not a trace at all (as opposed to a damaged one)."""

    exit_code = 2


class NoTraces(StairStepperError):
    """The folder holds nothing to analyse."""

    exit_code = 2


class Stale(StairStepperError):
    """A published result no longer matches the code that would measure it now."""

    exit_code = 2


class ProcessGone(StairStepperError):
    """A process we record exited (or was never there): the normal end of a recording."""


class BadWidget(StairStepperError, ValueError):
    """A request body that is not a widget; its message is the one sentence the client sees
    (a 4xx answer, not an exit)."""


class OomKilled(StairStepperError):
    """A variant's server was OOM-killed in its memory cgroup: an outcome of the run, not a
    failure of it (the other variants go on; a run with any ends with ``exit_code``)."""

    exit_code = 3

    def __init__(self, variant: str, when: str, limit: int | None, reading: dict | None) -> None:
        self.variant, self.when, self.limit = variant, when, limit
        self.reading = dict(reading or {})
        at = f" at {limit / (1 << 20):.0f} MiB" if limit else ""
        super().__init__(f"{variant}: OOM-killed{at} {when}")

    def to_json(self) -> dict:
        return {
            "oom_killed": True,
            "when": self.when,
            "limit_bytes": self.limit,
            **{k: v for k, v in self.reading.items() if v is not None},
            "sentence": str(self),
        }


class Terminated(BaseException):
    """SIGTERM or SIGHUP: ends the run like Ctrl-C (a BaseException, so nothing swallows it);
    the exit status is 128 + the signal's number, as a shell reports it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class Stopper:
    """While a run is on, SIGINT, SIGTERM and SIGHUP are *requests to stop*.

    The handler only notes the signal and sets ``event`` (the stop event the drivers, the
    pauses and the server start-ups already watch); it never raises. An exception raised
    from a handler lands in whatever code the main thread happens to run, and some code
    drops it: asyncio logs and ignores any exception but SystemExit and KeyboardInterrupt
    raised inside one of its callbacks, so a SIGTERM arriving there was lost. The main
    thread, which only waits, raises ``Terminated`` (or ``KeyboardInterrupt``) from
    ``check()`` once the work it waits for has stopped.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self, event: threading.Event | None = None) -> None:
        self.event = event or threading.Event()
        self.signum: int | None = None
        self._previous: dict = {}

    def __enter__(self) -> Stopper:
        """Handle each signal, except one ignored when we started: under ``nohup`` SIGHUP is
        ignored on purpose (the terminal may go away), and stays ignored."""
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                if signal.getsignal(sig) != signal.SIG_IGN:
                    self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    def _handle(self, signum: int, frame) -> None:
        if self.signum is None:  # the first signal is the reason; later ones change nothing
            self.signum = signum
        self.event.set()

    def check(self) -> None:
        """Raise what the signal asked for: KeyboardInterrupt for SIGINT, else Terminated."""
        if self.signum == signal.SIGINT:
            raise KeyboardInterrupt
        if self.signum is not None:
            raise Terminated(self.signum)

    def wait(self, threads: list[threading.Thread], grace_s: float = 8.0) -> None:
        """Wait for ``threads`` to end; once stopping, give them ``grace_s`` more at most
        (they watch ``event``), then ``check()``."""
        deadline = None
        for thread in threads:
            while thread.is_alive():
                if self.event.is_set() and deadline is None:
                    deadline = time.monotonic() + grace_s
                if deadline is not None and time.monotonic() > deadline:
                    break
                thread.join(0.1)
        self.check()

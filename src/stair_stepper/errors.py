"""How a command can end other than well: a user's mistake, or a signal asking it to stop."""

from __future__ import annotations

import signal
import threading
import time


class UserError(Exception):
    """A problem the user caused (bad flag, missing library, busy port...).

    The command line prints its message as one sentence and exits non-zero,
    never a traceback.
    """


class Stopped(Exception):
    """The run was asked to stop (a signal, or another variant's failure) while this waited."""


class Terminated(BaseException):
    """SIGTERM or SIGHUP: ends the run like Ctrl-C (a BaseException, so nothing swallows it)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


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

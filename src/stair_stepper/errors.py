"""How a command can end other than well: a user's mistake, or a terminating signal."""

from __future__ import annotations

import signal
import threading


class UserError(Exception):
    """A problem the user caused (bad flag, missing library, busy port...).

    The command line prints its message as one sentence and exits non-zero,
    never a traceback.
    """


class Terminated(BaseException):
    """SIGTERM or SIGHUP: ends the run like Ctrl-C (a BaseException, so nothing swallows it)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class on_termination:  # noqa: N801 - used as a context manager, like a function
    """While a run is on: SIGTERM and SIGHUP raise Terminated in the main thread, once."""

    SIGNALS = (signal.SIGTERM, signal.SIGHUP)

    def __enter__(self) -> on_termination:
        self.previous: dict = {}
        if threading.current_thread() is threading.main_thread():
            self.previous = {sig: signal.signal(sig, self._handle) for sig in self.SIGNALS}
        self.fired = False
        return self

    def _handle(self, signum: int, frame) -> None:
        if not self.fired:  # a second signal must not interrupt the clean-up of the first
            self.fired = True
            raise Terminated(signum)

    def __exit__(self, *exc) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

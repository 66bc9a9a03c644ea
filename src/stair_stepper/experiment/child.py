"""One server child: spawned in its own session (dying with us, in its memory cgroup when it
has one, its output into a log file), waited for until a probe says it answers, and stopped
without leaving an orphan. Below both kinds of server: ``launch`` (``stair-stepper serve``)
and ``command_server`` (a user's ``--command``).
"""

from __future__ import annotations

import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from stair_stepper import selfexec
from stair_stepper.errors import Stopped, UserError
from stair_stepper.load import client


@dataclass
class RunningServer:
    process: subprocess.Popen
    base_url: str
    pid: int
    health: dict
    log_path: Path | None = None
    _log_handle: object = field(default=None, repr=False)
    #: a --command server: stopped with its whole process group (its workers, a shell's child)
    group: bool = False
    #: the folder of its processes' agents (load/agents.py), removed when it stops
    agents: Path | None = None

    def __post_init__(self) -> None:
        self.client = client.Client(self.base_url)

    def alive(self) -> bool:
        return self.process.poll() is None

    def get(self, path: str, timeout: float = 10.0) -> dict:
        return self.client.get(path, timeout)

    def post(self, path: str, timeout: float = 30.0) -> dict:
        return self.client.post(path, timeout)

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM (to the group, for a command), then SIGKILL after ``timeout``; the exit code."""
        self.client.close()
        if self.group:
            selfexec.stop_group(self.process, timeout)
        elif self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._log_handle is not None:
            self._log_handle.close()  # type: ignore[attr-defined]
            self._log_handle = None
        if self.agents is not None:
            from stair_stepper.load import agents

            agents.remove(self.agents)
        return self.process.returncode

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def start_child(
    command: list[str],
    env: dict,
    log_path: Path | None,
    what: str,
    awaited: str,
    probe: Callable[[], tuple[str, dict] | None],
    timeout: float,
    cancel: threading.Event | None,
    group: bool = False,
    cgroup_procs: str | None = None,
) -> RunningServer:
    """Spawn ``command`` and wait until ``probe()`` gives (base URL, health); a UserError that
    names the cause if it dies, never answers, or cannot be started; Stopped if ``cancel``."""
    log_handle = open(log_path, "a+b") if log_path else tempfile.TemporaryFile()  # noqa: SIM115
    try:
        process = subprocess.Popen(
            command,
            env=env,
            stdout=log_handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            **selfexec.child_popen_options(cgroup_procs),
        )
    except OSError as exc:
        log_handle.close()
        raise UserError(f"cannot start {command[0]}: {exc.strerror}.") from None
    except subprocess.SubprocessError as exc:  # the child could not join its cgroup
        log_handle.close()
        raise UserError(f"cannot start {command[0]} in cgroup {cgroup_procs}: {exc}.") from None
    server = RunningServer(process, "", process.pid, {}, log_path, log_handle, group)
    deadline = time.monotonic() + timeout
    try:
        while True:
            if process.poll() is not None:
                raise UserError(_died_message(what, process, log_handle))
            if cancel is not None and cancel.is_set():
                raise Stopped(f"{what} was stopped while starting.")
            found = probe()
            if found is not None:
                server.base_url, server.health = found
                server.client = client.Client(server.base_url)
                return server
            if time.monotonic() > deadline:
                raise UserError(f"{what} did not answer {awaited} within {timeout:.0f} s.")
            time.sleep(0.05)
    except BaseException:
        server.stop(timeout=5)
        raise


def _died_message(what: str, process: subprocess.Popen, log_handle) -> str:
    log_handle.flush()
    log_handle.seek(0)
    text = log_handle.read().decode(errors="replace")
    lines = [line for line in text.strip().splitlines() if line.strip()]
    last = lines[-1] if lines else f"exit code {process.returncode}"
    return f"{what} exited at start-up: {last.removeprefix('stair-stepper: ')}"

"""Run ``stair-stepper serve`` as a child process and wait until it answers.

Used by the experiment and by the tests, so both start servers the same way:
ephemeral loopback port, a ready file for the real port and pid, ``/healthz``
polled until it answers, and a stop that never leaves an orphan behind.
"""

from __future__ import annotations

import json
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from . import selfexec
from .errors import UserError


def http_json(url: str, method: str = "GET", timeout: float = 10.0) -> dict:
    request = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


@dataclass
class RunningServer:
    process: subprocess.Popen
    base_url: str
    pid: int
    health: dict
    log_path: Path | None = None
    _log_handle: object = field(default=None, repr=False)

    def alive(self) -> bool:
        return self.process.poll() is None

    def get(self, path: str, timeout: float = 10.0) -> dict:
        return http_json(self.base_url + path, timeout=timeout)

    def post(self, path: str, timeout: float = 30.0) -> dict:
        return http_json(self.base_url + path, method="POST", timeout=timeout)

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``; returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._log_handle is not None:
            self._log_handle.close()  # type: ignore[attr-defined]
            self._log_handle = None
        return self.process.returncode

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def start_server(
    variant: str = "glibc",
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    extra_args: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
    log_path: Path | None = None,
    timeout: float = 60.0,
) -> RunningServer:
    """Start a server and return once ``/healthz`` answers (UserError if it never does)."""
    ready = Path(tempfile.mkdtemp(prefix="stair-stepper-")) / "ready.json"
    bind = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    args = ["serve", "--allocator", variant, "--bind", bind, "--ready-file", str(ready)]
    command, child_env = selfexec.python_command("stair_stepper", [*args, *extra_args], env)
    # The server's output goes to a file, never a pipe nobody reads (it would block).
    log_handle = open(log_path, "a+b") if log_path else tempfile.TemporaryFile()  # noqa: SIM115
    process = subprocess.Popen(
        command,
        env=child_env,
        stdout=log_handle,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        **selfexec.child_popen_options(),
    )
    server = None
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise UserError(_died_message(variant, process, log_handle))
            if ready.exists():
                info = json.loads(ready.read_text())
                base = info["urls"][0]
                try:
                    health = http_json(base + "/healthz", timeout=2)
                except (urllib.error.URLError, OSError, ValueError):
                    time.sleep(0.05)
                    continue
                server = RunningServer(process, base, health["pid"], health, log_path, log_handle)
                return server
            time.sleep(0.05)
        raise UserError(f"the {variant} server did not answer /healthz within {timeout:.0f} s.")
    finally:
        if server is None:
            if process.poll() is None:
                process.kill()
                process.wait()
            log_handle.close()
        ready.unlink(missing_ok=True)
        ready.with_suffix(".tmp").unlink(missing_ok=True)
        ready.parent.rmdir()


def _died_message(variant: str, process: subprocess.Popen, log_handle) -> str:
    log_handle.flush()
    log_handle.seek(0)
    text = log_handle.read().decode(errors="replace")
    lines = [line for line in text.strip().splitlines() if line.strip()]
    last = lines[-1] if lines else f"exit code {process.returncode}"
    return f"the {variant} server exited at start-up: {last.removeprefix('stair-stepper: ')}"

"""Start a server child, ``stair-stepper serve`` or a user's ``--command``, and wait until it
answers.

Used by the experiment and by the tests, so both start servers the same way: an
ephemeral loopback port, a ready file for the real port and pid (``serve``), the health
endpoint polled until it answers, for a command the allocator proven in every process of
its tree that listens, and a stop that never leaves an orphan behind.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from . import selfexec, service
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
    #: a --command server: stopped with its whole process group (its workers, a shell's child)
    group: bool = False

    def alive(self) -> bool:
        return self.process.poll() is None

    def get(self, path: str, timeout: float = 10.0) -> dict:
        return http_json(self.base_url + path, timeout=timeout)

    def post(self, path: str, timeout: float = 30.0) -> dict:
        return http_json(self.base_url + path, method="POST", timeout=timeout)

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``; returns the exit code."""
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
        return self.process.returncode

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _spawn(command: list[str], env: dict, log_path: Path | None):
    """A server child in its own session, dying with us, its output into a file (never a
    pipe nobody reads: it would block); UserError if it cannot be started at all."""
    log_handle = open(log_path, "a+b") if log_path else tempfile.TemporaryFile()  # noqa: SIM115
    try:
        process = subprocess.Popen(
            command,
            env=env,
            stdout=log_handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            **selfexec.child_popen_options(),
        )
    except OSError as exc:
        log_handle.close()
        raise UserError(f"cannot start {command[0]}: {exc.strerror}.") from None
    return process, log_handle


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
    """Start a server and return once its health endpoint answers (UserError if never)."""
    ready = Path(tempfile.mkdtemp(prefix="stair-stepper-")) / "ready.json"
    bind = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    args = ["serve", "--allocator", variant, "--bind", bind, "--ready-file", str(ready)]
    command, child_env = selfexec.python_command("stair_stepper", [*args, *extra_args], env)
    process, log_handle = _spawn(command, child_env, log_path)
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
                    health = http_json(base + service.HEALTH, timeout=2)
                except (urllib.error.URLError, OSError, ValueError):
                    time.sleep(0.05)
                    continue
                server = RunningServer(process, base, health["pid"], health, log_path, log_handle)
                return server
            time.sleep(0.05)
        raise UserError(
            f"the {variant} server did not answer {service.HEALTH} within {timeout:.0f} s."
        )
    finally:
        if server is None:
            if process.poll() is None:
                process.kill()
                process.wait()
            log_handle.close()
        ready.unlink(missing_ok=True)
        ready.with_suffix(".tmp").unlink(missing_ok=True)
        ready.parent.rmdir()


def _died_message(variant: str, process: subprocess.Popen, log_handle, what: str = "server") -> str:
    log_handle.flush()
    log_handle.seek(0)
    text = log_handle.read().decode(errors="replace")
    lines = [line for line in text.strip().splitlines() if line.strip()]
    last = lines[-1] if lines else f"exit code {process.returncode}"
    return f"the {variant} {what} exited at start-up: {last.removeprefix('stair-stepper: ')}"


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now (the kernel's choice), for a command told {port}."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def fixed_port(template: str) -> bool:
    """A --command with no {port} binds the port it was built for (given as --port)."""
    return "{port}" not in template


def check_port(template: str, port: int) -> None:
    """A command must either be told its port or be given the one it binds."""
    if fixed_port(template) and not port:
        raise UserError(
            "--command has no {port} to fill in: give --port N, the port it listens on."
        )


def command_line(template: str, host: str, port: int) -> list[str]:
    """The user's --command with {host} and {port} filled in (no other braces touched)."""
    try:
        words = shlex.split(template)
    except ValueError as exc:
        raise UserError(f"--command cannot be split into words: {exc}.") from None
    if not words:
        raise UserError("--command is empty.")
    return [w.replace("{host}", host).replace("{port}", str(port)) for w in words]


def _answers(host: str, port: int, health_path: str | None) -> dict | None:
    """The health check's answer ({} for a TCP connect), or None while it does not answer."""
    import http.client

    try:
        if health_path is None:
            with socket.create_connection((host, port), timeout=1):
                return {}
        conn = http.client.HTTPConnection(host, port, timeout=2)
        try:
            conn.request("GET", health_path)
            response = conn.getresponse()
            response.read()
        finally:
            conn.close()
    except (OSError, http.client.HTTPException):
        return None
    return {"status": response.status} if 200 <= response.status < 400 else None


def start_command(
    template: str,
    variant: str,
    *,
    python_malloc: str = "pymalloc",
    port: int = 0,
    health_path: str | None = None,
    log_path: Path | None = None,
    timeout: float = 60.0,
) -> RunningServer:
    """Start any HTTP server (``--command``) on ``variant``'s allocator and wait until it
    answers; then prove the allocator in every process of its tree that holds the
    listening socket. Its own session: stopping it stops its whole process group."""
    from . import allocators, procfs

    host = "127.0.0.1"
    check_port(template, port)
    port = port or free_port(host)
    command = command_line(template, host, port)
    var = allocators.variant(variant)
    env = allocators.server_env(var, python_malloc)  # the user's own environment, plus these
    process, log_handle = _spawn(command, env, log_path)
    server = RunningServer(process, f"http://{host}:{port}", process.pid, {}, log_path,
                           log_handle, group=True)  # fmt: skip
    started = False
    try:
        deadline = time.monotonic() + timeout
        answer = None
        while answer is None:
            if process.poll() is not None:
                raise UserError(_died_message(variant, process, log_handle, "command"))
            if time.monotonic() > deadline:
                what = f"GET {health_path}" if health_path else f"a connection on port {port}"
                raise UserError(f"the {variant} command did not answer {what} in {timeout:.0f} s.")
            answer = _answers(host, port, health_path)
            if answer is None:
                time.sleep(0.1)
        serving = listeners(port, [process.pid, *procfs.descendants(process.pid)])
        if not serving:
            raise UserError(
                f"port {port} answers, but no process started by the {variant} command "
                "listens on it (is another server using that port?)."
            )
        found = {pid: allocators.allocator_in_maps(pid) for pid in serving}
        wrong = {pid: a for pid, a in found.items() if a != var.allocator.name}
        if wrong:
            pid, seen = next(iter(wrong.items()))
            raise UserError(
                f"asked for {var.allocator.name} but process {pid} of the command has {seen} "
                "mapped: LD_PRELOAD did not reach it (a static or setuid binary, or an "
                "environment reset); refusing to run under a wrong label."
            )
        server.health = {
            "pid": process.pid,
            "command": command,
            "health": answer,
            "serving_pids": serving,
            "allocator_by_pid": {str(p): a for p, a in found.items()},
            "malloc_provider": f"{var.allocator.name} in {len(serving)} serving process(es), "
            "from /proc/<pid>/maps",
        }
        started = True
        return server
    finally:
        if not started:
            server.stop(timeout=5)


def listeners(port: int, pids: list[int]) -> list[int]:
    """Those of ``pids`` holding a socket that listens on ``port`` (the serving processes)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{inode}]")
    serving = []
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") in inodes:
                    serving.append(pid)
                    break
            except OSError:
                continue
    return serving

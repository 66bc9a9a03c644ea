"""Start a server child, ``stair-stepper serve`` or a user's ``--command``, and wait until it
answers.

Used by the experiment and by the tests, so both start servers the same way: one spawn
(its own session, dying with us, its output into a log file), one wait (until the health
endpoint answers, the child dies, the time is up or the run is stopped), and one stop
that never leaves an orphan behind. ``serve`` writes a ready file with its real port and
pid; for a command, the allocator is then proven in every process of its tree that
listens on the port.
"""

from __future__ import annotations

import json
import shutil
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


def start_variant(
    var, service, port: int, log_path: Path, cancel: threading.Event, cgroup_procs=None
) -> RunningServer:
    """A variant's server for an experiment (``var``: an ``allocators.Variant``; ``service``: a
    ``presets.Service``), either kind: ``serve`` with the widget app or the user's ``--app``,
    or the user's ``--command``."""
    from stair_stepper import allocators

    if service.command:
        from stair_stepper.allocators import settings
        from stair_stepper.experiment import command_server
        from stair_stepper.load import agents

        env = allocators.server_env(var, service.python_malloc)
        env.update(settings.for_child(var))  # what each agent reads back
        folder, agent_env = agents.prepare(var.strategy.get("post_fork"))
        try:
            return command_server.start_command(
                service.command,
                var.name,
                env=agents.with_agents(env, agent_env),
                allocator=var.allocator.name,
                port=port,
                health_path=service.health_path,
                log_path=log_path,
                cancel=cancel,
                agents=folder,
                cgroup_procs=cgroup_procs,
            )
        except BaseException:
            agents.remove(folder)
            raise
    args = ["--python-malloc", service.python_malloc]
    if service.trace_python:
        args.append("--trace-python")
    if service.app:
        args += ["--app", service.app, "--app-dir", str(Path(service.app_dir or ".").resolve())]
    else:
        args += [
            "--sleep-ms",
            str(service.sleep_ms),
            "--offload-threads",
            str(service.offload_threads),
        ]
    written = var.name if var.builtin else var.spec  # serve checks and applies it again
    return start_server(
        written,
        port=port,
        extra_args=tuple(args),
        log_path=log_path,
        cancel=cancel,
        what=f"the {var.name} server",
        python=var.strategy.get("python"),
        cgroup_procs=cgroup_procs,
    )


def start_server(
    variant: str | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    extra_args: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
    log_path: Path | None = None,
    timeout: float = 60.0,
    cancel: threading.Event | None = None,
    what: str | None = None,
    python: str | None = None,
    cgroup_procs: str | None = None,
) -> RunningServer:
    """``stair-stepper serve`` on ``variant`` (a name, or one written out; default the system's
    allocator), under ``python`` (another interpreter with stair-stepper installed; default
    ours); returns once its health endpoint answers."""
    if variant is None:
        from stair_stepper import allocators

        variant = allocators.SYSTEM
    ready = Path(tempfile.mkdtemp(prefix="stair-stepper-")) / "ready.json"
    bind = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    args = ["serve", "--allocator", variant, "--bind", bind, "--ready-file", str(ready)]
    command, child_env = selfexec.python_command(
        "stair_stepper", [*args, *extra_args], env, interpreter=python
    )

    def probe() -> tuple[str, dict] | None:
        if not ready.exists():
            return None
        base = json.loads(ready.read_text())["urls"][0]
        host_, port_ = base.removeprefix("http://").rsplit(":", 1)
        health = client.answers(host_.strip("[]"), int(port_), client.HEALTH)
        return (base, health) if health else None

    try:
        server = start_child(
            command,
            child_env,
            log_path,
            what or f"the {variant} server",
            f"{client.HEALTH}",
            probe,
            timeout,
            cancel,
            cgroup_procs=cgroup_procs,
        )
    finally:
        shutil.rmtree(ready.parent, ignore_errors=True)
    server.pid = server.health["pid"]
    return server


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

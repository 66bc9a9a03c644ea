"""Start a variant's server, ``stair-stepper serve`` or a user's ``--command``, and wait until
it answers.

Used by the experiment and by the tests, so both start servers the same way, through
``child.start_child``: one spawn (its own session, dying with us, its output into a log
file), one wait (until the health endpoint answers, the child dies, the time is up or the
run is stopped), and one stop that never leaves an orphan behind. ``serve`` writes a ready
file with its real port and pid; a command is ``command_server``'s.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
from pathlib import Path

from stair_stepper import selfexec
from stair_stepper.experiment.child import RunningServer, start_child
from stair_stepper.load import client

__all__ = ["RunningServer", "start_server", "start_variant"]


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

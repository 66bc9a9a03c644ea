"""A user's ``--command`` server: its command line, its port, and the proof of what serves.

Started by ``child.start_child`` like any server child (its own session, stopped with its whole
group); then the processes of its tree that listen on its port are found once that set is
still (a prefork master answers with its first worker and forks the rest after), the
allocator is proven in each from ``/proc/<pid>/maps``, and, where they run Python, each
one's agent (``service/agent.py``) is heard: its health, with the settings read back in that
process, and its part in the server (master, worker, or alone).
"""

from __future__ import annotations

import os
import shlex
import socket
import threading
import time
from pathlib import Path

from stair_stepper.errors import Stopped, UserError
from stair_stepper.experiment.child import RunningServer, start_child
from stair_stepper.load import client


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


def start_command(
    template: str,
    variant: str,
    *,
    env: dict[str, str],
    allocator: str,
    port: int = 0,
    health_path: str | None = None,
    log_path: Path | None = None,
    timeout: float = 60.0,
    cancel: threading.Event | None = None,
    agents: Path | None = None,
    cgroup_procs: str | None = None,
) -> RunningServer:
    """Start any HTTP server (``--command``) in ``env`` (the user's environment plus the
    variant's) and wait until it answers; then prove ``allocator`` in every process of its
    tree that holds the listening socket, and, with ``agents`` (the folder its Python
    processes' agents answer in), hear each of them. Its own session: stopping it stops its
    group."""
    host = "127.0.0.1"
    check_port(template, port)
    port = port or free_port(host)
    command = command_line(template, host, port)
    awaited = f"GET {health_path}" if health_path else f"a connection on port {port}"

    def probe() -> tuple[str, dict] | None:
        answer = client.answers(host, port, health_path)
        return None if answer is None else (f"http://{host}:{port}", answer)

    server = start_child(
        command,
        env,
        log_path,
        f"the {variant} command",
        awaited,
        probe,
        timeout,
        cancel,
        group=True,
        cgroup_procs=cgroup_procs,
    )
    server.agents = agents
    try:
        server.health = _prove_tree(server, port, variant, allocator, command)
        if agents is not None and server.health["python"]:
            server.health.update(_hear_agents(agents, server.health["serving_pids"], cancel))
    except BaseException:
        server.stop(timeout=5)
        raise
    return server


def roles(serving: list[int]) -> dict[str, str]:
    """Each serving process's part: "master" (it forked or spawned others that serve),
    "worker" (its parent tree holds a master), or "process" (it serves alone)."""
    from stair_stepper.record import procfs

    masters = {p for p in serving if set(procfs.descendants(p)) & set(serving)}
    return {
        str(p): "master" if p in masters else "worker" if masters else "process" for p in serving
    }


def _hear_agents(folder: Path, serving: list[int], cancel, timeout: float = 15.0) -> dict:
    """Every serving process's agent's health, waited for until each answers or says why it
    could not start (``<pid>.error``); a process with neither by ``timeout`` is a UserError
    (a server that strips PYTHONPATH, or python -I, cannot be asked)."""
    from stair_stepper.load import agents

    heard: dict[int, dict] = {}
    deadline = time.monotonic() + timeout
    while True:
        errors = agents.agent_errors(folder)
        for pid in serving:
            if pid not in heard and pid not in errors:
                answer = agents.ask(folder, pid, {"ask": "health"}, 5.0)
                if answer is not None and "error" not in answer:
                    heard[pid] = answer
        waiting = [p for p in serving if p not in heard and p not in errors]
        if not waiting:
            break
        if cancel is not None and cancel.is_set():
            raise Stopped("the server was stopped while its agents started.")
        if time.monotonic() > deadline:
            raise UserError(
                f"process {waiting[0]} of the command runs Python but its agent did not answer "
                f"within {timeout:.0f} s: it does not read PYTHONPATH (python -I or -E, or an "
                "environment reset), so the lab cannot ask its allocator."
            )
        time.sleep(0.05)
    failed = {str(p): errors[p] for p in serving if p in errors}
    return {
        "agents": {str(p): h for p, h in heard.items()},
        "agent_errors": failed,
        "roles": roles(serving),
    }


def _prove_tree(server: RunningServer, port: int, variant: str, allocator: str, command) -> dict:
    """Which processes of the command serve ``port``, and that each has ``allocator`` mapped."""
    from stair_stepper import allocators
    from stair_stepper.record import procfs

    answer = server.health
    pid = server.process.pid
    serving = stable_listeners(port, pid)
    if not serving:
        raise UserError(
            f"port {port} answers, but no process started by the {variant} command "
            "listens on it (is another server using that port?)."
        )
    found = {p: allocators.allocator_in_maps(p) for p in serving}
    wrong = {p: a for p, a in found.items() if a != allocator}
    if wrong:
        p, seen = next(iter(wrong.items()))
        raise UserError(
            f"asked for {allocator} but process {p} of the command has {seen} "
            "mapped: LD_PRELOAD did not reach it (a static or setuid binary, or an "
            "environment reset); refusing to run under a wrong label."
        )
    found_lib = allocators.get(allocator)
    mapped = allocators.mapped_libraries(serving[0]) if found_lib and found_lib.preloaded else []
    library = next(
        (m for m in mapped if os.path.basename(m).startswith(found_lib.maps_prefix)), None
    )
    return {
        "pid": pid,
        "command": command,
        "library": library,
        "health": answer,
        "serving_pids": serving,
        "allocator_by_pid": {str(p): a for p, a in found.items()},
        "python": all(procfs.runs_python(p) for p in serving),
        "malloc_provider": f"{allocator} in {len(serving)} serving process(es), "
        "from /proc/<pid>/maps",
    }


def stable_listeners(port: int, pid: int, still_s: float = 1.5, timeout: float = 20.0) -> list[int]:
    """The processes of ``pid``'s tree that listen on ``port``, once that set has not changed
    for ``still_s``: a prefork master answers as soon as its first worker does, and forks the
    others after it."""
    from stair_stepper.record import procfs

    serving = listeners(port, [pid, *procfs.descendants(pid)])
    since, deadline = time.monotonic(), time.monotonic() + timeout
    while time.monotonic() - since < still_s and time.monotonic() < deadline:
        time.sleep(0.25)
        now = listeners(port, [pid, *procfs.descendants(pid)])
        if now != serving:
            serving, since = now, time.monotonic()
    return serving


def listeners(port: int, pids: list[int]) -> list[int]:
    """Those of ``pids`` holding a socket that listens on ``port`` (the serving processes), by
    psutil (once per server start; the recorder's tree walk stays procfs', which costs a
    tenth of psutil's, measured: 0.08 ms against 0.9 ms with 66 processes on the machine)."""
    import psutil

    serving = []
    for pid in pids:
        try:
            sockets = psutil.Process(pid).net_connections(kind="tcp")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if any(
            s.status == psutil.CONN_LISTEN and s.laddr and s.laddr.port == port for s in sockets
        ):
            serving.append(pid)
    return serving

"""The agent: the lab's in-process probe inside any Python server it measures.

Started by ``agent_site.py`` (the server's ``sitecustomize``) when the lab asks for it, in
every Python process of the server, and again in every child forked from one
(``os.register_at_fork``): a daemon thread on a Unix socket of its own (``load/agents.py``
holds the wire), answering what the widget app's endpoints answer (``endpoints.Endpoints``:
health with the settings read back in *this* process, the allocator's accounting and
structure, Python's layer, a trim). Until the lab asks its first question it costs the
served process one thread blocked in ``accept`` and a socket; the probe's modules are imported
then (bench/agent_cost.py measures both).

In a forked child it first records what fork did to the allocator (jemalloc turns its
background threads off in a forked child) and, when the variant asks for the remedy
(``post_fork=background_thread``), turns it back on, as a team's ``post_fork`` hook would.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading

from stair_stepper.load.agents import ENV_POST_FORK, read_line, socket_path

_current: Agent | None = None


class Agent(threading.Thread):
    """One process's agent: its socket, and the endpoints' answers for this process."""

    def __init__(self, folder: str, forked_from: int | None = None, fork: dict | None = None):
        super().__init__(name="stair-stepper-agent", daemon=True)
        self.folder, self.pid = folder, os.getpid()
        self.forked_from, self.fork = forked_from, fork
        self._endpoints = None  # the probe, imported at the first question: not at start-up
        path = socket_path(folder, self.pid)
        with contextlib.suppress(FileNotFoundError):  # this pid's earlier life (an exec)
            os.unlink(path)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(16)

    def run(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:  # closed: this process forked, or is going away
                return
            with conn:
                try:
                    conn.settimeout(60)
                    request = json.loads(read_line(conn) or b"{}")
                    answer = self.answer(request)
                except Exception as exc:  # noqa: BLE001 - one bad question never ends the agent
                    answer = {"error": f"{type(exc).__name__}: {exc}"}
                with contextlib.suppress(OSError):
                    conn.sendall(json.dumps(answer, default=str).encode() + b"\n")

    @property
    def endpoints(self):
        if self._endpoints is None:
            from stair_stepper.service.endpoints import ENV_VARIANT, Endpoints

            self._endpoints = Endpoints("--command", os.environ.get(ENV_VARIANT))
        return self._endpoints

    def answer(self, request: dict) -> dict:
        asked = request.get("ask")
        if asked == "health":  # read back now: a server's own post-fork hook may have acted
            self.endpoints.settings = self.endpoints.read_settings()
            return {
                **self.endpoints.health(),
                "ppid": os.getppid(),
                "forked_from": self.forked_from,
                "fork": self.fork,
            }
        if asked == "memory":  # no request count: the agent sees none of the server's
            answer = self.endpoints.memory(structure=bool(request.get("structure")))
            answer.pop("requests_served", None)
            return answer
        if asked == "trim":
            return self.endpoints.trim()
        return {"error": f"an agent answers health, memory or trim, not {asked!r}."}


def start(folder: str) -> None:
    """This process's agent, and one in every child forked from it."""
    global _current
    _current = Agent(folder)
    _current.start()
    os.register_at_fork(after_in_child=_after_fork)


def _after_fork() -> None:
    """In a forked child: the parent's listener closed (its socket file stays the parent's),
    what fork did to the allocator, the remedy if asked for, and an agent of its own."""
    global _current
    parent = _current
    if parent is None:
        return
    with contextlib.suppress(OSError):
        parent.listener.close()
    fork = None
    if os.environ.get(ENV_POST_FORK):  # the remedy, before the worker serves anything
        from stair_stepper.allocators import REGISTRY, probe

        found = REGISTRY.get(probe.live_allocator())
        fork = found.after_fork(remedy=True) if found is not None else {}
    _current = Agent(parent.folder, forked_from=parent.pid, fork=fork)
    _current.start()

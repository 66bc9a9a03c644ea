"""Our client of the in-process agents (``service/agent.py``), and the wire between them.

A ``--command`` server is not ours, but when it runs CPython, every one of its Python
processes carries an agent: a ``sitecustomize`` on ``PYTHONPATH`` starts it at interpreter
start-up, and ``os.register_at_fork`` starts it again in every forked child (a gunicorn
worker, a prefork pool's child). Each agent listens on a Unix socket named by its pid in a
folder the lab makes for that server (``ENV_DIR``), and answers what the widget app's
endpoints answer over HTTP: health (with the settings read back *in that process*), the
allocator's accounting and structure, a trim. One JSON line asked, one answered; nothing
else of the lab runs in the served process, and nothing at all when no agent is asked for.

``Tree`` asks every agent of a server and adds their answers up, so a reading of a tree of
processes has the same shape as one process's reading, with each process's own answer in
``processes``.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the agent imports this module in the served process: nothing heavy here
    from pathlib import Path

#: the folder of a server's agents: their sockets (``<pid>.sock``), and the error an agent
#: could not start with (``<pid>.error``)
ENV_DIR = "STAIR_STEPPER_AGENT_DIR"
#: what an agent does in a forked child before anything else (a variant's ``post_fork``)
ENV_POST_FORK = "STAIR_STEPPER_POST_FORK"
#: the remedies an agent knows: re-enable what fork turned off
POST_FORK = ("background_thread",)
SITE = "site"  # the folder put on PYTHONPATH: sitecustomize.py and stair_stepper, nothing else
MAX_LINE = 1 << 20


def socket_path(folder: str | Path, pid: int) -> str:
    return os.path.join(folder, f"{pid}.sock")


def read_line(sock: socket.socket) -> bytes:
    """One line (without its newline), at most MAX_LINE bytes."""
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
        if len(data) > MAX_LINE:
            raise OSError("an agent's answer is longer than a line may be")
    return data.rstrip(b"\n")


def ask(folder: str | Path, pid: int, request: dict, timeout: float = 10.0) -> dict | None:
    """One agent's answer to ``request`` ({"ask": "health" | "memory" | "trim", …}); None when
    no agent of that pid answers (gone, exec'd into something else, or none started)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(socket_path(folder, pid))
            sock.sendall(json.dumps(request).encode() + b"\n")
            line = read_line(sock)
        except OSError:
            return None
    try:
        return json.loads(line) if line else None
    except ValueError:
        return None


def agent_pids(folder: str | Path) -> list[int]:
    """The pids whose agents made a socket in ``folder`` (alive or not)."""
    found = []
    for entry in os.listdir(folder):
        stem, _, suffix = entry.partition(".")
        if suffix == "sock" and stem.isdigit():
            found.append(int(stem))
    return sorted(found)


def agent_errors(folder: str | Path) -> dict[int, str]:
    """The agents that could not start, by pid: their one line."""
    errors = {}
    for entry in os.listdir(folder):
        stem, _, suffix = entry.partition(".")
        if suffix == "error" and stem.isdigit():
            with open(os.path.join(folder, entry), errors="replace") as text:
                errors[int(stem)] = text.read().strip()
    return errors


def prepare(post_fork: str | None = None) -> tuple[Path, dict[str, str]]:
    """A folder for one server's agents, and the environment that starts them: the folder's
    ``site`` first on PYTHONPATH (sitecustomize.py and a link to this package, so a foreign
    interpreter imports nothing else of ours), where the agents are, and the remedy."""
    import shutil
    import tempfile
    from pathlib import Path

    import stair_stepper

    folder = Path(tempfile.mkdtemp(prefix="ss-agents-"))  # short: a socket path has 107 bytes
    site = folder / SITE
    site.mkdir()
    here = Path(stair_stepper.__file__).resolve().parent
    shutil.copy(here / "service" / "agent_site.py", site / "sitecustomize.py")
    (site / "stair_stepper").symlink_to(here)
    env = {ENV_DIR: str(folder)}
    if post_fork:
        env[ENV_POST_FORK] = post_fork
    return folder, env


def with_agents(env: dict[str, str], agent_env: dict[str, str]) -> dict[str, str]:
    """``env`` with the agents' variables and their site first on its PYTHONPATH."""
    site = os.path.join(agent_env[ENV_DIR], SITE)
    path = env.get("PYTHONPATH")
    return {**env, **agent_env, "PYTHONPATH": site + (os.pathsep + path if path else "")}


def remove(folder: Path) -> None:
    import shutil

    shutil.rmtree(folder, ignore_errors=True)


#: the fields of a reading that add up over processes
_SUMMED = ("rss_bytes", "live_bytes", "held_bytes", "requests_served")


def combine(answers: dict[int, dict]) -> dict:
    """One reading of a tree from each process's (pid -> answer): the byte counts, the
    details, the structure's totals and Python's layer added up, the arenas of all of them
    (each with its pid), the slowest probe; each answer kept under ``processes``."""
    if not answers:
        return {"processes": {}, "note": "no agent answered"}
    values = list(answers.values())
    reading: dict = {"allocator": values[0].get("allocator"), "processes": {}}
    for key in _SUMMED:
        reading[key] = _sum(a.get(key) for a in values)
    reading["details"] = _sum_dicts([a.get("details") or {} for a in values])
    for key in ("accounting_s", "accounting_cpu_s", "probe_s", "probe_cpu_s"):
        times = [a[key] for a in values if a.get(key) is not None]
        reading[key] = max(times) if times else None
    structures = [a["structure"] for a in values if isinstance(a.get("structure"), dict)]
    if any("structure" in a for a in values):
        reading["structure"] = {
            "totals": _sum_dicts([s.get("totals") or {} for s in structures]),
            "arenas": [
                {**arena, "pid": pid}
                for pid, a in answers.items()
                for arena in ((a.get("structure") or {}).get("arenas") or [])
            ],
        }
        reading["python"] = _sum_dicts([a.get("python") or {} for a in values])
    for pid, answer in answers.items():
        reading["processes"][str(pid)] = answer
    return reading


def combine_trims(answers: dict[int, dict]) -> dict:
    """One trim of a tree from each process's: RSS before and after added up, the longest
    hold of the allocator, whether every one returned memory; each kept under
    ``processes``."""
    values = list(answers.values())
    returned = [a.get("returned_memory") for a in values]
    took = [a["took_s"] for a in values if a.get("took_s") is not None]
    return {
        "call": values[0].get("call") if values else None,
        "returned_memory": all(returned) if returned and None not in returned else None,
        "took_s": max(took) if took else None,
        "allocator": values[0].get("allocator") if values else None,
        "rss_before_bytes": _sum(a.get("rss_before_bytes") for a in values),
        "rss_after_bytes": _sum(a.get("rss_after_bytes") for a in values),
        "processes": {
            str(pid): {k: v for k, v in a.items() if k not in ("before", "after")}
            for pid, a in answers.items()
        },
    }


def _sum(values) -> int | float | None:
    known = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    return sum(known) if known else None


def _sum_dicts(dicts: list[dict]) -> dict:
    keys = dict.fromkeys(k for d in dicts for k in d)
    return {k: _sum(d.get(k) for d in dicts) for k in keys}


class Tree:
    """Every agent of one server, asked as one: what ``client.Client`` is to one server, for
    the allocator poller, the read after each pause and the trim. ``pids`` limits the
    question to those processes (the server's tree as the recorder sees it); a process
    whose agent does not answer is left out of the sum and counted in ``missing``."""

    def __init__(self, folder: Path, pids=None, timeout: float = 10.0) -> None:
        self.folder, self.pids, self.timeout = folder, pids, timeout
        self.sent = 0
        self.missing: list[int] = []

    def targets(self) -> list[int]:
        known = set(self.pids()) if self.pids else None
        return [p for p in agent_pids(self.folder) if known is None or p in known]

    def ask_all(self, request: dict) -> dict[int, dict]:
        answers, missing = {}, []
        for pid in self.targets():
            self.sent += 1
            answer = ask(self.folder, pid, request, self.timeout)
            if answer is None:
                missing.append(pid)
                with contextlib.suppress(OSError):  # a process gone: its socket with it
                    if not os.path.exists(f"/proc/{pid}"):
                        os.unlink(socket_path(self.folder, pid))
            else:
                answers[pid] = answer
        self.missing = missing
        return answers

    def get(self, path: str, timeout: float = 10.0) -> dict:
        """The memory reading of the whole tree (``path``'s query ``structure=1`` asks for the
        structure too), in ``client.Client.get``'s place."""
        structure = "structure=1" in path
        return combine(self.ask_all({"ask": "memory", "structure": structure}))

    def close(self) -> None:
        pass

"""The proof that a started variant runs with what it says, in every process that serves.

Each setting given is read back where it acts: in the served process (the widget app, an
``--app``), in every Python process of a ``--command`` server through its agent
(``service/agent.py``), or, for a server that cannot be asked, from its environment
(``/proc/<pid>/environ``) and no further. A value that differs refuses the variant; what a
process runs with that nobody asked for (jemalloc's background threads off in a forked
worker) is a *finding*, recorded per process and said in the summary and the verdict.
"""

from __future__ import annotations

from pathlib import Path

from stair_stepper.allocators.base import Variant
from stair_stepper.allocators.settings import describe, interpreter, verify


def proof(
    var: Variant, health: dict, log: str, foreign: bool, python_malloc: str = ""
) -> tuple[dict, list[str]]:
    """meta.json's record of a started variant's settings, and what did not take: given as
    written, read back in the measured process (or, for a --command, in each of its Python
    processes; without agents only what its environment holds)."""
    entry: dict = {
        "spec": var.spec,
        "described": describe(var),
        "allocator": var.allocator.name,
        "given": dict(var.env),
        "strategy": var.strategy_text,
    }
    agents = health.get("agents") or {}
    if foreign and agents:
        return _per_process(var, entry, agents, health.get("roles") or {}, log)
    outside = None if foreign else var.allocator.read_back_outside(var)
    if foreign:
        read_back = proven_from_outside(health.get("pid") or 0, var)
    elif outside is not None:
        inside = health.get("settings") or {}
        read_back = {**outside, **{k: v for k, v in inside.items() if k != "values"}}
    else:
        read_back = health.get("settings") or {"values": {}}
    entry["read_back"] = read_back
    problems = verify(var, read_back, log, "" if foreign else python_malloc)
    entry["findings"] = findings(var, {"": read_back}, {})
    if not foreign:
        entry["python_malloc"] = var.env.get("PYTHONMALLOC") or python_malloc
        wanted = interpreter(var.strategy.get("python"), var.name)
        entry["python"] = {
            "given": var.strategy.get("python") or "the lab's own",
            "read": health.get("python"),
            "same": health.get("python") in (None, wanted["version"]),
            "how": "platform.python_version() in the served process",
        }
        if not entry["python"]["same"]:
            problems.append(f"python={wanted['path']} (the server runs Python {health['python']})")
    return entry, problems


def _per_process(
    var: Variant, entry: dict, agents: dict, roles: dict, log: str
) -> tuple[dict, list[str]]:
    """Each process's read-back from its agent; the problems of any of them, each once."""
    by_process = {}
    problems: list[str] = []
    for pid, health in agents.items():
        read_back = health.get("settings") or {"values": {}}
        by_process[str(pid)] = {
            "role": roles.get(str(pid), "process"),
            "read_back": read_back,
            "fork": health.get("fork"),
            "python": health.get("python"),
        }
        for problem in verify(var, read_back, "", ""):
            if problem not in problems:
                problems.append(f"{problem} in process {pid}")
    for said in var.allocator.complaints(log):
        problems.append(f"{var.allocator.settings_words} ({said})")
    workers = [p for p, e in by_process.items() if e["role"] == "worker"] or list(by_process)
    entry["read_back"] = by_process[workers[0]]["read_back"]  # a worker's, for the tables
    entry["by_process"] = by_process
    entry["findings"] = findings(var, {p: e["read_back"] for p, e in by_process.items()}, roles)
    entry["post_fork"] = var.strategy.get("post_fork")
    entry["how"] = "read back by the agent inside each Python process of the command"
    return entry, problems


def findings(var: Variant, read_backs: dict[str, dict], roles: dict) -> list[dict]:
    """What processes run with that nobody asked for, each once with the processes it holds
    in: {"what", "why", "pids", "of", "role", "sentence"}."""
    seen: dict[tuple[str, str], list[str]] = {}
    for pid, read_back in read_backs.items():
        for what, why in var.allocator.findings(read_back.get("effective") or {}):
            seen.setdefault((what, why), []).append(pid)
    out = []
    for (what, why), pids in seen.items():
        role = {roles.get(p, "process") for p in pids}
        kind = role.pop() if len(role) == 1 else "process"
        among = [p for p in read_backs if roles.get(p, "process") == kind] or list(read_backs)
        plural = "processes" if kind == "process" else f"{kind}s"
        where = "" if read_backs.keys() == {""} else f" in {len(pids)} of {len(among)} {plural}"
        out.append(
            {
                "what": what,
                "why": why,
                "pids": [p for p in pids if p],
                "of": len(among),
                "role": kind,
                "sentence": f"{what}{where}: {why}",
            }
        )
    return out


def proven_from_outside(pid: int, var: Variant) -> dict:
    """For a --command server that cannot be asked: which settings its environment really
    holds (/proc/<pid>/environ); none is proven applied."""
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        raw = []
    environ = dict(item.decode(errors="replace").partition("=")[::2] for item in raw if item)
    return {
        "in_environment": {k: environ.get(k) == v for k, v in var.env.items()},
        "applied": "not proven: no agent could be asked what its allocator runs with",
    }

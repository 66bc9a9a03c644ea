"""The production questions' text in a summary: a server's memory cgroup (its container) and
the processes of a server of several (a prefork master and its workers)."""

from __future__ import annotations

from stair_stepper.analysis.table import markdown_table, mb


def container_text(variants: dict) -> list[str]:
    """Each server's memory cgroup: the limit, what the kernel charged at its peak (and the
    anonymous part), LazyFree at the last floor (freed with MADV_FREE: the kernel may take it
    back without a kill), and how the variant ended."""
    rows = []
    for name, s in variants.items():
        if s.get("cgroup_peak_bytes") is None and not s.get("outcome"):
            continue
        outcome = s.get("outcome") or {}
        oom = s.get("oom_runs")
        ended = (
            f"OOM-killed in {oom[0]} of {oom[1]} runs"
            if oom and oom[0]
            else outcome.get("sentence", "").removeprefix(f"{name}: ")
            if outcome
            else "completed"
        )
        rows.append(
            [
                name,
                f"v{s['cgroup_version']}" if s.get("cgroup_version") else "–",
                mb(s.get("limit_bytes")) if s.get("limit_bytes") else "none",
                mb(s.get("cgroup_peak_bytes")),
                mb(s.get("cgroup_anon_peak_bytes")),
                mb(s.get("last_floor_lazyfree_bytes")),
                ended,
            ]
        )
    if not rows:
        return []
    head = ["variant", "cgroup", "limit", "charged peak", "anon peak", "LazyFree", "ended"]
    return [
        "Its container (MB; each server in a memory cgroup of its own; what the kernel charged, "
        "which is what an OOM kill is decided on, beside RSS):",
        "",
        *markdown_table(head, rows),
        "",
    ]


def processes_text(variants: dict) -> list[str]:
    """Each process of a server's tree at the last floor: its part, what the kernel counts
    (PSS shares each shared page among the processes mapping it; USS is its own alone; the
    rest of its RSS is shared, what fork left in common with the master) and what its
    allocator counts."""
    rows = [
        [
            name,
            str(p["pid"]),
            p["role"] or "–",
            mb(p["rss_bytes"]),
            mb(p["pss_bytes"]),
            mb(p["uss_bytes"]),
            mb(p["shared_bytes"]),
            mb(p["live_bytes"]),
            mb(p["held_bytes"]),
        ]
        for name, s in variants.items()
        for p in s.get("processes") or []
    ]
    if not rows:
        return []
    head = ["variant", "pid", "part", "RSS", "PSS", "USS", "shared", "live", "held"]
    return [
        "Each process at the last floor (MB; RSS, PSS, USS and the shared rest of RSS from "
        "/proc, live and held from the process's allocator):",
        "",
        *markdown_table(head, rows),
        "",
    ]

"""The published blocks of this stage's production questions — a server under two Pythons, a
prefork server, a container's limit, the smallest safe limit — each built from its committed
result folders, as ``publish_blocks``' are."""

from __future__ import annotations

import json
from pathlib import Path

from stair_stepper.analysis import read, summary
from stair_stepper.analysis.markdown import layers_text, repeats_table
from stair_stepper.analysis.production import container_text, processes_text
from stair_stepper.analysis.publish_blocks import repeated, revision_line
from stair_stepper.analysis.table import markdown_table, mb


def pythons_block(folders: list[Path]) -> str:
    """Variants under two Pythons: the table over the runs (each variant's interpreter and
    object allocator under it), then the first run's layers and diagnosis for each."""
    result = repeated(folders[0])
    first = summary.summarise(read.run_folders(folders[0])[0])
    where = layers_text(first["variants"])
    text = repeats_table(result) + "\n"
    if where:
        text += "In the first run:\n\n" + "\n".join(where) + "\n"
    return text + revision_line(folders) + "\n"


def prefork_block(folders: list[Path]) -> str:
    """A prefork server's variants: the table over the runs, what each process ran with that
    nobody asked for, then the first run's processes, layers and diagnosis."""
    result = repeated(folders[0])
    first = summary.summarise(read.run_folders(folders[0])[0])
    text = repeats_table(result) + "\n"
    meta = json.loads((read.run_folders(folders[0])[0] / "meta.json").read_text())
    found = [
        f"- {name}: {f['sentence']}."
        for name, v in meta["variants"].items()
        for f in (v.get("settings") or {}).get("findings") or []
    ]
    if found:
        text += "Findings (each run the same):\n\n" + "\n".join(found) + "\n\n"
    where = processes_text(first["variants"]) + layers_text(first["variants"])
    if where:
        text += "In the first run:\n\n" + "\n".join(where) + "\n"
    return text + revision_line(folders) + "\n"


def container_block(folders: list[Path]) -> str:
    """bench/container.py's folder: the unlimited run's peaks, the limit put between them,
    and per variant in how many runs under it the server was OOM-killed; then the first
    limited run's container table (charged peak, anon, LazyFree, how it ended)."""
    top = folders[0]
    limited = top / "limited"
    result = repeated(limited)
    runs = read.run_folders(limited)
    limit = (result.get("config") or {}).get("memory_limit")
    rows = []
    free = summary.summarise(top / "unlimited") if (top / "unlimited").exists() else None
    for name, v in result["variants"].items():
        unlimited = (free or {}).get("variants", {}).get(name) or {}
        killed, total = v.get("oom_runs") or [0, len(runs)]
        rows.append(
            [
                name,
                mb(unlimited.get("peak_bytes")),
                mb(unlimited.get("cgroup_peak_bytes")),
                f"{killed} of {total}",
            ]
        )
    head = ["variant", "unlimited: RSS peak", "unlimited: charged peak", "OOM-killed under it"]
    text = f"The limit: {mb(limit)} MB (MiB), each server in a memory cgroup of its own.\n\n"
    text += "\n".join(markdown_table(head, rows)) + "\n\n"
    first = summary.summarise(runs[0])
    where = container_text(first["variants"]) + layers_text(first["variants"])
    text += "In the first run under the limit:\n\n" + "\n".join(where) + "\n"
    return text + revision_line([limited], f"`docs/results/{top.name}/`") + "\n"


def find_limit_block(folders: list[Path]) -> str:
    """``--find-limit``'s table and one line per variant, with the revision of its runs."""
    top = folders[0]
    text = (top / "find-limit.md").read_text().partition("\n\n")[2]
    first = next(p for p in sorted(top.glob("*/unlimited")) if (p / "meta.json").exists())
    meta = json.loads((first / "meta.json").read_text())
    rev = (meta.get("provenance") or {}).get("git_rev", "?")[:10]
    return text + f"\nData: `docs/results/{top.name}/`, measured at revision {rev}.\n"

"""What allocators this machine has: each one tried in a throw-away process.

A library file on disk proves little; preloading it into a small Python
process and asking which library serves ``malloc`` proves it works here, and
yields the version the allocator reports about itself.
"""

from __future__ import annotations

import json
import subprocess

from stair_stepper import allocators, selfexec
from stair_stepper.errors import UserError


def probe_variant(
    var: allocators.Variant, python_malloc: str = "pymalloc", extra_env: dict | None = None
) -> dict:
    """Run ``python -m stair_stepper.allocators.probe`` under the variant's environment;
    ``stderr`` is what the allocator said about its settings there (a verbose mimalloc lists
    its options)."""
    row: dict = {
        "name": var.allocator.name,
        "package": var.allocator.package,
        "env_var": var.allocator.env_var,
        "available": False,
        "library": None,
        "version": None,
        "problem": None,
        "stderr": "",
    }
    try:
        env = allocators.server_env(var, python_malloc)
    except UserError as exc:
        row["problem"] = str(exc)
        return row
    row["library"] = env.get("LD_PRELOAD")
    env.update(extra_env or {})  # e.g. the settings to read back (settings.for_child)
    env.update(var.allocator.trial_env(var))  # e.g. a verbose mode that lists its settings
    command, env = selfexec.python_command(
        "stair_stepper.allocators.probe", env=env, interpreter=var.strategy.get("python")
    )
    try:
        done = subprocess.run(
            command,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        row["stderr"] = done.stderr
        result = json.loads(done.stdout.strip().splitlines()[-1])
    except (subprocess.SubprocessError, ValueError, OSError, IndexError):
        row["problem"] = f"a process preloaded with {row['library']} did not start cleanly."
        return row
    if result["allocator"] != var.allocator.name:
        row["problem"] = f"malloc was served by {result['malloc_provider']} instead."
        return row
    version = result["version"] or var.allocator.version_in_output(done.stderr)
    row.update(available=True, version=version, library=result["malloc_provider"])
    row["read_back"] = result.get("read_back")
    return row


def try_all() -> list[dict]:
    return [probe_variant(allocators.Variant(a.name, a)) for a in allocators.ALLOCATORS.values()]


def format_table(rows: list[dict]) -> str:
    header = ("allocator", "available", "version", "library / how to get it")
    lines = [header]
    for row in rows:
        where = row["library"] if row["available"] else row["problem"]
        lines.append(
            (row["name"], "yes" if row["available"] else "no", row["version"] or "-", where or "-")
        )
    widths = [max(len(str(line[i])) for line in lines) for i in range(3)]
    return "\n".join(
        "  ".join([*(str(c).ljust(w) for c, w in zip(line, widths, strict=False)), str(line[3])])
        for line in lines
    )


def add_arguments(p) -> None:
    p.add_argument("--json", action="store_true", help="machine-readable output")


def run_args(args) -> int:
    rows = try_all()
    print(json.dumps(rows, indent=2) if args.json else format_table(rows))
    return 0

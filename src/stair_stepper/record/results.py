"""The result folder's contract: its format version, how ``meta.json`` is written and read
back, and the one sentence that says what a run measured.

Like pyperf's ``_bench.py``: ``meta.json`` and ``summary.json`` carry ``"format"``; a reader
refuses a folder written by a newer stair-stepper in one sentence, and reads older ones
(format 1, which had no such field) through ``upgrade``.
"""

from __future__ import annotations

import json
from pathlib import Path

from stair_stepper.errors import NewerFormat

#: 2: "format" itself; config "pause" ("auto" or seconds) instead of "pause_s" (null = auto);
#: per variant the settings read back from its process; cost and structure columns.
FORMAT = 2

NOT_MEASURED = "not measured"  # what the reports say where nothing was measured


def check_format(data: dict, path: Path) -> dict:
    """``data`` if this stair-stepper can read it; NewerFormat with one sentence if not."""
    found = data.get("format", 1)
    if not isinstance(found, int) or found > FORMAT:
        raise NewerFormat(
            f"{path} was written by a newer stair-stepper (format {found}; this one reads up "
            f"to {FORMAT}): upgrade stair-stepper to read it."
        )
    return data


def upgrade(meta: dict) -> dict:
    """A format-1 ``meta.json`` in today's shape (its configuration's names)."""
    config = dict(meta.get("config") or {})
    if "pause_s" in config and "pause" not in config:
        old = config.pop("pause_s")
        config["pause"] = "auto" if old is None else old
    return {**meta, "config": config}


def read_meta(folder: Path) -> dict:
    """``meta.json`` of a result folder, in today's shape; {} when there is none.
    ValueError if it is damaged, NewerFormat if it is newer than this code."""
    path = Path(folder) / "meta.json"
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    return upgrade(check_format(data, path))


def python_served(meta: dict) -> bool:
    """Did Python serve (so that PYTHONMALLOC meant something)? Always for the widget app and
    a user's --app; for a --command, when every variant's serving processes ran CPython."""
    config = meta.get("config") or {}
    if not config.get("command"):
        return True
    found = [(v.get("health") or {}).get("python") for v in (meta.get("variants") or {}).values()]
    return bool(found) and all(f is True for f in found)


def served(config: dict) -> str:
    """What was served: the user's app or command, or the widget app with its settings."""
    if config.get("command"):
        return f"the command `{config['command']}`"
    if config.get("app"):
        return f"the application `{config['app']}`"
    return (
        f"the widget app (SLEEP_MS={config.get('sleep_ms')}, offload threads "
        f"{config.get('offload_threads')})"
    )


AUTO = "auto"  # config "pause": until RSS settles (phases.settled), at most pause_cap_s


def pause_words(config: dict) -> str:
    """How the pauses end, in words."""
    if config.get("pause", AUTO) == AUTO:
        return f"until RSS settles (at most {config.get('pause_cap_s', 30):g} s)"
    return f"{config['pause']:g} s"


def describe(meta: dict) -> str:
    """The one sentence that says what a run measured, for the console, the summaries and the
    figures: what was served, the load, PYTHONMALLOC (only where Python served), the pauses,
    the idle traffic and how the variants ran."""
    c = meta.get("config") or {}
    if not c:
        return ""
    parts = [
        f"{served(c)}; {c.get('batches')} batch{'es' if c.get('batches') != 1 else ''} of "
        f"{c.get('iterations')} iterations ({c.get('tags') or 'all sizes'}), concurrency "
        f"{c.get('concurrency')}"
    ]
    if python_served(meta):
        parts.append(f"PYTHONMALLOC={c.get('python_malloc')}")
    parts.append(f"pauses {pause_words(c)}")
    parts.append(f"idle traffic {c.get('idle_rps', 0):g} req/s")
    parts.append("variants side by side" if c.get("parallel") else "variants one after another")
    return ", ".join(parts)

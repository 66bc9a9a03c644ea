"""Reading a process's memory and CPU from /proc, from the outside.

Works for any process this user may inspect, not only our service. Each read
is a few small text files, cheap enough to sample at 10 Hz.
"""

from __future__ import annotations

import os

_CLK_TCK = os.sysconf("SC_CLK_TCK")
_STATUS_FIELDS = {"VmRSS": "rss_bytes", "RssAnon": "rss_anon_bytes", "VmHWM": "peak_rss_bytes"}
_ROLLUP_FIELDS = {
    "Pss": "pss_bytes",
    "Private_Clean": "private_clean",
    "Private_Dirty": "private_dirty",
}


class ProcessGone(Exception):
    """The process exited (or was never there)."""


def _read(path: str) -> str:
    try:
        with open(path, encoding="ascii", errors="replace") as handle:
            return handle.read()
    except (FileNotFoundError, ProcessLookupError):
        raise ProcessGone(path) from None


def _kb_fields(text: str, wanted: dict[str, str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key in wanted:
            out[wanted[key]] = int(rest.split()[0]) * 1024
    return out


def memory(pid: int, rollup: bool = True) -> dict[str, int | None]:
    """RSS, anonymous RSS, peak RSS (status) and, with ``rollup``, PSS / private bytes.

    smaps_rollup makes the kernel walk the process's page tables: ~0.4 ms for a
    small Python server and more as it grows, 20× the cost of status. Samplers
    read it less often than status (see record.Recorder's ``pss_interval``).
    """
    status = _kb_fields(_read(f"/proc/{pid}/status"), _STATUS_FIELDS)
    if "rss_bytes" not in status:  # a zombie has no memory lines
        raise ProcessGone(f"/proc/{pid}/status")
    rolled: dict[str, int] = {}
    if rollup:
        try:
            rolled = _kb_fields(_read(f"/proc/{pid}/smaps_rollup"), _ROLLUP_FIELDS)
        except (ProcessGone, PermissionError):
            rolled = {}
    private = None
    if "private_clean" in rolled:
        private = rolled["private_clean"] + rolled["private_dirty"]
    return {
        "rss_bytes": status.get("rss_bytes"),
        "rss_anon_bytes": status.get("rss_anon_bytes"),
        "peak_rss_bytes": status.get("peak_rss_bytes"),
        "pss_bytes": rolled.get("pss_bytes"),
        "uss_bytes": private,
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far."""
    text = _read(f"/proc/{pid}/stat")
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def alive(pid: int) -> bool:
    try:
        state = _read(f"/proc/{pid}/stat")
    except ProcessGone:
        return False
    return state[state.rindex(")") + 2] not in "ZX"

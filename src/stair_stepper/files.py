"""Writing a file whole or not at all, and what a full file system means for it.

Every JSON file a run writes (``meta.json``, a server's ready file, summaries) goes through
``write_json``: to a temporary file beside it, then renamed over it, so a reader never sees a
half-written file. When the file system is full, nothing new can be written, but a run must
still leave ``meta.json`` saying how it ended: ``write_json(..., shrink=True)`` then rewrites
the existing file in place, compact, which needs no new block as long as the compact text is
no longer than the file already there (the indented JSON it replaces always is longer).
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

#: the errors that say "no room": the file system is full, or a quota is
NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def no_space(exc: BaseException | None) -> bool:
    """Is ``exc`` (or what caused it) a full file system?"""
    while exc is not None:
        if isinstance(exc, OSError) and exc.errno in NO_SPACE:
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def full(folder: Path) -> bool:
    """Has the file system under ``folder`` no block left for us?"""
    try:
        stat = os.statvfs(folder)
    except OSError:
        return False
    return stat.f_bavail * stat.f_frsize < 4096


def write_text(path: Path, text: str) -> None:
    """Whole or not at all, as ``write_json``."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(text)
        tmp.replace(path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise


def write_json(path: Path, data: dict, shrink: bool = False) -> None:
    """Whole or not at all: a reader never sees a half-written file. With ``shrink``, a full file
    system is met by rewriting the existing file in place, compact (OSError if even that does
    not fit)."""
    path = Path(path)
    try:
        write_text(path, json.dumps(data, indent=2, default=str) + "\n")
    except OSError as exc:
        if not (shrink and no_space(exc) and path.exists()):
            raise
        _rewrite_in_place(path, json.dumps(data, separators=(",", ":"), default=str) + "\n")


def _rewrite_in_place(path: Path, text: str) -> None:
    """Overwrite ``path``'s own blocks with ``text`` and cut it to that length: no new block is
    needed when ``text`` is not longer than the file (OSError otherwise, the file untouched)."""
    data = text.encode()
    fd = os.open(path, os.O_WRONLY)
    try:
        if len(data) > os.fstat(fd).st_size:
            raise OSError(errno.ENOSPC, f"{path} cannot be rewritten in place: no room")
        os.pwrite(fd, data, 0)
        os.ftruncate(fd, len(data))
        os.fsync(fd)
    finally:
        os.close(fd)

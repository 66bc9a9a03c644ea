"""How a run ends: what an exception means for the run, naming its result folder (a signal
stays itself, a bug of ours becomes ``Crashed`` with its traceback in ``crash.log``), and how
``meta.json`` says it — the one place that names every ending."""

from __future__ import annotations

import traceback
from pathlib import Path

from stair_stepper.errors import Crashed, Fault, NoSpace, Stopped, Terminated, UserError
from stair_stepper.files import full, no_space


def no_space_fault(folder: Path, exc: BaseException | None, more: str = "") -> NoSpace:
    why = getattr(exc, "strerror", None) or "no space left"
    return NoSpace(
        f"the file system under {folder} is full ({why}): the run stopped, and every server "
        f"with it; what was measured so far is kept. {more}".rstrip(),
        folder,
    )


def as_fault(exc: BaseException, folder: Path) -> BaseException:
    """What ``exc`` means for the run, naming its folder: a signal stays itself."""
    if isinstance(exc, KeyboardInterrupt | Terminated):
        return exc
    if no_space(exc) or (isinstance(exc, Fault) and full(folder)):
        return no_space_fault(folder, exc)  # e.g. a server that died writing its log
    if isinstance(exc, Fault):
        return exc.located(folder)
    if isinstance(exc, UserError | Stopped):
        return Fault(str(exc), folder)
    if isinstance(exc, Exception):
        log = folder / "crash.log"
        log.write_text("".join(traceback.format_exception(exc)))
        why = f"{type(exc).__name__}: {exc}"
        return Crashed(f"the run crashed ({why}); the traceback is in {log}.", folder, why)
    return exc


def ending(exc: BaseException) -> dict:
    """How a run ended, as meta.json says it: the one place that names every ending."""
    if isinstance(exc, KeyboardInterrupt):
        return {"status": "interrupted"}
    if isinstance(exc, Terminated):
        return {"status": "terminated", "signal": str(exc)}
    if isinstance(exc, Crashed):
        return {"status": f"crashed: {exc.why}"}
    if isinstance(exc, NoSpace):
        return {"status": "failed: no space left on the result folder's file system"}
    if isinstance(exc, Fault):
        return {"status": f"failed: {exc.reason}"}
    return {"status": f"crashed: {type(exc).__name__}: {exc}"}

"""Start a module of ours in a child Python process that imports what we import.

``sys.executable -m stair_stepper`` is not enough: how the parent found its
packages is not always a property of the interpreter. nixpkgs' application
wrapper (``wrapPythonPrograms``, pkgs/development/interpreters/python/wrap.sh
and wrap-python.nix) runs the *bare* interpreter of the Python derivation and
adds every dependency with ``site.addsitedir`` from a line patched into the
script itself; its shell wrapper sets only ``PATH`` and ``PYTHONNOUSERSITE``,
never ``PYTHONPATH``. A child started as ``sys.executable -m stair_stepper``
there cannot import stair_stepper, Quart or Hypercorn.

So every child of ours gets the parent's import path, exactly, the way
multiprocessing's spawn start method does (``get_preparation_data`` sends
``sys.path``): a short bootstrap (``python -c``) reads it from an environment
variable, which it removes at once so it never leaks into grandchildren (a
user's own server, drill), adds the folders its own interpreter would not have
read with ``site.addsitedir`` (as nixpkgs' wrapper does, with the child's own
``sys.path`` as the known paths: a folder is on ``sys.path`` before its ``.pth``
files run, so a ``.pth`` line that imports, such as an editable install's
finder, finds its module), puts the parent's path first and runs the module as
``__main__``. This works alike for a venv, ``pip install --user``, the nixpkgs
wrapper, ``python.withPackages`` and the dev shell's ``PYTHONPATH``; Hypercorn's
worker processes are spawned by multiprocessing from such a child and inherit
its ``sys.path`` the same way.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping

IMPORT_PATH_VAR = "STAIR_STEPPER_IMPORT_PATH"
#: the interpreter a child was started under (a variant's python=PATH): the child knows it runs
#: there already (PATH may be a wrapper that does not exist in the child's own file system)
INTERPRETER_VAR = "STAIR_STEPPER_INTERPRETER"

_BOOTSTRAP = (
    "import json,os,runpy,site,sys\n"
    f"parent=json.loads(os.environ.pop({IMPORT_PATH_VAR!r}))\n"
    "known={site.makepath(p)[1] for p in sys.path}\n"
    "for entry in [p for p in parent if p not in sys.path]:\n"
    "    site.addsitedir(entry,known)\n"
    "sys.path[:]=parent+[p for p in sys.path if p not in parent]\n"
    "runpy.run_module(sys.argv.pop(1),run_name='__main__',alter_sys=True)\n"
)


def python_command(
    module: str,
    args: tuple[str, ...] | list[str] = (),
    env: Mapping[str, str] | None = None,
    interpreter: str | None = None,
) -> tuple[list[str], dict[str, str]]:
    """``(argv, environment)`` that run ``python -m MODULE ARGS`` with our import path.

    ``env`` is the child's environment without the import path (default: ours). With
    ``interpreter`` (a variant's ``python=PATH``), another Python runs the module with its own
    environment's packages (stair-stepper installed there too): our import path is ours, not
    its.
    """
    child_env = dict(os.environ if env is None else env)
    child_env.pop(IMPORT_PATH_VAR, None)
    if interpreter and interpreter != sys.executable and not running_under(interpreter):
        child_env[INTERPRETER_VAR] = interpreter
        return [interpreter, "-m", module, *args], child_env
    here = [os.path.abspath(entry) if entry else os.getcwd() for entry in sys.path]
    child_env[IMPORT_PATH_VAR] = json.dumps(here)
    return [sys.executable, "-c", _BOOTSTRAP, module, *args], child_env


def running_under(interpreter: str) -> bool:
    """Was this process started under ``interpreter`` (``python_command``'s child)?"""
    return os.environ.get(INTERPRETER_VAR) == interpreter


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with_parent(parent_pid: int | None = None) -> None:
    """Ask the kernel to SIGKILL this process when its parent dies (``PR_SET_PDEATHSIG``).

    Kept across ``execve`` (our LD_PRELOAD re-exec), so no path, not even a SIGKILL of
    the experiment, leaves a server behind. If the parent is already gone, exit now.
    """
    import ctypes
    import signal

    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    if parent_pid is not None and os.getppid() != parent_pid:
        os._exit(1)


def child_popen_options(cgroup_procs: str | None = None) -> dict:
    """``subprocess.Popen`` options for every long-lived child (servers, drill).

    Its own session and process group (a terminal's Ctrl-C or a job runner's group
    signal reaches only us, and we stop the child in order), and death with us; with
    ``cgroup_procs`` (a cgroup's ``cgroup.procs``), in that cgroup before it runs anything,
    so every process it starts is charged there too.
    """
    parent = os.getpid()

    def prepare() -> None:
        die_with_parent(parent)
        if cgroup_procs:
            with open(cgroup_procs, "w") as procs:
                procs.write(str(os.getpid()))

    return {"start_new_session": True, "preexec_fn": prepare}


def stop_group(process, timeout: float = 5.0) -> int:
    """Stop a child started with ``child_popen_options`` and everything in its process group:
    SIGTERM to the group, SIGKILL after ``timeout`` seconds, and a last SIGKILL for members
    that outlived the leader; returns the leader's exit code (it is reaped)."""
    import contextlib
    import signal
    import subprocess

    def to_group(sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):  # nothing of the group is left
            os.killpg(process.pid, sig)

    to_group(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        to_group(signal.SIGKILL)
        process.wait()
    to_group(signal.SIGKILL)
    return process.returncode

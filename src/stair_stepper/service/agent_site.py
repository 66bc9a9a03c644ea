"""The ``sitecustomize`` of a server the lab measures (``load/agents.py`` copies this file
there, beside a link to this package, and puts that folder first on the server's
PYTHONPATH): it starts the agent (``service/agent.py``) in this process when
``STAIR_STEPPER_AGENT_DIR`` names a folder, then runs the ``sitecustomize`` it hides, if the
interpreter has one further along its path (Debian's, a virtualenv's), as if this one were
not there. Nothing here may break the user's server: an agent that cannot start writes its
one line to ``<folder>/<pid>.error`` for the lab to report, and the server runs on.
"""


def _start_agent() -> None:
    import os

    folder = os.environ.get("STAIR_STEPPER_AGENT_DIR")
    if not folder:
        return
    try:
        from stair_stepper.service import agent

        agent.start(folder)
    except Exception as exc:  # noqa: BLE001 - reported to the lab, never raised in the server
        try:
            with open(os.path.join(folder, f"{os.getpid()}.error"), "w") as out:
                out.write(f"{type(exc).__name__}: {exc}\n")
        except OSError:
            pass


def _run_the_hidden_one() -> None:
    import importlib.machinery
    import importlib.util
    import os
    import sys

    here = os.path.dirname(os.path.abspath(__file__))
    rest = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
    if spec is None or spec.loader is None or spec.origin == os.path.abspath(__file__):
        return
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)


_start_agent()
_run_the_hidden_one()

"""Any ASGI or WSGI application on the bench: loading it, and the memory endpoints around it.

The experiment needs three things from every server it runs in-process: a health check,
the allocator's own accounting with a count of the requests answered, and a trim. A
middleware adds them under a reserved prefix, so they never meet the application's own
routes, and counts every request that passes. Our widget app is served through the same
middleware (its documented ``/healthz`` and ``/debug/*`` stay; ``serve.served_app`` picks
which app), so the experiment and the recorder use one set of paths whatever the application.
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import sys
import threading
import time
from pathlib import Path

from stair_stepper.errors import UserError
from stair_stepper.load.client import HEALTH, MEMORY, PREFIX, TRIM

ENV_APP = "STAIR_STEPPER_APP"  # how Hypercorn's spawned workers find the user's app
ENV_APP_DIR = "STAIR_STEPPER_APP_DIR"
ENV_VARIANT = "STAIR_STEPPER_VARIANT"
ENV_DEBUG = "STAIR_STEPPER_DEBUG_ENDPOINTS"  # "0": no allocator internals (serve --public)
ENV_TRIM_EVERY = "STAIR_STEPPER_TRIM_EVERY"  # a variant's trim_every: seconds between trims
ENV_TRACE_PYTHON = "STAIR_STEPPER_TRACE_PYTHON"  # "1": tracemalloc on (--trace-python)


class PeriodicTrim(threading.Thread):
    """A maintenance strategy many services use instead of another allocator: ask the
    allocator to give free memory back every ``every_s`` seconds, timing each call (the
    trim holds the allocator's locks: what it costs is part of the answer)."""

    def __init__(self, allocator: str, every_s: float) -> None:
        super().__init__(name="periodic-trim", daemon=True)
        self.allocator, self.every_s = allocator, every_s
        self.count, self.total_s, self.max_s = 0, 0.0, 0.0
        self.start()

    def run(self) -> None:
        from stair_stepper.allocators import probe

        while True:
            time.sleep(self.every_s)
            began = time.perf_counter()
            probe.release(self.allocator)
            took = time.perf_counter() - began
            self.count, self.total_s = self.count + 1, self.total_s + took
            self.max_s = max(self.max_s, took)

    def report(self) -> dict:
        return {
            "every_s": self.every_s,
            "count": self.count,
            "total_s": self.total_s,
            "max_s": self.max_s,
        }


class Endpoints:
    """The answers under PREFIX, and the count of every request this process answered."""

    def __init__(self, app_name: str, variant: str | None = None, internals: bool = True) -> None:
        self.app_name = app_name
        self.variant = variant
        self.internals = internals  # memory and trim (off when served --public)
        # here: the recorder imports the paths above, and no ctypes
        from stair_stepper.allocators import probe

        self.allocator = probe.live_allocator()  # what really serves malloc here
        self.requests = 0
        self.settings = self.read_settings()
        self.trace_python = os.environ.get(ENV_TRACE_PYTHON) == "1"
        every = os.environ.get(ENV_TRIM_EVERY)
        self.periodic = PeriodicTrim(self.allocator, float(every)) if every else None

    def read_settings(self) -> dict | None:
        """The variant's settings as this process's allocator has them now (None: none were
        given to read back)."""
        from stair_stepper.allocators import ENV_SETTINGS, probe

        spec = os.environ.get(ENV_SETTINGS)
        return probe.read_back(json.loads(spec)) if spec else None

    def answer(self, method: str, path: str, query: str = "") -> tuple[int, dict] | None:
        """(status, JSON body) for a path under PREFIX; None for the application's own.
        ``MEMORY?structure=1`` adds the allocator's structure (arenas, pages waiting) and
        Python's layer: costly under load (a walk of every bin), so asked for only at a
        floor."""
        if not path.startswith(PREFIX + "/"):
            return None
        wanted = {HEALTH: "GET", MEMORY: "GET", TRIM: "POST"}.get(path)
        if path != HEALTH and not self.internals:
            wanted = None
        if wanted is None:
            return 404, {"error": f"no such endpoint under {PREFIX}: {HEALTH}, {MEMORY}, {TRIM}."}
        if method != wanted:
            return 405, {"error": f"{path} takes {wanted} only."}
        if path == MEMORY:
            return 200, self.memory(structure="structure=1" in query)
        return 200, {HEALTH: self.health, TRIM: self.trim}[path]()

    def health(self) -> dict:
        from stair_stepper.allocators import probe

        return {
            "status": "ok",
            "pid": os.getpid(),
            "app": self.app_name,
            "allocator": self.allocator,
            "variant": self.variant or self.allocator,
            "malloc_provider": probe.malloc_provider(),
            "python_malloc": os.environ.get("PYTHONMALLOC") or "pymalloc",
            "python": platform.python_version(),
            "settings": self.settings,
        }

    def memory(self, structure: bool = False) -> dict:
        """RSS and the allocator's accounting, with every request this process has answered
        (this one included): the experiment reads it once per pause to prove that nothing it
        did not send reached the service meanwhile."""
        from stair_stepper.allocators import probe

        answer = {"pid": os.getpid(), "requests_served": self.requests}
        if self.periodic is not None:  # the trims the strategy made, as timed here
            answer["periodic_trim"] = self.periodic.report()
        # what asking cost, measured here: the wall time it held this handler, and its own
        # CPU (the wall time also counts waiting for a core, and for the GIL, which the
        # allocator's ctypes calls release: on busy cores one poll in hundreds waits long)
        began, cpu = time.perf_counter(), time.thread_time()
        answer.update(probe.memory(self.allocator))
        answer["accounting_s"] = time.perf_counter() - began
        answer["accounting_cpu_s"] = time.thread_time() - cpu
        if structure:
            began, cpu = time.perf_counter(), time.thread_time()
            answer["structure"] = probe.structure(self.allocator)
            answer["python"] = probe.python_layer(self.trace_python)
            answer["probe_s"] = time.perf_counter() - began
            answer["probe_cpu_s"] = time.thread_time() - cpu
        return answer

    def trim(self) -> dict:
        from stair_stepper.allocators import probe

        return {"pid": os.getpid(), **probe.trim(self.allocator)}


def endpoints_from_env(app_name: str) -> Endpoints:
    """The endpoints of a server process, as ``serve`` set them up in its environment: the
    variant's name, and whether allocator internals are shown (off under --public)."""
    internals = os.environ.get(ENV_DEBUG, "1") != "0"
    return Endpoints(app_name, os.environ.get(ENV_VARIANT) or None, internals)


def _json(body: dict) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    data = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    return data, headers


class AsgiEndpoints:
    """ASGI middleware: PREFIX answered here, everything else (and lifespan) passed on."""

    def __init__(self, app, endpoints: Endpoints) -> None:
        self.app = app
        self.endpoints = endpoints

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self.endpoints.requests += 1
        query = scope.get("query_string", b"").decode("latin-1")
        answered = self.endpoints.answer(scope["method"], scope["path"], query)
        if answered is None:
            await self.app(scope, receive, send)
            return
        status, body = answered
        data, headers = _json(body)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": data})


class WsgiEndpoints:
    """The same for a WSGI application (Hypercorn serves it in its WSGI mode)."""

    def __init__(self, app, endpoints: Endpoints) -> None:
        self.app = app
        self.endpoints = endpoints

    def __call__(self, environ, start_response):
        self.endpoints.requests += 1
        answered = self.endpoints.answer(
            environ["REQUEST_METHOD"], environ.get("PATH_INFO", ""), environ.get("QUERY_STRING", "")
        )
        if answered is None:
            return self.app(environ, start_response)
        status, body = answered
        data, headers = _json(body)
        reason = {200: "OK", 404: "Not Found", 405: "Method Not Allowed"}[status]
        start_response(f"{status} {reason}", [(k.decode(), v.decode()) for k, v in headers])
        return [data]


def load_app(spec: str, app_dir: str | None = None):
    """``MODULE:ATTR`` or ``MODULE:factory()``, imported with ``app_dir`` (default: the
    current folder) first on sys.path, as uvicorn and gunicorn do."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise UserError(f"--app wants MODULE:ATTR or MODULE:factory(), got {spec!r}.")
    folder = str(Path(app_dir or os.getcwd()).resolve())
    if app_dir and not Path(folder).is_dir():
        raise UserError(f"--app-dir {app_dir} is not a folder.")
    if folder not in sys.path:
        sys.path.insert(0, folder)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise UserError(f"cannot import {module_name} from {folder} (--app-dir).") from None
        raise UserError(f"importing {module_name} failed: {exc}.") from None
    except Exception as exc:  # noqa: BLE001 - the user's module failed: say how, in one line
        raise UserError(f"importing {module_name} failed: {type(exc).__name__}: {exc}.") from None
    call = attr.endswith("()")
    obj = module
    for part in attr.removesuffix("()").split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise UserError(f"{module_name} has no attribute {attr.removesuffix('()')}.") from None
    if call:
        try:
            obj = obj()
        except Exception as exc:  # noqa: BLE001
            raise UserError(f"{spec} failed: {type(exc).__name__}: {exc}.") from None
    if not callable(obj):
        raise UserError(f"{spec} is not an ASGI or WSGI application (not callable).")
    return obj


def wrapped(app, endpoints: Endpoints):
    """The application with the endpoints in front, ASGI or WSGI as the application is
    (told apart by Hypercorn's own test, which serves it)."""
    from hypercorn.utils import is_asgi

    if is_asgi(app):
        return AsgiEndpoints(app, endpoints)
    return WsgiEndpoints(app, endpoints)

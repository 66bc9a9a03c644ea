"""The web app: a deliberately wasteful widget handler plus memory endpoints.

``POST /widgets`` parses the body, deep-copies the payload, serialises the copy
and then *holds all three* across an ``await asyncio.sleep`` that stands in
for a slow database call, exactly as a real handler keeps its request data
alive while it waits. Many such requests in flight make the allocator's
high-water mark, and what it does with the memory afterwards, visible.

Configuration comes from the environment (``stair-stepper serve`` sets it), so
the same app object works in-process, under Hypercorn workers and in tests.
Quart is imported by ``create_app`` alone: ``serve`` reads ``Settings`` from here, and a
user's ``--app`` server must not carry Quart, Jinja2 and MarkupSafe (about 12 MB of RSS)
into the process it measures.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from stair_stepper.errors import BadWidget
from stair_stepper.service.endpoints import Endpoints, endpoints_from_env
from stair_stepper.validate import non_negative_int

DEFAULT_SLEEP_MS = 150
DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024

ENV_SLEEP_MS = "SLEEP_MS"
ENV_OFFLOAD = "STAIR_STEPPER_OFFLOAD_THREADS"
ENV_MAX_BODY = "STAIR_STEPPER_MAX_BODY_BYTES"


def _non_negative_int(name: str, raw: str | None, default: int) -> int:
    return default if raw is None or raw == "" else non_negative_int(name, raw)


@dataclass(frozen=True)
class Settings:
    sleep_ms: int = DEFAULT_SLEEP_MS
    offload_threads: int = 0
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        return cls(
            sleep_ms=_non_negative_int(ENV_SLEEP_MS, env.get(ENV_SLEEP_MS), DEFAULT_SLEEP_MS),
            offload_threads=_non_negative_int(ENV_OFFLOAD, env.get(ENV_OFFLOAD), 0),
            max_body_bytes=_non_negative_int(
                ENV_MAX_BODY, env.get(ENV_MAX_BODY), DEFAULT_MAX_BODY_BYTES
            ),
        )

    def to_env(self) -> dict[str, str]:
        env = {
            ENV_SLEEP_MS: str(self.sleep_ms),
            ENV_OFFLOAD: str(self.offload_threads),
            ENV_MAX_BODY: str(self.max_body_bytes),
        }
        return env


def _reject_constant(name: str):
    raise BadWidget(f"the body contains {name}, which is not valid JSON.")


def make_widget(body: bytes) -> tuple[dict, object, bytes]:
    """The wasteful part: parse, deep copy, serialise. Returns all three to keep alive."""
    try:
        parsed = json.loads(body, parse_constant=_reject_constant)
    except BadWidget:
        raise
    except RecursionError:
        raise BadWidget("the JSON body is nested too deeply to parse.") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, int digit limit
        reason = str(exc).split(":")[0].split(";")[0].rstrip(".")
        raise BadWidget(f"the body is not valid JSON ({reason}).") from None
    if not isinstance(parsed, dict):
        raise BadWidget(f"the body must be a JSON object, not {type(parsed).__name__}.")
    if "payload" not in parsed:
        raise BadWidget('the body has no "payload" field.')
    try:
        duplicate = copy.deepcopy(parsed["payload"])
        encoded = json.dumps(duplicate, separators=(",", ":")).encode("ascii")
    except RecursionError:
        raise BadWidget("the payload is nested too deeply to copy.") from None
    return parsed, duplicate, encoded


def _error(status: int, message: str):
    return {"error": message}, status


_HTTP_MESSAGES = {
    404: "no such endpoint; try POST /widgets, GET /healthz or GET /debug/memory.",
    405: "method not allowed here; /widgets takes POST only.",
    413: "the request body is larger than the server's limit.",
}


def _answer_errors_as_json(app, settings: Settings) -> None:
    """Every error is ``{"error": "<one sentence>"}`` with its status, never an HTML page."""
    from werkzeug.exceptions import HTTPException

    @app.errorhandler(HTTPException)
    async def http_error(exc: HTTPException):
        code = exc.code or 500
        message = _HTTP_MESSAGES.get(code, f"{exc.name.lower()}.")
        if code == 413:
            message = (
                f"the request body is larger than the limit of {settings.max_body_bytes} bytes."
            )
        return _error(code, message)

    @app.errorhandler(Exception)
    async def unexpected(exc: Exception):  # pragma: no cover - a bug, reported as JSON
        app.logger.exception("unexpected error")
        return _error(500, f"internal error: {type(exc).__name__}.")


def create_app(settings: Settings | None = None, endpoints: Endpoints | None = None):
    """The Quart app. Its ``/healthz`` and ``/debug/*`` are answered by ``endpoints`` (the
    middleware's, so one counter counts every request the process answers; by default a
    fresh one, which counts only when the app is served behind ``service.wrapped``)."""
    from quart import Quart, request

    settings = Settings.from_env() if settings is None else settings
    endpoints = endpoints or endpoints_from_env("stair_stepper.service.app")
    app = Quart(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.config["BODY_TIMEOUT"] = 120
    state: dict = {"pool": None}

    @app.before_serving
    async def start_pool() -> None:
        if settings.offload_threads:
            state["pool"] = ThreadPoolExecutor(
                settings.offload_threads, thread_name_prefix="widget-worker"
            )

    @app.after_serving
    async def stop_pool() -> None:
        if state["pool"] is not None:
            state["pool"].shutdown(wait=False, cancel_futures=True)

    _answer_errors_as_json(app, settings)

    @app.post("/widgets")
    async def create_widget():
        if request.mimetype != "application/json":
            shown = request.mimetype or "none"
            return _error(415, f"Content-Type must be application/json, not {shown}.")
        body = await request.get_data(cache=False)
        try:
            if state["pool"] is not None:
                loop = asyncio.get_running_loop()
                held = await loop.run_in_executor(state["pool"], make_widget, body)
            else:
                held = make_widget(body)
        except BadWidget as exc:
            return _error(400, str(exc))
        widget_id = uuid.uuid4()
        # The slow "database call": body, parsed object, copy and bytes all stay alive.
        await asyncio.sleep(settings.sleep_ms / 1000)
        size = len(held[2])
        del body, held
        return {"id": str(widget_id), "size": size}, 201

    @app.get("/healthz")
    async def healthz():
        health = endpoints.health()
        health.pop("app")
        return {
            **health,
            "sleep_ms": settings.sleep_ms,
            "offload_threads": settings.offload_threads,
        }

    if not endpoints.internals:
        return app  # served publicly: no allocator internals, no trim for strangers

    @app.get("/debug/memory")
    async def debug_memory():
        return endpoints.memory()

    @app.post("/debug/trim")
    async def debug_trim():
        return endpoints.trim()

    return app

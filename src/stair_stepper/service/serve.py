"""Start Hypercorn under the chosen allocator variant.

An allocator can only be swapped before the process starts, so ``serve``
re-executes itself once with ``LD_PRELOAD`` (and ``PYTHONMALLOC``,
``MALLOC_CONF`` ...) set by the allocator table. The re-executed process then
checks which library really serves ``malloc`` and refuses to run under a
wrong label. It binds its sockets itself (a busy port is one clear sentence,
port 0 works) and hands them to Hypercorn as ``fd://`` binds.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

from stair_stepper import allocators, selfexec, validate
from stair_stepper.errors import UserError
from stair_stepper.service import endpoints as service

REEXEC_MARKER = "STAIR_STEPPER_SERVE_CHILD"
DEFAULT_BIND = "localhost:3000"

log = logging.getLogger("stair_stepper.service.serve")


@dataclass(frozen=True)
class ServeOptions:
    variant: str = allocators.SYSTEM
    binds: tuple[str, ...] = (DEFAULT_BIND,)
    sleep_ms: int | None = None
    python_malloc: str = "pymalloc"
    workers: int = 1
    offload_threads: int | None = None
    max_body_bytes: int | None = None
    ready_file: str | None = None
    access_log: bool = False
    public: bool = False
    debug_endpoints: bool = False
    app: str | None = None  # MODULE:ATTR or MODULE:factory(): the user's application
    app_dir: str | None = None
    trace_python: bool = False


def add_arguments(p) -> None:
    """``serve``'s flags."""
    from stair_stepper.validate import flag, non_negative_int, positive_int

    count = flag(non_negative_int)
    p.add_argument(
        "--allocator",
        default=allocators.SYSTEM,
        metavar="VARIANT",
        help=f"allocator variant: {', '.join(allocators.VARIANTS)} (default "
        f"{allocators.SYSTEM}), or one written out: 'NAME=ALLOCATOR VAR=VALUE …' (see "
        "experiment --variant)",
    )
    p.add_argument(
        "--bind",
        action="append",
        metavar="HOST:PORT",
        help="address to listen on, repeatable (default localhost:3000, which means "
        "127.0.0.1 and ::1)",
    )
    p.add_argument(
        "--sleep-ms",
        type=count,
        help="simulated database time per request (default: $SLEEP_MS or 150)",
    )
    p.add_argument(
        "--python-malloc",
        choices=allocators.PYTHON_MALLOC_MODES,
        default="pymalloc",
        help="'malloc' sets PYTHONMALLOC=malloc so small objects reach the allocator",
    )
    p.add_argument(
        "--workers", type=flag(positive_int), default=1, help="Hypercorn worker processes"
    )
    p.add_argument(
        "--offload-threads",
        type=count,
        help="parse/copy/serialise in N worker threads (0: on the event loop)",
    )
    p.add_argument(
        "--max-body-bytes", type=count, help="largest accepted request body (default 64 MiB)"
    )
    p.add_argument("--ready-file", help="write pid and URLs as JSON here once listening")
    p.add_argument("--access-log", action="store_true", help="log every request to stderr")
    p.add_argument(
        "--public",
        action="store_true",
        help="allow a non-loopback --bind (allocator internals then need --debug-endpoints)",
    )
    p.add_argument(
        "--debug-endpoints",
        action="store_true",
        help="with --public: keep the memory and trim endpoints on",
    )
    p.add_argument(
        "--app",
        metavar="MODULE:ATTR",
        help="serve your own ASGI or WSGI application instead of the widget app "
        "(MODULE:factory() calls a factory); the memory endpoints are under "
        "/__stair_stepper__/",
    )
    p.add_argument("--app-dir", metavar="DIR", help="import --app from here (default: .)")
    p.add_argument(
        "--trace-python",
        action="store_true",
        help="start tracemalloc first thing: /__stair_stepper__/memory then has Python's traced "
        "bytes (and tracemalloc's own)",
    )


def run_args(args) -> int:
    options = ServeOptions(
        variant=args.allocator,
        binds=tuple(args.bind or [DEFAULT_BIND]),
        sleep_ms=args.sleep_ms,
        python_malloc=args.python_malloc,
        workers=args.workers,
        offload_threads=args.offload_threads,
        max_body_bytes=args.max_body_bytes,
        ready_file=args.ready_file,
        access_log=args.access_log,
        public=args.public,
        debug_endpoints=args.debug_endpoints,
        app=args.app,
        app_dir=args.app_dir,
        trace_python=args.trace_python,
    )
    return serve(options, args.argv)


def parse_bind(bind: str) -> tuple[str, int]:
    host, sep, port = bind.rpartition(":")
    if not sep or not host:
        raise UserError(f"--bind wants HOST:PORT, got {bind!r}.")
    host = host.strip("[]")
    try:
        return host, validate.port("--bind", port)
    except UserError:
        raise UserError(f"--bind {bind!r} has no valid port number.") from None


def check_exposure(options: ServeOptions) -> None:
    """The service is built to waste memory and shows allocator internals: loopback only,
    unless the user says --public (and then /debug/* only with --debug-endpoints)."""
    from stair_stepper.load.client import is_loopback

    exposed = [b for b in options.binds if not is_loopback(parse_bind(b)[0])]
    if exposed and not options.public:
        raise UserError(
            f"--bind {exposed[0]} is not a loopback address; this service wastes memory on "
            "purpose and has unauthenticated /debug endpoints, so it serves other machines "
            "only with --public."
        )
    if options.debug_endpoints and not options.public:
        raise UserError("--debug-endpoints goes with --public (on loopback they are always on).")


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        shown = f"[{host}]:{port}" if family == socket.AF_INET6 else f"{host}:{port}"
        if exc.errno == errno.EADDRINUSE:
            raise UserError(f"port {port} on {host} is already in use ({shown}).") from None
        raise UserError(f"cannot listen on {shown}: {exc.strerror}.") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def bind_sockets(binds: tuple[str, ...]) -> list[socket.socket]:
    """Listening sockets for the binds; ``localhost`` means both 127.0.0.1 and ::1.

    drill's default base URL is http://localhost:3000, and localhost may resolve
    to either address first, so both must answer. ::1 is skipped only when the
    machine has no IPv6 at all.
    """
    sockets: list[socket.socket] = []
    try:
        for bind in binds:
            host, port = parse_bind(bind)
            if host != "localhost":
                sockets.append(_listen(host, port))
                continue
            first = _listen("127.0.0.1", port)
            sockets.append(first)
            if socket.has_ipv6:
                try:
                    sockets.append(_listen("::1", first.getsockname()[1]))
                except UserError as exc:
                    if "already in use" in str(exc):
                        raise
                    log.warning("no IPv6 loopback here; serving localhost on 127.0.0.1 only")
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if sock.family == socket.AF_INET6 else f"http://{host}:{port}"


def _widget_settings(options: ServeOptions):
    """The widget app's settings (SLEEP_MS & co. from the environment, checked, flags first);
    None for a user's --app, whose environment is its own business."""
    if options.app:
        return None
    from stair_stepper.service.app import (
        Settings,  # the widget app's module, never imported for a user's app
    )

    env = Settings.from_env()  # validates SLEEP_MS & co. from the environment
    return Settings(
        sleep_ms=env.sleep_ms if options.sleep_ms is None else options.sleep_ms,
        offload_threads=(
            env.offload_threads if options.offload_threads is None else options.offload_threads
        ),
        max_body_bytes=(
            env.max_body_bytes if options.max_body_bytes is None else options.max_body_bytes
        ),
    )


def serve(options: ServeOptions, argv: list[str]) -> int:
    """Entry point of ``stair-stepper serve``; ``argv`` is re-used for the re-exec."""
    from stair_stepper.allocators import settings as variant_settings

    var = variant_settings.resolve(options.variant)
    check_exposure(options)
    settings = _widget_settings(options)
    if options.workers < 1:
        raise UserError("--workers must be at least 1.")
    if os.environ.get(REEXEC_MARKER) != var.name:
        if options.app:  # one clear sentence here if the application cannot be loaded
            service.load_app(options.app, options.app_dir)
        probe = variant_settings.checked(var, options.python_malloc)
        env = allocators.server_env(var, options.python_malloc)
        env.update(variant_settings.for_child(var, probe))
        if "trim_every" in var.strategy:
            env[service.ENV_TRIM_EVERY] = str(var.strategy["trim_every"])
        env.pop(service.ENV_TRACE_PYTHON, None)
        if options.trace_python:
            env[service.ENV_TRACE_PYTHON] = "1"
        for name in (service.ENV_APP, service.ENV_APP_DIR):
            env.pop(name, None)
        if settings is not None:
            env.update(settings.to_env())
        else:
            env[service.ENV_APP] = options.app or ""
            env[service.ENV_APP_DIR] = str(Path(options.app_dir or os.getcwd()).resolve())
        env[service.ENV_VARIANT] = var.name
        env[service.ENV_DEBUG] = "0" if options.public and not options.debug_endpoints else "1"
        env[REEXEC_MARKER] = var.name
        python = var.strategy.get("python")  # the variant's interpreter (None: ours)
        command, env = selfexec.python_command("stair_stepper", argv, env, interpreter=python)
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(command[0], command, env)
    return _serve_here(var, settings, options)


def _prove_allocator(var: allocators.Variant) -> str:
    from stair_stepper.allocators import probe

    provider = probe.malloc_provider()
    live = allocators.identify_path(provider)
    if live != var.allocator.name:
        raise UserError(
            f"asked for {var.allocator.name} but malloc is served by {provider}; "
            "refusing to run under a wrong label."
        )
    return provider


def served_app():
    """What a server process serves, behind the endpoints middleware: the user's --app
    (named in the environment, so that spawned workers find it too) or our widget app."""
    spec = os.environ.get(service.ENV_APP)
    endpoints = service.endpoints_from_env(spec or "stair_stepper.service.app")
    if spec:
        app = service.load_app(spec, os.environ.get(service.ENV_APP_DIR) or None)
        return service.wrapped(app, endpoints)
    from stair_stepper.service.app import (
        create_app,  # only here: a user's app process never imports Quart for us
    )

    return service.wrapped(create_app(endpoints=endpoints), endpoints)


def trace_python_if_asked() -> None:
    """tracemalloc from here on, when serve was given --trace-python (a worker starts its own)."""
    if os.environ.get(service.ENV_TRACE_PYTHON) == "1":
        import tracemalloc

        tracemalloc.start()


def worker_app():
    """A Hypercorn worker's app: the same service, and the worker dies with its parent."""
    selfexec.die_with_parent()
    trace_python_if_asked()
    return served_app()


def _serve_here(var: allocators.Variant, settings, options: ServeOptions) -> int:
    trace_python_if_asked()
    from hypercorn.config import Config

    provider = _prove_allocator(var)
    sockets = bind_sockets(options.binds)
    urls = [url_of(s) for s in sockets]
    config = Config()
    config.bind = [f"fd://{s.fileno()}" for s in sockets]
    config.workers = var.strategy.get("workers", options.workers)
    config.max_requests = var.strategy.get("max_requests")  # Hypercorn restarts the worker
    config.backlog = 2048
    config.keep_alive_timeout = 75
    config.graceful_timeout = 2
    config.accesslog = "-" if options.access_log else None
    config.errorlog = "-"
    config.loglevel = "WARNING"
    info = {
        "pid": os.getpid(),
        "urls": urls,
        "variant": var.name,
        "allocator": var.allocator.name,
        "malloc_provider": provider,
        "python_malloc": os.environ.get("PYTHONMALLOC") or "pymalloc",
        "sleep_ms": settings.sleep_ms if settings else None,
        "offload_threads": settings.offload_threads if settings else None,
        "workers": config.workers,
        "max_requests": config.max_requests,
        "app": options.app or "stair_stepper.service.app",
    }
    what = options.app or f"the widget app, SLEEP_MS={settings.sleep_ms}"
    print(
        f"stair-stepper: serving {var.name} ({provider}) on {', '.join(urls)}, "
        f"pid {info['pid']}, {what}",
        file=sys.stderr,
        flush=True,
    )
    if options.public:
        debug = "on (--debug-endpoints)" if options.debug_endpoints else "off"
        print(
            f"stair-stepper: --public: reachable from other machines; /debug/* endpoints {debug}",
            file=sys.stderr,
            flush=True,
        )
    if options.ready_file:
        from stair_stepper.files import write_json

        write_json(Path(options.ready_file), info)
    if config.workers == 1 and config.max_requests is None:
        from hypercorn.asyncio import serve as hypercorn_serve

        asyncio.run(hypercorn_serve(served_app(), config))
    else:
        from hypercorn.run import run

        # Workers are spawned processes: they rebuild the app from the environment; the master
        # starts a new one when a worker stops after max_requests.
        config.application_path = "stair_stepper.service.serve:worker_app()"
        return run(config)
    return 0

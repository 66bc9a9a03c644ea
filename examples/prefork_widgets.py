"""The widget service as a prefork WSGI app (standard library only), for gunicorn.

The same wasteful ``POST /widgets`` as the lab's own service (parse the JSON body, deep-copy
its payload, serialise the copy, and hold all three across a slow downstream call of
``SLEEP_MS`` milliseconds, default 450), so the default workload (``benchmark.yml``) runs
against it unchanged; ``GET /healthz`` answers at once. Served the way most Python services
run in production: a gunicorn master forking its workers.

    stair-stepper experiment --command "gunicorn --workers 2 --worker-class gthread \\
        --threads 16 --bind {host}:{port} --chdir examples prefork_widgets:application" \\
        --health-path /healthz --variant "jemalloc+bg+remedy=jemalloc \\
        MALLOC_CONF=background_thread:true post_fork=background_thread"
"""

import copy
import json
import os
import time
import uuid

SLEEP_S = int(os.environ.get("SLEEP_MS", "450")) / 1000


def _reply(start_response, status: str, document: dict) -> list[bytes]:
    data = json.dumps(document).encode()
    start_response(
        status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
    )
    return [data]


def application(environ, start_response):
    method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "")
    if method == "GET" and path == "/healthz":
        return _reply(start_response, "200 OK", {"status": "ok", "pid": os.getpid()})
    if method != "POST" or path != "/widgets":
        return _reply(start_response, "404 Not Found", {"error": "try POST /widgets"})
    try:
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        parsed = json.loads(body)
        duplicate = copy.deepcopy(parsed["payload"])
    except (ValueError, KeyError, TypeError, RecursionError):
        return _reply(start_response, "400 Bad Request", {"error": 'send {"payload": …}'})
    encoded = json.dumps(duplicate, separators=(",", ":")).encode()
    time.sleep(SLEEP_S)  # the slow call: body, parsed, copy and bytes all held meanwhile
    size = len(encoded)
    del body, parsed, duplicate, encoded
    return _reply(start_response, "201 Created", {"id": str(uuid.uuid4()), "size": size})

"""A small WSGI service of the kind stair-stepper is for (standard library only).

The same work as ``asgi_app.py`` in the synchronous style: ``POST /reports`` builds,
serialises and holds a report across a slow downstream call (a blocking sleep, as a
synchronous database driver would block); ``GET /ping`` answers at once. Any WSGI server
runs it, e.g. ``python -m wsgiref.simple_server``-style servers, gunicorn, or Hypercorn.

    stair-stepper experiment --app examples.wsgi_app:application --benchmark examples/wsgi.yml
"""

import json
import time


def _reply(start_response, status: str, document: dict) -> list[bytes]:
    data = json.dumps(document).encode()
    start_response(
        status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
    )
    return [data]


def application(environ, start_response):
    method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "")
    if method == "GET" and path == "/ping":
        return _reply(start_response, "200 OK", {"ok": True})
    if method != "POST" or path != "/reports":
        return _reply(start_response, "404 Not Found", {"error": "try POST /reports or GET /ping"})
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        asked = json.loads(environ["wsgi.input"].read(length))
        rows, width = int(asked["rows"]), int(asked["width"])
    except (ValueError, KeyError, TypeError):
        return _reply(start_response, "400 Bad Request", {"error": 'send {"rows": N, "width": N}'})
    report = [{"row": i, "text": f"{i:08d}" * (width // 8 + 1)} for i in range(rows)]
    encoded = json.dumps(report)
    time.sleep(int(asked.get("wait_ms", 100)) / 1000)  # report and text held meanwhile
    return _reply(start_response, "201 Created", {"rows": len(report), "bytes": len(encoded)})

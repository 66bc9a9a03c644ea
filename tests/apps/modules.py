"""An ASGI and a WSGI app that answer ``GET /modules`` with the modules their process has
imported: what the lab itself brought into a user's server."""

import json
import sys


def _names() -> bytes:
    return json.dumps(sorted(sys.modules)).encode()


async def asgi(scope, receive, send):
    if scope["type"] != "http":
        return
    body = _names()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})


def wsgi(environ, start_response):
    body = _names()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]

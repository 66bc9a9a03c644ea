"""A small ASGI service of the kind stair-stepper is for (standard library only).

``POST /reports`` builds a report of ``rows`` rows ``width`` characters wide from the
request, serialises it, and holds both across a slow downstream call (``wait_ms``), as a
real handler holds its data while it awaits a database. ``GET /ping`` answers at once.

    stair-stepper experiment --app examples.asgi_app:app --benchmark examples/asgi.yml
"""

import asyncio
import json


async def _body(receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def _reply(send, status: int, document: dict) -> None:
    data = json.dumps(document).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(data))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


async def app(scope, receive, send) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    method, path = scope["method"], scope["path"]
    if method == "GET" and path == "/ping":
        await _reply(send, 200, {"ok": True})
    elif method == "POST" and path == "/reports":
        try:
            asked = json.loads(await _body(receive))
            rows, width = int(asked["rows"]), int(asked["width"])
        except (ValueError, KeyError, TypeError):
            await _reply(send, 400, {"error": 'send {"rows": N, "width": N, "wait_ms": N}'})
            return
        report = [{"row": i, "text": f"{i:08d}" * (width // 8 + 1)} for i in range(rows)]
        encoded = json.dumps(report)
        await asyncio.sleep(int(asked.get("wait_ms", 100)) / 1000)  # report and text held
        await _reply(send, 201, {"rows": len(report), "bytes": len(encoded)})
    else:
        await _reply(send, 404, {"error": "try POST /reports or GET /ping"})

"""An ASGI app that keeps every request body it is sent: a real leak, for the diagnosis."""

kept = []


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    kept.append(bytearray(body))  # never freed: live bytes grow with every request
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": b'{"kept": %d}' % len(kept)})

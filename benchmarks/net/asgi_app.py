"""benchmarks/net/asgi_app.py — the minimal ASGI app uvicorn serves in the HTTP benchmark.

Same answer as servers.py's HTTP server: 200, text/plain, "Hello, world!". Run by run.py as
    python -m uvicorn asgi_app:app --app-dir benchmarks/net --http httptools --loop ...
"""

BODY = b"Hello, world!"
HEADERS = [(b"content-type", b"text/plain"), (b"content-length", str(len(BODY)).encode())]


async def app(scope, receive, send):
    if scope["type"] != "http":  # run with --lifespan off; nothing else is expected
        return
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})

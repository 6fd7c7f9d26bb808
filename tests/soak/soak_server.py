"""tests/soak/soak_server.py — the server under soak: a real web application, one process.

    python tests/soak/soak_server.py --loop pyloop --framework aiohttp --port 8080

Serves, on the loop named by --loop (pyloop by default; asyncio and uvloop to compare), with
--framework aiohttp (an aiohttp web.Application, default) or uvicorn (uvicorn's httptools
protocol serving an ASGI application), the same routes:
  GET  /            a small JSON document (the request path wrk drives)
  POST /echo        the request body back (the churn client's uploads)
  GET  /stream      a body of 16 chunks of 4 KiB (the churn client reads some, then leaves)
  GET  /_soak/stats after gc.collect(): open descriptors (/proc/self/fd), gc object count
                    (len(gc.get_objects())), RSS (VmRSS), the requests handled and the
                    connections accepted so far, the tasks alive, the errors the loop
                    reported; as JSON, answered with Connection: close
The connections are counted where the framework's protocol is made for each accepted
connection: aiohttp's protocol factory (AppRunner.server) served with loop.create_server, and
a subclass of uvicorn's HttpToolsProtocol passed as uvicorn's http protocol class.

--leak fd|object|memory makes GET / leak on purpose (a descriptor every 10^4 requests, a gc
object every 100, 64 bytes of RSS every request): run_soak.py --leak checks that its bounds
catch each. Prints "READY <port>" once listening. An error the loop reports (its exception
handler) is counted and printed on stderr; the soak fails on any.
"""

import argparse
import asyncio
import gc
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(HERE)), "benchmarks"))
import loops  # noqa: E402  (benchmarks/loops.py: how each loop is made)

PAYLOAD = {"message": "Hello, world!", "items": list(range(8))}
CHUNK = b"x" * 4096
CHUNKS = 16
LEAK_EVERY = {"fd": 10_000, "object": 100, "memory": 1}  # requests per thing leaked


class Counters:
    """What the server counts, and what --leak keeps."""

    def __init__(self, leak=None):
        self.requests = 0
        self.connections = 0
        self.loop_errors = 0
        self.leak = leak
        self.kept = []

    def hello(self):
        """Count a GET /, leaking what --leak asks for."""
        self.requests += 1
        every = LEAK_EVERY.get(self.leak)
        if every and self.requests % every == 0:
            if self.leak == "fd":
                self.kept.append(os.open("/dev/null", os.O_RDONLY))
            elif self.leak == "object":
                self.kept.append([self.requests])  # a list: always tracked by gc
            else:
                self.kept.append(bytes(64))  # not tracked by gc: RSS only

    def figures(self):
        # Everything of the traffic before this request is gone or garbage by now; collect
        # it so the count is what stays alive, then measure.
        for _ in range(3):
            gc.collect()
        return {"fds": len(os.listdir("/proc/self/fd")) - 1,  # minus the listing's own
                "gc_objects": len(gc.get_objects()), "rss_kib": rss_kib(),
                "requests": self.requests, "connections": self.connections,
                "tasks": len(asyncio.all_tasks()), "loop_errors": self.loop_errors}


def rss_kib():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


# --- aiohttp ---------------------------------------------------------------------------------

def aiohttp_app(counters):
    from aiohttp import web

    async def hello(request):
        counters.hello()
        return web.json_response(PAYLOAD)

    async def echo(request):
        counters.requests += 1
        return web.Response(body=await request.read(), content_type="application/octet-stream")

    async def stream(request):
        counters.requests += 1
        response = web.StreamResponse()
        await response.prepare(request)
        for _ in range(CHUNKS):
            await response.write(CHUNK)
        await response.write_eof()
        return response

    async def stats(request):
        return web.Response(text=json.dumps(counters.figures()),
                            content_type="application/json", headers={"Connection": "close"})

    app = web.Application()
    app.router.add_get("/", hello)
    app.router.add_post("/echo", echo)
    app.router.add_get("/stream", stream)
    app.router.add_get("/_soak/stats", stats)
    return app


async def serve_aiohttp(host, port, counters):
    from aiohttp import web
    runner = web.AppRunner(aiohttp_app(counters), access_log=None, handle_signals=False)
    await runner.setup()

    def protocol():  # aiohttp's own protocol factory, counted
        counters.connections += 1
        return runner.server()

    server = await asyncio.get_running_loop().create_server(protocol, host, port, backlog=1024)
    print(f"READY {server.sockets[0].getsockname()[1]}", flush=True)
    try:
        await asyncio.Event().wait()  # until SIGTERM ends the process
    finally:
        server.close()
        await runner.cleanup()


# --- uvicorn ---------------------------------------------------------------------------------

def asgi_app(counters):
    json_body = json.dumps(PAYLOAD).encode()

    async def respond(send, body, content_type, extra=()):
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", content_type),
                                (b"content-length", str(len(body)).encode()), *extra]})
        await send({"type": "http.response.body", "body": body})

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        if path == "/" and method == "GET":
            counters.hello()
            await respond(send, json_body, b"application/json")
        elif path == "/echo" and method == "POST":
            counters.requests += 1
            body, more = b"", True
            while more:
                message = await receive()
                body += message.get("body", b"")
                more = message.get("more_body", False)
            await respond(send, body, b"application/octet-stream")
        elif path == "/stream" and method == "GET":
            counters.requests += 1
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"application/octet-stream")]})
            for _ in range(CHUNKS):
                await send({"type": "http.response.body", "body": CHUNK, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        elif path == "/_soak/stats":
            await respond(send, json.dumps(counters.figures()).encode(), b"application/json",
                          [(b"connection", b"close")])
        else:
            await respond(send, b"not found", b"text/plain")

    return app


async def serve_uvicorn(host, port, counters):
    import uvicorn
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class CountedProtocol(HttpToolsProtocol):  # uvicorn's own protocol, counted
        def __init__(self, *args, **kwargs):
            counters.connections += 1
            super().__init__(*args, **kwargs)

    config = uvicorn.Config(asgi_app(counters), host=host, port=port, http=CountedProtocol,
                            ws="none", lifespan="off", access_log=False, log_level="warning",
                            backlog=1024)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            await task  # its error, if it stopped before serving
            raise RuntimeError("uvicorn stopped before serving")
        await asyncio.sleep(0.01)
    print(f"READY {server.servers[0].sockets[0].getsockname()[1]}", flush=True)
    await task


async def serve(framework, host, port, counters):
    loop = asyncio.get_running_loop()

    def on_error(loop, context):
        counters.loop_errors += 1
        loop.default_exception_handler(context)

    loop.set_exception_handler(on_error)
    await (serve_uvicorn if framework == "uvicorn" else serve_aiohttp)(host, port, counters)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--loop", default="pyloop", choices=("asyncio", "uvloop", "pyloop"))
    parser.add_argument("--framework", default="aiohttp", choices=("aiohttp", "uvicorn"))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--leak", choices=tuple(LEAK_EVERY),
                        help="leak on purpose (to check the soak's bounds)")
    args = parser.parse_args()
    counters = Counters(args.leak)
    with asyncio.Runner(loop_factory=loops.factory(args.loop)) as runner:
        runner.run(serve(args.framework, args.host, args.port, counters))


if __name__ == "__main__":
    main()

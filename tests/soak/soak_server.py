"""tests/soak/soak_server.py — the server under soak: a real aiohttp application, one process.

    python tests/soak/soak_server.py --loop pyloop --port 8080

Serves, on the loop named by --loop (pyloop by default; asyncio and uvloop to compare):
  GET  /            a small JSON document (the request path wrk drives)
  POST /echo        the request body back (the churn client's uploads)
  GET  /stream      a chunked body of 16 chunks (the churn client reads some, then leaves)
  GET  /_soak/stats after gc.collect(): open descriptors (/proc/self/fd), gc object count
                    (len(gc.get_objects())), RSS (VmRSS), the requests and connections served
                    so far, the tasks alive; as JSON

--leak fd|object|memory makes GET / leak on purpose (a descriptor every 10^4 requests, a gc
object every 100, 64 bytes of RSS every request): run_soak.py --leak checks that its bounds
catch each. Prints "READY <port>" once listening. An error the loop reports (its exception handler) is
counted and printed on stderr, and /_soak/stats reports the count: the soak fails on any.
"""

import argparse
import asyncio
import gc
import json
import os
import sys

from aiohttp import web

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(HERE)), "benchmarks"))
import loops  # noqa: E402  (benchmarks/loops.py: how each loop is made)

PAYLOAD = {"message": "Hello, world!", "items": list(range(8))}
CHUNK = b"x" * 4096


class Counters:
    def __init__(self):
        self.requests = 0
        self.connections = 0
        self.loop_errors = 0


def fd_count():
    return len(os.listdir("/proc/self/fd")) - 1  # the listing's own descriptor


def rss_kib():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


LEAK_EVERY = {"fd": 10_000, "object": 100, "memory": 1}  # requests per thing leaked


def make_app(counters, leak=None):
    kept = []  # what --leak leaks
    every = LEAK_EVERY.get(leak, 0)

    async def hello(request):
        counters.requests += 1
        if every and counters.requests % every == 0:
            if leak == "fd":
                kept.append(os.open("/dev/null", os.O_RDONLY))
            elif leak == "object":
                kept.append([counters.requests])  # a list: always tracked by gc
            else:
                kept.append(bytes(64))  # not tracked by gc: RSS only
        return web.json_response(PAYLOAD)

    async def echo(request):
        counters.requests += 1
        return web.Response(body=await request.read(), content_type="application/octet-stream")

    async def stream(request):
        counters.requests += 1
        response = web.StreamResponse()
        await response.prepare(request)
        for _ in range(16):
            await response.write(CHUNK)
        await response.write_eof()
        return response

    async def stats(request):
        # Everything of the traffic before this request is gone or garbage by now; collect
        # it so the count is what stays alive, then measure.
        for _ in range(3):
            gc.collect()
        body = {"fds": fd_count(), "gc_objects": len(gc.get_objects()), "rss_kib": rss_kib(),
                "requests": counters.requests, "connections": counters.connections,
                "tasks": len(asyncio.all_tasks()), "loop_errors": counters.loop_errors}
        return web.Response(text=json.dumps(body), content_type="application/json",
                            headers={"Connection": "close"})

    app = web.Application()
    app.router.add_get("/", hello)
    app.router.add_post("/echo", echo)
    app.router.add_get("/stream", stream)
    app.router.add_get("/_soak/stats", stats)
    return app


async def serve(host, port, counters, leak):
    loop = asyncio.get_running_loop()

    def on_error(loop, context):
        counters.loop_errors += 1
        loop.default_exception_handler(context)

    loop.set_exception_handler(on_error)
    runner = web.AppRunner(make_app(counters, leak), access_log=None, handle_signals=False)
    await runner.setup()

    def protocol():  # aiohttp's own protocol factory, counted
        counters.connections += 1
        return runner.server()

    server = await loop.create_server(protocol, host, port, backlog=1024)
    print(f"READY {server.sockets[0].getsockname()[1]}", flush=True)
    try:
        await asyncio.Event().wait()  # until SIGTERM ends the process
    finally:
        server.close()
        await runner.cleanup()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--loop", default="pyloop", choices=("asyncio", "uvloop", "pyloop"))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--leak", choices=tuple(LEAK_EVERY),
                        help="leak on purpose (to check the soak's bounds)")
    args = parser.parse_args()
    counters = Counters()
    with asyncio.Runner(loop_factory=loops.factory(args.loop)) as runner:
        runner.run(serve(args.host, args.port, counters, args.leak))


if __name__ == "__main__":
    main()

"""benchmarks/net/aiohttp_app.py — the aiohttp server of run_web.py: one JSON endpoint.

    python benchmarks/net/aiohttp_app.py --loop pyloop --port 8000

An aiohttp web.Application whose GET / handler returns web.json_response, served by
web.AppRunner and web.TCPSite (access log off, as a benchmark server runs it) on the loop
named by --loop (benchmarks/loops.py: asyncio, uvloop, rloop, pyloop, pyloop-base). Serves
until killed; an error the loop reports ends the process with status 3 and its traceback, as
servers.py does, so a broken loop fails the run instead of posting a number.
"""

import argparse
import os
import sys

from aiohttp import web

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)
import loops  # noqa: E402  (benchmarks/loops.py)
from servers import serve_forever  # noqa: E402  (READY, then serve; errors are fatal)


async def hello(request):
    return web.json_response({"message": "Hello, world!"})


async def start(host, port):
    app = web.Application()
    app.router.add_get("/", hello)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, host, port, backlog=1024).start()
    return port


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--loop", required=True, choices=loops.KNOWN)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    serve_forever(args.loop, lambda loop: start(args.host, args.port))


if __name__ == "__main__":
    main()

# tests/python/test_lib_uvicorn.py: uvicorn serving a Starlette app and a FastAPI app on asyncio's
# loop and on PyLoop, with httpx.AsyncClient (and the websockets client) over loopback TCP and the
# same assertions: JSON, path and query parameters, a request body failing validation (422), a
# streamed response, a WebSocket endpoint and lifespan startup/shutdown.
#
# uvicorn is started four ways: in-process on the `loop` fixture's loop (uvicorn.Server.serve),
# through asyncio.run(..., loop_factory=...) on 3.12+, by Server.run with the loop named by
# import string (uvicorn.run's path), and as `python -m uvicorn --loop <factory>` in a
# subprocess; /whoami proves which loop the server really runs.

import asyncio
import signal
import sys
import threading
import time

import pytest

import web_apps
from net_helpers import run
from server_procs import python_m, serving

uvicorn = pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
from websockets.asyncio.client import connect  # noqa: E402

LONG = 15.0  # bound for one whole server session on a loaded 2-core machine
APP_NAMES = sorted(web_apps.APPS)


async def talk(base, expected_loop):
    """Every route of web_apps once, through one httpx.AsyncClient; returns what came back."""
    got = {}
    async with httpx.AsyncClient(base_url=base) as client:
        r = await client.get("/json")
        got["json"] = r.status_code, r.json()
        r = await client.get("/items/42", params={"q": "abc"})
        got["item"] = r.status_code, r.json()
        r = await client.post("/items", json={"name": "pen", "price": 1.5})
        got["post"] = r.status_code, r.json()
        r = await client.post("/items", json={"name": "pen"})
        got["invalid"] = r.status_code
        size, chunks = 0, 0
        async with client.stream("GET", "/stream") as r:
            async for chunk in r.aiter_bytes():
                size += len(chunk)
                chunks += 1
        got["stream"] = r.status_code, size, chunks > 1
        r = await client.get("/state")
        got["state"] = r.json()
        r = await client.get("/whoami")
        got["loop"] = r.json()["loop"] == expected_loop
    async with connect(base.replace("http", "ws", 1) + "/ws") as ws:
        replies = []
        for word in ("alpha", "beta"):
            await ws.send(word)
            replies.append(await ws.recv())
        got["ws"] = replies
    return got


EXPECTED = {
    "json": (200, {"hello": "world"}),
    "item": (200, {"item_id": 42, "q": "abc"}),
    "post": (200, {"name": "pen", "price": 1.5}),
    "invalid": 422,
    "stream": (200, web_apps.STREAM_CHUNKS * web_apps.STREAM_CHUNK, True),
    "state": {"started": True},
    "loop": True,
    "ws": ["ahpla", "ateb"],
}


async def serve_in_process(app, http="auto", ws="auto"):
    """Serve `app` with uvicorn.Server on the running loop, talk to it, stop it."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="on", log_level="warning",
                            http=http, ws=ws)
    server = uvicorn.Server(config)
    serving_task = asyncio.ensure_future(server.serve())
    try:
        while not server.started:
            if serving_task.done():  # startup failed: raise its error
                serving_task.result()
                raise AssertionError("uvicorn stopped before it started")
            await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        loop = asyncio.get_running_loop()
        return await talk(f"http://127.0.0.1:{port}", web_apps.loop_name(loop))
    finally:
        server.should_exit = True
        await serving_task


# uvicorn's protocol implementations: "auto" is httptools and websockets (sans-I/O); h11 and
# wsproto pace their reading differently.
IMPLEMENTATIONS = {"auto": ("auto", "auto"), "h11-wsproto": ("h11", "wsproto")}


@pytest.mark.parametrize("impl", sorted(IMPLEMENTATIONS))
@pytest.mark.parametrize("app_name", APP_NAMES)
def test_uvicorn_in_process_on_the_loop(loop, app_name, impl):
    events = []
    app = web_apps.APPS[app_name](events)
    got = run(loop, serve_in_process(app, *IMPLEMENTATIONS[impl]), timeout=LONG)
    assert got == EXPECTED
    assert events == ["startup", "shutdown"]


@pytest.mark.skipif(sys.version_info < (3, 12), reason="asyncio.run takes loop_factory on 3.12+")
@pytest.mark.parametrize("app_name", APP_NAMES)
def test_uvicorn_through_asyncio_run_with_loop_factory(loop_factory, app_name):
    events = []

    async def main():
        async with asyncio.timeout(LONG):
            return await serve_in_process(web_apps.APPS[app_name](events))

    assert asyncio.run(main(), loop_factory=loop_factory) == EXPECTED
    assert events == ["startup", "shutdown"]


@pytest.mark.parametrize("app_name", APP_NAMES)
def test_uvicorn_server_run_with_loop_import_string(loop, loop_factory, app_name):
    # uvicorn.run(app, loop=...) in code: Server.run makes its loop with the named factory. It
    # runs in a thread here (where uvicorn installs no signal handlers); the client runs on
    # the fixture's loop, of the same kind.
    events = []
    config = uvicorn.Config(web_apps.APPS[app_name](events), host="127.0.0.1", port=0,
                            lifespan="on", log_level="warning", loop=loop_factory.spec)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn")
    thread.start()
    try:
        deadline = time.monotonic() + LONG
        while not server.started and thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert server.started, "uvicorn did not start"
        port = server.servers[0].sockets[0].getsockname()[1]
        got = run(loop, talk(f"http://127.0.0.1:{port}", web_apps.loop_name(loop)), timeout=LONG)
    finally:
        server.should_exit = True
        thread.join(LONG)
    assert not thread.is_alive()
    assert got == EXPECTED
    assert events == ["startup", "shutdown"]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("app_name", APP_NAMES)
def test_uvicorn_command_line_with_loop_option(loop, loop_factory, app_name):
    expected_loop = web_apps.loop_name(loop)  # the fixture's loop is loop_factory's
    argv = python_m("uvicorn", f"web_apps:{app_name}_app", "--host", "127.0.0.1",
                    "--port", "0", "--lifespan", "on", "--loop", loop_factory.spec)
    with serving(argv) as server:
        port = server.port()
        server.wait_for("lifespan startup")
        got = run(loop, talk(f"http://127.0.0.1:{port}", expected_loop), timeout=LONG)
        code = server.stop()
    assert got == EXPECTED, server.output
    # A graceful stop: uvicorn exits 0, or re-raises the SIGTERM it handled (newer versions).
    assert code in (0, -signal.SIGTERM), server.output
    server.wait_for("lifespan shutdown", timeout=0)

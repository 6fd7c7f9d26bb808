"""tests/python/test_aiohttp_roundtrip.py — a real server and client: aiohttp on both loops.

An aiohttp web application serves JSON, a streamed body and a WebSocket echo; an aiohttp
client session talks to it over loopback with keep-alive. Everything runs on the loop under
test, so this exercises TCP servers and connections, streams, flow control, timers and
task machinery the way a production service does.
"""

import asyncio

import pytest

aiohttp = pytest.importorskip("aiohttp")
from aiohttp import web  # noqa: E402


def make_app() -> web.Application:
    async def hello(request):
        return web.json_response({"hello": request.query.get("name", "world")})

    async def upload(request):
        body = await request.read()
        return web.json_response({"size": len(body), "sum": sum(body) % 65521})

    async def stream(request):
        response = web.StreamResponse()
        await response.prepare(request)
        for i in range(20):
            await response.write(bytes([i]) * 4096)
        await response.write_eof()
        return response

    async def ws_echo(request):
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for message in ws:
            if message.type == aiohttp.WSMsgType.TEXT:
                await ws.send_str(message.data.upper())
        return ws

    app = web.Application()
    app.router.add_get("/hello", hello)
    app.router.add_post("/upload", upload)
    app.router.add_get("/stream", stream)
    app.router.add_get("/ws", ws_echo)
    return app


async def exercise() -> dict:
    runner = web.AppRunner(make_app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    base = f"http://127.0.0.1:{port}"
    results = {}
    try:
        async with aiohttp.ClientSession() as session:
            replies = []
            for i in range(20):  # keep-alive: one connection, many requests
                async with session.get(f"{base}/hello", params={"name": f"n{i}"}) as r:
                    replies.append((r.status, (await r.json())["hello"]))
            results["hello"] = replies
            payload = bytes(range(256)) * 1024  # 256 KiB request body
            async with session.post(f"{base}/upload", data=payload) as r:
                results["upload"] = await r.json()
            async with session.get(f"{base}/stream") as r:
                chunks = bytearray()
                async for chunk in r.content.iter_chunked(8192):
                    chunks += chunk
                results["stream"] = (len(chunks), chunks[:1], chunks[-1:])
            async with session.ws_connect(f"{base}/ws") as ws:
                echoed = []
                for word in ("alpha", "beta", "gamma"):
                    await ws.send_str(word)
                    echoed.append((await ws.receive()).data)
                await ws.close()
                results["ws"] = echoed
    finally:
        await runner.cleanup()
    return results


def test_aiohttp_server_and_client_exchange_requests(loop):
    results = loop.run_until_complete(asyncio.wait_for(exercise(), 20))
    assert results["hello"] == [(200, f"n{i}") for i in range(20)]
    payload = bytes(range(256)) * 1024
    assert results["upload"] == {"size": len(payload), "sum": sum(payload) % 65521}
    assert results["stream"] == (20 * 4096, b"\x00", b"\x13")
    assert results["ws"] == ["ALPHA", "BETA", "GAMMA"]

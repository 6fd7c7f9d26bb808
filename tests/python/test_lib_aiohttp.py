# tests/python/test_lib_aiohttp.py: aiohttp's server and client doing real work over loopback on
# asyncio's loop and on PyLoop, with the same assertions: keep-alive requests, streamed and
# chunked bodies in both directions, a file response (the loop's sendfile path), WebSockets
# (text, binary, ping/pong, close codes), hundreds of concurrent requests through one
# ClientSession, client timeouts and cancellation, and a server shut down under open
# connections. aiohttp drives TCP servers, flow control, timers and task cancellation the way a
# production service does.

import asyncio
import hashlib

import pytest

from net_helpers import run

aiohttp = pytest.importorskip("aiohttp")
from aiohttp import web  # noqa: E402

LONG = 10.0  # bound for the bulk cases on a loaded 2-core machine
BIG = 8 * 1024 * 1024  # bytes of the large streamed bodies


def pattern(size):
    """`size` bytes of a pattern whose corruption or reordering a digest catches."""
    block = bytes(range(256)) * 256  # 64 KiB
    return (block * (size // len(block) + 1))[:size]


def make_app(tmp_path=None):
    async def hello(request):
        return web.json_response({"hello": request.query.get("name", "world")})

    async def upload(request):
        # Read the body as it arrives (chunked or with a length), never whole.
        digest, size = hashlib.sha256(), 0
        async for chunk in request.content.iter_any():
            digest.update(chunk)
            size += len(chunk)
        return web.json_response({"size": size, "sha256": digest.hexdigest(),
                                  "chunked": request.headers.get("Transfer-Encoding")})

    async def stream(request):
        size = int(request.query.get("size", 20 * 4096))
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        body = pattern(size)
        for i in range(0, size, 65536):
            await response.write(body[i:i + 65536])
        await response.write_eof()
        return response

    async def slow(request):
        await asyncio.sleep(float(request.query.get("delay", "5")))
        return web.Response(text="late")

    async def ws_echo(request):
        ws = web.WebSocketResponse(max_msg_size=BIG * 2)
        await ws.prepare(request)
        async for message in ws:
            if message.type == aiohttp.WSMsgType.TEXT:
                if message.data == "close please":
                    await ws.close(code=4001, message=b"asked to")
                    break
                await ws.send_str(message.data.upper())
            elif message.type == aiohttp.WSMsgType.BINARY:
                await ws.send_bytes(message.data[::-1])
        return ws

    app = web.Application(client_max_size=BIG * 2)
    app.router.add_get("/hello", hello)
    app.router.add_post("/upload", upload)
    app.router.add_get("/stream", stream)
    app.router.add_get("/slow", slow)
    app.router.add_get("/ws", ws_echo)
    if tmp_path is not None:
        async def file(request):
            return web.FileResponse(tmp_path / "data.bin")

        app.router.add_get("/file", file)
    return app


class Served:
    """An aiohttp application on a loopback port of the running loop (async context manager)."""

    def __init__(self, app, shutdown_timeout=0.5):
        self.runner = web.AppRunner(app, shutdown_timeout=shutdown_timeout)
        self.base = None  # "http://127.0.0.1:<port>" once started

    async def __aenter__(self):
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.base = f"http://127.0.0.1:{self.runner.addresses[0][1]}"
        return self

    async def __aexit__(self, *exc_info):
        await self.runner.cleanup()


def test_keepalive_json_upload_stream_and_websocket(loop):
    async def main():
        results = {}
        async with Served(make_app()) as srv, aiohttp.ClientSession() as session:
            replies = []
            for i in range(20):  # keep-alive: one connection, many requests
                async with session.get(f"{srv.base}/hello", params={"name": f"n{i}"}) as r:
                    replies.append((r.status, (await r.json())["hello"]))
            results["hello"] = replies
            payload = bytes(range(256)) * 1024  # 256 KiB request body with a length
            async with session.post(f"{srv.base}/upload", data=payload) as r:
                results["upload"] = await r.json()
            async with session.get(f"{srv.base}/stream") as r:
                chunks = bytearray()
                async for chunk in r.content.iter_chunked(8192):
                    chunks += chunk
                results["stream"] = len(chunks), bytes(chunks) == pattern(20 * 4096)
            async with session.ws_connect(f"{srv.base}/ws") as ws:
                echoed = []
                for word in ("alpha", "beta", "gamma"):
                    await ws.send_str(word)
                    echoed.append((await ws.receive()).data)
                results["ws"] = echoed
        return results

    results = run(loop, main(), timeout=LONG)
    assert results["hello"] == [(200, f"n{i}") for i in range(20)]
    payload = bytes(range(256)) * 1024
    assert results["upload"] == {"size": len(payload), "chunked": None,
                                 "sha256": hashlib.sha256(payload).hexdigest()}
    assert results["stream"] == (20 * 4096, True)
    assert results["ws"] == ["ALPHA", "BETA", "GAMMA"]


def test_large_chunked_request_and_response_bodies(loop):
    async def main():
        async with Served(make_app()) as srv, aiohttp.ClientSession() as session:
            async def body():  # an async generator body goes out chunked
                data = pattern(BIG)
                for i in range(0, BIG, 100_000):
                    yield data[i:i + 100_000]
                    if i % 1_000_000 == 0:
                        await asyncio.sleep(0)

            async with session.post(f"{srv.base}/upload", data=body()) as r:
                uploaded = await r.json()
            digest, size = hashlib.sha256(), 0
            async with session.get(f"{srv.base}/stream", params={"size": str(BIG)}) as r:
                encoding = r.headers.get("Transfer-Encoding")
                async for chunk in r.content.iter_any():
                    digest.update(chunk)
                    size += len(chunk)
            return uploaded, (encoding, size, digest.hexdigest())

    uploaded, streamed = run(loop, main(), timeout=LONG)
    expected = hashlib.sha256(pattern(BIG)).hexdigest()
    assert uploaded == {"size": BIG, "sha256": expected, "chunked": "chunked"}
    assert streamed == ("chunked", BIG, expected)


def test_file_response_whole_and_ranged(loop, tmp_path, monkeypatch):
    data = pattern(3 * 1024 * 1024 + 17)
    (tmp_path / "data.bin").write_bytes(data)

    # aiohttp serves files with loop.sendfile(transport, ...); over a plain socket both loops
    # take the native sendfile, never the read-and-write fallback.
    def no_fallback(*args):
        raise AssertionError("loop.sendfile fell back to reads and writes")

    monkeypatch.setattr(type(loop), "_sendfile_fallback", no_fallback)

    async def main():
        async with Served(make_app(tmp_path)) as srv, aiohttp.ClientSession() as session:
            async with session.get(f"{srv.base}/file") as r:
                whole = r.status, int(r.headers["Content-Length"]), await r.read()
            headers = {"Range": "bytes=1000000-1999999"}
            async with session.get(f"{srv.base}/file", headers=headers) as r:
                ranged = r.status, await r.read()
            return whole, ranged

    whole, ranged = run(loop, main(), timeout=LONG)
    assert whole == (200, len(data), data)
    assert ranged == (206, data[1000000:2000000])


def test_websocket_binary_ping_pong_and_close_code(loop):
    async def main():
        async with Served(make_app()) as srv, aiohttp.ClientSession() as session:
            big = pattern(BIG // 2)
            async with session.ws_connect(f"{srv.base}/ws", max_msg_size=BIG,
                                          autoping=False) as ws:
                await ws.send_bytes(b"\x00\x01\x02")
                small = (await ws.receive()).data
                await ws.send_bytes(big)
                large = (await ws.receive()).data == big[::-1]
                await ws.ping(b"are you there")
                pong = await ws.receive()
                await ws.send_str("close please")
                closing = await ws.receive()
                await ws.close()
                return (small, large, pong.type, pong.data, closing.type, closing.data,
                        closing.extra, ws.close_code)

    got = run(loop, main(), timeout=LONG)
    assert got == (b"\x02\x01\x00", True, aiohttp.WSMsgType.PONG, b"are you there",
                   aiohttp.WSMsgType.CLOSE, 4001, "asked to", 4001)


def test_hundreds_of_concurrent_requests_through_one_session(loop):
    async def main():
        async with Served(make_app()) as srv:
            connector = aiohttp.TCPConnector(limit=64)
            async with aiohttp.ClientSession(connector=connector) as session:
                async def one(i):
                    async with session.get(f"{srv.base}/hello", params={"name": str(i)}) as r:
                        return r.status, (await r.json())["hello"]

                return await asyncio.gather(*(one(i) for i in range(400)))

    assert run(loop, main(), timeout=LONG) == [(200, str(i)) for i in range(400)]


def test_client_timeout_and_cancelled_request_leave_the_session_usable(loop):
    async def main():
        async with Served(make_app()) as srv, aiohttp.ClientSession() as session:
            timeout = aiohttp.ClientTimeout(total=0.2)
            with pytest.raises(asyncio.TimeoutError):
                async with session.get(f"{srv.base}/slow", timeout=timeout) as r:
                    await r.read()
            request = asyncio.ensure_future(session.get(f"{srv.base}/slow"))
            await asyncio.sleep(0.1)
            request.cancel()
            with pytest.raises(asyncio.CancelledError):
                await request
            async with session.get(f"{srv.base}/slow", params={"delay": "0.01"}) as r:
                return r.status, await r.text()

    assert run(loop, main(), timeout=LONG) == (200, "late")


def test_server_shutdown_with_open_connections(loop):
    async def main():
        srv = Served(make_app(), shutdown_timeout=0.5)
        await srv.__aenter__()
        session = aiohttp.ClientSession()
        try:
            # An idle keep-alive connection and a request the server is still handling.
            async with session.get(f"{srv.base}/hello") as r:
                await r.read()
            pending = asyncio.ensure_future(session.get(f"{srv.base}/slow"))
            await asyncio.sleep(0.1)
            started = asyncio.get_running_loop().time()
            await srv.runner.cleanup()
            took = asyncio.get_running_loop().time() - started
            with pytest.raises(aiohttp.ClientError):
                await pending
            with pytest.raises(aiohttp.ClientConnectionError):
                await session.get(f"{srv.base}/hello")
            return took
        finally:
            await session.close()

    took = run(loop, main(), timeout=LONG)
    assert took < 3.0  # the slow handler was cut after shutdown_timeout, not awaited for 5 s

# tests/python/test_lib_websockets.py: the websockets library's asyncio server and client on
# asyncio's loop and on PyLoop, with the same assertions: echo of text and binary messages,
# large messages in fragments, ping/pong, close codes and reasons, many clients at once.

import asyncio

import pytest

from net_helpers import run

websockets = pytest.importorskip("websockets")
from websockets.asyncio.client import connect  # noqa: E402
from websockets.asyncio.server import serve  # noqa: E402
from websockets.exceptions import ConnectionClosed  # noqa: E402

LONG = 10.0  # bound for the large and many-client cases on a loaded 2-core machine


async def echo(ws):
    async for message in ws:
        if message == "close please":
            await ws.close(code=4001, reason="asked to")
            return
        await ws.send(message)


async def started_server():
    server = await serve(echo, "127.0.0.1", 0, max_size=2**24)
    port = next(iter(server.sockets)).getsockname()[1]
    return server, f"ws://127.0.0.1:{port}"


def test_text_and_binary_echo(loop):
    async def main():
        server, url = await started_server()
        async with server:
            async with connect(url) as ws:
                await ws.send("hello")
                text = await ws.recv()
                await ws.send(b"\x00\x01binary")
                data = await ws.recv()
        return text, data

    assert run(loop, main()) == ("hello", b"\x00\x01binary")


def test_large_message_in_fragments(loop):
    async def main():
        server, url = await started_server()
        payload = bytes(range(256)) * 16384  # 4 MiB
        async with server:
            async with connect(url, max_size=2**24) as ws:
                await ws.send([payload[i:i + 65536] for i in range(0, len(payload), 65536)])
                got = await ws.recv()
        return got == payload

    assert run(loop, main(), timeout=LONG)


def test_ping_pong(loop):
    async def main():
        server, url = await started_server()
        async with server:
            async with connect(url) as ws:
                pong = await ws.ping(b"are you there")
                latency = await pong
        return latency >= 0

    assert run(loop, main())


def test_close_code_and_reason(loop):
    async def main():
        server, url = await started_server()
        async with server:
            async with connect(url) as ws:
                await ws.send("close please")
                with pytest.raises(ConnectionClosed):
                    await ws.recv()
                return ws.close_code, ws.close_reason

    assert run(loop, main()) == (4001, "asked to")


def test_many_clients_at_once(loop):
    async def main():
        server, url = await started_server()

        async def client(n):
            async with connect(url) as ws:
                for i in range(20):
                    await ws.send(f"{n}:{i}")
                    assert await ws.recv() == f"{n}:{i}"
            return n

        async with server:
            done = await asyncio.gather(*(client(n) for n in range(50)))
        return sorted(done)

    assert run(loop, main(), timeout=LONG) == list(range(50))

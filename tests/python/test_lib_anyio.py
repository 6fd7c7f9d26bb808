# tests/python/test_lib_anyio.py: anyio (its asyncio backend) doing real work on asyncio's loop
# and on PyLoop, with the same assertions: task groups, cancel scopes, memory streams, TCP and
# UDP sockets, worker threads and child processes. anyio reaches into asyncio more than most
# libraries (task cancellation counting, the running loop's socket and subprocess methods),
# so it checks breadth that the asyncio-level tests do not.

import sys
import threading

import pytest

anyio = pytest.importorskip("anyio")


def run(loop_factory, fn):
    return anyio.run(fn, backend="asyncio", backend_options={"loop_factory": loop_factory})


def test_task_group_and_cancel_scopes(loop_factory):
    async def main():
        done = []

        async def worker(n):
            await anyio.sleep(0.01 * n)
            done.append(n)

        async with anyio.create_task_group() as tg:
            for n in (3, 1, 2):
                tg.start_soon(worker, n)
        with anyio.move_on_after(0.02) as scope:
            await anyio.sleep(10)
        with pytest.raises(TimeoutError):
            with anyio.fail_after(0.01):
                await anyio.sleep(10)
        return done, scope.cancelled_caught

    assert run(loop_factory, main) == ([1, 2, 3], True)


def test_an_error_in_a_task_group_cancels_its_siblings(loop_factory):
    async def main():
        cancelled = []

        async def sibling():
            try:
                await anyio.sleep(10)
            except anyio.get_cancelled_exc_class():
                cancelled.append(True)
                raise

        async def failing():
            await anyio.sleep(0.01)
            raise ValueError("boom")

        with pytest.raises(BaseException) as info:
            async with anyio.create_task_group() as tg:
                tg.start_soon(sibling)
                tg.start_soon(failing)
        return cancelled, info.value

    cancelled, error = run(loop_factory, main)
    assert cancelled == [True]
    leaves = error.exceptions if isinstance(error, BaseExceptionGroup) else (error,)
    assert [type(e) for e in leaves] == [ValueError]


def test_memory_object_stream(loop_factory):
    async def main():
        send, receive = anyio.create_memory_object_stream(max_buffer_size=2)
        got = []

        async def produce():
            async with send:
                for i in range(100):
                    await send.send(i)

        async with anyio.create_task_group() as tg:
            tg.start_soon(produce)
            async with receive:
                async for item in receive:
                    got.append(item)
        return got

    assert run(loop_factory, main) == list(range(100))


def test_tcp_echo(loop_factory):
    async def main():
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
        port = listener.extra(anyio.abc.SocketAttribute.local_port)

        async def echo(stream):
            async with stream:
                async for chunk in stream:
                    await stream.send(chunk)

        async with anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, echo)
            async with await anyio.connect_tcp("127.0.0.1", port) as client:
                payload = bytes(range(256)) * 400
                await client.send(payload)
                got = b""
                while len(got) < len(payload):
                    got += await client.receive()
            tg.cancel_scope.cancel()
        await listener.aclose()
        return got == payload

    assert run(loop_factory, main)


def test_udp_round_trip(loop_factory):
    async def main():
        async with await anyio.create_udp_socket(local_host="127.0.0.1") as server:
            port = server.extra(anyio.abc.SocketAttribute.local_port)
            async with await anyio.create_connected_udp_socket("127.0.0.1", port) as client:
                await client.send(b"ping")
                data, (host, _) = await server.receive()
                return data, host

    assert run(loop_factory, main) == (b"ping", "127.0.0.1")


def test_to_thread(loop_factory):
    async def main():
        loop_thread = threading.get_ident()
        worker_thread = await anyio.to_thread.run_sync(threading.get_ident)
        return loop_thread != worker_thread

    assert run(loop_factory, main)


def test_child_process(loop_factory):
    async def main():
        result = await anyio.run_process(
            [sys.executable, "-c", "import sys; sys.stdout.write(sys.stdin.read().upper())"],
            input=b"through a child")
        async with await anyio.open_process(["cat"]) as process:
            await process.stdin.send(b"cat me")
            echoed = await process.stdout.receive()
            await process.stdin.aclose()
            code = await process.wait()
        return result.stdout, result.returncode, echoed, code

    assert run(loop_factory, main) == (b"THROUGH A CHILD", 0, b"cat me", 0)

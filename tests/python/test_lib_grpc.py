# tests/python/test_lib_grpc.py: grpcio's asyncio API (grpc.aio) on asyncio's loop and on PyLoop,
# with the same assertions: a server and a channel over loopback, the four kinds of call (unary,
# server streaming, client streaming, bidirectional), a deadline that expires, and calls
# cancelled by the client and by the client's task. The service is defined without generated
# code: generic handlers with bytes in and bytes out.
#
# grpc.aio drives gRPC's C core from the running loop: the core's completion queue is polled
# on a thread of grpcio's own that wakes the loop through a socket watched with add_reader
# (grpcio's cygrpc/aio/completion_queue.pyx.pxi), so the loop must support add_reader,
# call_soon_threadsafe and run_in_executor as asyncio's does.

import asyncio
import gc
import time

import grpc
import grpc.aio
import pytest

SERVICE = "pyloop.test.Echo"


def identity(data):
    return data


class EchoService:
    """The four call shapes, plus a slow call to expire and cancel."""

    def __init__(self):
        self.cancelled = None  # set when the server sees a call cancelled

    async def unary(self, request, context):
        if request == b"fail":
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "asked to fail")
        return b"echo:" + request

    async def server_stream(self, request, context):
        count = int(request)
        for i in range(count):
            yield f"item {i}".encode()
            if i % 100 == 0:
                await asyncio.sleep(0)

    async def client_stream(self, request_iterator, context):
        total = 0
        async for chunk in request_iterator:
            total += len(chunk)
        return str(total).encode()

    async def bidi(self, request_iterator, context):
        async for message in request_iterator:
            yield message.upper()

    def blocking(self, request, context):
        # A plain function: grpc.aio runs it in the loop's default executor.
        time.sleep(0.01)
        context.set_trailing_metadata((("handled-by", "thread"),))
        return request[::-1]

    def blocking_stream(self, request, context):
        # A plain generator: grpc.aio iterates it on an executor thread and hands each item
        # to the loop with run_coroutine_threadsafe.
        for i in range(int(request)):
            yield f"t{i}".encode()

    def blocking_sum(self, request_iterator, context):
        # A plain function reading a request stream: each request comes from the loop through
        # run_coroutine_threadsafe, waited for on the executor thread.
        return str(sum(int(r) for r in request_iterator)).encode()

    async def slow(self, request, context):
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        return b"too late"

    def handler(self):
        h = grpc
        methods = {
            "Unary": h.unary_unary_rpc_method_handler(self.unary, identity, identity),
            "ServerStream": h.unary_stream_rpc_method_handler(
                self.server_stream, identity, identity),
            "ClientStream": h.stream_unary_rpc_method_handler(
                self.client_stream, identity, identity),
            "Bidi": h.stream_stream_rpc_method_handler(self.bidi, identity, identity),
            "Blocking": h.unary_unary_rpc_method_handler(self.blocking, identity, identity),
            "BlockingStream": h.unary_stream_rpc_method_handler(
                self.blocking_stream, identity, identity),
            "BlockingSum": h.stream_unary_rpc_method_handler(
                self.blocking_sum, identity, identity),
            "Slow": h.unary_unary_rpc_method_handler(self.slow, identity, identity),
        }
        return grpc.method_handlers_generic_handler(SERVICE, methods)


def run_with_server(loop, body):
    """Run body(channel, service) against a grpc.aio server on a free loopback port."""

    async def main():
        service = EchoService()
        service.cancelled = asyncio.Event()
        server = grpc.aio.server()
        server.add_generic_rpc_handlers((service.handler(),))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                return await body(channel, service)
        finally:
            await server.stop(grace=None)

    return loop.run_until_complete(main())


def method(channel, kind, name):
    factory = getattr(channel, kind)
    return factory(f"/{SERVICE}/{name}", request_serializer=identity,
                   response_deserializer=identity)


def test_unary_calls(loop):
    async def body(channel, service):
        unary = method(channel, "unary_unary", "Unary")
        assert await unary(b"hello") == b"echo:hello"
        big = bytes(range(256)) * 4096  # 1 MiB, many frames
        assert await unary(big) == b"echo:" + big
        replies = await asyncio.gather(*(unary(str(i).encode()) for i in range(200)))
        assert replies == [f"echo:{i}".encode() for i in range(200)]
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await unary(b"fail")
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert info.value.details() == "asked to fail"
        missing = method(channel, "unary_unary", "Missing")
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await missing(b"")
        assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED

    run_with_server(loop, body)


def test_server_streaming(loop):
    async def body(channel, service):
        stream = method(channel, "unary_stream", "ServerStream")
        got = [m async for m in stream(b"1000")]
        assert got == [f"item {i}".encode() for i in range(1000)]
        call = stream(b"3")
        assert [await call.read() for _ in range(3)] == [b"item 0", b"item 1", b"item 2"]
        assert await call.read() is grpc.aio.EOF
        assert await call.code() == grpc.StatusCode.OK

    run_with_server(loop, body)


def test_client_streaming(loop):
    async def body(channel, service):
        upload = method(channel, "stream_unary", "ClientStream")

        async def chunks():
            for i in range(64):
                yield b"x" * 16384
                if i % 8 == 0:
                    await asyncio.sleep(0)

        assert await upload(chunks()) == str(64 * 16384).encode()
        call = upload()
        for size in (1, 10, 100):
            await call.write(b"y" * size)
        await call.done_writing()
        assert await call == b"111"

    run_with_server(loop, body)


def test_bidirectional_streaming(loop):
    async def body(channel, service):
        bidi = method(channel, "stream_stream", "Bidi")
        call = bidi()
        for word in (b"ping", b"pong", b"done"):
            await call.write(word)
            assert await call.read() == word.upper()
        await call.done_writing()
        assert await call.read() is grpc.aio.EOF

        async def words():
            for i in range(500):
                yield f"w{i}".encode()

        assert [m async for m in bidi(words())] == [f"W{i}".encode() for i in range(500)]

    run_with_server(loop, body)


def test_deadline_exceeded(loop):
    async def body(channel, service):
        slow = method(channel, "unary_unary", "Slow")
        started = time.monotonic()
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await slow(b"", timeout=0.2)
        assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert time.monotonic() - started < 5
        await asyncio.wait_for(service.cancelled.wait(), 5)  # the server saw it end too

    run_with_server(loop, body)


def test_cancellation(loop):
    async def body(channel, service):
        slow = method(channel, "unary_unary", "Slow")
        call = slow(b"")
        await asyncio.sleep(0.1)
        assert call.cancel() is True
        with pytest.raises(asyncio.CancelledError):
            await call
        assert call.cancelled() and await call.code() == grpc.StatusCode.CANCELLED
        await asyncio.wait_for(service.cancelled.wait(), 5)

        service.cancelled.clear()
        task = asyncio.ensure_future(slow(b""))
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.wait_for(service.cancelled.wait(), 5)
        unary = method(channel, "unary_unary", "Unary")
        assert await unary(b"after") == b"echo:after"  # the channel still works

    run_with_server(loop, body)


def test_synchronous_handler_and_metadata(loop):
    async def body(channel, service):
        blocking = method(channel, "unary_unary", "Blocking")
        call = blocking(b"abc", metadata=(("x-trace", "1"),))
        assert await call == b"cba"
        assert ("handled-by", "thread") in tuple(await call.trailing_metadata())
        replies = await asyncio.gather(*(blocking(str(i).encode()) for i in range(20)))
        assert replies == [str(i).encode()[::-1] for i in range(20)]

    run_with_server(loop, body)


def test_synchronous_streaming_handlers(loop):
    async def body(channel, service):
        stream = method(channel, "unary_stream", "BlockingStream")
        assert [m async for m in stream(b"300")] == [f"t{i}".encode() for i in range(300)]
        total = method(channel, "stream_unary", "BlockingSum")

        async def numbers():
            for i in range(200):
                yield str(i).encode()

        assert await total(numbers()) == str(sum(range(200))).encode()

    run_with_server(loop, body)


def test_graceful_stop_lets_calls_finish(loop):
    async def main():
        service = EchoService()
        service.cancelled = asyncio.Event()
        server = grpc.aio.server()
        server.add_generic_rpc_handlers((service.handler(),))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            blocking = method(channel, "unary_unary", "Blocking")
            slow = method(channel, "unary_unary", "Slow")
            assert await blocking(b"warm") == b"mraw"
            in_flight = asyncio.ensure_future(slow(b""))
            await asyncio.sleep(0.1)
            started = time.monotonic()
            await server.stop(grace=0.3)  # the slow call is cut off when the grace ends
            assert 0.2 <= time.monotonic() - started < 5
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await in_flight
            assert info.value.code() in (grpc.StatusCode.CANCELLED, grpc.StatusCode.UNAVAILABLE)
            assert await server.wait_for_termination(timeout=1) is False  # already stopped

    loop.run_until_complete(main())


def test_server_collected_while_running_shuts_down(loop):
    # grpc.aio.Server.__del__ schedules the shutdown on its loop with create_task (with
    # run_coroutine_threadsafe instead when create_task raises asyncio's debug-mode
    # "Non-thread-safe operation" error).
    async def main():
        service = EchoService()
        service.cancelled = asyncio.Event()
        server = grpc.aio.server()
        server.add_generic_rpc_handlers((service.handler(),))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            unary = method(channel, "unary_unary", "Unary")
            assert await unary(b"up") == b"echo:up"
            del server
            gc.collect()
            await asyncio.sleep(0.2)
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await unary(b"down", timeout=2)
            return info.value.code()

    assert loop.run_until_complete(main()) == grpc.StatusCode.UNAVAILABLE

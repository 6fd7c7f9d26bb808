# tests/python/test_net_streams.py: asyncio's streams (open_connection, start_server,
# open_unix_connection, start_unix_server, StreamReader, StreamWriter) running unchanged on the
# loop: reads of every kind, their errors, drain, close/wait_closed, write_eof.

import asyncio
import shutil
import socket
import struct
import tempfile

import pytest

from net_helpers import payload, run


async def echo_handler(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()
        await writer.wait_closed()


async def stop(server):
    """Close the server, then let its handler tasks and their transports finish (Python
    3.11's wait_closed() does not wait for connections)."""
    server.close()
    await server.wait_closed()
    others = asyncio.all_tasks() - {asyncio.current_task()}
    if others:
        await asyncio.wait(others, timeout=1)
    for _ in range(3):
        await asyncio.sleep(0)


@pytest.fixture
def short_dir():
    d = tempfile.mkdtemp(prefix="pl-", dir="/tmp")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_open_connection_and_start_server_echo(loop):
    async def main():
        server = await asyncio.start_server(echo_handler, "127.0.0.1", 0)
        assert isinstance(server, asyncio.AbstractServer)
        host, port = server.sockets[0].getsockname()
        reader, writer = await asyncio.open_connection(host, port)
        assert isinstance(reader, asyncio.StreamReader)
        assert isinstance(writer, asyncio.StreamWriter)
        assert writer.get_extra_info("peername") == (host, port)
        assert isinstance(writer.transport, asyncio.Transport)
        assert writer.can_write_eof()
        writer.write(b"line one\nline two\n")
        await writer.drain()
        assert await reader.readline() == b"line one\n"
        assert await reader.readexactly(4) == b"line"
        assert await reader.readuntil(b"\n") == b" two\n"
        writer.write_eof()
        assert await reader.read() == b""
        assert reader.at_eof()
        writer.close()
        assert writer.is_closing()
        await writer.wait_closed()
        await stop(server)

    run(loop, main())


def test_stream_reader_reads(loop):
    async def handler(reader, writer):
        writer.write(b"abc\r\ndefXYZghi")
        writer.write_eof()
        await writer.drain()
        await reader.read()  # wait for the client to finish
        writer.close()
        await writer.wait_closed()

    async def main():
        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        reader, writer = await asyncio.open_connection(*server.sockets[0].getsockname())
        assert await reader.readuntil(b"\r\n") == b"abc\r\n"
        assert await reader.read(3) == b"def"
        assert await reader.readuntil(b"XYZ") == b"XYZ"
        with pytest.raises(asyncio.IncompleteReadError) as info:
            await reader.readexactly(10)
        assert info.value.partial == b"ghi"
        assert info.value.expected == 10
        assert await reader.read() == b""
        assert await reader.readline() == b""
        writer.close()
        await writer.wait_closed()
        await stop(server)

    run(loop, main())


def test_readuntil_without_separator_before_eof(loop):
    async def handler(reader, writer):
        writer.write(b"no separator here")
        writer.close()
        await writer.wait_closed()

    async def main():
        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        reader, writer = await asyncio.open_connection(*server.sockets[0].getsockname())
        with pytest.raises(asyncio.IncompleteReadError) as info:
            await reader.readuntil(b"\n")
        assert info.value.partial == b"no separator here"
        writer.close()
        await writer.wait_closed()
        await stop(server)

    run(loop, main())


def test_stream_limit_overrun(loop):
    async def handler(reader, writer):
        writer.write(b"x" * 200 + b"\n")
        await writer.drain()
        await reader.read()
        writer.close()
        await writer.wait_closed()

    async def main():
        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        reader, writer = await asyncio.open_connection(
            *server.sockets[0].getsockname(), limit=64
        )
        with pytest.raises(asyncio.LimitOverrunError) as info:
            await reader.readuntil(b"\n")
        assert info.value.consumed > 64
        # the data is still there after a LimitOverrunError
        assert await reader.readexactly(201) == b"x" * 200 + b"\n"
        writer.close()
        await writer.wait_closed()
        await stop(server)

    run(loop, main())


def test_readline_over_limit_raises_value_error(loop):
    async def handler(reader, writer):
        writer.write(b"y" * 300 + b"\nrest\n")
        await writer.drain()
        await reader.read()
        writer.close()
        await writer.wait_closed()

    async def main():
        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        reader, writer = await asyncio.open_connection(
            *server.sockets[0].getsockname(), limit=64
        )
        with pytest.raises(ValueError):
            await reader.readline()
        assert await reader.readline() == b"rest\n"
        writer.close()
        await writer.wait_closed()
        await stop(server)

    run(loop, main())


def test_streams_large_echo_with_drain(loop):
    data = payload(3 << 20, seed=5)

    async def main():
        server = await asyncio.start_server(echo_handler, "127.0.0.1", 0)
        reader, writer = await asyncio.open_connection(*server.sockets[0].getsockname())

        async def send():
            for i in range(0, len(data), 256 * 1024):
                writer.write(data[i : i + 256 * 1024])
                await writer.drain()
            writer.write_eof()

        sender = asyncio.ensure_future(send())
        received = await reader.read(-1)  # until EOF: the echo handler closes after our EOF
        await sender
        assert received == data
        writer.close()
        await writer.wait_closed()
        await stop(server)

    run(loop, main())


def test_writelines_and_many_clients(loop):
    async def main():
        server = await asyncio.start_server(echo_handler, "127.0.0.1", 0)
        addr = server.sockets[0].getsockname()

        async def client(i):
            reader, writer = await asyncio.open_connection(*addr)
            writer.writelines([b"client ", b"%d" % i, b"\n"])
            await writer.drain()
            line = await reader.readline()
            writer.close()
            await writer.wait_closed()
            return line

        lines = await asyncio.gather(*(client(i) for i in range(10)))
        assert lines == [b"client %d\n" % i for i in range(10)]
        await stop(server)

    run(loop, main())


def test_server_handler_sees_client_close(loop):
    async def main():
        seen = loop.create_future()

        async def handler(reader, writer):
            data = await reader.read()
            seen.set_result((data, reader.at_eof()))
            writer.close()
            await writer.wait_closed()

        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        reader, writer = await asyncio.open_connection(*server.sockets[0].getsockname())
        writer.write(b"goodbye")
        writer.close()
        await writer.wait_closed()
        assert await seen == (b"goodbye", True)
        await stop(server)

    run(loop, main())


def test_start_server_async_with_and_serve_forever(loop):
    async def main():
        server = await asyncio.start_server(echo_handler, "127.0.0.1", 0, start_serving=False)
        async with server:
            task = asyncio.ensure_future(server.serve_forever())
            await asyncio.sleep(0)
            reader, writer = await asyncio.open_connection(*server.sockets[0].getsockname())
            writer.write(b"ok\n")
            assert await reader.readline() == b"ok\n"
            writer.close()
            await writer.wait_closed()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        assert not server.is_serving()

    run(loop, main())


def test_open_connection_with_sock(loop):
    async def main():
        server = await asyncio.start_server(echo_handler, "127.0.0.1", 0)
        sock = socket.create_connection(server.sockets[0].getsockname(), timeout=2)
        reader, writer = await asyncio.open_connection(sock=sock)
        writer.write(b"sock\n")
        assert await reader.readline() == b"sock\n"
        writer.close()
        await writer.wait_closed()
        await stop(server)

    run(loop, main())


def test_open_connection_refused(loop):
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))

    async def main():
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection(*holder.getsockname())

    try:
        run(loop, main())
    finally:
        holder.close()


def test_unix_streams(loop, short_dir):
    path = short_dir + "/s"

    async def main():
        server = await asyncio.start_unix_server(echo_handler, path)
        reader, writer = await asyncio.open_unix_connection(path)
        assert writer.get_extra_info("peername") == path
        writer.write(b"unix stream\n")
        await writer.drain()
        assert await reader.readline() == b"unix stream\n"
        writer.write_eof()
        assert await reader.read() == b""
        writer.close()
        await writer.wait_closed()
        await stop(server)

    run(loop, main())


def test_reader_read_cancelled_then_resumed(loop):
    async def main():
        server = await asyncio.start_server(echo_handler, "127.0.0.1", 0)
        reader, writer = await asyncio.open_connection(*server.sockets[0].getsockname())
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.02):
                await reader.readline()
        writer.write(b"after timeout\n")
        assert await reader.readline() == b"after timeout\n"
        writer.close()
        await writer.wait_closed()
        await stop(server)

    run(loop, main())


def test_peer_reset_reaches_stream_reader(loop):
    async def main():
        accepted = loop.create_future()
        outcome = loop.create_future()

        async def handler(reader, writer):
            accepted.set_result(writer)
            try:
                outcome.set_result(await reader.read())
            except Exception as exc:
                outcome.set_result(exc)
            writer.close()

        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        reader, writer = await asyncio.open_connection(*server.sockets[0].getsockname())
        await accepted
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.close()  # sends RST
        await writer.wait_closed()
        assert isinstance(await outcome, ConnectionResetError)
        await stop(server)

    run(loop, main())

# tests/python/test_net_unix.py: create_unix_server and create_unix_connection: the socket file
# (a stale socket file is replaced, other files are not, what close() leaves behind on each
# Python version: 3.13 added cleanup_socket), abstract names, sock=, argument errors, and the
# transport on a Unix stream socket.

import asyncio
import errno
import os
import pathlib
import shutil
import socket
import stat
import tempfile
import uuid

import pytest

from net_helpers import PY313, Echo, collapse, Recorder, nonblocking, recv_exactly, recv_until_eof, run


@pytest.fixture
def sock_dir():
    # pytest's tmp_path can exceed the 107-byte limit of a socket path; use a short directory.
    d = tempfile.mkdtemp(prefix="pl-", dir="/tmp")
    yield pathlib.Path(d)
    shutil.rmtree(d, ignore_errors=True)


def is_socket_file(path):
    try:
        return stat.S_ISSOCK(os.stat(path).st_mode)
    except FileNotFoundError:
        return False


async def unix_echo_roundtrip(loop, path, data=b"ping"):
    transport, proto = await loop.create_unix_connection(lambda: Recorder(loop), path)
    transport.write(data)
    got = await proto.wait_bytes(len(data))
    transport.close()
    assert await proto.lost is None
    return got


def test_unix_server_and_connection(loop, sock_dir):
    path = str(sock_dir / "s")

    async def main():
        server = await loop.create_unix_server(Echo, path)
        assert server.is_serving()
        assert is_socket_file(path)
        (lsock,) = server.sockets
        assert isinstance(lsock, asyncio.trsock.TransportSocket)
        assert lsock.family == socket.AF_UNIX
        assert lsock.getsockname() == path
        transport, proto = await loop.create_unix_connection(lambda: Recorder(loop), path)
        assert isinstance(transport, asyncio.Transport)
        sock = transport.get_extra_info("socket")
        assert isinstance(sock, asyncio.trsock.TransportSocket)
        assert sock.family == socket.AF_UNIX
        assert transport.get_extra_info("peername") == path
        assert transport.get_extra_info("sockname") == ""
        assert transport.can_write_eof()
        transport.write(b"hello unix")
        assert await proto.wait_bytes(10) == b"hello unix"
        transport.close()
        assert await proto.lost is None
        assert collapse(proto.events) == ["made", "data", "lost"]
        server.close()
        await server.wait_closed()

    run(loop, main())


def test_unix_server_side_extra_info(loop, sock_dir):
    path = str(sock_dir / "s")

    async def main():
        seen = loop.create_future()

        class Srv(asyncio.Protocol):
            def connection_made(self, transport):
                seen.set_result(transport)

        server = await loop.create_unix_server(Srv, path)
        client = nonblocking(socket.socket(socket.AF_UNIX))
        await loop.sock_connect(client, path)
        tr = await seen
        assert tr.get_extra_info("sockname") == path
        assert tr.get_extra_info("peername") == ""
        assert tr.get_extra_info("socket").family == socket.AF_UNIX
        tr.write(b"srv")
        assert await recv_exactly(loop, client, 3) == b"srv"
        tr.close()
        assert await recv_until_eof(loop, client) == b""
        client.close()
        server.close()
        await server.wait_closed()

    run(loop, main())


def test_unix_path_like_and_bytes(loop, sock_dir):
    async def main():
        p1 = sock_dir / "pathlike"
        server = await loop.create_unix_server(Echo, p1)  # os.PathLike
        assert await unix_echo_roundtrip(loop, p1) == b"ping"
        server.close()
        await server.wait_closed()
        p2 = os.fsencode(str(sock_dir / "bytes"))
        server = await loop.create_unix_server(Echo, p2)
        assert server.sockets[0].getsockname() == os.fsdecode(p2)  # the socket module's way
        assert await unix_echo_roundtrip(loop, p2) == b"ping"
        server.close()
        await server.wait_closed()

    run(loop, main())


def test_unix_server_replaces_stale_socket_file(loop, sock_dir):
    path = str(sock_dir / "stale")
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(path)
    stale.close()  # the file stays behind
    assert is_socket_file(path)

    async def main():
        server = await loop.create_unix_server(Echo, path)
        assert await unix_echo_roundtrip(loop, path) == b"ping"
        server.close()
        await server.wait_closed()

    run(loop, main())


def test_unix_server_replaces_live_socket_file(loop, sock_dir):
    # asyncio removes any socket file at the path, even one a live server listens on; new
    # clients then reach the new server.
    path = str(sock_dir / "live")

    async def main():
        first = await loop.create_unix_server(lambda: Recorder(loop), path)
        second = await loop.create_unix_server(Echo, path)
        assert await unix_echo_roundtrip(loop, path) == b"ping"
        for s in (first, second):
            s.close()
            await s.wait_closed()

    run(loop, main())


def test_unix_server_refuses_regular_file(loop, sock_dir):
    path = sock_dir / "regular"
    path.write_text("not a socket")

    async def main():
        with pytest.raises(OSError) as info:
            await loop.create_unix_server(Echo, str(path))
        return info.value

    exc = run(loop, main())
    assert exc.errno == errno.EADDRINUSE
    assert str(exc) == f"[Errno {errno.EADDRINUSE}] Address {str(path)!r} is already in use"
    assert path.read_text() == "not a socket"


def test_unix_server_missing_directory(loop, sock_dir):
    async def main():
        with pytest.raises(FileNotFoundError):
            await loop.create_unix_server(Echo, str(sock_dir / "nodir" / "s"))

    run(loop, main())


def test_unix_server_close_and_socket_file(loop, sock_dir):
    # Before 3.13 the socket file stays after close(); 3.13 removes it (cleanup_socket=True).
    path = str(sock_dir / "s")

    async def main():
        server = await loop.create_unix_server(Echo, path)
        server.close()
        await server.wait_closed()
        assert len(server.sockets) == 0

    run(loop, main())
    assert is_socket_file(path) is (not PY313)


@pytest.mark.skipif(not PY313, reason="cleanup_socket is new in Python 3.13")
def test_unix_server_cleanup_socket_false_keeps_file(loop, sock_dir):
    path = str(sock_dir / "s")

    async def main():
        server = await loop.create_unix_server(Echo, path, cleanup_socket=False)
        server.close()
        await server.wait_closed()

    run(loop, main())
    assert is_socket_file(path)


@pytest.mark.skipif(not PY313, reason="cleanup_socket is new in Python 3.13")
def test_unix_server_cleanup_spares_replaced_file(loop, sock_dir):
    # 3.13 only unlinks the path if it is still the file the server created (same inode).
    path = sock_dir / "s"

    async def main():
        server = await loop.create_unix_server(Echo, str(path))
        os.unlink(path)
        path.write_text("someone else's")
        server.close()
        await server.wait_closed()

    run(loop, main())
    assert path.read_text() == "someone else's"


@pytest.mark.skipif(not PY313, reason="cleanup_socket is new in Python 3.13")
def test_unix_server_cleanup_with_sock(loop, sock_dir):
    path = str(sock_dir / "s")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(path)

    async def main():
        server = await loop.create_unix_server(Echo, sock=sock)
        server.close()
        await server.wait_closed()

    run(loop, main())
    assert not os.path.exists(path)


def test_unix_abstract_socket(loop):
    name = "\0pyloop-test-" + uuid.uuid4().hex

    async def main():
        server = await loop.create_unix_server(Echo, name)
        assert server.sockets[0].getsockname() == name.encode()  # abstract names come as bytes
        assert await unix_echo_roundtrip(loop, name) == b"ping"
        server.close()
        await server.wait_closed()

    run(loop, main())


def test_unix_server_with_sock(loop, sock_dir):
    path = str(sock_dir / "s")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(path)

    async def main():
        server = await loop.create_unix_server(Echo, sock=sock)
        assert server.sockets[0].fileno() == sock.fileno()
        assert sock.gettimeout() == 0
        assert await unix_echo_roundtrip(loop, path) == b"ping"
        server.close()
        await server.wait_closed()
        assert sock.fileno() == -1

    run(loop, main())


def test_unix_server_start_serving_false(loop, sock_dir):
    path = str(sock_dir / "s")

    async def main():
        server = await loop.create_unix_server(Echo, path, start_serving=False)
        assert not server.is_serving()
        assert is_socket_file(path)  # bound already ...
        probe = nonblocking(socket.socket(socket.AF_UNIX))
        with pytest.raises(ConnectionRefusedError):  # ... but not listening
            await loop.sock_connect(probe, path)
        probe.close()
        await server.start_serving()
        assert server.is_serving()
        assert await unix_echo_roundtrip(loop, path) == b"ping"
        server.close()
        await server.wait_closed()

    run(loop, main())


def test_unix_server_argument_errors(loop, sock_dir):
    tcp = socket.socket()
    udp_unix = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    unix = socket.socket(socket.AF_UNIX)

    async def main():
        with pytest.raises(ValueError, match="path was not specified, and no sock specified"):
            await loop.create_unix_server(Echo)
        with pytest.raises(ValueError, match="path and sock can not be specified at the same"):
            await loop.create_unix_server(Echo, str(sock_dir / "x"), sock=unix)
        with pytest.raises(ValueError, match="A UNIX Domain Stream Socket was expected"):
            await loop.create_unix_server(Echo, sock=tcp)
        with pytest.raises(ValueError, match="A UNIX Domain Stream Socket was expected"):
            await loop.create_unix_server(Echo, sock=udp_unix)
        with pytest.raises(TypeError, match="ssl argument must be an SSLContext or None"):
            await loop.create_unix_server(Echo, str(sock_dir / "y"), ssl=True)

    try:
        run(loop, main())
    finally:
        for s in (tcp, udp_unix, unix):
            s.close()


def test_unix_connection_errors(loop, sock_dir):
    not_listening = socket.socket(socket.AF_UNIX)
    not_listening.bind(str(sock_dir / "bound"))
    tcp = socket.socket()
    unix = socket.socket(socket.AF_UNIX)

    async def main():
        with pytest.raises(FileNotFoundError):
            await loop.create_unix_connection(asyncio.Protocol, str(sock_dir / "missing"))
        with pytest.raises(ConnectionRefusedError):
            await loop.create_unix_connection(asyncio.Protocol, str(sock_dir / "bound"))
        with pytest.raises(ValueError, match="no path and sock were specified"):
            await loop.create_unix_connection(asyncio.Protocol)
        with pytest.raises(ValueError, match="path and sock can not be specified at the same"):
            await loop.create_unix_connection(asyncio.Protocol, str(sock_dir / "x"), sock=unix)
        with pytest.raises(ValueError, match="A UNIX Domain Stream Socket was expected"):
            await loop.create_unix_connection(asyncio.Protocol, sock=tcp)
        with pytest.raises(ValueError, match="server_hostname is only meaningful with ssl"):
            await loop.create_unix_connection(
                asyncio.Protocol, str(sock_dir / "x"), server_hostname="h"
            )

    try:
        run(loop, main())
    finally:
        for s in (not_listening, tcp, unix):
            s.close()


def test_unix_connection_with_sock(loop):
    a, b = socket.socketpair()

    async def main():
        b.setblocking(False)
        transport, proto = await loop.create_unix_connection(lambda: Recorder(loop), sock=a)
        assert a.gettimeout() == 0
        await loop.sock_sendall(b, b"pair")
        assert await proto.wait_bytes(4) == b"pair"
        transport.write_eof()
        assert await recv_until_eof(loop, b) == b""
        b.close()
        assert await proto.lost is None
        assert collapse(proto.events) == ["made", "data", "eof", "lost"]

    run(loop, main())


def test_unix_transport_large_transfer(loop, sock_dir):
    path = str(sock_dir / "s")
    size = 4 << 20
    data = bytes(range(256)) * (size // 256)

    async def main():
        server = await loop.create_unix_server(Echo, path)
        transport, proto = await loop.create_unix_connection(lambda: Recorder(loop), path)
        transport.write(data)
        assert await proto.wait_bytes(size) == data
        transport.close()
        await proto.lost
        server.close()
        await server.wait_closed()

    run(loop, main())

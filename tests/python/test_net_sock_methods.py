# tests/python/test_net_sock_methods.py: the low-level socket coroutines: sock_recv,
# sock_recv_into, sock_recvfrom, sock_recvfrom_into, sock_sendall, sock_sendto, sock_connect,
# sock_accept, sock_sendfile; the debug-mode check for blocking sockets; cancellation leaving the
# socket usable and unregistered.

import asyncio
import errno
import io
import socket
import struct

import pytest

from net_helpers import (
    STEP,
    listener,
    nonblocking,
    payload,
    recv_exactly,
    refused_address,
    requires_ipv6,
    run,
    tcp_socketpair,
)


@pytest.fixture
def tcp_pair():
    a, b = tcp_socketpair()
    yield a, b
    a.close()
    b.close()


@pytest.fixture
def udp_pair():
    a = nonblocking(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
    b = nonblocking(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
    a.bind(("127.0.0.1", 0))
    b.bind(("127.0.0.1", 0))
    yield a, b
    a.close()
    b.close()


# -- sock_recv / sock_recv_into -------------------------------------------------------------------


def test_sock_recv_waits_for_data(loop, tcp_pair):
    a, b = tcp_pair

    async def main():
        task = asyncio.ensure_future(loop.sock_recv(a, 100))
        await asyncio.sleep(0.01)
        assert not task.done(), "sock_recv returned with no data sent"
        b.send(b"hello")
        return await task

    assert run(loop, main()) == b"hello"


def test_sock_recv_returns_at_most_n_bytes(loop, tcp_pair):
    a, b = tcp_pair

    async def main():
        b.send(b"0123456789")
        first = await loop.sock_recv(a, 4)
        rest = await recv_exactly(loop, a, 6)
        return first, rest

    assert run(loop, main()) == (b"0123", b"456789")


def test_sock_recv_returns_empty_bytes_at_eof(loop, tcp_pair):
    a, b = tcp_pair

    async def main():
        b.shutdown(socket.SHUT_WR)
        return await loop.sock_recv(a, 100)

    assert run(loop, main()) == b""


def test_sock_recv_into_fills_the_buffer(loop, tcp_pair):
    a, b = tcp_pair

    async def main():
        buf = bytearray(16)
        task = asyncio.ensure_future(loop.sock_recv_into(a, buf))
        await asyncio.sleep(0.01)
        assert not task.done()
        b.send(b"abcdef")
        n = await task
        return n, bytes(buf)

    n, buf = run(loop, main())
    assert n == 6
    assert buf == b"abcdef" + bytes(10)


def test_sock_recv_into_memoryview_slice(loop, tcp_pair):
    a, b = tcp_pair

    async def main():
        buf = bytearray(b"." * 10)
        b.send(b"XYZXYZXYZ")
        n = await loop.sock_recv_into(a, memoryview(buf)[2:5])
        return n, bytes(buf)

    assert run(loop, main()) == (3, b"..XYZ.....")


def test_sock_recv_raises_on_reset(loop, tcp_pair):
    a, b = tcp_pair

    async def main():
        task = asyncio.ensure_future(loop.sock_recv(a, 100))
        await asyncio.sleep(0.01)
        b.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        b.close()
        with pytest.raises(ConnectionResetError):
            await task

    run(loop, main())


# -- UDP: sock_recvfrom / sock_recvfrom_into / sock_sendto ----------------------------------------


def test_sock_sendto_and_recvfrom(loop, udp_pair):
    a, b = udp_pair

    async def main():
        task = asyncio.ensure_future(loop.sock_recvfrom(b, 100))
        await asyncio.sleep(0.01)
        assert not task.done()
        sent = await loop.sock_sendto(a, b"datagram", b.getsockname())
        assert sent == 8
        return await task

    data, addr = run(loop, main())
    assert data == b"datagram"
    assert addr == a.getsockname()


def test_sock_recvfrom_truncates_to_bufsize(loop, udp_pair):
    a, b = udp_pair

    async def main():
        a.sendto(b"0123456789", b.getsockname())
        data, _ = await loop.sock_recvfrom(b, 4)
        return data

    assert run(loop, main()) == b"0123"


def test_sock_recvfrom_into(loop, udp_pair):
    a, b = udp_pair

    async def main():
        buf = bytearray(32)
        task = asyncio.ensure_future(loop.sock_recvfrom_into(b, buf))
        await asyncio.sleep(0.01)
        assert not task.done()
        a.sendto(b"into", b.getsockname())
        n, addr = await task
        return n, addr, bytes(buf[:n])

    n, addr, data = run(loop, main())
    assert (n, data) == (4, b"into")
    assert addr == a.getsockname()


def test_sock_recvfrom_into_with_nbytes(loop, udp_pair):
    a, b = udp_pair

    async def main():
        buf = bytearray(32)
        a.sendto(b"0123456789", b.getsockname())
        n, _ = await loop.sock_recvfrom_into(b, buf, 3)
        return n, bytes(buf[:4])

    assert run(loop, main()) == (3, b"012\x00")


@requires_ipv6
def test_sock_sendto_recvfrom_ipv6(loop):
    a = nonblocking(socket.socket(socket.AF_INET6, socket.SOCK_DGRAM))
    b = nonblocking(socket.socket(socket.AF_INET6, socket.SOCK_DGRAM))
    try:
        a.bind(("::1", 0))
        b.bind(("::1", 0))

        async def main():
            await loop.sock_sendto(a, b"six", b.getsockname())
            return await loop.sock_recvfrom(b, 10)

        data, addr = run(loop, main())
        assert data == b"six"
        assert addr == a.getsockname()
        assert len(addr) == 4
    finally:
        a.close()
        b.close()


def test_sock_sendto_many_datagrams_keep_boundaries(loop, udp_pair):
    a, b = udp_pair

    async def main():
        for i in range(20):
            await loop.sock_sendto(a, b"d%02d" % i, b.getsockname())
        return [(await loop.sock_recvfrom(b, 100))[0] for _ in range(20)]

    assert run(loop, main()) == [b"d%02d" % i for i in range(20)]


# -- sock_sendall ---------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [1, 4 << 20], ids=["1B", "4MiB"])
def test_sock_sendall_delivers_everything(loop, tcp_pair, size):
    # 4 MiB is far beyond the socket buffers: sock_sendall must wait for the reader.
    a, b = tcp_pair
    data = payload(size)

    async def main():
        sender = asyncio.ensure_future(loop.sock_sendall(a, data))
        received = await recv_exactly(loop, b, size)
        assert await sender is None
        return received

    assert run(loop, main()) == data


def test_sock_sendall_accepts_memoryview_and_bytearray(loop, tcp_pair):
    a, b = tcp_pair

    async def main():
        await loop.sock_sendall(a, bytearray(b"ab"))
        await loop.sock_sendall(a, memoryview(b"xcdx")[1:3])
        return await recv_exactly(loop, b, 4)

    assert run(loop, main()) == b"abcd"


def test_sock_sendall_to_closed_peer_raises(loop, tcp_pair):
    a, b = tcp_pair
    b.close()

    async def main():
        with pytest.raises((BrokenPipeError, ConnectionResetError)):
            for _ in range(100):
                await loop.sock_sendall(a, b"x" * 65536)
                await asyncio.sleep(0.001)

    run(loop, main())


# -- sock_connect / sock_accept -------------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_sock_connect_and_accept(loop, host):
    lsock = nonblocking(listener())
    client = nonblocking(socket.socket())
    try:

        async def main():
            accept = asyncio.ensure_future(loop.sock_accept(lsock))
            await asyncio.sleep(0.01)
            assert not accept.done(), "sock_accept returned with no client"
            assert await loop.sock_connect(client, (host, lsock.getsockname()[1])) is None
            conn, addr = await accept
            with conn:
                assert conn.gettimeout() == 0, "accepted socket must be non-blocking"
                assert addr == client.getsockname()
                assert conn.getpeername() == client.getsockname()
                await loop.sock_sendall(client, b"over")
                return await recv_exactly(loop, conn, 4)

        assert run(loop, main()) == b"over"
        assert client.getpeername() == lsock.getsockname()
    finally:
        lsock.close()
        client.close()


@requires_ipv6
def test_sock_connect_and_accept_ipv6(loop):
    lsock = nonblocking(listener("::1", socket.AF_INET6))
    client = nonblocking(socket.socket(socket.AF_INET6))
    try:

        async def main():
            accept = asyncio.ensure_future(loop.sock_accept(lsock))
            await loop.sock_connect(client, ("::1", lsock.getsockname()[1]))
            conn, addr = await accept
            conn.close()
            return addr

        addr = run(loop, main())
        assert addr == client.getsockname()
        assert len(addr) == 4
    finally:
        lsock.close()
        client.close()


def test_sock_connect_refused(loop):
    holder, address = refused_address()
    client = nonblocking(socket.socket())
    try:

        async def main():
            with pytest.raises(ConnectionRefusedError) as info:
                await loop.sock_connect(client, address)
            return info.value

        exc = run(loop, main())
        assert exc.errno == errno.ECONNREFUSED
    finally:
        holder.close()
        client.close()


def test_sock_connect_unresolvable_numeric_host_is_gaierror(loop):
    client = nonblocking(socket.socket())
    try:

        async def main():
            with pytest.raises(socket.gaierror):
                await loop.sock_connect(client, ("999.1.1.1", 80))

        run(loop, main())
    finally:
        client.close()


def test_sock_connect_unix(loop, tmp_path):
    path = str(tmp_path / "s.sock")
    lsock = nonblocking(socket.socket(socket.AF_UNIX))
    lsock.bind(path)
    lsock.listen()
    client = nonblocking(socket.socket(socket.AF_UNIX))
    try:

        async def main():
            await loop.sock_connect(client, path)
            conn, _ = await loop.sock_accept(lsock)
            with conn:
                await loop.sock_sendall(conn, b"unix")
                return await recv_exactly(loop, client, 4)

        assert run(loop, main()) == b"unix"
    finally:
        lsock.close()
        client.close()


def test_sock_accept_several_pending(loop):
    lsock = nonblocking(listener())
    clients = [socket.create_connection(lsock.getsockname(), timeout=STEP) for _ in range(3)]
    try:

        async def main():
            got = []
            for _ in range(3):
                conn, addr = await loop.sock_accept(lsock)
                conn.close()
                got.append(addr)
            return got

        assert sorted(run(loop, main())) == sorted(c.getsockname() for c in clients)
    finally:
        lsock.close()
        for c in clients:
            c.close()


# -- cancellation ---------------------------------------------------------------------------------


def test_cancelled_sock_recv_leaves_socket_usable_and_unregistered(loop, tcp_pair):
    a, b = tcp_pair

    async def main():
        task = asyncio.ensure_future(loop.sock_recv(a, 100))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0)
        # Nothing is registered for the descriptor any more ...
        assert loop.remove_reader(a) is False
        # ... data sent now is not lost: the next sock_recv gets it ...
        b.send(b"after")
        assert await loop.sock_recv(a, 100) == b"after"
        # ... and add_reader on the descriptor works.
        fut = loop.create_future()
        loop.add_reader(a, lambda: fut.done() or fut.set_result(a.recv(100)))
        b.send(b"reader")
        data = await fut
        assert loop.remove_reader(a) is True
        return data

    assert run(loop, main()) == b"reader"


def test_cancelled_sock_recv_into_leaves_buffer_untouched(loop, tcp_pair):
    a, b = tcp_pair

    async def main():
        buf = bytearray(8)
        task = asyncio.ensure_future(loop.sock_recv_into(a, buf))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        b.send(b"late")
        await asyncio.sleep(0.02)
        assert buf == bytearray(8)
        assert loop.remove_reader(a) is False
        return await loop.sock_recv(a, 100)

    assert run(loop, main()) == b"late"


def test_cancelled_sock_accept_keeps_connection_for_next_accept(loop):
    lsock = nonblocking(listener())
    client = None
    try:

        async def main():
            nonlocal client
            task = asyncio.ensure_future(loop.sock_accept(lsock))
            await asyncio.sleep(0.01)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await asyncio.sleep(0)
            assert loop.remove_reader(lsock) is False
            client = socket.create_connection(lsock.getsockname(), timeout=STEP)
            conn, addr = await loop.sock_accept(lsock)
            conn.close()
            return addr

        addr = run(loop, main())
        assert addr == client.getsockname()
    finally:
        lsock.close()
        if client is not None:
            client.close()


def test_timeout_around_sock_recv(loop, tcp_pair):
    a, b = tcp_pair

    async def main():
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.02):
                await loop.sock_recv(a, 10)
        b.send(b"ok")
        return await loop.sock_recv(a, 10)

    assert run(loop, main()) == b"ok"


# -- sock_sendfile --------------------------------------------------------------------------------


@pytest.fixture
def data_file(tmp_path):
    data = payload(300_000, seed=7)
    path = tmp_path / "data.bin"
    path.write_bytes(data)
    return path, data


def _sendfile_roundtrip(loop, tcp_pair, file, **kwargs):
    a, b = tcp_pair

    async def main():
        sent = await loop.sock_sendfile(a, file, **kwargs)
        a.shutdown(socket.SHUT_WR)
        received = bytearray()
        while True:
            chunk = await loop.sock_recv(b, 1 << 16)
            if not chunk:
                break
            received += chunk
        return sent, bytes(received)

    return run(loop, main())


@pytest.mark.parametrize("fallback", [True, False])
def test_sock_sendfile_whole_file(loop, tcp_pair, data_file, fallback):
    path, data = data_file
    with open(path, "rb") as f:
        sent, received = _sendfile_roundtrip(loop, tcp_pair, f, fallback=fallback)
        assert sent == len(data)
        assert received == data
        assert f.tell() == len(data)


@pytest.mark.parametrize(
    "offset,count", [(0, 1000), (1000, None), (12345, 100_000), (299_990, 100)]
)
def test_sock_sendfile_offset_and_count(loop, tcp_pair, data_file, offset, count):
    path, data = data_file
    expected = data[offset : offset + count] if count else data[offset:]
    with open(path, "rb") as f:
        sent, received = _sendfile_roundtrip(loop, tcp_pair, f, offset=offset, count=count)
        assert sent == len(expected)
        assert received == expected
        assert f.tell() == offset + len(expected)


def test_sock_sendfile_empty_file(loop, tcp_pair, tmp_path):
    path = tmp_path / "empty"
    path.write_bytes(b"")
    with open(path, "rb") as f:
        assert _sendfile_roundtrip(loop, tcp_pair, f) == (0, b"")


def test_sock_sendfile_non_regular_file_falls_back(loop, tcp_pair):
    # io.BytesIO has no descriptor: the native path is unavailable, the fallback sends it.
    data = payload(70_000)
    sent, received = _sendfile_roundtrip(loop, tcp_pair, io.BytesIO(data))
    assert (sent, received) == (len(data), data)


def test_sock_sendfile_non_regular_file_without_fallback(loop, tcp_pair):
    a, _ = tcp_pair

    async def main():
        with pytest.raises(asyncio.SendfileNotAvailableError):
            await loop.sock_sendfile(a, io.BytesIO(b"abc"), fallback=False)

    run(loop, main())


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        (dict(count=0), ValueError, "count must be a positive integer"),
        (dict(count=-1), ValueError, "count must be a positive integer"),
        (dict(count="1"), TypeError, "count must be a positive integer"),
        (dict(offset=-1), ValueError, "offset must be a non-negative integer"),
        (dict(offset="1"), TypeError, "offset must be a non-negative integer"),
    ],
)
def test_sock_sendfile_bad_parameters(loop, tcp_pair, data_file, kwargs, exc, match):
    a, _ = tcp_pair
    path, _ = data_file

    async def main():
        with open(path, "rb") as f:
            with pytest.raises(exc, match=match):
                await loop.sock_sendfile(a, f, **kwargs)

    run(loop, main())


def test_sock_sendfile_text_file_refused(loop, tcp_pair, data_file):
    a, _ = tcp_pair
    path, _ = data_file

    async def main():
        with open(path, "r", encoding="latin-1") as f:
            with pytest.raises(ValueError, match="binary mode"):
                await loop.sock_sendfile(a, f)

    run(loop, main())


def test_sock_sendfile_datagram_socket_refused(loop, udp_pair, data_file):
    a, _ = udp_pair
    path, _ = data_file

    async def main():
        with open(path, "rb") as f:
            with pytest.raises(ValueError, match="only SOCK_STREAM"):
                await loop.sock_sendfile(a, f)

    run(loop, main())


# -- blocking sockets in debug mode ---------------------------------------------------------------


def _blocking_calls(loop, tcp, udp, lsock, fileobj):
    return {
        "sock_recv": lambda: loop.sock_recv(tcp, 1),
        "sock_recv_into": lambda: loop.sock_recv_into(tcp, bytearray(1)),
        "sock_recvfrom": lambda: loop.sock_recvfrom(udp, 1),
        "sock_recvfrom_into": lambda: loop.sock_recvfrom_into(udp, bytearray(1)),
        "sock_sendall": lambda: loop.sock_sendall(tcp, b"x"),
        "sock_sendto": lambda: loop.sock_sendto(udp, b"x", udp.getsockname()),
        "sock_connect": lambda: loop.sock_connect(tcp, lsock.getsockname()),
        "sock_accept": lambda: loop.sock_accept(lsock),
        "sock_sendfile": lambda: loop.sock_sendfile(tcp, fileobj),
    }


BLOCKING_METHODS = [
    "sock_recv",
    "sock_recv_into",
    "sock_recvfrom",
    "sock_recvfrom_into",
    "sock_sendall",
    "sock_sendto",
    "sock_connect",
    "sock_accept",
    "sock_sendfile",
]


@pytest.mark.parametrize("timeout", [None, 1.0], ids=["blocking", "timeout"])
@pytest.mark.parametrize("method", BLOCKING_METHODS)
def test_blocking_socket_refused_in_debug_mode(loop, method, timeout, tmp_path):
    # asyncio checks `sock.gettimeout() != 0` first thing in every sock_* coroutine, in debug
    # mode only: the call itself returns an awaitable, awaiting it raises.
    tcp, peer = tcp_socketpair()
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    lsock = listener()
    path = tmp_path / "f"
    path.write_bytes(b"abc")
    f = open(path, "rb")
    try:
        for s in (tcp, udp, lsock):
            s.settimeout(timeout)
        loop.set_debug(True)
        call = _blocking_calls(loop, tcp, udp, lsock, f)[method]

        async def main():
            awaitable = call()  # must not raise yet
            with pytest.raises(ValueError, match="the socket must be non-blocking"):
                await awaitable

        run(loop, main())
    finally:
        for s in (tcp, peer, udp, lsock):
            s.close()
        f.close()


def test_blocking_check_precedes_sendfile_parameter_check(loop, tcp_pair):
    a, _ = tcp_pair
    a.setblocking(True)
    loop.set_debug(True)

    async def main():
        with pytest.raises(ValueError, match="the socket must be non-blocking"):
            await loop.sock_sendfile(a, io.BytesIO(b"x"), count=0)

    run(loop, main())


def test_nonblocking_socket_accepted_in_debug_mode(loop, tcp_pair):
    a, b = tcp_pair
    loop.set_debug(True)

    async def main():
        await loop.sock_sendall(a, b"dbg")
        return await loop.sock_recv(b, 10)

    assert run(loop, main()) == b"dbg"

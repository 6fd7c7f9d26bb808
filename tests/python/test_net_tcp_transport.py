# tests/python/test_net_tcp_transport.py: loop.create_connection (host/port, sock=, local_addr,
# happy eyeballs, errors), connect_accepted_socket, and the stream transport it returns: write,
# writelines, write_eof, close, abort, reading pause/resume, write-buffer limits, extra info,
# the protocol callback order, eof_received keeping a half-open transport, TCP_NODELAY, and
# BufferedProtocol. The peer is a plain socket driven with the loop's sock_* coroutines.

import asyncio
import errno
import socket

import pytest

from net_helpers import (
    HAS_IPV6,
    PY312,
    STEP,
    Recorder,
    collapse,
    connect_to_listener,
    listener,
    payload,
    recv_exactly,
    recv_until_eof,
    refused_address,
    requires_ipv6,
    run,
)


async def _close(transport, proto, peer=None):
    transport.close()
    if peer is not None:
        peer.close()
    return await proto.lost


# -- create_connection ----------------------------------------------------------------------------


def test_create_connection_returns_transport_and_protocol(loop):
    async def main():
        made = []

        def factory():
            p = Recorder(loop)
            made.append(p)
            return p

        transport, proto, peer = await connect_to_listener(loop, factory)
        # connection_made ran before create_connection returned, exactly once
        assert made == [proto]
        assert proto.events == ["made"]
        assert proto.transport is transport
        assert transport.get_protocol() is proto
        assert not transport.is_closing()
        assert await _close(transport, proto, peer) is None

    run(loop, main())


def test_transport_is_an_asyncio_transport(loop):
    async def main():
        transport, proto, peer = await connect_to_listener(loop, lambda: Recorder(loop))
        for cls in (
            asyncio.BaseTransport,
            asyncio.ReadTransport,
            asyncio.WriteTransport,
            asyncio.Transport,
        ):
            assert isinstance(transport, cls), cls
        assert not isinstance(transport, asyncio.DatagramTransport)
        await _close(transport, proto, peer)

    run(loop, main())


def test_extra_info(loop):
    async def main():
        transport, proto, peer = await connect_to_listener(loop, lambda: Recorder(loop))
        sock = transport.get_extra_info("socket")
        assert isinstance(sock, asyncio.trsock.TransportSocket)
        assert sock.family == socket.AF_INET
        assert sock.type == socket.SOCK_STREAM
        assert sock.fileno() >= 0
        assert sock.getsockname() == peer.getpeername()
        assert transport.get_extra_info("sockname") == peer.getpeername()
        assert transport.get_extra_info("peername") == peer.getsockname()
        assert transport.get_extra_info("no-such-key") is None
        assert transport.get_extra_info("no-such-key", "dflt") == "dflt"
        peername = transport.get_extra_info("peername")
        await _close(transport, proto, peer)
        # extra info outlives the connection
        assert transport.get_extra_info("peername") == peername

    run(loop, main())


def test_tcp_nodelay_is_set(loop):
    async def main():
        transport, proto, peer = await connect_to_listener(loop, lambda: Recorder(loop))
        sock = transport.get_extra_info("socket")
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        await _close(transport, proto, peer)

    run(loop, main())


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_create_connection_by_host_name(loop, host):
    async def main():
        with listener() as lsock:
            port = lsock.getsockname()[1]
            transport, proto = await loop.create_connection(lambda: Recorder(loop), host, port)
            peer, _ = lsock.accept()
        assert transport.get_extra_info("peername") == ("127.0.0.1", port)
        await _close(transport, proto, peer)

    run(loop, main())


def test_create_connection_port_as_string(loop):
    async def main():
        with listener() as lsock:
            port = lsock.getsockname()[1]
            transport, proto = await loop.create_connection(
                lambda: Recorder(loop), "127.0.0.1", str(port)
            )
            peer, _ = lsock.accept()
        assert transport.get_extra_info("peername")[1] == port
        await _close(transport, proto, peer)

    run(loop, main())


@requires_ipv6
def test_create_connection_ipv6(loop):
    async def main():
        with listener("::1", socket.AF_INET6) as lsock:
            port = lsock.getsockname()[1]
            transport, proto = await loop.create_connection(lambda: Recorder(loop), "::1", port)
            peer, _ = lsock.accept()
        assert transport.get_extra_info("socket").family == socket.AF_INET6
        assert transport.get_extra_info("peername")[:2] == ("::1", port)
        peer.setblocking(False)
        transport.write(b"v6")
        assert await recv_exactly(loop, peer, 2) == b"v6"
        await _close(transport, proto, peer)

    run(loop, main())


def test_create_connection_with_sock(loop):
    async def main():
        with listener() as lsock:
            sock = socket.create_connection(lsock.getsockname(), timeout=STEP)
            peer, _ = lsock.accept()
        peer.setblocking(False)
        fd = sock.fileno()
        transport, proto = await loop.create_connection(lambda: Recorder(loop), sock=sock)
        assert transport.get_extra_info("socket").fileno() == fd
        assert sock.gettimeout() == 0, "create_connection(sock=) makes the socket non-blocking"
        await loop.sock_sendall(peer, b"via sock")
        assert await proto.wait_bytes(8) == b"via sock"
        await _close(transport, proto, peer)
        assert sock.fileno() == -1, "the transport closes the socket it was given"

    run(loop, main())


def test_create_connection_with_unix_stream_sock(loop):
    # asyncio accepts any SOCK_STREAM socket here, AF_UNIX included.
    a, b = socket.socketpair()

    async def main():
        b.setblocking(False)
        transport, proto = await loop.create_connection(lambda: Recorder(loop), sock=a)
        transport.write(b"unix")
        assert await recv_exactly(loop, b, 4) == b"unix"
        await _close(transport, proto, b)

    run(loop, main())


def test_create_connection_argument_errors(loop):
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tcp = socket.socket()

    async def main():
        with pytest.raises(ValueError, match="A Stream Socket was expected"):
            await loop.create_connection(asyncio.Protocol, sock=udp)
        with pytest.raises(ValueError, match="can not be specified at the same time"):
            await loop.create_connection(asyncio.Protocol, "127.0.0.1", 80, sock=tcp)
        with pytest.raises(ValueError, match="no sock specified"):
            await loop.create_connection(asyncio.Protocol)
        with pytest.raises(ValueError, match="server_hostname is only meaningful with ssl"):
            await loop.create_connection(
                asyncio.Protocol, "127.0.0.1", 80, server_hostname="x"
            )

    try:
        run(loop, main())
    finally:
        udp.close()
        tcp.close()


def test_create_connection_refused(loop):
    holder, (host, port) = refused_address()

    async def main():
        with pytest.raises(ConnectionRefusedError) as info:
            await loop.create_connection(asyncio.Protocol, host, port)
        return info.value

    try:
        exc = run(loop, main())
    finally:
        holder.close()
    assert exc.errno == errno.ECONNREFUSED


@pytest.mark.skipif(not PY312, reason="all_errors is new in Python 3.12")
def test_create_connection_all_errors(loop):
    holder, (host, port) = refused_address()

    async def main():
        with pytest.raises(ExceptionGroup) as info:  # noqa: F821 (3.11+ builtin)
            await loop.create_connection(asyncio.Protocol, host, port, all_errors=True)
        return info.value

    try:
        group = run(loop, main())
    finally:
        holder.close()
    assert len(group.exceptions) == 1
    assert isinstance(group.exceptions[0], ConnectionRefusedError)


def test_create_connection_unresolvable_host(loop):
    async def main():
        with pytest.raises(socket.gaierror):
            await loop.create_connection(
                asyncio.Protocol, "not a host", 80, flags=socket.AI_NUMERICHOST
            )

    run(loop, main())


def test_create_connection_local_addr(loop):
    async def main():
        with listener() as lsock:
            transport, proto = await loop.create_connection(
                lambda: Recorder(loop), *lsock.getsockname(), local_addr=("127.0.0.1", 0)
            )
            peer, peer_addr = lsock.accept()
        sockname = transport.get_extra_info("sockname")
        assert sockname[0] == "127.0.0.1"
        assert sockname == peer_addr
        await _close(transport, proto, peer)

    run(loop, main())


def _can_bind(host):
    try:
        with socket.socket() as s:
            s.bind((host, 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _can_bind("127.0.0.2"), reason="127.0.0.2 is not a local address here")
def test_create_connection_local_addr_other_loopback_address(loop):
    async def main():
        with listener() as lsock:
            transport, proto = await loop.create_connection(
                lambda: Recorder(loop), *lsock.getsockname(), local_addr=("127.0.0.2", 0)
            )
            peer, peer_addr = lsock.accept()
        assert peer_addr[0] == "127.0.0.2"
        assert transport.get_extra_info("sockname") == peer_addr
        await _close(transport, proto, peer)

    run(loop, main())


def test_create_connection_local_addr_in_use(loop):
    async def main():
        with listener() as lsock, listener() as busy:
            with pytest.raises(OSError) as info:
                await loop.create_connection(
                    asyncio.Protocol, *lsock.getsockname(), local_addr=busy.getsockname()
                )
        return info.value

    exc = run(loop, main())
    assert exc.errno == errno.EADDRINUSE


@pytest.mark.parametrize(
    "kwargs",
    [dict(happy_eyeballs_delay=0.25), dict(interleave=1), dict(happy_eyeballs_delay=0, interleave=2)],
    ids=repr,
)
def test_create_connection_happy_eyeballs_to_localhost(loop, kwargs):
    async def main():
        with listener() as lsock:
            transport, proto = await loop.create_connection(
                lambda: Recorder(loop), "localhost", lsock.getsockname()[1], **kwargs
            )
            peer, _ = lsock.accept()
        peer.setblocking(False)
        transport.write(b"he")
        assert await recv_exactly(loop, peer, 2) == b"he"
        await _close(transport, proto, peer)

    run(loop, main())


def _dual_stack_name():
    """A name from the hosts database resolving to both 127.0.0.1 and ::1, or None."""
    for name in ("localhost", "ip6-localhost"):
        try:
            addrs = {i[4][0] for i in socket.getaddrinfo(name, 80, type=socket.SOCK_STREAM)}
        except OSError:
            continue
        if {"127.0.0.1", "::1"} <= addrs:
            return name
    return None


@pytest.mark.parametrize("happy_eyeballs_delay", [None, 0.05])
def test_create_connection_falls_back_to_second_address(loop, happy_eyeballs_delay):
    # The name resolves to ::1 and 127.0.0.1. Only the address that comes second in the
    # resolver's order listens; the first refuses. The connection reaches the second one,
    # with and without happy eyeballs.
    name = _dual_stack_name()
    if name is None or not HAS_IPV6:
        pytest.skip("no host name resolving to both 127.0.0.1 and ::1")
    order = [i[4][0] for i in socket.getaddrinfo(name, 80, type=socket.SOCK_STREAM)]
    second = next(a for a in order if a != order[0])
    first = order[0]
    family = socket.AF_INET6 if ":" in second else socket.AF_INET

    async def main():
        with listener(second, family) as lsock:
            port = lsock.getsockname()[1]
            with socket.socket(socket.AF_INET6 if ":" in first else socket.AF_INET) as probe:
                if probe.connect_ex((first, port)) == 0:
                    pytest.skip(f"{first} port {port} is taken")
            transport, proto = await loop.create_connection(
                lambda: Recorder(loop), name, port, happy_eyeballs_delay=happy_eyeballs_delay
            )
            peer, _ = lsock.accept()
        assert transport.get_extra_info("peername")[:2] == (second, port)
        await _close(transport, proto, peer)

    run(loop, main())


@pytest.mark.parametrize("all_errors", [False, True] if PY312 else [False])
def test_create_connection_every_address_refused(loop, all_errors):
    name = _dual_stack_name()
    if name is None or not HAS_IPV6:
        pytest.skip("no host name resolving to both 127.0.0.1 and ::1")
    holders = []
    # a port refused on both addresses
    h6, (_, port, *_) = refused_address("::1", socket.AF_INET6)
    holders.append(h6)
    try:
        h4 = socket.socket()
        holders.append(h4)
        h4.bind(("127.0.0.1", port))
    except OSError:
        for h in holders:
            h.close()
        pytest.skip("port not free on 127.0.0.1")

    async def main():
        kwargs = dict(all_errors=True) if all_errors else {}
        with pytest.raises(Exception) as info:
            await loop.create_connection(asyncio.Protocol, name, port, **kwargs)
        return info.value

    try:
        exc = run(loop, main())
    finally:
        for h in holders:
            h.close()
    if all_errors:
        assert isinstance(exc, ExceptionGroup)  # noqa: F821
        assert len(exc.exceptions) == 2
        assert all(isinstance(e, ConnectionRefusedError) for e in exc.exceptions)
    else:
        # Two errors with different messages (the addresses differ): asyncio combines them.
        assert type(exc) is OSError
        assert str(exc).startswith("Multiple exceptions: ")
        assert str(port) in str(exc)


def test_connect_accepted_socket(loop):
    async def main():
        with listener(proto=socket.IPPROTO_TCP) as lsock:
            client = socket.create_connection(lsock.getsockname(), timeout=STEP)
            accepted, _ = lsock.accept()
        client.setblocking(False)
        transport, proto = await loop.connect_accepted_socket(lambda: Recorder(loop), accepted)
        assert isinstance(transport, asyncio.Transport)
        assert transport.get_extra_info("peername") == client.getsockname()
        # asyncio sets TCP_NODELAY because the socket's proto is IPPROTO_TCP
        assert transport.get_extra_info("socket").getsockopt(
            socket.IPPROTO_TCP, socket.TCP_NODELAY
        )
        await loop.sock_sendall(client, b"ping")
        assert await proto.wait_bytes(4) == b"ping"
        transport.write(b"pong")
        assert await recv_exactly(loop, client, 4) == b"pong"
        await _close(transport, proto, client)

    run(loop, main())


def test_connect_accepted_socket_rejects_datagram_socket(loop):
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

    async def main():
        with pytest.raises(ValueError, match="A Stream Socket was expected"):
            await loop.connect_accepted_socket(asyncio.Protocol, udp)

    try:
        run(loop, main())
    finally:
        udp.close()


# -- write / writelines / write_eof ---------------------------------------------------------------


def test_write_reaches_peer(loop):
    async def main():
        transport, proto, peer = await connect_to_listener(loop, lambda: Recorder(loop))
        transport.write(b"abc")
        transport.write(bytearray(b"def"))
        transport.write(memoryview(b"xghix")[1:4])
        transport.write(b"")  # no-op
        assert await recv_exactly(loop, peer, 9) == b"abcdefghi"
        await _close(transport, proto, peer)

    run(loop, main())


def test_write_rejects_non_bytes(loop):
    async def main():
        transport, proto, peer = await connect_to_listener(loop, lambda: Recorder(loop))
        with pytest.raises(TypeError, match="data argument must be a bytes-like object"):
            transport.write("text")
        with pytest.raises(TypeError):
            transport.write(None)
        with pytest.raises(TypeError):
            transport.writelines(["text"])
        await _close(transport, proto, peer)

    run(loop, main())


@pytest.mark.parametrize("kind", ["list", "tuple", "generator"])
def test_writelines(loop, kind):
    chunks = [b"one ", bytearray(b"two "), memoryview(b"three")]
    arg = {"list": list, "tuple": tuple, "generator": lambda c: (x for x in c)}[kind](chunks)

    async def main():
        transport, proto, peer = await connect_to_listener(loop, lambda: Recorder(loop))
        transport.writelines(arg)
        transport.writelines([])
        assert await recv_exactly(loop, peer, 13) == b"one two three"
        await _close(transport, proto, peer)

    run(loop, main())


def test_many_writes_arrive_in_order(loop):
    async def main():
        transport, proto, peer = await connect_to_listener(loop, lambda: Recorder(loop))
        pieces = [payload(n, seed=n) for n in (1, 10, 1000, 100_000, 3, 500_000, 7)]
        for p in pieces:
            transport.write(p)
        expected = b"".join(pieces)
        assert await recv_exactly(loop, peer, len(expected)) == expected
        await _close(transport, proto, peer)

    run(loop, main())


def test_write_eof_half_closes(loop):
    async def main():
        transport, proto, peer = await connect_to_listener(loop, lambda: Recorder(loop))
        assert transport.can_write_eof() is True
        transport.write(b"last words")
        transport.write_eof()
        transport.write_eof()  # a second call is a no-op
        assert not transport.is_closing()
        assert await recv_until_eof(loop, peer) == b"last words"
        # the other direction still works
        await loop.sock_sendall(peer, b"reply")
        assert await proto.wait_bytes(5) == b"reply"
        with pytest.raises(RuntimeError, match="write_eof"):
            transport.write(b"more")
        peer.close()
        await proto.eof
        assert await proto.lost is None

    run(loop, main())


def test_write_eof_after_buffered_data(loop):
    # write_eof with data still buffered: the data goes out first, then the FIN.
    size = 4 << 20

    async def main():
        transport, proto, peer = await connect_to_listener(loop, lambda: Recorder(loop))
        data = payload(size)
        transport.write(data)
        assert transport.get_write_buffer_size() > 0, "expected a buffered remainder"
        transport.write_eof()
        assert await recv_until_eof(loop, peer) == data
        await _close(transport, proto, peer)

    run(loop, main())


# -- close / abort --------------------------------------------------------------------------------


def test_close_calls_connection_lost_once_later(loop):
    async def main():
        transport, proto, peer = await connect_to_listener(loop, lambda: Recorder(loop))
        transport.close()
        assert transport.is_closing()
        assert "lost" not in proto.events, "connection_lost must not run inside close()"
        transport.close()  # idempotent
        assert await proto.lost is None
        await asyncio.sleep(0.01)
        assert proto.events.count("lost") == 1
        assert await recv_until_eof(loop, peer) == b""
        assert not transport.is_reading()
        peer.close()

    run(loop, main())


def test_close_flushes_buffered_data(loop):
    size = 4 << 20

    async def main():
        transport, proto, peer = await connect_to_listener(loop, lambda: Recorder(loop))
        data = payload(size, seed=3)
        transport.write(data)
        assert transport.get_write_buffer_size() > 0
        transport.close()
        received = await recv_until_eof(loop, peer)
        assert len(received) == size and received == data
        assert await proto.lost is None
        assert transport.get_write_buffer_size() == 0
        peer.close()

    run(loop, main())


def test_abort_discards_buffer(loop):
    size = 16 << 20

    async def main():
        transport, proto, peer = await connect_to_listener(loop, lambda: Recorder(loop))
        transport.write(payload(size))
        assert transport.get_write_buffer_size() > 0
        transport.abort()
        assert transport.is_closing()
        assert transport.get_write_buffer_size() == 0
        assert await proto.lost is None
        received = 0
        try:
            while True:
                chunk = await loop.sock_recv(peer, 1 << 20)
                if not chunk:
                    break
                received += len(chunk)
        except ConnectionResetError:
            pass
        assert received < size
        peer.close()

    run(loop, main())


def test_abort_after_close_is_harmless(loop):
    async def main():
        transport, proto, peer = await connect_to_listener(loop, lambda: Recorder(loop))
        transport.close()
        transport.abort()
        assert await proto.lost is None
        transport.abort()
        transport.close()
        await asyncio.sleep(0.01)
        assert proto.events.count("lost") == 1
        peer.close()

    run(loop, main())


# -- reading: protocol callbacks, pause/resume ----------------------------------------------------


def test_protocol_callback_order(loop):
    async def main():
        transport, proto, peer = await connect_to_listener(loop, lambda: Recorder(loop))
        for i in range(5):
            await loop.sock_sendall(peer, b"chunk%d" % i)
            await asyncio.sleep(0.002)
        peer.shutdown(socket.SHUT_WR)
        assert await proto.lost is None
        assert collapse(proto.events) == ["made", "data", "eof", "lost"]
        assert bytes(proto.data) == b"".join(b"chunk%d" % i for i in range(5))
        assert transport.is_closing()
        peer.close()

    run(loop, main())


def test_eof_received_false_closes_transport(loop):
    async def main():
        transport, proto, peer = await connect_to_listener(
            loop, lambda: Recorder(loop, eof_result=False)
        )
        peer.shutdown(socket.SHUT_WR)
        await proto.eof
        assert await proto.lost is None
        assert transport.is_closing()
        assert await recv_until_eof(loop, peer) == b""
        peer.close()

    run(loop, main())


def test_eof_received_true_keeps_transport_half_open(loop):
    async def main():
        transport, proto, peer = await connect_to_listener(
            loop, lambda: Recorder(loop, eof_result=True)
        )
        await loop.sock_sendall(peer, b"question")
        peer.shutdown(socket.SHUT_WR)
        await proto.eof
        await asyncio.sleep(0.02)
        assert not transport.is_closing()
        assert "lost" not in proto.events
        transport.write(b"answer")
        transport.close()
        assert await recv_until_eof(loop, peer) == b"answer"
        assert await proto.lost is None
        assert proto.events == ["made", "data", "eof", "lost"]
        peer.close()

    run(loop, main())


def test_pause_and_resume_reading(loop):
    async def main():
        transport, proto, peer = await connect_to_listener(loop, lambda: Recorder(loop))
        assert transport.is_reading()
        transport.pause_reading()
        assert not transport.is_reading()
        transport.pause_reading()  # idempotent
        await loop.sock_sendall(peer, b"held back")
        await asyncio.sleep(0.05)
        assert proto.data == b"", "data_received called while reading was paused"
        transport.resume_reading()
        assert transport.is_reading()
        transport.resume_reading()  # idempotent
        assert await proto.wait_bytes(9) == b"held back"
        await _close(transport, proto, peer)
        assert not transport.is_reading()
        transport.pause_reading()  # no error on a closed transport
        transport.resume_reading()
        assert not transport.is_reading()

    run(loop, main())


def test_pause_reading_inside_data_received(loop):
    class PauseOnFirst(Recorder):
        def data_received(self, data):
            super().data_received(data)
            self.transport.pause_reading()

    async def main():
        transport, proto, peer = await connect_to_listener(loop, lambda: PauseOnFirst(loop))
        await loop.sock_sendall(peer, b"first")
        await proto.wait_bytes(5)
        await loop.sock_sendall(peer, b"second")
        await asyncio.sleep(0.05)
        assert proto.events.count("data") == 1 and bytes(proto.data) == b"first"
        transport.resume_reading()
        assert await proto.wait_bytes(11) == b"firstsecond"
        await _close(transport, proto, peer)

    run(loop, main())


def test_eof_delivered_after_resume(loop):
    async def main():
        transport, proto, peer = await connect_to_listener(loop, lambda: Recorder(loop))
        transport.pause_reading()
        await loop.sock_sendall(peer, b"tail")
        peer.shutdown(socket.SHUT_WR)
        await asyncio.sleep(0.03)
        assert proto.events == ["made"]
        transport.resume_reading()
        assert await proto.lost is None
        assert proto.events == ["made", "data", "eof", "lost"]
        peer.close()

    run(loop, main())


def test_set_protocol_switches_receiver(loop):
    async def main():
        transport, first, peer = await connect_to_listener(loop, lambda: Recorder(loop))
        second = Recorder(loop)
        await loop.sock_sendall(peer, b"1")
        await first.wait_bytes(1)
        transport.set_protocol(second)
        assert transport.get_protocol() is second
        await loop.sock_sendall(peer, b"2")
        assert await second.wait_bytes(1) == b"2"
        assert bytes(first.data) == b"1"
        transport.close()
        assert await second.lost is None
        assert "lost" not in first.events
        peer.close()

    run(loop, main())


# -- write-buffer limits and size -----------------------------------------------------------------


def test_write_buffer_limits(loop):
    async def main():
        transport, proto, peer = await connect_to_listener(loop, lambda: Recorder(loop))
        assert transport.get_write_buffer_limits() == (16 * 1024, 64 * 1024)
        transport.set_write_buffer_limits(high=1000)
        assert transport.get_write_buffer_limits() == (250, 1000)
        transport.set_write_buffer_limits(low=100)
        assert transport.get_write_buffer_limits() == (100, 400)
        transport.set_write_buffer_limits(high=10, low=5)
        assert transport.get_write_buffer_limits() == (5, 10)
        transport.set_write_buffer_limits(high=0)
        assert transport.get_write_buffer_limits() == (0, 0)
        transport.set_write_buffer_limits()
        assert transport.get_write_buffer_limits() == (16 * 1024, 64 * 1024)
        with pytest.raises(ValueError, match=r"high \(1\) must be >= low \(2\) must be >= 0"):
            transport.set_write_buffer_limits(high=1, low=2)
        with pytest.raises(ValueError):
            transport.set_write_buffer_limits(low=-1)
        assert transport.get_write_buffer_limits() == (16 * 1024, 64 * 1024)
        await _close(transport, proto, peer)

    run(loop, main())


def test_write_buffer_size_grows_and_drains(loop):
    size = 4 << 20

    async def main():
        transport, proto, peer = await connect_to_listener(loop, lambda: Recorder(loop))
        assert transport.get_write_buffer_size() == 0
        transport.write(payload(size))
        buffered = transport.get_write_buffer_size()
        assert 0 < buffered <= size
        await recv_exactly(loop, peer, size)
        for _ in range(100):
            if transport.get_write_buffer_size() == 0:
                break
            await asyncio.sleep(0.005)
        assert transport.get_write_buffer_size() == 0
        await _close(transport, proto, peer)

    run(loop, main())


# -- server side transports -----------------------------------------------------------------------


def test_server_side_transport(loop):
    async def main():
        accepted = loop.create_future()

        def factory():
            p = Recorder(loop)
            accepted.set_result(p)
            return p

        server = await loop.create_server(factory, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        client = socket.socket()
        client.setblocking(False)
        await loop.sock_connect(client, ("127.0.0.1", port))
        proto = await accepted
        await proto.made
        tr = proto.transport
        assert isinstance(tr, asyncio.Transport)
        assert tr.get_extra_info("peername") == client.getsockname()
        assert tr.get_extra_info("sockname") == ("127.0.0.1", port)
        assert isinstance(tr.get_extra_info("socket"), asyncio.trsock.TransportSocket)
        assert tr.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        await loop.sock_sendall(client, b"hi")
        assert await proto.wait_bytes(2) == b"hi"
        client.shutdown(socket.SHUT_WR)
        assert await proto.lost is None
        assert collapse(proto.events) == ["made", "data", "eof", "lost"]
        client.close()
        server.close()
        await server.wait_closed()

    run(loop, main())


# -- BufferedProtocol -----------------------------------------------------------------------------


class BufRecorder(asyncio.BufferedProtocol):
    """Hands out windows of one big bytearray; records sizehints and filled lengths."""

    def __init__(self, loop, window=1000, total=1 << 21):
        self.storage = bytearray(total)
        self.window = window
        self.pos = 0
        self.hints = []
        self.updates = []
        self.events = []
        self.handed_out = None
        self.made = loop.create_future()
        self.lost = loop.create_future()
        self.loop = loop
        self.target = None
        self.reached = loop.create_future()

    def connection_made(self, transport):
        self.events.append("made")
        self.transport = transport
        self.made.set_result(transport)

    def get_buffer(self, sizehint):
        self.events.append("get_buffer")
        self.hints.append(sizehint)
        self.handed_out = memoryview(self.storage)[self.pos : self.pos + self.window]
        return self.handed_out

    def buffer_updated(self, nbytes):
        self.events.append("buffer_updated")
        assert 0 < nbytes <= self.window
        self.updates.append(nbytes)
        self.pos += nbytes
        if self.target is not None and self.pos >= self.target and not self.reached.done():
            self.reached.set_result(None)

    def eof_received(self):
        self.events.append("eof")

    def connection_lost(self, exc):
        self.events.append("lost")
        self.lost.set_result(exc)


def test_buffered_protocol_receives_into_given_buffer(loop):
    size = 1 << 20
    data = payload(size, seed=11)

    async def main():
        transport, proto, peer = await connect_to_listener(loop, lambda: BufRecorder(loop))
        proto.target = size
        await loop.sock_sendall(peer, data)
        await proto.reached
        assert bytes(proto.storage[:size]) == data  # the bytes landed in the handed-out windows
        assert all(isinstance(h, int) for h in proto.hints)
        assert sum(proto.updates) == size
        assert len(proto.updates) >= size // proto.window
        peer.shutdown(socket.SHUT_WR)
        assert await proto.lost is None
        ev = proto.events
        assert ev[0] == "made" and ev[-2:] == ["eof", "lost"]
        # every buffer_updated is preceded by its own get_buffer (asyncio also asks for a buffer
        # for the read that finds EOF, so a get_buffer may come last)
        body = ev[1:-2]
        if body and body[-1] == "get_buffer" and len(body) % 2:
            body = body[:-1]
        assert body == ["get_buffer", "buffer_updated"] * (len(body) // 2)
        peer.close()

    run(loop, main())


def test_buffered_protocol_writes_and_pause(loop):
    async def main():
        transport, proto, peer = await connect_to_listener(loop, lambda: BufRecorder(loop))
        transport.write(b"out")
        assert await recv_exactly(loop, peer, 3) == b"out"
        transport.pause_reading()
        await loop.sock_sendall(peer, b"wait")
        await asyncio.sleep(0.03)
        assert proto.pos == 0
        proto.target = 4
        transport.resume_reading()
        await proto.reached
        assert bytes(proto.storage[:4]) == b"wait"
        transport.close()
        assert await proto.lost is None
        peer.close()

    run(loop, main())


def test_buffered_protocol_empty_buffer_is_fatal(loop, expect_exception_handler):
    class Empty(BufRecorder):
        def get_buffer(self, sizehint):
            self.events.append("get_buffer")
            return bytearray()

    async def main():
        transport, proto, peer = await connect_to_listener(loop, lambda: Empty(loop))
        await loop.sock_sendall(peer, b"x")
        exc = await proto.lost
        assert isinstance(exc, RuntimeError)
        assert "get_buffer() returned an empty buffer" in str(exc)
        assert transport.is_closing()
        peer.close()

    run(loop, main())
    assert len(expect_exception_handler) == 1
    ctx = expect_exception_handler[0]
    assert ctx["message"] == "Fatal error: protocol.get_buffer() call failed."
    assert isinstance(ctx["exception"], RuntimeError)
    assert "transport" in ctx and "protocol" in ctx


def test_data_received_exception_is_fatal(loop, expect_exception_handler):
    class Boom(Recorder):
        def data_received(self, data):
            super().data_received(data)
            raise ZeroDivisionError("boom")

    async def main():
        transport, proto, peer = await connect_to_listener(loop, lambda: Boom(loop))
        await loop.sock_sendall(peer, b"x")
        exc = await proto.lost
        assert isinstance(exc, ZeroDivisionError)
        assert transport.is_closing()
        assert await recv_until_eof(loop, peer) == b""
        peer.close()

    run(loop, main())
    assert [c["message"] for c in expect_exception_handler] == [
        "Fatal error: protocol.data_received() call failed."
    ]
    assert isinstance(expect_exception_handler[0]["exception"], ZeroDivisionError)


# -- loop.sendfile over a transport ---------------------------------------------------------------


@pytest.fixture
def data_file(tmp_path):
    data = payload(500_000, seed=13)
    path = tmp_path / "data.bin"
    path.write_bytes(data)
    return path, data


@pytest.mark.parametrize(
    "offset,count", [(0, None), (100, 1000), (250_000, None)], ids=["all", "slice", "tail"]
)
@pytest.mark.parametrize("fallback", [True, False])
def test_loop_sendfile_over_transport(loop, data_file, offset, count, fallback):
    path, data = data_file
    expected = data[offset : offset + count] if count else data[offset:]

    async def main():
        transport, proto, peer = await connect_to_listener(loop, lambda: Recorder(loop))
        with open(path, "rb") as f:
            reader = asyncio.ensure_future(recv_exactly(loop, peer, len(expected)))
            sent = await loop.sendfile(transport, f, offset, count, fallback=fallback)
            assert sent == len(expected)
            assert f.tell() == offset + len(expected)
        assert await reader == expected
        # the transport is usable afterwards
        transport.write(b"after")
        assert await recv_exactly(loop, peer, 5) == b"after"
        await _close(transport, proto, peer)

    run(loop, main())


def test_write_during_loop_sendfile_is_refused(loop, tmp_path):
    data = payload(16 << 20, seed=1)  # far more than the socket buffers hold
    path = tmp_path / "big.bin"
    path.write_bytes(data)

    async def main():
        transport, proto, peer = await connect_to_listener(loop, lambda: Recorder(loop))
        with open(path, "rb") as f:
            task = asyncio.ensure_future(loop.sendfile(transport, f))
            await asyncio.sleep(0.01)
            assert not task.done(), "sendfile finished although the peer read nothing"
            with pytest.raises(RuntimeError, match="sendfile is in progress"):
                transport.write(b"x")
            reader = asyncio.ensure_future(recv_exactly(loop, peer, len(data)))
            assert await task == len(data)
            assert await reader == data
        await _close(transport, proto, peer)

    run(loop, main())


def test_loop_sendfile_on_closing_transport(loop, data_file):
    path, _ = data_file

    async def main():
        transport, proto, peer = await connect_to_listener(loop, lambda: Recorder(loop))
        transport.close()
        with open(path, "rb") as f:
            with pytest.raises(RuntimeError, match="Transport is closing"):
                await loop.sendfile(transport, f)
        await proto.lost
        peer.close()

    run(loop, main())

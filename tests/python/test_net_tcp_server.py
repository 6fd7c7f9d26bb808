# tests/python/test_net_tcp_server.py: loop.create_server and the Server object: hosts (one,
# several, wildcard), reuse_address, reuse_port, backlog, start_serving=False, sock=, argument
# errors; Server.close, wait_closed (whose behaviour changed in 3.12), serve_forever and its
# cancellation, start_serving, is_serving, sockets, get_loop, async with.

import asyncio
import errno
import select
import socket
import time

import pytest

from net_helpers import (
    PY312,
    Echo,
    Recorder,
    close_server,
    nonblocking,
    recv_exactly,
    requires_ipv6,
    run,
)


def port_of(server):
    return server.sockets[0].getsockname()[1]


async def echo_roundtrip(loop, addr, data=b"ping", family=socket.AF_INET):
    """Connect with a plain socket, send data, expect it echoed back; returns the client socket."""
    client = nonblocking(socket.socket(family))
    await loop.sock_connect(client, addr)
    await loop.sock_sendall(client, data)
    assert await recv_exactly(loop, client, len(data)) == data
    return client


def test_create_server_basics(loop):
    async def main():
        server = await loop.create_server(Echo, "127.0.0.1", 0)
        assert isinstance(server, asyncio.AbstractServer)
        assert server.get_loop() is loop
        assert server.is_serving()
        socks = server.sockets
        assert isinstance(socks, tuple) and len(socks) == 1
        assert isinstance(socks[0], asyncio.trsock.TransportSocket)
        assert socks[0].family == socket.AF_INET
        assert socks[0].getsockname()[0] == "127.0.0.1"
        assert socks[0].getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1
        client = await echo_roundtrip(loop, socks[0].getsockname())
        client.close()
        server.close()
        assert not server.is_serving()
        assert server.sockets == ()  # asyncio returns a tuple
        await server.wait_closed()
        await close_server(server)

    run(loop, main())


def test_create_server_port_zero_picks_distinct_ports(loop):
    async def main():
        s1 = await loop.create_server(Echo, "127.0.0.1", 0)
        s2 = await loop.create_server(Echo, "127.0.0.1", 0)
        assert port_of(s1) != 0 and port_of(s2) != 0
        assert port_of(s1) != port_of(s2)
        for s in (s1, s2):
            await close_server(s)

    run(loop, main())


def test_create_server_many_clients(loop):
    async def main():
        server = await loop.create_server(Echo, "127.0.0.1", 0)
        addr = server.sockets[0].getsockname()
        clients = await asyncio.gather(
            *(echo_roundtrip(loop, addr, b"client %d" % i) for i in range(20))
        )
        for c in clients:
            c.close()
        await close_server(server)

    run(loop, main())


@requires_ipv6
def test_create_server_multiple_hosts(loop):
    async def main():
        server = await loop.create_server(Echo, ["127.0.0.1", "::1"], 0)
        families = sorted(s.family for s in server.sockets)
        assert families == sorted([socket.AF_INET, socket.AF_INET6])
        for s in server.sockets:
            if s.family == socket.AF_INET6:
                assert s.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 1
            c = await echo_roundtrip(loop, s.getsockname()[:2], family=s.family)
            c.close()
        await close_server(server)

    run(loop, main())


def test_create_server_duplicate_hosts_bound_once(loop):
    # asyncio resolves every host and binds each distinct address once.
    async def main():
        server = await loop.create_server(Echo, ["127.0.0.1", "127.0.0.1"], 0)
        assert len(server.sockets) == 1
        await close_server(server)

    run(loop, main())


def test_create_server_host_tuple_of_names(loop):
    expected = {
        i[4]
        for i in socket.getaddrinfo(
            "localhost", 0, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    } | {("127.0.0.1", 0)}

    async def main():
        server = await loop.create_server(Echo, ("localhost", "127.0.0.1"), 0)
        assert len(server.sockets) == len(expected)
        await close_server(server)

    run(loop, main())


@pytest.mark.parametrize("host", [None, ""], ids=["None", "empty"])
def test_create_server_wildcard_host(loop, host):
    expected = {
        i[:2] + (i[4][0],)
        for i in socket.getaddrinfo(None, 0, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    }

    async def main():
        server = await loop.create_server(Echo, host, 0)
        got = {(s.family, s.type, s.getsockname()[0]) for s in server.sockets}
        assert got == expected
        for s in server.sockets:
            if s.family == socket.AF_INET6:
                assert s.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 1
        v4 = [s for s in server.sockets if s.family == socket.AF_INET]
        if v4:
            c = await echo_roundtrip(loop, ("127.0.0.1", v4[0].getsockname()[1]))
            c.close()
        await close_server(server)

    run(loop, main())


def test_create_server_reuse_address_default_and_off(loop):
    async def main():
        on = await loop.create_server(Echo, "127.0.0.1", 0)
        off = await loop.create_server(Echo, "127.0.0.1", 0, reuse_address=False)
        assert on.sockets[0].getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR) != 0
        assert off.sockets[0].getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR) == 0
        for s in (on, off):
            await close_server(s)

    run(loop, main())


@pytest.mark.skipif(not hasattr(socket, "SO_REUSEPORT"), reason="no SO_REUSEPORT")
def test_create_server_reuse_port(loop):
    async def main():
        first = await loop.create_server(Echo, "127.0.0.1", 0, reuse_port=True)
        port = port_of(first)
        assert first.sockets[0].getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) != 0
        second = await loop.create_server(Echo, "127.0.0.1", port, reuse_port=True)
        assert port_of(second) == port
        c = await echo_roundtrip(loop, ("127.0.0.1", port))
        c.close()
        plain = await loop.create_server(Echo, "127.0.0.1", 0)
        assert plain.sockets[0].getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 0
        for s in (first, second, plain):
            await close_server(s)

    run(loop, main())


def test_create_server_address_in_use(loop):
    async def main():
        first = await loop.create_server(Echo, "127.0.0.1", 0)
        port = port_of(first)
        with pytest.raises(OSError) as info:
            await loop.create_server(Echo, "127.0.0.1", port)
        first.close()
        await first.wait_closed()
        return port, info.value

    port, exc = run(loop, main())
    assert exc.errno == errno.EADDRINUSE
    # 3.13 adds the errno inside the message too ("...: [errno 98] address already in use")
    assert str(exc).startswith(
        f"[Errno {errno.EADDRINUSE}] error while attempting to bind on address "
        f"('127.0.0.1', {port}): "
    )
    assert str(exc).endswith("address already in use")


@pytest.mark.parametrize("backlog", [1, 3])
def test_create_server_backlog(loop, backlog):
    # While the loop does not run, nothing is accepted: the kernel completes at most
    # backlog + 1 handshakes (Linux) and leaves further clients waiting.
    server = run(loop, loop.create_server(Echo, "127.0.0.1", 0, backlog=backlog))
    addr = server.sockets[0].getsockname()
    clients = []
    try:
        for _ in range(backlog + 4):
            c = socket.socket()
            c.setblocking(False)
            clients.append(c)
            c.connect_ex(addr)
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            _, writable, _ = select.select([], clients, [], 0)
            if len(writable) >= backlog + 1:
                break
            time.sleep(0.02)
        time.sleep(0.1)  # give any further handshake the chance to (wrongly) complete
        _, writable, _ = select.select([], clients, [], 0)
        assert len(writable) == backlog + 1
    finally:
        for c in clients:
            c.close()
        server.close()
        run(loop, server.wait_closed())


def test_start_serving_false(loop):
    async def main():
        made = []

        def factory():
            made.append(1)
            return Echo()

        server = await loop.create_server(factory, "127.0.0.1", 0, start_serving=False)
        assert not server.is_serving()
        sock = server.sockets[0]
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 0
        probe = nonblocking(socket.socket())
        with pytest.raises(ConnectionRefusedError):
            await loop.sock_connect(probe, sock.getsockname())
        probe.close()
        await server.start_serving()
        assert server.is_serving()
        await server.start_serving()  # idempotent
        assert server.is_serving()
        c = await echo_roundtrip(loop, sock.getsockname())
        c.close()
        assert made == [1]
        await close_server(server)

    run(loop, main())


def test_create_server_with_sock(loop):
    async def main():
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        server = await loop.create_server(Echo, sock=sock)
        assert server.sockets[0].fileno() == sock.fileno()
        assert sock.gettimeout() == 0
        c = await echo_roundtrip(loop, sock.getsockname())
        c.close()
        await close_server(server)
        assert sock.fileno() == -1, "Server.close closes the listening socket"

    run(loop, main())


def test_create_server_argument_errors(loop):
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tcp = socket.socket()

    async def main():
        with pytest.raises(ValueError, match="Neither host/port nor sock were specified"):
            await loop.create_server(Echo)
        with pytest.raises(ValueError, match="A Stream Socket was expected"):
            await loop.create_server(Echo, sock=udp)
        with pytest.raises(ValueError, match="can not be specified at the same time"):
            await loop.create_server(Echo, "127.0.0.1", 0, sock=tcp)
        with pytest.raises(TypeError, match="ssl argument must be an SSLContext or None"):
            await loop.create_server(Echo, "127.0.0.1", 0, ssl=True)
        with pytest.raises(ValueError, match="ssl_handshake_timeout is only meaningful"):
            await loop.create_server(Echo, "127.0.0.1", 0, ssl_handshake_timeout=1)

    try:
        run(loop, main())
    finally:
        udp.close()
        tcp.close()


def test_close_keeps_accepted_connections(loop):
    async def main():
        server = await loop.create_server(Echo, "127.0.0.1", 0)
        addr = server.sockets[0].getsockname()
        client = await echo_roundtrip(loop, addr, b"before")
        server.close()
        assert len(server.sockets) == 0
        # The accepted connection still echoes ...
        await loop.sock_sendall(client, b"after close")
        assert await recv_exactly(loop, client, 11) == b"after close"
        # ... but new connections are refused.
        probe = nonblocking(socket.socket())
        with pytest.raises(ConnectionRefusedError):
            await loop.sock_connect(probe, addr)
        probe.close()
        client.close()
        await server.wait_closed()
        await close_server(server)

    run(loop, main())


def test_close_twice(loop):
    async def main():
        server = await loop.create_server(Echo, "127.0.0.1", 0)
        server.close()
        server.close()
        await server.wait_closed()
        await server.wait_closed()
        assert not server.is_serving()

    run(loop, main())


def test_wait_closed_waits_for_connections_since_312(loop):
    # Python 3.11's Server.wait_closed() returns at once when called after close(), even with
    # connections still open (it checks `self._sockets is None` first); 3.12 waits for them.
    async def main():
        registry = []
        server = await loop.create_server(lambda: Echo(registry), "127.0.0.1", 0)
        client = await echo_roundtrip(loop, server.sockets[0].getsockname())
        server.close()
        waiter = asyncio.ensure_future(server.wait_closed())
        await asyncio.sleep(0.05)
        assert waiter.done() is (not PY312)
        client.close()  # the server side sees EOF, Echo closes its transport
        await waiter
        transport = registry[0].transport
        if PY312:
            assert transport.is_closing(), "wait_closed() returned before the connection closed"
        for _ in range(100):  # 3.11: let the connection finish closing before the loop closes
            if transport.is_closing():
                break
            await asyncio.sleep(0.005)
        assert transport.is_closing()

    run(loop, main())


def test_wait_closed_before_close(loop):
    async def main():
        server = await loop.create_server(Echo, "127.0.0.1", 0)
        waiter = asyncio.ensure_future(server.wait_closed())
        await asyncio.sleep(0.02)
        assert not waiter.done(), "wait_closed() returned while the server was open"
        server.close()
        await waiter

    run(loop, main())


def test_serve_forever_and_cancellation(loop):
    async def main():
        server = await loop.create_server(Echo, "127.0.0.1", 0, start_serving=False)
        task = asyncio.ensure_future(server.serve_forever())
        await asyncio.sleep(0)
        assert server.is_serving()
        c = await echo_roundtrip(loop, server.sockets[0].getsockname())
        c.close()
        with pytest.raises(RuntimeError, match="already being awaited on serve_forever"):
            await server.serve_forever()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not server.is_serving()
        assert len(server.sockets) == 0
        with pytest.raises(RuntimeError, match="is closed"):
            await server.serve_forever()
        await close_server(server)

    run(loop, main())


def test_close_ends_serve_forever(loop):
    async def main():
        server = await loop.create_server(Echo, "127.0.0.1", 0)
        task = asyncio.ensure_future(server.serve_forever())
        await asyncio.sleep(0)
        server.close()
        with pytest.raises(asyncio.CancelledError):
            await task
        await server.wait_closed()

    run(loop, main())


def test_async_with_closes_server(loop):
    async def main():
        async with await loop.create_server(Echo, "127.0.0.1", 0) as server:
            assert server.is_serving()
            addr = server.sockets[0].getsockname()
            c = await echo_roundtrip(loop, addr)
            c.close()
        assert not server.is_serving()
        assert len(server.sockets) == 0
        probe = nonblocking(socket.socket())
        with pytest.raises(ConnectionRefusedError):
            await loop.sock_connect(probe, addr)
        probe.close()
        await close_server(server)

    run(loop, main())


def test_server_transport_connection_lost_on_client_close(loop):
    async def main():
        protos = []

        def factory():
            p = Recorder(loop)
            protos.append(p)
            return p

        server = await loop.create_server(factory, "127.0.0.1", 0)
        client = nonblocking(socket.socket())
        await loop.sock_connect(client, server.sockets[0].getsockname())
        await loop.sock_sendall(client, b"bye")
        client.close()
        for _ in range(100):
            if protos:
                break
            await asyncio.sleep(0.005)
        assert await protos[0].lost is None
        assert bytes(protos[0].data) == b"bye"
        await close_server(server)

    run(loop, main())


@requires_ipv6
def test_create_server_ipv6_only_family(loop):
    async def main():
        server = await loop.create_server(Echo, "::1", 0, family=socket.AF_INET6)
        s = server.sockets[0]
        assert s.family == socket.AF_INET6
        c = await echo_roundtrip(loop, s.getsockname()[:2], family=socket.AF_INET6)
        c.close()
        await close_server(server)

    run(loop, main())


def test_create_server_family_mismatch_is_gaierror(loop):
    async def main():
        with pytest.raises(socket.gaierror):
            await loop.create_server(Echo, "127.0.0.1", 0, family=socket.AF_INET6)

    run(loop, main())

# tests/python/net_helpers.py: shared pieces of the networking behaviour tests (test_net_*.py).
#
# Everything here is loop-agnostic: the tests pass in the `loop` fixture's loop (asyncio's own or
# PyLoop), so a behaviour difference shows up as a failing assertion. Every wait is bounded by
# `run(..., timeout=...)` so that a hang fails fast instead of reaching pytest-timeout.

import asyncio
import os
import socket
import sys

import pytest

# The most any single step of a test may wait. Loopback operations take microseconds; a test
# reaching this limit is hung, not slow.
STEP = 2.0

PY312 = sys.version_info >= (3, 12)
PY313 = sys.version_info >= (3, 13)


def run(loop, coro, timeout=STEP):
    """Run `coro` on `loop` under asyncio.timeout(timeout); TimeoutError means it hung."""

    async def bounded():
        async with asyncio.timeout(timeout):
            return await coro

    return loop.run_until_complete(bounded())


def _can_bind_ipv6_loopback():
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


HAS_IPV6 = _can_bind_ipv6_loopback()
requires_ipv6 = pytest.mark.skipif(not HAS_IPV6, reason="cannot bind ::1 on this machine")


def fd_count():
    """Open descriptors of this process."""
    return len(os.listdir("/proc/self/fd"))


def nonblocking(sock):
    sock.setblocking(False)
    return sock


def listener(host="127.0.0.1", family=socket.AF_INET, backlog=128, proto=0):
    """A plain listening TCP socket on an ephemeral loopback port (blocking, 2 s timeout).

    Accepted sockets inherit `proto`; asyncio sets TCP_NODELAY on a transport's socket only when
    its proto is IPPROTO_TCP (base_events._set_nodelay), so tests of that pass proto=6.
    """
    sock = socket.socket(family, socket.SOCK_STREAM, proto)
    sock.bind((host, 0))
    sock.listen(backlog)
    sock.settimeout(STEP)
    return sock


def refused_address(host="127.0.0.1", family=socket.AF_INET):
    """(sock, address): a bound, non-listening socket; connecting to `address` is refused while
    `sock` stays open (so no other process takes the port). The caller closes `sock`."""
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.bind((host, 0))
    return sock, sock.getsockname()


def tcp_socketpair(family=socket.AF_INET, host="127.0.0.1"):
    """A connected pair of non-blocking TCP sockets on loopback (client, server side)."""
    with listener(host, family) as lsock:
        client = socket.socket(family, socket.SOCK_STREAM)
        client.settimeout(STEP)
        client.connect(lsock.getsockname()[:2])
        server, _ = lsock.accept()
    client.setblocking(False)
    server.setblocking(False)
    return client, server


async def connect_to_listener(loop, protocol_factory, **kwargs):
    """create_connection() to a plain listening socket; returns (transport, protocol, peer).

    `peer` is the accepted server-side socket (non-blocking), for the test to drive by hand.
    """
    with listener() as lsock:
        host, port = lsock.getsockname()
        transport, protocol = await loop.create_connection(protocol_factory, host, port, **kwargs)
        # The handshake is complete, so the connection already sits in the accept queue.
        peer, _ = lsock.accept()
    peer.setblocking(False)
    return transport, protocol, peer


async def recv_exactly(loop, sock, n):
    """Read exactly n bytes from a non-blocking socket with loop.sock_recv (EOF fails)."""
    buf = bytearray()
    while len(buf) < n:
        chunk = await loop.sock_recv(sock, n - len(buf))
        assert chunk, f"EOF after {len(buf)} of {n} bytes"
        buf += chunk
    return bytes(buf)


async def recv_until_eof(loop, sock, limit=1 << 24):
    """Read a non-blocking socket with loop.sock_recv until EOF; returns all bytes."""
    buf = bytearray()
    while True:
        chunk = await loop.sock_recv(sock, 65536)
        if not chunk:
            return bytes(buf)
        buf += chunk
        assert len(buf) <= limit, "peer sent more than expected"


def payload(n, seed=0):
    """n bytes of a recognisable, non-repeating-at-small-period pattern."""
    block = bytes((i * 31 + seed) & 0xFF for i in range(251))  # 251 is prime
    reps, rest = divmod(n, len(block))
    return block * reps + block[:rest]


def collapse(events):
    """Event names with consecutive duplicates folded: [made, data, data, eof] -> [made, data, eof]."""
    out = []
    for e in events:
        if not out or out[-1] != e:
            out.append(e)
    return out


class Recorder(asyncio.Protocol):
    """A Protocol that records its callbacks, in order, and offers futures to wait on them.

    events: callback names in order ("made", "data", "eof", "lost", "pause", "resume").
    eof_result: what eof_received() returns (True keeps the transport half-open).
    """

    def __init__(self, loop, eof_result=None):
        self.loop = loop
        self.events = []
        self.transport = None
        self.data = bytearray()
        self.eof_result = eof_result
        self.made = loop.create_future()
        self.eof = loop.create_future()
        self.lost = loop.create_future()  # result: the exception given to connection_lost
        self._wanted = []  # (nbytes, future)

    def connection_made(self, transport):
        self.events.append("made")
        self.transport = transport
        self.made.set_result(transport)

    def data_received(self, data):
        assert isinstance(data, bytes), type(data)
        assert data, "data_received() called with empty bytes"
        self.events.append("data")
        self.data += data
        self._check_wanted()

    def eof_received(self):
        self.events.append("eof")
        self.eof.set_result(None)
        return self.eof_result

    def connection_lost(self, exc):
        self.events.append("lost")
        self.lost.set_result(exc)
        for _, fut in self._wanted:
            if not fut.done():
                fut.set_exception(AssertionError(f"connection lost ({exc!r}) before data"))

    def pause_writing(self):
        self.events.append("pause")

    def resume_writing(self):
        self.events.append("resume")

    def _check_wanted(self):
        for n, fut in list(self._wanted):
            if len(self.data) >= n and not fut.done():
                fut.set_result(bytes(self.data[:n]))
                self._wanted.remove((n, fut))

    async def wait_bytes(self, n):
        """Wait until at least n bytes in total were received; returns the first n."""
        fut = self.loop.create_future()
        self._wanted.append((n, fut))
        self._check_wanted()
        return await fut


class Echo(asyncio.Protocol):
    """Server protocol: echoes everything, closes on EOF; records transports it served.

    Echo.live holds the instances whose connection is not lost yet, so that a test can wait
    for the server side to finish closing (close_server) before the loop is closed.
    """

    live = set()

    def __init__(self, registry=None):
        self.registry = registry
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport
        Echo.live.add(self)
        if self.registry is not None:
            self.registry.append(self)

    def data_received(self, data):
        self.transport.write(data)

    def connection_lost(self, exc):
        Echo.live.discard(self)


async def close_server(server, clients=()):
    """Close server and the given client sockets, then wait (bounded, never failing) until
    every Echo connection has seen connection_lost: Python 3.11's Server.wait_closed() does
    not wait for them."""
    server.close()
    for c in clients:
        c.close()
    await server.wait_closed()
    for _ in range(100):
        if not Echo.live:
            break
        await asyncio.sleep(0.005)
    Echo.live.clear()

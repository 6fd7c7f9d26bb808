"""tests/checks/test_tls_leaks.py — TLS's native data phase leaves memory flat.

The scenarios of test_hot_path_leaks.py over TLS on PyLoop: round trips through the native
decrypt/encrypt paths (Protocol and BufferedProtocol, write and writelines), and connections
opened and closed (the TLSSession made at each handshake and let go at connection_lost).
A reference leaked per message or per connection would show as that many objects.
"""

import asyncio
import os
import ssl

import pytest

from test_hot_path_leaks import assert_flat

trustme = pytest.importorskip("trustme")

ROUND_TRIPS = 30_000
CONNECTIONS = 300


def _contexts():
    ca = trustme.CA()
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("localhost").configure_cert(server)
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ca.configure_trust(client)
    return server, client


SERVER_CTX, CLIENT_CTX = _contexts()


class _Echo(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data[:1])
        self.transport.writelines([data[1:2], bytearray(data[2:])])


class _Client(asyncio.BufferedProtocol):
    """Counts the echoed bytes into its own buffer and wakes the waiter at each message."""

    def __init__(self, loop):
        self.buffer = bytearray(4096)
        self.got = 0
        self.waiter = None
        self.lost = loop.create_future()

    def connection_made(self, transport):
        self.transport = transport

    def get_buffer(self, sizehint):
        return self.buffer

    def buffer_updated(self, nbytes):
        self.got += nbytes
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def connection_lost(self, exc):
        self.lost.set_result(exc)


async def _open(loop):
    server = await loop.create_server(_Echo, "127.0.0.1", 0, ssl=SERVER_CTX)
    port = server.sockets[0].getsockname()[1]
    transport, client = await loop.create_connection(
        lambda: _Client(loop), "127.0.0.1", port, ssl=CLIENT_CTX, server_hostname="localhost")
    return server, transport, client


async def _close(server, transport, client):
    transport.close()
    await client.lost
    server.close()
    await server.wait_closed()
    await asyncio.sleep(0.01)


def round_trips(loop, n):
    async def main():
        server, transport, client = await _open(loop)
        message = b"0123456789abcdef"
        for i in range(n):
            client.waiter = loop.create_future()
            transport.write(message)
            while client.got < (i + 1) * len(message):
                await client.waiter
                client.waiter = loop.create_future()
        await _close(server, transport, client)

    loop.run_until_complete(main())


def connections(loop, n):
    async def main():
        for _ in range(n):
            server, transport, client = await _open(loop)
            client.waiter = loop.create_future()
            transport.write(b"x")
            await client.waiter
            await _close(server, transport, client)

    loop.run_until_complete(main())


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc for RSS")
def test_tls_round_trips_leave_objects_and_rss_flat():
    assert_flat(round_trips, warm_up=3_000, count=ROUND_TRIPS)


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc for RSS")
def test_tls_connections_leave_objects_and_rss_flat():
    # The warm-up fills what grows once: allocator arenas, the server context's session cache.
    assert_flat(connections, warm_up=CONNECTIONS, count=CONNECTIONS)

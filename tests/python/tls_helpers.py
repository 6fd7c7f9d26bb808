# tests/python/tls_helpers.py: what the TLS behaviour tests share: certificates made at run
# time (trustme, never checked in), an echo server, a client, a BufferedProtocol.

import asyncio
import ssl

import pytest

from net_helpers import Recorder

trustme = pytest.importorskip("trustme")

LONG = 10.0  # bound for the large transfers (a loaded 2-core machine)


@pytest.fixture(scope="module")
def certs():
    ca = trustme.CA()
    server_cert = ca.issue_cert("localhost", "127.0.0.1")
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_cert.configure_cert(server_ctx)
    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ca.configure_trust(client_ctx)
    return server_ctx, client_ctx


class EchoServer(asyncio.Protocol):
    """Echoes everything; records its transport."""

    def __init__(self, registry):
        self.registry = registry

    def connection_made(self, transport):
        self.transport = transport
        self.registry.append(self)

    def data_received(self, data):
        self.transport.write(data)


async def tls_echo_server(loop, server_ctx, registry=None):
    registry = [] if registry is None else registry
    server = await loop.create_server(lambda: EchoServer(registry), "127.0.0.1", 0, ssl=server_ctx)
    return server, server.sockets[0].getsockname()[1], registry


async def stop(server):
    server.close()
    await server.wait_closed()


async def tls_client(loop, client_ctx, port, factory=None, **kwargs):
    kwargs.setdefault("server_hostname", "localhost")
    return await loop.create_connection(factory or (lambda: Recorder(loop)), "127.0.0.1", port,
                                        ssl=client_ctx, **kwargs)


class Buffered(asyncio.BufferedProtocol):
    def __init__(self, loop, want):
        self.want = want
        self.buf = bytearray(4096)
        self.data = bytearray()
        self.sizes = []
        self.full = loop.create_future()
        self.lost = loop.create_future()

    def connection_made(self, transport):
        self.transport = transport

    def get_buffer(self, sizehint):
        self.sizes.append(sizehint)
        return self.buf

    def buffer_updated(self, nbytes):
        self.data += self.buf[:nbytes]
        if len(self.data) >= self.want and not self.full.done():
            self.full.set_result(None)

    def eof_received(self):
        return None

    def connection_lost(self, exc):
        self.lost.set_result(exc)


def only_failed_handshakes(contexts):
    """In debug mode asyncio's server reports each failed handshake: nothing else."""
    for context in contexts:
        assert context["message"] == "Error on transport creation for incoming connection"

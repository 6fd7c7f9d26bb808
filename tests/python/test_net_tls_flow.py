# tests/python/test_net_tls_flow.py: TLS on both loops, the data phase: BufferedProtocol,
# set_protocol, pause/resume_reading, write flow control, close and abort, debug mode,
# descriptor leaks; and PyLoop's native path itself (engaged, switched by every state change,
# detached at the end, absent when the libssl check fails).

import asyncio
import gc
import ssl

import pytest

from net_helpers import Recorder, fd_count, payload, run
from tls_helpers import (  # noqa: F401  (certs is a fixture)
    LONG,
    Buffered,
    certs,
    stop,
    tls_client,
    tls_echo_server,
)


# -- protocols and flow control -------------------------------------------------------------------


def test_buffered_protocol(loop, certs):
    server_ctx, client_ctx = certs
    size = 300_000

    async def main():
        server, port, _ = await tls_echo_server(loop, server_ctx)
        transport, proto = await tls_client(loop, client_ctx, port,
                                            factory=lambda: Buffered(loop, size))
        data = payload(size)
        transport.write(data)
        await proto.full
        assert bytes(proto.data) == data
        assert all(isinstance(n, int) for n in proto.sizes)
        transport.close()
        assert await proto.lost is None
        await stop(server)

    run(loop, main(), LONG)


def test_set_protocol_switches_to_buffered(loop, certs):
    server_ctx, client_ctx = certs

    async def main():
        server, port, _ = await tls_echo_server(loop, server_ctx)
        transport, proto = await tls_client(loop, client_ctx, port)
        transport.write(b"one")
        await proto.wait_bytes(3)
        buffered = Buffered(loop, 3)
        transport.set_protocol(buffered)
        assert transport.get_protocol() is buffered
        transport.write(b"two")
        await buffered.full
        assert bytes(buffered.data) == b"two"
        transport.close()
        assert await buffered.lost is None
        await stop(server)

    run(loop, main())


def test_pause_resume_reading(loop, certs):
    server_ctx, client_ctx = certs
    size = 4 << 20

    class Sender(asyncio.Protocol):
        def __init__(self):
            self.made = loop.create_future()

        def connection_made(self, transport):
            self.transport = transport
            self.made.set_result(None)

    async def main():
        senders = []
        server = await loop.create_server(lambda: senders.append(Sender()) or senders[-1],
                                          "127.0.0.1", 0, ssl=server_ctx)
        port = server.sockets[0].getsockname()[1]
        transport, proto = await tls_client(loop, client_ctx, port)
        while not senders:
            await asyncio.sleep(0.01)
        await senders[0].made
        transport.pause_reading()
        assert not transport.is_reading()
        senders[0].transport.write(payload(size))
        await asyncio.sleep(0.3)
        assert len(proto.data) == 0  # nothing reaches a paused protocol
        transport.resume_reading()
        assert transport.is_reading()
        assert await proto.wait_bytes(size) == payload(size)
        transport.close()
        await proto.lost
        await stop(server)

    run(loop, main(), LONG)


def test_client_write_flow_control(loop, certs):
    server_ctx, client_ctx = certs

    class Slow(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport = transport
            transport.pause_reading()
            self.data = 0

        def data_received(self, data):
            self.data += len(data)

    async def main():
        slow = []
        server = await loop.create_server(lambda: slow.append(Slow()) or slow[-1],
                                          "127.0.0.1", 0, ssl=server_ctx)
        port = server.sockets[0].getsockname()[1]
        transport, proto = await tls_client(loop, client_ctx, port)
        chunk = payload(64 * 1024)
        sent = 0
        while "pause" not in proto.events and sent < (64 << 20):
            transport.write(chunk)
            sent += len(chunk)
            await asyncio.sleep(0)
        assert "pause" in proto.events
        assert transport.get_write_buffer_size() > 0
        while not slow:
            await asyncio.sleep(0.01)
        slow[0].transport.resume_reading()
        for _ in range(500):
            if slow[0].data >= sent:
                break
            await asyncio.sleep(0.01)
        assert slow[0].data == sent
        assert proto.events.count("pause") == proto.events.count("resume")
        transport.close()
        await proto.lost
        await stop(server)

    run(loop, main(), LONG)


# -- closing -------------------------------------------------------------------------------------


def test_close_flushes_then_peer_sees_eof(loop, certs):
    server_ctx, client_ctx = certs

    async def main():
        peers = []
        server = await loop.create_server(lambda: peers.append(Recorder(loop)) or peers[-1],
                                          "127.0.0.1", 0, ssl=server_ctx)
        port = server.sockets[0].getsockname()[1]
        transport, proto = await tls_client(loop, client_ctx, port)
        data = payload(200_000)
        transport.write(data)
        transport.close()
        assert transport.is_closing()
        transport.write(b"after close")  # dropped, as asyncio drops it
        assert await proto.lost is None
        while not peers:
            await asyncio.sleep(0.01)
        assert await peers[0].lost is None
        assert bytes(peers[0].data) == data
        assert peers[0].events[-2:] == ["eof", "lost"]
        await stop(server)

    run(loop, main(), LONG)


def test_abort_mid_transfer(loop, certs):
    server_ctx, client_ctx = certs

    async def main():
        peers = []
        server = await loop.create_server(lambda: peers.append(Recorder(loop)) or peers[-1],
                                          "127.0.0.1", 0, ssl=server_ctx)
        port = server.sockets[0].getsockname()[1]
        transport, proto = await tls_client(loop, client_ctx, port)
        while not peers:
            await asyncio.sleep(0.01)
        await peers[0].made
        peers[0].transport.write(payload(1 << 20))
        transport.write(payload(1 << 20))
        transport.abort()
        assert transport.is_closing()
        assert await proto.lost is None
        exc = await peers[0].lost
        # The aborted side left unread data: its kernel resets the connection, which the
        # sending peer sees as ConnectionResetError (or BrokenPipeError, by timing).
        assert isinstance(exc, ConnectionError)
        await stop(server)

    run(loop, main(), LONG)


def test_debug_mode(loop, certs):
    server_ctx, client_ctx = certs
    loop.set_debug(True)

    async def main():
        server, port, _ = await tls_echo_server(loop, server_ctx)
        transport, proto = await tls_client(loop, client_ctx, port)
        transport.write(b"debug")
        assert await proto.wait_bytes(5) == b"debug"
        transport.close()
        await proto.lost
        await stop(server)

    run(loop, main())


def test_no_descriptor_leak(loop, certs):
    server_ctx, client_ctx = certs

    async def main():
        server, port, _ = await tls_echo_server(loop, server_ctx)
        for _ in range(10):
            transport, proto = await tls_client(loop, client_ctx, port)
            transport.write(b"ping")
            await proto.wait_bytes(4)
            transport.close()
            await proto.lost
        await stop(server)

    run(loop, main())  # warm up: imports, caches
    before = fd_count()
    run(loop, main(), LONG)
    assert fd_count() == before


# -- PyLoop's native path -------------------------------------------------------------------------


def test_pyloop_runs_the_data_phase_natively(pyloop_module, certs):
    from data_bridge.pyloop import _tls

    server_ctx, client_ctx = certs
    loop = pyloop_module.new_event_loop()

    async def main():
        server, port, _ = await tls_echo_server(loop, server_ctx)
        transport, proto = await tls_client(loop, client_ctx, port)
        transport.write(b"native")
        await proto.wait_bytes(6)
        session = transport._tls
        assert _tls.NATIVE_TLS
        assert session is not None and session.read_fast and session.write_fast
        transport.pause_reading()
        assert not session.read_fast
        transport.resume_reading()
        assert session.read_fast
        transport.close()
        assert not session.write_fast
        await proto.lost
        assert transport._tls is None
        await stop(server)

    try:
        run(loop, main())
    finally:
        loop.close()
    gc.collect()
    assert not [o for o in gc.get_objects() if type(o).__name__ == "TLSSession"]


def test_pyloop_without_the_native_path(pyloop_module, certs, monkeypatch):
    """Where _ssl and PyLoop do not share one libssl, asyncio's SSLProtocol does it all."""
    from data_bridge.pyloop import _tls

    monkeypatch.setattr(_tls, "NATIVE_TLS", False)
    server_ctx, client_ctx = certs
    loop = pyloop_module.new_event_loop()

    async def main():
        server, port, _ = await tls_echo_server(loop, server_ctx)
        transport, proto = await tls_client(loop, client_ctx, port)
        transport.write(b"python" * 10000)
        assert await proto.wait_bytes(60000) == b"python" * 10000
        assert transport._tls is None
        transport.close()
        await proto.lost
        await stop(server)

    try:
        run(loop, main())
    finally:
        loop.close()


@pytest.mark.pyloop
def test_the_libssl_check_refuses_what_it_cannot_vouch_for(pyloop_module):
    """tls_shares_openssl is true only for _ssl's own file with its own OpenSSL version: a
    loaded module that does not link libssl, a module not loaded, or another version is
    refused (asyncio's path is then taken throughout)."""
    import _json
    import _ssl
    import ssl

    from data_bridge.pyloop import _pyloop

    version = ssl.OPENSSL_VERSION_NUMBER
    assert _pyloop.tls_shares_openssl(_ssl.__file__, version)
    assert not _pyloop.tls_shares_openssl(_ssl.__file__, version + 1)
    assert not _pyloop.tls_shares_openssl("/nonexistent/_ssl.so", version)
    if getattr(_json, "__file__", None):
        assert not _pyloop.tls_shares_openssl(_json.__file__, version)


@pytest.mark.pyloop
def test_a_session_refused_by_the_layout_check_leaves_asyncios_path(pyloop_module, certs):
    """TLSSession refuses an SSL object that is not the one of the _SSLSocket and SSLContext it
    is given (TypeError), and a refused session leaves the connection to asyncio's code."""
    from data_bridge.pyloop import _pyloop, _tls

    server_ctx, client_ctx = certs
    other = ssl.create_default_context()
    sslobj = client_ctx.wrap_bio(ssl.MemoryBIO(), ssl.MemoryBIO(), server_hostname="localhost")
    loop = pyloop_module.new_event_loop()

    async def main():
        server, port, _ = await tls_echo_server(loop, server_ctx)
        transport, proto = await tls_client(loop, client_ctx, port)
        io = transport._ssl_protocol._transport._io
        with pytest.raises(TypeError):
            _pyloop.TLSSession(sslobj._sslobj, other, transport._ssl_protocol, io)
        with pytest.raises(TypeError):
            _pyloop.TLSSession(object(), client_ctx, transport._ssl_protocol, io)
        assert transport._tls is None  # the patched session below refused this connection
        transport.write(b"python" * 1000)
        assert await proto.wait_bytes(6000) == b"python" * 1000
        transport.close()
        await proto.lost
        await stop(server)

    def refused(*args):
        raise TypeError("not the SSL object layout this build knows")

    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(_tls, "TLSSession", refused)
            run(loop, main())
    finally:
        loop.close()


def test_write_of_a_released_memoryview_raises(loop, certs):
    """asyncio's write() asks `not data` first: a released memoryview raises ValueError to the
    caller, and the connection goes on."""
    server_ctx, client_ctx = certs

    async def main():
        server, port, _ = await tls_echo_server(loop, server_ctx)
        transport, proto = await tls_client(loop, client_ctx, port)
        view = memoryview(b"abc")
        view.release()
        with pytest.raises(ValueError):
            transport.write(view)
        assert not transport.is_closing()
        transport.write(b"still")
        assert await proto.wait_bytes(5) == b"still"
        transport.close()
        await proto.lost
        await stop(server)

    run(loop, main())


@pytest.mark.parametrize("bad", [5, "released"])
def test_writelines_of_a_piece_without_a_length_raises(loop, certs, bad):
    """asyncio's writelines() takes len() of each piece as it queues it: a piece without one
    (an int, a released memoryview) raises to the caller instead of failing the connection."""
    server_ctx, client_ctx = certs

    async def main():
        server, port, _ = await tls_echo_server(loop, server_ctx)
        transport, proto = await tls_client(loop, client_ctx, port)
        piece = bad
        if bad == "released":
            piece = memoryview(b"xyz")
            piece.release()
        with pytest.raises((TypeError, ValueError)) as caught:
            transport.writelines([piece])
        assert type(caught.value) is (TypeError if bad == 5 else ValueError)
        assert not transport.is_closing()
        transport.abort()
        await proto.lost
        await stop(server)

    run(loop, main())

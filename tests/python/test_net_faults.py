# tests/python/test_net_faults.py: faults on stream transports and servers, reported as asyncio
# reports them: peer reset (connection_lost(ConnectionResetError), no exception-handler call;
# is_closing() true right after writes that meet it),
# the peer closing in the middle of a large write, half-close, writes after close (silently
# dropped, a warning on the "asyncio" logger from the fifth one on), EMFILE on accept (the server
# logs through the exception handler and keeps serving), and Server.close_clients /
# abort_clients (Python 3.13).

import asyncio
import errno
import logging
import os
import resource
import socket
import struct

import pytest

from net_helpers import (
    PY313,
    Echo,
    Recorder,
    close_server,
    connect_to_listener,
    nonblocking,
    payload,
    recv_exactly,
    recv_until_eof,
    run,
)

LINGER_RESET = struct.pack("ii", 1, 0)


def reset(sock):
    """Close `sock` so that the kernel sends RST instead of FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
    sock.close()


def test_peer_reset_reaches_connection_lost(loop):
    async def main():
        transport, proto, peer = await connect_to_listener(loop, lambda: Recorder(loop))
        reset(peer)
        exc = await proto.lost
        assert isinstance(exc, ConnectionResetError)
        assert exc.errno == errno.ECONNRESET
        assert proto.events == ["made", "lost"], "no eof_received on a reset"
        assert transport.is_closing()

    run(loop, main())  # the `loop` fixture fails the test on any exception-handler call


def test_peer_reset_after_data(loop):
    async def main():
        transport, proto, peer = await connect_to_listener(loop, lambda: Recorder(loop))
        await loop.sock_sendall(peer, b"some data")
        await proto.wait_bytes(9)
        reset(peer)
        exc = await proto.lost
        assert isinstance(exc, ConnectionResetError)
        assert proto.events == ["made", "data", "lost"]

    run(loop, main())


def test_peer_reset_while_reading_paused_reported_by_write(loop):
    # Reading is paused, so only the write path can notice the reset.
    async def main():
        transport, proto, peer = await connect_to_listener(loop, lambda: Recorder(loop))
        transport.pause_reading()
        reset(peer)
        await asyncio.sleep(0.02)
        assert "lost" not in proto.events
        for _ in range(50):
            transport.write(b"x" * 1024)  # never raises
            await asyncio.sleep(0.002)
            if proto.lost.done():
                break
        exc = await proto.lost
        assert isinstance(exc, (ConnectionResetError, BrokenPipeError))
        assert transport.get_write_buffer_size() == 0

    run(loop, main())


def test_reset_shows_in_is_closing_right_after_the_answer_is_written(loop):
    # The peer sends a request and resets at once; the answer is written in a later turn, as
    # a task answering a request writes it. asyncio's write() offers it to the kernel, the
    # send fails and the transport closes, so is_closing() is True right after the writes
    # (uvicorn asks exactly this before arming a keep-alive timer for the connection).
    async def main():
        seen = []

        class Answering(Recorder):
            def data_received(self, data):
                super().data_received(data)
                loop.call_soon(self.answer)

            def answer(self):
                self.transport.write(b"HTTP/1.1 200 OK\r\n")
                self.transport.write(b"Content-Length: 0\r\n\r\n")
                seen.append(self.transport.is_closing())

        transport, proto, peer = await connect_to_listener(loop, lambda: Answering(loop))
        peer.send(b"GET / HTTP/1.1\r\n\r\n")
        reset(peer)
        exc = await proto.lost
        assert seen == [True]
        assert isinstance(exc, ConnectionError), repr(exc)
        assert transport.get_write_buffer_size() == 0

    run(loop, main())


def test_peer_closes_mid_write(loop):
    size = 16 << 20

    async def main():
        transport, proto, peer = await connect_to_listener(loop, lambda: Recorder(loop))
        transport.write(payload(size))
        assert transport.get_write_buffer_size() > 0
        await recv_exactly(loop, peer, 64 * 1024)
        peer.close()  # unread data in its receive buffer: the kernel resets
        exc = await proto.lost
        assert isinstance(exc, ConnectionError), repr(exc)
        assert transport.is_closing()
        assert transport.get_write_buffer_size() == 0

    run(loop, main())


def test_server_sees_client_vanish_mid_write(loop):
    size = 16 << 20

    async def main():
        protos = []

        def factory():
            p = Recorder(loop)
            protos.append(p)
            return p

        server = await loop.create_server(factory, "127.0.0.1", 0)
        client = nonblocking(socket.socket())
        await loop.sock_connect(client, server.sockets[0].getsockname())
        for _ in range(200):
            if protos:
                break
            await asyncio.sleep(0.002)
        proto = protos[0]
        await proto.made
        proto.transport.write(payload(size))
        await recv_exactly(loop, client, 1000)
        reset(client)
        exc = await proto.lost
        assert isinstance(exc, ConnectionError)
        server.close()
        await server.wait_closed()

    run(loop, main())


def test_half_close_request_response(loop):
    # The client sends a request and shuts down its write side; the server answers after EOF
    # (eof_received returns True to keep the transport open), then closes.
    class Answer(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport = transport
            self.request = bytearray()

        def data_received(self, data):
            self.request += data

        def eof_received(self):
            self.transport.write(b"len=%d" % len(self.request))
            self.transport.write(bytes(self.request).upper())
            self.transport.close()
            return True

    async def main():
        server = await loop.create_server(Answer, "127.0.0.1", 0)
        client = nonblocking(socket.socket())
        await loop.sock_connect(client, server.sockets[0].getsockname())
        await loop.sock_sendall(client, b"hello" * 1000)
        client.shutdown(socket.SHUT_WR)
        response = await recv_until_eof(loop, client)
        assert response == b"len=5000" + b"HELLO" * 1000
        client.close()
        server.close()
        await server.wait_closed()

    run(loop, main())


def test_half_close_both_directions(loop):
    async def main():
        transport, proto, peer = await connect_to_listener(
            loop, lambda: Recorder(loop, eof_result=True)
        )
        peer.shutdown(socket.SHUT_WR)
        await proto.eof
        big = payload(2 << 20)
        transport.write(big)  # still writable after the peer's EOF
        transport.write_eof()
        assert await recv_until_eof(loop, peer) == big
        # Both directions are shut down, but the transport stays open until close().
        await asyncio.sleep(0.02)
        assert "lost" not in proto.events
        assert not transport.is_closing()
        transport.close()
        assert await proto.lost is None
        assert proto.events == ["made", "eof", "lost"]
        peer.close()

    run(loop, main())


def _send_warnings(caplog):
    return [
        r
        for r in caplog.records
        if r.name == "asyncio" and r.getMessage() == "socket.send() raised exception."
    ]


def test_writes_after_close_are_dropped_then_logged(loop, caplog):
    # After close() (empty buffer), write() neither raises nor sends. asyncio counts the
    # writes: from the fifth on (constants.LOG_THRESHOLD_FOR_CONNLOST_WRITES), each logs a
    # warning "socket.send() raised exception." on the "asyncio" logger.
    caplog.set_level(logging.WARNING, logger="asyncio")

    async def main():
        transport, proto, peer = await connect_to_listener(loop, lambda: Recorder(loop))
        transport.close()
        for _ in range(4):
            transport.write(b"dropped")
        assert _send_warnings(caplog) == []
        transport.write(b"dropped")
        assert len(_send_warnings(caplog)) == 1
        assert _send_warnings(caplog)[0].levelno == logging.WARNING
        await proto.lost
        transport.write(b"dropped")
        assert len(_send_warnings(caplog)) == 2
        assert await recv_until_eof(loop, peer) == b""
        peer.close()

    run(loop, main())


def test_writes_after_connection_lost_are_dropped(loop, caplog):
    caplog.set_level(logging.WARNING, logger="asyncio")

    async def main():
        transport, proto, peer = await connect_to_listener(loop, lambda: Recorder(loop))
        reset(peer)
        assert isinstance(await proto.lost, ConnectionResetError)
        for _ in range(4):
            transport.write(b"x")
        assert _send_warnings(caplog) == []
        transport.write(b"x")
        assert len(_send_warnings(caplog)) == 1

    run(loop, main())


def test_write_eof_and_close_after_reset_are_harmless(loop):
    async def main():
        transport, proto, peer = await connect_to_listener(loop, lambda: Recorder(loop))
        reset(peer)
        await proto.lost
        transport.write_eof()
        transport.close()
        transport.abort()
        transport.pause_reading()
        transport.resume_reading()
        await asyncio.sleep(0.01)
        assert proto.events.count("lost") == 1

    run(loop, main())


def _fill_descriptors():
    """Lower the soft RLIMIT_NOFILE and open /dev/null until EMFILE; returns (fds, old limit)."""
    old = resource.getrlimit(resource.RLIMIT_NOFILE)
    n = len(os.listdir("/proc/self/fd"))
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(n + 16, old[0]), old[1]))
    fds = []
    try:
        while len(fds) < 4096:
            fds.append(os.open(os.devnull, os.O_RDONLY))
    except OSError as exc:
        assert exc.errno == errno.EMFILE, exc
    return fds, old


def test_emfile_on_accept_server_keeps_serving(loop, expect_exception_handler):
    async def main():
        made = loop.create_future()

        class Srv(Echo):
            def connection_made(self, transport):
                super().connection_made(transport)
                if not made.done():
                    made.set_result(transport)

        server = await loop.create_server(Srv, "127.0.0.1", 0)
        client = nonblocking(socket.socket())  # made before the descriptors run out
        fds, old = _fill_descriptors()
        try:
            client.connect_ex(server.sockets[0].getsockname())
            for _ in range(200):
                await asyncio.sleep(0.002)
                if expect_exception_handler:
                    break
            assert not made.done()
        finally:
            for fd in fds:
                os.close(fd)
            resource.setrlimit(resource.RLIMIT_NOFILE, old)
        assert expect_exception_handler, "EMFILE on accept was not reported"
        ctx = expect_exception_handler[0]
        assert ctx["message"] == "socket.accept() out of system resource"
        assert isinstance(ctx["exception"], OSError)
        assert ctx["exception"].errno == errno.EMFILE
        assert isinstance(ctx["socket"], asyncio.trsock.TransportSocket)
        # asyncio retries accepting after constants.ACCEPT_RETRY_DELAY (1 s)
        await made
        await loop.sock_sendall(client, b"recovered")
        assert await recv_exactly(loop, client, 9) == b"recovered"
        # asyncio's accept loop goes on after EMFILE (selector_events._accept_connection loops
        # `for _ in range(backlog)`), so it reports and schedules a retry up to `backlog` times;
        # let those retries all run before the server closes, or the late ones fail on the
        # closed socket.
        await asyncio.sleep(0.2)
        await close_server(server, [client])

    run(loop, main(), timeout=4)
    assert {c["message"] for c in expect_exception_handler} == {
        "socket.accept() out of system resource"
    }


# -- Server.close_clients / abort_clients (3.13) ----------------------------------------------------

requires_313 = pytest.mark.skipif(not PY313, reason="Server.close_clients/abort_clients are 3.13")


async def _server_with_clients(loop, n):
    protos = []

    def factory():
        p = Recorder(loop)
        protos.append(p)
        return p

    server = await loop.create_server(factory, "127.0.0.1", 0)
    clients = []
    for _ in range(n):
        c = nonblocking(socket.socket())
        await loop.sock_connect(c, server.sockets[0].getsockname())
        clients.append(c)
    for _ in range(200):
        if len(protos) == n:
            break
        await asyncio.sleep(0.002)
    await asyncio.gather(*(p.made for p in protos))
    return server, protos, clients


@requires_313
def test_server_close_clients(loop):
    async def main():
        server, protos, clients = await _server_with_clients(loop, 3)
        protos[0].transport.write(b"flushed before close")
        server.close()
        server.close_clients()
        results = await asyncio.gather(*(p.lost for p in protos))
        assert results == [None, None, None]
        assert await recv_until_eof(loop, clients[0]) == b"flushed before close"
        for c in clients[1:]:
            assert await recv_until_eof(loop, c) == b""
        await server.wait_closed()
        for c in clients:
            c.close()

    run(loop, main())


@requires_313
def test_server_abort_clients(loop):
    size = 16 << 20

    async def main():
        server, protos, clients = await _server_with_clients(loop, 2)
        protos[0].transport.write(payload(size))
        assert protos[0].transport.get_write_buffer_size() > 0
        server.close()
        server.abort_clients()
        assert all(p.transport.is_closing() for p in protos)
        results = await asyncio.gather(*(p.lost for p in protos))
        assert results == [None, None]
        received = 0
        try:
            while chunk := await loop.sock_recv(clients[0], 1 << 20):
                received += len(chunk)
        except ConnectionResetError:
            pass
        assert received < size
        await server.wait_closed()
        for c in clients:
            c.close()

    run(loop, main())


@requires_313
def test_close_clients_does_not_stop_listening(loop):
    async def main():
        server, protos, clients = await _server_with_clients(loop, 1)
        server.close_clients()
        assert await protos[0].lost is None
        assert server.is_serving()
        c = nonblocking(socket.socket())
        await loop.sock_connect(c, server.sockets[0].getsockname())
        c.close()
        for x in clients:
            x.close()
        server.close()
        await server.wait_closed()

    run(loop, main())

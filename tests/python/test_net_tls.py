# tests/python/test_net_tls.py: TLS on both loops, connections: ssl= of create_connection,
# create_server, the Unix variants and connect_accepted_socket, streams, sendfile, extra info,
# server_hostname and SNI, certificate and record errors, handshake and shutdown timeouts,
# start_tls on both sides. (Flow control, closing and PyLoop's native path:
# test_net_tls_flow.py.) On PyLoop the data phase runs natively
# (python/data_bridge/pyloop/_tls.py); every assertion is asyncio's behaviour.

import asyncio
import os
import socket
import ssl
import threading

import pytest

from net_helpers import Recorder, payload, run
from tls_helpers import (  # noqa: F401  (certs is a fixture)
    LONG,
    trustme,
    EchoServer,
    certs,
    only_failed_handshakes,
    stop,
    tls_client,
    tls_echo_server,
)


# -- connections and data ---------------------------------------------------------------------


@pytest.mark.parametrize("size", [1, 1024, 65536, 1 << 20])
def test_echo_sizes(loop, certs, size):
    server_ctx, client_ctx = certs

    async def main():
        server, port, _ = await tls_echo_server(loop, server_ctx)
        transport, proto = await tls_client(loop, client_ctx, port)
        data = payload(size)
        transport.write(data)
        assert await proto.wait_bytes(size) == data
        transport.close()
        assert await proto.lost is None
        await stop(server)

    run(loop, main(), LONG)


@pytest.mark.parametrize("version", ["TLSv1_2", "TLSv1_3"])
def test_protocol_versions(loop, certs, version):
    server_ctx, client_ctx = certs
    pinned = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    pinned.load_verify_locations(cadata=client_ctx.get_ca_certs(binary_form=True)[0])
    pinned.maximum_version = pinned.minimum_version = getattr(ssl.TLSVersion, version)

    async def main():
        server, port, _ = await tls_echo_server(loop, server_ctx)
        transport, proto = await tls_client(loop, pinned, port)
        assert transport.get_extra_info("ssl_object").version() == version.replace("_", ".")
        data = payload(200_000)
        transport.write(data)
        assert await proto.wait_bytes(len(data)) == data
        transport.close()
        assert await proto.lost is None
        await stop(server)

    run(loop, main(), LONG)


def test_many_round_trips_and_writelines(loop, certs):
    server_ctx, client_ctx = certs

    async def main():
        server, port, _ = await tls_echo_server(loop, server_ctx)
        transport, proto = await tls_client(loop, client_ctx, port)
        total = 0
        for i in range(200):
            transport.writelines([b"a" * i, bytearray(b"b" * 10), memoryview(b"c" * 5)])
            total += i + 15
            await proto.wait_bytes(total)
        assert bytes(proto.data[-15:]) == b"b" * 10 + b"c" * 5
        transport.write(b"")  # ignored, as asyncio does
        with pytest.raises(TypeError, match="data: expecting a bytes-like instance, got str"):
            transport.write("text")
        transport.close()
        await proto.lost
        await stop(server)

    run(loop, main(), LONG)


def test_writelines_with_a_non_buffer_is_a_fatal_error(loop, certs, expect_exception_handler):
    server_ctx, client_ctx = certs

    async def main():
        server, port, _ = await tls_echo_server(loop, server_ctx)
        transport, proto = await tls_client(loop, client_ctx, port)
        transport.write(b"ok")
        await proto.wait_bytes(2)
        other, other_proto = await tls_client(loop, client_ctx, port)
        transport.writelines([b"fine", "not bytes"])  # no raise: the connection fails
        other.write(b"unaffected")  # nothing of the failed call reaches another connection
        assert await other_proto.wait_bytes(10) == b"unaffected"
        other.close()
        await other_proto.lost
        exc = await proto.lost
        await asyncio.sleep(0.05)
        await stop(server)
        return exc

    exc = run(loop, main())
    assert isinstance(exc, TypeError)
    assert [c["message"] for c in expect_exception_handler] == ["Fatal error on SSL protocol"]


def test_streams_api(loop, certs):
    server_ctx, client_ctx = certs

    async def handle(reader, writer):
        line = await reader.readline()
        writer.write(line.upper())
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    async def main():
        server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_ctx)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_ctx,
                                                       server_hostname="localhost")
        writer.write(b"hello tls\n")
        assert await reader.readline() == b"HELLO TLS\n"
        assert await reader.read() == b""
        writer.close()
        await writer.wait_closed()
        await stop(server)

    run(loop, main())


@pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="Unix sockets")
def test_unix_socket(loop, certs, tmp_path):
    server_ctx, client_ctx = certs
    path = str(tmp_path / "tls.sock")

    async def main():
        registry = []
        server = await loop.create_unix_server(lambda: EchoServer(registry), path, ssl=server_ctx)
        transport, proto = await loop.create_unix_connection(
            lambda: Recorder(loop), path, ssl=client_ctx, server_hostname="localhost")
        transport.write(b"over unix")
        assert await proto.wait_bytes(9) == b"over unix"
        transport.close()
        assert await proto.lost is None
        await stop(server)

    run(loop, main())


def test_connect_accepted_socket(loop, certs):
    server_ctx, client_ctx = certs

    async def main():
        listener = socket.create_server(("127.0.0.1", 0))
        listener.setblocking(False)
        port = listener.getsockname()[1]
        registry = []
        client = loop.create_task(tls_client(loop, client_ctx, port))
        conn, _ = await loop.sock_accept(listener)
        server_transport, _ = await loop.connect_accepted_socket(
            lambda: EchoServer(registry), conn, ssl=server_ctx)
        transport, proto = await client
        transport.write(b"accepted")
        assert await proto.wait_bytes(8) == b"accepted"
        transport.close()
        assert await proto.lost is None
        server_transport.close()
        listener.close()

    run(loop, main())


def test_sendfile_over_tls(loop, certs, tmp_path):
    server_ctx, client_ctx = certs
    path = tmp_path / "data.bin"
    data = payload(300_000)
    path.write_bytes(data)

    async def main():
        peers = []
        server = await loop.create_server(lambda: peers.append(Recorder(loop)) or peers[-1],
                                          "127.0.0.1", 0, ssl=server_ctx)
        port = server.sockets[0].getsockname()[1]
        transport, proto = await tls_client(loop, client_ctx, port)
        with open(path, "rb") as f:
            sent = await loop.sendfile(transport, f)
        assert sent == len(data)
        while not peers:
            await asyncio.sleep(0.01)
        assert await peers[0].wait_bytes(len(data)) == data
        transport.close()
        await proto.lost
        await stop(server)

    run(loop, main(), LONG)


def test_extra_info(loop, certs):
    server_ctx, client_ctx = certs

    async def main():
        server, port, registry = await tls_echo_server(loop, server_ctx)
        transport, proto = await tls_client(loop, client_ctx, port)
        obj = transport.get_extra_info("ssl_object")
        assert isinstance(obj, ssl.SSLObject)
        assert obj.server_hostname == "localhost"
        assert not obj.server_side
        peercert = transport.get_extra_info("peercert")
        assert peercert == obj.getpeercert()
        assert ("DNS", "localhost") in peercert["subjectAltName"]
        cipher = transport.get_extra_info("cipher")
        assert cipher == obj.cipher() and len(cipher) == 3
        assert transport.get_extra_info("compression") == obj.compression()
        assert transport.get_extra_info("sslcontext") is client_ctx
        assert transport.get_extra_info("peername")[1] == port
        assert transport.get_extra_info("sockname")[0] == "127.0.0.1"
        assert transport.get_extra_info("socket").family == socket.AF_INET
        assert transport.get_extra_info("missing", "dflt") == "dflt"
        transport.write(b"x")
        await proto.wait_bytes(1)
        server_side = registry[0].transport.get_extra_info("ssl_object")
        assert server_side.server_side
        assert registry[0].transport.get_extra_info("peercert") is None  # no client cert
        assert not transport.can_write_eof()
        with pytest.raises(NotImplementedError):
            transport.write_eof()
        transport.close()
        await proto.lost
        await stop(server)

    run(loop, main())


def test_alpn_and_client_certificates(loop, certs):
    ca = trustme.CA()
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("localhost").configure_cert(server_ctx)
    ca.configure_trust(server_ctx)
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    server_ctx.set_alpn_protocols(["h2", "http/1.1"])
    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ca.configure_trust(client_ctx)
    ca.issue_cert("client.example").configure_cert(client_ctx)
    client_ctx.set_alpn_protocols(["http/1.1"])

    async def main():
        server, port, registry = await tls_echo_server(loop, server_ctx)
        transport, proto = await tls_client(loop, client_ctx, port)
        assert transport.get_extra_info("ssl_object").selected_alpn_protocol() == "http/1.1"
        transport.write(b"mutual")
        assert await proto.wait_bytes(6) == b"mutual"
        peer = registry[0].transport.get_extra_info("peercert")
        assert ("DNS", "client.example") in peer["subjectAltName"]
        transport.close()
        assert await proto.lost is None
        await stop(server)

    run(loop, main())


# -- certificate and hostname errors ----------------------------------------------------------


def test_untrusted_certificate(loop, certs, expect_exception_handler):
    # In debug mode asyncio's server reports the failed handshake: the same on both loops.
    server_ctx, _ = certs
    untrusting = ssl.create_default_context()  # the system's CAs: not the test CA

    async def main():
        server, port, _ = await tls_echo_server(loop, server_ctx)
        with pytest.raises(ssl.SSLCertVerificationError) as info:
            await tls_client(loop, untrusting, port)
        assert info.value.verify_code == 20  # unable to get local issuer certificate
        assert "certificate verify failed" in str(info.value)
        await asyncio.sleep(0.2)  # the server's side of the handshake sees the alert
        await stop(server)

    run(loop, main())
    only_failed_handshakes(expect_exception_handler)


def test_hostname_mismatch(loop, certs, expect_exception_handler):
    # In debug mode asyncio's server reports the failed handshake: the same on both loops.
    server_ctx, client_ctx = certs

    async def main():
        server, port, _ = await tls_echo_server(loop, server_ctx)
        with pytest.raises(ssl.SSLCertVerificationError) as info:
            await tls_client(loop, client_ctx, port, server_hostname="other.example")
        assert "Hostname mismatch" in str(info.value)
        await asyncio.sleep(0.2)  # the server's side of the handshake sees the alert
        await stop(server)

    run(loop, main())
    only_failed_handshakes(expect_exception_handler)


def test_sni_reaches_the_server(loop, certs):
    server_ctx, client_ctx = certs
    seen = []
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain  # the callback below swaps in the configured context
    ctx.sni_callback = lambda sslobj, name, _ctx: (seen.append(name), setattr(sslobj, "context", server_ctx))[-1] and None

    async def main():
        server, port, _ = await tls_echo_server(loop, ctx)
        transport, proto = await tls_client(loop, client_ctx, port)
        transport.write(b"sni")
        assert await proto.wait_bytes(3) == b"sni"
        transport.close()
        await proto.lost
        await stop(server)

    run(loop, main())
    assert seen == ["localhost"]


def test_corrupt_record_in_the_data_phase(loop, certs):
    server_ctx, client_ctx = certs
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    done = threading.Event()

    def peer():  # a good handshake and one good record, then an application record that
        # fails authentication
        conn, _ = listener.accept()
        with server_ctx.wrap_socket(conn, server_side=True) as tls:
            tls.sendall(b"good")
            done.wait(5)
            os.write(tls.fileno(), b"\x17\x03\x03\x00\x20" + b"\x00" * 32)
            done.wait(5)

    thread = threading.Thread(target=peer)
    thread.start()

    async def main():
        transport, proto = await tls_client(loop, client_ctx, port)
        assert await proto.wait_bytes(4) == b"good"
        done.set()
        return await proto.lost

    try:
        exc = run(loop, main())
    finally:
        done.set()
        thread.join()
        listener.close()
    assert isinstance(exc, ssl.SSLError)
    assert exc.library == "SSL"
    assert exc.reason in ("DECRYPTION_FAILED_OR_BAD_RECORD_MAC", "BAD_RECORD_MAC")
    assert str(exc).startswith(f"[SSL: {exc.reason}] ")


# -- timeouts ------------------------------------------------------------------------------------


def test_handshake_timeout(loop, certs):
    _, client_ctx = certs

    async def main():
        silent = socket.create_server(("127.0.0.1", 0))  # accepts, never answers
        port = silent.getsockname()[1]
        try:
            with pytest.raises(ConnectionAbortedError, match="SSL handshake is taking longer"):
                await tls_client(loop, client_ctx, port, ssl_handshake_timeout=0.2)
        finally:
            silent.close()

    run(loop, main())


def test_bad_timeouts_are_refused(loop, certs, expect_exception_handler):
    # In debug mode asyncio's server reports the failed handshake: the same on both loops.
    _, client_ctx = certs

    async def main():
        server, port, _ = await tls_echo_server(loop, certs[0])
        for name in ("ssl_handshake_timeout", "ssl_shutdown_timeout"):
            with pytest.raises(ValueError, match=f"{name} should be a positive number"):
                await tls_client(loop, client_ctx, port, **{name: -1})
        await asyncio.sleep(0.1)
        await stop(server)

    run(loop, main())
    only_failed_handshakes(expect_exception_handler)


def test_shutdown_timeout(loop, certs):
    server_ctx, client_ctx = certs
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    done = threading.Event()

    def peer():  # completes the handshake, then never reads: close_notify gets no answer
        conn, _ = listener.accept()
        with server_ctx.wrap_socket(conn, server_side=True) as tls:
            done.wait(5)

    thread = threading.Thread(target=peer)
    thread.start()

    async def main():
        transport, proto = await tls_client(loop, client_ctx, port, ssl_shutdown_timeout=0.3)
        transport.close()
        exc = await proto.lost
        return exc

    try:
        exc = run(loop, main())
    finally:
        done.set()
        thread.join()
        listener.close()
    # The peer never answers close_notify: the shutdown times out and the transport is
    # force-closed with asyncio's TimeoutError, which connection_lost receives.
    assert isinstance(exc, TimeoutError)
    assert str(exc) == "SSL shutdown timed out"


# -- start_tls ---------------------------------------------------------------------------------


def test_start_tls_both_sides(loop, certs):
    server_ctx, client_ctx = certs

    class Upgrading(asyncio.Protocol):
        def __init__(self):
            self.upgraded = loop.create_future()

        def connection_made(self, transport):
            self.transport = transport

        def data_received(self, data):
            assert data == b"STARTTLS\n"
            self.transport.write(b"OK\n")
            self.upgraded.set_result(None)

    async def main():
        servers = []

        def factory():
            servers.append(Upgrading())
            return servers[0]

        server = await loop.create_server(factory, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        transport, proto = await loop.create_connection(lambda: Recorder(loop), "127.0.0.1", port)
        transport.write(b"STARTTLS\n")
        assert await proto.wait_bytes(3) == b"OK\n"
        await servers[0].upgraded
        echo = Recorder(loop)
        server_tls = loop.create_task(loop.start_tls(servers[0].transport, echo, server_ctx,
                                                     server_side=True))
        tls = await loop.start_tls(transport, proto, client_ctx, server_hostname="localhost")
        stls = await server_tls
        assert tls.get_extra_info("ssl_object") is not None
        assert stls.get_extra_info("ssl_object").server_side
        assert tls.get_protocol() is proto and stls.get_protocol() is echo
        tls.write(b"secret" * 1000)
        assert await echo.wait_bytes(6000) == b"secret" * 1000
        stls.write(b"reply")
        assert (await proto.wait_bytes(3 + 5))[3:] == b"reply"
        tls.close()
        assert await proto.lost is None
        assert await echo.lost is None
        assert echo.events[-2:] == ["eof", "lost"] or echo.events[-1] == "lost"
        await stop(server)

    run(loop, main(), LONG)

# tests/python/test_net_datagram.py: create_datagram_endpoint and the datagram transport on both
# loops: echo over IPv4, IPv6 and Unix datagram sockets, connected and not; bursts (order,
# senders, nothing lost on loopback), large and empty datagrams, ICMP errors reaching
# error_received, the transport's extra info, protocol switching, reading paused and resumed,
# protocol exceptions, and the descriptors left after close.

import asyncio
import errno
import logging
import os
import socket
import time

from datagram_helpers import Datagrams, Echo, drain, sock_dir, unused_udp_port  # noqa: F401
import pytest

from net_helpers import PY313, STEP, fd_count, requires_ipv6, run


async def echo_roundtrip(loop, server_kwargs, client_kwargs, payloads):
    server, _ = await loop.create_datagram_endpoint(Echo, **server_kwargs)
    try:
        address = server.get_extra_info("sockname")
        client, proto = await loop.create_datagram_endpoint(
            lambda: Datagrams(loop), **client_kwargs(address)
        )
        for p in payloads:
            client.sendto(p, None if "remote_addr" in client_kwargs(address) else address)
        await proto.wait(len(payloads))
        client.close()
        assert await proto.lost is None
        return proto, address
    finally:
        server.close()


def test_echo_ipv4_connected(loop):
    async def main():
        proto, address = await echo_roundtrip(
            loop, {"local_addr": ("127.0.0.1", 0)}, lambda a: {"remote_addr": a}, [b"a", b"bc"]
        )
        assert proto.received == [(b"a", address), (b"bc", address)]
        assert proto.events == ["made", "lost"]
        assert proto.errors == []

    run(loop, main())


def test_echo_ipv4_unconnected(loop):
    async def main():
        proto, address = await echo_roundtrip(
            loop,
            {"local_addr": ("127.0.0.1", 0)},
            lambda a: {"local_addr": ("127.0.0.1", 0)},
            [b"one", b"two"],
        )
        assert proto.received == [(b"one", address), (b"two", address)]

    run(loop, main())


@requires_ipv6
def test_echo_ipv6_addresses_have_four_fields(loop):
    async def main():
        proto, address = await echo_roundtrip(
            loop,
            {"local_addr": ("::1", 0)},
            lambda a: {"local_addr": ("::1", 0), "family": socket.AF_INET6},
            [b"six"],
        )
        assert len(address) == 4
        assert proto.received == [(b"six", address)]
        data, sender = proto.received[0]
        assert sender[0] == "::1" and sender[2:] == (0, 0)

    run(loop, main())


@requires_ipv6
def test_echo_ipv6_connected(loop):
    async def main():
        proto, address = await echo_roundtrip(
            loop, {"local_addr": ("::1", 0)}, lambda a: {"remote_addr": a[:2]}, [b"x" * 100]
        )
        assert proto.data() == [b"x" * 100]

    run(loop, main())


def test_echo_unix_datagram_paths(loop, sock_dir):
    server_path = os.path.join(sock_dir, "server")
    client_path = os.path.join(sock_dir, "client")

    async def main():
        server, _ = await loop.create_datagram_endpoint(
            Echo, local_addr=server_path, family=socket.AF_UNIX
        )
        assert server.get_extra_info("sockname") == server_path
        client, proto = await loop.create_datagram_endpoint(
            lambda: Datagrams(loop),
            local_addr=client_path,
            remote_addr=server_path,
            family=socket.AF_UNIX,
        )
        assert client.get_extra_info("peername") == server_path
        client.sendto(b"unix")
        client.sendto(b"gram", None)
        await proto.wait(2)
        assert proto.received == [(b"unix", server_path), (b"gram", server_path)]
        client.close()
        server.close()
        await proto.lost

    run(loop, main())


def test_unix_stale_socket_file_is_replaced(loop, sock_dir):
    path = os.path.join(sock_dir, "stale")
    old = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    old.bind(path)
    old.close()  # the file stays

    async def main():
        t, _ = await loop.create_datagram_endpoint(
            asyncio.DatagramProtocol, local_addr=path, family=socket.AF_UNIX
        )
        assert t.get_extra_info("sockname") == path
        t.close()

    run(loop, main())


def test_unix_abstract_and_unnamed_senders(loop):
    name = b"\0pyloop-udp-%d" % os.getpid()

    async def main():
        t, proto = await loop.create_datagram_endpoint(
            lambda: Datagrams(loop), local_addr=name.decode("latin-1"), family=socket.AF_UNIX
        )
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.sendto(b"anon", name)  # an unnamed sender: no address
        await proto.wait(1)
        assert proto.received == [(b"anon", None)]
        assert t.get_extra_info("sockname") == name
        t.sendto(b"back", name)  # to itself, by its abstract name
        await proto.wait(2)
        assert proto.received[1] == (b"back", name)
        t.close()

    run(loop, main())


def test_burst_keeps_order_and_senders(loop):
    count = 120  # within the default receive buffer: loopback then drops nothing

    async def main():
        t, proto = await loop.create_datagram_endpoint(
            lambda: Datagrams(loop), local_addr=("127.0.0.1", 0)
        )
        t.get_extra_info("socket")
        address = t.get_extra_info("sockname")
        senders = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(3)]
        try:
            for s in senders:
                s.bind(("127.0.0.1", 0))
            expected = []
            for i in range(count):
                s = senders[i % 3]
                data = b"%d" % i
                s.sendto(data, address)
                expected.append((data, s.getsockname()))
            await proto.wait(count)
            assert proto.received == expected
        finally:
            for s in senders:
                s.close()
        t.close()

    run(loop, main())


def test_large_datagram_60k(loop):
    async def main():
        proto, address = await echo_roundtrip(
            loop, {"local_addr": ("127.0.0.1", 0)}, lambda a: {"remote_addr": a},
            [bytes(range(256)) * 240, b"after"],
        )
        assert proto.data() == [bytes(range(256)) * 240, b"after"]

    run(loop, main())


def test_empty_datagram_as_the_interpreter_does(loop):
    async def main():
        proto, _ = await echo_roundtrip(
            loop, {"local_addr": ("127.0.0.1", 0)}, lambda a: {"remote_addr": a},
            [b"", b"x"] if PY313 else [b"x"],
        )
        assert proto.data() == ([b"", b"x"] if PY313 else [b"x"])

    run(loop, main())
    # Before 3.13, sendto(b"") does nothing at all.
    async def dropped():
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
            peer.bind(("127.0.0.1", 0))
            peer.setblocking(False)
            t, _ = await loop.create_datagram_endpoint(
                asyncio.DatagramProtocol, remote_addr=peer.getsockname()
            )
            t.sendto(b"")
            t.sendto(bytearray())
            t.sendto(memoryview(b""))
            await asyncio.sleep(0.05)
            assert drain(peer) == ([b""] * 3 if PY313 else [])
            t.close()

    run(loop, dropped())


def test_refused_peer_reaches_error_received(loop):
    address = unused_udp_port()

    async def main():
        t, proto = await loop.create_datagram_endpoint(
            lambda: Datagrams(loop), remote_addr=address
        )
        t.sendto(b"anyone?")
        await proto.wait(1)
        (exc,) = proto.errors
        assert isinstance(exc, ConnectionRefusedError)
        assert not t.is_closing()
        t.close()
        assert await proto.lost is None

    run(loop, main())


def test_extra_info_and_protocol(loop):
    async def main():
        t, proto = await loop.create_datagram_endpoint(
            lambda: Datagrams(loop), local_addr=("127.0.0.1", 0)
        )
        # 3.11's selector transport is no asyncio.DatagramTransport yet; 3.12's is.
        assert isinstance(t, asyncio.BaseTransport) and callable(t.sendto)
        sock = t.get_extra_info("socket")
        assert isinstance(sock, asyncio.trsock.TransportSocket)
        assert sock.type == socket.SOCK_DGRAM
        assert t.get_extra_info("sockname") == sock.getsockname()
        assert t.get_extra_info("peername") is None
        assert t.get_extra_info("missing", 5) == 5
        assert t.get_protocol() is proto
        other = Datagrams(loop)
        t.set_protocol(other)
        assert t.get_protocol() is other
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(b"to-other", t.get_extra_info("sockname"))
            await other.wait(1)
        assert proto.received == [] and other.data() == [b"to-other"]
        assert t.get_write_buffer_size() == 0
        assert t.is_reading()
        assert not t.is_closing()
        t.close()
        assert t.is_closing()
        assert await other.lost is None  # the current protocol hears of it

    run(loop, main())


def test_pause_and_resume_reading(loop):
    async def main():
        t, proto = await loop.create_datagram_endpoint(
            lambda: Datagrams(loop), local_addr=("127.0.0.1", 0)
        )
        address = t.get_extra_info("sockname")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(b"1", address)
            await proto.wait(1)
            t.pause_reading()
            assert not t.is_reading()
            for i in range(2, 6):
                s.sendto(b"%d" % i, address)
            await asyncio.sleep(0.05)
            assert proto.data() == [b"1"]
            t.resume_reading()
            await proto.wait(5)
            assert proto.data() == [b"1", b"2", b"3", b"4", b"5"]
        t.close()

    run(loop, main())


def test_pause_inside_a_burst_loses_nothing(loop):
    """Pausing in datagram_received stops delivery at once; the rest comes on resume."""

    async def main():
        t, proto = await loop.create_datagram_endpoint(
            lambda: Datagrams(loop), local_addr=("127.0.0.1", 0)
        )
        address = t.get_extra_info("sockname")
        original = proto.datagram_received

        def pausing(data, addr):
            original(data, addr)
            if data == b"3":
                t.pause_reading()

        proto.datagram_received = pausing
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for i in range(10):
                s.sendto(b"%d" % i, address)
            await proto.wait(4)
            await asyncio.sleep(0.05)
            assert proto.data() == [b"0", b"1", b"2", b"3"]
            t.resume_reading()
            await proto.wait(10)
        assert proto.data() == [b"%d" % i for i in range(10)]
        t.close()

    run(loop, main())


def test_protocol_exception_is_reported_and_reading_goes_on(loop, expect_exception_handler):
    async def main():
        t, proto = await loop.create_datagram_endpoint(
            lambda: Datagrams(loop), local_addr=("127.0.0.1", 0)
        )
        address = t.get_extra_info("sockname")
        original = proto.datagram_received
        boom = ZeroDivisionError("boom")

        def failing(data, addr):
            original(data, addr)
            if data == b"bad":
                raise boom

        proto.datagram_received = failing
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for data in (b"ok", b"bad", b"after"):
                s.sendto(data, address)
            await proto.wait(3)
        assert proto.data() == [b"ok", b"bad", b"after"]
        await asyncio.sleep(0)
        (context,) = expect_exception_handler
        assert context["message"].startswith("Exception in callback ")
        assert context["message"].endswith("._read_ready()")
        assert context["exception"] is boom
        assert not t.is_closing()
        t.close()

    run(loop, main())


def test_sendto_a_host_name(loop):
    async def main():
        peer, proto = await loop.create_datagram_endpoint(
            lambda: Datagrams(loop), local_addr=("127.0.0.1", 0)
        )
        port = peer.get_extra_info("sockname")[1]
        t, _ = await loop.create_datagram_endpoint(
            asyncio.DatagramProtocol, family=socket.AF_INET, local_addr=("127.0.0.1", 0)
        )
        t.sendto(b"by name", ("localhost", port))
        t.sendto(b"by number", ("127.0.0.1", port))
        await proto.wait(2)
        assert proto.data() == [b"by name", b"by number"]
        t.close()
        peer.close()

    run(loop, main())


def test_no_descriptor_left_after_close(loop, sock_dir):
    async def body():
        for i in range(20):
            t, p = await loop.create_datagram_endpoint(
                lambda: Datagrams(loop), local_addr=("127.0.0.1", 0)
            )
            t.sendto(b"self", t.get_extra_info("sockname"))
            await p.wait(1)
            if i % 2:
                t.close()
            else:
                t.abort()
            await p.lost
        path = os.path.join(sock_dir, "leak")
        t, p = await loop.create_datagram_endpoint(
            lambda: Datagrams(loop), local_addr=path, family=socket.AF_UNIX
        )
        t.close()
        await p.lost

    run(loop, asyncio.sleep(0))
    before = fd_count()
    run(loop, body(), timeout=STEP * 5)
    assert fd_count() == before


def test_oversized_datagram_reaches_error_received(loop):
    async def main():
        t, proto = await loop.create_datagram_endpoint(
            lambda: Datagrams(loop), remote_addr=unused_udp_port()
        )
        t.sendto(b"x" * 70000)  # beyond any UDP datagram: EMSGSIZE inside sendto
        assert len(proto.errors) == 1
        assert isinstance(proto.errors[0], OSError) and proto.errors[0].errno == errno.EMSGSIZE
        assert not t.is_closing()
        t.close()

    run(loop, main())


def test_slow_datagram_received_is_logged_in_debug_mode(loop, caplog):
    loop.set_debug(True)
    loop.slow_callback_duration = 0.02

    async def main():
        t, proto = await loop.create_datagram_endpoint(
            lambda: Datagrams(loop), local_addr=("127.0.0.1", 0)
        )
        original = proto.datagram_received

        def sluggish(data, addr):
            original(data, addr)
            if data == b"slow":
                time.sleep(0.05)

        proto.datagram_received = sluggish
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(b"slow", t.get_extra_info("sockname"))
            await proto.wait(1)
        t.close()
        await proto.lost

    with caplog.at_level(logging.WARNING, logger="asyncio"):
        run(loop, main())
    slow = [r.getMessage() for r in caplog.records
            if r.name == "asyncio" and r.levelno == logging.WARNING]
    assert len(slow) == 1, slow
    assert slow[0].startswith("Executing <Handle ") and "DatagramTransport._read_ready()" in slow[0]
    assert " took " in slow[0]


def test_pyloop_receives_a_burst_in_batches(pyloop_module):
    """PyLoop only: a burst takes one receive system call per batch of 16 (recvmmsg), not one
    per datagram."""
    loop = pyloop_module.new_event_loop()
    try:
        async def main():
            t, proto = await loop.create_datagram_endpoint(
                lambda: Datagrams(loop), local_addr=("127.0.0.1", 0)
            )
            assert t._io.batch_limit == 16
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                for i in range(48):
                    s.sendto(b"%d" % i, t.get_extra_info("sockname"))
                await asyncio.sleep(0.05)  # everything is queued before the first receive
                await proto.wait(48)
            assert proto.data() == [b"%d" % i for i in range(48)]
            assert t._io.receive_calls <= 4
            t.close()

        run(loop, main())
    finally:
        loop.close()


def test_system_exit_in_datagram_received_leaves_and_the_rest_follows(loop):
    """SystemExit leaves run_until_complete at once; the datagrams after it are delivered when
    the loop runs again, in order."""
    state = {}

    async def setup():
        t, proto = await loop.create_datagram_endpoint(
            lambda: Datagrams(loop), local_addr=("127.0.0.1", 0)
        )
        original = proto.datagram_received

        def exiting(data, addr):
            original(data, addr)
            if data == b"exit":
                raise SystemExit(3)

        proto.datagram_received = exiting
        state["t"], state["proto"] = t, proto

    run(loop, setup())
    t, proto = state["t"], state["proto"]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for data in (b"a", b"exit", b"b", b"c"):
            s.sendto(data, t.get_extra_info("sockname"))
        with pytest.raises(SystemExit):
            loop.run_until_complete(asyncio.sleep(STEP))
        assert proto.data() == [b"a", b"exit"]
        run(loop, proto.wait(4))
    assert proto.data() == [b"a", b"exit", b"b", b"c"]
    t.close()
    run(loop, proto.lost)


def test_closing_the_loop_with_an_open_endpoint(loop_factory):
    """The loop closes around an open endpoint; the transport, dropped, warns and closes its
    socket, as asyncio's does."""
    import gc

    lp = loop_factory()
    try:
        t, proto = lp.run_until_complete(
            lp.create_datagram_endpoint(lambda: Datagrams(lp), local_addr=("127.0.0.1", 0))
        )
        fd = t.get_extra_info("socket").fileno()
    finally:
        lp.close()
    with pytest.warns(ResourceWarning, match="unclosed transport"):
        del t, proto
        gc.collect()
    with pytest.raises(OSError):
        os.fstat(fd)


@requires_ipv6
def test_sender_address_is_the_socket_modules_not_the_one_sent_to(loop):
    """A reply's sender is the socket module's form of the address (four fields in IPv6),
    never the object the program passed to sendto() for the same peer."""

    async def main():
        server, _ = await loop.create_datagram_endpoint(Echo, local_addr=("::1", 0))
        try:
            port = server.get_extra_info("sockname")[1]
            client, proto = await loop.create_datagram_endpoint(
                lambda: Datagrams(loop), local_addr=("::1", 0)
            )
            destination = ("::1", port)
            client.sendto(b"a", destination)
            client.sendto(b"b", destination)
            await proto.wait(2)
            client.close()
            await proto.lost
        finally:
            server.close()
        senders = [sender for _, sender in proto.received]
        assert all(s is not destination for s in senders)
        assert senders == [("::1", port, 0, 0)] * 2

    run(loop, main())

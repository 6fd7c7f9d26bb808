# tests/python/test_net_datagram_endpoint.py: create_datagram_endpoint's arguments and errors
# (sock=, reuse_port, allow_broadcast, every validation error), sendto's errors, and the
# backlog: flow control through the water marks, close() sending it first, abort() dropping
# it. Unix datagram sockets make the backlog: their sends block when the receiver's queue is
# full, where loopback UDP drops instead.

import asyncio
import errno
import logging
import os
import socket

import pytest

from datagram_helpers import Datagrams, drain, sock_dir, unused_udp_port  # noqa: F401
from net_helpers import PY313, run

HEADER = 8 if PY313 else 0  # bytes 3.13 counts per queued datagram besides its payload


async def endpoint(loop, **kwargs):
    return await loop.create_datagram_endpoint(lambda: Datagrams(loop), **kwargs)


def create(loop, **kwargs):
    async def main():
        t, _ = await endpoint(loop, **kwargs)
        t.close()

    run(loop, main())


# -- arguments -----------------------------------------------------------------------------


def test_sock_argument(loop):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    address = sock.getsockname()

    async def main():
        t, proto = await endpoint(loop, sock=sock)
        assert not sock.getblocking()
        assert t.get_extra_info("socket").fileno() == sock.fileno()
        assert t.get_extra_info("sockname") == address
        t.sendto(b"self", address)
        await proto.wait(1)
        assert proto.received == [(b"self", address)]
        t.close()
        await proto.lost
        assert sock.fileno() == -1  # the transport closed it

    run(loop, main())


def test_sock_connected_sends_to_its_peer(loop):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
        peer.bind(("127.0.0.1", 0))
        peer.setblocking(False)
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.connect(peer.getsockname())

        async def main():
            t, proto = await endpoint(loop, sock=sock)
            assert t.get_extra_info("peername") == peer.getsockname()
            t.sendto(b"a")
            t.sendto(b"b", ("127.0.0.2", 9))  # no fixed address: the peer gets it anyway
            await asyncio.sleep(0.05)
            assert drain(peer) == [b"a", b"b"]
            t.close()
            await proto.lost

        run(loop, main())


def test_sock_argument_refuses_stream_sockets(loop):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        with pytest.raises(ValueError, match="(?i)socket was expected"):
            create(loop, sock=sock)


@pytest.mark.parametrize(
    "modifier",
    [
        {"local_addr": ("127.0.0.1", 0)},
        {"remote_addr": ("127.0.0.1", 9)},
        {"family": socket.AF_INET},
        {"proto": socket.IPPROTO_UDP},
        {"flags": socket.AI_PASSIVE},
        {"reuse_port": True},
        {"allow_broadcast": True},
    ],
)
def test_sock_argument_refuses_socket_modifiers(loop, modifier):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        name = next(iter(modifier))
        with pytest.raises(ValueError, match=f"when sock is specified. \\({name}="):
            create(loop, sock=sock, **modifier)
        assert sock.fileno() != -1


def test_validation_errors(loop):
    with pytest.raises(ValueError, match="unexpected address family"):
        create(loop)
    with pytest.raises(TypeError, match="string is expected"):
        create(loop, local_addr=("127.0.0.1", 0), family=socket.AF_UNIX)
    with pytest.raises(TypeError, match="2-tuple is expected"):
        create(loop, local_addr="127.0.0.1")
    with pytest.raises(TypeError, match="2-tuple is expected"):
        create(loop, remote_addr=("127.0.0.1", 9, 0))
    with pytest.raises(ValueError, match="can not get address information"):
        create(loop, local_addr=("127.0.0.1", 0), remote_addr=("::1", 9))
    with pytest.raises(TypeError, match="reuse_address"):
        create(loop, local_addr=("127.0.0.1", 0), reuse_address=True)
    with pytest.raises(socket.gaierror):
        create(loop, local_addr=("no-such-host.invalid", 0))


def test_address_in_use(loop):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        with pytest.raises(OSError) as info:
            create(loop, local_addr=taken.getsockname())
        assert info.value.errno == errno.EADDRINUSE


def test_family_without_addresses(loop):
    async def main():
        t, _ = await endpoint(loop, family=socket.AF_INET)
        assert t.get_extra_info("socket").family == socket.AF_INET
        assert t.get_extra_info("peername") is None
        t.close()

    run(loop, main())


def test_reuse_port(loop):
    if not hasattr(socket, "SO_REUSEPORT"):
        pytest.skip("no SO_REUSEPORT")

    async def main():
        a, _ = await endpoint(loop, local_addr=("127.0.0.1", 0), reuse_port=True)
        sock = a.get_extra_info("socket")
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) != 0
        b, _ = await endpoint(loop, local_addr=a.get_extra_info("sockname"), reuse_port=True)
        assert b.get_extra_info("sockname") == a.get_extra_info("sockname")
        a.close()
        b.close()

    run(loop, main())


def test_allow_broadcast(loop):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
        peer.bind(("127.0.0.1", 0))
        peer.setblocking(False)

        async def main():
            t, proto = await endpoint(
                loop, remote_addr=peer.getsockname(), allow_broadcast=True
            )
            sock = t.get_extra_info("socket")
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST) != 0
            # With allow_broadcast the socket is not connected: sendto goes to remote_addr.
            assert t.get_extra_info("peername") is None
            t.sendto(b"to remote")
            await asyncio.sleep(0.05)
            assert drain(peer) == [b"to remote"]
            with pytest.raises(ValueError, match="Invalid address"):
                t.sendto(b"x", ("127.0.0.1", 1))
            t.close()
            await proto.lost

        run(loop, main())


# -- sendto's errors -----------------------------------------------------------------------


def test_sendto_refuses_non_bytes(loop):
    async def main():
        t, _ = await endpoint(loop, local_addr=("127.0.0.1", 0))
        with pytest.raises(TypeError, match="data argument must be a bytes-like object, not 'str'"):
            t.sendto("text", t.get_extra_info("sockname"))
        t.close()

    run(loop, main())


def test_sendto_refuses_another_address_when_connected(loop):
    address = unused_udp_port()

    async def main():
        t, _ = await endpoint(loop, remote_addr=address)
        with pytest.raises(ValueError, match=r"Invalid address: must be None or \('127.0.0.1', "):
            t.sendto(b"x", ("127.0.0.1", address[1] + 1))
        t.sendto(b"x", address)  # its own address is fine
        t.sendto(b"x", None)
        t.close()

    run(loop, main())


def test_sendto_without_address_when_unconnected_is_fatal(loop, expect_exception_handler):
    async def main():
        t, proto = await endpoint(loop, local_addr=("127.0.0.1", 0))
        t.sendto(b"nowhere")
        exc = await proto.lost
        assert isinstance(exc, TypeError)
        (context,) = expect_exception_handler
        assert context["message"] == "Fatal write error on datagram transport"
        assert context["exception"] is exc

    run(loop, main())


def test_sendto_bad_port_is_fatal(loop, expect_exception_handler):
    async def main():
        t, proto = await endpoint(loop, local_addr=("127.0.0.1", 0))
        t.sendto(b"x", ("127.0.0.1", 70000))
        exc = await proto.lost
        assert isinstance(exc, OverflowError)
        assert expect_exception_handler[0]["exception"] is exc

    run(loop, main())


def test_sendto_unresolvable_name_reaches_error_received(loop):
    async def main():
        t, proto = await endpoint(loop, local_addr=("127.0.0.1", 0))
        t.sendto(b"x", ("no-such-host.invalid", 9))
        assert len(proto.errors) == 1 and isinstance(proto.errors[0], socket.gaierror)
        assert not t.is_closing()
        t.close()

    run(loop, main())


def test_sendto_after_close_counts_and_warns(loop, caplog):
    address = unused_udp_port()

    async def main():
        t, proto = await endpoint(loop, remote_addr=address)
        t.close()
        await proto.lost
        with caplog.at_level(logging.WARNING, logger="asyncio"):
            for _ in range(7):
                t.sendto(b"late")
        warnings = [r for r in caplog.records if r.getMessage() == "socket.send() raised exception."]
        # close() counted one; asyncio warns from the fifth on.
        assert len(warnings) == 3

    run(loop, main())


def test_transport_descriptor_is_refused_to_add_reader(loop):
    async def main():
        t, _ = await endpoint(loop, local_addr=("127.0.0.1", 0))
        with pytest.raises(RuntimeError, match="is used by transport"):
            loop.add_reader(t.get_extra_info("socket").fileno(), lambda: None)
        t.close()

    run(loop, main())


# -- the backlog ---------------------------------------------------------------------------


async def fill_backlog(loop, path):
    """A connected Unix datagram endpoint whose peer does not read, sent to until one datagram
    waits in the backlog; returns (transport, protocol, datagrams the kernel took)."""
    t, proto = await endpoint(loop, remote_addr=path, family=socket.AF_UNIX)
    t.set_write_buffer_limits(high=4000, low=1000)
    taken = 0
    while t.get_write_buffer_size() == 0:
        t.sendto(b"k%05d" % taken)
        taken += 1
        assert taken < 100000
    return t, proto, taken - 1


def receiver(path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.setblocking(False)
    return sock


def test_backlog_pauses_and_resumes_writing(loop, sock_dir):
    path = os.path.join(sock_dir, "r")
    with receiver(path) as peer:

        async def main():
            t, proto, taken = await fill_backlog(loop, path)
            assert t.get_write_buffer_size() == 6 + HEADER
            queued = [b"q%05d" % i + b"." * 994 for i in range(5)]
            for data in queued:
                t.sendto(data)
            assert proto.events == ["made", "paused"]
            assert t.get_write_buffer_size() == 6 + 5 * 1000 + 6 * HEADER
            got = []
            for _ in range(100):
                got += drain(peer)
                if "resumed" in proto.events and t.get_write_buffer_size() <= 1000:
                    break
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.01)
            got += drain(peer)
            assert proto.events == ["made", "paused", "resumed"]
            assert got == [b"k%05d" % i for i in range(taken + 1)] + queued
            t.close()
            assert await proto.lost is None

        run(loop, main())


def test_close_sends_the_backlog_before_connection_lost(loop, sock_dir):
    path = os.path.join(sock_dir, "r")
    with receiver(path) as peer:

        async def main():
            t, proto, taken = await fill_backlog(loop, path)
            t.sendto(b"last")
            t.close()
            assert t.is_closing()
            await asyncio.sleep(0.05)
            assert not proto.lost.done()  # waiting for the peer to make room
            got = []
            while not proto.lost.done():
                got += drain(peer)
                await asyncio.sleep(0.01)
            assert await proto.lost is None
            got += drain(peer)
            assert got[-2:] == [b"k%05d" % taken, b"last"]
            assert len(got) == taken + 2

        run(loop, main())


def test_abort_drops_the_backlog(loop, sock_dir):
    path = os.path.join(sock_dir, "r")
    with receiver(path) as peer:

        async def main():
            t, proto, taken = await fill_backlog(loop, path)
            t.sendto(b"dropped")
            t.abort()
            assert await proto.lost is None
            assert proto.events == ["made", "lost"]
            got = drain(peer)
            assert len(got) == taken and b"dropped" not in got

        run(loop, main())


def test_sendto_non_contiguous_buffer_is_fatal(loop, expect_exception_handler):
    async def main():
        t, proto = await endpoint(loop, local_addr=("127.0.0.1", 0))
        t.sendto(memoryview(b"abcdef")[::2], t.get_extra_info("sockname"))
        exc = await proto.lost
        assert not isinstance(exc, OSError)
        assert expect_exception_handler[0]["message"] == "Fatal write error on datagram transport"

    run(loop, main())


def test_pyloop_backlog_addresses_resolve_as_the_socket_module_does(pyloop_module):
    """PyLoop only: a destination only the socket module converts, when it must wait in the
    backlog, is resolved to its numeric form with the socket module's rules and errors."""
    from data_bridge.pyloop._datagram import _numeric_address

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        assert _numeric_address(s, ("localhost", 53)) == ("127.0.0.1", 53)
        assert _numeric_address(s, ("", 1)) == ("0.0.0.0", 1)
        assert _numeric_address(s, ("<broadcast>", 1)) == ("255.255.255.255", 1)
        with pytest.raises(TypeError):
            _numeric_address(s, ("127.0.0.1", 1, 2))
        with pytest.raises(OverflowError):
            _numeric_address(s, ("127.0.0.1", 70000))
        with pytest.raises(socket.gaierror):
            _numeric_address(s, ("no-such-host.invalid", 1))
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        assert _numeric_address(s, "/tmp/x") == b"/tmp/x"

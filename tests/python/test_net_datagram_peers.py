# tests/python/test_net_datagram_peers.py: the sender addresses datagram_received gets, on both
# loops, when many peers talk at once (PyLoop reuses a recent peer's address object:
# bindings/peer_addresses.hpp): each is equal to the sender's getsockname(), in the socket
# module's form, hosts of every width, IPv6's four fields, more peers than PyLoop remembers,
# and replies reach the right peer whether sent at once or later.

import asyncio
import socket

from datagram_helpers import Datagrams, Echo
import pytest

from net_helpers import requires_ipv6, run

# Loopback hosts whose octets have one, two and three digits (Linux routes 127/8 to lo).
HOSTS = ["127.0.0.1", "127.1.22.233", "127.255.9.100", "127.100.0.10"]


def bound(family, host, count):
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(family, socket.SOCK_DGRAM)
            socks.append(s)
            s.bind((host, 0))
            s.setblocking(False)
    except BaseException:
        for s in socks:
            s.close()
        raise
    return socks


async def replies(loop, sock, count):
    got = []
    for _ in range(count):
        data, _ = await asyncio.wait_for(loop.sock_recvfrom(sock, 100), 5)
        got.append(data)
    return got


@pytest.mark.parametrize("peers", [5, 100])  # 100: more than PyLoop remembers (64)
def test_many_senders_in_rounds(loop, peers):
    async def main():
        t, proto = await loop.create_datagram_endpoint(
            lambda: Datagrams(loop), local_addr=("127.0.0.1", 0)
        )
        address = t.get_extra_info("sockname")
        socks = bound(socket.AF_INET, "127.0.0.1", peers)
        try:
            expected = []
            for r in range(3):  # the same peers again: addresses made before, or remade
                for i, s in enumerate(socks):
                    data = b"%d/%d" % (r, i)
                    s.sendto(data, address)
                    expected.append((data, s.getsockname()))
                await proto.wait(len(expected))
            assert proto.received == expected
            for _, addr in proto.received:
                assert type(addr) is tuple and len(addr) == 2
                assert type(addr[0]) is str and type(addr[1]) is int
        finally:
            for s in socks:
                s.close()
        t.close()

    run(loop, main())


def test_hosts_of_every_width(loop):
    async def main():
        t, proto = await loop.create_datagram_endpoint(
            lambda: Datagrams(loop), local_addr=("0.0.0.0", 0)
        )
        port = t.get_extra_info("sockname")[1]
        socks = [bound(socket.AF_INET, host, 2) for host in HOSTS]
        try:
            expected = []
            for r in range(2):
                for pair in socks:
                    for s in pair:
                        data = b"%d" % len(expected)
                        s.sendto(data, ("127.0.0.1", port))
                        expected.append((data, s.getsockname()))
                await proto.wait(len(expected))
            assert proto.received == expected
            assert {addr[0] for _, addr in proto.received} == set(HOSTS)
        finally:
            for pair in socks:
                for s in pair:
                    s.close()
        t.close()

    run(loop, main())


@requires_ipv6
def test_many_ipv6_senders(loop):
    async def main():
        t, proto = await loop.create_datagram_endpoint(
            lambda: Datagrams(loop), local_addr=("::1", 0)
        )
        address = t.get_extra_info("sockname")
        socks = bound(socket.AF_INET6, "::1", 6)
        try:
            expected = []
            for r in range(3):
                for s in socks:
                    data = b"%d" % len(expected)
                    s.sendto(data, address[:2])
                    expected.append((data, s.getsockname()))
                await proto.wait(len(expected))
            assert proto.received == expected
            assert all(len(addr) == 4 for _, addr in proto.received)
        finally:
            for s in socks:
                s.close()
        t.close()

    run(loop, main())


def test_echo_to_many_peers_reaches_each(loop):
    """Each reply goes to the address it came with (sendto at once, inside datagram_received)."""

    async def main():
        t, _ = await loop.create_datagram_endpoint(Echo, local_addr=("127.0.0.1", 0))
        address = t.get_extra_info("sockname")
        socks = bound(socket.AF_INET, "127.0.0.1", 40)
        try:
            for r in range(2):
                for i, s in enumerate(socks):
                    s.sendto(b"%d-%d" % (r, i), address)
                for i, s in enumerate(socks):
                    assert await replies(loop, s, 1) == [b"%d-%d" % (r, i)]
        finally:
            for s in socks:
                s.close()
        t.close()

    run(loop, main())


def test_replies_sent_later_reach_each_peer(loop):
    """Addresses kept and replied to after other datagrams arrived (not the latest one)."""

    async def main():
        t, proto = await loop.create_datagram_endpoint(
            lambda: Datagrams(loop), local_addr=("127.0.0.1", 0)
        )
        address = t.get_extra_info("sockname")
        socks = bound(socket.AF_INET, "127.0.0.1", 10)
        try:
            for r in range(2):
                for i, s in enumerate(socks):
                    s.sendto(b"%d-%d" % (r, i), address)
            await proto.wait(20)
            for data, addr in reversed(proto.received):
                t.sendto(data + b"!", addr)
            for i, s in enumerate(socks):
                got = await replies(loop, s, 2)
                assert got == [b"1-%d!" % i, b"0-%d!" % i]
        finally:
            for s in socks:
                s.close()
        t.close()

    run(loop, main())

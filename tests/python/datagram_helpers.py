# tests/python/datagram_helpers.py: shared pieces of the datagram tests (test_net_datagram*.py).

import asyncio
import shutil
import socket
import tempfile

import pytest


class Datagrams(asyncio.DatagramProtocol):
    """Records datagrams, errors and the life cycle; futures for waiting on them."""

    def __init__(self, loop):
        self.loop = loop
        self.transport = None
        self.received = []  # (data, addr) in arrival order
        self.errors = []  # exceptions given to error_received
        self.events = []  # "made", "paused", "resumed", "lost"
        self.lost = loop.create_future()
        self._want = None  # (count, future) waited for by wait_datagrams

    def connection_made(self, transport):
        self.transport = transport
        self.events.append("made")

    def datagram_received(self, data, addr):
        self.received.append((data, addr))
        self._check()

    def error_received(self, exc):
        self.errors.append(exc)
        self._check()

    def pause_writing(self):
        self.events.append("paused")

    def resume_writing(self):
        self.events.append("resumed")

    def connection_lost(self, exc):
        self.events.append("lost")
        if not self.lost.done():
            self.lost.set_result(exc)

    def _check(self):
        if self._want is not None:
            count, fut = self._want
            if len(self.received) + len(self.errors) >= count and not fut.done():
                fut.set_result(None)

    async def wait(self, count):
        """Until `count` datagrams and errors in all have arrived."""
        fut = self.loop.create_future()
        self._want = (count, fut)
        self._check()
        await fut
        self._want = None

    def data(self):
        return [d for d, _ in self.received]


class Echo(asyncio.DatagramProtocol):
    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.transport.sendto(data, addr)


@pytest.fixture
def sock_dir():
    # Short: a Unix socket path is limited to 107 bytes.
    d = tempfile.mkdtemp(prefix="pl-udp-", dir="/tmp")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def drain(sock):
    """Every datagram waiting on a plain non-blocking socket."""
    got = []
    while True:
        try:
            got.append(sock.recv(1 << 17))
        except BlockingIOError:
            return got


def unused_udp_port(host="127.0.0.1", family=socket.AF_INET):
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return s.getsockname()

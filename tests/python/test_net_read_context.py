# tests/python/test_net_read_context.py: the contextvars.Context a transport's read callbacks run
# in, when the callback itself changes the reading: pause_reading() then resume_reading() (as
# uvicorn's flow control does inside data_received), set_protocol(), or close(). asyncio runs the
# current read in the context captured when reading started and the reads after a resume in a
# copy of the context current at resume_reading(); the callback's context is left exactly once,
# and nothing is reported as unraisable.

import asyncio
import contextvars
import socket
import sys

import pytest

from net_helpers import connect_to_listener, run

var = contextvars.ContextVar("var", default="unset")


@pytest.fixture
def unraisable(monkeypatch):
    """Records what the interpreter reports through sys.unraisablehook during the test."""
    seen = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: seen.append(repr(u.exc_value)))
    return seen


class Resuming(asyncio.Protocol):
    """Pauses and resumes reading inside data_received; records the context variable."""

    def __init__(self, loop, switch_to=None):
        self.seen = []  # var.get() at each data_received
        self.more = loop.create_future()  # a data_received after the first
        self.switch_to = switch_to  # a protocol set_protocol() installs at the first read

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.seen.append(var.get())
        if len(self.seen) == 1:
            var.set("first read")
            self.transport.pause_reading()
            self.transport.resume_reading()
            if self.switch_to is not None:
                self.transport.set_protocol(self.switch_to)
        elif not self.more.done():
            self.more.set_result(None)


async def two_reads(loop, protocol, peer, wait_on):
    peer.send(b"one")
    await asyncio.sleep(0.05)
    peer.send(b"two")
    await wait_on.more
    return var.get()


def test_resume_reading_inside_data_received(loop, unraisable):
    async def main():
        transport, protocol, peer = await connect_to_listener(loop, lambda: Resuming(loop))
        try:
            outside = await two_reads(loop, protocol, peer, protocol)
        finally:
            transport.close()
            peer.close()
        return protocol.seen, outside

    # The second read runs in the copy taken at resume_reading(), inside the first read.
    assert run(loop, main()) == (["unset", "first read"], "unset")
    assert unraisable == []


def test_set_protocol_inside_data_received(loop, unraisable):
    async def main():
        second = Resuming(loop)
        second.seen.append("(switched)")  # its first data_received counts as "more"
        transport, first, peer = await connect_to_listener(
            loop, lambda: Resuming(loop, switch_to=second))
        second.transport = transport
        try:
            outside = await two_reads(loop, first, peer, second)
        finally:
            transport.close()
            peer.close()
        return first.seen, second.seen, outside

    assert run(loop, main()) == (["unset"], ["(switched)", "first read"], "unset")
    assert unraisable == []


def test_close_inside_datagram_received_leaves_the_context(loop, unraisable):
    class Closing(asyncio.DatagramProtocol):
        def __init__(self):
            self.lost = loop.create_future()

        def connection_made(self, transport):
            self.transport = transport

        def datagram_received(self, data, addr):
            var.set("in datagram_received")
            self.transport.close()

        def connection_lost(self, exc):
            self.lost.set_result(var.get())

    async def main():
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            transport, protocol = await loop.create_datagram_endpoint(
                Closing, local_addr=("127.0.0.1", 0))
            sender.sendto(b"x", transport.get_extra_info("sockname"))
            in_lost = await protocol.lost
        after = await loop.run_in_executor(None, var.get)  # a fresh copy of this task's context
        return in_lost, var.get(), after

    # connection_lost is scheduled from inside datagram_received, in its context.
    assert run(loop, main()) == ("in datagram_received", "unset", "unset")
    assert unraisable == []

# tests/python/pipe_helpers.py: shared pieces of the pipe tests (test_net_pipes.py,
# test_net_pipe_kinds.py): the descriptors a test opens, connecting a recording protocol to a
# read or write pipe, closing cleanly, reading the test's own end.

import asyncio
import os

import pytest

from net_helpers import Recorder

# More than a pipe holds (64 KiB on Linux): a write of this size leaves data queued.
BIG = 1 << 20


class Descriptors:
    """The descriptors a test opened: each is handed to a transport (which closes it, with its
    file object) or closed by the test; teardown closes the rest."""

    def __init__(self):
        self._open = set()

    def track(self, *fds):
        self._open.update(fds)
        return fds

    def pipe(self):
        return self.track(*os.pipe())

    def reader(self, fd):
        self._open.discard(fd)
        return open(fd, "rb", buffering=0)

    def writer(self, fd):
        self._open.discard(fd)
        return open(fd, "wb", buffering=0)

    def close(self, fd):
        self._open.discard(fd)
        os.close(fd)

    def close_all(self):
        for fd in self._open:
            os.close(fd)
        self._open.clear()


@pytest.fixture
def fds():
    d = Descriptors()
    yield d
    d.close_all()


async def connect_read(loop, pipe):
    transport, proto = await loop.connect_read_pipe(lambda: Recorder(loop), pipe)
    await asyncio.sleep(0)  # reading starts in the callback after connection_made
    return transport, proto


async def connect_write(loop, pipe):
    return await loop.connect_write_pipe(lambda: Recorder(loop), pipe)


async def close_cleanly(transport, proto):
    """close(), then connection_lost(None)."""
    transport.close()
    assert await proto.lost is None


def drain_fd(fd, n):
    """Blocking read of exactly n bytes from fd (test side, no loop)."""
    os.set_blocking(fd, True)
    out = bytearray()
    while len(out) < n:
        chunk = os.read(fd, n - len(out))
        assert chunk, "EOF before the data"
        out += chunk
    return bytes(out)

# tests/python/test_net_pipe_kinds.py: the pipe transports on both loops over what else they
# take (a FIFO, a socket, a pty with its EIO end) and refuse (a regular file, a closed one),
# read errors reported as asyncio reports them, the ResourceWarning of an unclosed transport,
# no descriptor leaked, and the native write()'s slot shared with the socket transport.

import asyncio
import errno
import gc
import os
import socket
import stat
import struct
import tty
import warnings

import pytest

from net_helpers import collapse, fd_count, payload, run, tcp_socketpair
from pipe_helpers import close_cleanly, connect_read, connect_write, drain_fd, fds  # noqa: F401


# -- FIFOs, sockets and ptys -----------------------------------------------------------------


def test_fifo_read_and_write(loop, tmp_path, fds):
    path = tmp_path / "fifo"
    os.mkfifo(path)
    r, w = fds.track(os.open(path, os.O_RDONLY | os.O_NONBLOCK), os.open(path, os.O_WRONLY))
    data = payload(200_000)

    async def main():
        rt, rp = await connect_read(loop, fds.reader(r))
        wt, wp = await connect_write(loop, fds.writer(w))
        assert stat.S_ISFIFO(os.fstat(r).st_mode)
        wt.write(data)
        await close_cleanly(wt, wp)
        assert await rp.lost is None
        assert bytes(rp.data) == data
        assert collapse(rp.events) == ["made", "data", "eof", "lost"]

    run(loop, main())


def test_socketpair_read_and_write(loop):
    a, b = socket.socketpair()

    async def main():
        rt, rp = await connect_read(loop, a)
        wt, wp = await connect_write(loop, b)
        assert rt.get_extra_info("pipe") is a
        wt.write(b"over a socket")
        assert await rp.wait_bytes(13) == b"over a socket"
        await close_cleanly(wt, wp)
        assert await rp.lost is None
        assert collapse(rp.events) == ["made", "data", "eof", "lost"]
        assert a.fileno() == -1 and b.fileno() == -1  # both sockets closed by their transports

    run(loop, main())


def test_socket_peer_closing_ends_write_transport(loop):
    a, b = socket.socketpair()

    async def main():
        wt, wp = await connect_write(loop, b)
        wt.write(b"1")
        a.setblocking(False)
        assert await loop.sock_recv(a, 10) == b"1"
        await close_cleanly(a, wp)

    run(loop, main())


def test_read_error_other_than_eio_is_reported(loop, expect_exception_handler):
    # A TCP socket read as a pipe; the peer resets it: ECONNRESET is not EIO, so asyncio's pipe
    # transport reports it (where a socket transport would log it in debug mode only).
    client, server = tcp_socketpair()

    async def main():
        rt, rp = await connect_read(loop, client)
        server.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        server.close()
        exc = await rp.lost
        assert isinstance(exc, ConnectionResetError)
        (context,) = expect_exception_handler
        assert context["message"] == "Fatal read error on pipe transport"
        assert context["exception"] is exc
        assert context["transport"] is rt and context["protocol"] is rp
        assert client.fileno() == -1

    run(loop, main())


def test_pty_read_until_eio(loop, fds):
    master, slave = fds.track(*os.openpty())

    async def main():
        rt, rp = await connect_read(loop, fds.reader(master))
        os.write(slave, b"from the pty")
        assert await rp.wait_bytes(12) == b"from the pty"
        fds.close(slave)
        # The master reads EIO once the slave is gone: connection_lost(OSError(EIO)), no
        # report to the exception handler (the fixture fails the test on one).
        exc = await rp.lost
        assert isinstance(exc, OSError) and exc.errno == 5
        assert "eof" not in rp.events

    run(loop, main())


def test_pty_write_and_bidirectional(loop, fds):
    master, slave = fds.track(*os.openpty())
    tty.setraw(slave)
    (write_slave,) = fds.track(os.dup(slave))

    async def main():
        rt, rp = await connect_read(loop, fds.reader(slave))
        wt, wp = await connect_write(loop, fds.writer(write_slave))
        wt.write(b"to master")
        await asyncio.sleep(0.01)
        assert drain_fd(master, 9) == b"to master"
        os.write(master, b"to slave")
        assert await rp.wait_bytes(8) == b"to slave"
        await close_cleanly(wt, wp)
        rt.close()
        assert await rp.lost is None

    run(loop, main())


def test_pty_write_after_master_closed_is_eio(loop, fds):
    master, slave = fds.track(*os.openpty())

    async def main():
        wt, wp = await connect_write(loop, fds.writer(slave))
        fds.close(master)
        await asyncio.sleep(0.01)
        assert not wt.is_closing()  # a character device has no peer-close watch
        wt.write(b"nobody reads")
        exc = await wp.lost
        assert isinstance(exc, OSError) and exc.errno == errno.EIO
        wt.write(b"dropped")

    run(loop, main())


# -- refused files, leaks, warnings -----------------------------------------------------------


def test_regular_file_is_refused(loop, tmp_path):
    path = tmp_path / "regular"
    path.write_bytes(b"content")

    async def main():
        with open(path, "rb") as f:
            with pytest.raises(ValueError, match="Pipe transport is"):
                await loop.connect_read_pipe(asyncio.Protocol, f)
            assert os.get_blocking(f.fileno())  # left untouched
        with open(path, "wb") as f:
            with pytest.raises(ValueError, match="Pipe transport is"):
                await loop.connect_write_pipe(asyncio.Protocol, f)
            assert os.get_blocking(f.fileno())

    with warnings.catch_warnings():
        warnings.simplefilter("error", ResourceWarning)  # no half-made transport warns
        run(loop, main())
        gc.collect()


# asyncio's transport, half made, fails in __del__ (no _closing yet for its repr).
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_closed_file_is_refused(loop, fds):
    r, w = fds.pipe()
    fds.close(w)
    pipe = fds.reader(r)
    pipe.close()

    async def main():
        with pytest.raises(ValueError):
            await loop.connect_read_pipe(asyncio.Protocol, pipe)

    run(loop, main())


def test_unclosed_transports_warn(loop, fds):
    r, w = fds.pipe()
    rpipe, wpipe = fds.reader(r), fds.writer(w)

    async def main():
        rt, _ = await connect_read(loop, rpipe)
        wt, _ = await connect_write(loop, wpipe)
        return rt, wt

    rt, wt = run(loop, main())
    loop.close()
    assert "open" in repr(rt) and "open" in repr(wt)
    with pytest.warns(ResourceWarning, match="unclosed transport") as caught:
        del rt, wt
        gc.collect()
    assert len([w for w in caught if "unclosed transport" in str(w.message)]) == 2
    assert rpipe.closed and wpipe.closed


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")
def test_no_descriptor_leak(loop, tmp_path, fds):
    async def one_round(i):
        r, w = fds.pipe()
        rt, rp = await connect_read(loop, fds.reader(r))
        wt, wp = await connect_write(loop, fds.writer(w))
        if i % 3 == 0:
            wt.write(payload(100_000))
            wt.close()
        elif i % 3 == 1:
            wt.write(payload(100_000))
            rt.close()  # the writer sees its reader go: BrokenPipeError or a clean close
        else:
            wt.abort()
        await wp.lost
        await rp.lost

    async def main():
        await one_round(0)
        gc.collect()
        before = fd_count()
        for i in range(60):
            await one_round(i)
        for _ in range(5):
            await asyncio.sleep(0)
        assert fd_count() == before

    run(loop, main(), timeout=20)


def test_native_write_needs_the_shared_slot_offset(pyloop_module):
    # The native write() finds a transport's StreamIO at one offset, shared by every class
    # it is installed on: a class with its `_io` elsewhere is refused, and nothing changes.
    from data_bridge.pyloop import _pyloop
    from data_bridge.pyloop._pipes import PipeWriteTransport
    from data_bridge.pyloop._transport import SocketTransport

    class Misplaced:
        __slots__ = ("a", "b", "c", "d", "e", "f", "g", "_io")

    with pytest.raises(TypeError, match="offset"):
        _pyloop.install_stream_methods(Misplaced)
    assert "write" not in vars(Misplaced)
    assert vars(PipeWriteTransport)["write"].__doc__ == vars(SocketTransport)["write"].__doc__

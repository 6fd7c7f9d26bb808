# tests/python/test_net_pipes.py: connect_read_pipe and connect_write_pipe on os.pipe(), on
# both loops: the events in order (data, EOF, connection_lost), pause_reading, a protocol's
# exception, asyncio.StreamReader over a read pipe, write and writelines, flow control with
# asyncio's water marks, write_eof, abort, and the reading end closing under a writer with or
# without queued data (BrokenPipeError). Other kinds of file: test_net_pipe_kinds.py.

import asyncio
import errno
import logging
import os

import pytest

from net_helpers import Recorder, collapse, payload, run
from pipe_helpers import BIG, close_cleanly, connect_read, connect_write, drain_fd, fds  # noqa: F401


# -- reading -------------------------------------------------------------------------------


def test_read_pipe_data_then_eof_then_lost(loop, fds):
    r, w = fds.pipe()
    pipe = fds.reader(r)

    async def main():
        transport, proto = await connect_read(loop, pipe)
        assert proto.events == ["made"]
        assert transport.get_extra_info("pipe") is pipe
        assert transport.get_protocol() is proto
        assert isinstance(transport, asyncio.ReadTransport)
        assert transport.is_reading() and not transport.is_closing()
        assert not os.get_blocking(r)
        assert f"fd={r}" in repr(transport)
        os.write(w, b"hello")
        assert await proto.wait_bytes(5) == b"hello"
        os.write(w, b" world")
        assert await proto.wait_bytes(11) == b"hello world"
        fds.close(w)
        assert await proto.lost is None
        assert collapse(proto.events) == ["made", "data", "eof", "lost"]
        assert transport.is_closing()
        assert pipe.closed  # the transport closed its pipe
        assert "closed" in repr(transport)

    run(loop, main())


def test_read_pipe_close_gives_lost_without_eof(loop, fds):
    r, w = fds.pipe()

    async def main():
        transport, proto = await connect_read(loop, fds.reader(r))
        transport.close()
        assert transport.is_closing() and not transport.is_reading()
        transport.close()  # a second close is a no-op
        assert await proto.lost is None
        assert proto.events == ["made", "lost"]

    run(loop, main())


def test_read_pipe_pause_and_resume_reading(loop, fds):
    r, w = fds.pipe()

    async def main():
        transport, proto = await connect_read(loop, fds.reader(r))
        transport.pause_reading()
        assert not transport.is_reading()
        transport.pause_reading()  # idempotent
        os.write(w, b"abc")
        for _ in range(5):
            await asyncio.sleep(0)
        await asyncio.sleep(0.02)
        assert proto.data == b""
        transport.resume_reading()
        assert transport.is_reading()
        transport.resume_reading()
        assert await proto.wait_bytes(3) == b"abc"
        fds.close(w)
        assert await proto.lost is None
        # Paused and resumed on a closed transport: nothing happens.
        transport.pause_reading()
        transport.resume_reading()
        assert not transport.is_reading()

    run(loop, main())


def test_read_pipe_large_data_arrives_whole(loop, fds):
    r, w = fds.pipe()
    data = payload(BIG)

    async def main():
        transport, proto = await connect_read(loop, fds.reader(r))
        writer = await loop.run_in_executor(None, os.write, w, data[: BIG // 2])
        rest = await loop.run_in_executor(None, os.write, w, data[writer:])
        assert writer + rest == BIG
        fds.close(w)
        assert await proto.lost is None
        assert bytes(proto.data) == data

    run(loop, main(), timeout=10)


def test_data_received_error_is_reported_and_reading_goes_on(loop, fds, expect_exception_handler):
    r, w = fds.pipe()

    class Failing(Recorder):
        def data_received(self, data):
            super().data_received(data)
            if len(self.data) == 1:
                raise ZeroDivisionError("protocol bug")

    async def main():
        transport, proto = await loop.connect_read_pipe(lambda: Failing(loop), fds.reader(r))
        os.write(w, b"1")
        await proto.wait_bytes(1)
        await asyncio.sleep(0.01)
        os.write(w, b"23")
        assert await proto.wait_bytes(3) == b"123"  # still reading
        assert not transport.is_closing()
        (context,) = expect_exception_handler
        assert isinstance(context["exception"], ZeroDivisionError)
        assert context["message"].startswith("Exception in callback ")
        assert context["message"].endswith("._read_ready()")
        await close_cleanly(transport, proto)

    run(loop, main())


def test_stream_reader_over_read_pipe(loop, fds):
    r, w = fds.pipe()
    data = payload(300_000)

    async def main():
        reader = asyncio.StreamReader(limit=1024)
        protocol = asyncio.StreamReaderProtocol(reader)
        transport, _ = await loop.connect_read_pipe(lambda: protocol, fds.reader(r))

        def produce():
            with fds.writer(w) as f:
                f.write(data)

        producing = loop.run_in_executor(None, produce)
        line_data = await reader.readexactly(10)
        got = line_data + await reader.read()
        await producing
        assert got == data
        assert reader.at_eof()
        transport.close()

    run(loop, main(), timeout=10)


def test_second_read_transport_on_one_descriptor_takes_over(loop, fds):
    # asyncio raises nothing: the second transport's reader replaces the first's.
    r, w = fds.pipe()
    pipe = fds.reader(r)

    async def main():
        first, p1 = await connect_read(loop, pipe)
        second, p2 = await connect_read(loop, pipe)
        os.write(w, b"x")
        assert await p2.wait_bytes(1) == b"x"
        assert p1.data == b""
        await close_cleanly(second, p2)
        first.close()
        assert await p1.lost is None

    run(loop, main())


def test_debug_mode_logs_the_peer_closing(loop, fds, caplog):
    loop.set_debug(True)
    r, w = fds.pipe()
    r2, w2 = fds.pipe()

    async def main():
        rt, rp = await connect_read(loop, fds.reader(r))
        wt, wp = await connect_write(loop, fds.writer(w2))
        with caplog.at_level(logging.DEBUG, logger="asyncio"):
            fds.close(w)
            fds.close(r2)
            assert await rp.lost is None
            assert await wp.lost is None
        closed = [r.getMessage() for r in caplog.records if "was closed by peer" in r.getMessage()]
        assert len(closed) == 2
        assert any(f"fd={r}" in m for m in closed) and any(f"fd={w2}" in m for m in closed)

    run(loop, main())


# -- writing -------------------------------------------------------------------------------


def test_write_pipe_writelines_with_a_released_memoryview_raises_type_error(loop, fds):
    # The pipe transport joins the pieces first on every version: TypeError, nothing written.
    r, w = fds.pipe()
    pipe = fds.writer(w)
    released = memoryview(b"gone")
    released.release()

    async def main():
        transport, proto = await connect_write(loop, pipe)
        with pytest.raises(TypeError):
            transport.writelines([b"first", released])
        transport.write(b"!")
        await asyncio.sleep(0)
        assert drain_fd(r, 1) == b"!"
        transport.close()

    run(loop, main())


def test_write_pipe_write_writelines_close(loop, fds):
    r, w = fds.pipe()
    pipe = fds.writer(w)

    async def main():
        transport, proto = await connect_write(loop, pipe)
        assert proto.events == ["made"]
        assert transport.get_extra_info("pipe") is pipe
        assert isinstance(transport, asyncio.WriteTransport)
        assert transport.can_write_eof()
        assert not os.get_blocking(w)
        transport.write(b"ab")
        transport.write(bytearray(b"cd"))
        transport.write(memoryview(b"xefx")[1:3])
        transport.writelines([b"gh", bytearray(b"ij"), memoryview(b"kl")])
        transport.write(b"")
        await asyncio.sleep(0)
        assert transport.get_write_buffer_size() == 0
        assert drain_fd(r, 12) == b"abcdefghijkl"
        transport.close()
        assert transport.is_closing()
        assert await proto.lost is None
        assert proto.events == ["made", "lost"]
        assert pipe.closed
        assert os.read(r, 10) == b""  # the write end is closed: EOF

    run(loop, main())


def test_write_pipe_refuses_non_bytes(loop, fds):
    r, w = fds.pipe()

    async def main():
        transport, proto = await connect_write(loop, fds.writer(w))
        # asyncio asserts (AssertionError); PyLoop raises TypeError, as a socket transport does.
        for bad in ("text", 1, None):
            with pytest.raises((TypeError, AssertionError)):
                transport.write(bad)
        await close_cleanly(transport, proto)

    run(loop, main())


def test_write_pipe_flow_control_pause_and_resume(loop, fds):
    r, w = fds.pipe()
    data = payload(BIG)

    async def main():
        wt, wp = await connect_write(loop, fds.writer(w))
        wt.set_write_buffer_limits(high=64 * 1024, low=16 * 1024)
        assert wt.get_write_buffer_limits() == (16 * 1024, 64 * 1024)
        wt.write(data)
        await asyncio.sleep(0)
        assert wp.events == ["made", "pause"]
        assert wt.get_write_buffer_size() > 64 * 1024
        # Drain through a read transport on the same loop: the writer resumes.
        rt, rp = await connect_read(loop, fds.reader(r))
        assert await rp.wait_bytes(BIG) == data
        for _ in range(50):
            if wt.get_write_buffer_size() == 0 and "resume" in wp.events:
                break
            await asyncio.sleep(0.005)
        assert wp.events == ["made", "pause", "resume"]
        assert wt.get_write_buffer_size() == 0
        await close_cleanly(wt, wp)
        assert await rp.lost is None
        assert collapse(rp.events) == ["made", "data", "eof", "lost"]

    run(loop, main(), timeout=10)


def test_write_pipe_close_flushes_queued_data_first(loop, fds):
    r, w = fds.pipe()
    data = payload(BIG)

    async def main():
        wt, wp = await connect_write(loop, fds.writer(w))
        wt.write(data)
        wt.close()
        assert wt.is_closing()
        await asyncio.sleep(0.01)
        assert wp.events[-1] != "lost"  # still flushing: nobody reads yet
        rt, rp = await connect_read(loop, fds.reader(r))
        assert await wp.lost is None
        assert await rp.lost is None
        assert bytes(rp.data) == data

    run(loop, main(), timeout=10)


def test_write_eof_then_writes_are_dropped_with_asyncio_warning(loop, caplog, fds):
    r, w = fds.pipe()

    async def main():
        wt, wp = await connect_write(loop, fds.writer(w))
        wt.write(b"last")
        wt.write_eof()
        assert wt.is_closing()
        wt.write_eof()  # no-op
        with caplog.at_level(logging.WARNING, logger="asyncio"):
            for _ in range(7):
                wt.write(b"dropped")  # no exception: counted, and logged past a threshold
        warned = [r for r in caplog.records if "pipe closed by peer" in r.getMessage()]
        assert len(warned) == 2
        assert await wp.lost is None
        assert drain_fd(r, 4) == b"last"
        assert os.read(r, 10) == b""

    run(loop, main())


def test_write_pipe_abort_drops_queued_data(loop, fds):
    r, w = fds.pipe()

    async def main():
        wt, wp = await connect_write(loop, fds.writer(w))
        wt.write(payload(BIG))
        await asyncio.sleep(0)
        assert wt.get_write_buffer_size() > 0
        wt.abort()
        assert wt.is_closing()
        assert wt.get_write_buffer_size() == 0
        wt.close()  # closing already: nothing more
        assert await wp.lost is None
        await asyncio.sleep(0.01)
        assert wp.events == ["made", "pause", "lost"]

    run(loop, main())
    received = 0
    while chunk := os.read(r, 1 << 16):
        received += len(chunk)
    assert 0 < received < BIG


def test_write_pipe_abort_after_small_write_still_delivers_it(loop, fds):
    # asyncio's write() has handed the bytes to the kernel before abort() is called.
    r, w = fds.pipe()

    async def main():
        wt, wp = await connect_write(loop, fds.writer(w))
        wt.write(b"sent")
        wt.abort()
        assert await wp.lost is None

    run(loop, main())
    assert os.read(r, 10) == b"sent"
    assert os.read(r, 10) == b""


def test_reader_closing_under_queued_data_is_broken_pipe(loop, fds):
    r, w = fds.pipe()

    async def main():
        wt, wp = await connect_write(loop, fds.writer(w))
        wt.write(payload(BIG))
        await asyncio.sleep(0)
        assert wt.get_write_buffer_size() > 0
        fds.close(r)
        exc = await wp.lost
        assert type(exc) is BrokenPipeError
        assert wt.is_closing()
        assert wt.get_write_buffer_size() == 0

    run(loop, main())


def test_reader_closing_with_nothing_queued_is_a_clean_close(loop, fds):
    r, w = fds.pipe()

    async def main():
        wt, wp = await connect_write(loop, fds.writer(w))
        wt.write(b"x")
        await asyncio.sleep(0.01)
        fds.close(r)
        assert await wp.lost is None
        assert wt.is_closing()

    run(loop, main())


def test_write_to_closed_reader_reports_broken_pipe(loop, fds):
    # The reading end is gone before the first write: the write itself fails with EPIPE.
    r, w = fds.pipe()

    async def main():
        wt, wp = await connect_write(loop, fds.writer(w))
        await asyncio.sleep(0)
        fds.close(r)
        wt.write(b"data")
        exc = await wp.lost
        assert isinstance(exc, BrokenPipeError) and exc.errno == errno.EPIPE
        assert wt.is_closing()
        wt.write(b"more")  # dropped, no exception

    run(loop, main())


@pytest.mark.pyloop
def test_write_pipe_closed_in_connection_made_leaves_no_watch(pyloop_module):
    """A write pipe transport closed inside connection_made, before the callback that watches
    its descriptor for the reader closing has run, must not install that watch afterwards: the
    descriptor is closed by then, and a stale watch on its number blinds whatever reuses it.
    (asyncio's _UnixWritePipeTransport has this flaw: it installs the reader all the same.)"""

    class CloseAtOnce(asyncio.Protocol):
        def connection_made(self, transport):
            transport.close()

    loop = pyloop_module.new_event_loop()
    # Not in debug mode: there asyncio's own connect_write_pipe (which PyLoop uses) logs
    # pipe.fileno() after connection_made and raises ValueError for the pipe closed by then.
    loop.set_debug(False)

    async def main():
        r, w = os.pipe()
        try:
            await loop.connect_write_pipe(CloseAtOnce, open(w, "wb", buffering=0))
            await asyncio.sleep(0.01)  # the transport is gone, and its descriptor closed
            r2, w2 = os.pipe()  # takes the closed descriptor's number
            try:
                readable = loop.create_future()
                loop.add_reader(r2, lambda: readable.done() or readable.set_result(True))
                os.write(w2, b"x")
                assert await asyncio.wait_for(readable, 2)
                loop.remove_reader(r2)
            finally:
                os.close(r2)
                os.close(w2)
        finally:
            os.close(r)

    try:
        run(loop, main())
    finally:
        loop.close()

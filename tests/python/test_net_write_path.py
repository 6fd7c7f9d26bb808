# tests/python/test_net_write_path.py: the stream transport's write path where PyLoop queues
# writes and sends them at the end of the loop turn (core/src/stream_writer.cpp, bindings/bind_stream_write.cpp). Each
# test runs on asyncio and PyLoop and asserts what a peer or the protocol can observe, so that
# queueing never shows: data mutated after write(), abort() or close() right after write(),
# get_write_buffer_size() after a small write, writes outside a running loop, pause_writing()
# inside write(). The coalescing itself (one send per transport per turn) is PyLoop's own
# and is checked through the loop's native send counter, as is its exception: a transport
# that writes once per turn sends inside write(), until a burst puts it back to coalescing.

import asyncio
import select
import socket
import sys

import pytest

from net_helpers import Recorder, connect_to_listener, payload, recv_exactly, recv_until_eof, run


def is_pyloop(loop):
    return hasattr(loop, "_native_stats")


async def _close(transport, proto, peer):
    transport.close()
    peer.close()
    await proto.lost


def test_writes_of_one_callback_cost_one_send(loop):
    header = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"

    async def main():
        transport, proto, peer = await connect_to_listener(loop, lambda: Recorder(loop))
        before = loop._native_stats()["sends"] if is_pyloop(loop) else None
        transport.write(header)
        transport.write(b"hel")
        transport.writelines([b"l", bytearray(b"o")])
        await asyncio.sleep(0)  # the turn ends: everything is sent
        if is_pyloop(loop):
            assert loop._native_stats()["sends"] - before == 1
        assert await recv_exactly(loop, peer, len(header) + 5) == header + b"hello"
        await _close(transport, proto, peer)

    run(loop, main())


def test_a_coroutine_about_to_wait_has_sent_what_it_wrote(loop):
    # Code that creates a future is about to wait (streams, locks, queues and sleep do it
    # through loop.create_future()): its writes are on the wire by then, as they are on
    # asyncio, which sends inside write(). Writes before that still share one send.
    async def main():
        transport, proto, peer = await connect_to_listener(loop, lambda: Recorder(loop))
        before = loop._native_stats()["sends"] if is_pyloop(loop) else None
        transport.write(b"head|")
        transport.write(b"body")
        waiter = loop.create_future()
        readable, _, _ = select.select([peer], [], [], 2.0)  # the loop does not run meanwhile
        assert readable
        if is_pyloop(loop):
            assert loop._native_stats()["sends"] - before == 1
        waiter.cancel()
        assert await recv_exactly(loop, peer, 9) == b"head|body"
        await _close(transport, proto, peer)

    run(loop, main())


async def _write_once_per_turn(loop, transport, peer, turns):
    # A request/response rhythm: one write per loop turn, each read back by the peer.
    for i in range(turns):
        message = b"%d|" % i
        transport.write(message)
        await asyncio.sleep(0)
        assert await recv_exactly(loop, peer, len(message)) == message


def test_a_transport_writing_once_per_turn_sends_inside_write(loop):
    # Nothing is gained by holding the only write of a turn until the callback ends: after a
    # few turns of single writes the transport sends inside write(), as asyncio always does.
    async def main():
        transport, proto, peer = await connect_to_listener(loop, lambda: Recorder(loop))
        await _write_once_per_turn(loop, transport, peer, 3)
        before = loop._native_stats()["sends"] if is_pyloop(loop) else None
        transport.write(b"answer")
        readable, _, _ = select.select([peer], [], [], 2.0)  # the loop does not run meanwhile
        assert readable
        if is_pyloop(loop):
            assert loop._native_stats()["sends"] - before == 1
        assert await recv_exactly(loop, peer, 6) == b"answer"
        await _close(transport, proto, peer)

    run(loop, main())


def test_a_burst_after_single_writes_costs_one_extra_send_then_coalesces(loop):
    async def main():
        transport, proto, peer = await connect_to_listener(loop, lambda: Recorder(loop))
        await _write_once_per_turn(loop, transport, peer, 3)
        before = loop._native_stats()["sends"] if is_pyloop(loop) else None
        transport.write(b"HEAD|")  # sent inside write(): single writes came before
        transport.write(b"body|")  # a second write this turn: queued, coalescing again
        transport.write(b"more|")
        await asyncio.sleep(0)
        if is_pyloop(loop):
            assert loop._native_stats()["sends"] - before == 2
        assert await recv_exactly(loop, peer, 15) == b"HEAD|body|more|"
        before = loop._native_stats()["sends"] if is_pyloop(loop) else None
        transport.write(b"head|")
        transport.write(b"body")
        await asyncio.sleep(0)
        if is_pyloop(loop):
            assert loop._native_stats()["sends"] - before == 1
        assert await recv_exactly(loop, peer, 9) == b"head|body"
        await _close(transport, proto, peer)

    run(loop, main())


def test_mutable_data_changed_after_write_is_sent_as_written(loop):
    async def main():
        transport, proto, peer = await connect_to_listener(loop, lambda: Recorder(loop))
        data = bytearray(b"before")
        view_source = bytearray(b"memory")
        transport.write(data)
        transport.write(memoryview(view_source))
        transport.writelines([data])
        data[:] = b"AFTER!"
        view_source[:] = b"CHANGE"
        assert await recv_exactly(loop, peer, 18) == b"beforememorybefore"
        await _close(transport, proto, peer)

    run(loop, main())


def test_large_mutable_buffer_is_sent_inside_write(loop):
    # Copying a large buffer to send it at the end of the turn costs more than the system
    # call coalescing would save: PyLoop sends it inside write(), as asyncio does.
    async def main():
        transport, proto, peer = await connect_to_listener(loop, lambda: Recorder(loop))
        source = bytearray(payload(64 * 1024))
        expected = bytes(source)
        before = loop._native_stats()["sends"] if is_pyloop(loop) else None
        transport.write(memoryview(source))
        if is_pyloop(loop):
            assert loop._native_stats()["sends"] - before == 1
        assert transport.get_write_buffer_size() == 0
        source[:] = bytes(len(source))  # the kernel has it already
        transport.write(b"tail")  # joins the next send, after the buffer
        assert await recv_exactly(loop, peer, len(expected) + 4) == expected + b"tail"
        await _close(transport, proto, peer)

    run(loop, main())


def test_large_buffer_the_kernel_takes_in_part_is_delivered_whole(loop):
    async def main():
        transport, proto, peer = await connect_to_listener(loop, lambda: Recorder(loop))
        transport.set_write_buffer_limits(high=64 * 1024 * 1024)
        data = payload(8 * 1024 * 1024)  # more than the socket buffers hold
        transport.write(memoryview(bytearray(data)))
        assert transport.get_write_buffer_size() > 0
        transport.write(b"end")
        assert await recv_exactly(loop, peer, len(data) + 3) == data + b"end"
        await _close(transport, proto, peer)

    run(loop, main())


def test_abort_right_after_write_still_delivers_what_was_written(loop):
    # asyncio hands small writes to the kernel inside write(); abort() only drops what the
    # kernel did not take. Queued writes must not be lost by abort().
    async def main():
        transport, proto, peer = await connect_to_listener(loop, lambda: Recorder(loop))
        transport.write(b"last words")
        transport.abort()
        await proto.lost
        assert await recv_until_eof(loop, peer) == b"last words"
        peer.close()

    run(loop, main())


def test_close_right_after_write_delivers_then_eof(loop):
    async def main():
        transport, proto, peer = await connect_to_listener(loop, lambda: Recorder(loop))
        transport.write(b"x" * 1000)
        transport.writelines([b"y" * 10, b"z"])
        transport.close()
        assert transport.is_closing()
        assert await recv_until_eof(loop, peer) == b"x" * 1000 + b"y" * 10 + b"z"
        await proto.lost
        peer.close()

    run(loop, main())


def test_small_write_leaves_nothing_buffered(loop):
    async def main():
        transport, proto, peer = await connect_to_listener(loop, lambda: Recorder(loop))
        transport.write(b"abc")
        assert transport.get_write_buffer_size() == 0
        assert await recv_exactly(loop, peer, 3) == b"abc"
        await _close(transport, proto, peer)

    run(loop, main())


def test_write_outside_the_running_loop_is_sent_at_once(loop):
    transport, proto, peer = run(loop, connect_to_listener(loop, lambda: Recorder(loop)))
    transport.write(b"no loop running")
    peer.setblocking(True)
    peer.settimeout(2.0)
    assert peer.recv(100) == b"no loop running"
    peer.setblocking(False)
    run(loop, _close(transport, proto, peer))


def test_write_past_high_water_pauses_inside_write(loop):
    class Producer(Recorder):
        def pause_writing(self):
            super().pause_writing()
            self.paused_inside = self.in_write

    async def main():
        transport, proto, peer = await connect_to_listener(loop, lambda: Producer(loop))
        transport.set_write_buffer_limits(high=1024, low=256)
        proto.in_write = True
        proto.paused_inside = None
        transport.write(payload(8 << 20))  # far more than the kernel takes at once
        proto.in_write = False
        assert proto.paused_inside is True
        assert transport.get_write_buffer_size() > 1024
        got = await recv_exactly(loop, peer, 8 << 20)
        assert got == payload(8 << 20)
        await _close(transport, proto, peer)

    run(loop, main(), timeout=10)


def test_write_to_reset_peer_reports_connection_lost_with_error(loop):
    async def main():
        transport, proto, peer = await connect_to_listener(loop, lambda: Recorder(loop))
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        peer.close()  # RST
        await asyncio.sleep(0.05)
        for _ in range(3):
            transport.write(b"into the void")
            await asyncio.sleep(0.01)
        exc = await proto.lost
        assert isinstance(exc, (ConnectionResetError, BrokenPipeError))
        transport.write(b"after")  # dropped and counted, as asyncio does: no exception

    run(loop, main())


@pytest.mark.parametrize("bad", ["text", 42, None])
def test_writelines_rejects_non_bytes_and_writes_nothing(loop, bad):
    async def main():
        transport, proto, peer = await connect_to_listener(loop, lambda: Recorder(loop))
        with pytest.raises(TypeError):
            transport.writelines([b"ok", bad])
        transport.write(b"!")
        assert await recv_exactly(loop, peer, 1) == b"!"
        await _close(transport, proto, peer)

    run(loop, main())


def test_writelines_with_a_released_memoryview_raises_and_writes_nothing(loop):
    # 3.11's b"".join reports the refused export as TypeError; 3.12+ build memoryview(item)
    # first, which raises ValueError. Either way nothing of the call is written.
    released = memoryview(b"gone")
    released.release()
    expected = ValueError if sys.version_info >= (3, 12) else TypeError

    async def main():
        transport, proto, peer = await connect_to_listener(loop, lambda: Recorder(loop))
        with pytest.raises(expected):
            transport.writelines([b"first", released])
        transport.write(b"!")
        assert await recv_exactly(loop, peer, 1) == b"!"
        await _close(transport, proto, peer)

    run(loop, main())


def test_write_then_keyboard_interrupt_still_sends(loop):
    # A callback writes, then KeyboardInterrupt leaves run_forever: on asyncio the data was
    # already handed to the kernel; PyLoop's end-of-turn flush runs even when a callback aborts.
    async def connect():
        return await connect_to_listener(loop, lambda: Recorder(loop))

    transport, proto, peer = run(loop, connect())

    def write_and_interrupt():
        transport.write(b"before the interrupt")
        raise KeyboardInterrupt

    loop.call_soon(write_and_interrupt)
    with pytest.raises(KeyboardInterrupt):
        loop.run_forever()
    peer.setblocking(True)
    peer.settimeout(2.0)
    assert peer.recv(100) == b"before the interrupt"
    peer.setblocking(False)
    run(loop, _close(transport, proto, peer))


class _Collector(asyncio.BufferedProtocol):
    def __init__(self, loop):
        self.buffer = bytearray(8)  # small: a message arrives in several reads
        self.data = bytearray()
        self.lost = loop.create_future()

    def get_buffer(self, sizehint):
        return self.buffer

    def buffer_updated(self, nbytes):
        self.data += self.buffer[:nbytes]

    def connection_lost(self, exc):
        self.lost.set_result(exc)


def test_switching_between_protocol_and_buffered_protocol(loop):
    async def main():
        transport, first, peer = await connect_to_listener(loop, lambda: Recorder(loop))
        await loop.sock_sendall(peer, b"plain")
        await first.wait_bytes(5)
        buffered = _Collector(loop)
        transport.set_protocol(buffered)
        await loop.sock_sendall(peer, b"into the protocol's own buffer")
        for _ in range(200):
            if len(buffered.data) >= 30:
                break
            await asyncio.sleep(0.005)
        assert bytes(buffered.data) == b"into the protocol's own buffer"
        last = Recorder(loop)
        transport.set_protocol(last)
        await loop.sock_sendall(peer, b"back")
        assert await last.wait_bytes(4) == b"back"
        assert bytes(first.data) == b"plain"
        transport.close()
        assert await last.lost is None
        peer.close()

    run(loop, main())

# tests/python/test_net_flow_control.py: write flow control (pause_writing / resume_writing at
# the high and low water marks, called synchronously from write() and set_write_buffer_limits(),
# memory bounded against a slow reader, StreamWriter.drain waiting) and read flow control
# (pause_reading stops data_received and pushes back on the sender).

import asyncio

import pytest

from net_helpers import Recorder, connect_to_listener, payload, recv_exactly, run


class Watcher(Recorder):
    """Records the write-buffer size seen at each pause/resume call."""

    def __init__(self, loop):
        super().__init__(loop)
        self.sizes = []
        self.resumed = None

    def pause_writing(self):
        super().pause_writing()
        self.sizes.append(("pause", self.transport.get_write_buffer_size()))

    def resume_writing(self):
        super().resume_writing()
        self.sizes.append(("resume", self.transport.get_write_buffer_size()))
        if self.resumed is not None and not self.resumed.done():
            self.resumed.set_result(None)


async def drain_peer(loop, peer, n):
    """Read n bytes from the peer in small steps (a slow reader)."""
    got = 0
    while got < n:
        chunk = await loop.sock_recv(peer, min(65536, n - got))
        assert chunk
        got += len(chunk)
    return got


def test_pause_writing_called_inside_write(loop):
    async def main():
        transport, proto, peer = await connect_to_listener(loop, lambda: Watcher(loop))
        low, high = transport.get_write_buffer_limits()
        data = payload(8 << 20)
        transport.write(data)  # far beyond socket buffers + high water
        assert transport.get_write_buffer_size() > high
        # pause_writing ran synchronously, from within write()
        assert proto.events == ["made", "pause"]
        assert proto.sizes[0][1] > high
        # the peer reads everything: resume_writing at or below the low water mark
        proto.resumed = loop.create_future()
        reader = asyncio.ensure_future(drain_peer(loop, peer, len(data)))
        await proto.resumed
        assert proto.sizes[-1][0] == "resume"
        assert proto.sizes[-1][1] <= low
        await reader
        transport.close()
        peer.close()
        await proto.lost
        assert [k for k, _ in proto.sizes] == ["pause", "resume"]

    run(loop, main())


def test_small_writes_do_not_pause(loop):
    async def main():
        transport, proto, peer = await connect_to_listener(loop, lambda: Watcher(loop))
        for _ in range(10):
            transport.write(b"x" * 100)
        await recv_exactly(loop, peer, 1000)
        assert proto.events == ["made"]
        transport.close()
        peer.close()
        await proto.lost

    run(loop, main())


def test_lowering_high_water_pauses_immediately(loop):
    async def main():
        transport, proto, peer = await connect_to_listener(loop, lambda: Watcher(loop))
        transport.set_write_buffer_limits(high=64 << 20)  # nothing pauses on the next write
        transport.write(payload(8 << 20))
        buffered = transport.get_write_buffer_size()
        assert buffered > 0
        assert "pause" not in proto.events
        transport.set_write_buffer_limits(high=buffered - 1)
        assert proto.events[-1] == "pause", "set_write_buffer_limits must pause at once"
        transport.abort()
        peer.close()
        await proto.lost

    run(loop, main())


def test_high_water_zero(loop):
    # high=0: pause as soon as anything is buffered, resume only when the buffer is empty.
    async def main():
        transport, proto, peer = await connect_to_listener(loop, lambda: Watcher(loop))
        transport.set_write_buffer_limits(high=0)
        assert transport.get_write_buffer_limits() == (0, 0)
        data = payload(4 << 20)
        transport.write(data)
        assert transport.get_write_buffer_size() > 0
        assert proto.events[-1] == "pause"
        proto.resumed = loop.create_future()
        reader = asyncio.ensure_future(drain_peer(loop, peer, len(data)))
        await proto.resumed
        assert proto.sizes[-1] == ("resume", 0)
        await reader
        transport.close()
        peer.close()
        await proto.lost

    run(loop, main())


def test_memory_bounded_against_slow_reader(loop):
    # A producer writes 64 KiB chunks whenever it is not paused; a slow reader drains 8 MiB.
    # The write buffer never grows beyond the high water mark plus one chunk.
    chunk = payload(64 * 1024)
    total = 8 << 20

    class Producer(Watcher):
        def connection_made(self, transport):
            super().connection_made(transport)
            self.paused = False
            self.sent = 0
            self.max_buffer = 0
            transport.set_write_buffer_limits(high=256 * 1024, low=64 * 1024)

        def pause_writing(self):
            super().pause_writing()
            self.paused = True

        def resume_writing(self):
            super().resume_writing()
            self.paused = False
            self.produce()

        def produce(self):
            while not self.paused and self.sent < total:
                self.transport.write(chunk)
                self.sent += len(chunk)
                self.max_buffer = max(self.max_buffer, self.transport.get_write_buffer_size())

    async def main():
        transport, proto, peer = await connect_to_listener(loop, lambda: Producer(loop))
        proto.produce()
        got = 0
        while got < total:
            data = await loop.sock_recv(peer, 32 * 1024)
            assert data
            got += len(data)
            if got % (1 << 20) < 32 * 1024:
                await asyncio.sleep(0.001)  # slow down now and then
        assert proto.sent == total
        assert proto.max_buffer <= 256 * 1024 + len(chunk)
        pauses = [k for k, _ in proto.sizes]
        assert pauses and pauses[0] == "pause"
        # strictly alternating: never two pauses or two resumes in a row
        assert all(a != b for a, b in zip(pauses, pauses[1:]))
        transport.close()
        peer.close()
        await proto.lost

    run(loop, main(), timeout=5)


def test_drain_waits_for_slow_reader(loop):
    async def main():
        accepted = loop.create_future()

        async def handler(reader, writer):
            accepted.set_result((reader, writer))

        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        reader, writer = await asyncio.open_connection(*server.sockets[0].getsockname())
        s_reader, s_writer = await accepted
        data = payload(8 << 20)
        writer.write(data)
        drain = asyncio.ensure_future(writer.drain())
        await asyncio.sleep(0.05)
        assert not drain.done(), "drain() returned while the peer read nothing"
        assert await s_reader.readexactly(len(data)) == data
        await drain
        writer.close()
        await writer.wait_closed()
        s_writer.close()
        await s_writer.wait_closed()
        server.close()
        await server.wait_closed()

    run(loop, main())


def test_pause_reading_pushes_back_on_sender(loop):
    # With reading paused, nothing is delivered and the kernel buffers fill: the peer's
    # sendall cannot finish until reading resumes.
    size = 16 << 20
    data = payload(size, seed=9)

    async def main():
        transport, proto, peer = await connect_to_listener(loop, lambda: Recorder(loop))
        transport.pause_reading()
        sender = asyncio.ensure_future(loop.sock_sendall(peer, data))
        await asyncio.sleep(0.1)
        assert proto.data == b""
        assert not sender.done(), "sender finished although the receiver paused reading"
        transport.resume_reading()
        assert await proto.wait_bytes(size) == data
        await sender
        transport.close()
        peer.close()
        await proto.lost

    run(loop, main())


def test_pause_reading_while_data_pending(loop):
    # Data already buffered in the kernel is not delivered while paused.
    async def main():
        transport, proto, peer = await connect_to_listener(loop, lambda: Recorder(loop))
        await loop.sock_sendall(peer, b"a" * 1000)
        await proto.wait_bytes(1000)
        transport.pause_reading()
        await loop.sock_sendall(peer, b"b" * 1000)
        count = proto.events.count("data")
        for _ in range(10):
            await asyncio.sleep(0.005)
        assert proto.events.count("data") == count
        transport.resume_reading()
        assert (await proto.wait_bytes(2000))[1000:] == b"b" * 1000
        transport.close()
        peer.close()
        await proto.lost

    run(loop, main())


@pytest.mark.parametrize("high,low", [(1024, 0), (100_000, 50_000)])
def test_resume_writing_respects_low_water(loop, high, low):
    async def main():
        transport, proto, peer = await connect_to_listener(loop, lambda: Watcher(loop))
        transport.set_write_buffer_limits(high=high, low=low)
        data = payload(6 << 20)
        transport.write(data)
        assert proto.events[-1] == "pause"
        proto.resumed = loop.create_future()
        reader = asyncio.ensure_future(drain_peer(loop, peer, len(data)))
        await proto.resumed
        assert proto.sizes[-1][1] <= low
        await reader
        transport.close()
        peer.close()
        await proto.lost

    run(loop, main())

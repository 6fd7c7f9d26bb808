"""tests/checks/test_hot_path_leaks.py — hot-path round trips leave memory flat.

Each scenario runs a warm-up batch, then measures the number of live GC-tracked objects and
the process RSS, runs the full million (100k for the socket round trips, which each cost a
few system calls), and measures again. A leaked reference per call would show as that many
extra objects (or tens of MB of RSS); the bounds are far below that and far above allocator
noise.
"""

import asyncio
import gc
import os
import socket

import pytest

import data_bridge.pyloop as pyloop

ROUND_TRIPS = 1_000_000
BATCH = 1_000  # callbacks per loop iteration batch
MAX_OBJECT_GROWTH = 1_000
MAX_RSS_GROWTH = 8 * 1024 * 1024


def rss_bytes() -> int:
    with open(f"/proc/{os.getpid()}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def call_soon_round_trips(loop, n):
    done = 0

    def tick(value):
        nonlocal done
        done += 1

    for start in range(0, n, BATCH):
        for i in range(BATCH):
            loop.call_soon(tick, i)
        loop.call_soon(loop.stop)
        loop.run_forever()
    assert done == n


def call_later_round_trips(loop, n):
    fired = 0

    def tick():
        nonlocal fired
        fired += 1

    for start in range(0, n, BATCH):
        handles = [loop.call_later(0, tick) for _ in range(BATCH)]
        # Cancel a tenth: cancelled timers must be released too.
        for h in handles[::10]:
            h.cancel()
        loop.call_later(0, loop.stop)
        loop.run_forever()
    assert fired == n - n // 10


def future_round_trips(loop, n):
    async def main():
        for i in range(n):
            fut = loop.create_future()
            loop.call_soon(fut.set_result, i)
            assert await fut == i

    loop.run_until_complete(main())


def sock_round_trips(loop, n):
    """sock_sendall / sock_recv_into echoed by a sock_recv / sock_sendall task over a
    socketpair: every client receive and most server receives wait for readiness (the native
    wait path), the sends complete at once. Every tenth round also cancels a waiting
    sock_recv; then, once per thousand rounds, a sock_sendall waiting half way is cancelled
    (on a second pair)."""
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    filler = b"x" * (1 << 20)  # more than the socket takes: its sock_sendall waits

    async def echo():
        while data := await loop.sock_recv(b, 65536):
            await loop.sock_sendall(b, data)

    async def cancel_waiting(call):
        task = loop.create_task(call)
        await asyncio.sleep(0)
        assert not task.done()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    async def main():
        server = loop.create_task(echo())
        buf = bytearray(64)
        for i in range(n):
            await loop.sock_sendall(a, b"ping %d" % (i % 10))
            assert await loop.sock_recv_into(a, buf) == 6
            if i % 10 == 0:
                await cancel_waiting(loop.sock_recv(a, 100))
        # 1 MiB does not fit in a socketpair: each sock_sendall waits, is cancelled, and
        # what it sent is read off the other end so that the next one waits as well.
        c, d = socket.socketpair()
        c.setblocking(False)
        d.setblocking(False)
        for _ in range(n // 1000 + 1):
            await cancel_waiting(loop.sock_sendall(c, filler))
            while True:
                try:
                    d.recv(1 << 20)
                except BlockingIOError:
                    break
        c.close()
        d.close()
        a.shutdown(socket.SHUT_WR)
        await server

    try:
        loop.run_until_complete(main())
    finally:
        a.close()
        b.close()


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc for RSS")
@pytest.mark.parametrize(
    "scenario,count",
    [
        (call_soon_round_trips, ROUND_TRIPS),
        (call_later_round_trips, ROUND_TRIPS),
        (future_round_trips, ROUND_TRIPS),
        (sock_round_trips, 100_000),
    ],
    ids=["call_soon", "call_later", "future", "sock"],
)
def test_hot_path_leaves_objects_and_rss_flat(scenario, count):
    assert_flat(scenario, warm_up=20_000, count=count)


def assert_flat(scenario, warm_up, count):
    """Runs scenario(loop, warm_up), then scenario(loop, count): objects and RSS stay flat."""
    loop = pyloop.new_event_loop()
    try:
        scenario(loop, warm_up)  # warm up free lists, allocator arenas, caches
        gc.collect()
        objects_before = len(gc.get_objects())
        rss_before = rss_bytes()
        scenario(loop, count)
        gc.collect()
        objects_after = len(gc.get_objects())
        rss_after = rss_bytes()
    finally:
        loop.close()
    assert objects_after - objects_before < MAX_OBJECT_GROWTH, (objects_before, objects_after)
    if os.environ.get("PYLOOP_SANITIZER_BUILD") != "1":
        # ASan's quarantine holds freed memory back on purpose: RSS says nothing there.
        assert rss_after - rss_before < MAX_RSS_GROWTH, (rss_before, rss_after)


def test_closing_a_loop_releases_queued_callbacks():
    """Queued handles hold their callbacks; close() must drop them all."""
    import weakref

    class Token:
        def __call__(self):
            pass

    loop = pyloop.new_event_loop()
    tokens = [Token() for _ in range(100)]
    refs = [weakref.ref(t) for t in tokens]
    for t in tokens[:50]:
        loop.call_soon(t)
    for t in tokens[50:]:
        loop.call_later(3600, t)
    del tokens, t
    gc.collect()
    assert all(r() is not None for r in refs)
    loop.close()
    gc.collect()
    assert all(r() is None for r in refs)


def test_unreferenced_loop_with_queued_cycle_is_collected():
    """A loop whose queue holds a callback referring back to the loop is still collectable
    (the loop's tp_traverse visits queued handles)."""
    import warnings
    import weakref

    loop = pyloop.new_event_loop()
    loop.call_later(3600, loop.stop)  # handle -> bound method -> loop -> queue -> handle
    ref = weakref.ref(loop)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)  # unclosed loop warning from __del__
        del loop
        gc.collect()
    assert ref() is None


class _HoldsItsHandle:
    """obj -> handle -> bound method -> obj: the cycle asyncio.timeout() and many protocols make."""

    def __init__(self, schedule):
        self.handle = schedule(self.fire)
        self.fired = False

    def fire(self):
        self.fired = True


@pytest.mark.parametrize(
    "how",
    ["call_soon_then_run", "call_later_then_run", "call_soon_then_close", "call_later_then_close"],
)
def test_cycle_through_a_handle_is_collected(how):
    """Queued handles are not GC-tracked; once the queue lets go of one that is still held,
    cycles through it must be collectable again."""
    import weakref

    loop = pyloop.new_event_loop()
    try:
        if how.startswith("call_soon"):
            holder = _HoldsItsHandle(loop.call_soon)
        else:
            holder = _HoldsItsHandle(lambda cb: loop.call_later(0, cb))
        ref = weakref.ref(holder)
        if how.endswith("run"):
            loop.call_later(0.001, loop.stop)
            loop.run_forever()
            assert holder.fired
        else:
            loop.close()
            assert not holder.fired
        del holder
        gc.collect()
        assert ref() is None
    finally:
        loop.close()


def test_garbage_loop_with_a_queued_self_cycle_collects_its_callbacks():
    """A loop dropped without close() whose queued callback refers back to an object
    holding the loop is reclaimed by the collector, callbacks included."""
    import warnings
    import weakref

    class Owner:
        def tick(self):
            pass

    loop = pyloop.new_event_loop()
    owner = Owner()
    owner.loop = loop
    loop.call_soon(owner.tick)
    loop.call_later(3600, owner.tick)
    refs = [weakref.ref(loop), weakref.ref(owner)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        del loop, owner
        gc.collect()
    assert [r() for r in refs] == [None, None]


# -- transports: the native read and write paths --------------------------------------------

TRANSPORT_ROUND_TRIPS = 100_000


class _Echo(asyncio.Protocol):
    """Writes every message back as two writes and a writelines (the coalesced path)."""

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data[:1])
        self.transport.writelines([data[1:2], bytearray(data[2:])])


class _BufferedEcho(asyncio.BufferedProtocol):
    def __init__(self):
        self.buffer = bytearray(4096)

    def connection_made(self, transport):
        self.transport = transport

    def get_buffer(self, sizehint):
        return self.buffer

    def buffer_updated(self, nbytes):
        self.transport.write(memoryview(self.buffer)[:nbytes])


def _transport_round_trips(protocol_factory):
    def scenario(loop, n):
        import socket

        async def main():
            server_sock, client_sock = socket.socketpair()
            transport, _ = await loop.connect_accepted_socket(protocol_factory, server_sock)
            client_sock.setblocking(False)
            message = b"0123456789abcdef"
            for _ in range(n):
                await loop.sock_sendall(client_sock, message)
                got = b""
                while len(got) < len(message):
                    got += await loop.sock_recv(client_sock, 64)
                assert got == message
            transport.close()
            client_sock.close()
            await asyncio.sleep(0)

        loop.run_until_complete(main())

    scenario.__name__ = f"round_trips_{protocol_factory.__name__}"
    return scenario


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc for RSS")
@pytest.mark.parametrize("protocol_factory", [_Echo, _BufferedEcho], ids=["protocol", "buffered"])
def test_transport_round_trips_leave_objects_and_rss_flat(protocol_factory):
    assert_flat(_transport_round_trips(protocol_factory), warm_up=5_000, count=TRANSPORT_ROUND_TRIPS)


def test_unreferenced_loop_with_a_waiting_sock_call_is_collected():
    """A sock_recv waiting in the readiness registry holds its future, socket and loop; the
    future's callbacks reach the task, whose coroutine holds the operation. Dropped without
    close(), the whole cycle is still reclaimed (the loop's tp_traverse visits the
    operation)."""
    import logging
    import warnings
    import weakref

    loop = pyloop.new_event_loop()
    a, b = socket.socketpair()
    a.setblocking(False)
    task = loop.create_task(loop.sock_recv(a, 100))
    loop.run_until_complete(asyncio.sleep(0.01))
    assert not task.done()
    refs = [weakref.ref(loop), weakref.ref(task)]
    asyncio_logger = logging.getLogger("asyncio")
    disabled, asyncio_logger.disabled = asyncio_logger.disabled, True  # "Task was destroyed"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            del loop, task
            gc.collect()
    finally:
        asyncio_logger.disabled = disabled
    a.close()
    b.close()
    assert [r() for r in refs] == [None, None]


class _DatagramEcho(asyncio.DatagramProtocol):
    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.transport.sendto(data, addr)


class _DatagramClient(asyncio.DatagramProtocol):
    waiter = None

    def datagram_received(self, data, addr):
        self.waiter.set_result((data, addr))


def datagram_round_trips(loop, n, peers=2):
    """UDP echo through `peers` servers in turn, so that every address conversion misses
    the transport's latest one: the client's received addresses come from its table of recent
    senders (70: more than the 64 it holds, so the table is cleared again and again), and
    every sendto destination is converted."""

    async def main():
        servers = [
            await loop.create_datagram_endpoint(_DatagramEcho, local_addr=("127.0.0.1", 0))
            for _ in range(peers)
        ]
        addresses = [t.get_extra_info("sockname") for t, _ in servers]
        client, proto = await loop.create_datagram_endpoint(
            _DatagramClient, local_addr=("127.0.0.1", 0)
        )
        for i in range(n):
            proto.waiter = loop.create_future()
            client.sendto(b"0123456789abcdef", addresses[i % peers])
            data, addr = await proto.waiter
            assert addr == addresses[i % peers]
        client.close()
        for t, _ in servers:
            t.close()
        await asyncio.sleep(0)

    loop.run_until_complete(main())


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc for RSS")
@pytest.mark.parametrize("peers", [2, 70])
def test_datagram_round_trips_leave_objects_and_rss_flat(peers):
    def scenario(loop, n):
        datagram_round_trips(loop, n, peers)

    assert_flat(scenario, warm_up=5_000, count=TRANSPORT_ROUND_TRIPS)

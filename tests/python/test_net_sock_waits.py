# tests/python/test_net_sock_waits.py: sock_recv, sock_recv_into and sock_sendall, the calls a
# sock_* echo or proxy loop makes per message: completing at once (no future, nothing
# registered), waiting for readiness, cancelled while waiting (the socket left unregistered,
# usable, and what was sent still sent), a peer reset during the wait, a newer add_reader taking
# the descriptor over, and the argument and buffer rules of the socket methods underneath.

import asyncio
import socket
import struct

import pytest

from net_helpers import payload, recv_exactly, recv_until_eof, run, tcp_socketpair


@pytest.fixture
def tcp_pair():
    a, b = tcp_socketpair()
    yield a, b
    a.close()
    b.close()


def count_futures(loop):
    """Wrap loop.create_future (on the instance) and return the list of futures it makes.
    `del loop.create_future` undoes it (asyncio.sleep makes futures too)."""
    made = []
    factory = loop.create_future

    def create_future():
        fut = factory()
        made.append(fut)
        return fut

    loop.create_future = create_future
    return made


def reset(sock):
    """Close sock so that the peer sees a reset (RST), not an orderly end of stream."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


async def fill(loop, sock, data):
    """Start sock_sendall(data) and return its task once it waits for the peer to read."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)  # whatever the defaults
    task = asyncio.ensure_future(loop.sock_sendall(sock, data))
    await asyncio.sleep(0.05)
    assert not task.done(), "sock_sendall finished: the socket buffers took everything"
    return task


# -- completing at once ---------------------------------------------------------------------------


def test_calls_that_complete_at_once_make_no_future_and_register_nothing(loop, tcp_pair):
    a, b = tcp_pair

    async def main():
        made = count_futures(loop)
        await loop.sock_sendall(a, b"0123456789")
        assert made == []
        del loop.create_future
        await asyncio.sleep(0.01)
        made = count_futures(loop)
        first = await loop.sock_recv(b, 4)
        buf = bytearray(16)
        n = await loop.sock_recv_into(b, buf)
        assert made == []
        assert loop.remove_reader(b) is False
        assert loop.remove_writer(a) is False
        return first, bytes(buf[:n])

    assert run(loop, main()) == (b"0123", b"456789")


def test_a_call_that_waits_takes_its_future_from_create_future(loop, tcp_pair):
    a, b = tcp_pair

    async def main():
        made = count_futures(loop)
        task = asyncio.ensure_future(loop.sock_recv(b, 100))
        await asyncio.sleep(0)  # the task runs up to its wait
        del loop.create_future
        assert len(made) == 1 and not made[0].done()
        await asyncio.sleep(0.01)
        a.send(b"late")
        assert await task == b"late"
        assert made[0].result() == b"late"
        assert loop.remove_reader(b) is False  # the reader went with the result

    run(loop, main())


def test_receiving_zero_bytes_returns_at_once_and_consumes_nothing(loop, tcp_pair):
    # socket.recv(0) and recv_into of an empty buffer make no system call (recv() of 0 bytes
    # would block on an empty TCP socket), so asyncio never waits for them.
    a, b = tcp_pair

    async def main():
        assert await loop.sock_recv(b, 0) == b""  # nothing there yet: still no wait
        assert await loop.sock_recv_into(b, bytearray(0)) == 0
        a.send(b"kept")
        await asyncio.sleep(0.01)
        assert await loop.sock_recv(b, 0) == b""
        assert await loop.sock_recv_into(b, memoryview(bytearray(8))[:0]) == 0
        assert loop.remove_reader(b) is False
        return await loop.sock_recv(b, 100)

    assert run(loop, main()) == b"kept"


def test_sock_recv_larger_than_256k(loop, tcp_pair):
    # Past the native receive buffer: one recv() of up to n bytes, as socket.recv(n) does.
    a, b = tcp_pair
    data = payload(700_000)

    async def main():
        sender = asyncio.ensure_future(loop.sock_sendall(a, data))
        received = bytearray()
        while len(received) < len(data):
            chunk = await loop.sock_recv(b, 1 << 20)
            assert 0 < len(chunk) <= 1 << 20
            received += chunk
        await sender
        return bytes(received)

    assert run(loop, main()) == data


# -- waiting and its outcomes ---------------------------------------------------------------------


def test_sock_sendall_and_sock_recv_wait_on_one_socket_at_once(loop, tcp_pair):
    # A reader and a writer waiting on the same descriptor, each resolved by its own readiness.
    a, b = tcp_pair
    big = payload(8 << 20)

    async def main():
        incoming = asyncio.ensure_future(loop.sock_recv(a, 100))
        outgoing = await fill(loop, a, big)
        assert not incoming.done()
        await loop.sock_sendall(b, b"ping")
        assert await incoming == b"ping"
        assert not outgoing.done()
        assert await recv_exactly(loop, b, len(big)) == big
        assert await outgoing is None
        assert loop.remove_reader(a) is False
        assert loop.remove_writer(a) is False

    run(loop, main(), timeout=10)


def test_sock_recv_into_raises_on_reset_during_wait(loop, tcp_pair):
    a, b = tcp_pair

    async def main():
        task = asyncio.ensure_future(loop.sock_recv_into(a, bytearray(10)))
        await asyncio.sleep(0.01)
        reset(b)
        with pytest.raises(ConnectionResetError):
            await task
        assert loop.remove_reader(a) is False

    run(loop, main())


def test_sock_sendall_raises_on_reset_during_wait(loop, tcp_pair):
    a, b = tcp_pair

    async def main():
        task = await fill(loop, a, payload(10 << 20))
        reset(b)
        with pytest.raises((ConnectionResetError, BrokenPipeError)):
            await task
        assert loop.remove_writer(a) is False

    run(loop, main(), timeout=10)


def test_sock_recv_into_buffer_may_be_resized_while_waiting(loop, tcp_pair):
    # asyncio keeps only the buffer object while it waits, no export of its memory.
    a, b = tcp_pair

    async def main():
        buf = bytearray(4)
        task = asyncio.ensure_future(loop.sock_recv_into(b, buf))
        await asyncio.sleep(0.01)
        buf.extend(b"....")
        a.send(b"abcdef")
        n = await task
        return n, bytes(buf)

    assert run(loop, main()) == (6, b"abcdef..")


def test_sock_sendall_data_cannot_be_resized_while_waiting(loop, tcp_pair):
    # asyncio holds a memoryview of the data while it waits: a bytearray cannot resize.
    a, b = tcp_pair

    async def main():
        data = bytearray(payload(10 << 20))
        task = await fill(loop, a, data)
        with pytest.raises(BufferError):
            data.extend(b"x")
        assert await recv_exactly(loop, b, len(data)) == data
        await task
        data.extend(b"x")  # released once the call is done

    run(loop, main(), timeout=10)


# -- cancellation ---------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["sock_recv", "sock_recv_into"])
def test_cancelled_receive_leaves_socket_unregistered_and_usable(loop, tcp_pair, method):
    a, b = tcp_pair

    async def main():
        buf = bytearray(100)
        call = loop.sock_recv(b, 100) if method == "sock_recv" else loop.sock_recv_into(b, buf)
        task = asyncio.ensure_future(call)
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert loop.remove_reader(b) is False
        # add_reader and remove_reader work on the descriptor ...
        fut = loop.create_future()
        loop.add_reader(b, lambda: fut.done() or fut.set_result(b.recv(100)))
        a.send(b"reader")
        assert await fut == b"reader"
        assert loop.remove_reader(b) is True
        # ... and the next call gets the next data.
        a.send(b"after")
        assert await loop.sock_recv(b, 100) == b"after"
        assert buf == bytearray(100)

    run(loop, main())


def test_cancelled_sock_sendall_keeps_what_was_sent_and_socket_usable(loop, tcp_pair):
    # 10 MB to a reader that is not reading: cancelled half way, the bytes already handed to
    # the kernel stay sent, nothing more is sent, and the socket takes the next call.
    a, b = tcp_pair
    data = payload(10 << 20)
    tail = b"--after the cancelled sock_sendall--"

    async def main():
        task = await fill(loop, a, data)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert loop.remove_writer(a) is False
        reader = asyncio.ensure_future(recv_until_eof(loop, b, limit=len(data) + len(tail)))
        await loop.sock_sendall(a, tail)
        a.shutdown(socket.SHUT_WR)
        return await reader

    received = run(loop, main(), timeout=10)
    assert received.endswith(tail)
    sent = len(received) - len(tail)
    assert 0 < sent < len(data)
    assert received[:sent] == data[:sent]


def test_cancelling_a_replaced_wait_leaves_the_new_reader_installed(loop, tcp_pair):
    # add_reader on a descriptor a sock_recv waits on replaces its callback, as in asyncio
    # (that call then never completes); cancelling the call must not remove the new reader.
    a, b = tcp_pair

    async def main():
        task = asyncio.ensure_future(loop.sock_recv(b, 100))
        await asyncio.sleep(0.01)
        got = loop.create_future()
        loop.add_reader(b, lambda: got.done() or got.set_result(b.recv(100)))
        a.send(b"to the new reader")
        assert await got == b"to the new reader"
        assert not task.done()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0)
        assert loop.remove_reader(b) is True

    run(loop, main())


def test_wait_cancelled_after_the_data_arrived_leaves_it_for_the_next_call(loop, tcp_pair):
    # The task is cancelled in the same iteration as the data becomes readable: whichever
    # wins, no byte may be lost.
    a, b = tcp_pair

    async def main():
        task = asyncio.ensure_future(loop.sock_recv(b, 100))
        await asyncio.sleep(0.01)
        a.send(b"data")
        await asyncio.sleep(0.01)  # readable now; the task may or may not have run
        task.cancel()
        try:
            first = await task
        except asyncio.CancelledError:
            first = b""
        rest = b"" if first else await loop.sock_recv(b, 100)
        return first + rest

    assert run(loop, main()) == b"data"


# -- arguments the socket methods refuse ----------------------------------------------------------


@pytest.mark.parametrize(
    "call,exc",
    [
        (lambda loop, s: loop.sock_recv(s, -1), ValueError),
        (lambda loop, s: loop.sock_recv(s, 1.5), TypeError),
        (lambda loop, s: loop.sock_recv(s, 1 << 80), OverflowError),
        (lambda loop, s: loop.sock_recv_into(s, b"read-only"), TypeError),
        (lambda loop, s: loop.sock_recv_into(s, "text"), TypeError),
        (lambda loop, s: loop.sock_sendall(s, "text"), TypeError),
        (lambda loop, s: loop.sock_sendall(s, 42), TypeError),
    ],
    ids=["recv-negative", "recv-float", "recv-huge", "recv_into-bytes", "recv_into-str",
         "sendall-str", "sendall-int"],
)
def test_bad_arguments_raise_what_the_socket_method_raises(loop, tcp_pair, call, exc):
    a, _ = tcp_pair

    async def main():
        with pytest.raises(exc):
            await call(loop, a)
        assert loop.remove_reader(a) is False
        assert loop.remove_writer(a) is False

    run(loop, main())


def test_closed_socket_raises_bad_descriptor(loop, tcp_pair):
    a, _ = tcp_pair
    a.close()

    async def main():
        for call in (lambda: loop.sock_recv(a, 1), lambda: loop.sock_recv_into(a, bytearray(1)),
                     lambda: loop.sock_sendall(a, b"x")):
            with pytest.raises(OSError) as info:
                await call()
            assert info.value.errno == 9  # EBADF

    run(loop, main())


def test_socket_subclass_is_served_through_its_own_methods(loop, tcp_pair):
    # A subclass may override recv/send (as ssl.SSLSocket does): its methods are the ones used.
    a, b = tcp_pair
    calls = []

    class Traced(socket.socket):
        def recv(self, n, *args):
            calls.append("recv")
            return super().recv(n, *args)

        def send(self, data, *args):
            calls.append("send")
            return super().send(data, *args)

    traced = Traced(fileno=b.detach())
    traced.setblocking(False)

    async def main():
        try:
            await loop.sock_sendall(traced, b"hello")
            assert await recv_exactly(loop, a, 5) == b"hello"
            a.send(b"back")
            await asyncio.sleep(0.01)
            return await loop.sock_recv(traced, 10)
        finally:
            traced.close()

    assert run(loop, main()) == b"back"
    assert calls == ["send", "recv"]


def test_socket_used_by_a_transport_refused_when_the_call_would_wait(loop, tcp_pair):
    a, b = tcp_pair

    async def main():
        transport, _ = await loop.create_connection(asyncio.Protocol, sock=a)
        try:
            with pytest.raises(RuntimeError, match="is used by transport"):
                await loop.sock_recv(a, 10)
        finally:
            transport.close()
            await asyncio.sleep(0)

    run(loop, main())

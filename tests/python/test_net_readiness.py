# tests/python/test_net_readiness.py: add_reader/remove_reader/add_writer/remove_writer on raw
# descriptors (os.pipe, socketpair) and socket objects: level-triggered callbacks with their
# arguments, the True/False results of the removals, replacing a callback, closed loops, invalid
# descriptors, and descriptors owned by a transport (asyncio's selector_events rules).

import asyncio
import contextvars
import os
import socket
import subprocess
import sys

import pytest

from net_helpers import Recorder, connect_to_listener, run


@pytest.fixture
def pipe():
    r, w = os.pipe()
    os.set_blocking(r, False)
    os.set_blocking(w, False)
    yield r, w
    for fd in (r, w):
        try:
            os.close(fd)
        except OSError:
            pass


@pytest.fixture
def sock_pair():
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    yield a, b
    a.close()
    b.close()


async def turns(n):
    """Let the loop run n iterations."""
    for _ in range(n):
        await asyncio.sleep(0)


def test_reader_called_with_args_when_pipe_readable(loop, pipe):
    r, w = pipe
    calls = []

    async def main():
        fut = loop.create_future()

        def on_readable(*args):
            calls.append(args)
            data = os.read(r, 100)
            loop.remove_reader(r)
            fut.set_result(data)

        loop.add_reader(r, on_readable, "a", 2)
        await turns(3)
        assert calls == [], "reader called before the pipe had data"
        os.write(w, b"ping")
        return await fut

    assert run(loop, main()) == b"ping"
    assert calls == [("a", 2)]


def test_reader_is_level_triggered(loop, pipe):
    # Data left unread keeps the descriptor ready: the callback runs again on every iteration
    # until the data is consumed, then stops.
    r, w = pipe
    calls = []

    def on_readable():
        calls.append(1)
        if len(calls) == 3:
            os.read(r, 100)

    async def main():
        loop.add_reader(r, on_readable)
        os.write(w, b"x")
        await turns(10)
        assert len(calls) == 3, calls
        await asyncio.sleep(0.02)
        assert len(calls) == 3, "reader called after the data was consumed"
        os.write(w, b"y")  # readable again: called again
        await turns(2)
        assert len(calls) >= 4
        assert loop.remove_reader(r) is True

    run(loop, main())


def test_reader_on_socket_object(loop, sock_pair):
    a, b = sock_pair

    async def main():
        fut = loop.create_future()
        loop.add_reader(a, lambda: fut.done() or fut.set_result(a.recv(10)))
        b.send(b"hello")
        data = await fut
        assert loop.remove_reader(a) is True
        return data

    assert run(loop, main()) == b"hello"


def test_reader_sees_eof(loop, pipe):
    r, w = pipe

    async def main():
        fut = loop.create_future()
        loop.add_reader(r, lambda: fut.done() or fut.set_result(os.read(r, 10)))
        os.close(w)
        data = await fut
        loop.remove_reader(r)
        return data

    assert run(loop, main()) == b""


def test_remove_reader_returns_true_then_false(loop, sock_pair):
    a, _ = sock_pair
    assert loop.remove_reader(a.fileno()) is False  # never registered
    loop.add_reader(a.fileno(), lambda: None)
    assert loop.remove_reader(a.fileno()) is True
    assert loop.remove_reader(a.fileno()) is False
    # socket object and descriptor number name the same registration
    loop.add_reader(a, lambda: None)
    assert loop.remove_reader(a.fileno()) is True
    assert loop.remove_reader(a) is False


def test_remove_writer_returns_true_then_false(loop, sock_pair):
    a, _ = sock_pair
    assert loop.remove_writer(a) is False
    loop.add_writer(a, lambda: None)
    assert loop.remove_writer(a) is True
    assert loop.remove_writer(a) is False


def test_remove_reader_does_not_remove_writer(loop, sock_pair):
    a, _ = sock_pair
    loop.add_reader(a, lambda: None)
    assert loop.remove_writer(a) is False
    assert loop.remove_reader(a) is True
    loop.add_writer(a, lambda: None)
    assert loop.remove_reader(a) is False
    assert loop.remove_writer(a) is True


def test_add_reader_returns_none(loop, sock_pair):
    a, _ = sock_pair
    assert loop.add_reader(a, lambda: None) is None
    assert loop.add_writer(a, lambda: None) is None
    loop.remove_reader(a)
    loop.remove_writer(a)


def test_removed_reader_is_not_called(loop, sock_pair):
    a, b = sock_pair
    calls = []

    async def main():
        loop.add_reader(a, calls.append, "r")
        assert loop.remove_reader(a) is True
        b.send(b"data")
        await turns(5)
        await asyncio.sleep(0.02)

    run(loop, main())
    assert calls == []


def test_remove_reader_inside_its_callback(loop, sock_pair):
    a, b = sock_pair
    calls = []

    def once():
        calls.append(1)
        assert loop.remove_reader(a) is True

    async def main():
        loop.add_reader(a, once)
        b.send(b"x")  # never read: still readable
        await turns(5)

    run(loop, main())
    assert calls == [1]


def test_replacing_reader_cancels_old_callback(loop, sock_pair):
    a, b = sock_pair
    calls = []

    async def main():
        fut = loop.create_future()
        loop.add_reader(a, calls.append, "old")

        def new():
            calls.append("new")
            if not fut.done():
                fut.set_result(None)

        loop.add_reader(a, new)
        b.send(b"x")
        await fut
        await turns(3)
        assert loop.remove_reader(a) is True

    run(loop, main())
    assert "old" not in calls
    assert calls[0] == "new"


def test_replacing_writer_cancels_old_callback(loop, sock_pair):
    a, _ = sock_pair
    calls = []

    async def main():
        fut = loop.create_future()
        loop.add_writer(a, calls.append, "old")
        loop.add_writer(a, lambda: fut.done() or fut.set_result(calls.append("new")))
        await fut
        assert loop.remove_writer(a) is True

    run(loop, main())
    assert calls == ["new"]


def test_reader_and_writer_on_same_fd_are_independent(loop, sock_pair):
    a, b = sock_pair
    seen = []

    async def main():
        wrote = loop.create_future()
        read = loop.create_future()

        def on_writable():
            seen.append("w")
            loop.remove_writer(a)
            wrote.set_result(None)

        def on_readable():
            seen.append("r")
            loop.remove_reader(a)
            read.set_result(a.recv(10))

        loop.add_reader(a, on_readable)
        loop.add_writer(a, on_writable)
        await wrote  # a socket with an empty send buffer is writable at once
        assert seen == ["w"]
        b.send(b"late")
        return await read

    assert run(loop, main()) == b"late"
    assert seen == ["w", "r"]


def test_writer_called_with_args(loop, sock_pair):
    a, _ = sock_pair

    async def main():
        fut = loop.create_future()

        def on_writable(x, y):
            loop.remove_writer(a)
            fut.set_result((x, y))

        loop.add_writer(a.fileno(), on_writable, "x", None)
        return await fut

    assert run(loop, main()) == ("x", None)


def test_writer_waits_while_pipe_is_full(loop, pipe):
    r, w = pipe
    # Fill the pipe until the kernel refuses more.
    chunk = b"z" * 65536
    while True:
        try:
            os.write(w, chunk)
        except BlockingIOError:
            break
    calls = []

    async def main():
        fut = loop.create_future()

        def on_writable():
            calls.append(1)
            loop.remove_writer(w)
            fut.set_result(None)

        loop.add_writer(w, on_writable)
        await turns(5)
        await asyncio.sleep(0.02)
        assert calls == [], "writer called while the pipe was full"
        # Drain the pipe: writable again.
        while True:
            try:
                if not os.read(r, 1 << 20):
                    break
            except BlockingIOError:
                break
        await fut

    run(loop, main())
    assert calls == [1]


def test_remove_reader_after_descriptor_closed(loop):
    a, b = socket.socketpair()
    try:
        loop.add_reader(a, lambda: None)
        fd = a.fileno()
        a.close()
        assert loop.remove_reader(fd) is True
        assert loop.remove_reader(fd) is False
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize("method", ["add_reader", "add_writer"])
def test_add_on_closed_loop_raises_runtime_error(loop, sock_pair, method):
    a, _ = sock_pair
    loop.close()
    with pytest.raises(RuntimeError, match="Event loop is closed"):
        getattr(loop, method)(a, lambda: None)


@pytest.mark.parametrize("method", ["remove_reader", "remove_writer"])
def test_remove_on_closed_loop_returns_false(loop, sock_pair, method):
    a, _ = sock_pair
    loop.close()
    assert getattr(loop, method)(a) is False
    assert getattr(loop, method)(a.fileno()) is False
    # asyncio checks is_closed() before it looks the descriptor up, so even -1 gives False
    assert getattr(loop, method)(-1) is False


ALL_METHODS = ["add_reader", "add_writer", "remove_reader", "remove_writer"]


def _call(loop, method, fd):
    if method.startswith("add"):
        return getattr(loop, method)(fd, lambda: None)
    return getattr(loop, method)(fd)


@pytest.mark.parametrize("method", ALL_METHODS)
def test_negative_fd_raises_value_error(loop, method):
    with pytest.raises(ValueError, match="Invalid file descriptor: -1"):
        _call(loop, method, -1)


@pytest.mark.parametrize("method", ALL_METHODS)
@pytest.mark.parametrize("bad", [object(), "3", 1.5, None], ids=["object", "str", "float", "None"])
def test_non_fd_object_raises_value_error(loop, method, bad):
    with pytest.raises(ValueError, match="Invalid file object"):
        _call(loop, method, bad)


@pytest.mark.parametrize("method", ["add_reader", "add_writer"])
def test_closed_socket_object_raises_value_error(loop, method):
    a, b = socket.socketpair()
    a.close()
    b.close()
    with pytest.raises(ValueError, match="Invalid file descriptor: -1"):
        _call(loop, method, a)


@pytest.mark.parametrize("method", ALL_METHODS)
def test_fd_owned_by_transport_is_refused(loop, method):
    async def main():
        transport, proto, peer = await connect_to_listener(loop, lambda: Recorder(loop))
        try:
            sock = transport.get_extra_info("socket")
            fd = sock.fileno()
            with pytest.raises(RuntimeError, match="is used by transport"):
                _call(loop, method, fd)
            # The transport keeps working: its reader was not replaced or removed.
            peer.send(b"still mine")
            assert await proto.wait_bytes(10) == b"still mine"
        finally:
            transport.close()
            peer.close()
        await proto.lost

    run(loop, main())


def test_fd_of_closing_transport_is_accepted(loop):
    # asyncio refuses a transport's descriptor only while the transport is not closing.
    async def main():
        transport, proto, peer = await connect_to_listener(loop, lambda: Recorder(loop))
        fd = transport.get_extra_info("socket").fileno()
        transport.close()
        assert transport.is_closing()
        assert loop.remove_reader(fd) is False  # close() already removed the transport's reader
        peer.close()
        await proto.lost

    run(loop, main())


def test_reader_runs_in_context_copied_at_registration(loop, sock_pair):
    # asyncio wraps the callback in a Handle, which copies the current context once: every call
    # of a level-triggered reader runs in that same copy, so its changes persist between calls
    # and never leak out.
    a, b = sock_pair
    var = contextvars.ContextVar("var", default=0)
    seen = []

    def reader():
        seen.append(var.get())
        var.set(var.get() + 10)
        if len(seen) == 3:
            loop.remove_reader(a)

    async def main():
        token = var.set(1)
        loop.add_reader(a, reader)
        var.set(2)  # after registration: not seen by the reader
        b.send(b"x")  # never read: the reader fires on every iteration
        await turns(6)
        assert var.get() == 2
        var.reset(token)

    run(loop, main())
    assert seen == [1, 11, 21]


def test_reader_exception_goes_to_handler_and_reader_stays(loop, sock_pair, expect_exception_handler):
    a, b = sock_pair
    calls = []

    def bad():
        calls.append(1)
        if len(calls) == 2:
            loop.remove_reader(a)
            return
        raise ZeroDivisionError("in reader")

    async def main():
        loop.add_reader(a, bad)
        b.send(b"x")
        await turns(5)

    run(loop, main())
    assert len(calls) == 2, "a reader that raised must stay registered"
    assert len(expect_exception_handler) == 1
    ctx = expect_exception_handler[0]
    assert ctx["message"].startswith("Exception in callback ")
    assert isinstance(ctx["exception"], ZeroDivisionError)
    # the context names the registration's handle, which remove_reader() has cancelled since
    assert ctx["handle"].cancelled()


_HANDLE_OUTLIVES_LOOP = """
import asyncio, importlib, socket
loop = getattr(importlib.import_module({module!r}), {attr!r})()
a, b = socket.socketpair()
kept = []  # module globals: destroyed by the interpreter's final collection
loop.set_exception_handler(lambda lp, ctx: kept.append(ctx))
calls = []
def reader():
    calls.append(1)
    if len(calls) > 1:
        loop.remove_reader(a)
        return
    raise ZeroDivisionError
loop.add_reader(a, reader)
b.send(b"x")
async def turns():
    for _ in range(4):
        await asyncio.sleep(0)
loop.run_until_complete(turns())
loop.close()
assert kept[0]["handle"].cancelled()
print("ok")
"""


def test_reader_handle_outliving_loop_is_safe_at_exit(loop_factory):
    # A reader's Handle kept past loop.close() (here in an exception-handler context) must be
    # destroyed cleanly when the interpreter exits.
    code = _HANDLE_OUTLIVES_LOOP.format(module=loop_factory.module, attr=loop_factory.attr)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    proc = subprocess.run(
        [sys.executable, "-X", "faulthandler", "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert (proc.returncode, proc.stdout.strip()) == (0, "ok"), proc.stderr[-2000:]

# tests/python/test_debug_mode.py: asyncio debug mode on the loop: get/set_debug, the
# environment switches (PYTHONASYNCIODEBUG, -X dev), slow-callback warnings, source tracebacks,
# the thread check on non-thread-safe calls, and the callback checks that debug mode adds.

import logging
import os
import subprocess
import sys
import threading
import time

import pytest


def run_once(loop):
    loop.stop()
    loop.run_forever()


def asyncio_default_debug():
    """What asyncio.coroutines._is_debug_mode() computes for this process."""
    return bool(
        sys.flags.dev_mode
        or (not sys.flags.ignore_environment and os.environ.get("PYTHONASYNCIODEBUG"))
    )


async def a_coroutine_function():
    pass


def test_default_debug_follows_the_environment(new_loop):
    assert new_loop().get_debug() is asyncio_default_debug()


def test_set_debug_and_get_debug(loop):
    loop.set_debug(True)
    assert loop.get_debug() is True
    loop.set_debug(False)
    assert loop.get_debug() is False


def test_set_debug_while_running(loop):
    states = []

    def cb():
        loop.set_debug(True)
        states.append(loop.get_debug())
        loop.stop()

    loop.call_soon(cb)
    loop.run_forever()
    assert states == [True]
    assert loop.get_debug() is True


def _debug_in_subprocess(loop_factory, args, env_extra):
    code = (
        "import importlib, sys\n"
        f"mod = importlib.import_module({loop_factory.module!r})\n"
        f"lp = getattr(mod, {loop_factory.attr!r})()\n"
        "try:\n"
        "    print(lp.get_debug())\n"
        "finally:\n"
        "    lp.close()\n"
    )
    env = dict(os.environ)
    env.pop("PYTHONASYNCIODEBUG", None)
    env.pop("PYTHONDEVMODE", None)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    env.update(env_extra)
    proc = subprocess.run(
        [sys.executable, *args, "-c", code], env=env, capture_output=True, text=True, timeout=20
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


@pytest.mark.parametrize(
    "args, env_extra, expected",
    [
        pytest.param([], {}, "False", id="plain"),
        pytest.param([], {"PYTHONASYNCIODEBUG": "1"}, "True", id="PYTHONASYNCIODEBUG"),
        pytest.param(["-X", "dev"], {}, "True", id="X-dev"),
        pytest.param([], {"PYTHONDEVMODE": "1"}, "True", id="PYTHONDEVMODE"),
        pytest.param(["-E"], {"PYTHONASYNCIODEBUG": "1"}, "False", id="E-ignores-env"),
    ],
)
def test_debug_from_environment_in_subprocess(loop_factory, args, env_extra, expected):
    assert _debug_in_subprocess(loop_factory, args, env_extra) == expected


def test_slow_callback_is_logged_in_debug_mode(loop, caplog):
    loop.set_debug(True)
    loop.slow_callback_duration = 0.02

    def sluggish_callback():
        time.sleep(0.05)

    loop.call_soon(sluggish_callback)
    loop.call_soon(lambda: None)  # fast: not logged
    with caplog.at_level(logging.WARNING, logger="asyncio"):
        run_once(loop)
    warnings = [r for r in caplog.records if r.name == "asyncio" and r.levelno == logging.WARNING]
    assert len(warnings) == 1
    text = warnings[0].getMessage()
    assert text.startswith("Executing")
    assert "sluggish_callback" in text
    assert "took" in text and "seconds" in text


def test_slow_callback_not_logged_without_debug(loop, caplog):
    loop.set_debug(False)
    loop.slow_callback_duration = 0.01
    loop.call_soon(time.sleep, 0.03)
    with caplog.at_level(logging.WARNING, logger="asyncio"):
        run_once(loop)
    assert [r for r in caplog.records if r.name == "asyncio"] == []


def test_slow_callback_duration_default_and_settable(loop):
    assert loop.slow_callback_duration == 0.1
    loop.slow_callback_duration = 0.5
    assert loop.slow_callback_duration == 0.5


def test_source_traceback_in_exception_context_in_debug(loop, expect_exception_handler):
    loop.set_debug(True)

    def raiser():
        raise ValueError("debug")

    lineno = sys._getframe().f_lineno + 1
    loop.call_soon(raiser)
    run_once(loop)
    assert len(expect_exception_handler) == 1
    ctx = expect_exception_handler[0]
    tb = ctx["source_traceback"]
    assert len(tb) >= 1
    last = tb[-1]
    assert last.filename == __file__  # the frame that called call_soon, not the loop's own
    assert last.lineno == lineno


def test_source_traceback_for_timer_in_debug(loop, expect_exception_handler):
    loop.set_debug(True)

    def raiser():
        raise ValueError("debug-timer")

    lineno = sys._getframe().f_lineno + 1
    loop.call_later(0, raiser)
    loop.call_later(0.01, loop.stop)
    loop.run_forever()
    tb = expect_exception_handler[0]["source_traceback"]
    assert tb[-1].filename == __file__
    assert tb[-1].lineno == lineno


def test_handle_repr_shows_creation_site_in_debug(loop):
    loop.set_debug(True)
    h = loop.call_soon(print)
    assert "created at" in repr(h)
    assert os.path.basename(__file__) in repr(h)
    h.cancel()


def test_coroutine_origin_tracking_while_running_in_debug(loop):
    loop.set_debug(True)
    before = sys.get_coroutine_origin_tracking_depth()

    async def main():
        return sys.get_coroutine_origin_tracking_depth()

    during = loop.run_until_complete(main())
    assert during > 0
    assert sys.get_coroutine_origin_tracking_depth() == before


# -- thread check ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda lp: lp.call_soon(print), id="call_soon"),
        pytest.param(lambda lp: lp.call_later(1, print), id="call_later"),
        pytest.param(lambda lp: lp.call_at(lp.time() + 1, print), id="call_at"),
    ],
)
def test_non_thread_safe_call_from_other_thread_in_debug_is_runtime_error(loop, call):
    loop.set_debug(True)
    errors = []
    handles = []

    def other_thread():
        try:
            handles.append(call(loop))
        except RuntimeError as exc:
            errors.append(exc)
        finally:
            loop.call_soon_threadsafe(loop.stop)

    def start():
        threading.Thread(target=other_thread, daemon=True).start()

    safety = loop.call_later(5, loop.stop)
    loop.call_soon(start)
    loop.run_forever()
    safety.cancel()
    for h in handles:
        h.cancel()
    assert len(errors) == 1, "no RuntimeError for a call from another thread"
    assert "Non-thread-safe operation" in str(errors[0])


def test_call_soon_threadsafe_from_other_thread_in_debug_is_allowed(loop):
    loop.set_debug(True)
    calls = []

    def other_thread():
        loop.call_soon_threadsafe(calls.append, "ok")
        loop.call_soon_threadsafe(loop.stop)

    safety = loop.call_later(5, loop.stop)
    loop.call_soon(lambda: threading.Thread(target=other_thread, daemon=True).start())
    loop.run_forever()
    safety.cancel()
    assert calls == ["ok"]


def test_call_soon_from_other_thread_when_not_running_is_allowed_in_debug(loop):
    # asyncio only checks the thread while the loop runs.
    loop.set_debug(True)
    handles = []
    t = threading.Thread(target=lambda: handles.append(loop.call_soon(print)))
    t.start()
    t.join(2)
    assert len(handles) == 1
    handles[0].cancel()


# -- callback checks in debug mode -------------------------------------------------------------


def test_call_soon_coroutine_function_in_debug_is_type_error(loop):
    loop.set_debug(True)
    with pytest.raises(TypeError, match=r"coroutines cannot be used with call_soon\(\)"):
        loop.call_soon(a_coroutine_function)


def test_call_soon_coroutine_object_in_debug_is_type_error(loop):
    loop.set_debug(True)
    coro = a_coroutine_function()
    try:
        with pytest.raises(TypeError, match="coroutines cannot be used with call_soon"):
            loop.call_soon(coro)
    finally:
        coro.close()


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda lp, cb: lp.call_later(1, cb), id="call_later"),
        pytest.param(lambda lp, cb: lp.call_at(lp.time() + 1, cb), id="call_at"),
        pytest.param(lambda lp, cb: lp.call_soon_threadsafe(cb), id="call_soon_threadsafe"),
        pytest.param(lambda lp, cb: lp.run_in_executor(None, cb), id="run_in_executor"),
    ],
)
def test_coroutine_function_rejected_in_debug(loop, call):
    loop.set_debug(True)
    with pytest.raises(TypeError, match="coroutines cannot be used with"):
        call(loop, a_coroutine_function)


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda lp, cb: lp.call_soon(cb), id="call_soon"),
        pytest.param(lambda lp, cb: lp.call_later(1, cb), id="call_later"),
        pytest.param(lambda lp, cb: lp.call_at(lp.time() + 1, cb), id="call_at"),
        pytest.param(lambda lp, cb: lp.call_soon_threadsafe(cb), id="call_soon_threadsafe"),
    ],
)
@pytest.mark.parametrize("bad", [1, None, "text"], ids=["int", "None", "str"])
def test_non_callable_rejected_in_debug(loop, call, bad):
    loop.set_debug(True)
    with pytest.raises(TypeError, match="a callable object was expected"):
        call(loop, bad)


def test_call_soon_non_callable_message_in_debug(loop):
    loop.set_debug(True)
    with pytest.raises(TypeError) as info:
        loop.call_soon(123)
    assert str(info.value) == "a callable object was expected by call_soon(), got 123"


def test_slow_task_step_is_logged_with_the_task(loop, caplog):
    loop.set_debug(True)
    loop.slow_callback_duration = 0.02

    async def sluggish_coroutine():
        time.sleep(0.05)

    with caplog.at_level(logging.WARNING, logger="asyncio"):
        loop.run_until_complete(loop.create_task(sluggish_coroutine(), name="slow-task"))
    texts = [r.getMessage() for r in caplog.records if r.name == "asyncio"]
    assert len(texts) == 1
    assert texts[0].startswith("Executing <Task")
    assert "slow-task" in texts[0]


def test_default_handler_shows_the_running_handle_origin_in_debug(loop, caplog):
    loop.set_debug(True)

    def report():
        loop.default_exception_handler({"message": "reported from a callback"})

    loop.call_soon(report)
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        run_once(loop)
    texts = [r.getMessage() for r in caplog.records if r.name == "asyncio"]
    assert len(texts) == 1
    assert "reported from a callback" in texts[0]
    assert "Handle created at" in texts[0]
    assert os.path.basename(__file__) in texts[0]


# -- transports and sock_* in debug mode: the same native I/O, with debug's checks on top ----


def test_slow_data_received_is_logged_as_the_transports_read_callback(loop, caplog):
    """A transport's read callback (data_received) that runs long is logged in debug mode, as
    asyncio logs its slow _read_ready handle; data still arrives in order."""
    import asyncio
    import socket

    loop.set_debug(True)
    loop.slow_callback_duration = 0.02
    received = []

    class Sluggish(asyncio.Protocol):
        def data_received(self, data):
            received.append(data)
            if len(received) == 1:
                time.sleep(0.05)

    async def main():
        a, b = socket.socketpair()
        with a, b:
            transport, _ = await loop.connect_accepted_socket(Sluggish, a)
            b.sendall(b"first")
            while not received:
                await asyncio.sleep(0.005)
            b.sendall(b"second")
            while len(b"".join(received)) < 11:
                await asyncio.sleep(0.005)
            transport.close()
            await asyncio.sleep(0)

    with caplog.at_level(logging.WARNING, logger="asyncio"):
        loop.run_until_complete(asyncio.wait_for(main(), 2))
    assert b"".join(received) == b"firstsecond"
    slow = [r.getMessage() for r in caplog.records
            if r.name == "asyncio" and r.levelno == logging.WARNING]
    assert len(slow) == 1, slow
    assert slow[0].startswith("Executing") and "_read_ready" in slow[0]
    assert "took" in slow[0]


def test_transport_echo_in_debug_mode_reads_writes_and_closes(loop):
    """The native read and write paths serve debug mode: a Protocol and a BufferedProtocol
    echo round trip, then end of stream and close, exactly as without debug."""
    import asyncio
    import socket

    loop.set_debug(True)
    events = []

    class Echo(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport = transport

        def data_received(self, data):
            self.transport.write(data)

        def eof_received(self):
            events.append("eof")

        def connection_lost(self, exc):
            events.append(("lost", exc))

    class BufferedEcho(asyncio.BufferedProtocol):
        def __init__(self):
            self.buffer = bytearray(7)

        def connection_made(self, transport):
            self.transport = transport

        def get_buffer(self, sizehint):
            return self.buffer

        def buffer_updated(self, nbytes):
            self.transport.write(bytes(self.buffer[:nbytes]))

        def connection_lost(self, exc):
            events.append(("lost", exc))

    async def round_trip(factory):
        a, b = socket.socketpair()
        b.setblocking(False)
        with b:
            await loop.connect_accepted_socket(factory, a)
            message = b"debug mode echo " * 100
            await loop.sock_sendall(b, message)
            got = b""
            while len(got) < len(message):
                got += await loop.sock_recv(b, 65536)
            assert got == message
            b.shutdown(socket.SHUT_WR)
            assert await loop.sock_recv(b, 10) == b""
            await asyncio.sleep(0.01)

    loop.run_until_complete(asyncio.wait_for(round_trip(Echo), 2))
    loop.run_until_complete(asyncio.wait_for(round_trip(BufferedEcho), 2))
    assert events == ["eof", ("lost", None), ("lost", None)]


def test_sock_recv_on_a_blocking_socket_is_refused_in_debug_mode(loop):
    """Debug mode's check on top of the sock_* calls: the socket must be non-blocking."""
    import socket

    loop.set_debug(True)
    a, b = socket.socketpair()
    with a, b:
        for call in (lambda: loop.sock_recv(a, 1), lambda: loop.sock_sendall(a, b"x")):
            coro = call()
            with pytest.raises(ValueError, match="must be non-blocking"):
                loop.run_until_complete(coro)

# tests/python/test_exception_handler.py: set/get_exception_handler, default_exception_handler,
# call_exception_handler, errors raised by callbacks, and KeyboardInterrupt / SystemExit leaving
# run_forever (asyncio base_events.py, events.Handle._run).

import asyncio
import logging
import os
import signal
import threading
import time

import pytest


def run_once(loop):
    loop.stop()
    loop.run_forever()


def asyncio_errors(caplog):
    return [r for r in caplog.records if r.name == "asyncio" and r.levelno >= logging.ERROR]


def test_exception_handler_defaults_to_none(new_loop):
    lp = new_loop()
    assert lp.get_exception_handler() is None


def test_set_and_get_exception_handler(loop):
    def handler(lp, context):
        pass

    loop.set_exception_handler(handler)
    assert loop.get_exception_handler() is handler
    loop.set_exception_handler(None)
    assert loop.get_exception_handler() is None


@pytest.mark.parametrize("bad", [1, "handler", object()], ids=["int", "str", "object"])
def test_set_exception_handler_non_callable_is_type_error(loop, bad):
    before = loop.get_exception_handler()
    with pytest.raises(TypeError):
        loop.set_exception_handler(bad)
    assert loop.get_exception_handler() is before


def test_call_exception_handler_passes_loop_and_context(loop):
    seen = []
    loop.set_exception_handler(lambda lp, ctx: seen.append((lp, ctx)))
    context = {"message": "custom", "extra": 1}
    loop.call_exception_handler(context)
    assert len(seen) == 1
    assert seen[0][0] is loop
    assert seen[0][1]["message"] == "custom"
    assert seen[0][1]["extra"] == 1


def test_default_exception_handler_logs_to_asyncio_logger(loop, caplog):
    loop.set_exception_handler(None)
    exc = ValueError("logged-exception")
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        loop.call_exception_handler({"message": "my message", "exception": exc, "extra_key": 7})
    records = asyncio_errors(caplog)
    assert len(records) == 1
    text = records[0].getMessage()
    assert "my message" in text
    assert "extra_key" in text
    assert records[0].exc_info is not None
    assert records[0].exc_info[1] is exc


def test_default_exception_handler_called_directly(loop, caplog):
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        loop.default_exception_handler({"message": "direct call"})
    records = asyncio_errors(caplog)
    assert len(records) == 1
    assert "direct call" in records[0].getMessage()
    assert not records[0].exc_info


def test_default_exception_handler_without_message(loop, caplog):
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        loop.default_exception_handler({"exception": RuntimeError("x")})
    records = asyncio_errors(caplog)
    assert len(records) == 1
    assert "Unhandled exception in event loop" in records[0].getMessage()


def test_custom_handler_can_defer_to_default(loop, caplog):
    def handler(lp, context):
        lp.default_exception_handler(context)

    loop.set_exception_handler(handler)
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        loop.call_exception_handler({"message": "deferred"})
    assert ["deferred" in r.getMessage() for r in asyncio_errors(caplog)] == [True]


def test_exception_in_callback_is_reported_and_loop_goes_on(loop, expect_exception_handler):
    calls = []
    exc = ValueError("in-callback")

    def bad_callback():
        raise exc

    handle = loop.call_soon(bad_callback)
    loop.call_soon(calls.append, "after")
    run_once(loop)
    assert calls == ["after"]
    assert len(expect_exception_handler) == 1
    ctx = expect_exception_handler[0]
    assert ctx["exception"] is exc
    assert ctx["handle"] is handle
    assert ctx["message"].startswith("Exception in callback")
    assert "bad_callback" in ctx["message"]
    assert "source_traceback" not in ctx  # only in debug mode
    # The loop keeps running later iterations too.
    loop.call_soon(calls.append, "next")
    run_once(loop)
    assert calls == ["after", "next"]


def test_exception_in_timer_callback_is_reported(loop, expect_exception_handler):
    def bad_timer():
        raise KeyError("timer")

    handle = loop.call_later(0, bad_timer)
    loop.call_later(0.01, loop.stop)
    loop.run_forever()
    assert len(expect_exception_handler) == 1
    ctx = expect_exception_handler[0]
    assert isinstance(ctx["exception"], KeyError)
    assert ctx["handle"] is handle
    assert "bad_timer" in ctx["message"]


def test_base_exception_subclass_in_callback_is_reported(loop, expect_exception_handler):
    class CustomBase(BaseException):
        pass

    calls = []
    loop.call_soon(lambda: (_ for _ in ()).throw(CustomBase()))
    loop.call_soon(calls.append, "after")
    run_once(loop)
    assert calls == ["after"]
    assert isinstance(expect_exception_handler[0]["exception"], CustomBase)


def test_exception_in_default_handler_path_is_logged(loop, caplog):
    # Without a custom handler, a callback error is logged by default_exception_handler.
    loop.set_exception_handler(None)

    def failing_cb():
        raise ValueError("default-path")

    loop.call_soon(failing_cb)
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        run_once(loop)
    records = asyncio_errors(caplog)
    assert len(records) == 1
    assert "Exception in callback" in records[0].getMessage()
    assert "failing_cb" in records[0].getMessage()
    assert isinstance(records[0].exc_info[1], ValueError)


def test_exception_inside_exception_handler_is_logged(loop, caplog):
    def broken_handler(lp, context):
        raise RuntimeError("handler broke")

    loop.set_exception_handler(broken_handler)
    calls = []
    loop.call_soon(lambda: 1 / 0)
    loop.call_soon(calls.append, "after")
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        run_once(loop)
    assert calls == ["after"]
    records = asyncio_errors(caplog)
    assert len(records) == 1
    assert "Unhandled error in exception handler" in records[0].getMessage()
    assert isinstance(records[0].exc_info[1], RuntimeError)


def test_exception_inside_exception_handler_via_call_exception_handler(loop, caplog):
    loop.set_exception_handler(lambda lp, ctx: 1 / 0)
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        loop.call_exception_handler({"message": "original"})
    records = asyncio_errors(caplog)
    assert len(records) == 1
    assert isinstance(records[0].exc_info[1], ZeroDivisionError)
    assert "original" in records[0].getMessage()  # the original context is logged with it


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
def test_interrupt_in_callback_leaves_run_forever(loop, exc_type):
    calls = []

    def interrupt():
        raise exc_type()

    loop.call_soon(calls.append, "before")
    loop.call_soon(interrupt)
    loop.call_soon(calls.append, "queued-after")
    with pytest.raises(exc_type):
        loop.run_forever()
    assert calls == ["before"]
    assert loop.is_running() is False
    assert asyncio._get_running_loop() is None
    # The loop is usable afterwards; what was queued behind the interrupt runs exactly once,
    # and the interrupting callback is not run again.
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert calls == ["before", "queued-after"]
    assert loop.run_until_complete(asyncio.sleep(0, "usable")) == "usable"


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
def test_interrupt_in_timer_leaves_run_forever(loop, exc_type):
    def interrupt():
        raise exc_type()

    loop.call_later(0.001, interrupt)
    safety = loop.call_later(5, loop.stop)
    with pytest.raises(exc_type):
        loop.run_forever()
    safety.cancel()
    assert loop.is_running() is False
    assert loop.run_until_complete(asyncio.sleep(0, 1)) == 1


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
def test_interrupt_in_coroutine_leaves_run_until_complete(loop, exc_type):
    async def main():
        await asyncio.sleep(0)
        raise exc_type()

    with pytest.raises(exc_type):
        loop.run_until_complete(main())
    assert loop.is_running() is False
    assert asyncio._get_running_loop() is None
    assert loop.run_until_complete(asyncio.sleep(0, "again")) == "again"


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
def test_interrupted_run_until_complete_does_not_stop_the_next_run(loop, exc_type):
    # The task's done callback was already queued when the interrupt left the loop; it must not
    # stop a later run (asyncio's _run_until_complete_cb skips these, bpo-22429).
    async def main():
        raise exc_type()

    with pytest.raises(exc_type):
        loop.run_until_complete(main())
    ticks = []

    def tick():
        ticks.append(1)
        loop.call_soon(tick)

    loop.call_soon(tick)
    loop.call_later(0.05, loop.stop)
    t0 = time.monotonic()
    loop.run_forever()
    assert time.monotonic() - t0 >= 0.04
    assert len(ticks) > 2


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
def test_interrupt_in_exception_handler_propagates(loop, exc_type):
    def handler(lp, context):
        raise exc_type()

    loop.set_exception_handler(handler)
    loop.call_soon(lambda: 1 / 0)
    with pytest.raises(exc_type):
        run_once(loop)
    assert loop.is_running() is False
    with pytest.raises(exc_type):
        loop.call_exception_handler({"message": "direct"})


def test_sigint_interrupts_a_loop_blocked_in_its_wait(loop):
    # Python's default SIGINT handler raises KeyboardInterrupt in the main thread; a loop blocked
    # waiting for a distant timer must notice the signal promptly, leave run_forever with it,
    # and stay usable.
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals are delivered to the main thread")
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        pytest.skip("SIGINT has a custom handler in this process")
    safety = loop.call_later(5, loop.stop)
    timer = threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGINT))
    t0 = time.monotonic()
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            loop.run_forever()
    finally:
        timer.cancel()
    assert time.monotonic() - t0 < 2.0
    assert loop.is_running() is False
    safety.cancel()
    assert loop.run_until_complete(asyncio.sleep(0, "after")) == "after"

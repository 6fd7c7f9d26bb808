"""tests/python/test_signal_handlers.py — add_signal_handler / remove_signal_handler on both loops."""

import asyncio
import os
import signal
import threading

import pytest

pytestmark = pytest.mark.skipif(
    threading.current_thread() is not threading.main_thread(),
    reason="signal handlers belong to the main thread",
)


def test_handler_runs_in_the_loop_for_each_signal(loop):
    got = []
    loop.add_signal_handler(signal.SIGUSR1, got.append, "usr1")
    try:
        async def main():
            os.kill(os.getpid(), signal.SIGUSR1)
            for _ in range(3):  # a busy loop still sees it at once
                await asyncio.sleep(0)
            seen_while_busy = list(got)
            loop.call_later(0.02, os.kill, os.getpid(), signal.SIGUSR1)
            await asyncio.sleep(0.2)  # an idle loop is woken by it
            return seen_while_busy

        assert loop.run_until_complete(main()) == ["usr1"]
        assert got == ["usr1", "usr1"]
    finally:
        assert loop.remove_signal_handler(signal.SIGUSR1) is True
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL


def test_replacing_a_handler_uses_the_new_one(loop):
    got = []
    loop.add_signal_handler(signal.SIGUSR2, got.append, "old")
    loop.add_signal_handler(signal.SIGUSR2, got.append, "new")
    try:
        async def main():
            os.kill(os.getpid(), signal.SIGUSR2)
            await asyncio.sleep(0.05)

        loop.run_until_complete(main())
        assert got == ["new"]
    finally:
        loop.remove_signal_handler(signal.SIGUSR2)


def test_remove_restores_default_int_handler_for_sigint(loop):
    loop.add_signal_handler(signal.SIGINT, lambda: None)
    assert loop.remove_signal_handler(signal.SIGINT) is True
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert loop.remove_signal_handler(signal.SIGINT) is False


def test_bad_arguments_raise_as_asyncio(loop):
    with pytest.raises(TypeError):
        loop.add_signal_handler("SIGUSR1", lambda: None)
    with pytest.raises(ValueError):
        loop.add_signal_handler(10_000, lambda: None)
    with pytest.raises(RuntimeError):
        loop.add_signal_handler(signal.SIGKILL, lambda: None)

    async def coro():
        pass

    with pytest.raises(TypeError):
        loop.add_signal_handler(signal.SIGUSR1, coro)
    with pytest.raises(TypeError):
        loop.remove_signal_handler("SIGUSR1")


def test_close_removes_handlers(loop_factory):
    loop = loop_factory()
    loop.add_signal_handler(signal.SIGUSR1, lambda: None)
    loop.close()
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL


def test_add_from_another_thread_is_runtime_error(loop):
    errors = []

    def other():
        try:
            loop.add_signal_handler(signal.SIGUSR1, lambda: None)
        except Exception as exc:  # recorded for the assertion below
            errors.append(type(exc))

    thread = threading.Thread(target=other)
    thread.start()
    thread.join(5)
    assert errors == [RuntimeError]

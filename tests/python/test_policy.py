# tests/python/test_policy.py: the package's own API: PyLoop, new_event_loop, EventLoopPolicy,
# install(), is_installed() and run(); run() is checked side by side with asyncio.run.

import asyncio
import concurrent.futures
import os
import signal
import sys
import threading
import time

import pytest


@pytest.fixture
def restore_policy():
    policy = asyncio.get_event_loop_policy()
    yield
    asyncio.set_event_loop_policy(policy)
    asyncio.set_event_loop(None)


def _asyncio_run(main, *, debug=None):
    return asyncio.run(main, debug=debug)


def _pyloop_run(main, *, debug=None):
    from data_bridge import pyloop

    return pyloop.run(main, debug=debug)


@pytest.fixture(
    params=[
        pytest.param(_asyncio_run, id="asyncio"),
        pytest.param(_pyloop_run, id="pyloop", marks=pytest.mark.pyloop),
    ]
)
def runner(request):
    """asyncio.run or data_bridge.pyloop.run: the same assertions must hold for both."""
    if request.param is _pyloop_run:
        request.getfixturevalue("pyloop_module")  # fails loudly if the package is missing
    return request.param


# -- the package's names -----------------------------------------------------------------------


def test_public_names(pyloop_module):
    for name in ("PyLoop", "new_event_loop", "EventLoopPolicy", "install", "is_installed", "run"):
        assert hasattr(pyloop_module, name), name


def test_new_event_loop_returns_a_pyloop(pyloop_module):
    a = pyloop_module.new_event_loop()
    b = pyloop_module.new_event_loop()
    try:
        assert isinstance(a, pyloop_module.PyLoop)
        assert isinstance(a, asyncio.AbstractEventLoop)
        assert a is not b
        assert a.run_until_complete(asyncio.sleep(0, "ok")) == "ok"
    finally:
        a.close()
        b.close()


def test_pyloop_class(pyloop_module):
    assert issubclass(pyloop_module.PyLoop, asyncio.AbstractEventLoop)
    lp = pyloop_module.PyLoop()
    try:
        assert lp.run_until_complete(asyncio.sleep(0, 1)) == 1
    finally:
        lp.close()


def test_pyloop_instances_accept_attributes(pyloop_module):
    lp = pyloop_module.new_event_loop()
    try:
        lp.custom_attribute = "set by a library"
        assert lp.custom_attribute == "set by a library"
        original = lp.call_soon
        lp.call_soon = lambda *a, **k: original(*a, **k)  # test suites patch loop methods
        fut = lp.create_future()
        lp.call_soon(fut.set_result, 3)
        assert lp.run_until_complete(fut) == 3
    finally:
        lp.close()


def test_pyloop_can_be_subclassed(pyloop_module):
    calls = []

    class MyLoop(pyloop_module.PyLoop):
        def call_soon(self, callback, *args, context=None):
            calls.append(callback)
            return super().call_soon(callback, *args, context=context)

    def on_done(fut):
        pass

    lp = MyLoop()
    try:
        assert isinstance(lp, pyloop_module.PyLoop)
        lp.call_soon(lp.stop)
        lp.run_forever()
        assert calls[0] == lp.stop
        # asyncio's futures schedule their callbacks through the loop's (overridden) call_soon.
        fut = lp.create_future()
        fut.add_done_callback(on_done)
        fut.set_result(None)
        assert on_done in calls
        lp.run_until_complete(fut)
    finally:
        lp.close()


# -- policy and install() ----------------------------------------------------------------------


def test_event_loop_policy_makes_pyloops(pyloop_module, restore_policy):
    policy = pyloop_module.EventLoopPolicy()
    assert isinstance(policy, asyncio.AbstractEventLoopPolicy)
    lp = policy.new_event_loop()
    try:
        assert isinstance(lp, pyloop_module.PyLoop)
    finally:
        lp.close()
    asyncio.set_event_loop_policy(policy)
    lp = asyncio.new_event_loop()
    try:
        assert isinstance(lp, pyloop_module.PyLoop)
    finally:
        lp.close()


def test_install_and_is_installed(pyloop_module, restore_policy):
    asyncio.set_event_loop_policy(None)
    assert pyloop_module.is_installed() is False
    pyloop_module.install()
    assert pyloop_module.is_installed() is True
    assert isinstance(asyncio.get_event_loop_policy(), pyloop_module.EventLoopPolicy)

    async def main():
        return type(asyncio.get_running_loop())

    assert issubclass(asyncio.run(main()), pyloop_module.PyLoop)
    asyncio.set_event_loop_policy(None)
    assert pyloop_module.is_installed() is False


@pytest.mark.skipif(sys.version_info < (3, 12), reason="asyncio.run(loop_factory=) is new in 3.12")
def test_asyncio_run_with_loop_factory(pyloop_module):
    async def main():
        return asyncio.get_running_loop()

    lp = asyncio.run(main(), loop_factory=pyloop_module.new_event_loop)
    assert isinstance(lp, pyloop_module.PyLoop)
    assert lp.is_closed()


def test_run_debug_is_keyword_only(pyloop_module):
    async def main():
        pass

    coro = main()
    try:
        with pytest.raises(TypeError):
            pyloop_module.run(coro, True)
    finally:
        coro.close()


def test_run_uses_a_pyloop(pyloop_module):
    async def main():
        return asyncio.get_running_loop()

    lp = pyloop_module.run(main())
    assert isinstance(lp, pyloop_module.PyLoop)
    assert lp.is_closed()


# -- run() side by side with asyncio.run -------------------------------------------------------


def test_run_returns_result_and_closes_the_loop(runner):
    async def main(x):
        await asyncio.sleep(0.001)
        return x, asyncio.get_running_loop()

    value, lp = runner(main("v"))
    assert value == "v"
    assert lp.is_closed()
    assert asyncio._get_running_loop() is None


def test_run_propagates_exception(runner):
    async def main():
        raise OverflowError("from main")

    with pytest.raises(OverflowError, match="from main"):
        runner(main())


def test_run_each_call_uses_a_new_loop(runner):
    async def main():
        return asyncio.get_running_loop()

    assert runner(main()) is not runner(main())


def test_run_debug_flag(runner):
    async def main():
        return asyncio.get_running_loop().get_debug()

    assert runner(main(), debug=True) is True
    assert runner(main(), debug=False) is False


def test_run_rejects_non_coroutine(runner):
    with pytest.raises(ValueError):
        runner(asyncio.sleep)
    with pytest.raises(ValueError):
        runner(123)


def test_run_inside_a_running_loop_is_runtime_error(runner):
    errors = []

    async def inner():
        pass

    async def main():
        coro = inner()
        try:
            runner(coro)
        except RuntimeError as exc:
            errors.append(exc)
        finally:
            coro.close()

    asyncio.run(main())
    assert len(errors) == 1
    assert "cannot be called from a running event loop" in str(errors[0])


def test_run_cancels_leftover_tasks(runner):
    log = []

    async def background():
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            log.append("cancelled")
            raise

    async def main():
        asyncio.get_running_loop().create_task(background())
        await asyncio.sleep(0)
        return "main-done"

    t0 = time.monotonic()
    assert runner(main()) == "main-done"
    assert log == ["cancelled"]
    assert time.monotonic() - t0 < 2.0


def test_run_finalizes_async_generators(runner):
    log = []

    async def gen():
        try:
            yield 1
            yield 2
        finally:
            log.append("finalized")

    holder = []

    async def main():
        g = gen()
        holder.append(g)  # keep it alive: only shutdown_asyncgens can close it
        await g.__anext__()

    runner(main())
    assert log == ["finalized"]


def test_run_shuts_down_the_default_executor(runner):
    finished = []

    def job():
        time.sleep(0.05)
        finished.append(True)

    async def main():
        asyncio.get_running_loop().run_in_executor(None, job)
        await asyncio.sleep(0)

    runner(main())
    assert finished == [True]


def test_run_leaves_asyncgen_hooks_and_running_loop_as_found(runner):
    before = sys.get_asyncgen_hooks()

    async def main():
        return sys.get_asyncgen_hooks()

    during = runner(main())
    assert during.firstiter is not None
    assert sys.get_asyncgen_hooks() == before
    assert asyncio._get_running_loop() is None


def test_run_in_a_thread(runner):
    results = []

    async def main():
        await asyncio.sleep(0.001)
        return threading.get_ident()

    def worker():
        results.append(runner(main()))

    t = threading.Thread(target=worker)
    t.start()
    t.join(5)
    assert len(results) == 1 and results[0] != threading.get_ident()


def test_run_sigint_cancels_main_and_raises_keyboard_interrupt(runner):
    # asyncio.run turns Ctrl-C into cancelling the main task, then KeyboardInterrupt; the loop
    # must wake from a long wait to do so.
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals are delivered to the main thread")
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        pytest.skip("SIGINT has a custom handler in this process")
    log = []

    async def main():
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            log.append("cancelled")
            raise

    timer = threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGINT))
    t0 = time.monotonic()
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            runner(main())
    finally:
        timer.cancel()
    assert time.monotonic() - t0 < 2.0
    assert log == ["cancelled"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_run_with_explicit_executor_work(runner):
    async def main():
        with concurrent.futures.ThreadPoolExecutor(1) as ex:
            return await asyncio.get_running_loop().run_in_executor(ex, sum, [1, 2, 3])

    assert runner(main()) == 6

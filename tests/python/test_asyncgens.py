# tests/python/test_asyncgens.py: asynchronous generators and the loop: the asyncgen hooks set
# while the loop runs (and restored after), finalization of abandoned generators, and
# shutdown_asyncgens.

import asyncio
import gc
import sys

import pytest


@pytest.fixture
def saved_asyncgen_hooks():
    hooks = sys.get_asyncgen_hooks()
    yield hooks
    sys.set_asyncgen_hooks(*hooks)


def make_gen(log, name="gen"):
    async def gen():
        try:
            for i in range(100):
                yield i
                await asyncio.sleep(0)
        finally:
            log.append(f"{name}-finalized")

    return gen()


def test_asyncgen_hooks_installed_while_running_and_restored(loop, saved_asyncgen_hooks):
    def my_firstiter(agen):
        pass

    def my_finalizer(agen):
        pass

    sys.set_asyncgen_hooks(firstiter=my_firstiter, finalizer=my_finalizer)

    async def main():
        return sys.get_asyncgen_hooks()

    during = loop.run_until_complete(main())
    assert during.firstiter is not None and during.finalizer is not None
    assert during.firstiter is not my_firstiter
    assert during.finalizer is not my_finalizer
    after = sys.get_asyncgen_hooks()
    assert after.firstiter is my_firstiter
    assert after.finalizer is my_finalizer


def test_asyncgen_hooks_restored_after_run_forever_raises(loop, saved_asyncgen_hooks):
    sys.set_asyncgen_hooks(firstiter=None, finalizer=None)

    def interrupt():
        raise KeyboardInterrupt

    loop.call_soon(interrupt)
    with pytest.raises(KeyboardInterrupt):
        loop.run_forever()
    assert sys.get_asyncgen_hooks() == (None, None)


def test_asyncgen_hooks_restored_to_none(loop, saved_asyncgen_hooks):
    sys.set_asyncgen_hooks(firstiter=None, finalizer=None)
    loop.run_until_complete(asyncio.sleep(0))
    assert sys.get_asyncgen_hooks() == (None, None)


def test_shutdown_asyncgens_finalizes_unfinished_generators(loop):
    log = []
    gens = [make_gen(log, "a"), make_gen(log, "b")]

    async def main():
        for g in gens:
            assert await g.__anext__() == 0
        await loop.shutdown_asyncgens()
        return list(log)

    assert sorted(loop.run_until_complete(main())) == ["a-finalized", "b-finalized"]
    for g in gens:
        with pytest.raises(StopAsyncIteration):
            loop.run_until_complete(g.__anext__())


def test_shutdown_asyncgens_ignores_never_started_and_finished_generators(loop):
    log = []
    never_started = make_gen(log, "never")

    async def short():
        yield 1

    async def main():
        finished = short()
        assert [x async for x in finished] == [1]
        await loop.shutdown_asyncgens()

    loop.run_until_complete(main())
    assert log == []
    loop.run_until_complete(never_started.aclose())


def test_shutdown_asyncgens_without_generators(loop):
    loop.run_until_complete(loop.shutdown_asyncgens())


def test_shutdown_asyncgens_error_goes_to_exception_handler(loop, expect_exception_handler):
    async def bad_gen():
        try:
            yield 1
        finally:
            raise ValueError("in aclose")

    g = bad_gen()

    async def main():
        await g.__anext__()
        await loop.shutdown_asyncgens()

    loop.run_until_complete(main())
    assert len(expect_exception_handler) == 1
    ctx = expect_exception_handler[0]
    assert isinstance(ctx["exception"], ValueError)
    assert ctx["asyncgen"] is g
    assert "asynchronous generator" in ctx["message"]


def test_new_generator_after_shutdown_asyncgens_warns(loop):
    log = []

    async def main():
        await loop.shutdown_asyncgens()
        g = make_gen(log, "late")
        with pytest.warns(ResourceWarning, match="shutdown_asyncgens"):
            await g.__anext__()
        await g.aclose()

    loop.run_until_complete(main())
    assert log == ["late-finalized"]


def test_abandoned_generator_is_finalized_by_the_loop(loop):
    log = []

    async def main():
        g = make_gen(log, "abandoned")
        await g.__anext__()
        del g
        gc.collect()
        # The finalizer hook schedules aclose() as a task on the loop.
        for _ in range(10):
            if log:
                break
            await asyncio.sleep(0)
        return list(log)

    assert loop.run_until_complete(main()) == ["abandoned-finalized"]


def test_async_for_break_then_aclose(loop):
    log = []

    async def main():
        g = make_gen(log, "loop")
        async for i in g:
            if i == 2:
                break
        await g.aclose()
        return list(log)

    assert loop.run_until_complete(main()) == ["loop-finalized"]


def test_generator_first_iterated_in_one_run_shut_down_in_another(loop):
    log = []
    g = make_gen(log, "kept")

    async def first_step():
        # The firstiter hook runs when __anext__() is called, so call it while the loop runs.
        return await g.__anext__()

    assert loop.run_until_complete(first_step()) == 0
    assert log == []
    loop.run_until_complete(loop.shutdown_asyncgens())
    assert log == ["kept-finalized"]

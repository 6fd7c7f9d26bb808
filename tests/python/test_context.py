# tests/python/test_context.py: contextvars around callbacks and tasks. A callback runs in the
# context given with context=, else in a copy of the caller's context taken when it was scheduled.

import asyncio
import contextvars
import logging

import pytest

var = contextvars.ContextVar("pyloop_test_var", default="default")


def run_once(loop):
    loop.stop()
    loop.run_forever()


@pytest.fixture(autouse=True)
def _reset_var():
    token = var.set("default")
    yield
    var.reset(token)


def test_callback_sees_copy_captured_at_call_soon_time(loop):
    seen = []
    var.set("at-schedule")
    loop.call_soon(lambda: seen.append(var.get()))
    var.set("after-schedule")
    run_once(loop)
    assert seen == ["at-schedule"]


def test_callback_changes_stay_in_its_copy(loop):
    seen = []

    def writer():
        var.set("written-by-callback")
        seen.append(var.get())

    loop.call_soon(writer)
    loop.call_soon(lambda: seen.append(var.get()))
    run_once(loop)
    assert seen == ["written-by-callback", "default"]
    assert var.get() == "default"


def test_callback_runs_in_given_context_and_changes_stay_there(loop):
    ctx = contextvars.copy_context()
    ctx.run(var.set, "ctx-value")
    seen = []

    def cb():
        seen.append(var.get())
        var.set("changed-in-callback")

    loop.call_soon(cb, context=ctx)
    run_once(loop)
    assert seen == ["ctx-value"]
    assert ctx[var] == "changed-in-callback"
    assert var.get() == "default"


def test_shared_context_is_seen_by_later_callbacks(loop):
    ctx = contextvars.Context()
    seen = []
    loop.call_soon(var.set, "first", context=ctx)
    loop.call_soon(lambda: seen.append(var.get()), context=ctx)
    run_once(loop)
    assert seen == ["first"]
    assert ctx[var] == "first"


@pytest.mark.parametrize("method", ["call_later", "call_at"])
def test_timer_callback_runs_in_given_context(loop, method):
    ctx = contextvars.copy_context()
    ctx.run(var.set, "timer-ctx")
    seen = []

    def cb():
        seen.append(var.get())
        var.set("timer-changed")

    if method == "call_later":
        loop.call_later(0, cb, context=ctx)
    else:
        loop.call_at(loop.time(), cb, context=ctx)
    loop.call_later(0.01, loop.stop)
    loop.run_forever()
    assert seen == ["timer-ctx"]
    assert ctx[var] == "timer-changed"


def test_timer_callback_captures_context_at_schedule_time(loop):
    seen = []
    var.set("timer-schedule")
    loop.call_later(0, lambda: seen.append(var.get()))
    var.set("later")
    loop.call_later(0.01, loop.stop)
    loop.run_forever()
    assert seen == ["timer-schedule"]


def test_context_running_the_callback_is_current(loop):
    ctx = contextvars.copy_context()
    seen = []
    loop.call_soon(lambda: seen.append(contextvars.copy_context()[var]), context=ctx)
    ctx.run(var.set, "visible")
    run_once(loop)
    assert seen == ["visible"]


def test_context_already_entered_is_reported_and_loop_goes_on(loop, caplog):
    # Running a callback in a context that is already entered fails inside Context.run; the
    # loop reports it like any callback error and goes on. Python 3.12+ also runs the exception
    # handler in that context, which fails too and is logged instead.
    records = []
    loop.set_exception_handler(lambda lp, context: records.append(context["exception"]))
    ctx = contextvars.copy_context()
    calls = []
    loop.call_soon(calls.append, "inner", context=ctx)
    loop.call_soon(calls.append, "after")
    loop.call_soon(loop.stop)
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        ctx.run(loop.run_forever)
    assert calls == ["after"]
    logged = [r.exc_info[1] for r in caplog.records if r.name == "asyncio" and r.exc_info]
    reported = records + logged
    assert len(reported) == 1
    assert isinstance(reported[0], RuntimeError)


def test_task_runs_in_copy_of_creating_context(loop):
    async def child():
        seen = var.get()
        var.set("child-changed")
        return seen

    async def main():
        var.set("parent")
        seen = await loop.create_task(child())
        return seen, var.get()

    assert loop.run_until_complete(main()) == ("parent", "parent")


def test_create_task_with_context(loop):
    ctx = contextvars.copy_context()
    ctx.run(var.set, "task-ctx")

    async def child():
        seen = var.get()
        var.set("task-changed")
        return seen

    async def main():
        return await loop.create_task(child(), context=ctx)

    assert loop.run_until_complete(main()) == "task-ctx"
    assert ctx[var] == "task-changed"


def test_future_done_callback_runs_in_given_context(loop):
    ctx = contextvars.copy_context()
    ctx.run(var.set, "fut-ctx")
    seen = []
    fut = loop.create_future()
    fut.add_done_callback(lambda f: seen.append(var.get()), context=ctx)
    fut.add_done_callback(lambda f: seen.append(var.get()))
    var.set("outside")
    fut.set_result(None)
    run_once(loop)
    assert seen == ["fut-ctx", "default"]


def test_context_var_visible_across_awaits_in_one_task(loop):
    async def main():
        var.set("task-local")
        await asyncio.sleep(0)
        await asyncio.sleep(0.001)
        return var.get()

    assert loop.run_until_complete(main()) == "task-local"
    assert var.get() == "default"

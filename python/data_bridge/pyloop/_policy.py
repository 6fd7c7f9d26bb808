"""data_bridge/pyloop/_policy.py — loop factory, event loop policy, install() and run()."""

from __future__ import annotations

import asyncio

from ._loop import PyLoop


def new_event_loop() -> PyLoop:
    """Return a new PyLoop (usable as asyncio.Runner's or uvicorn's loop factory)."""
    return PyLoop()


class EventLoopPolicy(asyncio.DefaultEventLoopPolicy):
    """An asyncio event loop policy whose loops are PyLoops."""

    def _loop_factory(self) -> PyLoop:  # called by DefaultEventLoopPolicy.new_event_loop
        return new_event_loop()


def install() -> None:
    """Make PyLoop asyncio's default: asyncio.new_event_loop() and asyncio.run() use it."""
    asyncio.set_event_loop_policy(EventLoopPolicy())


def is_installed() -> bool:
    """True when the current asyncio policy is PyLoop's."""
    return isinstance(asyncio.get_event_loop_policy(), EventLoopPolicy)


def run(main, *, debug=None):
    """Run a coroutine on a new PyLoop and return its result, exactly as asyncio.run does
    (cancels leftover tasks, shuts down async generators and the default executor)."""
    if asyncio._get_running_loop() is not None:
        # Fail before creating a loop, with asyncio.run's own message.
        raise RuntimeError("asyncio.run() cannot be called from a running event loop")
    with asyncio.Runner(debug=debug, loop_factory=new_event_loop) as runner:
        return runner.run(main)

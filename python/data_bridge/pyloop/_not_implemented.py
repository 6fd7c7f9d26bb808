"""data_bridge/pyloop/_not_implemented.py — the asyncio methods PyLoop does not implement
yet, and the stubs that stand in for them."""

from __future__ import annotations

import asyncio
import inspect

# Methods of asyncio.AbstractEventLoop that PyLoop does not implement yet (pipes,
# subprocesses). Each raises NotImplementedError naming itself; coroutine methods stay
# coroutines, so the error surfaces where asyncio's own errors would (at await).
NOT_YET_IMPLEMENTED = (
)


def _not_implemented(name: str):
    message = (
        f"PyLoop.{name}() is not implemented yet (data_bridge.pyloop does not support "
        f"pipes and subprocesses yet)"
    )
    if inspect.iscoroutinefunction(getattr(asyncio.AbstractEventLoop, name, None)):
        async def method(self, *args, **kwargs):
            raise NotImplementedError(message)
    else:
        def method(self, *args, **kwargs):
            raise NotImplementedError(message)
    method.__name__ = method.__qualname__ = name
    method.__doc__ = message
    return method


def install_stubs(loop_class) -> None:
    """Give loop_class a stub for each name of NOT_YET_IMPLEMENTED that no class of its MRO
    defines, asyncio.AbstractEventLoop's abstract methods aside."""
    for name in NOT_YET_IMPLEMENTED:
        if not any(
            name in vars(base)
            for base in loop_class.__mro__
            if base is not asyncio.AbstractEventLoop
        ):
            setattr(loop_class, name, _not_implemented(name))

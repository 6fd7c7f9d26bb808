"""benchmarks/loops.py — the event loops under comparison: how to make one, and its version."""

import asyncio
import importlib

# The order in which loops appear in every table column.
LOOPS = ("asyncio", "uvloop", "pyloop")


def factory(name):
    """Return a zero-argument callable making a fresh loop of kind `name` (ImportError if absent)."""
    if name == "asyncio":
        # The default policy's loop class, whatever policy may be installed process-wide:
        # this column must always be CPython's own loop.
        return asyncio.DefaultEventLoopPolicy().new_event_loop
    if name == "uvloop":
        return importlib.import_module("uvloop").new_event_loop
    if name == "pyloop":
        return importlib.import_module("data_bridge.pyloop").new_event_loop
    raise ValueError(f"unknown loop {name!r}; known: {', '.join(LOOPS)}")


def version(name):
    """Version string of the package behind loop `name` (Python's own version for asyncio)."""
    if name == "asyncio":
        import platform
        return platform.python_version()
    module = importlib.import_module("uvloop" if name == "uvloop" else "data_bridge.pyloop")
    found = getattr(module, "__version__", None)
    if found:
        return str(found)
    try:
        from importlib.metadata import version as dist_version
        return dist_version("uvloop" if name == "uvloop" else "data-bridge-pyloop")
    except Exception:
        return "unknown"


def describe(loop):
    """Fully qualified class name of a loop instance, e.g. 'uvloop.Loop'."""
    cls = type(loop)
    return f"{cls.__module__}.{cls.__qualname__}"


def is_asyncio_own(loop):
    """True when `loop` is CPython's pure-Python loop: a pyloop column made of it is a fallback."""
    from asyncio import base_events
    return isinstance(loop, base_events.BaseEventLoop)

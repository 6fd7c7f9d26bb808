"""tests/python/native_helpers.py — shared fixtures of the native bridge tests: the example
extension (examples/native_extension, built by scripts/setup.sh) and a PyLoop to run it on."""

import asyncio
import gc
import importlib
import os

import pytest


def import_example():
    """The example extension, or a loud failure saying how to build it (never a skip)."""
    try:
        return importlib.import_module("pyloop_native_example")
    except ImportError as exc:
        pytest.fail(
            f"cannot import pyloop_native_example ({exc!r}): scripts/setup.sh builds it "
            "(pip install --no-build-isolation --no-deps examples/native_extension)",
            pytrace=False,
        )


def make_pyloop():
    import data_bridge.pyloop as pyloop

    return pyloop.new_event_loop()


def close_loop(lp):
    if not lp.is_closed():
        lp.close()
    asyncio.set_event_loop(None)
    gc.collect()


@pytest.fixture
def ex():
    """The example extension."""
    return import_example()


@pytest.fixture
def ploop():
    """A PyLoop, closed (and the garbage collected) after the test."""
    lp = make_pyloop()
    yield lp
    close_loop(lp)


def open_fds():
    """Descriptors open in this process (Linux)."""
    return len(os.listdir("/proc/self/fd"))

# tests/python/conftest.py: fixtures that run every behaviour test on asyncio's loop and on PyLoop.
#
# Each test is written once and runs on both loops through `loop_factory` / `loop`; an assertion
# that holds on asyncio's own loop and fails on PyLoop is a behaviour difference to fix in PyLoop.
#
# Until the extension is built, `import data_bridge.pyloop` fails. The "pyloop" parameters then
# ERROR loudly (never skip), unless PYLOOP_TESTS_ASYNCIO_ONLY=1 is set: that deselects every
# PyLoop-bound test (anything marked `pyloop`), so the suite can be developed against asyncio.

import asyncio
import gc
import importlib
import os
import pathlib

import pytest

# Session fixtures starting PostgreSQL and Redis on demand (tests/python/services.py).
from services import postgres_server, redis_server  # noqa: F401

HERE = pathlib.Path(__file__).resolve().parent

ASYNCIO_ONLY_ENV = "PYLOOP_TESTS_ASYNCIO_ONLY"
DEFAULT_TIMEOUT_S = 30


def asyncio_only():
    """True when the run is restricted to asyncio's loop (PyLoop tests deselected)."""
    return os.environ.get(ASYNCIO_ONLY_ENV) == "1"


def import_pyloop():
    """Import data_bridge.pyloop, or fail the calling test loudly with the reason."""
    try:
        return importlib.import_module("data_bridge.pyloop")
    except Exception as exc:  # ImportError, or an error raised while the extension loads
        pytest.fail(
            f"cannot import data_bridge.pyloop ({exc!r}); build and install the package, "
            f"or set {ASYNCIO_ONLY_ENV}=1 to run the suite on asyncio's loop only",
            pytrace=False,
        )


class LoopFactory:
    """A zero-argument callable making a new loop; `spec` names it for subprocess tests."""

    def __init__(self, name, module, attr):
        self.name = name  # "asyncio" or "pyloop": the parameter id
        self.module = module  # module holding the factory function
        self.attr = attr  # name of the factory function in that module
        self._func = getattr(importlib.import_module(module), attr)

    @property
    def spec(self):
        return f"{self.module}:{self.attr}"

    def __call__(self):
        return self._func()

    def __repr__(self):
        return f"<LoopFactory {self.name} {self.spec}>"


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "pyloop: the test runs on PyLoop (deselected when PYLOOP_TESTS_ASYNCIO_ONLY=1)"
    )
    config.addinivalue_line(
        "markers", "timeout(seconds): per-test time limit (pytest-timeout)"
    )


def pytest_report_header(config):
    if asyncio_only():
        return f"pyloop tests: {ASYNCIO_ONLY_ENV}=1, PyLoop-bound tests are DESELECTED"
    try:
        importlib.import_module("data_bridge.pyloop")
    except Exception as exc:
        return f"pyloop tests: data_bridge.pyloop NOT importable ({exc!r}); its tests will error"
    return "pyloop tests: running on asyncio and data_bridge.pyloop"


def pytest_collection_finish(session):
    # The `loop` fixture collects garbage at every teardown; move what exists now (pytest's own
    # objects, imported modules) to the permanent generation so that those collections stay fast.
    gc.collect()
    gc.freeze()


def _in_this_suite(item):
    # Session hooks see every collected item; only this directory's tests are ours to change.
    return HERE in pathlib.Path(item.path).resolve().parents


def pytest_collection_modifyitems(config, items):
    for item in filter(_in_this_suite, items):
        # Every test gets a time limit unless it names its own.
        if item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(DEFAULT_TIMEOUT_S))
        # Tests of the package's own API request `pyloop_module`: they are PyLoop-bound too.
        if "pyloop_module" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.pyloop)
    if not asyncio_only():
        return
    kept, deselected = [], []
    for item in items:
        pyloop_bound = _in_this_suite(item) and item.get_closest_marker("pyloop")
        (deselected if pyloop_bound else kept).append(item)
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = kept


LOOP_PARAMS = [
    pytest.param("asyncio", id="asyncio"),
    pytest.param("pyloop", id="pyloop", marks=pytest.mark.pyloop),
]


@pytest.fixture(params=LOOP_PARAMS)
def loop_factory(request):
    """A callable returning a new event loop: asyncio's own, or PyLoop."""
    if request.param == "asyncio":
        return LoopFactory("asyncio", "asyncio", "new_event_loop")
    import_pyloop()
    return LoopFactory("pyloop", "data_bridge.pyloop", "new_event_loop")


@pytest.fixture
def pyloop_module():
    """The data_bridge.pyloop package, for PyLoop-only API tests (marked `pyloop` for them)."""
    return import_pyloop()


class HandlerRecord:
    """Exception-handler calls seen on the `loop` fixture's loop."""

    def __init__(self):
        self.calls = []  # context dicts passed to call_exception_handler, in order
        self.expected = False  # set by `expect_exception_handler`: calls are not a failure

    def handler(self, loop, context):
        self.calls.append(context)


@pytest.fixture
def _handler_record():
    return HandlerRecord()


@pytest.fixture
def expect_exception_handler(_handler_record):
    """Opt in to exception-handler calls on `loop`; returns the list of recorded contexts."""
    _handler_record.expected = True
    return _handler_record.calls


def _format_contexts(contexts):
    lines = []
    for ctx in contexts:
        exc = ctx.get("exception")
        lines.append(f"  message={ctx.get('message')!r} exception={exc!r} keys={sorted(ctx)}")
    return "\n".join(lines)


def _close_loop(loop):
    if loop.is_running():  # a broken test left it running; close() would raise
        loop.stop()
        return
    if not loop.is_closed():
        loop.close()


@pytest.fixture
def loop(loop_factory, _handler_record):
    """A fresh loop from `loop_factory`, closed at teardown.

    Its exception handler records every call; teardown fails the test if any was made and the
    test did not request `expect_exception_handler`. Teardown also collects garbage first, so a
    pending task or a never-retrieved exception destroyed with the test shows up here.
    """
    lp = loop_factory()
    lp.set_exception_handler(_handler_record.handler)
    try:
        yield lp
    finally:
        leaked = asyncio._get_running_loop()
        gc.collect()
        _close_loop(lp)
        asyncio.set_event_loop(None)
    assert leaked is None, f"running loop {leaked!r} still set after the test"
    if _handler_record.calls and not _handler_record.expected:
        pytest.fail(
            "unexpected call_exception_handler call(s):\n"
            + _format_contexts(_handler_record.calls),
            pytrace=False,
        )


@pytest.fixture
def new_loop(loop_factory):
    """Make extra loops of the same kind (default exception handler); all closed at teardown."""
    made = []

    def make():
        lp = loop_factory()
        made.append(lp)
        return lp

    yield make
    for lp in made:
        _close_loop(lp)


"""data_bridge/pyloop/_loop.py — PyLoop: the asyncio event loop whose engine is native.

The native base class (_pyloop.Loop) owns scheduling and the run loop. PyLoop adds to it one
mixin per concept that asyncio code observes in detail and that is off the hot paths (debug
mode, the task factory, exception handling, executors, asynchronous generators, name
resolution, networking, sockets, signals) and holds the loop's lifecycle itself: run_forever's
set-up and tear-down, run_until_complete, close. Each method follows asyncio.BaseEventLoop's
documented behaviour.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import threading
import warnings
from asyncio import events, futures, tasks

from . import _glue
from ._asyncgens import AsyncgenMethods
from ._datagram_endpoint import DatagramMethods
from ._debug import DebugMethods
from ._errors import ErrorHandlingMethods
from ._executors import ExecutorMethods
from ._network import NetworkMethods
from ._pipes import PipeMethods
from ._resolver import ResolverMethods
from ._signals import SignalMethods
from ._sockets import SocketMethods
from ._subprocess import SubprocessMethods
from ._tasks import TaskMethods
from ._pyloop import Loop as _NativeLoop
from ._pyloop import _install_glue

_install_glue(
    report_handle_exception=_glue.report_handle_exception,
    handle_repr=_glue.handle_repr,
    extract_stack=_glue.extract_stack,
)

# asyncio's logger: handlers and filters users set on it see PyLoop's messages too.
logger = logging.getLogger("asyncio")


def _stop_loop_when_done(fut) -> None:
    """Done-callback of run_until_complete: stop the future's loop."""
    if not fut.cancelled():
        exc = fut.exception()
        if isinstance(exc, (SystemExit, KeyboardInterrupt)):
            # These already left run_forever; stopping now would end the next run early.
            return
    futures._get_loop(fut).stop()


class PyLoop(
    _NativeLoop,  # first: its slots and hot-path methods come before any mixin's
    DebugMethods,
    TaskMethods,
    ErrorHandlingMethods,
    ExecutorMethods,
    AsyncgenMethods,
    ResolverMethods,
    NetworkMethods,
    DatagramMethods,
    SocketMethods,
    SignalMethods,
    PipeMethods,
    SubprocessMethods,
    asyncio.AbstractEventLoop,  # last: the mixins' methods override its abstract ones
):
    """An asyncio event loop running on the data_bridge.pyloop C++ engine."""

    def __init__(self) -> None:
        super().__init__()
        self._init_executors()
        self._init_errors()
        self._init_asyncgens()
        self._init_sockets()
        self._init_network()
        self._init_signals()
        # Debug mode last: its set_debug() call, which a subclass may override, then
        # sees a loop whose other attributes all exist.
        self._init_debug()

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} running={self.is_running()} "
            f"closed={self.is_closed()} debug={self.get_debug()}>"
        )

    def __del__(self, _warn=warnings.warn) -> None:
        if not self.is_closed():
            _warn(f"unclosed event loop {self!r}", ResourceWarning, source=self)
            if not self.is_running():
                self.close()

    def _timer_handle_cancelled(self, handle) -> None:
        """Told by a cancelled asyncio.TimerHandle (the pure-Python class) that believes it is
        scheduled. PyLoop's timers are native handles kept in the core's heap; a Python
        TimerHandle is never in it, so there is nothing to unschedule or count."""

    # -- running and stopping ------------------------------------------------------------

    def _check_closed(self) -> None:
        if self.is_closed():
            raise RuntimeError("Event loop is closed")

    def _check_running(self) -> None:
        if self.is_running():
            raise RuntimeError("This event loop is already running")
        if events._get_running_loop() is not None:
            raise RuntimeError("Cannot run the event loop while another loop is running")

    def run_forever(self) -> None:
        """Run until stop() is called."""
        self._check_closed()
        self._check_running()
        self._set_coroutine_origin_tracking(self.get_debug())
        saved_hooks = sys.get_asyncgen_hooks()
        saved_wakeup_fd = self._route_signal_wakeups_here()
        try:
            self._thread_id = threading.get_ident()
            sys.set_asyncgen_hooks(
                firstiter=self._asyncgen_firstiter_hook,
                finalizer=self._asyncgen_finalizer_hook,
            )
            events._set_running_loop(self)
            self._run_forever_native()
        finally:
            if saved_wakeup_fd is not None:
                signal.set_wakeup_fd(saved_wakeup_fd)
            self._thread_id = None
            events._set_running_loop(None)
            self._set_coroutine_origin_tracking(False)
            sys.set_asyncgen_hooks(*saved_hooks)

    def run_until_complete(self, future):
        """Run until the future (or coroutine, wrapped in a Task) is done; return its result."""
        self._check_closed()
        self._check_running()
        new_task = not futures.isfuture(future)
        future = tasks.ensure_future(future, loop=self)
        if new_task:
            # The caller gets the outcome from us, so an unfinished task is not worth a log.
            future._log_destroy_pending = False
        future.add_done_callback(_stop_loop_when_done)
        try:
            self.run_forever()
        except BaseException:
            if new_task and future.done() and not future.cancelled():
                # The task's exception escaped through run_forever; mark it retrieved so the
                # caller, who never saw the task, is not warned about it.
                future.exception()
            raise
        finally:
            future.remove_done_callback(_stop_loop_when_done)
        if not future.done():
            raise RuntimeError("Event loop stopped before Future completed.")
        return future.result()

    def close(self) -> None:
        """Close the loop: drop queued callbacks and shut the default executor down
        without waiting for it. The loop must not be running."""
        if self.is_running():
            raise RuntimeError("Cannot close a running event loop")
        if self.is_closed():
            return
        if self.get_debug():
            logger.debug("Close %r", self)
        if self._signal_handlers:
            if sys.is_finalizing():
                warnings.warn(
                    f"Closing the loop {self!r} on interpreter shutdown stage, "
                    "skipping signal handlers removal",
                    ResourceWarning,
                    source=self,
                )
                self._signal_handlers.clear()
            else:
                self._remove_all_signal_handlers()
        self._close_native()
        self._executor_shutdown_called = True
        executor = self._default_executor
        if executor is not None:
            self._default_executor = None
            executor.shutdown(wait=False)

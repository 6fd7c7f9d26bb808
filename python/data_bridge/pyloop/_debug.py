"""data_bridge/pyloop/_debug.py — debug mode: set_debug, coroutine origin tracking, the
scheduling checks and slow callback logging.

The native loop reads `_debug` on its scheduling paths. In debug mode it asks _check_thread
and _check_callback before it queues a callback and runs each callback through
_run_handle_debug (docs/architecture.md, "Debug mode"); run_forever turns coroutine origin
tracking on and off around the run.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
from asyncio import tasks

# asyncio's logger: handlers and filters users set on it see PyLoop's messages too.
logger = logging.getLogger("asyncio")

# Frames kept for coroutine origins in debug mode (asyncio.constants.DEBUG_STACK_DEPTH).
_DEBUG_STACK_DEPTH = 10


def _debug_mode_from_environment() -> bool:
    """Debug mode as asyncio derives it: -X dev, or PYTHONASYNCIODEBUG unless -E."""
    return sys.flags.dev_mode or (
        not sys.flags.ignore_environment and bool(os.environ.get("PYTHONASYNCIODEBUG"))
    )


def _describe_handle(handle) -> str:
    """A slow callback names its task when it is a task step, else the handle."""
    owner = getattr(handle._callback, "__self__", None)
    if isinstance(owner, tasks.Task):
        return repr(owner)
    return str(handle)


class DebugMethods:
    """Mixin of PyLoop: debug mode and the checks and timing it adds."""

    def _init_debug(self) -> None:
        self._current_handle = None  # the handle _run_handle_debug is running, else None
        self._coroutine_origin_tracking_enabled = False  # run_forever turned tracking on
        self._coroutine_origin_tracking_saved_depth = None  # the depth to restore after it
        # In debug mode a callback running longer than this (seconds) is logged.
        self.slow_callback_duration = 0.1
        self.set_debug(_debug_mode_from_environment())

    def set_debug(self, enabled: bool) -> None:
        self._debug = enabled
        if self.is_running():
            self.call_soon_threadsafe(self._set_coroutine_origin_tracking, enabled)

    def _set_coroutine_origin_tracking(self, enabled: bool) -> None:
        if bool(enabled) == bool(self._coroutine_origin_tracking_enabled):
            return
        if enabled:
            self._coroutine_origin_tracking_saved_depth = sys.get_coroutine_origin_tracking_depth()
            sys.set_coroutine_origin_tracking_depth(_DEBUG_STACK_DEPTH)
        else:
            sys.set_coroutine_origin_tracking_depth(self._coroutine_origin_tracking_saved_depth)
        self._coroutine_origin_tracking_enabled = enabled

    def _check_thread(self) -> None:
        """Debug mode: refuse non-thread-safe calls from a thread other than the loop's."""
        thread_id = self._thread_id
        if thread_id is None:
            return
        if threading.get_ident() != thread_id:
            raise RuntimeError(
                "Non-thread-safe operation invoked on an event loop other than the current one"
            )

    def _check_callback(self, callback, method: str) -> None:
        """Debug mode: refuse coroutines and non-callables at scheduling time."""
        if asyncio.iscoroutine(callback) or asyncio.iscoroutinefunction(callback):
            raise TypeError(f"coroutines cannot be used with {method}()")
        if not callable(callback):
            raise TypeError(f"a callable object was expected by {method}(), got {callback!r}")

    def _run_handle_debug(self, handle) -> None:
        """Debug mode runs each callback through here: timed, and named while it runs."""
        self._current_handle = handle
        try:
            started = self.time()
            handle._run()
            elapsed = self.time() - started
            if elapsed >= self.slow_callback_duration:
                self._log_slow_callback(_describe_handle(handle), elapsed)
        finally:
            self._current_handle = None

    def _log_slow_callback(self, what, elapsed: float) -> None:
        """Debug mode: a callback (a handle, or a transport's native read callback, which
        checks the duration itself) ran for slow_callback_duration or longer."""
        logger.warning("Executing %s took %.3f seconds", what, elapsed)

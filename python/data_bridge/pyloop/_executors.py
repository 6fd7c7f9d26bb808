"""data_bridge/pyloop/_executors.py — run_in_executor and the default executor:
set_default_executor, shutdown_default_executor.

The default executor is a ThreadPoolExecutor created on first use, as asyncio's; close()
shuts it down without waiting, shutdown_default_executor() waits for its threads. It also
waits for the native file jobs of data_bridge.pyloop.fs (which on other loops are executor
calls): an operation whose caller was cancelled ends in the background, and asyncio.run()
returns only once it has, as it would on asyncio's loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import warnings
from asyncio import futures

from . import _pyloop


class ExecutorMethods:
    """Mixin of PyLoop: executors."""

    def _init_executors(self) -> None:
        self._default_executor = None  # created by the first run_in_executor(None, ...)
        self._executor_shutdown_called = False  # no default executor may be used any more

    def run_in_executor(self, executor, func, *args):
        self._check_closed()
        if self.get_debug():
            self._check_callback(func, "run_in_executor")
        if executor is None:
            if self._executor_shutdown_called:
                raise RuntimeError("Executor shutdown has been called")
            executor = self._default_executor
            if executor is None:
                executor = concurrent.futures.ThreadPoolExecutor(thread_name_prefix="asyncio")
                self._default_executor = executor
        return futures.wrap_future(executor.submit(func, *args), loop=self)

    def set_default_executor(self, executor) -> None:
        if not isinstance(executor, concurrent.futures.ThreadPoolExecutor):
            raise TypeError("executor must be ThreadPoolExecutor instance")
        self._default_executor = executor

    async def shutdown_default_executor(self, timeout=None) -> None:
        """Join the default executor's threads from a helper thread, so the loop keeps
        running meanwhile; with a timeout (3.12 API) stop waiting after it and warn."""
        self._executor_shutdown_called = True
        deadline = None if timeout is None else self.time() + timeout
        if not self.is_closed():
            files_idle = self.create_future()
            _pyloop.file_jobs_idle(self, files_idle)
            try:
                await asyncio.wait_for(files_idle, timeout)
            except asyncio.TimeoutError:
                warnings.warn(
                    f"File operations still running after {timeout} seconds are left to "
                    "finish in the background.",
                    RuntimeWarning,
                    stacklevel=2,
                )
        executor = self._default_executor
        if executor is None:
            return
        if deadline is not None:
            timeout = max(0.0, deadline - self.time())
        done = self.create_future()

        def join_executor() -> None:
            try:
                executor.shutdown(wait=True)
                if not self.is_closed():
                    self.call_soon_threadsafe(_set_result_unless_done, done, None)
            except Exception as exc:  # reported to the awaiting coroutine
                if not self.is_closed():
                    self.call_soon_threadsafe(_set_exception_unless_done, done, exc)

        thread = threading.Thread(target=join_executor, name="pyloop-executor-shutdown")
        thread.start()
        try:
            if timeout is None:
                await done
            else:
                await asyncio.wait_for(asyncio.shield(done), timeout)
        except asyncio.TimeoutError:
            warnings.warn(
                "The executor did not finishing joining its threads within "
                f"{timeout} seconds.",
                RuntimeWarning,
                stacklevel=2,
            )
            executor.shutdown(wait=False)
        else:
            thread.join()


def _set_result_unless_done(fut, result) -> None:
    if not fut.done():
        fut.set_result(result)


def _set_exception_unless_done(fut, exc) -> None:
    if not fut.done():
        fut.set_exception(exc)

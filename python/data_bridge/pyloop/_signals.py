"""data_bridge/pyloop/_signals.py — add_signal_handler / remove_signal_handler (Unix).

Python's C-level signal handler writes each signal's number to the wakeup fd; PyLoop points
the wakeup fd at its interrupt pipe, the native loop reads the numbers in phase 4 of an
iteration and calls _handle_signal, which queues the registered handle. While handlers are
installed the pipe is polled every iteration, so a busy loop sees signals at once.
run_forever points the wakeup fd at the pipe too, in the main thread, so that a signal
ends a blocked wait at once even when no handler is installed.
"""

from __future__ import annotations

import errno
import logging
import signal
import threading

from asyncio import coroutines

logger = logging.getLogger("asyncio")


def _ignore_signal(signum, frame) -> None:
    """The Python-level handler of a watched signal: the loop acts on the wakeup byte."""


class SignalMethods:
    """Mixin of PyLoop: Unix signal handlers."""

    def _init_signals(self) -> None:
        self._signal_handlers = {}  # signal number -> Handle
        if threading.current_thread() is not threading.main_thread():
            return  # only the main thread's loop may handle signals: its pipe is made lazily
        # asyncio makes its self-pipe when the loop is made, so add_signal_handler and
        # run_forever never need a new descriptor later: when the process runs out of them,
        # creating the loop fails (OSError EMFILE) and a loop that exists can still install
        # handlers. The main thread's loop makes its interrupt pipe now for the same reason.
        try:
            self._signal_wakeup_fd()
        except BaseException:
            self._close_native()  # the half-made loop holds no descriptor (and is not
            raise                 # reported unclosed by __del__)

    def _check_signal(self, sig) -> None:
        if not isinstance(sig, int):
            raise TypeError(f"sig must be an int, not {sig!r}")
        if sig not in signal.valid_signals():
            raise ValueError(f"invalid signal number {sig}")

    def add_signal_handler(self, sig, callback, *args) -> None:
        """Run callback(*args) in the loop whenever signal sig arrives (main thread only)."""
        if coroutines.iscoroutine(callback) or coroutines.iscoroutinefunction(callback):
            raise TypeError("coroutines cannot be used with add_signal_handler()")
        self._check_signal(sig)
        self._check_closed()
        try:
            # Raises ValueError outside the main thread: only the main thread's loop may
            # handle signals.
            signal.set_wakeup_fd(self._signal_wakeup_fd(), warn_on_full_buffer=False)
        except (ValueError, OSError) as exc:
            raise RuntimeError(str(exc)) from None
        handle = self._make_handle(callback, *args)
        self._signal_handlers[sig] = handle
        try:
            signal.signal(sig, _ignore_signal)
            # Restart interrupted system calls rather than fail them with EINTR.
            signal.siginterrupt(sig, False)
        except OSError as exc:
            del self._signal_handlers[sig]
            if not self._signal_handlers:
                self._release_wakeup_fd()
            if exc.errno == errno.EINVAL:
                raise RuntimeError(f"sig {sig} cannot be caught") from None
            raise
        self._watch_signals(True)

    def remove_signal_handler(self, sig) -> bool:
        """Remove the handler of sig and restore the default disposition; False if none."""
        self._check_signal(sig)
        try:
            del self._signal_handlers[sig]
        except KeyError:
            return False
        default = signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL
        try:
            signal.signal(sig, default)
        except OSError as exc:
            if exc.errno == errno.EINVAL:
                raise RuntimeError(f"sig {sig} cannot be caught") from None
            raise
        if not self._signal_handlers:
            self._release_wakeup_fd()
            if not self.is_closed():
                self._watch_signals(False)
        return True

    def _route_signal_wakeups_here(self):
        """In the main thread, point Python's signal wakeup fd at the loop's interrupt pipe
        while it runs, so a signal (Ctrl-C, asyncio.Runner's SIGINT handler) ends a blocked
        wait at once. Returns the previous wakeup fd to restore, or None off the main thread."""
        if threading.current_thread() is not threading.main_thread():
            return None
        try:
            return signal.set_wakeup_fd(self._signal_wakeup_fd(), warn_on_full_buffer=False)
        except (ValueError, OSError):
            return None

    def _release_wakeup_fd(self) -> None:
        try:
            signal.set_wakeup_fd(-1)
        except (ValueError, OSError) as exc:
            logger.info("set_wakeup_fd(-1) failed: %s", exc)

    def _handle_signal(self, sig) -> None:
        """Called by the native loop for each signal number read from the pipe."""
        handle = self._signal_handlers.get(sig)
        if handle is None:
            return  # not ours (or removed meanwhile)
        if handle.cancelled():
            self.remove_signal_handler(sig)
        else:
            self._add_callback(handle)

    def _remove_all_signal_handlers(self) -> None:
        """At close: give every watched signal its default disposition back."""
        for sig in list(self._signal_handlers):
            self.remove_signal_handler(sig)

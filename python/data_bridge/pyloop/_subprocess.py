"""data_bridge/pyloop/_subprocess.py — subprocess_exec, subprocess_shell and the subprocess
transport.

The orchestration is asyncio's own, attached by reference (docs/decisions/0003):
BaseEventLoop.subprocess_exec/subprocess_shell check the arguments, and the transport derives
from asyncio's BaseSubprocessTransport, which connects the pipes (PyLoop's native pipe
transports), orders the protocol callbacks and keeps close(), kill() and the ResourceWarning.
PyLoop supplies the two native pieces (docs/decisions/0022): the start of the child
(_spawn.py: posix_spawn where Popen's arguments allow, subprocess.Popen otherwise) and the
noticing of its exit, by the loop itself, without the policy's child watcher: a pidfd (kqueue
EVFILT_PROC elsewhere) in the loop's readiness set (core/src/child_watch.cpp).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from asyncio import base_events, base_subprocess, exceptions, futures

from . import _spawn
from ._pyloop import spawn_async, watch_child

logger = logging.getLogger("asyncio")

_BASE = base_events.BaseEventLoop


class _StartFuture(futures.Future):
    """The future of a start on the native runtime. It cannot be cancelled, so a task
    awaiting it gets its cancellation once the start is over, with the started child in the
    future: what tasks.shield(future) and a second wait would give, with one object."""

    def cancel(self, msg=None) -> bool:
        return False


class SubprocessTransport(base_subprocess.BaseSubprocessTransport):
    """asyncio's subprocess transport with PyLoop's start of the child."""

    def _start(self, args, shell, stdin, stdout, stderr, bufsize, _started=None, **kwargs):
        # _started: the Popen of a child the fast path started already.
        if _started is not None:
            self._proc = _started
        else:
            self._proc = _spawn.popen(args, shell, stdin, stdout, stderr, bufsize, kwargs)

    def _child_exited(self, pid, returncode) -> None:
        """The loop's child watch reaped the child (returncode None: someone else did)."""
        if self._returncode is not None:
            return
        if returncode is None:
            proc = self._proc
            returncode = None if proc is None else proc.returncode
            if returncode is None:
                # asyncio's watchers report 255 when the status was taken by someone else.
                logger.warning(
                    "child process pid %d exit status already read: "
                    " will report returncode 255", pid)
                returncode = 255
        self._process_exited(returncode)


def _wait_in_thread(loop, pid, callback) -> None:
    """Where the kernel gives no exit descriptor (Linux before 5.3) or refuses one (EMFILE, a
    seccomp policy's EPERM): one thread blocked in waitpid for this child, as asyncio's
    ThreadedChildWatcher."""

    def wait():
        try:
            _, status = os.waitpid(pid, 0)
            returncode = os.waitstatus_to_exitcode(status)
        except ChildProcessError:
            returncode = None
        try:
            loop.call_soon_threadsafe(callback, pid, returncode)
        except RuntimeError:
            pass  # the loop was closed meanwhile: nobody is waiting

    threading.Thread(target=wait, name=f"pyloop-waitpid-{pid}", daemon=True).start()


def _abandon_child(loop, started) -> None:
    """Disposes of a started child whose task went away: its pipe ends closed, the child
    killed and reaped in the background."""
    pid, *pipe_ends = started
    for fd in pipe_ends:
        if fd is not None:
            os.close(fd)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    _wait_in_thread(loop, pid, _ignore_exit)


def _ignore_exit(pid, returncode) -> None:
    """The exit callback of a child nobody waits for any more."""


class SubprocessMethods:
    """Mixin of PyLoop: child processes."""

    subprocess_exec = _BASE.subprocess_exec
    subprocess_shell = _BASE.subprocess_shell
    _log_subprocess = _BASE._log_subprocess

    def _watch_child_exit(self, transp) -> None:
        pid = transp.get_pid()
        try:
            watch_child(self, pid, transp._child_exited)
        except ProcessLookupError:
            # Reaped already (a SIGCHLD handler of the program's, say): report what is known.
            self.call_soon(transp._child_exited, pid, None)
        except OSError:
            # No exit descriptor to be had: no pidfd (ENOSYS), none allowed (EPERM, EACCES:
            # a seccomp policy, as CPython's can_use_pidfd() allows for), or none left
            # (EMFILE, ENFILE, ENOMEM). Raising would leave the started child unreaped.
            _wait_in_thread(self, pid, transp._child_exited)

    async def _spawn_fast(self, args, shell, stdin, stdout, stderr, bufsize, kwargs):
        """The child started by posix_spawn on the native runtime (the loop goes on while
        it execs), as a Popen; None when only subprocess.Popen can start it."""
        if not _spawn.takes_fast_path(kwargs):
            return None
        try:
            prepared = _spawn.prepare(args, shell, stdin, stdout, stderr, bufsize, **kwargs)
        except _spawn._Fallback:
            return None
        started = _StartFuture(loop=self)
        spawn_async(self, started, *prepared)
        try:
            return _spawn.make_popen(args, await started)
        except exceptions.CancelledError:
            # As asyncio's start, which cannot be interrupted: the task's cancellation is
            # delivered once the start is over (started refuses to be cancelled), then the
            # child is killed and waited for, and the cancellation goes on.
            if not started.done() or started.exception() is not None:
                raise exceptions.CancelledError from None
            await self._end_child(_spawn.make_popen(args, started.result()))
            raise
        except GeneratorExit:
            # The task is being destroyed at this await (its loop was closed after the start
            # succeeded and before the task resumed): nobody will use the child.
            if started.done() and not started.cancelled() and started.exception() is None:
                _abandon_child(self, started.result())
            raise

    async def _end_child(self, proc) -> None:
        """Ends a child nobody will use: its pipes closed, killed, reaped by the loop."""
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
        proc.kill()
        exited = self.create_future()

        def on_exit(pid, returncode):
            if not exited.done():
                exited.set_result(returncode)

        try:
            watch_child(self, proc.pid, on_exit)
        except OSError:
            _wait_in_thread(self, proc.pid, on_exit)
        proc.returncode = await exited

    async def _make_subprocess_transport(self, protocol, args, shell, stdin, stdout, stderr,
                                         bufsize, extra=None, **kwargs):
        proc = await self._spawn_fast(args, shell, stdin, stdout, stderr, bufsize, kwargs)
        if proc is not None:
            kwargs = {"_started": proc}
        waiter = self.create_future()
        transp = SubprocessTransport(self, protocol, args, shell, stdin, stdout, stderr,
                                     bufsize, waiter=waiter, extra=extra, **kwargs)
        try:
            self._watch_child_exit(transp)
        except BaseException:
            # Not even a waiting thread was set up (MemoryError, KeyboardInterrupt...): the
            # child is killed, and reaped in the background so that no zombie stays.
            transp.close()
            _wait_in_thread(self, transp.get_pid(), _ignore_exit)
            raise
        try:
            await waiter
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException:
            transp.close()
            await transp._wait()
            raise
        return transp

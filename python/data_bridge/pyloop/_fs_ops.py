"""data_bridge/pyloop/_fs_ops.py — the file operations data_bridge.pyloop.fs is built on, in
two implementations with one contract: on PyLoop, native jobs on the core's blocking pool
(bindings/bind_file_io.cpp); on any other loop, plain os calls in loop.run_in_executor.

Contract of each coroutine (both implementations):
    open(path, flags, mode, filename)         -> (fd, size, regular); directories refused
    read_path(path, filename)                 -> the whole file's bytes
    read(fd, capacity, limit, offset)         -> up to limit bytes (-1: to the end) from
                                                 offset (-1: the descriptor's position);
                                                 capacity is the expected size
    read_into(fd, buffer, offset)             -> bytes read into buffer, in place (fewer than
                                                 its size only at the end of the file)
    write(fd, data, offset)                   -> the position after writing all of data
    write_path(path, data, flags, mode, filename) -> bytes written (open, write, close)
    stat(path, fd, follow_symlinks, filename) -> os.stat_result (fstat when path is None)
    truncate(fd, length), close(fd)           -> None
OSError carries the caller's filename, as open() and os.stat raise it. A caller cancelled
mid-operation gets CancelledError; the operation ends in the background and a descriptor it
opened is closed then.
"""

from __future__ import annotations

import asyncio
import errno
import os
import stat as _stat
import threading

from . import _pyloop

_CHUNK = 64 * 1024  # executor reads past the expected size go on in pieces of this size


class NativeOps:
    """The operations as native jobs on the core's blocking pool: no Python thread, no copy."""

    __slots__ = ("loop",)

    def __init__(self, loop):
        self.loop = loop  # the running PyLoop

    async def open(self, path, flags, mode, filename):
        done = self.loop.create_future()
        _pyloop.file_open(self.loop, done, path, flags, mode, filename, False)
        try:
            return await done
        except asyncio.CancelledError:
            # Cancelled after the open completed (its result already in the future): the
            # descriptor is closed on the runtime, nobody waiting for it.
            if done.done() and not done.cancelled() and done.exception() is None:
                _pyloop.file_close(self.loop, self.loop.create_future(), done.result()[0])
            raise

    async def read_path(self, path, filename):
        done = self.loop.create_future()
        _pyloop.file_open(self.loop, done, path, os.O_RDONLY, 0, filename, True)
        return await done

    async def read(self, fd, capacity, limit, offset):
        done = self.loop.create_future()
        _pyloop.file_read(self.loop, done, fd, capacity, limit, offset)
        return await done

    async def read_into(self, fd, buffer, offset):
        done = self.loop.create_future()
        _pyloop.file_read_into(self.loop, done, fd, buffer, offset)
        return await done

    async def write(self, fd, data, offset):
        done = self.loop.create_future()
        _pyloop.file_write(self.loop, done, fd, data, offset)
        return await done

    async def write_path(self, path, data, flags, mode, filename):
        done = self.loop.create_future()
        _pyloop.file_write_path(self.loop, done, path, data, flags, mode, filename)
        return await done

    async def stat(self, path, fd, follow_symlinks, filename):
        done = self.loop.create_future()
        _pyloop.file_stat(self.loop, done, path, fd, follow_symlinks, filename)
        return stat_result(await done)

    async def truncate(self, fd, length):
        done = self.loop.create_future()
        _pyloop.file_truncate(self.loop, done, fd, length)
        return await done

    async def close(self, fd):
        done = self.loop.create_future()
        _pyloop.file_close(self.loop, done, fd)
        return await done


def stat_result(fields):
    """os.stat_result from the native st_* integers, field for field as os.stat fills it."""
    (mode, ino, dev, nlink, uid, gid, size, a_s, a_ns, m_s, m_ns, c_s, c_ns, blksize, blocks,
     rdev) = fields
    return os.stat_result((
        mode, ino, dev, nlink, uid, gid, size, a_s, m_s, c_s,
        # Float seconds computed as os.stat computes them (seconds + nanoseconds * 1e-9).
        a_s + a_ns * 1e-9, m_s + m_ns * 1e-9, c_s + c_ns * 1e-9,
        a_s * 1_000_000_000 + a_ns, m_s * 1_000_000_000 + m_ns, c_s * 1_000_000_000 + c_ns,
        blksize, blocks, rdev,
    ))


class ExecutorOps:
    """The operations as plain os calls in the loop's default executor (asyncio, uvloop)."""

    __slots__ = ("loop",)

    def __init__(self, loop):
        self.loop = loop  # the running loop

    async def _run(self, func, *args, leftover=None):
        if leftover is None:
            return await self.loop.run_in_executor(None, func, *args)
        call = _Releasing(func, args, leftover)
        try:
            return await self.loop.run_in_executor(None, call)
        except asyncio.CancelledError:
            call.abandon()
            raise

    async def open(self, path, flags, mode, filename):
        return await self._run(_open, path, flags, mode, filename, leftover=lambda r: os.close(r[0]))

    async def read_path(self, path, filename):
        return await self._run(_read_path, path, filename)

    async def read(self, fd, capacity, limit, offset):
        return await self._run(_read, fd, limit, offset)

    async def read_into(self, fd, buffer, offset):
        return await self._run(_read_into, fd, buffer, offset)

    async def write(self, fd, data, offset):
        return await self._run(_write, fd, data, offset)

    async def write_path(self, path, data, flags, mode, filename):
        return await self._run(_write_path, path, data, flags, mode, filename)

    async def stat(self, path, fd, follow_symlinks, filename):
        if path is None:
            return await self._run(os.fstat, fd)
        return await self._run(_stat_path, path, follow_symlinks, filename)

    async def truncate(self, fd, length):
        return await self._run(os.ftruncate, fd, length)

    async def close(self, fd):
        return await self._run(os.close, fd)


class _Releasing:
    """A call whose result (a descriptor) is released if its caller was cancelled: by the
    worker when it finishes after the cancel, else by the caller. Not through the loop,
    which may be closed by the time the worker finishes."""

    def __init__(self, func, args, leftover):
        self._func = func  # the blocking call
        self._args = args  # its arguments
        self._leftover = leftover  # releases a result nobody will take
        self._lock = threading.Lock()  # guards the two fields below
        self._abandoned = False  # the caller was cancelled
        self._results = []  # the result, once the call returned (while not abandoned)

    def __call__(self):
        result = self._func(*self._args)
        with self._lock:
            if not self._abandoned:
                self._results.append(result)
                return result
        self._leftover(result)
        return None

    def abandon(self):
        with self._lock:
            self._abandoned = True
            results, self._results = self._results, []
        for result in results:
            self._leftover(result)


def _named(exc, filename):
    """exc again, naming filename as the caller gave it (os names the encoded path)."""
    return OSError(exc.errno, exc.strerror, filename)


def _open(path, flags, mode, filename):
    try:
        fd = os.open(path, flags | os.O_CLOEXEC, mode)
    except OSError as exc:
        raise _named(exc, filename) from None
    try:
        info = os.fstat(fd)
        if _stat.S_ISDIR(info.st_mode):
            raise OSError(errno.EISDIR, os.strerror(errno.EISDIR), filename)
    except BaseException:
        os.close(fd)
        raise
    return fd, info.st_size, _stat.S_ISREG(info.st_mode)


def _read_path(path, filename):
    fd, size, regular = _open(path, os.O_RDONLY, 0, filename)
    try:
        return _read(fd, -1, 0 if regular else -1)
    finally:
        os.close(fd)


def _read(fd, limit, offset):
    parts = []
    got = 0
    while limit < 0 or got < limit:
        want = _CHUNK if limit < 0 else min(limit - got, 1 << 24)
        part = os.pread(fd, want, offset + got) if offset >= 0 else os.read(fd, want)
        if not part:
            break
        parts.append(part)
        got += len(part)
    return b"".join(parts)


def _read_into(fd, buffer, offset):
    with memoryview(buffer) as view, view.cast("B") as target:
        done = 0
        while done < len(target):
            rest = target[done:]
            got = os.preadv(fd, [rest], offset + done) if offset >= 0 else os.readv(fd, [rest])
            if not got:
                break
            done += got
        return done


def _write(fd, data, offset):
    view = memoryview(data).cast("B")
    done = 0
    while done < len(view):
        if offset >= 0:
            done += os.pwrite(fd, view[done:], offset + done)
        else:
            done += os.write(fd, view[done:])
    if offset >= 0:
        return offset + done
    try:
        return os.lseek(fd, 0, os.SEEK_CUR)
    except OSError:
        return -1


def _write_path(path, data, flags, mode, filename):
    try:
        fd = os.open(path, flags | os.O_CLOEXEC, mode)
    except OSError as exc:
        raise _named(exc, filename) from None
    try:
        _write(fd, data, -1)
    finally:
        os.close(fd)
    return memoryview(data).nbytes


def _stat_path(path, follow_symlinks, filename):
    try:
        return os.stat(path, follow_symlinks=follow_symlinks)
    except OSError as exc:
        raise _named(exc, filename) from None


def ops_for(loop):
    """The implementation for loop: native on PyLoop, the executor elsewhere."""
    if isinstance(loop, _pyloop.Loop):
        return NativeOps(loop)
    return ExecutorOps(loop)

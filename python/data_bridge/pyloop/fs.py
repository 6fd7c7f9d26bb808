"""data_bridge.pyloop.fs — asynchronous file I/O.

    from data_bridge.pyloop import fs

    data = await fs.read("in.bin")                  # bytes (str with encoding=)
    await fs.write("out.txt", "text", encoding="utf-8")
    info = await fs.stat("out.txt")                 # os.stat_result
    async with fs.open("log.txt", "a") as f:        # or: f = await fs.open(...)
        await f.write("line\\n")

On PyLoop the system calls run on native worker threads (the core's blocking pool, no Python
thread) and read data lands directly in the bytes object returned; on any other loop
(asyncio's, uvloop) the same functions run plain os calls in loop.run_in_executor. Errors
are the built-in ones open() and os.stat raise (FileNotFoundError, IsADirectoryError... with
errno and filename).
"""

from __future__ import annotations

import asyncio
import locale
import os

from ._fs_file import AsyncFile
from ._fs_ops import ops_for

__all__ = ["read", "write", "stat", "open", "AsyncFile"]

_CREATE_MODE = 0o666  # permissions of created files, before the umask (as open())


def _text_encoding(encoding):
    # As open(): the locale's encoding (UTF-8 in UTF-8 mode) unless one is given.
    return encoding if encoding is not None else locale.getpreferredencoding(False)


def _ops():
    return ops_for(asyncio.get_running_loop())


def _file_path(file):
    """(encoded path, name) as open() takes a file: errors name os.fspath(file)."""
    name = os.fspath(file)
    raw = os.fsencode(name)
    if b"\0" in raw:
        raise ValueError("embedded null byte")
    return raw, name


async def read(path, *, encoding=None, errors=None):
    """The whole file's content: bytes, or str decoded (newlines translated) with encoding=."""
    raw, name = _file_path(path)
    data = await _ops().read_path(raw, name)
    if encoding is None and errors is None:
        return data
    text = data.decode(_text_encoding(encoding), errors or "strict")
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text


async def write(path, data, *, encoding=None, errors=None):
    """Replace the file's content with data (str is encoded); returns the count written."""
    raw, name = _file_path(path)
    if isinstance(data, str):
        count = len(data)
        data = data.encode(_text_encoding(encoding), errors or "strict")
    else:
        if encoding is not None or errors is not None:
            raise TypeError("encoding and errors apply to str data only")
        count = None
    written = await _ops().write_path(
        raw, data, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, _CREATE_MODE, name
    )
    return written if count is None else count


async def stat(path, *, follow_symlinks=True):
    """os.stat(path) (or of a descriptor), without blocking the loop."""
    if isinstance(path, int):
        return await _ops().stat(None, path, True, None)
    name = os.fspath(path)
    raw = os.fsencode(name)
    if b"\0" in raw:
        raise ValueError("stat: embedded null character in path")
    return await _ops().stat(raw, -1, follow_symlinks, name)


def _parse_mode(mode, buffering, encoding, errors, newline):
    """open(2) flags and text mode of an open() mode, with open()'s own ValueErrors."""
    if not isinstance(mode, str):
        raise TypeError(f"open() argument 'mode' must be str, not {type(mode).__name__}")
    seen = set()
    for ch in mode:
        if ch not in "rwxabt+" or ch in seen:
            raise ValueError(f"invalid mode: {mode!r}")
        seen.add(ch)
    if "t" in seen and "b" in seen:
        raise ValueError("can't have text and binary mode at once")
    kinds = len(seen & {"r", "w", "x", "a"})
    if kinds > 1:
        raise ValueError("must have exactly one of create/read/write/append mode")
    if kinds == 0:
        raise ValueError(
            "Must have exactly one of create/read/write/append mode and at most one plus"
        )
    binary = "b" in seen
    if binary:
        for value, what in ((encoding, "an encoding"), (errors, "an errors"), (newline, "a newline")):
            if value is not None:
                raise ValueError(f"binary mode doesn't take {what} argument")
    elif buffering == 0:
        raise ValueError("can't have unbuffered text I/O")
    if newline not in (None, "", "\n", "\r", "\r\n"):
        raise ValueError(f"illegal newline value: {newline}")
    plus = "+" in seen
    if "r" in seen:
        flags = os.O_RDWR if plus else os.O_RDONLY
    else:
        flags = (os.O_RDWR if plus else os.O_WRONLY) | os.O_CREAT
        flags |= {"w": os.O_TRUNC, "x": os.O_EXCL, "a": os.O_APPEND}[(seen & {"w", "x", "a"}).pop()]
    text = None
    if not binary:
        text = (_text_encoding(encoding), errors or "strict", newline)
    return flags, text


class _Opening:
    """What fs.open() returns: awaited, the AsyncFile; as `async with`, the file, closed on exit."""

    __slots__ = ("_opening", "_file")

    def __init__(self, opening):
        self._opening = opening  # the coroutine that opens the file
        self._file = None  # the AsyncFile, once opened by __aenter__

    def __await__(self):
        return self._opening.__await__()

    async def __aenter__(self):
        self._file = await self._opening
        return self._file

    async def __aexit__(self, *exc_info):
        await self._file.close()


def open(file, mode="r", buffering=-1, encoding=None, errors=None, newline=None):  # noqa: A001
    """Open a file as built-in open() does; its I/O methods are coroutines.

    `f = await fs.open(path, "rb")` or `async with fs.open(path, "w") as f:`. Bad modes raise
    ValueError here, as open() does; the system's errors (FileNotFoundError...) come from the
    await. Writes are not buffered (buffering is accepted and checked, not used).
    """
    flags, text = _parse_mode(mode, buffering, encoding, errors, newline)
    raw, name = _file_path(file)
    return _Opening(_open(raw, name, mode, flags, text))


async def _open(raw, name, mode, flags, text):
    ops = _ops()
    fd, size, regular = await ops.open(raw, flags, _CREATE_MODE, name)
    return AsyncFile(ops, fd, size, regular, name, mode, flags, text)

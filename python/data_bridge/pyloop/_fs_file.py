"""data_bridge/pyloop/_fs_file.py — AsyncFile, the object data_bridge.pyloop.fs.open returns.

It keeps the file's position itself and reads and writes regular files at explicit offsets
(pread/pwrite), so seek() and tell() need no system call; other files (pipes, devices) are
read and written at the descriptor's own position and cannot seek. Writes are not buffered:
each write() is one operation that writes all of its data. Reads go through a read-ahead
buffer only for readline() and iteration. Text mode decodes with an incremental decoder and
translates newlines as built-in open() does.
"""

from __future__ import annotations

import codecs
import collections
import errno
import io
import os
import warnings

_LINE_CHUNK = 64 * 1024  # bytes read at a time while looking for the end of a line
_STREAM_CAPACITY = 1 << 20  # largest up-front buffer for a read from a pipe or device


def _closed_error():
    return ValueError("I/O operation on closed file.")


class AsyncFile:
    """An open file whose I/O methods are coroutines (read, write, seek, close...)."""

    def __init__(self, ops, fd, size, regular, name, mode, flags, text):
        self._ops = ops  # the _fs_ops implementation of the loop it was opened on
        self._fd = fd  # the descriptor; -1 once closed
        self._size = size  # the size known so far (fstat at open, grown by our writes)
        self._regular = regular  # positional I/O; seek() allowed
        self.name = name  # the path as given to open()
        self.mode = mode  # the mode as given to open()
        access = flags & os.O_ACCMODE
        self._readable = access in (os.O_RDONLY, os.O_RDWR)
        self._writable = access in (os.O_WRONLY, os.O_RDWR)
        self._appending = bool(flags & os.O_APPEND)
        # The file offset of the next read; built-in open() starts append mode at the end.
        self._pos = size if self._appending and regular else 0
        self._text = text  # (encoding, errors, newline) in text mode, else None
        self._buf = "" if text else b""  # read ahead, not yet returned
        # Text mode: each piece of bytes decoded into _buf that is not all returned yet, as
        # [file position, decoder state before it, bytes, characters it gave, whether the
        # decoder was finished after it (the end of the file)], and how many
        # characters of the first are returned: tell() finds its exact byte from them.
        self._decoded = collections.deque()
        self._returned = 0
        self._decoder = None
        self._encoder = None
        if text is not None:
            encoding, errors, newline = text
            self.encoding = encoding
            self.errors = errors
            self.newlines = None
            self._reset_codecs()

    # -- state ---------------------------------------------------------------------------

    @property
    def closed(self):
        return self._fd < 0

    def fileno(self):
        self._check_open()
        return self._fd

    def readable(self):
        self._check_open()
        return self._readable

    def writable(self):
        self._check_open()
        return self._writable

    def seekable(self):
        self._check_open()
        return self._regular

    def _check_open(self):
        if self._fd < 0:
            raise _closed_error()

    def _check_readable(self):
        self._check_open()
        if not self._readable:
            raise io.UnsupportedOperation("not readable")

    def _new_decoder(self):
        encoding, errors, newline = self._text
        decoder = codecs.getincrementaldecoder(encoding)(errors)
        if newline is None:
            decoder = io.IncrementalNewlineDecoder(decoder, translate=True)
        return decoder

    def _reset_decoding(self):
        self._decoder = self._new_decoder()
        self._decoded.clear()
        self._returned = 0

    def _reset_codecs(self):
        self._reset_decoding()
        self._encoder = codecs.getincrementalencoder(self._text[0])(self._text[1])

    # -- reading -------------------------------------------------------------------------

    async def _read_raw(self, limit):
        """Up to limit bytes (-1: all) from the file's position, which moves past them."""
        if self._regular:
            remaining = max(self._size - self._pos, 0)
            capacity = remaining if limit < 0 else min(limit, remaining)
            data = await self._ops.read(self._fd, capacity, limit, self._pos)
            self._pos += len(data)
            self._size = max(self._size, self._pos)
        else:
            capacity = _STREAM_CAPACITY if limit < 0 else min(limit, _STREAM_CAPACITY)
            data = await self._ops.read(self._fd, capacity, limit, -1)
        return data

    async def read(self, size=-1):
        """Read up to size bytes (characters in text mode), or all up to the end."""
        self._check_readable()
        if size is None:
            size = -1
        size = size.__index__()
        if self._text is not None:
            return await self._read_text(size)
        if size < 0:
            data = self._buf + await self._read_raw(-1)
            self._buf = b""
            return data
        if len(self._buf) >= size:
            data, self._buf = self._buf[:size], self._buf[size:]
            return data
        data = self._buf + await self._read_raw(size - len(self._buf))
        self._buf = b""
        return data

    async def readinto(self, buffer):
        """Read into a writable buffer, in place, until it is full or the file ends; returns
        the count. Binary mode only."""
        self._check_readable()
        if self._text is not None:
            raise io.UnsupportedOperation("readinto")
        with memoryview(buffer) as view, view.cast("B") as target:
            taken = min(len(self._buf), len(target))
            if taken:
                target[:taken] = self._buf[:taken]
                self._buf = self._buf[taken:]
            if taken == len(target):
                return taken
            offset = self._pos if self._regular else -1
            got = await self._ops.read_into(self._fd, target[taken:], offset)
        if self._regular:
            self._pos += got
            self._size = max(self._size, self._pos)
        return taken + got

    def _decode(self, raw):
        """Decode raw, just read (final once it is empty), onto the read-ahead text."""
        state = self._decoder.getstate()
        text = self._decoder.decode(raw, final=not raw)
        if raw:
            self._decoded.append([self._pos - len(raw), state, raw, len(text), False])
        elif self._decoded:
            # The end of the file flushed what the decoder held (a last "\r"): it belongs to
            # the last piece, decoded to its end as final.
            self._decoded[-1][3] += len(text)
            self._decoded[-1][4] = True
        self._buf += text

    def _take_text(self, count):
        """The next count characters of the read-ahead text, returned to the caller."""
        text, self._buf = self._buf[:count], self._buf[count:]
        self._returned += len(text)
        # Pieces all returned are forgotten, except the last one, and one whose end leaves
        # the decoder in the middle of something (a multi-byte character, a "\r" that may be
        # the start of "\r\n"): the position is found inside it then.
        pieces = self._decoded
        while len(pieces) > 1:
            given = pieces[0][3]
            if self._returned < given or (self._returned == given and pieces[1][1] != (b"", 0)):
                break
            self._returned -= given
            pieces.popleft()
        return text

    async def _read_text(self, size):
        if size < 0:
            self._decode(await self._read_raw(-1))
            self._decode(b"")
            return self._take_text(len(self._buf))
        while len(self._buf) < size:
            raw = await self._read_raw(max(size - len(self._buf), _LINE_CHUNK))
            self._decode(raw)
            if not raw:
                break
        return self._take_text(size)

    async def readline(self):
        """The next line, with its line ending; empty at the end of the file."""
        self._check_readable()
        if self._text is not None:
            newline = self._text[2]
            ending = newline if newline not in (None, "") else "\n"
        else:
            ending = b"\n"
        text = self._text is not None
        while True:
            at = self._buf.find(ending)
            if at >= 0:
                at += len(ending)
                if text:
                    return self._take_text(at)
                line, self._buf = self._buf[:at], self._buf[at:]
                return line
            raw = await self._read_raw(_LINE_CHUNK)
            if text:
                self._decode(raw)
            else:
                self._buf += raw
            if not raw:
                if text:
                    return self._take_text(len(self._buf))
                line, self._buf = self._buf, b""
                return line

    async def readlines(self):
        lines = []
        async for line in self:
            lines.append(line)
        return lines

    def __aiter__(self):
        return self

    async def __anext__(self):
        line = await self.readline()
        if not line:
            raise StopAsyncIteration
        return line

    # -- writing -------------------------------------------------------------------------

    async def write(self, data):
        """Write all of data (str in text mode, a bytes-like object otherwise); returns its length."""
        self._check_open()
        if not self._writable:
            raise io.UnsupportedOperation("not writable")
        if self._text is not None:
            if not isinstance(data, str):
                raise TypeError(f"write() argument must be str, not {type(data).__name__}")
            count = len(data)
            newline = self._text[2]
            if newline not in (None, "", "\n"):
                data = data.replace("\n", newline)
            payload = self._encoder.encode(data)
        else:
            if isinstance(data, str):
                raise TypeError("a bytes-like object is required, not 'str'")
            payload = data
            count = memoryview(data).nbytes
        self._drop_read_ahead()
        offset = self._pos if self._regular and not self._appending else -1
        position = await self._ops.write(self._fd, payload, offset)
        if position >= 0:
            self._pos = position
            self._size = max(self._size, position)
        return count

    async def writelines(self, lines):
        for line in lines:
            await self.write(line)

    async def flush(self):
        """Nothing to do: writes are not buffered. Kept for code written for file objects."""
        self._check_open()

    async def truncate(self, size=None):
        self._check_open()
        if not self._writable:
            raise io.UnsupportedOperation("File not open for writing")
        if size is None:
            size = await self.tell()
        await self._ops.truncate(self._fd, size)
        self._size = size
        return size

    # -- position ------------------------------------------------------------------------

    def _drop_read_ahead(self):
        """Forget what was read ahead: the position goes back to the first unread byte."""
        if self._text is not None:
            self._pos = self._logical_position()
            self._buf = ""
            self._reset_decoding()
        elif self._buf:
            self._pos -= len(self._buf)
            self._buf = b""

    def _logical_position(self):
        if self._text is None:
            return self._pos - len(self._buf)
        if not self._decoded:
            return self._pos  # nothing decoded ahead
        # The byte where the returned text ends: the shortest prefix of the first piece
        # that, decoded from the state before it, gives the characters returned from it
        # (decoding is in C: a galloping search, so the cost follows the text returned since
        # the last tell(), whose answer becomes the piece's new start). A prefix giving more
        # ends with the bytes after a "\r" (newlines translated): the "\r" was returned as
        # "\n", and the text ends just after the "\r", where the decoder holds it.
        piece = self._decoded[0]
        position, state, raw, chars, final = piece
        wanted = self._returned
        decoder = self._new_decoder()  # replays the piece from its state

        def given(length):
            decoder.setstate(state)
            return len(decoder.decode(raw[:length], final=final and length == len(raw)))

        def shortest(count, low, high):
            while low < high:
                middle = (low + high) // 2
                if given(middle) >= count:
                    high = middle
                else:
                    low = middle + 1
            return low

        high = min(1, len(raw))
        while high < len(raw) and given(high) < wanted:
            high = min(2 * high, len(raw))
        length = shortest(wanted, high // 2, high)
        count = given(length)
        if count > wanted:
            for shorter in range(shortest(wanted - 1, 0, length), length):
                count = given(shorter)
                if decoder.getstate()[1] & 1:  # the newline decoder's pending "\r"
                    length = shorter
                    break
            else:
                length -= 1
                count = given(length)
        piece[:] = [position + length, decoder.getstate(), raw[length:], chars - count, final]
        self._returned = wanted - count
        return position + length

    async def tell(self):
        self._check_open()
        if not self._regular:
            raise OSError(errno.ESPIPE, os.strerror(errno.ESPIPE))
        return self._logical_position()

    async def seek(self, offset, whence=os.SEEK_SET):
        """Move to offset from the start, the current position or the end; returns the position."""
        self._check_open()
        offset = offset.__index__()
        if whence not in (os.SEEK_SET, os.SEEK_CUR, os.SEEK_END):
            raise ValueError(f"invalid whence ({whence}, should be 0, 1 or 2)")
        if self._text is not None and whence != os.SEEK_SET and offset != 0:
            where = "cur" if whence == os.SEEK_CUR else "end"
            raise io.UnsupportedOperation(f"can't do nonzero {where}-relative seeks")
        if not self._regular:
            raise OSError(errno.ESPIPE, os.strerror(errno.ESPIPE))
        if whence == os.SEEK_SET:
            base = 0
        elif whence == os.SEEK_CUR:
            base = self._logical_position()
        else:
            base = (await self._ops.stat(None, self._fd, True, None)).st_size
            self._size = base
        target = base + offset
        if target < 0:
            if self._text is not None:
                raise ValueError(f"negative seek position {offset}")
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
        self._buf = self._buf[:0]
        if self._text is not None:
            self._reset_codecs()
        self._pos = target
        return target

    # -- closing -------------------------------------------------------------------------

    async def close(self):
        """Close the descriptor (once; later calls do nothing)."""
        fd, self._fd = self._fd, -1
        if fd >= 0:
            await self._ops.close(fd)

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc_info):
        await self.close()

    def __del__(self):
        # As an unclosed built-in file: warn, and close the descriptor here.
        if getattr(self, "_fd", -1) >= 0:
            warnings.warn(f"unclosed file {self!r}", ResourceWarning, stacklevel=2, source=self)
            fd, self._fd = self._fd, -1
            os.close(fd)

    def __repr__(self):
        state = " closed" if self._fd < 0 else ""
        return f"<data_bridge.pyloop.fs.AsyncFile name={self.name!r} mode={self.mode!r}{state}>"

"""data_bridge/pyloop/_pipes.py — connect_read_pipe, connect_write_pipe and their transports.

The two transports of asyncio's unix_events (_UnixReadPipeTransport, _UnixWritePipeTransport),
with the same observable behaviour, over the native StreamIO of the stream transports in its
"stream" kind (read()/write() instead of recv()/send(), core/src/socket_io.cpp):
- PipeReadTransport: the core's stream reader calls data_received without a Python frame;
  end of file gives eof_received then connection_lost(None), each in its own callback.
- PipeWriteTransport: write() and writelines() are the native ones of SocketTransport
  (coalesced per loop turn, the rest waiting for writability natively, asyncio's water
  marks); after close() or write_eof() writes are dropped and counted, as asyncio does. On a
  FIFO or a socket the write end is also watched for readability, which tells that the
  reading end closed (a plain Python readiness callback: it runs once, at the end).
The accepted kinds of file (pipes and FIFOs, sockets, character devices such as a pty) and
the descriptor made non-blocking are decided in the core (prepare_pipe, pipe_descriptor.cpp).
"""

from __future__ import annotations

import errno
import logging
import warnings
from asyncio import base_events, futures, transports

from ._pyloop import StreamIO, install_stream_methods, prepare_pipe
from ._transport import NativeWriteBuffer, ReadingControl, report_fatal_error

logger = logging.getLogger("asyncio")

_BASE = base_events.BaseEventLoop


def _prepared_fileno(transport, pipe, message: str) -> tuple[int, str]:
    """The pipe's descriptor, made non-blocking, and its kind ("fifo", "socket" or
    "character"); ValueError(message) for any other kind of file, as asyncio raises."""
    transport._pipe = None  # until accepted: __del__ must neither warn nor close
    fileno = pipe.fileno()
    kind = prepare_pipe(fileno)
    if kind is None:
        raise ValueError(message)
    transport._pipe = pipe
    return fileno, kind


class _PipeTransport:
    """What both pipe transports share: the pipe object, the protocol, repr, closing state
    and the end of the connection."""

    __slots__ = ()

    def _init_pipe(self, loop, pipe, fileno, protocol) -> None:
        self._extra["pipe"] = pipe
        self._loop = loop
        self._fileno = fileno
        self._protocol = protocol
        self._closing = False
        self._lost = False  # connection_lost is scheduled or done
        loop.call_soon(protocol.connection_made, self)

    def _connected(self, waiter) -> None:
        # The waiter resolves after connection_made (and the start of reading) has run.
        if waiter is not None:
            self._loop.call_soon(futures._set_result_unless_cancelled, waiter, None)

    def _io_state(self) -> list[str]:
        """What asyncio's repr says of the transport's watch (and buffer)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        info = [type(self).__name__]
        if self._pipe is None:
            info.append("closed")
        elif self._closing:
            info.append("closing")
        info.append(f"fd={self._fileno}")
        if self._pipe is not None and self._loop is not None and not self._loop.is_closed():
            info.extend(self._io_state())
        elif self._pipe is not None:
            info.append("open")
        else:
            info.append("closed")
        return "<{}>".format(" ".join(info))

    def __del__(self, _warn=warnings.warn) -> None:
        if self._pipe is not None:
            _warn(f"unclosed transport {self!r}", ResourceWarning, source=self)
            self._pipe.close()

    def set_protocol(self, protocol) -> None:
        self._protocol = protocol

    def get_protocol(self):
        return self._protocol

    def is_closing(self) -> bool:
        return self._closing

    def _lose_connection(self, exc) -> None:
        # connection_lost is called once, in the next callback, whatever closes first
        # (asyncio would call it again, on a transport already torn down).
        if not self._lost:
            self._lost = True
            self._loop.call_soon(self._call_connection_lost, exc)

    def _call_connection_lost(self, exc) -> None:
        try:
            self._protocol.connection_lost(exc)
        finally:
            self._io.detach()
            self._pipe.close()
            self._pipe = None
            self._protocol = None
            self._loop = None


class PipeReadTransport(_PipeTransport, ReadingControl, transports.ReadTransport):
    """asyncio.ReadTransport over a pipe, a FIFO, a socket or a character device."""

    __slots__ = ("_io", "__dict__", "__weakref__")

    max_size = 256 * 1024  # asyncio's bound on one read; the loop's receive buffer's size

    def __init__(self, loop, pipe, protocol, waiter=None, extra=None):
        super().__init__(extra)
        fileno, _ = _prepared_fileno(self, pipe, "Pipe transport is for pipes/sockets only.")
        self._io = StreamIO(loop, fileno, self, "stream")
        self._paused = False
        self._init_pipe(loop, pipe, fileno, protocol)
        loop.call_soon(self._start_reading)
        self._connected(waiter)

    def _io_state(self) -> list[str]:
        return ["polling" if self._io.reading else "idle"]

    def _start_reading(self) -> None:
        if self.is_reading():
            self._install_reader()

    def _install_reader(self) -> None:
        # A pipe transport always calls data_received (a BufferedProtocol is not special
        # to asyncio's pipe transports).
        self._io.start_reading(self._protocol, False)

    def _remove_reader(self) -> None:
        self._io.stop_reading()

    def set_protocol(self, protocol) -> None:
        super().set_protocol(protocol)
        if self._io.reading:  # the native reader calls the protocol it was given
            self._install_reader()

    def _on_eof(self) -> None:
        # Called by the native reader at end of file.
        if self._loop.get_debug():
            logger.info("%r was closed by peer", self)
        self._closing = True
        self._remove_reader()
        self._loop.call_soon(self._protocol.eof_received)
        self._lose_connection(None)

    def close(self) -> None:
        if not self._closing:
            self._close(None)

    def _protocol_error(self, exc, message) -> None:
        # asyncio calls data_received from its _read_ready handle: the exception is that
        # handle's, for the loop's exception handler, and reading goes on.
        self._loop.call_exception_handler(
            {
                "message": f"Exception in callback {type(self).__name__}._read_ready()",
                "exception": exc,
                "transport": self,
                "protocol": self._protocol,
            }
        )

    def _fatal_error(self, exc, message="Fatal error on pipe transport") -> None:
        # EIO is how a pty's master reads the end of its slave: not worth reporting. Any
        # other error is, as asyncio's read pipe transport reports it.
        report_fatal_error(self, exc, message, isinstance(exc, OSError) and exc.errno == errno.EIO)
        self._close(exc)

    def _close(self, exc) -> None:
        self._closing = True
        self._remove_reader()
        self._lose_connection(exc)


class PipeWriteTransport(
    _PipeTransport, NativeWriteBuffer, transports._FlowControlMixin, transports.WriteTransport
):
    """asyncio.WriteTransport over a pipe, a FIFO, a socket or a character device."""

    # `_io` is a slot so the native write() finds it, at the offset SocketTransport's has.
    __slots__ = ("_io", "__dict__", "__weakref__")

    def __init__(self, loop, pipe, protocol, waiter=None, extra=None):
        fileno, kind = _prepared_fileno(
            self, pipe, "Pipe transport is only for pipes, sockets and character devices"
        )
        # Before the mixin's __init__, which sets the water marks (the writer keeps them).
        self._io = StreamIO(loop, fileno, self, "stream")
        super().__init__(extra, loop)
        self._init_pipe(loop, pipe, fileno, protocol)
        # The reading end closing makes the write end of a FIFO or a socket readable (an
        # error or a hang-up); a character device tells nothing that way.
        self._peer_watch = kind != "character"
        if self._peer_watch:
            loop.call_soon(self._install_peer_watch)
        self._connected(waiter)

    def _install_peer_watch(self) -> None:
        # After connection_made, as asyncio does; unless the transport was closed meanwhile
        # (asyncio installs it all the same, on a descriptor about to be closed, and the
        # stale watch then blinds whatever reuses that descriptor number).
        if self._peer_watch:
            self._loop._add_reader(self._fileno, self._read_ready)

    def _io_state(self) -> list[str]:
        return ["polling" if self._io.waiting else "idle", f"bufsize={self._io.pending}"]

    def _read_ready(self) -> None:
        # The reading end was closed: data still queued cannot be delivered.
        if self._loop.get_debug():
            logger.info("%r was closed by peer", self)
        if self._io.pending:
            self._close(BrokenPipeError())
        else:
            self._close()

    # write() and writelines() are native (install_stream_methods below).

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._io.closing = True  # later writes are dropped and counted, as asyncio does
        if not self._io.buffer_size():
            self._remove_peer_watch()
            self._lose_connection(None)
        # Otherwise the queue drains first; _on_drained then finishes.

    def close(self) -> None:
        if self._pipe is not None and not self._closing:
            self.write_eof()

    def abort(self) -> None:
        self._close(None)

    def _remove_peer_watch(self) -> None:
        if self._peer_watch:
            self._peer_watch = False
            self._loop._remove_reader(self._fileno)

    # Called by the native writer on its slow paths.

    def _on_write_error(self, exc) -> None:
        self._io.lost += 1
        self._fatal_error(exc, "Fatal write error on pipe transport")

    def _on_drained(self) -> None:
        if self._closing and not self._lost:
            self._lost = True
            self._remove_peer_watch()
            self._call_connection_lost(None)

    def _fatal_error(self, exc, message="Fatal error on pipe transport") -> None:
        report_fatal_error(self, exc, message, isinstance(exc, OSError))
        self._close(exc)

    def _close(self, exc=None) -> None:
        self._closing = True
        self._io.closing = True
        # What asyncio's write() would already have handed to the kernel goes out first,
        # unless the pipe itself failed.
        self._io.discard(not isinstance(exc, OSError))
        self._remove_peer_watch()
        self._lose_connection(exc)


install_stream_methods(PipeWriteTransport)


class PipeMethods:
    """Mixin of PyLoop: connect_read_pipe and connect_write_pipe, asyncio's own coroutines
    over the transports above."""

    connect_read_pipe = _BASE.connect_read_pipe
    connect_write_pipe = _BASE.connect_write_pipe

    def _make_read_pipe_transport(self, pipe, protocol, waiter=None, extra=None):
        return PipeReadTransport(self, pipe, protocol, waiter, extra)

    def _make_write_pipe_transport(self, pipe, protocol, waiter=None, extra=None):
        return PipeWriteTransport(self, pipe, protocol, waiter, extra)

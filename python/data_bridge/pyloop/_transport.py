"""data_bridge/pyloop/_transport.py — the stream transport of TCP and Unix connections.

A complete asyncio stream transport (it derives from asyncio's _FlowControlMixin, so it is an
asyncio.Transport and honours the same water marks) whose I/O is native, in its StreamIO
(`_io`: the core's stream reader and writer, bindings/bind_stream_io.cpp):
- reading: the reader calls data_received (Protocol) or receives straight into
  get_buffer()'s buffer (BufferedProtocol) without a Python frame, in debug mode too (where
  each read callback is timed, as asyncio times its handles);
- writing: write() and writelines() are native (bindings/bind_stream_write.cpp): writes of
  one loop turn are sent together at its end, one system call per transport (earlier when
  the writer is about to wait, and inside write() for a transport writing once per turn);
  what the kernel does not take waits for writability natively.
This class keeps the protocol's life cycle: connection_made, close, abort, write_eof, errors,
flow control and connection_lost, in asyncio's order (docs/architecture.md, "Transports").
"""

from __future__ import annotations

import inspect
import logging
import socket
import warnings
from asyncio import base_events, constants, futures, protocols, transports, trsock

from ._pyloop import StreamIO, install_stream_methods

logger = logging.getLogger("asyncio")

# Python 3.13's Server tracks its client transports (close_clients/abort_clients).
_SERVER_TRACKS_TRANSPORTS = len(inspect.signature(base_events.Server._attach).parameters) > 1


def _set_nodelay(sock) -> None:
    if (
        sock.family in (socket.AF_INET, socket.AF_INET6)
        and sock.type == socket.SOCK_STREAM
        and sock.proto == socket.IPPROTO_TCP
    ):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def report_fatal_error(transport, exc, message, quiet: bool) -> None:
    """What asyncio's transports' _fatal_error reports: an error the transport calls `quiet`
    (a connection error, the peer's doing) is logged in debug mode only; anything else goes
    to the loop's exception handler."""
    if quiet:
        if transport._loop.get_debug():
            logger.debug("%r: %s", transport, message, exc_info=True)
    else:
        transport._loop.call_exception_handler(
            {
                "message": message,
                "exception": exc,
                "transport": transport,
                "protocol": transport._protocol,
            }
        )


class ReadingControl:
    """pause_reading() and resume_reading() of a transport read by its StreamIO's reader,
    which the class installs and removes with _install_reader() and _remove_reader()."""

    __slots__ = ()

    def is_reading(self) -> bool:
        return not self._paused and not self._closing

    def pause_reading(self) -> None:
        if not self.is_reading():
            return
        self._paused = True
        self._remove_reader()
        if self._loop.get_debug():
            logger.debug("%r pauses reading", self)

    def resume_reading(self) -> None:
        if self._closing or not self._paused:
            return
        self._paused = False
        self._install_reader()
        if self._loop.get_debug():
            logger.debug("%r resumes reading", self)


class NativeWriteBuffer:
    """The write buffer of a transport written by its StreamIO's writer: its size, and
    asyncio's water marks (_FlowControlMixin's, which must follow in the MRO) handed to it."""

    __slots__ = ()

    def get_write_buffer_size(self) -> int:
        return self._io.buffer_size()

    def _set_write_buffer_limits(self, high=None, low=None) -> None:
        super()._set_write_buffer_limits(high, low)
        self._io.set_write_limits(self._high_water, self._low_water)


class SocketOwner:
    """What a transport owning a socket read and written by its native `_io` shows: the
    socket's extra info, asyncio's repr, and the ResourceWarning of one left unclosed."""

    __slots__ = ()

    @staticmethod
    def _socket_extra(sock, extra) -> None:
        """Fills extra with the socket, its name and its peer's (None where unknown)."""
        extra["socket"] = trsock.TransportSocket(sock)
        try:
            extra["sockname"] = sock.getsockname()
        except OSError:
            extra["sockname"] = None
        if "peername" not in extra:
            try:
                extra["peername"] = sock.getpeername()
            except OSError:
                extra["peername"] = None

    def __repr__(self) -> str:
        info = [type(self).__name__]
        if self._sock is None:
            info.append("closed")
        elif self._closing:
            info.append("closing")
        info.append(f"fd={self._sock_fd}")
        if self._sock is not None and self._loop is not None and not self._loop.is_closed():
            info.append("read=" + ("polling" if self._io.reading else "idle"))
            writing = "polling" if self._io.waiting else "idle"
            info.append(f"write=<{writing}, bufsize={self._io.pending}>")
        return "<{}>".format(" ".join(info))

    def __del__(self, _warn=warnings.warn) -> None:
        if self._sock is not None:
            _warn(f"unclosed transport {self!r}", ResourceWarning, source=self)
            self._sock.close()


class SocketTransport(
    SocketOwner, ReadingControl, NativeWriteBuffer, transports._FlowControlMixin, transports.Transport
):
    """asyncio.Transport over a connected stream socket."""

    # `_io` is a slot so the native write() finds it at a fixed offset.
    __slots__ = ("_io", "__dict__", "__weakref__")

    _start_tls_compatible = True
    _sendfile_compatible = constants._SendfileMode.TRY_NATIVE

    def __init__(self, loop, sock, protocol, waiter=None, extra=None, server=None):
        # Before the mixin's __init__, which sets the water marks through
        # _set_write_buffer_limits (the writer keeps them).
        self._io = StreamIO(loop, sock.fileno(), self)
        super().__init__(extra, loop)
        self._socket_extra(sock, self._extra)
        self._sock = sock
        self._sock_fd = sock.fileno()
        self._protocol_connected = False
        self.set_protocol(protocol)
        self._server = server
        self._closing = False
        self._paused = False  # reading paused by pause_reading()
        self._empty_waiter = None  # sendfile waits here for the write buffer to drain
        if self._server is not None:
            if _SERVER_TRACKS_TRANSPORTS:
                self._server._attach(self)
            else:
                self._server._attach()
        loop._transports[self._sock_fd] = self
        _set_nodelay(sock)
        # As asyncio does: the protocol learns of the connection, then reading starts, then
        # the creator's waiter resolves, each in its own callback of the next iteration.
        loop.call_soon(self._protocol.connection_made, self)
        loop.call_soon(self._start_reading)
        if waiter is not None:
            loop.call_soon(futures._set_result_unless_cancelled, waiter, None)


    # -- protocol ------------------------------------------------------------------------

    def set_protocol(self, protocol) -> None:
        self._protocol = protocol
        self._protocol_connected = True
        # The reader calls the protocol it was given: a new protocol is given to it.
        if self._io.reading:
            self._install_reader()

    def get_protocol(self):
        return self._protocol

    # -- reading -------------------------------------------------------------------------

    def _start_reading(self) -> None:
        if not self._closing and not self._paused:
            self._install_reader()

    def _install_reader(self) -> None:
        # recv and data_received (or get_buffer/buffer_updated) without a Python frame
        # between; the reader calls _on_eof and _fatal_error below.
        buffered = isinstance(self._protocol, protocols.BufferedProtocol)
        self._io.start_reading(self._protocol, buffered)

    def _remove_reader(self) -> None:
        self._io.stop_reading()

    def _on_eof(self) -> None:
        if self._loop.get_debug():
            logger.debug("%r received EOF", self)
        try:
            keep_open = self._protocol.eof_received()
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal error: protocol.eof_received() call failed.")
            return
        if keep_open:
            # Half-closed: stop reading, keep writing.
            self._remove_reader()
        else:
            self.close()

    # -- writing: write() and writelines() are native (install_stream_methods below) --------

    def write_eof(self) -> None:
        if self._closing or self._io.eof:
            return
        self._io.eof = True
        if not self._io.buffer_size():
            self._sock.shutdown(socket.SHUT_WR)
        # Otherwise the queue drains first; _on_drained then shuts the write side.

    def can_write_eof(self) -> bool:
        return True

    # Called by the native writer on its slow paths.

    def _on_write_error(self, exc) -> None:
        self._fatal_error(exc, "Fatal write error on socket transport")
        if self._empty_waiter is not None:
            self._empty_waiter.set_exception(exc)

    def _on_drained(self) -> None:
        if self._empty_waiter is not None:
            self._empty_waiter.set_result(None)
        if self._closing:
            self._call_connection_lost(None)
        elif self._io.eof:
            self._sock.shutdown(socket.SHUT_WR)

    # -- closing -------------------------------------------------------------------------

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._remove_reader()
        if not self._io.buffer_size():
            self._io.lost += 1
            self._loop.call_soon(self._call_connection_lost, None)
        # Otherwise the queue drains first; _on_drained then finishes the close.

    def abort(self) -> None:
        self._force_close(None)

    def _fatal_error(self, exc, message="Fatal error on transport") -> None:
        report_fatal_error(self, exc, message, isinstance(exc, OSError))
        self._force_close(exc)

    # A protocol callback's exception inside a read is fatal to the transport, as in asyncio.
    def _protocol_error(self, exc, message) -> None:
        self._fatal_error(exc, message)

    def _force_close(self, exc) -> None:
        if self._io.lost:
            return
        # What asyncio's write() would already have handed to the kernel goes out first,
        # unless the writing itself failed.
        self._io.discard(exc is None or not isinstance(exc, OSError))
        if not self._closing:
            self._closing = True
            self._remove_reader()
        self._io.lost += 1
        self._loop.call_soon(self._call_connection_lost, exc)

    def _call_connection_lost(self, exc) -> None:
        try:
            if self._protocol_connected:
                self._protocol.connection_lost(exc)
        finally:
            self._io.detach()
            self._sock.close()
            self._sock = None
            self._protocol = None
            self._loop = None
            server = self._server
            if server is not None:
                if _SERVER_TRACKS_TRANSPORTS:
                    server._detach(self)
                else:
                    server._detach()
                self._server = None
            if self._empty_waiter is not None:
                self._empty_waiter.set_exception(ConnectionError("Connection is closed by peer"))

    # -- sendfile support (loop.sendfile pauses reading and waits for the buffer) --------

    def _make_empty_waiter(self):
        if self._empty_waiter is not None:
            raise RuntimeError("Empty waiter is already set")
        self._empty_waiter = self._loop.create_future()
        self._io.blocked = True
        if not self._io.buffer_size():
            self._empty_waiter.set_result(None)
        return self._empty_waiter

    def _reset_empty_waiter(self) -> None:
        self._empty_waiter = None
        self._io.blocked = False


install_stream_methods(SocketTransport)

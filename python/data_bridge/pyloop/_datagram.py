"""data_bridge/pyloop/_datagram.py — the datagram transport of create_datagram_endpoint.

A complete asyncio.DatagramTransport (it derives from asyncio's _FlowControlMixin, so its
backlog honours asyncio's water marks and pause_writing/resume_writing) whose I/O is native,
in its DatagramIO (`_io`: the core's datagram_io, bindings/bind_datagram_io.cpp):
- receiving: each readiness callback receives a batch of datagrams with one system call
  (recvmmsg on Linux) and calls protocol.datagram_received(data, addr) for each, in order,
  without a Python frame between; errors (ICMP errors such as ECONNREFUSED on a connected
  socket) go to protocol.error_received, as on asyncio;
- sending: sendto() is native (bindings/bind_datagram_send.cpp): the datagram is sent at once
  when nothing waits; what the kernel refuses with EAGAIN waits in the backlog and is sent
  natively (sendmmsg) when the socket is writable.
This class keeps the life cycle asyncio's selector transport has: connection_made,
pause/resume_reading, close (the backlog is sent first), abort (it is dropped), errors and
connection_lost, in asyncio's order (docs/architecture.md, "Datagrams").
"""

from __future__ import annotations

import inspect
import logging
import os
import socket
import sys
from asyncio import futures, selector_events, transports

from ._pyloop import DatagramIO, install_datagram_methods
from ._transport import ReadingControl, SocketOwner

logger = logging.getLogger("asyncio")


def _sends_empty_datagrams() -> bool:
    """Whether the running asyncio sends empty datagrams (3.13) or drops sendto(b"")."""
    try:
        source = inspect.getsource(selector_events._SelectorDatagramTransport.sendto)
    except (OSError, TypeError):
        return sys.version_info >= (3, 13)
    return "if not data:" not in source


# 3.13 sends empty datagrams and counts 8 header bytes per queued datagram against the water
# marks (gh-113812); earlier versions drop empty datagrams and count the payload only. The
# header is also taken off when the datagram is sent (gh-135444: 3.13.0 forgot to).
_SEND_EMPTY = _sends_empty_datagrams()
_HEADER_SIZE = 8 if _SEND_EMPTY else 0


def _numeric_address(sock, addr):
    """The form of `addr` that sendto's native path takes, resolved as the socket module
    resolves it (for a datagram that must wait in the backlog)."""
    family = sock.family
    if family == socket.AF_UNIX:
        return os.fsencode(addr) if isinstance(addr, str) else bytes(addr)
    if family not in (socket.AF_INET, socket.AF_INET6) or not isinstance(addr, tuple):
        raise TypeError(f"sendto(): invalid address {addr!r}")
    if family == socket.AF_INET and len(addr) != 2:
        raise TypeError("AF_INET address must be a pair (host, port)")
    if family == socket.AF_INET6 and not 2 <= len(addr) <= 4:
        raise TypeError("AF_INET6 address must be a tuple (host, port[, flowinfo[, scopeid]])")
    host, port, *rest = addr
    if isinstance(host, (bytes, bytearray)):
        host = host.decode("idna")
    if family == socket.AF_INET and host == "":
        host = "0.0.0.0"
    elif family == socket.AF_INET and host == "<broadcast>":
        host = "255.255.255.255"
    else:
        info = socket.getaddrinfo(host, None, family, socket.SOCK_DGRAM)
        resolved = info[0][4]
        host = resolved[0].partition("%")[0]
        if family == socket.AF_INET6 and len(resolved) > 3 and not (rest[1:] and rest[1]):
            rest = [rest[0] if rest else 0, resolved[3]]
    port = port.__index__()
    if not 0 <= port <= 0xFFFF:
        raise OverflowError("sendto(): port must be 0-65535.")
    return (host, port, *(int(r) for r in rest))


class DatagramTransport(
    SocketOwner, ReadingControl, transports._FlowControlMixin, transports.DatagramTransport
):
    """asyncio.DatagramTransport over a datagram socket."""

    # `_io` is a slot so the native sendto() finds it at a fixed offset.
    __slots__ = ("_io", "__dict__", "__weakref__")

    max_size = 256 * 1024  # asyncio's: the longest datagram delivered whole

    def __init__(self, loop, sock, protocol, address=None, waiter=None, extra=None):
        # The extra info first: whether the socket has a peer decides how it sends.
        extra = {} if extra is None else dict(extra)
        self._socket_extra(sock, extra)
        self._io = DatagramIO(
            loop, sock.fileno(), self, sock.family, bool(extra["peername"]),
            address if address else None, _SEND_EMPTY, _HEADER_SIZE,
        )
        # The mixin sets the water marks through _set_write_buffer_limits (the io keeps them).
        super().__init__(extra, loop)
        self._sock = sock
        self._sock_fd = sock.fileno()
        self._address = address
        self._protocol_connected = False
        self.set_protocol(protocol)
        self._closing = False
        self._paused = False  # reading paused by pause_reading()
        loop._transports[self._sock_fd] = self
        # As asyncio does: the protocol learns of the endpoint, then reading starts, then the
        # creator's waiter resolves, each in its own callback.
        loop.call_soon(self._protocol.connection_made, self)
        loop.call_soon(self._start_reading)
        if waiter is not None:
            loop.call_soon(futures._set_result_unless_cancelled, waiter, None)

    # -- protocol ------------------------------------------------------------------------

    def set_protocol(self, protocol) -> None:
        self._protocol = protocol
        self._protocol_connected = True
        self._io.set_protocol(protocol)

    def get_protocol(self):
        return self._protocol

    # -- receiving -----------------------------------------------------------------------

    def _start_reading(self) -> None:
        if self.is_reading():
            self._io.start_reading()

    # pause_reading() and resume_reading() are ReadingControl's, through these two.
    def _install_reader(self) -> None:
        self._io.start_reading()

    def _remove_reader(self) -> None:
        self._io.stop_reading()

    def _callback_error(self, exc, reading) -> None:
        """A protocol's exception escaped the native read callback (reading) or writability
        callback: reported as asyncio reports an exception escaping its transport's
        _read_ready or _sendto_ready handle."""
        where = "_read_ready" if reading else "_sendto_ready"
        self._loop.call_exception_handler(
            {
                "message": f"Exception in callback {type(self).__name__}.{where}()",
                "exception": exc,
                "transport": self,
                "protocol": self._protocol,
            }
        )

    # -- sending: sendto() is native (install_datagram_methods below) --------------------

    def _sendto_slow(self, data, addr) -> None:
        """sendto() for a destination only the socket module can convert, or on a socket
        already closed: asyncio's own steps."""
        if not self._io.backlog:
            try:
                if self._extra["peername"]:
                    self._sock.send(data)
                else:
                    self._sock.sendto(data, addr)
                return
            except (BlockingIOError, InterruptedError):
                pass  # the socket module took the address: it waits in the backlog
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._send_failed(exc)
                return
        try:
            resolved = _numeric_address(self._sock, addr)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._send_failed(exc)
            return
        self._send_resolved(data, resolved)

    def _send_failed(self, exc) -> None:
        """A failed send, as asyncio reports it: an OSError to the protocol's
        error_received, anything else a fatal error of the transport."""
        if isinstance(exc, OSError):
            self._protocol.error_received(exc)
        else:
            self._fatal_error(exc, "Fatal write error on datagram transport")

    def get_write_buffer_size(self) -> int:
        return self._io.pending

    def _set_write_buffer_limits(self, high=None, low=None) -> None:
        super()._set_write_buffer_limits(high, low)
        self._io.set_write_limits(self._high_water, self._low_water)

    def _on_drained(self) -> None:
        """The backlog that waited for writability is sent: a close finishes now."""
        if self._closing:
            self._call_connection_lost(None)

    # -- closing -------------------------------------------------------------------------

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._io.stop_reading()
        if not self._io.backlog:
            self._io.lost += 1
            self._io.discard()
            self._loop.call_soon(self._call_connection_lost, None)
        # Otherwise the backlog is sent first; _on_drained then finishes the close.

    def abort(self) -> None:
        self._force_close(None)

    def _fatal_error(self, exc, message="Fatal error on transport") -> None:
        if isinstance(exc, OSError):
            if self._loop.get_debug():
                logger.debug("%r: %s", self, message, exc_info=True)
        else:
            self._loop.call_exception_handler(
                {
                    "message": message,
                    "exception": exc,
                    "transport": self,
                    "protocol": self._protocol,
                }
            )
        self._force_close(exc)

    def _force_close(self, exc) -> None:
        if self._io.lost:
            return
        self._io.discard()  # the backlog is dropped, as asyncio drops its buffer
        if not self._closing:
            self._closing = True
            self._io.stop_reading()
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


install_datagram_methods(DatagramTransport)

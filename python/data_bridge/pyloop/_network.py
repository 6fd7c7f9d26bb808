"""data_bridge/pyloop/_network.py — connections and servers: the orchestration around
transports.

Resolving addresses, happy eyeballs, binding listening sockets, the Server object, TLS
wrapping and sendfile's fallback are not on any hot path, and asyncio users depend on every
detail of them (argument checks, error messages, option handling, version differences). So
PyLoop runs the running interpreter's own asyncio functions for them, attached to this class
by reference rather than rewritten, and supplies the pieces they build on: native
readiness, sock_* methods, and its own transport (docs/architecture.md, "Networking").
"""

from __future__ import annotations

import logging
import os
from asyncio import base_events, selector_events, sslproto, unix_events

from . import _tls
from ._transport import SocketTransport

_BASE = base_events.BaseEventLoop
_SELECTOR = selector_events.BaseSelectorEventLoop
_UNIX = unix_events._UnixSelectorEventLoop

logger = logging.getLogger("asyncio")


class NetworkMethods:
    """Mixin of PyLoop: create_connection, create_server and their relatives."""

    # Client connections and accepted sockets.
    create_connection = _BASE.create_connection
    _connect_sock = _BASE._connect_sock
    _create_connection_transport = _BASE._create_connection_transport
    connect_accepted_socket = _BASE.connect_accepted_socket
    create_unix_connection = _UNIX.create_unix_connection

    # Servers: asyncio's Server drives _start_serving / _stop_serving below.
    create_server = _BASE.create_server
    _create_server_getaddrinfo = _BASE._create_server_getaddrinfo
    create_unix_server = _UNIX.create_unix_server
    _start_serving = _SELECTOR._start_serving
    _accept_connection = _SELECTOR._accept_connection
    _accept_connection2 = _SELECTOR._accept_connection2

    def _init_network(self) -> None:
        # Listening Unix sockets to unlink when their server closes (3.13's cleanup_socket):
        # socket -> inode of the path it was bound to.
        self._unix_server_sockets = {}

    def _stop_serving(self, sock) -> None:
        """Stop accepting on a listening socket and close it; a Unix socket created by
        create_unix_server(cleanup_socket=True) also loses its path, if the path still
        names the same socket."""
        inode = self._unix_server_sockets.pop(sock, None)
        path = sock.getsockname() if inode is not None else None
        self._remove_reader(sock.fileno())
        sock.close()
        if path is None:
            return
        try:
            if os.stat(path).st_ino == inode:
                os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as err:
            logger.error("Unable to clean up listening UNIX socket %r: %r", path, err)

    # TLS over the stream transport, and sendfile.
    # asyncio's own functions, with _tls.SSLProtocol (native data phase) for sslproto's.
    start_tls = _tls.start_tls
    _make_ssl_transport = _tls.make_ssl_transport
    sendfile = _BASE.sendfile
    _sendfile_native = _SELECTOR._sendfile_native
    _sendfile_fallback = _BASE._sendfile_fallback

    def _make_socket_transport(self, sock, protocol, waiter=None, *, extra=None, server=None):
        return SocketTransport(self, sock, protocol, waiter, extra, server)


# sslproto is imported for _make_ssl_transport's module globals; keep the import visible.
__all__ = ["NetworkMethods", "sslproto"]

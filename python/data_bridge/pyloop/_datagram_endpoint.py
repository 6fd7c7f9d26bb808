"""data_bridge/pyloop/_datagram_endpoint.py — create_datagram_endpoint.

Making the socket (argument checks, address resolution, family and protocol pairing, the
options reuse_port and allow_broadcast, a stale Unix socket file, connecting) is the running
interpreter's own asyncio code, attached by reference as for connections and servers
(docs/decisions/0003), so its checks, errors and version differences are asyncio's exactly.
The transport it builds on is PyLoop's native DatagramTransport (_datagram.py).
"""

from __future__ import annotations

from asyncio import base_events

from ._datagram import DatagramTransport


class DatagramMethods:
    """Mixin of PyLoop: create_datagram_endpoint and the transport it makes."""

    create_datagram_endpoint = base_events.BaseEventLoop.create_datagram_endpoint

    def _make_datagram_transport(self, sock, protocol, address=None, waiter=None, extra=None):
        self._ensure_fd_no_transport(sock)
        return DatagramTransport(self, sock, protocol, address, waiter, extra)

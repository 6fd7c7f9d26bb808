"""data_bridge/pyloop/_resolver.py — name resolution: getaddrinfo and getnameinfo.

Lookups run on the native runtime's worker threads, not in a Python executor; only debug
mode's getaddrinfo goes through the default executor, for asyncio's per-lookup log lines.
Arguments are encoded here as socket.getaddrinfo encodes them (docs/architecture.md, "The
native runtime and name resolution").
"""

from __future__ import annotations

import socket
from asyncio import base_events


class ResolverMethods:
    """Mixin of PyLoop: getaddrinfo and getnameinfo."""

    def _check_resolver_usable(self) -> None:
        # asyncio resolves in the default executor, so its lookups fail once that executor is
        # shut down (after the closed-loop check); PyLoop keeps the contract though it uses
        # no executor.
        if self._executor_shutdown_called:
            self._check_closed()
            raise RuntimeError("Executor shutdown has been called")

    async def getaddrinfo(self, host, port, *, family=0, type=0, proto=0, flags=0):
        """socket.getaddrinfo() on the native runtime's threads (not a Python executor)."""
        self._check_resolver_usable()
        if self.get_debug():
            # Debug mode logs each lookup and its duration, as asyncio does.
            return await self.run_in_executor(
                None, self._getaddrinfo_debug, host, port, family, type, proto, flags
            )
        done = self.create_future()
        self._resolve(
            _encode_host(host), _encode_port(port), family, type, proto, flags, done
        )
        infos = await done
        return [
            (_int_enum(af, socket.AddressFamily), _int_enum(kind, socket.SocketKind), p, c, a)
            for af, kind, p, c, a in infos
        ]

    _getaddrinfo_debug = base_events.BaseEventLoop._getaddrinfo_debug

    async def getnameinfo(self, sockaddr, flags=0):
        """socket.getnameinfo() on the native runtime's threads (not a Python executor).

        Debug mode takes this path too: asyncio's getnameinfo logs nothing of its own (it only
        runs socket.getnameinfo in the executor), so there is no debug output to keep.
        """
        self._check_resolver_usable()
        return await self._resolve_name(sockaddr, flags)


def _encode_host(host):
    """The node name as socket.getaddrinfo passes it to C: IDNA-encoded, or None."""
    if host is None or isinstance(host, bytes):
        return host
    if isinstance(host, str):
        return host.encode("idna")
    raise TypeError("getaddrinfo() argument 1 must be string or None")


def _encode_port(port):
    """The service as socket.getaddrinfo passes it to C."""
    if port is None or isinstance(port, bytes):
        return port
    if isinstance(port, int):
        return b"%d" % port
    if isinstance(port, str):
        return port.encode("utf-8")
    raise OSError("Int or String expected")


def _int_enum(value, enum_class):
    try:
        return enum_class(value)
    except ValueError:
        return value

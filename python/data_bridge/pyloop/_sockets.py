"""data_bridge/pyloop/_sockets.py — readiness callbacks and the loop's sock_* coroutines.

add_reader/add_writer are native (the loop's io_watch registry on its readiness set); this
module validates their arguments as asyncio does. The sock_* coroutines try the call at once
and wait for readiness only when it would block, always through the native SockOp
(bindings/bind_sock_ops.cpp), whose readiness callback retries the call and is removed as
soon as the operation is done, cancellation included, so a cancelled sock_recv leaves the
socket unregistered and usable. sock_recv, sock_recv_into and sock_sendall on a plain
non-blocking socket are native end to end; every other call is the socket's own method,
retried by the same SockOp.
"""

from __future__ import annotations

import errno
import io
import os
import socket
import weakref
from asyncio import base_events, exceptions

try:
    import ssl
except ImportError:  # pragma: no cover - Python built without ssl
    ssl = None

# Block size of the read/send fallback of sock_sendfile (asyncio uses the same 256 KiB).
_SENDFILE_FALLBACK_BLOCK = 256 * 1024


def _descriptor_of(fileobj) -> int:
    """An integer descriptor from an int or an object with fileno(), with asyncio's errors."""
    if isinstance(fileobj, int):
        fd = fileobj
    else:
        try:
            fd = int(fileobj.fileno())
        except (AttributeError, TypeError, ValueError):
            raise ValueError(f"Invalid file object: {fileobj!r}") from None
    if fd < 0:
        raise ValueError(f"Invalid file descriptor: {fd}")
    return fd


class SocketMethods:
    """Mixin of PyLoop: add_reader & co. and the sock_* coroutines."""

    def _init_sockets(self) -> None:
        # Transports by descriptor: their descriptors are refused to add_reader & co.
        self._transports = weakref.WeakValueDictionary()

    # -- readiness -----------------------------------------------------------------------

    def _ensure_fd_no_transport(self, fd) -> None:
        fileno = fd
        if not isinstance(fileno, int):
            try:
                fileno = int(fileno.fileno())
            except (AttributeError, TypeError, ValueError):
                raise ValueError(f"Invalid file object: {fd!r}") from None
        # The weak dictionary's own get() raises and catches KeyError on a miss, and a miss is
        # what every sock_* wait looks up: read its mapping of weak references directly.
        ref = self._transports.data.get(fileno)
        transport = ref() if ref is not None else None
        if transport is not None and not transport.is_closing():
            raise RuntimeError(f"File descriptor {fd!r} is used by transport {transport!r}")

    def add_reader(self, fd, callback, *args) -> None:
        """Call callback(*args) whenever fd is readable, until remove_reader(fd)."""
        self._ensure_fd_no_transport(fd)
        self._check_closed()
        self._add_reader(_descriptor_of(fd), callback, *args)

    def remove_reader(self, fd) -> bool:
        """Stop watching fd for reading; True if it was watched."""
        self._ensure_fd_no_transport(fd)
        if self.is_closed():
            return False
        return self._remove_reader(_descriptor_of(fd))

    def add_writer(self, fd, callback, *args) -> None:
        """Call callback(*args) whenever fd is writable, until remove_writer(fd)."""
        self._ensure_fd_no_transport(fd)
        self._check_closed()
        self._add_writer(_descriptor_of(fd), callback, *args)

    def remove_writer(self, fd) -> bool:
        """Stop watching fd for writing; True if it was watched."""
        self._ensure_fd_no_transport(fd)
        if self.is_closed():
            return False
        return self._remove_writer(_descriptor_of(fd))

    # -- the sock_* coroutines -----------------------------------------------------------

    def _check_socket(self, sock) -> None:
        if ssl is not None and isinstance(sock, ssl.SSLSocket):
            raise TypeError("Socket cannot be of type SSLSocket")
        if self.get_debug() and sock.gettimeout() != 0:
            raise ValueError("the socket must be non-blocking")

    async def _wait_ready(self, sock, writing: bool, attempt):
        """attempt(), retried each time sock is ready (for writing or reading) until it stops
        raising BlockingIOError/InterruptedError. Callers pass a closure that looks the
        socket's method up on every attempt, as asyncio's retry callbacks do (tests replace
        the method on a mock between attempts)."""
        op = self._sock_wait(sock, writing, attempt)
        try:
            return await op
        except BaseException:
            op.unwatch()  # cancelled: the socket is unregistered before user code resumes
            raise

    # sock_recv, sock_recv_into and sock_sendall first ask the native loop (Loop._sock_recv &
    # co., bindings/bind_sock_ops.cpp), which tries the call in C++ and answers with the
    # result, raises its error, or returns a SockOp to await: the call waits for readiness
    # in a native callback that resolves the op's future. If the coroutine leaves the await
    # otherwise (cancelled), op.unwatch() takes the callback out at once, as asyncio's
    # done-callback removes its reader (the same as _wait_ready, written out here so that the
    # per-message path costs no extra coroutine). NotImplemented means the native path does
    # not serve this socket or argument (a subclass, a timeout): the socket's own methods,
    # waited for by _wait_ready.

    async def sock_recv(self, sock, n):
        result = self._sock_recv(sock, n)
        if result.__class__ is bytes:
            return result
        if result is NotImplemented:
            return await self._generic_sock_recv(sock, n)
        try:
            return await result
        except BaseException:
            result.unwatch()
            raise

    async def sock_recv_into(self, sock, buf):
        result = self._sock_recv_into(sock, buf)
        if result.__class__ is int:
            return result
        if result is NotImplemented:
            return await self._generic_sock_recv_into(sock, buf)
        try:
            return await result
        except BaseException:
            result.unwatch()
            raise

    async def sock_sendall(self, sock, data):
        result = self._sock_sendall(sock, data)
        if result is None:
            return None
        if result is NotImplemented:
            return await self._generic_sock_sendall(sock, data)
        try:
            return await result
        except BaseException:
            result.unwatch()  # what was sent stays sent, as in asyncio
            raise

    async def _generic_sock_recv(self, sock, n):
        self._check_socket(sock)
        try:
            return sock.recv(n)
        except (BlockingIOError, InterruptedError):
            pass
        return await self._wait_ready(sock, False, lambda: sock.recv(n))

    async def _generic_sock_recv_into(self, sock, buf):
        self._check_socket(sock)
        try:
            return sock.recv_into(buf)
        except (BlockingIOError, InterruptedError):
            pass
        return await self._wait_ready(sock, False, lambda: sock.recv_into(buf))

    async def _generic_sock_sendall(self, sock, data):
        self._check_socket(sock)
        try:
            sent = sock.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        view = memoryview(data).cast("B")
        if sent == len(view):
            return None
        position = sent

        def send_rest():
            nonlocal position
            position += sock.send(view[position:])
            if position < len(view):
                raise BlockingIOError  # wait for writability again
            return None

        return await self._wait_ready(sock, True, send_rest)

    async def sock_recvfrom(self, sock, bufsize):
        self._check_socket(sock)
        try:
            return sock.recvfrom(bufsize)
        except (BlockingIOError, InterruptedError):
            pass
        return await self._wait_ready(sock, False, lambda: sock.recvfrom(bufsize))

    async def sock_recvfrom_into(self, sock, buf, nbytes=0):
        self._check_socket(sock)
        if not nbytes:
            nbytes = len(buf)
        try:
            return sock.recvfrom_into(buf, nbytes)
        except (BlockingIOError, InterruptedError):
            pass
        return await self._wait_ready(sock, False, lambda: sock.recvfrom_into(buf, nbytes))

    async def sock_sendto(self, sock, data, address):
        self._check_socket(sock)
        try:
            return sock.sendto(data, address)
        except (BlockingIOError, InterruptedError):
            pass
        return await self._wait_ready(sock, True, lambda: sock.sendto(data, 0, address))

    async def sock_connect(self, sock, address):
        self._check_socket(sock)
        if sock.family == socket.AF_INET or (
            socket.has_ipv6 and sock.family == socket.AF_INET6
        ):
            resolved = await self._ensure_resolved(
                address, family=sock.family, type=sock.type, proto=sock.proto
            )
            address = resolved[0][4]
        try:
            sock.connect(address)
        except (BlockingIOError, InterruptedError):
            pass
        else:
            return None

        def connected():
            error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if error != 0:
                raise OSError(error, f"Connect call failed {address}")
            return None

        return await self._wait_ready(sock, True, connected)

    async def _ensure_resolved(self, address, *, family=0, type=socket.SOCK_STREAM, proto=0,
                               flags=0, loop=None):
        """Address info for (host, port, ...): at once when host is a numeric address of the
        family, else through getaddrinfo()."""
        host, port = address[:2]
        info = base_events._ipaddr_info(host, port, family, type, proto, *address[2:])
        if info is not None:
            return [info]
        return await self.getaddrinfo(host, port, family=family, type=type, proto=proto,
                                      flags=flags)

    async def sock_accept(self, sock):
        self._check_socket(sock)

        def accept():
            conn, peer = sock.accept()
            conn.setblocking(False)
            return conn, peer

        try:
            return accept()
        except (BlockingIOError, InterruptedError):
            pass
        return await self._wait_ready(sock, False, accept)

    async def sock_sendfile(self, sock, file, offset=0, count=None, *, fallback=True):
        if self.get_debug() and sock.gettimeout() != 0:
            raise ValueError("the socket must be non-blocking")
        self._check_socket(sock)
        self._check_sendfile_params(sock, file, offset, count)
        try:
            return await self._sock_sendfile_native(sock, file, offset, count)
        except exceptions.SendfileNotAvailableError:
            if not fallback:
                raise
        return await self._sock_sendfile_fallback(sock, file, offset, count)

    def _check_sendfile_params(self, sock, file, offset, count) -> None:
        if "b" not in getattr(file, "mode", "b"):
            raise ValueError("file should be opened in binary mode")
        if not sock.type == socket.SOCK_STREAM:
            raise ValueError("only SOCK_STREAM type sockets are supported")
        if count is not None:
            if not isinstance(count, int):
                raise TypeError(f"count must be a positive integer (got {count!r})")
            if count <= 0:
                raise ValueError(f"count must be a positive integer (got {count!r})")
        if not isinstance(offset, int):
            raise TypeError(f"offset must be a non-negative integer (got {offset!r})")
        if offset < 0:
            raise ValueError(f"offset must be a non-negative integer (got {offset!r})")

    async def _sock_sendfile_native(self, sock, file, offset, count):
        """os.sendfile() in a readiness loop; SendfileNotAvailableError when the file or
        socket does not allow it before anything was sent."""
        if not hasattr(os, "sendfile"):
            raise exceptions.SendfileNotAvailableError("os.sendfile() is not available")
        try:
            fileno = file.fileno()
            size = os.fstat(fileno).st_size
        except (AttributeError, io.UnsupportedOperation, OSError):
            raise exceptions.SendfileNotAvailableError("not a regular file") from None
        blocksize = count if count else size
        if not blocksize:
            return 0
        total = 0
        position = offset
        out_fd = sock.fileno()

        def send_some():
            nonlocal total, position
            want = blocksize if not count else min(blocksize, count - total)
            if want <= 0:
                return total
            try:
                sent = os.sendfile(out_fd, fileno, position, want)
            except (BlockingIOError, InterruptedError):
                raise
            except OSError as exc:
                if total == 0:
                    raise exceptions.SendfileNotAvailableError("os.sendfile call failed") from exc
                if exc.errno == errno.ENOTCONN and type(exc) is not ConnectionError:
                    raise ConnectionError("socket is not connected", errno.ENOTCONN) from exc
                raise
            if sent == 0:
                return total  # end of file
            total += sent
            position += sent
            raise BlockingIOError  # more to send once the socket is writable again

        try:
            try:
                return send_some()
            except (BlockingIOError, InterruptedError):
                pass
            return await self._wait_ready(sock, True, send_some)
        finally:
            if total > 0:
                os.lseek(fileno, offset + total, os.SEEK_SET)

    async def _sock_sendfile_fallback(self, sock, file, offset, count):
        if offset:
            file.seek(offset)
        blocksize = min(count, _SENDFILE_FALLBACK_BLOCK) if count else _SENDFILE_FALLBACK_BLOCK
        buffer = bytearray(blocksize)
        total = 0
        try:
            while True:
                if count:
                    blocksize = min(count - total, blocksize)
                    if blocksize <= 0:
                        break
                view = memoryview(buffer)[:blocksize]
                read = await self.run_in_executor(None, file.readinto, view)
                if not read:
                    break
                await self.sock_sendall(sock, view[:read])
                total += read
            return total
        finally:
            if total > 0 and hasattr(file, "seek"):
                file.seek(offset + total)

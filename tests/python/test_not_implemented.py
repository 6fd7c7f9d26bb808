# tests/python/test_not_implemented.py: I/O methods PyLoop may not implement yet. Each test
# accepts either NotImplementedError whose message names the method, or the method working as on
# asyncio's loop; it runs on both loops, so the "working" branch is checked against asyncio.

import asyncio
import inspect
import signal
import socket
import sys

import pytest

NOT_IMPLEMENTED = object()


def set_once(fut, value):
    if not fut.done():
        fut.set_result(value)


async def attempt(name, call):
    """Run call() (awaiting its result if needed); NOT_IMPLEMENTED if the loop lacks `name`."""
    try:
        result = call()
        if inspect.isawaitable(result):
            result = await result
    except NotImplementedError as exc:
        assert name in str(exc), f"NotImplementedError for {name} must name it: {exc!r}"
        return NOT_IMPLEMENTED
    return result


@pytest.fixture
def sock_pair():
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    yield a, b
    a.close()
    b.close()


def test_add_reader_and_remove_reader(loop, sock_pair):
    a, b = sock_pair

    async def main():
        fut = loop.create_future()
        res = await attempt("add_reader", lambda: loop.add_reader(a.fileno(), set_once, fut, "r"))
        if res is NOT_IMPLEMENTED:
            return
        b.send(b"x")
        assert await asyncio.wait_for(fut, 2) == "r"
        assert loop.remove_reader(a.fileno()) is True
        assert loop.remove_reader(a.fileno()) is False

    loop.run_until_complete(main())


def test_add_writer_and_remove_writer(loop, sock_pair):
    a, _ = sock_pair

    async def main():
        fut = loop.create_future()
        res = await attempt("add_writer", lambda: loop.add_writer(a, set_once, fut, "w"))
        if res is NOT_IMPLEMENTED:
            return
        assert await asyncio.wait_for(fut, 2) == "w"
        assert loop.remove_writer(a) is True

    loop.run_until_complete(main())


def test_sock_sendall_and_sock_recv(loop, sock_pair):
    a, b = sock_pair

    async def main():
        res = await attempt(
            "sock_sendall", lambda: asyncio.wait_for(loop.sock_sendall(b, b"hello"), 2)
        )
        if res is NOT_IMPLEMENTED:
            b.send(b"hello")
        data = await attempt("sock_recv", lambda: asyncio.wait_for(loop.sock_recv(a, 5), 2))
        if data is not NOT_IMPLEMENTED:
            assert data == b"hello"

    loop.run_until_complete(main())


def test_getaddrinfo(loop):
    async def main():
        res = await attempt(
            "getaddrinfo", lambda: loop.getaddrinfo("127.0.0.1", 80, type=socket.SOCK_STREAM)
        )
        if res is not NOT_IMPLEMENTED:
            assert ("127.0.0.1", 80) in [info[4] for info in res]

    loop.run_until_complete(main())


class ClosingProtocol(asyncio.Protocol):
    def connection_made(self, transport):
        transport.close()


def test_create_server_and_create_connection(loop):
    async def main():
        server = await attempt(
            "create_server", lambda: loop.create_server(ClosingProtocol, "127.0.0.1", 0)
        )
        listener = None
        if server is NOT_IMPLEMENTED:
            listener = socket.create_server(("127.0.0.1", 0))
            port = listener.getsockname()[1]
        else:
            port = server.sockets[0].getsockname()[1]
        try:
            res = await attempt(
                "create_connection",
                lambda: asyncio.wait_for(
                    loop.create_connection(asyncio.Protocol, "127.0.0.1", port), 2
                ),
            )
            if res is not NOT_IMPLEMENTED:
                transport, _ = res
                transport.close()
        finally:
            if listener is not None:
                listener.close()
            else:
                server.close()
                await server.wait_closed()
        await asyncio.sleep(0.01)  # let the transports finish closing

    loop.run_until_complete(main())


def test_subprocess_exec(loop):
    class ExitProtocol(asyncio.SubprocessProtocol):
        def __init__(self):
            self.exited = loop.create_future()

        def process_exited(self):
            self.exited.set_result(True)

    async def main():
        proto = ExitProtocol()
        res = await attempt(
            "subprocess_exec",
            lambda: loop.subprocess_exec(lambda: proto, sys.executable, "-c", "pass", stdin=None,
                                         stdout=None, stderr=None),
        )
        if res is NOT_IMPLEMENTED:
            return
        transport, _ = res
        try:
            await asyncio.wait_for(proto.exited, 10)
            assert transport.get_returncode() == 0
        finally:
            transport.close()

    loop.run_until_complete(main())


def test_add_signal_handler(loop):
    async def main():
        res = await attempt(
            "add_signal_handler", lambda: loop.add_signal_handler(signal.SIGUSR1, lambda: None)
        )
        if res is NOT_IMPLEMENTED:
            return
        assert loop.remove_signal_handler(signal.SIGUSR1) is True
        assert loop.remove_signal_handler(signal.SIGUSR1) is False

    loop.run_until_complete(main())

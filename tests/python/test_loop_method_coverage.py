# tests/python/test_loop_method_coverage.py: every public method of asyncio.AbstractEventLoop,
# exercised once on asyncio's loop and on PyLoop with the same assertions.
#
# A drop-in loop is one where no method raises NotImplementedError. The table EXERCISES maps each
# public name of asyncio.AbstractEventLoop to a short real use of it; test_every_method_is_covered
# fails when a Python version adds a method the table lacks. The thorough behaviour tests of each
# area live in their own files (test_net_*.py, test_subprocess*.py, ...); this file checks breadth.

import asyncio
import concurrent.futures
import os
import signal
import socket
import sys
import threading
import types

import pytest

from net_helpers import run
from tls_helpers import certs  # noqa: F401 (a fixture)


def _public_methods():
    return sorted(n for n in vars(asyncio.AbstractEventLoop) if not n.startswith("_"))


class Echo(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)


class Collect(asyncio.Protocol):
    def __init__(self, loop, expected):
        self.data = b""
        self.expected = expected
        self.done = loop.create_future()

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.data += data
        if len(self.data) >= self.expected and not self.done.done():
            self.done.set_result(self.data)

    def connection_lost(self, exc):
        if not self.done.done():
            self.done.set_result(self.data)


async def _round_trip(loop, transport, proto, payload):
    transport.write(payload)
    return await proto.done


async def ex_readiness(loop, env):
    a, b = socket.socketpair()
    with a, b:
        a.setblocking(False)
        readable, writable = loop.create_future(), loop.create_future()
        loop.add_reader(a.fileno(), readable.set_result, "r")
        loop.add_writer(a.fileno(), writable.set_result, "w")
        b.send(b"x")
        assert await readable == "r" and await writable == "w"
        assert loop.remove_reader(a.fileno()) and loop.remove_writer(a.fileno())
        assert not loop.remove_reader(a.fileno())


async def ex_signals(loop, env):
    got = loop.create_future()
    loop.add_signal_handler(signal.SIGUSR1, got.set_result, "usr1")
    try:
        os.kill(os.getpid(), signal.SIGUSR1)
        assert await got == "usr1"
    finally:
        assert loop.remove_signal_handler(signal.SIGUSR1)
    assert not loop.remove_signal_handler(signal.SIGUSR1)


async def ex_scheduling(loop, env):
    order = []
    done = loop.create_future()
    loop.call_soon(order.append, "soon")
    loop.call_later(0.001, order.append, "later")
    loop.call_at(loop.time() + 0.002, order.append, "at")
    loop.call_at(loop.time() + 0.003, done.set_result, None)
    threading.Thread(target=loop.call_soon_threadsafe, args=(order.append, "thread")).start()
    await done
    assert order[0] == "soon" and order[-2:] == ["later", "at"] and "thread" in order
    assert loop.time() > 0 and loop.is_running() and not loop.is_closed()


async def ex_exception_handler(loop, env):
    seen = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda lp, ctx: seen.append(ctx["message"]))
    try:
        assert loop.get_exception_handler() is not None
        loop.call_exception_handler({"message": "through the handler"})
    finally:
        loop.set_exception_handler(previous)
    assert seen == ["through the handler"]
    loop.default_exception_handler({"message": "logged by the default handler"})


async def ex_futures_tasks(loop, env):
    fut = loop.create_future()
    loop.call_soon(fut.set_result, 1)

    async def add_one():
        return await fut + 1

    assert await loop.create_task(add_one()) == 2
    made = []
    loop.set_task_factory(lambda lp, coro, **kw: made.append(coro) or asyncio.Task(coro, loop=lp, **kw))
    try:
        assert loop.get_task_factory() is not None
        assert await loop.create_task(add_one()) == 2
    finally:
        loop.set_task_factory(None)
    assert len(made) == 1 and loop.get_task_factory() is None


async def ex_debug(loop, env):
    before = loop.get_debug()
    loop.set_debug(not before)
    assert loop.get_debug() is (not before)
    loop.set_debug(before)


async def ex_executors(loop, env):
    assert await loop.run_in_executor(None, sum, [1, 2, 3]) == 6
    loop.set_default_executor(concurrent.futures.ThreadPoolExecutor(max_workers=1))
    assert await loop.run_in_executor(None, pow, 2, 5) == 32
    await loop.shutdown_default_executor()


async def ex_asyncgens(loop, env):
    closed = []

    async def gen():
        try:
            yield 1
            yield 2
        finally:
            closed.append(True)

    g = gen()
    assert await g.__anext__() == 1
    await loop.shutdown_asyncgens()
    assert closed == [True]


async def ex_resolver(loop, env):
    infos = await loop.getaddrinfo("127.0.0.1", 80, type=socket.SOCK_STREAM)
    assert infos[0][4] == ("127.0.0.1", 80)
    host, port = await loop.getnameinfo(("127.0.0.1", 80), socket.NI_NUMERICHOST | socket.NI_NUMERICSERV)
    assert (host, port) == ("127.0.0.1", "80")


async def ex_tcp(loop, env):
    server = await loop.create_server(Echo, "127.0.0.1", 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        transport, proto = await loop.create_connection(lambda: Collect(loop, 5), "127.0.0.1", port)
        assert await _round_trip(loop, transport, proto, b"hello") == b"hello"
        transport.close()


async def ex_unix(loop, env):
    path = str(env.tmp_path / "s.sock")
    server = await loop.create_unix_server(Echo, path)
    async with server:
        transport, proto = await loop.create_unix_connection(lambda: Collect(loop, 4), path)
        assert await _round_trip(loop, transport, proto, b"unix") == b"unix"
        transport.close()


async def ex_accepted_socket(loop, env):
    a, b = socket.socketpair()
    transport, proto = await loop.connect_accepted_socket(lambda: Collect(loop, 3), a)
    with b:
        b.sendall(b"abc")
        assert await proto.done == b"abc"
        transport.close()


async def ex_datagram(loop, env):
    class Udp(asyncio.DatagramProtocol):
        def __init__(self):
            self.got = loop.create_future()

        def datagram_received(self, data, addr):
            if not self.got.done():
                self.got.set_result((data, addr))

    server, server_proto = await loop.create_datagram_endpoint(Udp, local_addr=("127.0.0.1", 0))
    client, client_proto = await loop.create_datagram_endpoint(
        Udp, remote_addr=server.get_extra_info("sockname"))
    try:
        client.sendto(b"ping")
        data, addr = await server_proto.got
        assert data == b"ping" and addr == client.get_extra_info("sockname")
    finally:
        client.close()
        server.close()


async def ex_pipes(loop, env):
    rfd, wfd = os.pipe()
    read_transport, proto = await loop.connect_read_pipe(lambda: Collect(loop, 4), os.fdopen(rfd, "rb", 0))
    write_transport, _ = await loop.connect_write_pipe(asyncio.Protocol, os.fdopen(wfd, "wb", 0))
    write_transport.write(b"pipe")
    write_transport.close()
    assert await proto.done == b"pipe"
    read_transport.close()


async def ex_subprocesses(loop, env):
    class Child(asyncio.SubprocessProtocol):
        def __init__(self):
            self.out = b""
            self.exited = loop.create_future()

        def pipe_data_received(self, fd, data):
            self.out += data

        def process_exited(self):
            self.exited.set_result(None)

    transport, proto = await loop.subprocess_exec(
        Child, sys.executable, "-c", "print('exec')", stdin=None, stderr=None)
    await proto.exited
    assert transport.get_returncode() == 0
    transport.close()
    transport, proto = await loop.subprocess_shell(Child, "exit 3", stdin=None, stdout=None, stderr=None)
    await proto.exited
    assert transport.get_returncode() == 3
    transport.close()


async def ex_sock_methods(loop, env):
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    srv.setblocking(False)
    cli = socket.socket()
    cli.setblocking(False)
    with srv, cli:
        await loop.sock_connect(cli, srv.getsockname())
        conn, _ = await loop.sock_accept(srv)
        with conn:
            conn.setblocking(False)
            await loop.sock_sendall(cli, b"12345")
            assert await loop.sock_recv(conn, 2) == b"12"
            buf = bytearray(3)
            assert await loop.sock_recv_into(conn, buf) == 3 and buf == b"345"
            path = env.tmp_path / "payload"
            path.write_bytes(b"f" * 1000)
            with open(path, "rb") as f:
                assert await loop.sock_sendfile(cli, f) == 1000
            got = b""
            while len(got) < 1000:
                got += await loop.sock_recv(conn, 1000)
            assert got == b"f" * 1000


async def ex_sock_datagram_methods(loop, env):
    a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with a, b:
        for s in (a, b):
            s.bind(("127.0.0.1", 0))
            s.setblocking(False)
        assert await loop.sock_sendto(a, b"one", b.getsockname()) == 3
        assert await loop.sock_recvfrom(b, 16) == (b"one", a.getsockname())
        await loop.sock_sendto(a, b"two", b.getsockname())
        buf = bytearray(16)
        assert await loop.sock_recvfrom_into(b, buf) == (3, a.getsockname())


async def ex_sendfile(loop, env):
    path = env.tmp_path / "payload"
    path.write_bytes(b"s" * 5000)
    server_protocols = []

    def factory():
        server_protocols.append(Collect(loop, 5000))
        return server_protocols[-1]

    server = await loop.create_server(factory, "127.0.0.1", 0)
    async with server:
        transport, _ = await loop.create_connection(asyncio.Protocol, *server.sockets[0].getsockname())
        with open(path, "rb") as f:
            assert await loop.sendfile(transport, f) == 5000
        while not server_protocols:
            await asyncio.sleep(0)
        assert await server_protocols[0].done == b"s" * 5000
        transport.close()


async def ex_start_tls(loop, env):
    server_ctx, client_ctx = env.certs
    upgrades = []

    class Upgrading(Echo):
        """Says b"go" in plain text, upgrades its side, says b"ready" over TLS, then echoes."""

        def connection_made(self, transport):
            super().connection_made(transport)
            upgrades.append(loop.create_task(self.upgrade()))

        async def upgrade(self):
            self.transport.write(b"go")
            self.transport = await loop.start_tls(self.transport, self, server_ctx, server_side=True)
            self.transport.write(b"ready")

    class Client(asyncio.Protocol):
        def __init__(self):
            self.chunks = asyncio.Queue()

        def data_received(self, data):
            self.chunks.put_nowait(data)

        async def receive(self, size):
            data = b""
            while len(data) < size:
                data += await self.chunks.get()
            return data

    server = await loop.create_server(Upgrading, "127.0.0.1", 0)
    async with server:
        transport, proto = await loop.create_connection(Client, *server.sockets[0].getsockname())
        assert await proto.receive(2) == b"go"
        tls = await loop.start_tls(transport, proto, client_ctx, server_hostname="localhost")
        assert tls.get_extra_info("ssl_object") is not None
        assert await proto.receive(5) == b"ready"
        tls.write(b"secret")
        assert await proto.receive(6) == b"secret"
        tls.close()
        await upgrades[0]


async def ex_lifecycle(loop, env):
    """run_forever, run_until_complete, stop, close and is_closed are exercised on a loop of its
    own (see test_lifecycle_methods); inside a running loop only is_running is observable."""
    assert loop.is_running()


EXERCISES = {
    "add_reader": ex_readiness, "remove_reader": ex_readiness,
    "add_writer": ex_readiness, "remove_writer": ex_readiness,
    "add_signal_handler": ex_signals, "remove_signal_handler": ex_signals,
    "call_soon": ex_scheduling, "call_later": ex_scheduling, "call_at": ex_scheduling,
    "call_soon_threadsafe": ex_scheduling, "time": ex_scheduling,
    "call_exception_handler": ex_exception_handler,
    "default_exception_handler": ex_exception_handler,
    "get_exception_handler": ex_exception_handler,
    "set_exception_handler": ex_exception_handler,
    "create_future": ex_futures_tasks, "create_task": ex_futures_tasks,
    "get_task_factory": ex_futures_tasks, "set_task_factory": ex_futures_tasks,
    "get_debug": ex_debug, "set_debug": ex_debug,
    "run_in_executor": ex_executors, "set_default_executor": ex_executors,
    "shutdown_default_executor": ex_executors,
    "shutdown_asyncgens": ex_asyncgens,
    "getaddrinfo": ex_resolver, "getnameinfo": ex_resolver,
    "create_server": ex_tcp, "create_connection": ex_tcp,
    "create_unix_server": ex_unix, "create_unix_connection": ex_unix,
    "connect_accepted_socket": ex_accepted_socket,
    "create_datagram_endpoint": ex_datagram,
    "connect_read_pipe": ex_pipes, "connect_write_pipe": ex_pipes,
    "subprocess_exec": ex_subprocesses, "subprocess_shell": ex_subprocesses,
    "sock_accept": ex_sock_methods, "sock_connect": ex_sock_methods,
    "sock_recv": ex_sock_methods, "sock_recv_into": ex_sock_methods,
    "sock_sendall": ex_sock_methods, "sock_sendfile": ex_sock_methods,
    "sock_sendto": ex_sock_datagram_methods, "sock_recvfrom": ex_sock_datagram_methods,
    "sock_recvfrom_into": ex_sock_datagram_methods,
    "sendfile": ex_sendfile, "start_tls": ex_start_tls,
    "run_forever": ex_lifecycle, "run_until_complete": ex_lifecycle, "stop": ex_lifecycle,
    "close": ex_lifecycle, "is_closed": ex_lifecycle, "is_running": ex_lifecycle,
}


def test_every_method_is_covered():
    assert sorted(EXERCISES) == _public_methods()


@pytest.mark.parametrize("exercise", sorted(set(EXERCISES.values()), key=lambda f: f.__name__),
                         ids=lambda f: f.__name__[3:])
def test_method_works(loop, tmp_path, certs, exercise):
    env = types.SimpleNamespace(tmp_path=tmp_path, certs=certs)
    run(loop, exercise(loop, env), timeout=10)


def test_lifecycle_methods(new_loop):
    loop = new_loop()
    try:
        assert loop.run_until_complete(asyncio.sleep(0, "done")) == "done"
        loop.call_soon(loop.stop)
        loop.run_forever()
        assert not loop.is_running() and not loop.is_closed()
    finally:
        loop.close()
    assert loop.is_closed()


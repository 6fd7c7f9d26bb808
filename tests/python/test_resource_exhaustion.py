# tests/python/test_resource_exhaustion.py: running out of file descriptors gives asyncio's
# outcome on both loops (the OSError asyncio raises, or asyncio's success), never a crash, and
# leaves the process working and leak-free.
#
# Each scenario runs in a child process (sys.executable, the loop factory passed as its
# "module:function" spec): a C++ exception escaping into CPython would end the interpreter with
# std::terminate, and a child's death shows here as a failed assertion on its exit status
# instead of killing pytest. Inside the child, `exhausted(free)` lowers RLIMIT_NOFILE's soft
# limit to a little above the highest descriptor in use and opens /dev/null until EMFILE, so
# exactly `free` descriptors remain; leaving the block closes them and restores the limit.
# The child prints one line, "RESULT <json>", which the test reads.
#
# The file is past 600 lines because each scenario is a whole child script beside its test;
# one section per scenario: creating a loop, create_server, create_connection, the accept
# loop, sock_accept, signals and run_forever, then the resolver and start_tls.

import json
import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")

EMFILE = "EMFILE"

_PRELUDE = r'''
import asyncio, errno, gc, importlib, json, os, resource, signal, socket, sys, threading, time
import warnings

_module, _attr = sys.argv[1].split(":")
factory = getattr(importlib.import_module(_module), _attr)

# A ResourceWarning or exception raised where nobody can catch it (a __del__) is recorded.
unraisable = []
warnings.simplefilter("error", ResourceWarning)
sys.unraisablehook = lambda u: unraisable.append(f"{u.exc_type.__name__}: {u.exc_value}")


def fd_count():
    """Open descriptors of this process (needs one free descriptor itself)."""
    return len(os.listdir("/proc/self/fd"))


class exhausted:
    """Leaves exactly `free` descriptors free until the block ends."""

    def __init__(self, free=0):
        self.free = free
        self.fds = []  # the /dev/null descriptors filling the table
        self.saved = None  # RLIMIT_NOFILE before the block

    def __enter__(self):
        self.saved = resource.getrlimit(resource.RLIMIT_NOFILE)
        highest = max(int(name) for name in os.listdir("/proc/self/fd"))
        resource.setrlimit(resource.RLIMIT_NOFILE, (highest + 32, self.saved[1]))
        try:
            while True:
                try:
                    self.fds.append(os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC))
                except OSError as exc:
                    if exc.errno != errno.EMFILE:
                        raise
                    break
            for _ in range(self.free):
                os.close(self.fds.pop())
        except BaseException:
            self.release()
            raise
        return self

    def release(self):
        while self.fds:
            os.close(self.fds.pop())
        if self.saved is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, self.saved)
            self.saved = None

    def __exit__(self, *exc_info):
        self.release()


def describe(exc):
    """An exception as the test compares it: type, errno name, and for gaierror the code."""
    code = getattr(exc, "errno", None)
    return {"type": type(exc).__name__,
            "errno": errno.errorcode.get(code, code) if isinstance(code, int) else None}


def _succeeded(value):
    try:
        json.dumps(value)
    except TypeError:
        value = repr(value)  # a transport, a server: its description is enough
    return {"type": "ok", "value": value}


async def outcome_of(awaitable):
    try:
        value = await awaitable
    except Exception as exc:
        return describe(exc)
    return _succeeded(value)


def outcome_of_call(fn, *args):
    try:
        value = fn(*args)
    except Exception as exc:
        return describe(exc)
    return _succeeded(value)


class Echo(asyncio.Protocol):
    """Server side: echoes; records connection_made times on the class."""
    made = []

    def connection_made(self, transport):
        Echo.made.append(time.monotonic())
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)


async def echo_round_trip(port, payload=b"ping"):
    """A stream client's round trip through the server on `port`."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(payload)
    got = await reader.readexactly(len(payload))
    writer.close()
    await writer.wait_closed()
    return got.decode()


async def settle():
    """Let close callbacks run (connection_lost, socket close on both ends): returns once
    the descriptor count has not changed for a few iterations (at most about 1 s)."""
    count, steady = fd_count(), 0
    for _ in range(100):
        await asyncio.sleep(0.01)
        now = fd_count()
        steady = steady + 1 if now == count else 0
        count = now
        if steady >= 3:
            break


async def warm_up(loop):
    """A server, a connection through it and a lookup, all closed again: lazy imports and
    what a loop makes once and keeps (resolver threads) exist before a count starts."""
    server = await loop.create_server(Echo, "127.0.0.1", 0)
    await echo_round_trip(server.sockets[0].getsockname()[1])
    await loop.getaddrinfo("localhost", 80)
    await loop.getnameinfo(("127.0.0.1", 80))
    server.close()
    await server.wait_closed()
    await settle()


def finish(result):
    result["unraisable"] = unraisable
    print("RESULT " + json.dumps(result), flush=True)


def run_main(main, timeout=10):
    """main() on a new loop of the factory, closed after; its result goes to finish()."""
    loop = factory()
    try:
        result = loop.run_until_complete(asyncio.wait_for(main(), timeout))
    finally:
        loop.close()
    finish(result)
'''


def run_scenario(loop_factory, body, timeout=15):
    """Run `body` after the prelude in a child process on loop_factory's loop; returns the
    dict it passed to finish(). The child must exit 0 (a crash is a failure, with its
    stderr)."""
    code = _PRELUDE + textwrap.dedent(body)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    env.pop("PYTHONASYNCIODEBUG", None)
    env.pop("PYTHONDEVMODE", None)
    proc = subprocess.run(
        [sys.executable, "-X", "faulthandler", "-c", code, loop_factory.spec],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, (
        f"child on {loop_factory.name} exited with {proc.returncode}:\n{proc.stderr[-4000:]}"
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert len(lines) == 1, f"no result from the child:\n{proc.stdout}\n{proc.stderr[-4000:]}"
    return json.loads(lines[0][len("RESULT "):])


def emfile():
    return {"type": "OSError", "errno": EMFILE}


# -- 1. creating a loop ---------------------------------------------------------------------------

_LOOP_CREATION = '''
async def answer():
    await asyncio.sleep(0.001)
    return 42

warm = factory()  # imports and process-wide state made once, outside the count
warm.close()
del warm
before = fd_count()
probe = factory()
need = fd_count() - before  # descriptors a loop opens when it is made
probe.close()
del probe

attempts = []
for free in range(need + 1):
    before = fd_count()
    with exhausted(free):
        try:
            lp = factory()
        except OSError as exc:
            outcome = describe(exc)
        else:
            outcome = {"type": "ok", "value": lp.run_until_complete(answer())}
            lp.close()
        lp = None
    leaked_at_once = fd_count() - before
    gc.collect()
    attempts.append({"free": free, "outcome": outcome, "leaked": fd_count() - before,
                     "leaked_until_gc": leaked_at_once})

fresh = factory()
works = fresh.run_until_complete(answer())
fresh.close()
finish({"need": need, "attempts": attempts, "works": works})
'''


def test_creating_a_loop_without_descriptors_raises_emfile_and_leaks_nothing(loop_factory):
    result = run_scenario(loop_factory, _LOOP_CREATION)
    need = result["need"]
    # Both loops open more than one descriptor (a selector and a wakeup channel), so the
    # attempts with 1 .. need-1 free fail half-way and must undo what they opened.
    assert need >= 2, result
    for attempt in result["attempts"]:
        expected = emfile() if attempt["free"] < need else {"type": "ok", "value": 42}
        assert attempt["outcome"] == expected, attempt
        assert attempt["leaked"] == 0, attempt
    assert result["works"] == 42
    # asyncio's half-made loop keeps its selector's epoll descriptor until the garbage
    # collector frees it, and reports itself from its __del__ (ResourceWarning "unclosed event
    # loop", then AttributeError: no '_ssock'): CPython's own blemishes, not copied. PyLoop's
    # closes everything before OSError is raised, and reports nothing.
    if loop_factory.name == "pyloop":
        assert [a["leaked_until_gc"] for a in result["attempts"]] == [0] * (need + 1), result
        assert result["unraisable"] == []


# -- 2. create_server ---------------------------------------------------------------------------

_CREATE_SERVER = '''
async def listening_sockets(creating):
    server = await creating
    server.close()
    await server.wait_closed()
    return len(server.sockets or ())

async def main():
    loop = asyncio.get_running_loop()
    await warm_up(loop)
    before = fd_count()

    with exhausted(0):
        # A numeric host needs no lookup: socket() itself fails, and asyncio's create_server
        # skips an address whose socket() fails ("a bad family/type/protocol combination"),
        # so the call returns a server listening nowhere (3.13: OSError "could not bind").
        numeric = await outcome_of(listening_sockets(loop.create_server(Echo, "127.0.0.1", 0)))
        # A host name is resolved first: the lookup's own failure reaches the caller, as
        # socket.getaddrinfo reports it at this moment (OSError EMFILE from glibc).
        reference = outcome_of_call(lambda: len(socket.getaddrinfo(
            "localhost", 0, 0, socket.SOCK_STREAM, 0, socket.AI_PASSIVE)))
        named = await outcome_of(listening_sockets(loop.create_server(Echo, "localhost", 0)))
    await settle()

    server = await loop.create_server(Echo, "127.0.0.1", 0)
    served = await echo_round_trip(server.sockets[0].getsockname()[1])
    server.close()
    await server.wait_closed()
    await settle()
    return {"numeric": numeric, "named": named, "reference": reference, "served": served,
            "leaked": fd_count() - before}

run_main(main)
'''


def test_create_server_without_descriptors(loop_factory):
    result = run_scenario(loop_factory, _CREATE_SERVER)
    # asyncio skips every address whose socket() failed; 3.13 then raises OSError("could not
    # bind on any address out of [...]") (no errno) where 3.11 and 3.12 return a server
    # listening nowhere. The loop under test runs the interpreter's own create_server.
    if sys.version_info >= (3, 13):
        assert result["numeric"] == {"type": "OSError", "errno": None}, result
    else:
        assert result["numeric"] == {"type": "ok", "value": 0}, result
    # Resolved (unlikely without a descriptor), the name would be skipped like the number.
    reference = result["reference"]
    assert result["named"] == (reference if reference["type"] != "ok" else result["numeric"])
    assert result["served"] == "ping"  # the loop keeps working: a later server serves
    assert result["leaked"] == 0, result
    assert result["unraisable"] == []


# -- 3. create_connection -----------------------------------------------------------------------

_CREATE_CONNECTION = '''
async def main():
    loop = asyncio.get_running_loop()
    await warm_up(loop)
    before = fd_count()
    server = await loop.create_server(Echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]

    with exhausted(0):
        numeric = await outcome_of(loop.create_connection(asyncio.Protocol, "127.0.0.1", port))
        reference = outcome_of_call(lambda: len(socket.getaddrinfo(
            "localhost", port, 0, socket.SOCK_STREAM)))
        named = await outcome_of(loop.create_connection(asyncio.Protocol, "localhost", port))
    await settle()

    served = await echo_round_trip(port)
    server.close()
    await server.wait_closed()
    await settle()
    return {"numeric": numeric, "named": named, "reference": reference, "served": served,
            "leaked": fd_count() - before}

run_main(main)
'''


def test_create_connection_without_descriptors(loop_factory):
    result = run_scenario(loop_factory, _CREATE_CONNECTION)
    assert result["numeric"] == emfile(), result
    # Through a host name the lookup fails first, as the resolver reports it.
    reference = result["reference"]
    assert result["named"] == (reference if reference["type"] != "ok" else emfile()), result
    assert result["served"] == "ping"
    assert result["leaked"] == 0, result
    assert result["unraisable"] == []


# -- 4. the accept loop -------------------------------------------------------------------------

_ACCEPT_LOOP = '''
from asyncio import constants

BACKLOG = 4

async def wait_for_condition(predicate, limit):
    deadline = time.monotonic() + limit
    while not predicate() and time.monotonic() < deadline:
        await asyncio.sleep(0.005)
    return predicate()

async def main():
    loop = asyncio.get_running_loop()
    contexts = []
    loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))
    await warm_up(loop)
    before = fd_count()
    server = await loop.create_server(Echo, "127.0.0.1", 0, backlog=BACKLOG)
    listening = server.sockets[0]
    address = listening.getsockname()
    Echo.made.clear()
    client = socket.socket()
    client.setblocking(False)

    table = exhausted(0).__enter__()
    try:
        client.connect_ex(address)  # the kernel completes it; accept() has no descriptor
        if not await wait_for_condition(lambda: contexts, 2.0):
            return {"error": "no exception handler call within 2 s"}
        first_error = time.monotonic()
        calls_in_burst = len(contexts)
        # Stays full for a while: the listening socket is still readable, and a loop that
        # kept polling it would spin (CPU) and call the handler again.
        cpu = time.process_time()
        await asyncio.sleep(0.3)
        cpu_while_full = time.process_time() - cpu
        calls_while_full = len(contexts)
        made_while_full = len(Echo.made)
    finally:
        table.release()

    accepted = await wait_for_condition(lambda: Echo.made, constants.ACCEPT_RETRY_DELAY + 2)
    retry_after = Echo.made[0] - first_error if accepted else None
    ctx = contexts[0]
    described = {
        "keys": sorted(ctx),
        "message": ctx.get("message"),
        "exception": describe(ctx["exception"]) if "exception" in ctx else None,
        "socket_is_listener": "socket" in ctx and ctx["socket"].fileno() == listening.fileno(),
    }
    served = await echo_round_trip(address[1])  # still serving new clients
    client.close()
    server.close()
    await server.wait_closed()
    await settle()
    return {"context": described, "calls_in_burst": calls_in_burst,
            "calls_while_full": calls_while_full, "cpu_while_full": cpu_while_full,
            "made_while_full": made_while_full, "retry_after": retry_after,
            "retry_delay": constants.ACCEPT_RETRY_DELAY, "calls_total": len(contexts),
            "served": served, "backlog": BACKLOG, "leaked": fd_count() - before}

run_main(main)
'''


@pytest.mark.timeout(30)
def test_accept_loop_backs_off_on_emfile_and_accepts_later(loop_factory):
    result = run_scenario(loop_factory, _ACCEPT_LOOP)
    assert "error" not in result, result
    assert result["context"] == {
        "keys": ["exception", "message", "socket"],
        "message": "socket.accept() out of system resource",
        "exception": emfile(),
        "socket_is_listener": True,
    }, result
    # One burst, from one readiness event: asyncio's _accept_connection reports each of its
    # up to `backlog` attempts before the fix of CPython gh-151615, one after it.
    assert 1 <= result["calls_in_burst"] <= result["backlog"] + 1, result
    # No spinning while the table stays full: the reader is removed until the retry.
    assert result["calls_while_full"] == result["calls_in_burst"], result
    assert result["cpu_while_full"] < 0.15, result
    assert result["made_while_full"] == 0, result
    # The pending connection is accepted by the retry, ACCEPT_RETRY_DELAY after the error.
    delay = result["retry_delay"]
    assert result["retry_after"] is not None, result
    assert delay - 0.05 <= result["retry_after"] <= delay + 1.0, result
    assert result["calls_total"] == result["calls_in_burst"], result
    assert result["served"] == "ping"
    assert result["leaked"] == 0, result
    assert result["unraisable"] == []


# -- 5. sock_accept -----------------------------------------------------------------------------

_SOCK_ACCEPT = '''
async def main():
    loop = asyncio.get_running_loop()
    await warm_up(loop)
    before = fd_count()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.setblocking(False)
    address = listener.getsockname()
    first = socket.socket()
    second = socket.socket()

    # Waiting: started with no connection pending, the call waits for readiness (Linux's
    # accept() allocates the descriptor before it looks at the queue, so with the table
    # already full it would fail at once). The connection that arrives once the table is
    # full cannot be accepted, and the waiting call gets the error.
    waiting = loop.create_task(loop.sock_accept(listener))
    await asyncio.sleep(0.05)
    waited = not waiting.done()
    with exhausted(0):
        first.connect(address)  # blocking: the kernel completes it without accept()
        waited_outcome = await outcome_of(asyncio.wait_for(waiting, 2))
        # Immediate: the connection is pending when the call is made.
        immediate = await outcome_of(asyncio.wait_for(loop.sock_accept(listener), 2))
        # A failed call leaves no reader on the listening socket.
        stray_reader = loop.remove_reader(listener)

    # The connection waited in the backlog; the listening socket still works.
    conn, _ = await asyncio.wait_for(loop.sock_accept(listener), 2)
    first.sendall(b"one")
    got_first = (await asyncio.wait_for(loop.sock_recv(conn, 16), 2)).decode()
    conn.close()
    second.connect(address)
    conn, _ = await asyncio.wait_for(loop.sock_accept(listener), 2)
    second.sendall(b"two")
    got_second = (await asyncio.wait_for(loop.sock_recv(conn, 16), 2)).decode()
    conn.close()
    first.close()
    second.close()
    listener.close()
    await settle()
    return {"waited": waited, "waited_outcome": waited_outcome, "immediate": immediate,
            "stray_reader": stray_reader, "got": [got_first, got_second],
            "leaked": fd_count() - before}

run_main(main)
'''


def test_sock_accept_without_descriptors_raises_emfile(loop_factory):
    result = run_scenario(loop_factory, _SOCK_ACCEPT)
    assert result["waited"] is True, result  # it did wait for the connection
    assert result["waited_outcome"] == emfile(), result
    assert result["immediate"] == emfile(), result
    assert result["stray_reader"] is False, result
    assert result["got"] == ["one", "two"], result
    assert result["leaked"] == 0, result
    assert result["unraisable"] == []


# -- 6. signals and run_forever in the main thread ------------------------------------------

_SIGNALS = '''
async def until(predicate, limit=2.0):
    deadline = time.monotonic() + limit
    while not predicate() and time.monotonic() < deadline:
        await asyncio.sleep(0.005)

# add_signal_handler on a loop made while descriptors were available, called when none is.
loop = factory()
got = []
with exhausted(0):
    added = outcome_of_call(loop.add_signal_handler, signal.SIGUSR1, got.append, "usr1")
    if added["type"] == "ok":
        loop.call_later(0.02, os.kill, os.getpid(), signal.SIGUSR1)
        loop.run_until_complete(asyncio.wait_for(until(lambda: got), 5))
        removed = loop.remove_signal_handler(signal.SIGUSR1)
    else:
        removed = None
    loop.close()  # closing needs no descriptor either
wakeup_after_close = signal.set_wakeup_fd(-1)

# run_forever on a fresh loop, never run before, with no descriptor free: it runs, and a
# signal that arrives during the blocking wait (Ctrl-C) still ends it at once.
loop = factory()
with exhausted(0):
    ran = outcome_of_call(loop.run_until_complete, asyncio.sleep(0.01, "ran"))
    main_thread = threading.main_thread().ident
    interrupter = threading.Timer(0.1, signal.pthread_kill, (main_thread, signal.SIGINT))
    started = time.monotonic()
    interrupter.start()
    try:
        loop.run_until_complete(asyncio.sleep(3))
        interrupted = "not interrupted"
    except KeyboardInterrupt:
        interrupted = "KeyboardInterrupt"
    interrupted_after = time.monotonic() - started
    interrupter.join()
    wakeup_after_run = signal.set_wakeup_fd(-1)
    loop.close()

finish({"added": added, "handled": got, "removed": removed,
        "wakeup_after_close": wakeup_after_close, "ran": ran, "interrupted": interrupted,
        "interrupted_after": interrupted_after, "wakeup_after_run": wakeup_after_run})
'''


def test_signal_handlers_and_run_forever_without_descriptors(loop_factory):
    # asyncio made its self-pipe when the loop was made, so neither call needs a descriptor.
    # PyLoop made its interrupt pipe lazily and raised RuntimeError("[Errno 24] Too many open
    # files") from add_signal_handler here; its main-thread loops now open it when made.
    result = run_scenario(loop_factory, _SIGNALS)
    assert result["added"] == {"type": "ok", "value": None}, result
    assert result["handled"] == ["usr1"], result
    assert result["removed"] is True, result
    assert result["wakeup_after_close"] == -1, result  # no wakeup fd left at a closed pipe
    assert result["ran"] == {"type": "ok", "value": "ran"}, result
    assert result["interrupted"] == "KeyboardInterrupt", result
    assert result["interrupted_after"] < 1.5, result
    assert result["wakeup_after_run"] == -1, result  # run_forever restored it
    assert result["unraisable"] == []


# -- 7. other calls that might need a descriptor -----------------------------------------------

_RESOLVER = '''
async def main():
    loop = asyncio.get_running_loop()
    await warm_up(loop)
    before = fd_count()
    with exhausted(0):
        # The loop's answer is what the socket module answers at the same moment.
        reference = {
            "named": outcome_of_call(lambda: len(socket.getaddrinfo(
                "localhost", 80, 0, socket.SOCK_STREAM))),
            "numeric": outcome_of_call(lambda: len(socket.getaddrinfo(
                "127.0.0.1", 80, 0, socket.SOCK_STREAM))),
            "reverse": outcome_of_call(socket.getnameinfo, ("127.0.0.1", 80), 0),
        }
        got = {
            "named": await outcome_of(count_of(loop.getaddrinfo(
                "localhost", 80, type=socket.SOCK_STREAM))),
            "numeric": await outcome_of(count_of(loop.getaddrinfo(
                "127.0.0.1", 80, type=socket.SOCK_STREAM))),
            "reverse": await outcome_of(loop.getnameinfo(("127.0.0.1", 80))),
        }
    after = await outcome_of(count_of(loop.getaddrinfo("localhost", 80)))
    await settle()
    return {"reference": reference, "got": got, "after": after,
            "leaked": fd_count() - before}

async def count_of(awaitable):
    return len(await awaitable)

# JSON turns the tuples of getnameinfo into lists on both sides alike.
run_main(main)
'''


def test_resolver_without_descriptors_reports_what_the_socket_module_reports(loop_factory):
    result = run_scenario(loop_factory, _RESOLVER)
    assert result["got"] == result["reference"], result
    assert result["got"]["numeric"]["type"] == "ok", result  # nothing to open for a number
    assert result["after"]["type"] == "ok", result
    assert result["leaked"] == 0, result
    assert result["unraisable"] == []


_START_TLS = '''
import ssl
import test

certificate = os.path.join(os.path.dirname(test.__file__), "certdata", "keycert.pem")
server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
server_context.load_cert_chain(certificate)
client_context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
client_context.check_hostname = False
client_context.verify_mode = ssl.CERT_NONE


class Client(asyncio.Protocol):
    def __init__(self, loop):
        self.received = b""
        self.got = loop.create_future()

    def data_received(self, data):
        self.received += data
        if not self.got.done():
            self.got.set_result(None)


async def tls_round_trip(loop, port, payload):
    """A plain connection upgraded with start_tls, then an echo through the TLS server."""
    transport, protocol = await loop.create_connection(lambda: Client(loop), "127.0.0.1", port)
    tls = await loop.start_tls(transport, protocol, client_context, server_hostname="x")
    tls.write(payload)
    await protocol.got
    tls.close()
    return protocol.received.decode()


async def main():
    loop = asyncio.get_running_loop()
    await warm_up(loop)
    warm = await loop.create_server(Echo, "127.0.0.1", 0, ssl=server_context)
    await tls_round_trip(loop, warm.sockets[0].getsockname()[1], b"warm")
    warm.close()
    await warm.wait_closed()
    await settle()
    before = fd_count()
    server = await loop.create_server(Echo, "127.0.0.1", 0, ssl=server_context)
    port = server.sockets[0].getsockname()[1]
    transport, protocol = await loop.create_connection(lambda: Client(loop), "127.0.0.1", port)
    with exhausted(0):
        # The upgrade and the handshake happen in memory: no descriptor is needed.
        async def upgrade():
            tls = await loop.start_tls(transport, protocol, client_context, server_hostname="x")
            tls.write(b"tls")
            await protocol.got
            tls.close()
            return protocol.received.decode()
        upgraded = await outcome_of(asyncio.wait_for(upgrade(), 3))
        # A new TLS connection needs a socket.
        fresh = await outcome_of(loop.create_connection(
            asyncio.Protocol, "127.0.0.1", port, ssl=client_context, server_hostname="x"))
    after = await tls_round_trip(loop, port, b"after")
    server.close()
    await server.wait_closed()
    await settle()
    return {"upgraded": upgraded, "fresh": fresh, "after": after,
            "leaked": fd_count() - before}

run_main(main)
'''


def _test_certificate():
    try:
        import test
    except ImportError:
        return None
    path = os.path.join(os.path.dirname(test.__file__), "certdata", "keycert.pem")
    return path if os.path.exists(path) else None


@pytest.mark.skipif(_test_certificate() is None, reason="needs CPython's test/certdata")
def test_start_tls_without_descriptors(loop_factory):
    result = run_scenario(loop_factory, _START_TLS)
    assert result["upgraded"] == {"type": "ok", "value": "tls"}, result
    assert result["fresh"] == emfile(), result
    assert result["after"] == "after"
    assert result["leaked"] == 0, result
    assert result["unraisable"] == []

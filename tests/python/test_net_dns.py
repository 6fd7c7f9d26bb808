# tests/python/test_net_dns.py: loop.getaddrinfo / loop.getnameinfo agree with the socket
# module's functions (asyncio's loop calls them in its executor): same results, same order, same
# enum types, same exceptions (socket.gaierror with the same errno and message, and the same
# TypeError/OSError/OverflowError for malformed arguments). Only names from /etc/hosts and
# numeric addresses are used: no test depends on a DNS server.

import asyncio
import concurrent.futures
import gc
import itertools
import socket
import weakref

import pytest

from net_helpers import HAS_IPV6, run


def outcome_sync(fn, *args, **kwargs):
    try:
        return ("ok", fn(*args, **kwargs))
    except Exception as exc:  # compared field by field below
        return ("error", type(exc), exc.args)


async def outcome_async(fn, *args, **kwargs):
    try:
        return ("ok", await fn(*args, **kwargs))
    except Exception as exc:
        return ("error", type(exc), exc.args)


def _loopback_scope():
    """A scope id (interface name) of the loopback interface, for fe80::1%<scope>."""
    try:
        for index, name in socket.if_nameindex():
            if name.startswith("lo"):
                return name, index
    except OSError:
        pass
    return "1", 1


SCOPE_NAME, SCOPE_INDEX = _loopback_scope()

def _hosts_file_families(name):
    """Address families /etc/hosts lists `name` under. A name looked up in another family falls
    through to DNS (slow or absent in a sandbox), so the grid leaves those combinations out."""
    families = set()
    try:
        with open("/etc/hosts", encoding="utf-8", errors="replace") as f:
            for line in f:
                fields = line.split("#", 1)[0].split()
                if len(fields) >= 2 and name in fields[1:]:
                    families.add(socket.AF_INET6 if ":" in fields[0] else socket.AF_INET)
    except OSError:
        pass
    return families


LOCALHOST_FAMILIES = _hosts_file_families("localhost")

HOSTS = [None, "localhost", "127.0.0.1", "::1", b"127.0.0.1", f"fe80::1%{SCOPE_NAME}"]
PORTS = [None, 0, 80, "80", "http", b"443"]
FAMILIES = [0, socket.AF_INET, socket.AF_INET6]
TYPES = [0, socket.SOCK_STREAM, socket.SOCK_DGRAM]
PROTOS = [0, socket.IPPROTO_TCP, socket.IPPROTO_UDP]
FLAGS = [
    0,
    socket.AI_PASSIVE,
    socket.AI_NUMERICHOST,
    socket.AI_CANONNAME,
    socket.AI_NUMERICSERV,
    socket.AI_PASSIVE | socket.AI_NUMERICHOST,
    socket.AI_ADDRCONFIG,
    socket.AI_V4MAPPED | socket.AI_ALL,
]


def _resolvable_without_dns(host, family):
    if host != "localhost":
        return True  # numeric or None: never looked up
    if family == 0:
        return bool(LOCALHOST_FAMILIES)
    return family in LOCALHOST_FAMILIES


def _compare_grid(loop, host):
    combos = [
        c
        for c in itertools.product(PORTS, FAMILIES, TYPES, PROTOS, FLAGS)
        if _resolvable_without_dns(host, c[1])
    ]
    expected = [
        outcome_sync(socket.getaddrinfo, host, port, family, type_, proto, flags)
        for port, family, type_, proto, flags in combos
    ]

    async def main():
        return await asyncio.gather(
            *(
                outcome_async(
                    loop.getaddrinfo, host, port, family=family, type=type_, proto=proto,
                    flags=flags,
                )
                for port, family, type_, proto, flags in combos
            )
        )

    got = run(loop, main(), timeout=10)
    mismatches = [
        (combo, exp, actual) for combo, exp, actual in zip(combos, expected, got) if exp != actual
    ]
    assert not mismatches, "\n".join(
        f"getaddrinfo({host!r}, port={c[0]!r}, family={c[1]!r}, type={c[2]!r}, proto={c[3]!r}, "
        f"flags={c[4]!r}): socket module {e!r}, loop {a!r}"
        for c, e, a in mismatches[:10]
    )
    return expected


@pytest.mark.parametrize("host", HOSTS, ids=repr)
def test_getaddrinfo_grid_agrees_with_socket_module(loop, host):
    if host == "::1" and not HAS_IPV6:
        pytest.skip("no IPv6 loopback")
    expected = _compare_grid(loop, host)
    assert any(e[0] == "ok" for e in expected), "the grid exercised no successful lookup"


EDGE_CASES = [
    # (host, port, kwargs)
    ("ｌｏｃａｌｈｏｓｔ", 80, {}),  # fullwidth: IDNA-encoded by the socket module
    ("", 80, {}),
    ("127.0.0.1", 70000, {}),  # port wraps modulo 2**16 in glibc
    ("127.0.0.1", -1, {}),
    ("127.0.0.1", 1.5, {}),  # OSError('Int or String expected')
    (123, 80, {}),  # TypeError
    ("127.0.0.1", "nosuchservice", {}),
    ("127.0.0.1", "http", dict(flags=socket.AI_NUMERICSERV)),
    ("not a host", 80, dict(flags=socket.AI_NUMERICHOST)),
    ("999.0.0.1", 80, dict(flags=socket.AI_NUMERICHOST)),
    (None, None, {}),
    ("127.0.0.1", 80, dict(family=12345)),
    ("127.0.0.1", 80, dict(type=12345)),
    ("127.0.0.1", 80, dict(flags=0x7FFF0000)),
    ("localhost", 80, dict(flags=socket.AI_CANONNAME)),
    ("127.0.0.1", 80, dict(family=socket.AF_UNIX)),
    ("fe80::1%" + str(SCOPE_INDEX), 80, dict(flags=socket.AI_NUMERICHOST)),
    ("::ffff:127.0.0.1", 80, {}),
    ("127.1", 80, {}),
]


@pytest.mark.parametrize("host,port,kwargs", EDGE_CASES, ids=repr)
def test_getaddrinfo_edge_cases_agree_with_socket_module(loop, host, port, kwargs):
    expected = outcome_sync(socket.getaddrinfo, host, port, **kwargs)
    got = run(loop, outcome_async(loop.getaddrinfo, host, port, **kwargs))
    assert got == expected


def test_getaddrinfo_error_is_gaierror_with_errno(loop):
    async def main():
        with pytest.raises(socket.gaierror) as info:
            await loop.getaddrinfo("not a host", 80, flags=socket.AI_NUMERICHOST)
        return info.value

    exc = run(loop, main())
    assert exc.errno == socket.EAI_NONAME
    assert exc.strerror


def test_getaddrinfo_result_types(loop):
    infos = run(loop, loop.getaddrinfo("127.0.0.1", 80, type=socket.SOCK_STREAM))
    assert isinstance(infos, list)
    assert infos
    for info in infos:
        assert isinstance(info, tuple) and len(info) == 5
        family, type_, proto, canonname, sockaddr = info
        assert type(family) is socket.AddressFamily
        assert type(type_) is socket.SocketKind
        assert type(proto) is int
        assert type(canonname) is str
        assert sockaddr == ("127.0.0.1", 80)
        assert type(sockaddr) is tuple


def test_getaddrinfo_ipv6_scope_id(loop):
    host = f"fe80::1%{SCOPE_NAME}"
    infos = run(loop, loop.getaddrinfo(host, 80, flags=socket.AI_NUMERICHOST))
    assert infos == socket.getaddrinfo(host, 80, flags=socket.AI_NUMERICHOST)
    assert infos[0][4] == ("fe80::1", 80, 0, SCOPE_INDEX)


def test_getaddrinfo_flags_are_keyword_only(loop):
    async def main():
        with pytest.raises(TypeError):
            await loop.getaddrinfo("127.0.0.1", 80, socket.AF_INET)

    run(loop, main())


def test_getaddrinfo_many_concurrent(loop):
    async def main():
        return await asyncio.gather(
            *(loop.getaddrinfo("localhost", port, type=socket.SOCK_STREAM) for port in range(1, 65))
        )

    results = run(loop, main())
    for port, infos in zip(range(1, 65), results):
        assert infos == socket.getaddrinfo("localhost", port, type=socket.SOCK_STREAM)


def test_getaddrinfo_in_debug_mode(loop):
    loop.set_debug(True)
    got = run(loop, loop.getaddrinfo("localhost", "http", flags=socket.AI_CANONNAME))
    assert got == socket.getaddrinfo("localhost", "http", flags=socket.AI_CANONNAME)


def test_getaddrinfo_cancellation(loop):
    async def main():
        task = asyncio.ensure_future(loop.getaddrinfo("localhost", 80))
        await asyncio.sleep(0)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        # The loop is still usable for lookups.
        return await loop.getaddrinfo("127.0.0.1", 80, type=socket.SOCK_STREAM)

    assert run(loop, main()) == socket.getaddrinfo("127.0.0.1", 80, type=socket.SOCK_STREAM)


NAMEINFO_CASES = [
    (("127.0.0.1", 80), 0),
    (("127.0.0.1", 80), socket.NI_NUMERICHOST | socket.NI_NUMERICSERV),
    (("127.0.0.1", 53), socket.NI_DGRAM),
    (("127.0.0.1", 0), socket.NI_NUMERICSERV),
    (("127.0.0.1", 80), socket.NI_NAMEREQD),
    (("::1", 80, 0, 0), socket.NI_NUMERICHOST),
    (("::1", 443), socket.NI_NUMERICHOST),
    (("fe80::1", 80, 0, SCOPE_INDEX), socket.NI_NUMERICHOST | socket.NI_NUMERICSERV),
    (("localhost", 80), 0),  # not numeric: gaierror
    (("127.0.0.1",), 0),  # TypeError: illegal sockaddr
    ("127.0.0.1", 0),  # TypeError: must be a tuple
    (("127.0.0.1", "80"), 0),  # TypeError
    (("::1", 80, 1 << 21, 0), 0),  # OverflowError: flowinfo
    (("127.0.0.1", 80), "x"),  # TypeError: flags
]


@pytest.mark.parametrize("sockaddr,flags", NAMEINFO_CASES, ids=repr)
def test_getnameinfo_agrees_with_socket_module(loop, sockaddr, flags):
    expected = outcome_sync(socket.getnameinfo, sockaddr, flags)
    got = run(loop, outcome_async(loop.getnameinfo, sockaddr, flags))
    assert got == expected


def test_getnameinfo_default_flags(loop):
    assert run(loop, loop.getnameinfo(("127.0.0.1", 80))) == socket.getnameinfo(
        ("127.0.0.1", 80), 0
    )


def test_getnameinfo_returns_str_tuple(loop):
    host, port = run(loop, loop.getnameinfo(("127.0.0.1", 8080), socket.NI_NUMERICSERV))
    assert (type(host), type(port)) == (str, str)
    assert port == "8080"


# -- getnameinfo grid -------------------------------------------------------------------------
# PyLoop runs getnameinfo() on its native runtime and reads the sockaddr tuple itself, so every
# argument rule of socket.getnameinfo is compared here, success and failure alike.


def _hosts_file_addresses():
    """Addresses /etc/hosts names: reverse lookups of others would ask DNS (slow or absent in a
    sandbox), so the grid asks for their names only together with NI_NUMERICHOST."""
    addresses = set()
    try:
        with open("/etc/hosts", encoding="utf-8", errors="replace") as f:
            for line in f:
                fields = line.split("#", 1)[0].split()
                if len(fields) >= 2:
                    addresses.add(fields[0])
    except OSError:
        pass
    return addresses


HOSTS_FILE_ADDRESSES = _hosts_file_addresses()

NAMEINFO_PORTS = [0, 80, 443, 65535]
NAMEINFO_FLAGS = [
    0,
    socket.NI_NUMERICHOST,
    socket.NI_NUMERICSERV,
    socket.NI_NAMEREQD,
    socket.NI_DGRAM,
    socket.NI_NUMERICHOST | socket.NI_NUMERICSERV,
    socket.NI_NUMERICHOST | socket.NI_NAMEREQD,  # refused by the C library, no lookup
    socket.NI_NUMERICHOST | socket.NI_DGRAM,
    socket.NI_NUMERICSERV | socket.NI_DGRAM,
    socket.NI_NAMEREQD | socket.NI_NUMERICSERV,
    socket.NI_NOFQDN,
]
# (address, how to build the tuple from a port)
NAMEINFO_ADDRESSES = [
    ("127.0.0.1", lambda port: ("127.0.0.1", port)),
    ("::1", lambda port: ("::1", port)),
    ("::1", lambda port: ("::1", port, 0, 0)),
    ("::1", lambda port: ("::1", port, 0, SCOPE_INDEX)),
    ("::1", lambda port: ("::1", port, 0xFFFFF, 0)),  # the largest flow label
    ("fe80::1", lambda port: ("fe80::1", port, 0, SCOPE_INDEX)),
    ("::ffff:127.0.0.1", lambda port: ("::ffff:127.0.0.1", port, 0, 0)),
]


def _needs_dns(address, flags):
    """A reverse lookup that /etc/hosts cannot answer."""
    return not flags & socket.NI_NUMERICHOST and address not in HOSTS_FILE_ADDRESSES


async def _gather_outcomes(loop, calls):
    return await asyncio.gather(*(outcome_async(loop.getnameinfo, *args) for args in calls))


def _assert_same_outcomes(loop, calls):
    expected = [outcome_sync(socket.getnameinfo, *args) for args in calls]
    got = run(loop, _gather_outcomes(loop, calls), timeout=10)
    mismatches = [(c, e, g) for c, e, g in zip(calls, expected, got) if e != g]
    assert not mismatches, "\n".join(
        f"getnameinfo{c!r}: socket module {e!r}, loop {g!r}" for c, e, g in mismatches[:10]
    )
    return expected


@pytest.mark.parametrize(
    "address,make", NAMEINFO_ADDRESSES, ids=[repr(a[1](80)) for a in NAMEINFO_ADDRESSES]
)
def test_getnameinfo_grid_agrees_with_socket_module(loop, address, make):
    if ":" in address and not HAS_IPV6:
        pytest.skip("no IPv6 loopback")
    calls = [
        (make(port), flags)
        for port, flags in itertools.product(NAMEINFO_PORTS, NAMEINFO_FLAGS)
        if not _needs_dns(address, flags)
    ]
    expected = _assert_same_outcomes(loop, calls)
    assert any(e[0] == "ok" for e in expected), "the grid exercised no successful lookup"


BAD_NAMEINFO_CALLS = [
    ("127.0.0.1", 0),  # TypeError: must be a tuple
    (["127.0.0.1", 80], 0),  # a list is not a tuple either
    (None, 0),
    ((), 0),  # TypeError: illegal sockaddr argument
    (("127.0.0.1",), 0),
    (("::1", 80, 0, 0, 0), 0),  # five items
    ((b"127.0.0.1", 80), 0),  # bytes host
    ((None, 80), 0),
    (("127.0.0.1", "80"), 0),  # port must be an int
    (("127.0.0.1", 80.0), 0),
    (("127.0.0.1", None), 0),
    (("127.0.0.1", 2**31), 0),  # OverflowError: past a C int
    (("127.0.0.1", -(2**31) - 1), 0),
    (("127.0.0.1", -1), 0),  # gaierror from the C library's port parsing
    (("127.0.0.1", 65536), 0),  # wraps to 0 in glibc
    (("127.0.0.1", 70000), socket.NI_NUMERICSERV),
    (("::1", 80, 1 << 20, 0), 0),  # OverflowError: flowinfo past 20 bits
    (("::1", 80, -1, 0), 0),  # wraps modulo 2**32, so also out of range
    (("::1", 80, 2**32, 0), socket.NI_NUMERICHOST),  # wraps to 0: accepted
    (("::1", 80, 0, -1), socket.NI_NUMERICHOST),  # scope id wraps too
    (("::1", 80, "0", 0), 0),
    (("127.0.0.1", 80, 0), 0),  # OSError: IPv4 sockaddr must be 2 tuple
    (("127.0.0.1", 80, 0, 0), 0),
    (("localhost", 80), 0),  # gaierror: the host must be numeric
    (("localhost", 80), socket.NI_NUMERICHOST),
    (("not an ip", 80), 0),
    (("", 80), 0),
    (("127.1", 80), socket.NI_NUMERICHOST),  # inet_aton forms count as numeric
    (("999.0.0.1", 80), 0),
    (("fe80::1%" + SCOPE_NAME, 80), socket.NI_NUMERICHOST),  # the tuple's scope (none) wins
    (("fe80::1%" + SCOPE_NAME, 80, 0, 0), socket.NI_NUMERICHOST),
    (("127.0.0.1\0", 80), 0),  # ValueError: embedded null character
    (("\udcff", 80), 0),  # UnicodeEncodeError
    (("127.0.0.1", 80), "0"),  # flags must be an int
    (("127.0.0.1", 80), None),
    (("127.0.0.1", 80), 2**40),  # OverflowError
    (("127.0.0.1", 80), -1),  # all flags set: whatever the C library says
]


@pytest.mark.parametrize("sockaddr,flags", BAD_NAMEINFO_CALLS, ids=repr)
def test_getnameinfo_bad_arguments_agree_with_socket_module(loop, sockaddr, flags):
    _assert_same_outcomes(loop, [(sockaddr, flags)])


def test_getnameinfo_error_is_gaierror_with_errno(loop):
    async def main():
        with pytest.raises(socket.gaierror) as info:
            await loop.getnameinfo(("not an ip", 80), 0)
        return info.value

    exc = run(loop, main())
    assert exc.errno == socket.EAI_NONAME
    assert exc.strerror


class RecordingExecutor(concurrent.futures.ThreadPoolExecutor):
    """A default executor that notes what is submitted to it."""

    def __init__(self):
        super().__init__(max_workers=1)
        self.submitted = []  # the callables, in order

    def submit(self, fn, /, *args, **kwargs):
        self.submitted.append(fn)
        return super().submit(fn, *args, **kwargs)


def test_getnameinfo_does_not_use_the_default_executor(loop, loop_factory):
    executor = RecordingExecutor()
    loop.set_default_executor(executor)
    flags = socket.NI_NUMERICHOST | socket.NI_NUMERICSERV
    try:
        got = run(loop, loop.getnameinfo(("127.0.0.1", 80), flags))
    finally:
        executor.shutdown(wait=True)
    assert got == ("127.0.0.1", "80")
    if loop_factory.name == "pyloop":
        assert executor.submitted == []
    else:  # asyncio's loop runs socket.getnameinfo there: proof the recorder sees submissions
        assert executor.submitted == [socket.getnameinfo]


def test_lookups_after_default_executor_shutdown(loop):
    async def main():
        await loop.shutdown_default_executor()
        with pytest.raises(RuntimeError, match="Executor shutdown has been called"):
            await loop.getnameinfo(("127.0.0.1", 80), 0)
        with pytest.raises(RuntimeError, match="Executor shutdown has been called"):
            await loop.getaddrinfo("127.0.0.1", 80)

    run(loop, main())


def test_getnameinfo_in_debug_mode(loop):
    loop.set_debug(True)
    sockaddr = ("127.0.0.1", 80)
    assert run(loop, loop.getnameinfo(sockaddr, 0)) == socket.getnameinfo(sockaddr, 0)


def test_getnameinfo_many_concurrent(loop):
    calls = [
        (("127.0.0.1", port), socket.NI_NUMERICSERV if port % 2 else 0)
        for port in range(1000, 1200)
    ]
    expected = _assert_same_outcomes(loop, calls)
    assert all(e[0] == "ok" for e in expected)


def test_getnameinfo_cancellation_leaks_nothing(loop):
    flags = socket.NI_NUMERICHOST | socket.NI_NUMERICSERV

    async def main():
        tasks = [
            asyncio.ensure_future(loop.getnameinfo(("127.0.0.1", port), flags))
            for port in range(50)
        ]
        await asyncio.sleep(0)  # each task now awaits its lookup's future
        inner = [weakref.ref(t._fut_waiter) for t in tasks if t._fut_waiter is not None]
        assert inner, "no lookup was in flight"
        for t in tasks:
            t.cancel()
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        assert all(isinstance(o, asyncio.CancelledError) for o in outcomes)
        del tasks, outcomes
        # The answers still arrive, find their futures cancelled and are dropped: nothing keeps
        # a future alive once its lookup has finished.
        for _ in range(200):
            gc.collect()
            if all(ref() is None for ref in inner):
                break
            await asyncio.sleep(0.01)
        assert [ref() for ref in inner if ref() is not None] == []
        # The loop still answers.
        return await loop.getnameinfo(("127.0.0.1", 80), flags)

    assert run(loop, main(), timeout=10) == ("127.0.0.1", "80")
    loop.close()
    assert loop.is_closed()

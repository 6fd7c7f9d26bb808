"""tests/checks/test_native_resolver.py — getaddrinfo and getnameinfo run on the native
runtime, safely.

Parity with the socket module is tested on both loops in tests/python/test_net_dns.py; these
checks are PyLoop's own: no Python executor is involved, and a loop closed while a lookup is
in flight neither crashes nor leaks.
"""

import asyncio
import gc
import socket
import threading
import time

import data_bridge.pyloop as pyloop


def test_getaddrinfo_uses_no_python_executor():
    loop = pyloop.new_event_loop()
    try:
        threads_before = {t.name for t in threading.enumerate()}
        infos = loop.run_until_complete(loop.getaddrinfo("127.0.0.1", 80, type=socket.SOCK_STREAM))
        assert infos == socket.getaddrinfo("127.0.0.1", 80, type=socket.SOCK_STREAM)
        assert loop._default_executor is None
        assert {t.name for t in threading.enumerate()} == threads_before
    finally:
        loop.close()


def test_many_concurrent_lookups_all_complete():
    loop = pyloop.new_event_loop()

    async def main():
        return await asyncio.gather(
            *(loop.getaddrinfo("127.0.0.1", port) for port in range(1000, 1200))
        )

    try:
        results = loop.run_until_complete(main())
    finally:
        loop.close()
    assert [r[0][4][1] for r in results] == list(range(1000, 1200))


def test_loop_closed_while_lookups_are_in_flight():
    loop = pyloop.new_event_loop()
    tasks = [loop.create_task(loop.getaddrinfo("localhost", port)) for port in range(50)]
    loop.call_soon(loop.stop)
    loop.run_forever()  # the lookups are now running on the native runtime
    loop.close()
    time.sleep(0.3)  # let them finish and find the loop gone
    gc.collect()
    assert all(not t.done() for t in tasks)
    for t in tasks:
        t._log_destroy_pending = False


def test_getnameinfo_uses_no_python_executor():
    loop = pyloop.new_event_loop()
    try:
        threads_before = {t.name for t in threading.enumerate()}
        names = loop.run_until_complete(loop.getnameinfo(("127.0.0.1", 80), socket.NI_NUMERICSERV))
        assert names == socket.getnameinfo(("127.0.0.1", 80), socket.NI_NUMERICSERV)
        assert loop._default_executor is None
        assert {t.name for t in threading.enumerate()} == threads_before
    finally:
        loop.close()


def test_loop_closed_while_name_lookups_are_in_flight():
    loop = pyloop.new_event_loop()
    tasks = [
        loop.create_task(loop.getnameinfo(("127.0.0.1", port), 0)) for port in range(50)
    ]
    loop.call_soon(loop.stop)
    loop.run_forever()  # the lookups are now running on the native runtime
    loop.close()
    time.sleep(0.3)  # let them finish and find the loop gone
    gc.collect()
    assert all(not t.done() for t in tasks)
    for t in tasks:
        t._log_destroy_pending = False

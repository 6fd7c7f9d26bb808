# tests/python/test_harness_services.py: the test servers' life cycle (tests/python/services.py):
# a server is not a child of the test process, and it stops, its directory removed, when the
# test process lets go of its guard, whether by the orderly stop or by vanishing.

import os
import time

import pytest

import services


def gone(pid, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def test_a_server_is_not_our_child_and_stops_with_its_link():
    server = services.start_redis()
    services.SERVICES.running.pop(server.name, None)  # this test stops it itself
    try:
        assert services.port_accepts(server.port)
        with pytest.raises(ChildProcessError):
            os.waitpid(server.pid, os.WNOHANG)
        # As if the test process had died: its end of the link closes without a word.
        server.link.close()
        assert gone(server.pid)
        deadline = time.monotonic() + 5
        while os.path.exists(server.workdir) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not os.path.exists(server.workdir)
    finally:
        server.stop()


def test_the_orderly_stop_waits_for_the_server():
    server = services.start_redis()
    services.SERVICES.running.pop(server.name, None)
    server.stop()
    assert gone(server.pid, timeout=0.5)
    assert not os.path.exists(server.workdir)
    assert not services.port_accepts(server.port)

# tests/python/test_subprocess_transport.py: loop.subprocess_exec/subprocess_shell and the
# SubprocessTransport on both loops: the protocol's callbacks and their order, get_pid,
# get_returncode, get_pipe_transport, is_closing, get_extra_info('subprocess') (a Popen),
# close() killing a running child, the ResourceWarning of a transport never closed, and a
# replaced subprocess.Popen being the one called.

import asyncio
import gc
import signal
import subprocess
import warnings
from unittest import mock

import pytest

PIPE, DEVNULL = subprocess.PIPE, subprocess.DEVNULL


def run(loop, coro):
    return loop.run_until_complete(coro)


class Recorder(asyncio.SubprocessProtocol):
    """Every protocol callback, in order; `done` resolves at connection_lost."""

    def __init__(self, loop):
        self.events = []
        self.data = {1: b"", 2: b""}
        self.done = loop.create_future()
        self.exited = loop.create_future()

    def connection_made(self, transport):
        self.events.append("connection_made")

    def pipe_data_received(self, fd, data):
        if not self.events or self.events[-1] != f"data:{fd}":
            self.events.append(f"data:{fd}")
        self.data[fd] += data

    def pipe_connection_lost(self, fd, exc):
        self.events.append(f"pipe_lost:{fd}:{exc!r}")

    def process_exited(self):
        self.events.append("process_exited")
        self.exited.set_result(None)

    def connection_lost(self, exc):
        self.events.append(f"connection_lost:{exc!r}")
        self.done.set_result(None)


def test_callbacks_and_accessors(loop):
    async def main():
        transport, proto = await loop.subprocess_exec(
            lambda: Recorder(loop), "sh", "-c", "cat; echo err >&2; exit 3",
            stdin=PIPE, stdout=PIPE, stderr=PIPE)
        pid = transport.get_pid()
        popen = transport.get_extra_info("subprocess")
        facts = {
            "pid": isinstance(pid, int) and pid > 0,
            "popen": isinstance(popen, subprocess.Popen) and popen.pid == pid,
            "returncode_before": transport.get_returncode(),
            "pipes": [transport.get_pipe_transport(fd) is not None for fd in (0, 1, 2, 3)],
            "closing_before": transport.is_closing(),
        }
        stdin = transport.get_pipe_transport(0)
        stdin.write(b"hello")
        stdin.close()
        await proto.done
        facts["returncode"] = transport.get_returncode()
        facts["popen_returncode"] = popen.returncode
        facts["poll"] = popen.poll()
        facts["data"] = proto.data
        transport.close()
        facts["closing_after"] = transport.is_closing()
        return facts, proto.events

    facts, events = run(loop, main())
    assert facts == {
        "pid": True, "popen": True, "returncode_before": None,
        "pipes": [True, True, True, False], "closing_before": False,
        "returncode": 3, "popen_returncode": 3, "poll": 3,
        "data": {1: b"hello", 2: b"err\n"}, "closing_after": True,
    }
    # asyncio's order: connection_made first, connection_lost last, after process_exited and
    # every pipe's loss; the pipes and the exit may come in any order among themselves.
    assert events[0] == "connection_made"
    assert events[-1] == "connection_lost:None"
    assert sorted(e for e in events if e.startswith(("pipe_lost", "process_exited"))) == [
        "pipe_lost:0:None", "pipe_lost:1:None", "pipe_lost:2:None", "process_exited"]
    assert events.index("data:1") < events.index("pipe_lost:1:None")


def test_shell_without_pipes(loop):
    async def main():
        transport, proto = await loop.subprocess_shell(
            lambda: Recorder(loop), "exit 4", stdin=None, stdout=DEVNULL, stderr=None)
        pipes = [transport.get_pipe_transport(fd) for fd in (0, 1, 2)]
        await proto.done
        transport.close()
        return pipes, transport.get_returncode(), proto.events

    assert run(loop, main()) == (
        [None, None, None], 4, ["connection_made", "process_exited", "connection_lost:None"])


def test_close_kills_a_running_child(loop):
    async def main():
        transport, proto = await loop.subprocess_exec(
            lambda: Recorder(loop), "sleep", "30", stdin=None, stdout=None, stderr=None)
        transport.close()
        assert transport.is_closing()
        await proto.done
        return transport.get_returncode()

    assert run(loop, main()) == -signal.SIGKILL


def test_close_after_exit_does_not_signal(loop):
    async def main():
        transport, proto = await loop.subprocess_exec(
            lambda: Recorder(loop), "true", stdin=None, stdout=None, stderr=None)
        await proto.done
        transport.close()
        transport.close()  # idempotent
        return transport.get_returncode()

    assert run(loop, main()) == 0


def test_transport_signals_and_process_lookup_error(loop):
    async def main():
        transport, proto = await loop.subprocess_exec(
            lambda: Recorder(loop), "sleep", "30", stdin=None, stdout=None, stderr=None)
        transport.send_signal(signal.SIGTERM)
        await proto.done
        code = transport.get_returncode()
        with pytest.raises(ProcessLookupError):
            transport.kill()
        with pytest.raises(ProcessLookupError):
            transport.terminate()
        transport.close()
        return code

    assert run(loop, main()) == -signal.SIGTERM


def test_unclosed_transport_warns(loop):
    async def main():
        transport, proto = await loop.subprocess_exec(
            lambda: Recorder(loop), "true", stdin=None, stdout=None, stderr=None)
        await proto.done
        await asyncio.sleep(0.05)  # asyncio's waiter thread lets go of its reference
        return repr(transport)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        text = run(loop, main())
        gc.collect()
    messages = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert any(m.startswith("unclosed transport") for m in messages), messages
    assert "returncode=0" in text


def test_replaced_popen_is_called(loop):
    # A program (or a test suite) that patches subprocess.Popen sees its patch used.
    async def main():
        with mock.patch("subprocess.Popen") as popen:
            popen.side_effect = ZeroDivisionError
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                with pytest.raises(ZeroDivisionError):
                    await asyncio.create_subprocess_exec("true", stdin=PIPE)
            return popen.call_count, [str(w.message) for w in caught]

    assert run(loop, main()) == (1, [])


@pytest.mark.pyloop
def test_fast_path_popen_has_popens_state(pyloop_module):
    # The Popen made for a child started by posix_spawn holds what Popen's constructor sets.
    loop = pyloop_module.new_event_loop()
    try:
        async def main():
            transport, proto = await loop.subprocess_exec(
                lambda: Recorder(loop), "true", stdin=PIPE, stdout=PIPE, stderr=None)
            popen = transport.get_extra_info("subprocess")
            await proto.done
            transport.close()
            return popen

        popen = loop.run_until_complete(main())
    finally:
        loop.close()
    real = subprocess.Popen(["true"], stdin=PIPE, stdout=PIPE, bufsize=0, universal_newlines=False)
    real.wait()
    real.stdin.close()
    real.stdout.close()
    assert set(vars(popen)) == set(vars(real))
    assert type(popen.stdin) is type(real.stdin) and type(popen.stdout) is type(real.stdout)
    assert (popen.text_mode, real.text_mode) == (False, False)
    assert popen.args == ("true",) and popen.returncode == 0 and popen.wait() == 0


@pytest.mark.pyloop
@pytest.mark.parametrize("error", ["ENOSYS", "EMFILE", "EPERM", "EACCES"])
def test_without_an_exit_descriptor_a_thread_waits(pyloop_module, monkeypatch, error):
    # No pidfd (Linux before 5.3; EPERM or EACCES where a seccomp policy forbids pidfd_open,
    # as in older container runtimes) or no descriptor left: one thread waits for the child.
    import errno
    from data_bridge.pyloop import _subprocess

    def refuse(loop, pid, callback):
        raise OSError(getattr(errno, error), "refused")

    monkeypatch.setattr(_subprocess, "watch_child", refuse)
    loop = pyloop_module.new_event_loop()
    try:
        async def main():
            proc = await asyncio.create_subprocess_exec("sh", "-c", "exit 6")
            return await proc.wait()

        assert loop.run_until_complete(main()) == 6
    finally:
        loop.close()


@pytest.mark.pyloop
def test_a_watch_failing_otherwise_kills_and_reaps_the_child(pyloop_module, monkeypatch):
    # An error that is not the kernel's (MemoryError here) leaves no way to watch the child:
    # the start raises it, and the child is killed and reaped, not left as a zombie.
    import os
    import time
    from data_bridge.pyloop import _subprocess

    started = []

    def fail(loop, pid, callback):
        started.append(pid)
        raise MemoryError

    monkeypatch.setattr(_subprocess, "watch_child", fail)
    loop = pyloop_module.new_event_loop()
    try:
        with pytest.raises(MemoryError):
            loop.run_until_complete(asyncio.create_subprocess_exec("sleep", "30"))
    finally:
        loop.close()
    [pid] = started
    deadline = time.monotonic() + 5
    while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not os.path.exists(f"/proc/{pid}"), "the child is still there (running or a zombie)"


@pytest.mark.pyloop
def test_status_taken_by_popen_itself_is_reported(pyloop_module):
    # Popen.wait() reaps the child before the loop's watch does: the watch finds ECHILD and
    # the transport reports the Popen's status (asyncio's watchers would report 255).
    loop = pyloop_module.new_event_loop()
    try:
        async def main():
            transport, proto = await loop.subprocess_exec(
                lambda: Recorder(loop), "sh", "-c", "exit 9", stdin=None, stdout=None, stderr=None)
            popen = transport.get_extra_info("subprocess")
            assert popen.wait() == 9  # blocks this thread until the child ends
            await proto.done
            transport.close()
            return transport.get_returncode()

        assert loop.run_until_complete(main()) == 9
    finally:
        loop.close()


def test_nothing_stays_alive_after_the_children(loop):
    from asyncio import base_subprocess

    async def main():
        for _ in range(20):
            proc = await asyncio.create_subprocess_exec(
                "sh", "-c", "echo x", stdin=PIPE, stdout=PIPE, stderr=PIPE)
            await proc.communicate(b"")
            proc._transport.close()
        await asyncio.sleep(0.05)  # asyncio's waiter threads end

    run(loop, main())
    gc.collect()
    alive = [o for o in gc.get_objects()
             if isinstance(o, (base_subprocess.BaseSubprocessTransport, subprocess.Popen))]
    assert alive == []


def _process_state(pid):
    """The state letter of /proc/<pid>/stat ('Z': a zombie), or None once the process is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return None
    return text[text.rfind(")") + 2:].split()[0]


def test_a_child_of_a_closed_loop_is_still_reaped(loop_factory):
    """A loop closed while its child runs leaves no zombie behind: asyncio's child watcher
    thread goes on waiting for the child after the loop closed, and reaps it."""
    import sys
    import time

    if loop_factory.name == "asyncio" and sys.version_info >= (3, 12):
        pytest.skip("asyncio's default child watcher changed in 3.12")
    loop = loop_factory()

    async def main():
        proc = await asyncio.create_subprocess_exec("sleep", "0.2")
        return proc.pid

    try:
        pid = run(loop, main())
    finally:
        loop.close()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the unclosed transport, collected with the loop closed
        gc.collect()
    deadline = time.monotonic() + 10
    while _process_state(pid) is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _process_state(pid) is None

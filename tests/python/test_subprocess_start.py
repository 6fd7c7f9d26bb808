# tests/python/test_subprocess_start.py: starting a child on both loops: the errors Popen
# raises (FileNotFoundError, PermissionError, NotADirectoryError, a bad cwd, embedded null
# bytes) and asyncio's argument validation, executable=, path-like and bytes arguments, the
# child's signal mask, and a start cancelled while the child execs.

import asyncio
import gc
import os
import signal
import stat
import time

import pytest

from subprocess_helpers import PIPE, open_descriptors, output_of, run

# -- start errors -------------------------------------------------------------------------------


def start_error(loop, *args, **kwargs):
    async def main():
        with pytest.raises(OSError) as info:
            await asyncio.create_subprocess_exec(*args, **kwargs)
        return info.value

    return run(loop, main())


def test_missing_executable(loop):
    exc = start_error(loop, "/nonexistent/program")
    assert (type(exc), exc.errno, exc.filename) == (FileNotFoundError, 2, "/nonexistent/program")
    exc = start_error(loop, "no-such-program-anywhere")
    assert (type(exc), exc.filename) == (FileNotFoundError, "no-such-program-anywhere")


def test_not_executable_and_not_a_directory(loop, tmp_path):
    plain = tmp_path / "plain"
    plain.write_text("echo hi\n")
    plain.chmod(stat.S_IRUSR | stat.S_IWUSR)
    exc = start_error(loop, str(plain))
    assert (type(exc), exc.filename) == (PermissionError, str(plain))
    exc = start_error(loop, "/etc/passwd/x")
    assert (type(exc), exc.filename) == (NotADirectoryError, "/etc/passwd/x")
    # Over PATH: a directory holding a non-executable file of the name reports EACCES even
    # though a later directory lacks it (Popen's rule: the first error that is not "missing").
    exc = start_error(loop, "plain", env={"PATH": f"/nonexistent:{tmp_path}:/usr/bin"})
    assert (type(exc), exc.filename) == (PermissionError, "plain")


def test_bad_cwd(loop, tmp_path):
    missing = tmp_path / "missing"
    exc = start_error(loop, "true", cwd=missing)
    assert (type(exc), exc.filename) == (FileNotFoundError, missing)
    exc = start_error(loop, "true", cwd=str(missing))
    assert (type(exc), exc.filename) == (FileNotFoundError, str(missing))


def test_start_error_leaks_no_descriptor(loop):
    before = open_descriptors()
    for _ in range(5):
        start_error(loop, "/nonexistent/program", stdin=PIPE, stdout=PIPE, stderr=PIPE)
    assert open_descriptors() == before


# -- argument validation ------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs", [
    {"universal_newlines": True}, {"text": True}, {"encoding": "utf-8"}, {"errors": "strict"},
    {"bufsize": 1},
])
def test_text_mode_arguments_are_refused(loop, kwargs):
    async def main():
        with pytest.raises(ValueError):
            await asyncio.create_subprocess_exec("true", **kwargs)
        with pytest.raises(ValueError):
            await asyncio.create_subprocess_shell("true", **kwargs)

    run(loop, main())


def test_invalid_args(loop):
    async def main():
        with pytest.raises(ValueError):
            await loop.subprocess_exec(asyncio.SubprocessProtocol, "true", shell=True)
        with pytest.raises(ValueError):
            await loop.subprocess_shell(asyncio.SubprocessProtocol, "true", shell=False)
        with pytest.raises(ValueError, match="cmd must be a string"):
            await loop.subprocess_shell(asyncio.SubprocessProtocol, ["true"])
        with pytest.raises(TypeError):
            await asyncio.create_subprocess_exec("echo", 1)
        with pytest.raises(TypeError):
            await asyncio.create_subprocess_exec("true", no_such_argument=1)

    run(loop, main())


@pytest.mark.parametrize("args, kwargs", [
    (("tr\0ue",), {}), (("echo", "a\0b"), {}), (("true",), {"env": {"A": "b\0"}}),
    (("true",), {"cwd": "/tmp\0x"}),
])
def test_embedded_null_byte(loop, args, kwargs):
    async def main():
        with pytest.raises(ValueError, match="embedded null byte"):
            await asyncio.create_subprocess_exec(*args, **kwargs)

    run(loop, main())


def test_executable_argument(loop):
    async def main():
        exec_out = await output_of("argv0-name", "-c", "echo $0", executable="/bin/sh")
        shell_out = await output_of_shell("echo $0", executable="/bin/sh")
        return exec_out, shell_out

    async def output_of_shell(cmd, **kwargs):
        proc = await asyncio.create_subprocess_shell(cmd, stdout=PIPE, **kwargs)
        out, _ = await proc.communicate()
        return out

    assert run(loop, main()) == ((b"argv0-name\n", 0), b"/bin/sh\n")


def test_path_like_and_bytes_arguments(loop, tmp_path):
    async def main():
        return await output_of(b"echo", tmp_path, b"bytes")

    assert run(loop, main()) == (f"{tmp_path} bytes\n".encode(), 0)


# -- the start itself ----------------------------------------------------------------------------


def sig_blocked(status_text):
    for line in status_text.splitlines():
        if line.startswith(b"SigBlk:"):
            return int(line.split()[1], 16)
    raise AssertionError("no SigBlk line")


def test_child_signal_mask_is_the_callers(loop):
    # Popen's child inherits the calling thread's mask: empty normally, SIGUSR1 while blocked.
    async def main():
        out, _ = await output_of("cat", "/proc/self/status")
        old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
        try:
            blocked, _ = await output_of("cat", "/proc/self/status")
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)
        return sig_blocked(out), sig_blocked(blocked)

    assert run(loop, main()) == (0, 1 << (signal.SIGUSR1 - 1))


def children_left():
    try:
        pid, _ = os.waitpid(-1, os.WNOHANG)
    except ChildProcessError:
        return False
    return True


@pytest.mark.parametrize("delay", [0, 1, 3])
def test_cancelled_while_starting_leaves_no_child_and_no_descriptor(loop, delay):
    gc.collect()  # pipes of earlier tests that only the collector closes
    before = open_descriptors()

    async def main():
        task = asyncio.ensure_future(
            asyncio.create_subprocess_exec("sleep", "30", stdin=PIPE, stdout=PIPE, stderr=PIPE))
        for _ in range(delay):
            await asyncio.sleep(0)
        task.cancel()
        try:
            proc = await task
        except asyncio.CancelledError:
            pass
        else:  # it had started already: end it as a program would
            proc.kill()
            await proc.wait()
            proc._transport.close()

    run(loop, main())
    gc.collect()
    assert not children_left()
    assert open_descriptors() == before


@pytest.mark.parametrize("delay", [1, 2])
def test_cancellation_while_starting_keeps_its_message(loop, delay):
    # PyLoop holds the cancellation back until the start is over: the message goes through.
    async def main():
        task = asyncio.ensure_future(asyncio.create_subprocess_exec("sleep", "30", stdout=PIPE))
        for _ in range(delay):
            await asyncio.sleep(0)
        task.cancel("stop")
        try:
            proc = await task
        except asyncio.CancelledError as exc:
            return exc.args
        proc.kill()
        await proc.wait()
        proc._transport.close()
        return ("stop",)  # started before the cancellation: nothing to compare

    assert run(loop, main()) == ("stop",)
    gc.collect()
    assert not children_left()


def test_path_of_the_environment_is_read_at_each_start(loop, tmp_path, monkeypatch):
    tool = tmp_path / "pyloop-only-here"
    tool.write_text("#!/bin/sh\necho found\n")
    tool.chmod(0o755)

    async def main():
        monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
        found = await output_of("pyloop-only-here")
        monkeypatch.setenv("PATH", "/usr/bin:/bin")
        with pytest.raises(FileNotFoundError):
            await asyncio.create_subprocess_exec("pyloop-only-here")
        monkeypatch.delenv("PATH")  # os.defpath then
        default, _ = await output_of("sh", "-c", "echo default")
        return found, default

    assert run(loop, main()) == ((b"found\n", 0), b"default\n")


def test_start_abandoned_after_it_succeeded_closes_the_pipes_and_reaps_the_child(pyloop_module):
    # PyLoop only: its start completes on the native runtime, so the start can have succeeded
    # while the awaiting task never resumes (its loop closed first and the task is destroyed).
    # The coroutine is then closed at that await: the child's pipe ends must not stay open,
    # nor the child unreaped, until the process exits.
    gc.collect()
    before = open_descriptors()
    loop = pyloop_module.new_event_loop()
    try:
        start = loop._spawn_fast(["sleep", "30"], False, PIPE, PIPE, PIPE, 0, {})
        started = start.send(None)  # the start's future, as the task would await it
        loop.run_until_complete(started)
        pid = started.result()[0]
        start.close()  # GeneratorExit at the await, as when the pending task is destroyed
    finally:
        loop.close()
    assert open_descriptors() == before
    deadline = time.monotonic() + 5
    while _alive(pid):  # a zombie still answers kill(pid, 0): gone means reaped
        assert time.monotonic() < deadline, f"child {pid} was not reaped"
        time.sleep(0.01)


def _alive(pid):
    try:  # not waitpid: the test must see the loop's reaping, not do it
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True

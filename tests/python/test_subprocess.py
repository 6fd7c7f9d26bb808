# tests/python/test_subprocess.py: asyncio.create_subprocess_exec/shell on both loops: exit
# codes and signals, communicate() with large data, the standard streams (PIPE, STDOUT,
# DEVNULL, inherited, files), pass_fds and close_fds, cwd, env, start_new_session, preexec_fn,
# restore_signals, cancellation of wait() and communicate(), and 500 children leaving no
# zombie and no descriptor. Start errors, argument validation and the start itself are in
# test_subprocess_start.py; the transport level in test_subprocess_transport.py.

import asyncio
import gc
import os
import signal
import sys

import pytest

from subprocess_helpers import DEVNULL, PIPE, STDOUT, open_descriptors, output_of, run

# -- exit codes and signals -------------------------------------------------------------------


@pytest.mark.parametrize("code", [0, 1, 7, 255])
def test_exit_code_exec_and_shell(loop, code):
    async def main():
        proc = await asyncio.create_subprocess_exec("sh", "-c", f"exit {code}")
        shell = await asyncio.create_subprocess_shell(f"exit {code}")
        return await proc.wait(), await shell.wait(), proc.returncode

    assert run(loop, main()) == (code, code, code)


@pytest.mark.parametrize("method, signum", [
    ("terminate", signal.SIGTERM), ("kill", signal.SIGKILL), ("send_signal", signal.SIGUSR1),
])
def test_signals_give_minus_the_signal(loop, method, signum):
    async def main():
        proc = await asyncio.create_subprocess_exec(
            "sh", "-c", "echo ready; exec sleep 30", stdout=PIPE)
        assert await proc.stdout.readline() == b"ready\n"
        if method == "send_signal":
            proc.send_signal(signum)
        else:
            getattr(proc, method)()
        return await proc.wait()

    assert run(loop, main()) == -signum


def test_signal_after_exit_raises_process_lookup_error(loop):
    async def main():
        proc = await asyncio.create_subprocess_exec("true")
        assert await proc.wait() == 0
        # wait() returns as soon as the exit is known; the transport lets go of the process
        # (after which signals raise) when its connection_lost has run, a turn or two later.
        await asyncio.sleep(0.05)
        for call in (proc.kill, proc.terminate, lambda: proc.send_signal(signal.SIGTERM)):
            with pytest.raises(ProcessLookupError):
                call()

    run(loop, main())


def test_wait_is_repeatable_and_shared(loop):
    async def main():
        proc = await asyncio.create_subprocess_exec("sh", "-c", "sleep 0.1; exit 5")
        results = await asyncio.gather(proc.wait(), proc.wait(), proc.wait())
        return results, await proc.wait()

    assert run(loop, main()) == ([5, 5, 5], 5)


# -- streams ------------------------------------------------------------------------------------


def test_communicate_large_input_and_output(loop):
    data = os.urandom(4 * 1024 * 1024)

    async def main():
        proc = await asyncio.create_subprocess_exec("cat", stdin=PIPE, stdout=PIPE)
        return await proc.communicate(data), proc.returncode

    (out, err), code = run(loop, main())
    assert (out == data, err, code) == (True, None, 0)


def test_communicate_both_pipes_large(loop):
    script = "import sys; d = sys.stdin.buffer.read(); sys.stdout.buffer.write(d); sys.stderr.buffer.write(d[::-1])"
    data = b"0123456789abcdef" * 65536

    async def main():
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", script, stdin=PIPE, stdout=PIPE, stderr=PIPE)
        return await proc.communicate(data)

    out, err = run(loop, main())
    assert out == data and err == data[::-1]


def test_stderr_to_stdout(loop):
    async def main():
        return await output_of("sh", "-c", "echo one; echo two >&2; echo three", stderr=STDOUT)

    assert run(loop, main()) == (b"one\ntwo\nthree\n", 0)


def test_devnull(loop):
    async def main():
        proc = await asyncio.create_subprocess_exec(
            "sh", "-c", "cat; echo out; echo err >&2", stdin=DEVNULL, stdout=DEVNULL, stderr=DEVNULL)
        assert (proc.stdin, proc.stdout, proc.stderr) == (None, None, None)
        first = await proc.wait()
        out, code = await output_of("sh", "-c", "wc -c", stdin=DEVNULL)
        return first, out.strip(), code

    assert run(loop, main()) == (0, b"0", 0)


def test_file_objects_and_descriptors_as_streams(loop, tmp_path):
    target = tmp_path / "out.txt"

    async def main():
        with open(target, "wb") as f:
            proc = await asyncio.create_subprocess_exec(
                "sh", "-c", "echo to-file; echo err >&2", stdout=f, stderr=f.fileno())
            return await proc.wait()

    assert run(loop, main()) == 0
    assert target.read_bytes() == b"to-file\nerr\n"


def test_read_stdout_after_exit_and_stdin_broken_pipe(loop):
    async def main():
        proc = await asyncio.create_subprocess_exec(
            "sh", "-c", "exec 0<&-; echo gone", stdin=PIPE, stdout=PIPE)
        await proc.wait()
        out = await proc.stdout.read()
        proc.stdin.write(b"x" * 1024 * 1024)
        with pytest.raises((BrokenPipeError, ConnectionResetError)):
            await proc.stdin.drain()
        return out

    assert run(loop, main()) == b"gone\n"


# -- descriptors ------------------------------------------------------------------------------


def test_pass_fds_child_sees_the_descriptor(loop):
    r, w = os.pipe()  # not inheritable: pass_fds makes it so in the child

    async def main():
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", f"import os; os.write({w}, b'through-fd\\n')", pass_fds=(w,))
        return await proc.wait()

    try:
        assert run(loop, main()) == 0
        os.close(w)
        w = -1
        assert os.read(r, 100) == b"through-fd\n"
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)


@pytest.mark.parametrize("close_fds, visible", [(True, False), (False, True)])
def test_close_fds(loop, close_fds, visible):
    r, w = os.pipe()
    os.set_inheritable(w, True)

    async def main():
        proc = await asyncio.create_subprocess_exec(
            "sh", "-c", f"test -e /proc/self/fd/{w}", close_fds=close_fds)
        return await proc.wait()

    try:
        assert run(loop, main()) == (0 if visible else 1)
    finally:
        os.close(r)
        os.close(w)


def test_pass_fds_overrides_close_fds_with_popens_warning(loop):
    r, w = os.pipe()
    os.set_inheritable(r, True)

    async def main():
        with pytest.warns(RuntimeWarning, match="pass_fds overriding close_fds"):
            proc = await asyncio.create_subprocess_exec(
                "sh", "-c", f"test -e /proc/self/fd/{w} && ! test -e /proc/self/fd/{r}",
                pass_fds=(w,), close_fds=False)
        return await proc.wait()

    try:
        assert run(loop, main()) == 0
    finally:
        os.close(r)
        os.close(w)


def test_stdin_pipe_is_not_inherited(loop):
    # The parent's end of the stdin pipe must not reach the child (else cat never sees EOF).
    async def main():
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", "import os, sys; print(sorted(int(n) for n in os.listdir('/proc/self/fd')))",
            stdin=PIPE, stdout=PIPE, close_fds=False)
        out, _ = await proc.communicate()
        return out

    inheritable = set()
    for fd in open_descriptors():
        try:
            if os.get_inheritable(fd):
                inheritable.add(fd)
        except OSError:
            pass
    fds = set(eval(run(loop, main())))
    assert {0, 1, 2} <= fds
    assert len(fds - {0, 1, 2} - inheritable) <= 1  # the listing's own descriptor


# -- cwd, env, sessions, preexec_fn -------------------------------------------------------------


def test_cwd(loop, tmp_path):
    async def main():
        return await output_of("pwd", cwd=tmp_path)

    assert run(loop, main()) == (f"{tmp_path}\n".encode(), 0)


def test_relative_executable_is_taken_in_cwd(loop, tmp_path):
    script = tmp_path / "hello.sh"
    script.write_text("#!/bin/sh\necho relative\n")
    script.chmod(0o755)

    async def main():
        return await output_of("./hello.sh", cwd=str(tmp_path))

    assert run(loop, main()) == (b"relative\n", 0)


def test_env_replaces_the_environment_and_its_path_is_searched(loop, tmp_path):
    tool = tmp_path / "only-here"
    tool.write_text("#!/bin/sh\necho \"found $FOO\"\n")
    tool.chmod(0o755)

    async def main():
        env = {"FOO": "bar", "PATH": f"/nonexistent:{tmp_path}:/usr/bin:/bin"}
        found = await output_of("only-here", env=env)
        listed = await output_of("env", env={"ONLY": "1", b"BYTES": b"2"})
        return found, listed

    found, listed = run(loop, main())
    assert found == (b"found bar\n", 0)
    assert sorted(listed[0].split()) == [b"BYTES=2", b"ONLY=1"]


def test_env_with_bad_name_raises_popens_error(loop):
    async def main():
        with pytest.raises(ValueError, match="illegal environment variable name"):
            await asyncio.create_subprocess_exec("true", env={"A=B": "1"})

    run(loop, main())


def test_start_new_session(loop):
    async def main():
        out, _ = await output_of(
            sys.executable, "-c", "import os; print(os.getsid(0) == os.getpid(), os.getsid(0) == os.getsid(os.getppid()))",
            start_new_session=True)
        same, _ = await output_of(
            sys.executable, "-c", "import os; print(os.getsid(0) == os.getsid(os.getppid()))")
        return out, same

    assert run(loop, main()) == (b"True False\n", b"True\n")


def test_preexec_fn(loop, tmp_path):
    marker = tmp_path / "preexec"

    async def main():
        proc = await asyncio.create_subprocess_exec(
            "true", preexec_fn=lambda: marker.write_text(str(os.getpid())))
        await proc.wait()
        return proc.pid

    pid = run(loop, main())
    assert marker.read_text() == str(pid)


def test_arguments_only_popen_takes(loop):
    # umask and process_group have no posix_spawn counterpart: Popen starts these children.
    async def main():
        kwargs = {"umask": 0o077}
        if sys.version_info >= (3, 11):
            kwargs["process_group"] = 0
        out, code = await output_of(
            sys.executable, "-c", "import os; print(oct(os.umask(0)), os.getpgid(0) == os.getpid())",
            **kwargs)
        return out, code

    assert run(loop, main()) == (b"0o77 True\n", 0)


def test_restore_signals(loop):
    async def main():
        # The kernel's view of the child's ignored signals (Python ignores SIGPIPE).
        kept, _ = await output_of("grep", "SigIgn", "/proc/self/status", restore_signals=False)
        reset, _ = await output_of("grep", "SigIgn", "/proc/self/status")
        return int(kept.split()[1], 16) >> (signal.SIGPIPE - 1) & 1, int(reset.split()[1], 16) >> (signal.SIGPIPE - 1) & 1

    assert run(loop, main()) == (1, 0)


# -- cancellation -------------------------------------------------------------------------------


def test_cancel_wait_then_wait_again(loop):
    async def main():
        proc = await asyncio.create_subprocess_exec("sleep", "30")
        task = asyncio.ensure_future(proc.wait())
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        proc.kill()
        return await proc.wait()

    assert run(loop, main()) == -signal.SIGKILL


def test_cancel_communicate(loop):
    async def main():
        proc = await asyncio.create_subprocess_exec("sleep", "30", stdout=PIPE)
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(proc.communicate(), 0.1)
        proc.kill()
        return await proc.wait()

    assert run(loop, main()) == -signal.SIGKILL


# -- many children ------------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_500_concurrent_children_leave_no_zombie_and_no_descriptor(loop):
    before = open_descriptors()

    async def one():
        proc = await asyncio.create_subprocess_exec("true", stdout=DEVNULL)
        return await proc.wait()

    async def main():
        return await asyncio.gather(*(one() for _ in range(500)))  # all at once

    assert run(loop, main()) == [0] * 500
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)  # no child left, not even a zombie
    assert open_descriptors() == before


@pytest.mark.timeout(120)
def test_500_children_with_pipes_in_batches_leave_no_descriptor(loop):
    before = open_descriptors()

    async def one(limit):
        async with limit:
            proc = await asyncio.create_subprocess_exec(
                "sh", "-c", "echo out; echo err >&2", stdin=PIPE, stdout=PIPE, stderr=PIPE)
            out, err = await proc.communicate(b"in")
            return proc.returncode, out, err

    async def main():
        limit = asyncio.Semaphore(100)  # 3 pipes each: within a 1,024-descriptor limit
        return await asyncio.gather(*(one(limit) for _ in range(500)))

    assert run(loop, main()) == [(0, b"out\n", b"err\n")] * 500
    gc.collect()
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)
    assert open_descriptors() == before

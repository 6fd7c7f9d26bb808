# tests/python/test_fs.py: data_bridge.pyloop.fs on both loops — native jobs on PyLoop, the
# executor on asyncio's loop — with the same assertions: contents, os.stat's fields, the
# built-in errors open() raises, the modes of open(), cancellation without descriptor leaks.

import asyncio
import errno
import gc
import io
import os

import pytest

from data_bridge.pyloop import fs


def fd_count():
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture
def path(tmp_path):
    return tmp_path / "data.bin"


def test_write_then_read_bytes(loop, path):
    payload = bytes(range(256)) * 4099  # past any power of two

    async def main():
        assert await fs.write(path, payload) == len(payload)
        assert await fs.read(path) == payload
        assert await fs.read(str(path)) == payload
        assert await fs.write(path, memoryview(payload)[:10]) == 10  # any buffer
        return await fs.read(os.fsencode(path))

    assert loop.run_until_complete(main()) == payload[:10]
    assert path.read_bytes() == payload[:10]


def test_empty_file_and_proc_files_read_fully(loop, path):
    path.write_bytes(b"")

    async def main():
        # /proc files report st_size 0, yet have content: the read goes on to the end.
        return await fs.read(path), await fs.read("/proc/self/cmdline")

    empty, cmdline = loop.run_until_complete(main())
    assert empty == b""
    with open("/proc/self/cmdline", "rb") as f:
        assert cmdline == f.read()


def test_text_read_and_write(loop, path):
    async def main():
        assert await fs.write(path, "héllo\r\nwörld\r", encoding="utf-8") == 13
        raw = await fs.read(path)
        text = await fs.read(path, encoding="utf-8")
        return raw, text

    raw, text = loop.run_until_complete(main())
    assert raw == "héllo\r\nwörld\r".encode()
    assert text == path.read_text(encoding="utf-8") == "héllo\nwörld\n"


def test_stat_has_the_fields_of_os_stat(loop, path, tmp_path):
    path.write_bytes(b"12345")
    link = tmp_path / "link"
    link.symlink_to(path)

    async def main():
        return (await fs.stat(path), await fs.stat(str(link), follow_symlinks=False),
                await fs.stat(link))

    st, lst, followed = loop.run_until_complete(main())
    assert isinstance(st, os.stat_result)
    # A symlink's atime moves whenever it is followed: compared for the file only.
    for got, want in ((st, os.stat(path)), (lst, os.lstat(link)), (followed, os.stat(path))):
        for name in dir(want):
            if name.startswith("st_") and not (got is lst and name.startswith("st_atime")):
                assert getattr(got, name) == getattr(want, name), name


def check_same_error(got, want):
    assert type(got) is type(want)
    assert (got.errno, got.strerror, got.filename) == (want.errno, want.strerror, want.filename)


def test_errors_are_the_builtin_ones(loop, tmp_path):
    missing = tmp_path / "missing"
    existing = tmp_path / "existing"
    existing.write_bytes(b"x")

    async def error_of(coro):
        try:
            await coro
        except OSError as exc:
            return exc
        raise AssertionError("no error")

    async def main():
        return [
            await error_of(fs.read(missing)),
            await error_of(fs.stat(missing)),
            await error_of(fs.read(tmp_path)),
            await error_of(fs.open(str(tmp_path), "rb")),
            await error_of(fs.open(tmp_path, "w")),
            await error_of(fs.open(existing, "x")),
            await error_of(fs.write(missing / "sub", b"")),
        ]

    errors = loop.run_until_complete(main())
    wants = []
    for call in (lambda: open(missing, "rb"), lambda: os.stat(missing),
                 lambda: open(tmp_path, "rb"), lambda: open(str(tmp_path), "rb"),
                 lambda: open(tmp_path, "w"), lambda: open(existing, "x"),
                 lambda: open(missing / "sub", "wb")):
        with pytest.raises(OSError) as info:
            call()
        wants.append(info.value)
    for got, want in zip(errors, wants):
        check_same_error(got, want)
    assert [type(e) for e in errors[:3]] == [FileNotFoundError, FileNotFoundError, IsADirectoryError]


def permission_denied_target(tmp_path):
    """A path open(path, "wb") refuses with EACCES: a file without permission bits, or for
    root (whom permission bits do not stop) a new file in sysfs."""
    if os.geteuid() != 0:
        path = tmp_path / "secret"
        path.write_bytes(b"secret")
        path.chmod(0)
        return path
    path = "/sys/data-bridge-pyloop-test"
    try:
        open(path, "wb").close()
    except PermissionError:
        return path
    except OSError:
        pass
    else:
        os.unlink(path)
    pytest.skip("no path refuses root with EACCES here")


def test_permission_error(loop, tmp_path):
    target = permission_denied_target(tmp_path)
    with pytest.raises(PermissionError) as builtin:
        open(target, "wb")

    async def main():
        errors = []
        for attempt in (lambda: fs.write(target, b"x"), lambda: fs.open(target, "wb")):
            with pytest.raises(PermissionError) as info:
                await attempt()
            errors.append(info.value)
        return errors

    for exc in loop.run_until_complete(main()):
        check_same_error(exc, builtin.value)


@pytest.mark.parametrize("mode", ["rw", "rt+b", "z", "", "rr", "b", "r+b+", "wa"])
def test_bad_modes_raise_opens_value_error(loop, path, mode):
    with pytest.raises(ValueError) as builtin:
        open(path, mode)
    with pytest.raises(ValueError) as ours:
        fs.open(path, mode)
    assert str(ours.value) == str(builtin.value)


def test_bad_arguments_raise_opens_value_error(loop, path):
    for kwargs in ({"encoding": "utf-8"}, {"errors": "strict"}, {"newline": ""}):
        with pytest.raises(ValueError) as builtin:
            open(path, "rb", **kwargs)
        with pytest.raises(ValueError) as ours:
            fs.open(path, "rb", **kwargs)
        assert str(ours.value) == str(builtin.value)

    async def main():
        with pytest.raises(ValueError, match="embedded null byte"):
            await fs.read(str(path) + "\0x")
        with pytest.raises(ValueError, match="embedded null byte"):
            await fs.open(str(path) + "\0x", "wb")
        with pytest.raises(ValueError, match="embedded null"):
            await fs.stat(str(path) + "\0x")

    loop.run_until_complete(main())


def test_binary_file_read_write_seek_tell(loop, path):
    async def main():
        async with fs.open(path, "w+b") as f:
            assert await f.write(b"0123456789") == 10
            assert await f.tell() == 10
            assert await f.seek(2) == 2
            assert await f.read(3) == b"234"
            assert await f.tell() == 5
            assert await f.seek(-2, os.SEEK_END) == 8
            assert await f.read() == b"89"
            assert await f.read() == b""
            assert await f.seek(-3, os.SEEK_CUR) == 7
            await f.write(b"XY")
            await f.seek(0)
            assert await f.read(100) == b"0123456XY9"
            with pytest.raises(OSError) as info:
                await f.seek(-1)
            assert info.value.errno == errno.EINVAL
            with pytest.raises(ValueError):
                await f.seek(0, 3)
            await f.truncate(4)
            await f.seek(0)
            assert await f.read() == b"0123"
        assert f.closed
        with pytest.raises(ValueError):
            await f.read()
        with pytest.raises(ValueError):
            await f.write(b"x")
        await f.close()  # again: nothing

    loop.run_until_complete(main())


def test_readinto_fills_the_callers_buffer(loop, path):
    path.write_bytes(bytes(range(200)))

    async def main():
        async with fs.open(path, "rb") as f:
            whole = bytearray(150)
            assert await f.readinto(whole) == 150
            assert await f.tell() == 150
            part = bytearray(b"-" * 100)
            assert await f.readinto(memoryview(part)[10:]) == 50  # the end of the file
            assert await f.readinto(bytearray(5)) == 0
            await f.seek(0)
            first = await f.readline()  # leaves the rest of the file read ahead
            ahead = bytearray(20)
            assert await f.readinto(ahead) == 20
            with pytest.raises(TypeError):
                await f.readinto(b"immutable")
        async with fs.open(path, "r", encoding="latin-1") as f:
            with pytest.raises(io.UnsupportedOperation):
                await f.readinto(bytearray(1))
        return whole, part, first, ahead

    whole, part, first, ahead = loop.run_until_complete(main())
    data = bytes(range(200))
    assert whole == data[:150]
    assert part == b"-" * 10 + data[150:] + b"-" * 40
    assert first == data[:11] and ahead == data[11:31]


def test_modes_behave_as_open(loop, path):
    async def main():
        f = await fs.open(path, "w")
        assert await f.write("abc\n") == 4
        with pytest.raises(io.UnsupportedOperation):
            await f.read()
        await f.close()
        async with fs.open(path, "a") as f:
            assert await f.tell() == 4  # append mode starts at the end
            await f.write("def\n")
            assert await f.tell() == 8
        async with fs.open(path, "r") as f:
            with pytest.raises(io.UnsupportedOperation):
                await f.write("x")
            assert await f.read() == "abc\ndef\n"
        async with fs.open(path, "r+") as f:
            assert await f.readline() == "abc\n"
            await f.write("DEF\n")
        with pytest.raises(FileExistsError):
            await fs.open(path, "x")
        async with fs.open(path, "a+b") as f:
            await f.write(b"ghi")
            await f.seek(0)
            return await f.read()

    assert loop.run_until_complete(main()) == b"abc\nDEF\nghi"


def test_text_encodings_newlines_and_iteration(loop, path):
    lines = ["première\n", "zweite\r\n", "third"]
    path.write_bytes("".join(lines).encode("utf-16"))

    async def main():
        async with fs.open(path, encoding="utf-16") as f:
            read = [line async for line in f]
        async with fs.open(path, encoding="utf-16", newline="") as f:
            untranslated = await f.read()
        async with fs.open(path, encoding="utf-16") as f:
            first = await f.read(4)
            rest = await f.read()
        async with fs.open(path, "w", encoding="latin-1", newline="\r\n") as f:
            await f.write("é\n")
        return read, untranslated, first, rest

    read, untranslated, first, rest = loop.run_until_complete(main())
    with open(path.with_suffix(".check"), "wb") as out:
        out.write("".join(lines).encode("utf-16"))
    with open(path.with_suffix(".check"), encoding="utf-16") as builtin:
        assert read == list(builtin)
    assert untranslated == "".join(lines)
    assert first + rest == "première\nzweite\nthird"
    assert first == "prem"
    assert path.read_bytes() == b"\xe9\r\n"


TELL_CASES = [
    # (bytes in the file, open() keywords): CRLF translated, lone CR, multi-byte characters,
    # lines longer than a read-ahead chunk, a CR at a chunk's edge, a stateful encoding.
    (("ligne é\r\n" * 3000 + "fin").encode("utf-8"), {"encoding": "utf-8"}),
    (("a\rb\r\n\rc\n" * 8000).encode("utf-8"), {"encoding": "utf-8"}),
    (("x" * 65535 + "\r\n" + "ü" * 40000 + "\r\nend\r").encode("utf-8"), {"encoding": "utf-8"}),
    (("€uro\r\n" * 2000).encode("utf-8"), {"encoding": "utf-8", "newline": ""}),
    (("zweite\r\n" * 4000).encode("utf-16"), {"encoding": "utf-16"}),
]
TELL_IDS = ["crlf", "lone-cr", "chunk-edge", "untranslated", "utf-16"]


@pytest.mark.parametrize("data, kwargs", TELL_CASES, ids=TELL_IDS)
def test_text_tell_after_lines_matches_builtin_open(loop, path, data, kwargs):
    # Where built-in open() tells a plain byte position (its decoder holds nothing there), fs
    # tells the same; where its cookie also carries decoder state (a lone CR just returned),
    # fs's position is one that reads on with the same text.
    path.write_bytes(data)
    with open(path, **kwargs) as builtin:
        text = builtin.read()
        builtin.seek(0)
        expected, done = [], 0
        while line := builtin.readline():
            done += len(line)
            cookie = builtin.tell()
            expected.append((line, cookie if cookie <= len(data) else None, done))

    async def main():
        async with fs.open(path, **kwargs) as f:
            got = []
            while line := await f.readline():
                got.append((line, await f.tell()))
        rests = {}
        stateful = [(position, done) for (_, position), (_, cookie, done) in zip(got, expected) if cookie is None]
        for position, done in stateful[:100] + stateful[-100:]:  # those near both ends
            async with fs.open(path, **kwargs) as again:
                await again.seek(position)
                rests[done] = await again.read(50)
        return got, rests

    got, rests = loop.run_until_complete(main())
    assert [line for line, _ in got] == [line for line, _, _ in expected]
    for (_, position), (_, cookie, _) in zip(got, expected):
        if cookie is not None:
            assert position == cookie
    for done, rest in rests.items():
        assert rest == text[done:done + 50]


@pytest.mark.parametrize("data, kwargs", TELL_CASES, ids=TELL_IDS)
def test_text_seek_to_tell_reads_on_where_it_stopped(loop, path, data, kwargs):
    # After reads of odd sizes (ending inside lines, after a CR), seek(tell()) and the rest of
    # the file read from there is the rest built-in open() reads.
    path.write_bytes(data)
    with open(path, **kwargs) as builtin:
        text = builtin.read()
    stateful = kwargs["encoding"] == "utf-16"  # a position past the BOM decodes without it

    async def main():
        checks = []
        async with fs.open(path, **kwargs) as f:
            done = 0
            for size in (1, 7, 4095, 3, 65536, 2, 9999):
                part = await f.read(size)
                done += len(part)
                position = await f.tell()
                if not stateful:
                    async with fs.open(path, **kwargs) as again:
                        await again.seek(position)
                        checks.append((done, await again.read(50)))
            return done, checks

    done, checks = loop.run_until_complete(main())
    assert done == min(len(text), 1 + 7 + 4095 + 3 + 65536 + 2 + 9999)
    for offset, rest in checks:
        assert rest == text[offset:offset + 50]


def test_binary_lines(loop, path):
    path.write_bytes(b"a\nbb\n" + b"c" * 200000 + b"\nlast")

    async def main():
        f = await fs.open(path, "rb")
        try:
            lines = [line async for line in f]
            await f.seek(0)
            first = await f.readline()
            return lines, first, await f.tell(), await f.read(2)
        finally:
            await f.close()

    lines, first, position, after = loop.run_until_complete(main())
    with open(path, "rb") as builtin:
        assert lines == builtin.readlines()
    assert (first, position, after) == (b"a\n", 2, b"bb")


def test_files_that_shrink_or_grow_are_read_as_they_are(loop, path):
    # The size known at open is only a hint: reads follow the file as it is.
    path.write_bytes(b"a" * 10240)

    async def main():
        async with fs.open(path, "rb") as f:
            os.truncate(path, 100)
            shrunk = await f.read()
            with open(path, "ab") as grow:
                grow.write(b"b" * 50000)
            grown = await f.read()
            return shrunk, grown

    shrunk, grown = loop.run_until_complete(main())
    assert shrunk == b"a" * 100
    assert grown == b"b" * 50000


def test_many_files_at_once(loop, tmp_path):
    files = [tmp_path / f"f{i}" for i in range(200)]

    async def main():
        await asyncio.gather(*(fs.write(p, p.name.encode() * 100) for p in files))
        return await asyncio.gather(*(fs.read(p) for p in files))

    assert loop.run_until_complete(main()) == [p.name.encode() * 100 for p in files]


def test_cancelled_operations_leak_no_descriptor(loop, path):
    path.write_bytes(b"x" * (1 << 20))

    async def cancel_soon(coro):
        task = asyncio.ensure_future(coro)
        await asyncio.sleep(0)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            return True
        result = task.result()
        if isinstance(result, fs.AsyncFile):  # finished before the cancel landed
            await result.close()
        return False

    async def main():
        await fs.read(path)  # what the loop creates once (an executor's threads) exists now
        gc.collect()  # earlier tests' garbage (their loops' descriptors) goes now, not during
        before = fd_count()
        results = []
        for _ in range(30):
            results.append(await cancel_soon(fs.open(path, "rb")))
            results.append(await cancel_soon(fs.read(path)))
            results.append(await cancel_soon(fs.write(path.with_suffix(".w"), b"y" * 65536)))
        # The operations end in the background, their descriptors closing with them;
        # shutdown_default_executor waits for them (executor threads or native jobs).
        await loop.shutdown_default_executor()
        return before, fd_count(), results

    before, after, results = loop.run_until_complete(main())
    assert after == before
    assert any(results)


def test_shutdown_default_executor_waits_for_cancelled_writes(loop, path):
    # As asyncio.run() does before closing the loop: a write whose caller was cancelled
    # once it had started still completes, and is complete once shutdown_default_executor
    # returns.
    payload = os.urandom(1 << 16) * 128  # 8 MiB: still being written when the cancel lands

    async def main():
        tasks = [asyncio.ensure_future(fs.write(path.with_suffix(f".{i}"), payload)) for i in range(4)]
        await asyncio.sleep(0)  # each has submitted its write
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await loop.shutdown_default_executor()

    loop.run_until_complete(main())
    # Each write happened whole or (an executor call cancelled before it started) not at all.
    written = [path.with_suffix(f".{i}") for i in range(4)]
    assert all(p.read_bytes() == payload for p in written if p.exists())


def test_unclosed_file_warns_and_closes(loop, path):
    path.write_bytes(b"x")

    async def main():
        f = await fs.open(path, "rb")
        return f.fileno()

    with pytest.warns(ResourceWarning):
        fd = loop.run_until_complete(main())
        gc.collect()
    with pytest.raises(OSError):
        os.fstat(fd)


def test_loop_closed_while_native_reads_run(pyloop_module, tmp_path):
    # The loop goes while workers still open files and fill bytes objects (whole-file reads
    # and reads into a buffer made at once): nothing crashes, nothing leaks; the workers
    # release what the jobs hold once they are done.
    import time

    from data_bridge.pyloop import _pyloop

    big = tmp_path / "big"
    big.write_bytes(b"z" * (1 << 20))
    gc.collect()
    before = fd_count()
    fd = os.open(big, os.O_RDONLY)
    for rounds in range(6):
        loop = pyloop_module.new_event_loop()
        futures = [loop.create_future() for _ in range(20)]
        for i, done in enumerate(futures):
            if i % 2:
                _pyloop.file_open(loop, done, os.fsencode(big), os.O_RDONLY, 0, str(big), True)
            else:
                _pyloop.file_read(loop, done, fd, 1 << 20, -1, 0)
        if rounds % 2:
            loop.run_until_complete(asyncio.sleep(0.001))  # some completions queued, some not
        loop.close()
        del futures
    os.close(fd)
    # The workers finish the abandoned jobs meanwhile. At most as many as before: work an
    # earlier test left running may close a descriptor counted then.
    deadline = time.monotonic() + 20
    while fd_count() > before and time.monotonic() < deadline:
        gc.collect()
        time.sleep(0.01)
    assert fd_count() <= before


def test_shutdown_default_executor_timeout_leaves_file_jobs_running(pyloop_module, tmp_path):
    # A job stuck in open() (a FIFO without a writer) outlasts the timeout: a RuntimeWarning
    # says so, the shutdown returns, and the job ends once a writer comes.
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)

    async def main():
        reading = asyncio.ensure_future(fs.read(fifo))
        await asyncio.sleep(0)
        reading.cancel()
        with pytest.warns(RuntimeWarning, match="File operations still running after 0.2 seconds"):
            await asyncio.get_running_loop().shutdown_default_executor(timeout=0.2)
        waiting = asyncio.get_running_loop().create_future()
        _pyloop.file_jobs_idle(asyncio.get_running_loop(), waiting)
        writer = os.open(fifo, os.O_WRONLY)  # the worker's open() returns; the read sees EOF
        os.close(writer)
        await asyncio.wait_for(waiting, 10)
        return reading.cancelled()

    from data_bridge.pyloop import _pyloop

    loop = pyloop_module.new_event_loop()
    try:
        assert loop.run_until_complete(main())
    finally:
        loop.close()


def test_native_round_trips_leave_memory_flat(pyloop_module, tmp_path):
    # A reference leaked per operation (the future, the bytes object, the exported buffer, the
    # filename) would show as thousands of objects or megabytes; allocator noise is far less.
    path = tmp_path / "flat"
    payload = b"p" * 65536

    async def rounds(n):
        for _ in range(n):
            await fs.write(path, payload)
            assert len(await fs.read(path)) == len(payload)
            await fs.stat(path)
            async with fs.open(path, "rb") as f:
                await f.read(100)
            with pytest.raises(FileNotFoundError):
                await fs.read(tmp_path / "missing")

    def rss():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    loop = pyloop_module.new_event_loop()
    try:
        loop.run_until_complete(rounds(200))
        gc.collect()
        objects, memory = len(gc.get_objects()), rss()
        loop.run_until_complete(rounds(2000))
        gc.collect()
        assert len(gc.get_objects()) - objects < 500
        if os.environ.get("PYLOOP_SANITIZER_BUILD") != "1":
            # ASan's quarantine holds freed memory back on purpose: RSS says nothing there.
            assert rss() - memory < 8 * 1024 * 1024
    finally:
        loop.close()


EXIT_SCRIPT = """
import asyncio, sys
import data_bridge.pyloop as pyloop
from data_bridge.pyloop import fs

async def main():
    reads = [asyncio.ensure_future(fs.read(sys.argv[1])) for _ in range(16)]
    await asyncio.sleep(0.002)  # some opened, some reading; run() then cancels them

pyloop.run(main())
"""


def test_interpreter_exit_with_reads_in_flight(pyloop_module, tmp_path):
    # The loop closes and the interpreter ends while workers still read: they finish without
    # the GIL (no thread ended in the middle of C++ code, no crash at exit).
    import subprocess
    import sys

    big = tmp_path / "big"
    big.write_bytes(b"q" * (8 << 20))
    for _ in range(4):
        done = subprocess.run([sys.executable, "-c", EXIT_SCRIPT, str(big)],
                              capture_output=True, text=True, timeout=60)
        assert (done.returncode, done.stderr) == (0, "")

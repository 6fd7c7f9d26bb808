"""benchmarks/native/fs.py — file_read_many / file_write_many: data_bridge.pyloop.fs on PyLoop
beside run_in_executor with plain file calls (asyncio, uvloop, PyLoop) and aiofiles.

    .venv/bin/python benchmarks/native/fs.py [--repeats 5] [--quick]

Scenarios: 1,000 files of 4 KiB and 100 files of 1 MiB, read (page cache warm) and written,
all requests of a round in flight at once (asyncio.gather). Each cell is the median over the
repeats of one round's wall time; the ratios divide the other columns by data_bridge.pyloop.fs
on PyLoop (above 1: fs is faster).
"""

import argparse
import asyncio
import importlib.metadata
import os
import pathlib
import resource
import statistics
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import aiofiles  # noqa: E402
import uvloop  # noqa: E402

import data_bridge.pyloop as pyloop  # noqa: E402
from data_bridge.pyloop import fs  # noqa: E402
from machine import describe  # noqa: E402

LOOPS = {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop,
         "pyloop": pyloop.new_event_loop}


def read_plain(path):
    with open(path, "rb") as f:
        return f.read()


def write_plain(path, data):
    with open(path, "wb") as f:
        return f.write(data)


async def read_executor(paths):
    loop = asyncio.get_running_loop()
    return await asyncio.gather(*(loop.run_in_executor(None, read_plain, p) for p in paths))


async def write_executor(paths, data):
    loop = asyncio.get_running_loop()
    await asyncio.gather(*(loop.run_in_executor(None, write_plain, p, data) for p in paths))


async def _aiofiles_read(path):
    async with aiofiles.open(path, "rb") as f:
        return await f.read()


async def _aiofiles_write(path, data):
    async with aiofiles.open(path, "wb") as f:
        await f.write(data)


async def read_aiofiles(paths):
    return await asyncio.gather(*(_aiofiles_read(p) for p in paths))


async def write_aiofiles(paths, data):
    await asyncio.gather(*(_aiofiles_write(p, data) for p in paths))


async def read_fs(paths):
    return await asyncio.gather(*(fs.read(p) for p in paths))


_BUFFERS = {}  # path -> the bytearray readinto fills, made once (reused by every round)


async def _readinto_fs(path, size):
    buffer = _BUFFERS.get(path)
    if buffer is None:
        buffer = _BUFFERS[path] = bytearray(size)
    async with fs.open(path, "rb") as f:
        return await f.readinto(buffer)


async def readinto_fs(paths):
    size = os.path.getsize(paths[0])
    return await asyncio.gather(*(_readinto_fs(p, size) for p in paths))


async def write_fs(paths, data):
    await asyncio.gather(*(fs.write(p, data) for p in paths))


# (column, loop, read coroutine, write coroutine); the first column is the reference.
COLUMNS = [
    ("fs@pyloop", "pyloop", read_fs, write_fs),
    ("executor@asyncio", "asyncio", read_executor, write_executor),
    ("executor@uvloop", "uvloop", read_executor, write_executor),
    ("executor@pyloop", "pyloop", read_executor, write_executor),
    ("aiofiles@asyncio", "asyncio", read_aiofiles, write_aiofiles),
    ("aiofiles@uvloop", "uvloop", read_aiofiles, write_aiofiles),
    ("aiofiles@pyloop", "pyloop", read_aiofiles, write_aiofiles),
    ("fs@asyncio", "asyncio", read_fs, write_fs),  # fs's executor path
    # Not whole-file reads: fs.open + readinto into a buffer reused round after round (no
    # new object, no fresh pages), the zero-copy path for callers that keep their memory.
    ("readinto@pyloop", "pyloop", readinto_fs, None),
]


def measure(loop_name, make_round, repeats):
    """(median wall time, median process CPU time: user + system, every thread) of one round
    over `repeats`, after one warm-up round. CPU time is the steadier figure on a busy
    machine: it does not count the time other processes hold the cores."""
    loop = LOOPS[loop_name]()
    try:
        times, cpus = [], []
        for i in range(repeats + 1):
            cpu0 = resource.getrusage(resource.RUSAGE_SELF)
            start = time.perf_counter()
            loop.run_until_complete(make_round())
            wall = time.perf_counter() - start
            cpu1 = resource.getrusage(resource.RUSAGE_SELF)
            if i:  # the first round warms the executor's threads and the page cache
                times.append(wall)
                cpus.append(cpu1.ru_utime - cpu0.ru_utime + cpu1.ru_stime - cpu0.ru_stime)
        return statistics.median(times), statistics.median(cpus)
    finally:
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="fewer files (a smoke run)")
    args = parser.parse_args()
    scale = 10 if args.quick else 1
    scenarios = [("4KiB", 1000 // scale, 4096), ("1MiB", 100 // scale, 1 << 20)]
    info = describe()
    print(f"# file I/O: {info['cpu']}, {info['usable_cores']} usable cores, {info['os']}, "
          f"{info['python']}; aiofiles {importlib.metadata.version('aiofiles')}, "
          f"median of {args.repeats}; load average {info['load_average']}")
    with tempfile.TemporaryDirectory() as tmp:
        for label, count, size in scenarios:
            payload = os.urandom(size)
            paths = [os.path.join(tmp, f"{label}-{i}") for i in range(count)]
            for p in paths:
                write_plain(p, payload)
            for kind in ("read", "write"):
                results = {}
                for column, loop_name, reader, writer in COLUMNS:
                    if kind == "write" and writer is None:
                        continue
                    if kind == "read":
                        results[column] = measure(loop_name, lambda: reader(paths), args.repeats)
                    else:
                        results[column] = measure(
                            loop_name, lambda: writer(paths, payload), args.repeats)
                ref_wall, ref_cpu = results[COLUMNS[0][0]]
                print(f"\nfile_{kind}_many {count} x {label}: per round (wall, CPU), "
                      f"ratio = column / fs@pyloop")
                for column, (wall, cpu) in results.items():
                    print(f"  {column:18s} wall {wall * 1e3:8.2f} ms "
                          f"({wall / count * 1e6:7.1f} us/file) x{wall / ref_wall:5.2f}   "
                          f"cpu {cpu * 1e3:8.2f} ms x{cpu / ref_cpu:5.2f}")


if __name__ == "__main__":
    main()

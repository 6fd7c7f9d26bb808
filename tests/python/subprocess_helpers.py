# tests/python/subprocess_helpers.py: what the subprocess tests share.

import asyncio
import os
import subprocess

PIPE, STDOUT, DEVNULL = subprocess.PIPE, subprocess.STDOUT, subprocess.DEVNULL


def run(loop, coro):
    return loop.run_until_complete(coro)


async def output_of(*args, **kwargs):
    proc = await asyncio.create_subprocess_exec(*args, stdout=PIPE, **kwargs)
    out, _ = await proc.communicate()
    return out, proc.returncode


def open_descriptors():
    return sorted(int(n) for n in os.listdir("/proc/self/fd"))

"""benchmarks/pipe_cat.py — round trips through a `cat` child over its stdin and stdout pipes.

One `cat` started with asyncio.create_subprocess_exec(stdin=PIPE, stdout=PIPE); one task
repeats: proc.stdin.write(a CHUNK-byte chunk), await proc.stdin.drain(), await
proc.stdout.readexactly(CHUNK). One chunk in flight, so each round trip is a write to one
pipe, cat's read and write, and a read from the other pipe, woken by the loop each time.
Then stdin is closed and the child awaited. ops = round trips (the timed run includes
starting and ending the one child: about a millisecond, under 1% of a calibrated run).

Checks: every chunk read back equals the one written (consecutive chunks differ, so a stale,
lost or repeated chunk fails), cat writes nothing more after EOF and exits with status 0.

Run by benchmarks/net/run_io.py (not in benchmarks/run.py's core-loop table).
"""

import asyncio
import random
import shutil

CHUNK = 4096  # bytes written and read back per round trip
MIN_SIZE = 500
CAT = shutil.which("cat") or "/bin/cat"  # an absolute path: no PATH search in the timing
# 61 different chunks (a prime number of them, so no short cycle lines up with anything).
_CHUNKS = [random.Random(seed).randbytes(CHUNK) for seed in range(61)]


async def _round_trips(count):
    proc = await asyncio.create_subprocess_exec(CAT, stdin=asyncio.subprocess.PIPE,
                                                stdout=asyncio.subprocess.PIPE)
    try:
        for index in range(count):
            chunk = _CHUNKS[index % len(_CHUNKS)]
            proc.stdin.write(chunk)
            await proc.stdin.drain()
            if await proc.stdout.readexactly(CHUNK) != chunk:
                raise RuntimeError(f"round trip {index}: cat's output differs from its input")
        proc.stdin.close()
        extra = await proc.stdout.read()
        if extra:
            raise RuntimeError(f"cat wrote {len(extra)} bytes more than it was given")
        status = await proc.wait()
        if status != 0:
            raise RuntimeError(f"cat exited with status {status}")
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    return count


def run(loop, size):
    """Do about `size` round trips of CHUNK bytes through one cat child."""
    count = max(size, MIN_SIZE)
    done = loop.run_until_complete(_round_trips(count))
    if done != count:
        raise RuntimeError(f"{done} round trips, {count} expected")
    return done


VARIANTS = {f"pipe_cat/{CHUNK // 1024}k": run}

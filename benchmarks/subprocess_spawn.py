"""benchmarks/subprocess_spawn.py — spawn `true` and wait for it, CONCURRENCY children at a time.

CONCURRENCY tasks each repeat: `await asyncio.create_subprocess_exec(TRUE)` (no pipes; the
child inherits the worker's standard streams), then `await proc.wait()`. So at most
CONCURRENCY children are alive at once, and the rate is what a program that runs many short
commands gets: the spawn path (fork/exec or posix_spawn), the child watcher noticing the
exit, and the wake-up of the waiting task. ops = children spawned and awaited.

Checks: every child exits with status 0, and once all are awaited no child of the worker is
left (alive or a zombie): the loop reaped every one it reported.

Run by benchmarks/net/run_io.py (not in benchmarks/run.py's core-loop table).
"""

import asyncio
import os
import shutil

CONCURRENCY = 8  # children in flight
MIN_SIZE = 4 * CONCURRENCY
TRUE = shutil.which("true") or "/bin/true"  # an absolute path: no PATH search in the timing


async def _spawner(count):
    for _ in range(count):
        proc = await asyncio.create_subprocess_exec(TRUE)
        status = await proc.wait()
        if status != 0:
            raise RuntimeError(f"{TRUE} (pid {proc.pid}) exited with status {status}")
    return count


async def _spawn_all(per_task):
    done = await asyncio.gather(*(_spawner(per_task) for _ in range(CONCURRENCY)))
    return sum(done)


def _no_child_left():
    """Raise if the process still has a child: one not reaped, or one still running."""
    try:
        pid, status = os.waitpid(-1, os.WNOHANG)
    except ChildProcessError:
        return  # no child at all
    what = "still running" if pid == 0 else f"pid {pid} left as a zombie (status {status})"
    raise RuntimeError(f"a child outlived its wait(): {what}")


def run(loop, size):
    """Spawn and await about `size` children of `true`, CONCURRENCY at a time."""
    per_task = max(size, MIN_SIZE) // CONCURRENCY
    done = loop.run_until_complete(_spawn_all(per_task))
    if done != per_task * CONCURRENCY:
        raise RuntimeError(f"{done} children awaited, {per_task * CONCURRENCY} expected")
    _no_child_left()
    return done


VARIANTS = {f"subprocess_spawn/true/x{CONCURRENCY}": run}

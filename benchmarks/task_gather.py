"""benchmarks/task_gather.py — create BATCH tasks of a trivial coroutine and gather them.

Repeated in batches until `size` tasks ran: loop.create_task for each coroutine, then
`await asyncio.gather(*tasks)`. Measures task creation, the task's first step (scheduled
by call_soon), completion callbacks and gather's bookkeeping. ops = tasks run.

Check: gather returns every task's own result, in order.
"""

import asyncio

BATCH = 1000  # tasks created and gathered at once
MIN_SIZE = 2 * BATCH
_EXPECTED = list(range(BATCH))


async def _leaf(index):
    return index


async def _batches(loop, count):
    for _ in range(count):
        tasks = [loop.create_task(_leaf(index)) for index in range(BATCH)]
        results = await asyncio.gather(*tasks)
        if results != _EXPECTED:
            raise RuntimeError("gather returned wrong or misordered task results")
    return count * BATCH


def run(loop, size):
    """Run about `size` trivial tasks in gathered batches; return the tasks run."""
    count = max(1, size // BATCH)
    done = loop.run_until_complete(_batches(loop, count))
    if done != count * BATCH:
        raise RuntimeError(f"{done} tasks ran, {count * BATCH} expected")
    return done


VARIANTS = {"task_gather": run}

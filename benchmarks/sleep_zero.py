"""benchmarks/sleep_zero.py — loop iteration overhead: one task awaiting asyncio.sleep(0).

Each `await asyncio.sleep(0)` yields to the loop, which must come back round and step the
task again: one full loop iteration with one ready callback. ops = iterations.

Check: every CHECK_EVERY iterations the task schedules a plain callback with call_soon and
verifies, CHECK_EVERY iterations later, that it ran, so sleep(0) really went through the
loop (a loop that never ran its ready queue between steps would be caught).
"""

import asyncio

CHECK_EVERY = 1024  # iterations between two checks that the ready queue is being run
MIN_SIZE = 4 * CHECK_EVERY


async def _spin(loop, iterations):
    marks_sent = 0
    marks_run = [0]  # incremented by the probe callback; a list so the callback can write it

    def probe():
        marks_run[0] += 1

    for index in range(iterations):
        if not index % CHECK_EVERY:
            if marks_run[0] != marks_sent:
                raise RuntimeError(f"sleep(0) did not yield to the loop: {marks_run[0]} of "
                                   f"{marks_sent} call_soon callbacks ran")
            loop.call_soon(probe)
            marks_sent += 1
        await asyncio.sleep(0)
    return iterations


def run(loop, size):
    """Await sleep(0) about `size` times in one task; return the iterations done."""
    iterations = max(size, MIN_SIZE)
    done = loop.run_until_complete(_spin(loop, iterations))
    if done != iterations:
        raise RuntimeError(f"{done} iterations, {iterations} expected")
    return done


VARIANTS = {"sleep_zero": run}

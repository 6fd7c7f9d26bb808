"""benchmarks/future_roundtrip.py — create_future, set_result from call_soon, await it.

One task repeats: make a future with loop.create_future(), schedule fut.set_result(i) with
loop.call_soon, await the future. Each round trip is two loop iterations (the set_result
callback, then the task's wakeup) and exercises future callbacks. ops = round trips.

Check: every awaited value is the one that was set for that round.
"""

MIN_SIZE = 2000


async def _roundtrips(loop, count):
    for index in range(count):
        future = loop.create_future()
        loop.call_soon(future.set_result, index)
        if await future != index:
            raise RuntimeError(f"round trip {index} returned another round's value")
    return count


def run(loop, size):
    """Do about `size` future round trips in one task; return the number done."""
    count = max(size, MIN_SIZE)
    done = loop.run_until_complete(_roundtrips(loop, count))
    if done != count:
        raise RuntimeError(f"{done} round trips, {count} expected")
    return done


VARIANTS = {"future_roundtrip": run}

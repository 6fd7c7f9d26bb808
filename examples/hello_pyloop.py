"""examples/hello_pyloop.py — an ordinary asyncio program, run on PyLoop.

A small producer/consumer pipeline: tasks, a queue, timeouts, a thread-pool call, a
TaskGroup and contextvars, all through the standard asyncio API. Only the last line names
PyLoop.
"""

import asyncio
import contextvars
import hashlib
import time

import data_bridge.pyloop as pyloop

request_id = contextvars.ContextVar("request_id", default="-")


def checksum(payload: bytes) -> str:
    """CPU work for the default executor."""
    return hashlib.sha256(payload * 1000).hexdigest()[:12]


async def producer(queue: asyncio.Queue, count: int) -> None:
    for i in range(count):
        await queue.put(f"job-{i}".encode())
        await asyncio.sleep(0.001)
    await queue.put(None)


async def consumer(queue: asyncio.Queue, results: list) -> None:
    loop = asyncio.get_running_loop()
    while (item := await queue.get()) is not None:
        request_id.set(item.decode())
        digest = await loop.run_in_executor(None, checksum, item)
        results.append((request_id.get(), digest))


async def slow() -> str:
    await asyncio.sleep(10)
    return "never"


async def main() -> None:
    loop = asyncio.get_running_loop()
    started = time.perf_counter()
    queue: asyncio.Queue = asyncio.Queue(maxsize=4)
    results: list = []
    async with asyncio.TaskGroup() as group:
        group.create_task(producer(queue, 20))
        group.create_task(consumer(queue, results))
    try:
        async with asyncio.timeout(0.05):
            await slow()
    except TimeoutError:
        timed_out = True
    ticks = 0

    def tick() -> None:
        nonlocal ticks
        ticks += 1

    for delay in (0.01, 0.02, 0.03):
        loop.call_later(delay, tick)
    await asyncio.sleep(0.04)
    elapsed = time.perf_counter() - started
    print(f"loop: {type(loop).__module__}.{type(loop).__name__}")
    print(f"processed {len(results)} jobs, first {results[0]}, last {results[-1]}")
    print(f"timeout honoured: {timed_out}; timers fired: {ticks}/3; took {elapsed:.3f}s")


if __name__ == "__main__":
    pyloop.run(main())

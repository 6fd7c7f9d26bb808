"""benchmarks/native/bridge.py — the native bridge side by side (issue 11).

    python benchmarks/native/bridge.py            # ~30 s: 5 repeats of each row
    python benchmarks/native/bridge.py --quick    # smoke run, a few seconds

Rows:
- wakeup_latency: the issue's measure, one way. A worker thread, idle for 0.5 ms, takes the
  monotonic clock and completes a future; the awaiting task reads the clock when it resumes.
  PyLoop's native future completed from a pool thread (pyloop_native_example.stamp_after)
  beside a Python thread calling call_soon_threadsafe(fut.set_result, stamp) on asyncio,
  uvloop, rloop and PyLoop. Median microseconds from the completion to the task.
  The row "kernel floor" is the machine's own cost of that wake-up with no loop and no
  Python (pyloop_native_example.kernel_wake_floor: a C++ thread writes a pipe, another blocked
  in poll() returns): no completion path can reach its task faster than that.
- busy_wakeup_latency: the same while the loop is busy: a task runs Python code in slices of
  0.2 ms between yields, as a loaded server does. The Python thread's completion is ready at
  its due time but needs the GIL, which the busy loop thread holds; the native completion
  needs no GIL and is taken at the loop's next iteration. Measured from the moment each
  completion is ready (the due time, the native stamp) to the task. Unpinned: the worker
  runs beside the loop, on the other core. A loop that releases the GIL in each turn
  (asyncio's select(0)) can starve the Python thread for hundreds of milliseconds on a quiet
  machine (decision 0030); each cell is therefore capped in time.
- cross_thread_latency: one completion at a time, loop -> worker thread -> loop. PyLoop's
  native future completed from a pool thread (pyloop_native_example.pool_ping) beside a
  Python thread that completes a loop future through call_soon_threadsafe, on asyncio,
  uvloop, rloop and PyLoop. Microseconds per round trip (median of repeats), and the
  process's CPU time per completion (all threads), which depends less on how fast a busy
  machine schedules the waking threads.
- cross_thread_throughput: 1,000 completions in flight at once, gathered; completions/s.
- cpu_fanout: hashing 64 buffers of 2 MiB (the example's 64-bit hash) over the native pool
  (asyncio.gather of hash_on_pool) beside run_in_executor with a ThreadPoolExecutor of the
  same size (hash_sync releases the GIL), and one core (hash_sync in a loop); speedup over
  one core, with the cores used.

Pinning: the completion rows run with the process pinned to one CPU (--pin-cpu, default the
first usable one), the fan-out on every usable CPU. Unpinned, a completion that wakes a thread
on an idle virtual CPU pays the hypervisor's cross-CPU wake-up: on the 2-core VM this was
written on, the native round trip then varied between 4 and 50 us from one run to the next
(perf: the time in the kernel's try_to_wake_up), while pinned it stays near 4 us. --no-pin
measures unpinned.

Needs the example extension (scripts/setup.sh builds it). Medians of --repeats runs,
interleaved; the machine is described first.
"""

import argparse
import asyncio
import concurrent.futures
import os
import queue
import statistics
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.dont_write_bytecode = True

import machine  # noqa: E402

import data_bridge.pyloop as pyloop  # noqa: E402
import pyloop_native_example as ex  # noqa: E402


def loop_factories():
    factories = {"asyncio": asyncio.new_event_loop}
    for name in ("uvloop", "rloop"):
        try:
            factories[name] = __import__(name).new_event_loop
        except ImportError:
            pass
    factories["pyloop"] = pyloop.new_event_loop
    return factories


WAKEUP_DELAY = 0.0005  # the worker's idle time before it completes
BUSY_SLICE = 0.0002  # the busy task's Python work between two yields to the loop
# A busy cell stops after this long (at least 3 samples): on a quiet machine a Python thread
# can wait hundreds of milliseconds for the GIL of a loop that releases it each turn (asyncio).
BUSY_CELL_SECONDS = 3.0
BUSY_REPEATS = 3  # the busy rows run in the first repeats only


class PythonStamper:
    """A Python thread that sleeps until each future's due time, then completes it with a
    stamp: the clock read once it holds the GIL again (idle loop: the GIL is free), or the due
    time itself (busy loop: the completion is ready then, and needs the GIL from there on)."""

    def __init__(self, loop, stamp_due):
        self.loop = loop
        self.stamp_due = stamp_due
        self.inbox = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while (item := self.inbox.get()) is not None:
            fut, due = item
            time.sleep(max(0.0, due - time.monotonic()))
            self.loop.call_soon_threadsafe(fut.set_result, due if self.stamp_due else time.monotonic())

    def stop(self):
        self.inbox.put(None)
        self.thread.join()


async def _busy(stop):
    """Python work on the loop, yielding every BUSY_SLICE seconds, as a loaded server does."""
    while not stop.done():
        end = time.perf_counter() + BUSY_SLICE
        while time.perf_counter() < end:
            pass
        await asyncio.sleep(0)


async def _sample_wakeups(n, busy, complete):
    """Median seconds from each completion's stamp to the awaiting task; with busy, while a
    task runs Python code on the loop (the cell then also stops after BUSY_CELL_SECONDS)."""
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    spinner = asyncio.ensure_future(_busy(stop)) if busy else None
    give_up = time.monotonic() + (BUSY_CELL_SECONDS if busy else float("inf"))
    samples = []
    try:
        while len(samples) < n and (len(samples) < 3 or time.monotonic() < give_up):
            stamp = await complete(loop)
            samples.append(time.monotonic() - stamp)
    finally:
        stop.set_result(None)
        if spinner is not None:
            await spinner
    return statistics.median(samples), None


async def wakeup_python(n, busy=False):
    stamper = PythonStamper(asyncio.get_running_loop(), stamp_due=busy)

    def complete(loop):
        fut = loop.create_future()
        stamper.inbox.put((fut, time.monotonic() + WAKEUP_DELAY))
        return fut

    try:
        return await _sample_wakeups(n, busy, complete)
    finally:
        stamper.stop()


async def wakeup_native(n, busy=False):
    return await _sample_wakeups(n, busy, lambda loop: ex.stamp_after(loop, WAKEUP_DELAY))


class PythonCompleter:
    """A Python thread that completes the futures it is handed with call_soon_threadsafe."""

    def __init__(self, loop):
        self.loop = loop
        self.inbox = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while True:
            fut = self.inbox.get()
            if fut is None:
                return
            self.loop.call_soon_threadsafe(fut.set_result, None)

    def complete(self, fut):
        self.inbox.put(fut)

    def stop(self):
        self.inbox.put(None)
        self.thread.join()


async def latency_python(n):
    loop = asyncio.get_running_loop()
    completer = PythonCompleter(loop)
    try:
        start, cpu = time.perf_counter(), time.process_time()
        for _ in range(n):
            fut = loop.create_future()
            completer.complete(fut)
            await fut
        return (time.perf_counter() - start) / n, (time.process_time() - cpu) / n
    finally:
        completer.stop()


async def latency_native(n):
    loop = asyncio.get_running_loop()
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(n):
        await ex.pool_ping(loop)
    return (time.perf_counter() - start) / n, (time.process_time() - cpu) / n


async def throughput_python(n):
    loop = asyncio.get_running_loop()
    completer = PythonCompleter(loop)
    try:
        start, cpu = time.perf_counter(), time.process_time()
        futures = [loop.create_future() for _ in range(n)]
        for fut in futures:
            completer.complete(fut)
        await asyncio.gather(*futures)
        return n / (time.perf_counter() - start), (time.process_time() - cpu) / n
    finally:
        completer.stop()


async def throughput_native(n):
    loop = asyncio.get_running_loop()
    start, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(ex.pool_ping(loop) for _ in range(n)))
    return n / (time.perf_counter() - start), (time.process_time() - cpu) / n


def run(factory, coro_fn, *args):
    loop = factory()
    try:
        return loop.run_until_complete(coro_fn(*args))
    finally:
        loop.close()


def fanout(buffers, workers):
    """Seconds for: one core, the native pool, run_in_executor with `workers` threads."""
    start = time.perf_counter()
    expected = [ex.hash_sync(b) for b in buffers]
    one_core = time.perf_counter() - start

    async def on_pool():
        loop = asyncio.get_running_loop()
        start = time.perf_counter()
        got = await asyncio.gather(*(ex.hash_on_pool(loop, b) for b in buffers))
        assert got == expected
        return time.perf_counter() - start

    async def in_executor(executor):
        loop = asyncio.get_running_loop()
        start = time.perf_counter()
        got = await asyncio.gather(*(loop.run_in_executor(executor, ex.hash_sync, b) for b in buffers))
        assert got == expected
        return time.perf_counter() - start

    pool = run(pyloop.new_event_loop, on_pool)
    with concurrent.futures.ThreadPoolExecutor(workers) as executor:
        executor_time = run(pyloop.new_event_loop, in_executor, executor)
    return one_core, pool, executor_time


def median(values):
    return statistics.median(values)


def set_process_affinity(cpus):
    """Every thread of the process on cpus: the native pool's threads too, which inherit the
    affinity of the thread that started them (os.sched_setaffinity(0) moves the caller only),
    so that the pinned rows run all on one CPU and the fan-out on all of them."""
    for tid in os.listdir("/proc/self/task"):
        try:
            os.sched_setaffinity(int(tid), cpus)
        except ProcessLookupError:  # a thread that ended meanwhile
            pass


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--pin-cpu", type=int, default=None,
                        help="CPU the completion rows run on (default: the first usable one)")
    parser.add_argument("--no-pin", action="store_true", help="run the completion rows unpinned")
    args = parser.parse_args(argv)
    all_cpus = sorted(os.sched_getaffinity(0))
    pinned = None if args.no_pin else ({args.pin_cpu} if args.pin_cpu is not None else {all_cpus[0]})
    repeats = args.repeats or (3 if args.quick else 5)
    n_latency = 500 if args.quick else 3000
    n_throughput = 1000
    buffers = [bytes([i]) * ((256 if args.quick else 2048) * 1024) for i in range(64)]

    info = machine.describe()
    print(f"# native bridge — {info['cpu']}, {info['usable_cores']} usable cores, {info['os']}, "
          f"{info['python']}, {info['date']}, load {info['load_average']}")
    factories = loop_factories()
    print(f"completion rows: {'pinned to CPU ' + ','.join(map(str, sorted(pinned))) if pinned else 'unpinned'}; "
          f"fan-out on CPUs {','.join(map(str, all_cpus))}")

    n_wakeup = 100 if args.quick else 400
    n_busy = 50 if args.quick else 200
    wakeup = {name: [] for name in factories}
    wakeup["pyloop native future"] = []
    wake_floor = []
    latency = {name: [] for name in factories}
    latency["pyloop native future"] = []
    throughput = {name: [] for name in factories}
    throughput["pyloop native future"] = []
    busy_wakeup = {name: [] for name in factories}
    busy_wakeup["pyloop native future"] = []
    fan = {"one core": [], "native pool": [], "run_in_executor": []}
    workers = ex.pool_size()
    for _ in range(repeats):
        if pinned:
            set_process_affinity(pinned)
        for name, factory in factories.items():
            wakeup[name].append(run(factory, wakeup_python, n_wakeup))
        wakeup["pyloop native future"].append(run(pyloop.new_event_loop, wakeup_native, n_wakeup))
        wake_floor.append(ex.kernel_wake_floor(n_wakeup, WAKEUP_DELAY) * 1e-6)
        for name, factory in factories.items():
            latency[name].append(run(factory, latency_python, n_latency))
            throughput[name].append(run(factory, throughput_python, n_throughput))
        latency["pyloop native future"].append(run(pyloop.new_event_loop, latency_native, n_latency))
        throughput["pyloop native future"].append(run(pyloop.new_event_loop, throughput_native, n_throughput))
        set_process_affinity(all_cpus)
        if len(busy_wakeup["pyloop native future"]) < BUSY_REPEATS:
            for name, factory in factories.items():
                busy_wakeup[name].append(run(factory, wakeup_python, n_busy, True))
            busy_wakeup["pyloop native future"].append(run(pyloop.new_event_loop, wakeup_native, n_busy, True))
        one, pool, executor_time = fanout(buffers, workers)
        fan["one core"].append(one)
        fan["native pool"].append(pool)
        fan["run_in_executor"].append(executor_time)

    def cell(values):  # (median of the measure, median CPU seconds per completion)
        return median([v for v, _ in values]), median([c for _, c in values])

    native_wake = median([v for v, _ in wakeup["pyloop native future"]])
    print(f"\n## wakeup_latency (worker completes -> awaiting task runs, one way; median of "
          f"{repeats} runs of {n_wakeup})")
    print(f"{'completion':44} {'us':>14} {'native x faster':>16}")
    for name, values in wakeup.items():
        label = name if name == "pyloop native future" else f"{name}: call_soon_threadsafe, Python thread"
        value = median([v for v, _ in values])
        print(f"{label:44.44} {value * 1e6:14.2f} {value / native_wake:16.2f}")
    floor = median(wake_floor)
    print(f"{'kernel floor: C++ thread -> poll(), no loop':44.44} {floor * 1e6:14.2f} {floor / native_wake:16.2f}")
    pyloop_python = median([v for v, _ in wakeup["pyloop"]])
    print(f"3x faster than pyloop's call_soon_threadsafe would be {pyloop_python / 3 * 1e6:.2f} us; "
          f"the wake-up alone takes {floor * 1e6:.2f} us, the loop and the task the other "
          f"{(native_wake - floor) * 1e6:.2f} us of the native future's")

    native_busy = median([v for v, _ in busy_wakeup["pyloop native future"]])
    print(f"\n## busy_wakeup_latency (as wakeup_latency while a task runs Python code on the loop, "
          f"yielding every {BUSY_SLICE * 1e6:.0f} us; unpinned; median of "
          f"{min(repeats, BUSY_REPEATS)} runs of up to {n_busy} or {BUSY_CELL_SECONDS:.0f} s)")
    print(f"{'completion':44} {'us':>14} {'native x faster':>16}")
    for name, values in busy_wakeup.items():
        label = name if name == "pyloop native future" else f"{name}: call_soon_threadsafe, Python thread"
        value = median([v for v, _ in values])
        print(f"{label:44.44} {value * 1e6:14.2f} {value / native_busy:16.2f}")

    native_lat, native_lat_cpu = cell(latency["pyloop native future"])
    native_thr, native_thr_cpu = cell(throughput["pyloop native future"])
    print(f"\n## cross_thread_latency (one completion at a time, median of {repeats} x {n_latency})")
    print(f"{'completion':44} {'us/round trip':>14} {'native x faster':>16} {'CPU us/op':>10} {'native x less CPU':>18}")
    for name, values in latency.items():
        label = name if name == "pyloop native future" else f"{name}: call_soon_threadsafe, Python thread"
        value, cpu = cell(values)
        print(f"{label:44.44} {value * 1e6:14.2f} {value / native_lat:16.2f} {cpu * 1e6:10.2f} {cpu / native_lat_cpu:18.2f}")
    print(f"\n## cross_thread_throughput ({n_throughput} in flight, median of {repeats})")
    print(f"{'completion':44} {'completions/s':>14} {'native x faster':>16} {'CPU us/op':>10} {'native x less CPU':>18}")
    for name, values in throughput.items():
        label = name if name == "pyloop native future" else f"{name}: call_soon_threadsafe, Python thread"
        value, cpu = cell(values)
        print(f"{label:44.44} {value:14.0f} {native_thr / value:16.2f} {cpu * 1e6:10.2f} {cpu / native_thr_cpu:18.2f}")
    one = median(fan["one core"])
    size_mib = len(buffers) * len(buffers[0]) / (1 << 20)
    print(f"\n## cpu_fanout ({len(buffers)} buffers, {size_mib:.0f} MiB, {workers} pool threads, "
          f"{info['usable_cores']} usable cores, median of {repeats})")
    print(f"{'way':44} {'ms':>14} {'speedup vs 1 core':>19}")
    for name, values in fan.items():
        label = {"run_in_executor": f"run_in_executor, ThreadPoolExecutor({workers})",
                 "native pool": f"native pool ({workers} threads), gathered"}.get(name, name)
        value = median(values)
        print(f"{label:44} {value * 1e3:14.1f} {one / value:19.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

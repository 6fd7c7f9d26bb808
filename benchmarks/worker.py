"""benchmarks/worker.py — time one (loop, scenario) in a fresh process; print one JSON line.

Run by run.py, one process per measurement, so that no loop inherits another's heap, free
lists or interpreter caches. Usable by hand too:

    python benchmarks/worker.py probe pyloop
    python benchmarks/worker.py calibrate uvloop timer_churn/fire 0.3
    python benchmarks/worker.py measure asyncio sleep_zero 200000
    python benchmarks/worker.py --deadline 10 measure pyloop timer_churn/fire 50000
    PYLOOP_BASELINE=/path/to/build python benchmarks/worker.py probe pyloop-base
"""

import argparse
import faulthandler
import gc
import json
import os
import resource
import sys
import time
import traceback

sys.dont_write_bytecode = True  # keep the source tree free of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import loops      # noqa: E402  (needs the path set above)
import scenarios  # noqa: E402


def _loop_error(context):
    """Turn an exception-handler context into one exception carrying its message."""
    exc = context.get("exception")
    detail = f"{type(exc).__name__}: {exc}" if exc is not None else "no exception"
    return RuntimeError(f"loop reported an error: {context.get('message')} ({detail})")


def _cpu_seconds():
    """CPU seconds (user + system) of this process and of the children it has reaped."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def timed(make_loop, fn, size):
    """Run fn(loop, size) on a fresh loop; return (ops, seconds, CPU seconds of the process
    and the children it reaped meanwhile). Loop errors fail the run."""
    loop = make_loop()
    loop.set_debug(False)  # PYTHONASYNCIODEBUG in the environment must not slow one column
    errors = []

    def on_error(failed_loop, context):
        # Callback exceptions would otherwise be logged and the run would hang or end early.
        errors.append(context)
        failed_loop.stop()

    loop.set_exception_handler(on_error)
    try:
        gc.collect()
        cpu_start = _cpu_seconds()
        start = time.perf_counter()
        try:
            ops = fn(loop, size)
        except BaseException:
            if errors:
                raise _loop_error(errors[0]) from None
            raise
        elapsed = time.perf_counter() - start
        cpu = _cpu_seconds() - cpu_start
        if errors:
            raise _loop_error(errors[0])
    finally:
        loop.close()
    if not isinstance(ops, int) or ops <= 0:
        raise RuntimeError(f"scenario returned {ops!r} operations")
    return ops, elapsed, cpu


def probe(loop_name):
    """Import the loop, make and close one; describe it."""
    loop = loops.factory(loop_name)()
    try:
        info = {"class": loops.describe(loop), "version": loops.version(loop_name),
                "asyncio_fallback": loop_name != "asyncio" and loops.is_asyncio_own(loop)}
        if loop_name == loops.BASELINE:
            info["from"] = loops.baseline_dir()
        return info
    finally:
        loop.close()


def calibrate(loop_name, row, target):
    """Find the size at which one run takes about `target` seconds (growing runs warm up).

    A size asks for about that many operations; scenarios round it to whole rounds and
    raise it to their minimum, so the next size is extrapolated from the operations
    actually done, not from the size asked for.
    """
    make_loop = loops.factory(loop_name)
    fn, min_size = scenarios.lookup(row)
    size = min_size
    while True:
        ops, elapsed, _ = timed(make_loop, fn, size)
        if elapsed >= target / 4 or ops >= 10**9:
            break
        size = int(ops * min(16.0, max(2.0, (target / 3) / max(elapsed, 1e-6))))
    return {"size": max(min_size, int(ops * target / elapsed))}


def measure(loop_name, row, size, target):
    """One warm-up run at a tenth of the size, then the timed run, each on its own loop.

    Size 0 means: calibrate here to `target` seconds first (the calibration runs are then
    the warm-up), which saves a process per cell when sizes need not be identical.
    """
    make_loop = loops.factory(loop_name)
    fn, min_size = scenarios.lookup(row)
    if size:
        timed(make_loop, fn, max(min_size, size // 10))
    else:
        size = calibrate(loop_name, row, target)["size"]
    ops, elapsed, cpu = timed(make_loop, fn, size)
    # cpu_us: CPU µs per operation, the children the scenario started and reaped included.
    return {"size": size, "ops": ops, "seconds": elapsed, "rate": ops / elapsed,
            "cpu_us": cpu * 1e6 / ops}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    command = commands.add_parser("probe")
    command.add_argument("loop")
    command = commands.add_parser("calibrate")
    command.add_argument("loop")
    command.add_argument("row")
    command.add_argument("target", type=float)
    command = commands.add_parser("measure")
    command.add_argument("loop")
    command.add_argument("row")
    command.add_argument("size", type=int, help="0: calibrate to --target first")
    command.add_argument("--target", type=float, default=0.3, metavar="SECONDS")
    parser.add_argument("--deadline", type=float, default=60.0, metavar="SECONDS",
                        help="dump every thread's stack and exit if still running then")
    args = parser.parse_args(argv)
    # A loop that loses a callback hangs the scenario; show where, then give up.
    faulthandler.dump_traceback_later(args.deadline, exit=True)
    try:
        if args.command == "probe":
            result = probe(args.loop)
        elif args.command == "calibrate":
            result = calibrate(args.loop, args.row, args.target)
        else:
            result = measure(args.loop, args.row, args.size, args.target)
    except Exception as exc:  # reported to run.py as data, with the traceback on stderr
        traceback.print_exc()
        answer = {"error": f"{type(exc).__name__}: {exc}"}
        # A method the loop lacks, also when the loop reported it through its handler.
        if isinstance(exc, NotImplementedError) or "(NotImplementedError" in str(exc):
            answer["not_implemented"] = True
        print(json.dumps(answer))
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

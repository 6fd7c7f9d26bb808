"""benchmarks/timer_churn.py — call_later throughput with a steady heap of spread timers.

POPULATION timers are kept in flight: each one, when it fires, schedules its replacement
with a delay drawn from [0, MAX_DELAY], until `size` timers have been scheduled. Delays are
short so every timer really fires, and the population is large enough that the loop, not
the clock, is the limit (POPULATION / mean delay is far above any loop's rate), so the
timers run overdue in batches: the heap is exercised at a realistic size and the number is
a throughput, not a sleep.

  fire         every timer fires. ops = timers scheduled and fired.
  cancel_half  each firing timer also schedules a guard timer (a timeout, due GUARD_MARGIN
               after it) and the guard is cancelled when its partner fires, so half of all
               timers are cancelled, lazily or not, before they are due.
               ops = timers scheduled (half fired, half cancelled).

Checks: every timer fires exactly once, no cancelled timer ever runs, and a sentinel timer
proves delays are honoured (it must not fire before its delay has passed by the wall clock).
"""

import asyncio
import random
import time

POPULATION = 10_000     # timers in flight at once (the steady size of the timer heap); a
                        # loop cannot catch up below POPULATION / (MAX_DELAY / 2) = 20M ops/s
MAX_DELAY = 0.001       # delays are drawn uniformly from [0, MAX_DELAY] seconds
GUARD_MARGIN = 0.002    # a guard is due this long after its partner; > 1 ms so uvloop's
                        # millisecond rounding can never make the guard due first
SENTINEL_DELAY = 0.005  # delay of the timer checked against the wall clock
SENTINEL_SLACK = 0.002  # early firing tolerated: uvloop rounds delays to whole milliseconds
                        # and fires up to ~1.2 ms early
MIN_SIZE = POPULATION

# Precomputed so that Python's random module is not part of what is measured.
_DELAY_MASK = 4095
_DELAYS = [random.Random(1_000_003).random() * MAX_DELAY for _ in range(_DELAY_MASK + 1)]


def _start_sentinel(loop):
    """Schedule the wall-clock check; return the future that gets its elapsed seconds."""
    fired = loop.create_future()
    started = time.monotonic()
    loop.call_later(SENTINEL_DELAY, lambda: fired.set_result(time.monotonic() - started))
    return fired


def _check_sentinel(loop, fired):
    elapsed = loop.run_until_complete(fired)
    if elapsed < SENTINEL_DELAY - SENTINEL_SLACK:
        raise RuntimeError(f"a {SENTINEL_DELAY * 1e3:.1f} ms timer fired after "
                           f"{elapsed * 1e3:.2f} ms of wall-clock time")


def fire(loop, size):
    """Churn POPULATION timers until about `size` were scheduled; return timers fired."""
    total = max(size, POPULATION)
    sentinel = _start_sentinel(loop)
    done = loop.create_future()
    scheduled = 0
    fired = 0

    def on_timer():
        nonlocal scheduled, fired
        fired += 1
        if scheduled < total:
            loop.call_later(_DELAYS[scheduled & _DELAY_MASK], on_timer)
            scheduled += 1
        elif fired == total:
            done.set_result(fired)

    while scheduled < POPULATION:
        loop.call_later(_DELAYS[scheduled & _DELAY_MASK], on_timer)
        scheduled += 1
    loop.run_until_complete(done)
    _check_sentinel(loop, sentinel)
    if fired != total or scheduled != total:
        raise RuntimeError(f"{scheduled} timers scheduled and {fired} fired, {total} expected")
    return fired


def cancel_half(loop, size):
    """Churn timer pairs, cancelling one of each; return timers scheduled (fired + cancelled)."""
    pairs = max(size // 2, POPULATION)
    sentinel = _start_sentinel(loop)
    done = loop.create_future()
    scheduled = 0
    fired = 0
    guards_run = 0

    def on_guard():
        nonlocal guards_run
        guards_run += 1
        raise RuntimeError("a cancelled timer ran")

    def schedule_pair():
        # The partner is scheduled first so its deadline is the earlier one even if a GC
        # pause separates the two calls; it gets its guard through a one-slot list.
        delay = _DELAYS[scheduled & _DELAY_MASK]
        slot = []
        loop.call_later(delay, on_timer, slot)
        slot.append(loop.call_later(delay + GUARD_MARGIN, on_guard))

    def on_timer(slot):
        nonlocal scheduled, fired
        slot[0].cancel()
        fired += 1
        if scheduled < pairs:
            schedule_pair()
            scheduled += 1
        elif fired == pairs:
            done.set_result(fired)

    while scheduled < POPULATION:
        schedule_pair()
        scheduled += 1
    loop.run_until_complete(done)
    # Run past the last guards' deadlines: a cancelled timer that still fires is caught.
    loop.run_until_complete(asyncio.sleep(MAX_DELAY + GUARD_MARGIN + 0.001))
    _check_sentinel(loop, sentinel)
    if fired != pairs or scheduled != pairs or guards_run:
        raise RuntimeError(f"{fired} of {pairs} timers fired, {guards_run} cancelled timers ran")
    return 2 * pairs


VARIANTS = {
    "timer_churn/fire": fire,
    "timer_churn/cancel_half": cancel_half,
}
run = fire

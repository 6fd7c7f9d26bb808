"""benchmarks/call_soon_storm.py — call_soon throughput: callbacks scheduled from callbacks.

Two shapes, both counting callbacks actually run (ops = callbacks run):

  chains   CHAINS callbacks each reschedule themselves with one argument until `size`
           callbacks have run: a steady ready queue of CHAINS handles per iteration, one
           call_soon per callback (the shape of many tasks stepping concurrently).
  fanout   one callback schedules FANOUT leaf callbacks at once and then itself again: a
           ready queue that grows in bursts (the shape of a batch of futures completing).

Both check the FIFO order asyncio guarantees for call_soon, so a loop that drops, repeats
or reorders callbacks fails instead of producing a fast number.
"""

CHAINS = 100      # concurrent self-rescheduling chains in the `chains` shape
FANOUT = 1000     # leaf callbacks scheduled by one callback in the `fanout` shape
MIN_SIZE = 2000   # smallest meaningful size (a few rounds of either shape)


def chains(loop, size):
    """Run CHAINS self-rescheduling chains until about `size` callbacks ran; return the count."""
    rounds = max(1, size // CHAINS)
    total = rounds * CHAINS
    done = loop.create_future()
    expected = 0  # the chain that must run next: FIFO keeps the chains in order every turn
    ran = 0

    def step(chain, left):
        nonlocal expected, ran
        if chain != expected:
            raise RuntimeError(f"call_soon order broken: chain {chain} ran, {expected} expected")
        expected = chain + 1 if chain + 1 < CHAINS else 0
        ran += 1
        if left:
            loop.call_soon(step, chain, left - 1)
        elif ran == total:
            done.set_result(ran)

    for chain in range(CHAINS):
        loop.call_soon(step, chain, rounds - 1)
    loop.run_until_complete(done)
    if ran != total:
        raise RuntimeError(f"{ran} callbacks ran, {total} expected")
    return ran


def fanout(loop, size):
    """Schedule FANOUT leaves per burst until about `size` callbacks ran; return the count."""
    bursts = max(1, size // FANOUT)
    leaves = bursts * FANOUT
    done = loop.create_future()
    expected = 0  # the leaf that must run next: leaves run in the order they were scheduled
    ran = 0       # burst callbacks and leaves run so far

    def leaf(index):
        nonlocal expected, ran
        if index != expected:
            raise RuntimeError(f"call_soon order broken: leaf {index} ran, {expected} expected")
        expected = index + 1
        ran += 1
        if expected == leaves:
            done.set_result(ran)

    def burst(number):
        nonlocal ran
        ran += 1
        first = number * FANOUT
        for index in range(first, first + FANOUT):
            loop.call_soon(leaf, index)
        if number + 1 < bursts:
            # Scheduled after this burst's leaves, so it runs once they all have run.
            loop.call_soon(burst, number + 1)

    loop.call_soon(burst, 0)
    loop.run_until_complete(done)
    if expected != leaves or ran != leaves + bursts:
        raise RuntimeError(f"{ran} callbacks ran, {leaves + bursts} expected")
    return ran


VARIANTS = {
    "call_soon_storm/chains": chains,
    "call_soon_storm/fanout": fanout,
}
run = chains

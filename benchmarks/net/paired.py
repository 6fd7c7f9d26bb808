"""benchmarks/net/paired.py — echo latency, every loop measured request by request.

One connection's echo rate is one over the round-trip latency. On a shared machine that
latency drifts by tens of percent within seconds, so runs taken one after the other (run.py's
one-connection rows) differ between repeats by more than an event loop can change. Here one
client (paired_client.c) holds a connection to each loop's server and to the bare C server and
sends one request to each in turn, round after round: requests to different servers are
microseconds apart and see the same machine. The comparison is paired, round by round.

For each cell (server style x message size) this prints each server's median latency and
PyLoop's ratio to each other loop (uvloop, rloop, asyncio if asked for, the --baseline build):
that loop's median latency over PyLoop's, so above 1 means PyLoop answers sooner (the same
sense as run.py's requests-per-second ratios). The rounds are cut into blocks; a ratio is the
median of the blocks' ratios, with a distribution-free 95% interval for that median, and
"ahead" counts the blocks in which PyLoop's median was lower. "floor" is the C server's
median latency over PyLoop's.

--conns N (N > 1) measures N connections the same way: the client holds N connections to
each server, and a server's turn is a batch of one request on each of them at once, timed
until every echo is back. N requests in flight together is what run.py's N-connection rows
load the server with; the batch's latency is paired round by round as above.

    .venv/bin/python benchmarks/net/paired.py                       # every style, 1/10/100 KiB
    .venv/bin/python benchmarks/net/paired.py --styles protocol --sizes 1k --duration 20
    .venv/bin/python benchmarks/net/paired.py --pin same            # all on one CPU
    .venv/bin/python benchmarks/net/paired.py --pin split --conns 10 # batches of 10
    .venv/bin/python benchmarks/net/paired.py --baseline DIR        # and the build in DIR

--pin: none (default: the scheduler places every process), split (servers on one CPU, the
client on another), same (servers and client on one CPU: no cross-CPU wake-up, so the latency
is the CPU work of both sides and the loop's own cost shows most).
"""

import argparse
import array
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import loops  # noqa: E402  (benchmarks/loops.py)

STYLES = ("sock", "streams", "protocol", "buffered")
SIZES = {"1k": 1024, "10k": 10 * 1024, "100k": 100 * 1024}


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--loops", default="uvloop,rloop,pyloop",
                        help="loops to compare (pyloop and at least one other; default "
                             "uvloop,rloop,pyloop; --baseline adds pyloop-base)")
    parser.add_argument("--styles", default=",".join(STYLES))
    parser.add_argument("--sizes", default=",".join(SIZES))
    parser.add_argument("--duration", type=float, default=10.0, help="timed seconds per cell")
    parser.add_argument("--warmup", type=float, default=1.0, help="untimed seconds per cell")
    parser.add_argument("--block", type=int,
                        help="rounds per block (default 500, or 500/N with --conns N)")
    parser.add_argument("--conns", type=int, default=1,
                        help="connections per server; above 1, each turn is a batch (default 1)")
    parser.add_argument("--pin", choices=("none", "split", "same"), default="none")
    parser.add_argument("--no-floor", action="store_true", help="leave out the bare C server")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    loops.add_baseline_option(parser)
    args = parser.parse_args(argv)
    loops.use_baseline_option(parser, args)
    args.loops = [name for name in args.loops.split(",") if name]
    args.styles = [name for name in args.styles.split(",") if name]
    args.sizes = [name for name in args.sizes.split(",") if name]
    for name in args.loops:
        if name not in loops.LOOPS:
            parser.error(f"unknown loop {name!r} (choose from {', '.join(loops.LOOPS)})")
    if args.baseline:
        args.loops.append(loops.BASELINE)
    if "pyloop" not in args.loops or len(set(args.loops)) < 2:
        parser.error("--loops must include pyloop and another loop (the ratios compare them)")
    for name in args.styles:
        if name not in STYLES:
            parser.error(f"unknown style {name!r} (choose from {', '.join(STYLES)})")
    for name in args.sizes:
        if name not in SIZES:
            parser.error(f"unknown size {name!r} (choose from {', '.join(SIZES)})")
    if args.block is None:
        args.block = max(20, 500 // args.conns)
    if args.duration <= 0 or args.warmup < 0 or args.block < 10:
        parser.error("--duration must be positive, --warmup not negative, --block at least 10")
    if not 1 <= args.conns <= 64:
        parser.error("--conns must be 1 to 64")
    if args.pin != "none" and len(os.sched_getaffinity(0)) < 2:
        print(f"--pin {args.pin} needs two CPUs and this process has one: nothing pinned",
              file=sys.stderr)
        args.pin = "none"
    return args


def median_interval(values, z=1.96):
    """The median of `values` and a distribution-free ~95% interval for it (order statistics)."""
    ordered = sorted(values)
    n = len(ordered)
    half_width = z * math.sqrt(n) / 2
    low = max(0, int(math.floor(n / 2 - half_width)))
    high = min(n - 1, int(math.ceil(n / 2 + half_width)))
    return statistics.median(ordered), ordered[low], ordered[high]


def measure(programs, ports, size, args, client_cpus):
    """Run paired_client against `ports`; returns one latency column (ns) per port."""
    with tempfile.NamedTemporaryFile(suffix=".raw") as raw:
        command = [programs["paired_client"], "--host", harness.HOST,
                   "--ports", ",".join(str(port) for port in ports), "--size", str(size),
                   "--conns", str(args.conns),
                   "--duration", f"{args.duration:g}", "--warmup", f"{args.warmup:g}",
                   "--raw", raw.name]
        limit = args.duration + args.warmup + 60
        done = subprocess.run(command, capture_output=True, text=True, timeout=limit,
                              preexec_fn=harness.pin_to(client_cpus))
        lines = done.stdout.strip().splitlines()
        answer = json.loads(lines[-1]) if lines else {}
        if done.returncode != 0 or "rounds" not in answer:
            raise harness.Failure(f"paired_client: {answer.get('error') or done.stderr.strip()}")
        latencies = array.array("I")
        latencies.frombytes(raw.read())
    count = len(ports)
    return [latencies[i::count] for i in range(count)]


def paired_ratio(peer, py, block):
    """PyLoop's ratio to `peer` (latency columns), block by block: median, interval, ahead."""
    blocks = [statistics.median(peer[start:start + block])
              / statistics.median(py[start:start + block])
              for start in range(0, len(py) - block + 1, block)]
    ratio, low, high = median_interval(blocks)
    return {"ratio": ratio, "low": low, "high": high, "blocks": len(blocks),
            "ahead": sum(value > 1 for value in blocks)}


def cell_figures(columns, names, block):
    """Median latencies (us) and PyLoop's paired ratio to each other loop for one cell."""
    figures = {"rounds": len(columns[0]), "median_us": {}, "vs": {}}
    for name, column in zip(names, columns):
        figures["median_us"][name] = statistics.median(column) / 1000
    py = columns[names.index("pyloop")]
    for _, peer in loops.pyloop_ratios(names):
        figures["vs"][peer] = paired_ratio(columns[names.index(peer)], py, block)
    if "C" in names:
        figures["floor"] = figures["median_us"]["C"] / figures["median_us"]["pyloop"]
    return figures


def fmt_paired(vs):
    return f"{vs['ratio']:.3f} ({vs['low']:.3f}-{vs['high']:.3f})"


def table(results, names, markdown):
    peers = [peer for _, peer in loops.pyloop_ratios(names)]
    header = (["cell"] + [f"{name} µs" for name in names]
              + [title for peer in peers for title in (f"pyloop vs {peer} (95% CI)",
                                                       "blocks ahead")]
              + (["pyloop/C floor"] if "C" in names else []))
    rows = []
    for cell, figures in results:
        row = [cell] + [f"{figures['median_us'][name]:.1f}" if name in figures["median_us"]
                        else "n/a" for name in names]
        for peer in peers:
            vs = figures["vs"].get(peer)
            row += [fmt_paired(vs), f"{vs['ahead']}/{vs['blocks']}"] if vs else ["n/a", "-"]
        if "floor" in figures:
            row.append(f"{figures['floor'] * 100:.0f}%")
        rows.append(row)
    if markdown:
        lines = ["| " + " | ".join(header) + " |",
                 "| --- |" + " ---: |" * (len(header) - 1)]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(lines)
    widths = [max(len(str(line[i])) for line in [header] + rows) for i in range(len(header))]
    return "\n".join("  ".join(str(value).rjust(width) if i else str(value).ljust(width)
                               for i, (value, width) in enumerate(zip(line, widths)))
                     for line in [header] + rows)


def main(argv=None):
    args = parse_args(argv)
    programs = harness.build_c_programs()
    server_cpus, client_cpus = harness.placement(args.pin)
    names = list(args.loops) + ([] if args.no_floor else ["C"])
    print(f"echo on {args.conns} connection(s) per server, paired rounds: {args.duration:g} s per cell after "
          f"{args.warmup:g} s warm-up, blocks of {args.block} rounds, pin={args.pin}",
          file=sys.stderr, flush=True)
    results = []
    for style in args.styles:
        started = {}  # name -> its running server, in the order of names
        try:
            for name in names:
                server = (harness.floor_server(programs, cpus=server_cpus) if name == "C"
                          else harness.python_server(name, style, cpus=server_cpus))
                try:
                    started[name] = server.__enter__()
                except harness.Failure as failure:
                    if not failure.na or name == "pyloop":
                        raise
                    # A peer lacking a method the style needs: its column reads n/a.
                    print(f"echo/{style} {name}: n/a ({failure.na}): {failure.detail}",
                          file=sys.stderr, flush=True)
            for size_key in args.sizes:
                columns = measure(programs, [server.port for server in started.values()],
                                  SIZES[size_key], args, client_cpus)
                for server in started.values():
                    server.check()
                figures = cell_figures(columns, list(started), args.block)
                cell = f"echo/{style}/{size_key}/c{args.conns}"
                results.append((cell, figures))
                print(f"{cell}: " + ", ".join(f"pyloop vs {peer} {fmt_paired(vs)}"
                                              for peer, vs in figures["vs"].items())
                      + f", {figures['rounds']} rounds", file=sys.stderr, flush=True)
        finally:
            for server in started.values():
                server.__exit__(None, None, None)
    print(table(results, names, args.markdown))
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"pin": args.pin, "conns": args.conns, "duration": args.duration,
                       "block": args.block, "baseline": loops.baseline_dir(),
                       "cells": dict(results)}, out, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

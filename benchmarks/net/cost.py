"""benchmarks/net/cost.py — what one echo request costs each loop's server: CPU and syscalls.

Requests per second on a shared 2-core machine swing by tens of percent from run to run;
what a server spends per request moves much less. For each loop and server style this runs
the same echo client (benchmarks/net/echo_client.c) against the server and reports:

- CPU microseconds per request: the server process's user + system time (/proc/PID/stat)
  over the run, divided by the requests the client completed (median of --repeats runs);
- with --baseline DIR, the build in DIR as one more loop (pyloop-base), for before/after;
- with --syscalls: system calls per request, counted by `strace -c -f` attached to the
  server for one extra run (strace slows the server; only the counts are used).

    .venv/bin/python benchmarks/net/cost.py --styles protocol,buffered --size 1024 --conns 1
"""

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import loops  # noqa: E402  (benchmarks/loops.py)

STYLES = ("sock", "streams", "protocol", "buffered")


def measured_run(programs, server, args):
    """One client run; returns (requests, server CPU seconds spent during it)."""
    answer = harness.run_echo_client(programs, server, args.conns, args.size, args.duration, 0)
    return answer["requests"], answer["server_cpu_s"]


_STRACE_ROW = re.compile(r"^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:(\d+)\s+)?(\w+)\s*$")


def syscalls_per_request(programs, server, args):
    """{syscall: calls per request} over one run with strace attached to the server."""
    with tempfile.NamedTemporaryFile("r", suffix=".strace") as out:
        tracer = subprocess.Popen(["strace", "-c", "-f", "-o", out.name, "-p",
                                   str(server.proc.pid)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)  # attached before the load starts
        try:
            answer = harness.run_echo_client(programs, server, args.conns, args.size,
                                             args.duration, 0)
        finally:
            tracer.terminate()
            tracer.wait(timeout=10)
        counts = {}
        for line in out.read().splitlines():
            match = _STRACE_ROW.match(line)
            if match and match.group(3) != "total":
                counts[match.group(3)] = int(match.group(1))
    requests = max(answer["requests"], 1)
    return {name: calls / requests for name, calls in counts.items()}


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--loops", help="comma list (default: every loop of the run, "
                        "pyloop-base included with --baseline)")
    parser.add_argument("--styles", default="protocol,buffered,streams,sock")
    parser.add_argument("--size", type=int, default=1024, help="message bytes (default 1024)")
    parser.add_argument("--conns", type=int, default=1, help="connections (default 1)")
    parser.add_argument("--duration", type=float, default=2.0, help="seconds per run")
    parser.add_argument("--repeats", type=int, default=5, help="runs per cell (median)")
    parser.add_argument("--syscalls", action="store_true", help="also count syscalls (strace)")
    loops.add_baseline_option(parser)
    args = parser.parse_args(argv)
    loops.use_baseline_option(parser, args)
    known = loops.columns()
    args.loops = [name for name in (args.loops or ",".join(known)).split(",") if name]
    args.styles = [name for name in args.styles.split(",") if name]
    for name in args.loops:
        if name not in known:
            parser.error(f"unknown loop {name!r} (choose from {', '.join(known)})")
    for name in args.styles:
        if name not in STYLES:
            parser.error(f"unknown style {name!r} (choose from {', '.join(STYLES)})")
    if args.syscalls and not shutil.which("strace"):
        parser.error("--syscalls needs strace (apt-get install -y strace)")
    return args


def main(argv=None):
    args = parse_args(argv)
    programs = harness.build_c_programs()
    print(f"echo {args.size} B, {args.conns} connection(s), {args.duration:g} s x "
          f"{args.repeats} runs per cell; server CPU (user + system) per request")
    for style in args.styles:
        samples = {loop: [] for loop in args.loops}
        calls = {}
        servers = {loop: harness.python_server(loop, style).__enter__() for loop in args.loops}
        try:
            for loop in args.loops:  # warm up: imports, first connections, caches
                harness.run_echo_client(programs, servers[loop], args.conns, args.size, 0.3, 0)
            for _ in range(args.repeats):  # interleaved, so drifting noise hits all alike
                for loop in args.loops:
                    requests, spent = measured_run(programs, servers[loop], args)
                    samples[loop].append(spent * 1e6 / max(requests, 1))
            if args.syscalls:
                for loop in args.loops:
                    calls[loop] = syscalls_per_request(programs, servers[loop], args)
        finally:
            for server in servers.values():
                server.__exit__(None, None, None)
        base = statistics.median(samples["uvloop"]) if "uvloop" in samples else None
        for loop in args.loops:
            median = statistics.median(samples[loop])
            spread = (max(samples[loop]) - min(samples[loop])) / median * 100
            ratio = f"  {median / base:.3f}x uvloop's" if base else ""
            line = f"{style:9} {loop:8} {median:7.2f} us/request (±{spread:.0f}%){ratio}"
            if loop in calls:
                total = sum(calls[loop].values())
                top = sorted(calls[loop].items(), key=lambda item: -item[1])[:5]
                line += f"  syscalls {total:.2f}: " + ", ".join(
                    f"{name} {count:.2f}" for name, count in top)
            print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

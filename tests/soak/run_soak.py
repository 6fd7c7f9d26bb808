"""tests/soak/run_soak.py — soak a real aiohttp server on PyLoop; resources must stay flat.

    .venv/bin/python tests/soak/run_soak.py                  # PyLoop: 10^6 requests, 10^4+ connections
    .venv/bin/python tests/soak/run_soak.py --loop asyncio   # the same soak on CPython's loop
    .venv/bin/python tests/soak/run_soak.py --requests 200000 --phases 2   # a shorter one

The server (soak_server.py: an aiohttp application) runs in its own process on the loop under
test, pinned to one CPU; the load comes from other processes on the other CPU:
  - wrk, keep-alive (50 connections): the bulk of the requests;
  - wrk with "Connection: close": one request per connection, thousands of connections a second;
  - churn_client.py: connections that end every other way (nothing sent, half a request, RST
    before the answer, RST in the middle of a streamed body, a half-close, a 32 KiB upload).

After a warm-up (every kind of load once), the server reports its baseline: open descriptors,
gc object count after gc.collect(), RSS, tasks alive. Then --phases phases, each one keep-alive
run (long enough for the phase's share of --requests, by the rate of the run before), one
second of Connection: close and --churn connections of churn_client.py; after each phase the
server reports again, once its figures have settled (the gc object count unchanged over a
quarter of a second, and within the bounds below; up to 7 s after the clients end: the
server may still be reading the last EOFs, and uvicorn keeps a reset connection's objects
until its 5 s keep-alive timer fires; the wait is printed as "settle"). The baseline is
taken the same way. The requests and connections are the
server's own counts (every request aiohttp handed to a handler, every connection the loop
accepted).

The soak fails if a client or the server reports an error, if the server answered fewer than
--requests requests or accepted fewer than --connections connections, if it took longer than
--time-limit, or if the figures are not flat. The bounds, against the baseline, at every
checkpoint:
  descriptors  equal. Every client has closed its connections: a descriptor more is a leak.
  tasks        equal. A task more is a handler or a transport callback that never finished.
  gc objects   at most +GC_SLACK (1000). A leak of one object per 10 connections or per 1000
               requests exceeds it by the end; what remains is caches that fill once
               (aiohttp's, yarl's, the loop's free lists), which the warm-up has mostly filled.
  RSS          at most +RSS_SLACK_MIB (16 MiB), and at most +RSS_TAIL_MIB (4 MiB) from the
               middle checkpoint to the last. 10^6 requests make a leak of 16 bytes a request
               exceed the first; the allocators keep what they once held (pymalloc arenas,
               glibc's heaps grow with the peak of live buffers) and the second half of the
               soak sees the same peak as the first, so a steady leak shows in the tail bound.
Exit status 0 when flat, 1 otherwise (the reason printed last).

--leak fd|object|memory makes the server leak on purpose (a descriptor every 10^4 requests, a
gc object every 100 requests, 64 bytes every request): each must make the soak fail, which is
how the bounds were checked (docs/decisions/0029-soak-and-web-benchmarks.md).
"""

import argparse
import json
import math
import os
import subprocess
import sys
import time
import urllib.request

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "benchmarks", "net"))
import harness  # noqa: E402  (benchmarks/net/harness.py: servers on fresh ports, wrk)

GC_SLACK = 1000
RSS_SLACK_MIB = 16
RSS_TAIL_MIB = 4
# How long a checkpoint waits for the figures to come back within the bounds after the
# clients end: the server may still be reading the last EOFs, and uvicorn's keep-alive timer
# (timeout_keep_alive, 5 s), which uvicorn does not cancel when a connection is lost with an
# error (a reset), holds that connection's objects until it fires, on every loop.
SETTLE_SECONDS = 7.0
STABLE_OBJECTS = 50  # gc objects two looks may differ by and count as settled
WRK_CONNECTIONS = 50


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--loop", default="pyloop", choices=("pyloop", "asyncio", "uvloop"))
    parser.add_argument("--framework", default="aiohttp", choices=("aiohttp", "uvicorn"),
                        help="aiohttp's web server (default) or uvicorn's httptools protocol "
                             "with an ASGI app")
    parser.add_argument("--requests", type=int, default=1_000_000,
                        help="requests the server must answer in the phases (default 10^6)")
    parser.add_argument("--connections", type=int, default=10_000,
                        help="connections it must accept in the phases (default 10^4)")
    parser.add_argument("--phases", type=int, default=5, help="checkpoints after the baseline")
    parser.add_argument("--churn", type=int, default=700,
                        help="churn_client.py connections per phase (default 700)")
    parser.add_argument("--time-limit", type=float, default=480.0, metavar="SECONDS",
                        help="fail when the phases take longer (default 480)")
    parser.add_argument("--json", metavar="PATH", help="write the checkpoints here")
    parser.add_argument("--leak", choices=("fd", "object", "memory"),
                        help="make the server leak on purpose (soak_server.py --leak): the "
                             "soak must then fail")
    args = parser.parse_args(argv)
    if min(args.requests, args.connections, args.phases, args.churn) < 1:
        parser.error("counts must be positive")
    return args


class Soak:
    def __init__(self, args, server, client_cpus):
        self.args = args
        self.server = server
        self.client_cpus = client_cpus
        self.url = f"http://{harness.HOST}:{server.port}/"

    # -- load ----------------------------------------------------------------------------

    def wrk(self, seconds, close=False):
        """One wrk run; returns its parsed report. Any non-2xx answer or socket error (a
        timeout included) fails the soak."""
        command = [harness.require_wrk(), "-t1", f"-c{WRK_CONNECTIONS}", f"-d{seconds}s",
                   "--timeout", "5s", self.url]
        if close:
            command[1:1] = ["-H", "Connection: close"]
        done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 30,
                              preexec_fn=harness.pin_to(self.client_cpus))
        result = harness.parse_wrk(done.stdout)
        errors = {kind: count for kind, count in result["errors"].items() if count}
        if done.returncode != 0 or not result["requests"] or result["non_2xx"] or errors:
            raise SoakError(f"wrk{' (Connection: close)' if close else ''}: status "
                            f"{done.returncode}, {result['requests']} requests, "
                            f"{result['non_2xx']} non-2xx, socket errors {errors} "
                            f"{done.stderr.strip()[-300:]}")
        self.server.check()
        return result

    def churn(self, count):
        command = [sys.executable, "-B", os.path.join(HERE, "churn_client.py"),
                   "--host", harness.HOST, "--port", str(self.server.port),
                   "--connections", str(count)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120,
                              preexec_fn=harness.pin_to(self.client_cpus))
        lines = done.stdout.strip().splitlines()
        answer = json.loads(lines[-1]) if lines else {}
        if done.returncode != 0 or "error" in answer or not answer:
            raise SoakError(f"churn_client: {answer.get('error') or done.stderr.strip()[-300:]}")
        self.server.check()
        return answer

    # -- figures -------------------------------------------------------------------------

    def stats(self):
        with urllib.request.urlopen(self.url + "_soak/stats", timeout=30) as reply:
            return json.loads(reply.read())

    def settled_stats(self, baseline):
        """The server's figures once they have settled: the gc object count unchanged (within
        STABLE_OBJECTS) since the previous look a quarter of a second before, and, against
        the baseline when there is one, descriptors and tasks back to its own and gc objects
        within the bound. After SETTLE_SECONDS the last figures, which the bounds will then
        reject. The seconds it took are under "settle"."""
        started, previous = time.monotonic(), None
        while True:
            figures = self.stats()
            figures["settle"] = round(time.monotonic() - started, 1)
            stable = (previous is not None
                      and abs(figures["gc_objects"] - previous["gc_objects"]) <= STABLE_OBJECTS)
            if stable and (baseline is None or (
                    figures["fds"] <= baseline["fds"] and figures["tasks"] <= baseline["tasks"]
                    and figures["gc_objects"] - baseline["gc_objects"] <= GC_SLACK)):
                return figures
            if figures["settle"] > SETTLE_SECONDS:
                return figures
            previous = figures
            time.sleep(0.25)

    # -- the soak ------------------------------------------------------------------------

    def warm_up(self):
        self.wrk(2)
        self.wrk(1, close=True)
        self.churn(self.args.churn)
        self.stats()  # the stats path itself warmed up too
        return self.settled_stats(None)

    def run(self):
        args = self.args
        started = time.monotonic()
        baseline = self.warm_up()
        base_requests, base_connections = baseline["requests"], baseline["connections"]
        rows = [dict(baseline, phase="baseline", seconds=0.0)]
        print(_row_text(rows[-1], baseline), flush=True)
        rate = None
        soak_started = time.monotonic()
        for phase in range(1, args.phases + 1):
            # The keep-alive runs of this phase: until the server's count reaches this
            # phase's share of --requests, each run as long as the last rate says it needs.
            target = base_requests + math.ceil(args.requests * phase / args.phases)
            served = self.stats()["requests"]
            while served < target:
                if rate is None:
                    seconds = 2
                else:
                    seconds = max(1, min(30, math.ceil((target - served) * 1.05 / rate)))
                result = self.wrk(seconds)
                rate = result["rps"]
                served = self.stats()["requests"]
                self.check_time(soak_started)
            self.wrk(1, close=True)
            self.churn(args.churn)
            figures = self.settled_stats(baseline)
            rows.append(dict(figures, phase=str(phase),
                             seconds=round(time.monotonic() - soak_started, 1)))
            print(_row_text(rows[-1], baseline), flush=True)
            self.check_time(soak_started)
        totals = {"requests": rows[-1]["requests"] - base_requests,
                  "connections": rows[-1]["connections"] - base_connections,
                  "seconds": round(time.monotonic() - started, 1)}
        return rows, totals

    def check_time(self, soak_started):
        spent = time.monotonic() - soak_started
        if spent > self.args.time_limit:
            raise SoakError(f"the phases took {spent:.0f} s, over --time-limit "
                            f"{self.args.time_limit:g} s")


class SoakError(Exception):
    pass


def _row_text(row, baseline):
    return (f"{row['phase']:>8}  {row['requests'] - baseline['requests']:>9}  "
            f"{row['connections'] - baseline['connections']:>7}  {row['fds']:>3}  "
            f"{row['tasks']:>5}  {row['gc_objects']:>7} ({row['gc_objects'] - baseline['gc_objects']:+d})"
            f"  {row['rss_kib'] / 1024:7.1f} ({(row['rss_kib'] - baseline['rss_kib']) / 1024:+.1f})"
            f"  {row['seconds']:>7}  {row['settle']:>6}")


HEADER = ("   phase   requests    conns  fds  tasks  gc objects (Δ)   RSS MiB (Δ)  seconds  settle")


def verdicts(rows):
    """The bounds (the module's docstring), checked: a list of what broke them."""
    baseline, checkpoints = rows[0], rows[1:]
    broken = []
    for row in checkpoints:
        where = f"after phase {row['phase']}"
        if row["fds"] != baseline["fds"]:
            broken.append(f"{where}: {row['fds']} descriptors open, {baseline['fds']} at the "
                          "baseline")
        if row["tasks"] != baseline["tasks"]:
            broken.append(f"{where}: {row['tasks']} tasks alive, {baseline['tasks']} at the "
                          "baseline")
        if row["gc_objects"] - baseline["gc_objects"] > GC_SLACK:
            broken.append(f"{where}: {row['gc_objects'] - baseline['gc_objects']} more gc "
                          f"objects than at the baseline (bound {GC_SLACK})")
        if row["rss_kib"] - baseline["rss_kib"] > RSS_SLACK_MIB * 1024:
            broken.append(f"{where}: RSS {(row['rss_kib'] - baseline['rss_kib']) / 1024:.1f} MiB "
                          f"above the baseline (bound {RSS_SLACK_MIB} MiB)")
        if row["loop_errors"]:
            broken.append(f"{where}: the loop reported {row['loop_errors']} errors")
    if len(checkpoints) >= 2:
        middle, last = checkpoints[(len(checkpoints) - 1) // 2], checkpoints[-1]
        tail = (last["rss_kib"] - middle["rss_kib"]) / 1024
        if tail > RSS_TAIL_MIB:
            broken.append(f"RSS grew {tail:.1f} MiB from phase {middle['phase']} to phase "
                          f"{last['phase']} (bound {RSS_TAIL_MIB} MiB)")
    return broken


def main(argv=None):
    args = parse_args(argv)
    server_cpus, client_cpus = (harness.placement("split")
                                if len(os.sched_getaffinity(0)) >= 2 else (None, None))
    command = [sys.executable, "-B", os.path.join(HERE, "soak_server.py"), "--loop", args.loop,
               "--framework", args.framework,
               "--host", harness.HOST, "--port", "{port}"]
    if args.leak:
        command += ["--leak", args.leak]
    print(f"soak: {args.framework} on {args.loop}; {args.requests} requests and {args.connections} "
          f"connections at least, {args.phases} phases; server on CPU {_cpus(server_cpus)}, "
          f"clients on CPU {_cpus(client_cpus)}; load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    rows, totals, failure = [], None, None
    try:
        with harness.Server(f"soak_server.py --loop {args.loop} --framework {args.framework}",
                            command,
                            cpus=server_cpus) as server:
            print(HEADER, flush=True)
            try:
                rows, totals = Soak(args, server, client_cpus).run()
            except (SoakError, harness.Failure, OSError, subprocess.SubprocessError) as exc:
                failure = f"{type(exc).__name__}: {exc}"
                detail = getattr(exc, "detail", "") or server.stderr_text().strip()[-2000:]
                if detail:
                    failure += "\n" + detail
    except (harness.Failure, harness.Unavailable) as exc:
        failure = f"the server did not start: {exc} {getattr(exc, 'detail', '')}"
    if totals:
        print(f"soak: {totals['requests']} requests, {totals['connections']} connections in "
              f"the phases; {totals['seconds']} s in all")
    broken = verdicts(rows) if rows and not failure else []
    if totals and not failure:
        if totals["requests"] < args.requests:
            broken.append(f"only {totals['requests']} requests answered (--requests "
                          f"{args.requests})")
        if totals["connections"] < args.connections:
            broken.append(f"only {totals['connections']} connections accepted (--connections "
                          f"{args.connections})")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump({"loop": args.loop, "rows": rows, "totals": totals, "failure": failure,
                       "broken": broken}, out, indent=2)
    if failure:
        print(f"soak FAILED: {failure}")
        return 1
    if broken:
        print("soak FAILED: not flat:\n  " + "\n  ".join(broken))
        return 1
    print(f"soak passed: descriptors and tasks as at the baseline, gc objects within "
          f"+{GC_SLACK}, RSS within +{RSS_SLACK_MIB} MiB (+{RSS_TAIL_MIB} MiB in the second "
          "half)")
    return 0


def _cpus(cpus):
    return ",".join(map(str, sorted(cpus))) if cpus else "any"


if __name__ == "__main__":
    sys.exit(main())

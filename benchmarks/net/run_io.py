"""benchmarks/net/run_io.py — UDP, subprocesses, pipes, TLS: asyncio, uvloop, rloop, PyLoop.

    python benchmarks/net/run_io.py                  # full run: 5 interleaved repeats per cell
    python benchmarks/net/run_io.py --quick          # CI smoke run, well under a minute
    python benchmarks/net/run_io.py --scenarios udp_echo,tls_echo/1k --json out.json
    python benchmarks/net/run_io.py --markdown       # the report as Markdown, for a README
    python benchmarks/net/run_io.py --baseline DIR   # plus a pyloop-base column: the build in DIR

The rest of asyncio's I/O, side by side (issue 10's list):
  udp_echo/64b/w32          servers.py --style udp (a DatagramProtocol echoing with sendto) on
                            the loop under test; echo_client --udp: 32 connected UDP sockets,
                            one 64-byte datagram in flight on each; datagrams/s
  subprocess_spawn/true/x8  benchmarks/subprocess_spawn.py: `true` spawned with
                            asyncio.create_subprocess_exec and awaited, 8 at a time; children/s
  pipe_cat/4k               benchmarks/pipe_cat.py: 4 KiB chunks through a `cat` child's stdin
                            and stdout pipes, one at a time; round trips/s
  tls_echo/1k/c10           servers.py --style tls (the Protocol echo, create_server(ssl=)) on the
  tls_echo/64k/c10          loop under test; tls_echo_client (echo_client.c built against
                            OpenSSL) on 10 connections; requests/s

The servers and clients are net/run.py's (harness.py, servers.py, echo_client.c): each server
is its own process, every loop's server of a group runs side by side and the client visits each
in turn for every row. The subprocess and pipe rows run in a fresh worker process per
measurement (benchmarks/worker.py, as the core-loop benchmarks do). --pin split (the default)
keeps the servers, and the workers with their children, on one CPU and the client on the
other: the client has a core of its own, no loop is favoured by where it lands, and cat's
round trips do not depend on whether cat was scheduled beside the loop or across CPUs (which
made the unpinned rate bimodal, 14k or 87k round trips/s from one asyncio run to the next).
The TLS certificate is made for the run by the openssl command, in a temporary directory
removed at the end.

Repeats are interleaved round-robin (repeat 1 of every cell on every loop, then repeat 2,
...), the loop order rotated each repeat; each cell reports the median, and the table gives
PyLoop's ratio to uvloop and to rloop. A second table gives the CPU time per operation, which
a busy neighbour on a shared machine disturbs less than the rates: for UDP and TLS the
server's (user + system from /proc/PID/stat from the client's connections made, TLS
handshakes done, to its end, over the operations it completed: cost.py's measure), for the subprocess and pipe rows the worker's together with the
children it reaped (so a cheaper spawn path, or cat's work, counts). A loop that raises
NotImplementedError (PyLoop while these features land, rloop for TLS servers) gets
"n/a (NotImplementedError)" with the method named under the table, and is not retried. Exit
status as net/run.py's: 0 when every cell was measured or n/a by NotImplementedError; 1 when a
cell failed or a requirement (cc, OpenSSL's headers, openssl) is missing, or with --strict when
a cell is n/a; 2 when --require-pyloop was given and PyLoop could not be loaded, or --baseline
could not be loaded.
"""

import argparse
import importlib
import json
import os
import sys
import tempfile
import time

sys.dont_write_bytecode = True  # keep the source tree free of __pycache__
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # machine, loops, the scenario modules
sys.path.insert(0, HERE)

import harness      # noqa: E402  (needs the path set above)
import loops        # noqa: E402
import machine      # noqa: E402
import net_report   # noqa: E402
import run as net_run  # noqa: E402  (benchmarks/net/run.py: the runner this one extends)

UDP_SIZE = 64     # bytes per datagram
UDP_WINDOW = 32   # datagrams in flight (one per client socket)
TLS_CONNS = 10    # TLS connections, one request in flight on each
TLS_SIZES = (("1k", 1024), ("64k", 64 * 1024))
# The scenario modules run in worker processes (benchmarks/), with the unit of their ops.
LOCAL_MODULES = (("subprocess_spawn", "children/s"), ("pipe_cat", "round trips/s"))
CLIENT_UNIT = {"udp": "datagrams/s", "tls": "req/s"}  # for the progress lines


def all_rows():
    """Every row of the report, in order: (name, spec)."""
    rows = [(f"udp_echo/{UDP_SIZE}b/w{UDP_WINDOW}",
             {"kind": "io", "group": "udp", "unit": "datagrams/s", "size": UDP_SIZE,
              "conns": UDP_WINDOW})]
    for module, unit in LOCAL_MODULES:
        for row in importlib.import_module(module).VARIANTS:
            rows.append((row, {"kind": "io", "group": "local", "unit": unit}))
    for key, size in TLS_SIZES:
        rows.append((f"tls_echo/{key}/c{TLS_CONNS}",
                     {"kind": "io", "group": "tls", "unit": "requests/s", "size": size,
                      "conns": TLS_CONNS}))
    return rows


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description="UDP, subprocess, pipe and TLS benchmarks: asyncio vs uvloop vs rloop vs "
                    "PyLoop, side by side.")
    net_run.add_run_options(parser, "udp_echo, tls_echo, pipe_cat", "tls_echo/*", "UDP and TLS",
                            quick_duration=0.1)
    parser.add_argument("--target", type=float, metavar="SECONDS",
                        help="subprocess and pipe rows: length of one timed run (default "
                             "0.3, quick 0.05)")
    parser.add_argument("--pin", choices=("none", "split"), default="split",
                        help="split (default): servers and workers (with their children) on "
                             "one CPU, the client on the other; none: the scheduler places them")
    net_run.add_report_options(parser)
    args = parser.parse_args(argv)
    loops.use_baseline_option(parser, args)
    # --quick's UDP and TLS windows are longer than run.py's 0.04 s: a server descheduled
    # for that long on a busy 2-core machine completed nothing in the window (a FAIL).
    net_run.quick_defaults(args, repeats=(5, 3), duration=(0.3, 0.1), warmup=(0.1, 0.02),
                           target=(0.3, 0.05))
    if args.repeats < 1 or args.duration <= 0 or args.warmup < 0 or args.target <= 0:
        parser.error("counts and durations must be positive")
    net_run.place_and_select(parser, args, all_rows())
    return args


class IOBench(net_run.Bench):
    """net/run.py's Bench (cells, progress, servers, the client blocks) over this runner's rows."""

    def __init__(self, args, available, core, certdir):
        super().__init__(args, available)
        self.core = core  # benchmarks/run.py, whose call_worker runs the worker processes
        self.certdir = certdir  # where the TLS certificate is made (a temporary directory)
        self.cert = None  # (certfile, keyfile) once made
        self.programs = {}
        self.groups = {group: [(name, spec) for name, spec in args.rows
                               if spec["group"] == group] for group in ("udp", "local", "tls")}
        self.server_cpus, self.client_cpus = harness.placement(args.pin)
        self.steps = len(args.rows) * len(available) * args.repeats

    def prepare(self):
        """Build the clients and make the certificate the selected rows need; a missing
        requirement makes its rows n/a (and the exit status 1)."""
        for group, program in (("udp", "echo_client"), ("tls", "tls_echo_client")):
            if not self.groups[group]:
                continue
            try:
                self.programs.update(harness.build_c_programs((program,)))
                if group == "tls":
                    self.cert = harness.make_certificate(self.certdir)
            except harness.Unavailable as exc:
                self.missing.add(str(exc))
                net_run.log(f"{group} rows unavailable: {exc}")
                for name, _ in self.groups[group]:
                    for cell in self.results[name].values():
                        cell["na"] = exc.short

    def make_server(self, group, loop):
        if group == "udp":
            return harness.python_server(loop, "udp", cpus=self.server_cpus,
                                         probe=harness.udp_probe, udp=True)
        certfile, keyfile = self.cert
        return harness.python_server(loop, "tls", cpus=self.server_cpus,
                                     extra=("--certfile", certfile, "--keyfile", keyfile),
                                     probe=harness.tls_probe(certfile))

    def client(self, group, server, spec):
        if group == "udp":
            program, extra = "echo_client", ("--udp",)
        else:
            program, extra = "tls_echo_client", ("--ca", self.cert[0])
        return harness.run_echo_client(self.programs, server, spec["conns"], spec["size"],
                                       self.args.duration, self.args.warmup, program=program,
                                       extra=extra, cpus=self.client_cpus)

    def server_group(self, group, order, repeat):
        """The rows of `group` (udp or tls): every loop's server side by side, the client
        visiting each in turn (net/run.py's client block)."""
        rows = self.groups[group]
        if not rows:
            return
        slots = {loop: {"make": lambda loop=loop: self.make_server(group, loop), "server": None}
                 for loop in order}
        self.client_block(rows, list(order), slots, repeat, f"{group} servers",
                          lambda loop, name, spec: self.results[name][loop],
                          lambda loop, name, spec: f"{name} {loop}",
                          lambda server, spec: self.client(group, server, spec),
                          unit=CLIENT_UNIT[group])

    def local_repeat(self, order):
        """One run of each subprocess and pipe row on each loop, each in a fresh worker that
        calibrates itself to --target seconds (its growing runs are the warm-up)."""
        deadline = 30 + 20 * self.args.target
        for name, spec in self.groups["local"]:
            for loop in order:
                cell, label = self.results[name][loop], f"{name} {loop}"
                if net_run.settled(cell):
                    self.done += 1
                    continue
                answer = self.core.call_worker(
                    ["measure", loop, name, 0, "--target", self.args.target], deadline,
                    cpus=self.server_cpus)
                if answer.get("not_implemented"):
                    cell.update(na="NotImplementedError", detail=answer["error"])
                    self.progress(label, f"n/a (NotImplementedError): {answer['error']}")
                elif answer.get("error"):
                    cell.update(error=answer["error"], detail=answer.get("detail"))
                    self.progress(label, f"FAILED: {answer['error']}")
                    self.core.log_detail(answer)
                else:
                    cell["rates"].append(answer["rate"])
                    cell["requests"].append(answer["ops"])
                    cell["cpu_us"].append(answer["cpu_us"])
                    self.progress(label, f"{net_report.fmt_rate(answer['rate'])} {spec['unit']}"
                                         f" ({answer['ops']} in {answer['seconds']:.2f} s)")

    def run(self):
        self.prepare()
        for repeat in range(self.args.repeats):
            # Rotate the loop order each repeat so no loop always runs just after another.
            shift = repeat % max(1, len(self.available))
            order = self.available[shift:] + self.available[:shift]
            self.server_group("udp", order, repeat)
            self.local_repeat(order)
            self.server_group("tls", order, repeat)


def header_lines(host, loop_info, tools, args):
    lines = net_run.machine_lines(host, loop_info, tools, args)
    pinned = ("servers and workers (with their children) pinned to one CPU, the client to "
              "the other" if args.pin == "split" else "nothing pinned")
    lines.append(
        f"method:  median of {args.repeats} run{'s' if args.repeats != 1 else ''} per cell, "
        f"repeats interleaved round-robin, loop order rotated; ±: largest deviation of one run "
        f"from the median. UDP and TLS: each loop's server in its own process, side by side, "
        f"the C client (echo_client --udp, {UDP_WINDOW} sockets with one {UDP_SIZE}-byte "
        f"datagram in flight each; tls_echo_client, OpenSSL, {TLS_CONNS} connections with one "
        f"message in flight each, handshakes before the warm-up) visiting each in turn, "
        f"{args.duration:g} s timed after {args.warmup:g} s warm-up, every byte checked; "
        f"subprocess and pipe rows: a fresh worker process per run, calibrated to "
        f"~{args.target:g} s; {pinned}")
    return lines


def main(argv=None):
    started = time.perf_counter()
    args = parse_args(argv)
    host = machine.describe()
    core = net_run._core_runner()
    loop_info = core.probe_loops(args.require_pyloop)
    available = [loop for loop in loops.columns() if not loop_info[loop].get("error")]
    with tempfile.TemporaryDirectory(prefix="pyloop-bench-tls-") as certdir:
        bench = IOBench(args, available, core, certdir)
        bench.run()
    tools = {"cc": harness.first_line_of(os.environ.get("CC") or "cc", "--version"),
             "openssl": harness.first_line_of("openssl", "version")}
    summary = net_report.summarize(args.rows, bench.results, {}, available)
    header = header_lines(host, loop_info, tools, args)
    notes = net_report.not_available_notes(summary)
    wall = time.perf_counter() - started
    if args.markdown:
        print(net_report.render_markdown(header, summary))
        print("".join(f"\n- {note}" for note in notes))
    else:
        print(net_report.render_text(header, summary))
        print("".join(f"\n  {note}" for note in notes))
    net_run.log(f"total wall time {wall:.1f} s")
    if args.json:
        config = {key: getattr(args, key) for key in (
            "quick", "repeats", "duration", "warmup", "target", "pin")}
        config.update(scenarios=[name for name, _ in args.rows], baseline=loops.baseline_dir(),
                      udp_window=UDP_WINDOW, udp_size=UDP_SIZE, tls_conns=TLS_CONNS)
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump({"machine": host, "loops": loop_info, "tools": tools, "config": config,
                       "results": summary, "wall_seconds": round(wall, 2)}, out, indent=2)
            out.write("\n")
    return net_run.exit_status(bench, args, loop_info)


if __name__ == "__main__":
    sys.exit(main())

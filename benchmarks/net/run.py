"""benchmarks/net/run.py — networking benchmarks on asyncio, uvloop, rloop and PyLoop.

    python benchmarks/net/run.py                    # full run: 5 interleaved repeats per cell
    python benchmarks/net/run.py --quick            # CI smoke run, about a minute
    python benchmarks/net/run.py --scenarios echo/protocol,http/uvicorn --json out.json
    python benchmarks/net/run.py --markdown         # the report as Markdown, for a README
    python benchmarks/net/run.py --baseline DIR     # plus a pyloop-base column: the build in DIR

Echo: each Python server style (servers.py) runs in its own process on the loop under test;
the load comes from echo_client (C, built here into build/), which does not depend on any
loop; the machine's floor is a bare C epoll echo server (epoll_echo_server.c) driven by the
same client in the same run. HTTP: wrk against servers.py's HTTP Protocol server and against
uvicorn (httptools) serving asgi_app.py, with uvicorn's --loop naming each loop.

Noise control: the repeats are interleaved round-robin (repeat 1 of every cell on every loop,
then repeat 2, ...), with the order rotated each repeat; within a repeat, the C floor and the
servers of one style on every loop run side by side and the client visits each in turn for
each row, so a row's numbers are taken within a second of each other. Each cell reports the
median. Progress goes to stderr, the report to stdout.

A loop whose server reports NotImplementedError (PyLoop while its networking is in progress,
a peer that lacks a method) gets "n/a (NotImplementedError)" in that cell and is not retried
on it; everything else goes on. Exit status: 0 when every cell was measured or n/a by
NotImplementedError; 1 when a cell failed (FAIL: a wrong echo, a crash, a hang) or a
requirement (cc, wrk, uvicorn, httptools) is missing, or with --strict when a cell is n/a; 2
when --require-pyloop was given and PyLoop could not be loaded, or the --baseline build could
not be loaded (nothing is measured then).
"""

import argparse
import fnmatch
import importlib.util
import json
import os
import sys
import time

sys.dont_write_bytecode = True  # keep the source tree free of __pycache__
HERE = os.path.dirname(os.path.abspath(__file__))
BENCH = os.path.dirname(HERE)
sys.path.insert(0, BENCH)  # machine, report, loops: shared with the core-loop benchmarks
sys.path.insert(0, HERE)

import harness     # noqa: E402  (needs the path set above)
import loops       # noqa: E402
import machine     # noqa: E402
import net_report  # noqa: E402
import report      # noqa: E402


def _core_runner():
    """benchmarks/run.py, loaded under another name (this file is also called run.py)."""
    spec = importlib.util.spec_from_file_location("core_run", os.path.join(BENCH, "run.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SIZES = (("1k", 1024), ("10k", 10 * 1024), ("100k", 100 * 1024))
CONNS = (1, 10)
ECHO_STYLES = ("sock", "streams", "protocol", "buffered")
HTTP_SERVERS = ("protocol", "uvicorn")


def all_rows():
    """Every row of the report, in order: (name, spec)."""
    rows = []
    for style in ECHO_STYLES:
        for size_key, size in SIZES:
            for conns in CONNS:
                rows.append((f"echo/{style}/{size_key}/c{conns}",
                             {"kind": "echo", "style": style, "size": size, "conns": conns}))
    for server in HTTP_SERVERS:
        rows.append((f"http/{server}", {"kind": "http", "server": server}))
    return rows


def select_rows(patterns, rows=None):
    """Rows (of `rows`, default all_rows()) whose name equals, starts with (at a '/') or
    fnmatch-es one of `patterns`."""
    rows = all_rows() if rows is None else rows
    if not patterns:
        return rows
    wanted = [item.strip().strip("/") for item in patterns.split(",") if item.strip()]
    chosen = set()
    for item in wanted:
        hits = {name for name, _ in rows
                if name == item or name.startswith(item + "/") or fnmatch.fnmatchcase(name, item)}
        if not hits:
            raise ValueError(f"--scenarios: {item!r} matches no scenario; known: "
                             + ", ".join(name for name, _ in rows))
        chosen |= hits
    return [(name, spec) for name, spec in rows if name in chosen]


def add_run_options(parser, prefixes, glob, load, quick_duration=0.04):
    """--quick, --scenarios, --repeats, --duration and --warmup (defaults set by
    quick_defaults). `prefixes` and `glob` are examples of --scenarios; `load` names the rows
    the client's --duration and --warmup apply to."""
    parser.add_argument("--quick", action="store_true",
                        help="CI smoke run: short runs, under a minute")
    parser.add_argument("--scenarios", metavar="A,B",
                        help=f"comma list of names, prefixes ({prefixes}) or globs ({glob}); "
                             "default: all")
    parser.add_argument("--repeats", type=int,
                        help="runs per cell, median reported (default 5, quick 3)")
    parser.add_argument("--duration", type=float, metavar="SECONDS",
                        help=f"{load}: timed seconds per run (default 0.3, quick "
                             f"{quick_duration:g})")
    parser.add_argument("--warmup", type=float, metavar="SECONDS",
                        help=f"{load}: untimed seconds before each run (default 0.1, quick 0.02)")


def add_report_options(parser):
    """The options every networking runner takes: --json, --markdown, --require-pyloop,
    --strict and --baseline (applied by loops.use_baseline_option once parsed)."""
    parser.add_argument("--json", metavar="PATH", help="also write all samples as JSON here")
    parser.add_argument("--markdown", action="store_true",
                        help="print the report as Markdown (for the README)")
    parser.add_argument("--require-pyloop", action="store_true",
                        help="exit 2 when PyLoop cannot be loaded")
    parser.add_argument("--strict", action="store_true",
                        help="exit 1 when a cell is n/a (NotImplementedError) too")
    loops.add_baseline_option(parser)


def place_and_select(parser, args, rows):
    """For the runners that pin (--pin) and pick rows (--scenarios): no split pinning on one
    CPU, and args.rows the selected rows of `rows` (a bad pattern is a usage error)."""
    if args.pin == "split" and len(os.sched_getaffinity(0)) < 2:
        log("--pin split needs two CPUs and this process has one: nothing pinned")
        args.pin = "none"
    try:
        args.rows = select_rows(args.scenarios, rows)
    except ValueError as exc:
        parser.error(str(exc))


def quick_defaults(args, **defaults):
    """Give each option left unset its default: defaults[name] is (full run, --quick)."""
    for name, (full, fast) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, fast if args.quick else full)


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description="Networking benchmarks: asyncio vs uvloop vs rloop vs PyLoop, side by side.")
    add_run_options(parser, "echo, echo/protocol, http", "echo/*/1k/c10", "echo")
    parser.add_argument("--http-duration", type=int, metavar="SECONDS",
                        help="HTTP: wrk seconds per run (default 3, quick 1)")
    parser.add_argument("--http-warmup", type=int, metavar="SECONDS",
                        help="HTTP: untimed wrk seconds before each run (default 1, quick 0)")
    parser.add_argument("--wrk-connections", type=int, default=50, metavar="N")
    parser.add_argument("--wrk-threads", type=int, default=1, metavar="N")
    add_report_options(parser)
    args = parser.parse_args(argv)
    loops.use_baseline_option(parser, args)
    quick_defaults(args, repeats=(5, 3), duration=(0.3, 0.04), warmup=(0.1, 0.02),
                   http_duration=(3, 1), http_warmup=(1, 0))
    if (args.repeats < 1 or args.duration <= 0 or args.warmup < 0 or args.http_duration < 1
            or args.http_warmup < 0 or args.wrk_connections < 1 or args.wrk_threads < 1):
        parser.error("counts and durations must be positive (wrk takes whole seconds)")
    try:
        args.rows = select_rows(args.scenarios)
    except ValueError as exc:
        parser.error(str(exc))
    return args


def log(message):
    print(message, file=sys.stderr, flush=True)


def new_cell():
    # client_cpu: the client's share of a core; cpu_us: the server's CPU µs per request.
    return {"rates": [], "mib": [], "requests": [], "client_cpu": [], "cpu_us": [],
            "error": None, "na": None, "detail": None}


def settled(cell):
    """A cell that failed or is n/a is not measured again."""
    return bool(cell["error"] or cell["na"])


class Bench:
    """The state of one run: cells, progress, and the measuring steps."""

    def __init__(self, args, available):
        self.args = args
        self.available = available
        self.echo_rows = [(name, spec) for name, spec in args.rows if spec["kind"] == "echo"]
        self.http_rows = [(name, spec) for name, spec in args.rows if spec["kind"] == "http"]
        self.results = {name: {loop: new_cell() for loop in available} for name, _ in args.rows}
        self.floor_keys = sorted({(spec["size"], spec["conns"]) for _, spec in self.echo_rows})
        self.floors = {key: new_cell() for key in self.floor_keys}
        self.missing = set()  # requirements found missing (cc, wrk, uvicorn...)
        self.programs = None
        # The floor is measured next to every echo row (once per style block).
        per_repeat = (len(self.echo_rows) * (1 + len(available))
                      + len(self.http_rows) * len(available))
        self.steps = per_repeat * args.repeats
        self.done = 0

    # -- bookkeeping ---------------------------------------------------------------------

    def progress(self, label, message):
        self.done += 1
        log(f"[{self.done}/{self.steps}] {label}: {message}")

    def settle(self, cell, failure):
        """Mark `cell` n/a or failed by `failure`; return the text for the progress line."""
        if isinstance(failure, harness.Unavailable):
            cell["na"] = failure.short
            self.missing.add(str(failure))
            return f"n/a ({failure})"
        cell["detail"] = failure.detail or None
        if failure.na:
            cell["na"] = failure.na
            return f"n/a ({failure.na}): {failure.detail}"
        cell["error"] = str(failure)
        return f"FAILED: {failure}"

    def record_failure(self, label, cell, failure):
        self.progress(label, self.settle(cell, failure))
        if cell["error"]:
            for line in (failure.detail or "").splitlines():
                log(f"    | {line}")

    def prepare(self):
        """Build the C programs when echo rows are selected; mark the cells if impossible."""
        if not self.echo_rows:
            return
        try:
            self.programs = harness.build_c_programs()
        except harness.Unavailable as exc:
            self.missing.add(str(exc))
            log(f"echo benchmarks unavailable: {exc}")
            for name, _ in self.echo_rows:
                for cell in self.results[name].values():
                    cell["na"] = exc.short
            for cell in self.floors.values():
                cell["na"] = exc.short

    # -- servers ---------------------------------------------------------------------------

    def serve(self, slots, participant, cells, what):
        """The live server of `participant`, (re)started when needed, or None.

        A server that cannot start settles every cell of `cells` still open (all n/a when
        it reported NotImplementedError), which are then skipped; `what` names it in the log.
        """
        slot = slots[participant]
        if slot["server"] is not None and not slot["server"].alive():
            self.stop(slots, participant)
        if slot["server"] is None:
            try:
                slot["server"] = slot["make"]().__enter__()
            except (harness.Failure, harness.Unavailable) as failure:
                message = ""
                for cell in cells:
                    if not settled(cell):
                        message = self.settle(cell, failure)
                log(f"{what}: {message} (server did not start)")
                if isinstance(failure, harness.Failure) and not failure.na:
                    for line in (failure.detail or "").splitlines():
                        log(f"    | {line}")
                return None
        return slot["server"]

    @staticmethod
    def stop(slots, participant):
        server = slots[participant]["server"]
        slots[participant]["server"] = None
        if server is not None:
            server.__exit__(None, None, None)

    # -- echo ------------------------------------------------------------------------------

    def echo_cell(self, participant, name, spec):
        if participant == net_report.FLOOR:
            return self.floors[spec["size"], spec["conns"]]
        return self.results[name][participant]

    def echo_style(self, style, order, repeat):
        """Every selected row of `style`: the C floor and each loop's server live together
        (an idle server costs nothing); for each size and connection count the client runs
        against all of them back to back, so time-varying noise hits them alike."""
        rows = [(name, spec) for name, spec in self.echo_rows if spec["style"] == style]
        participants = [net_report.FLOOR] + list(order)
        slots = {net_report.FLOOR: {"make": lambda: harness.floor_server(self.programs),
                                    "server": None}}
        for loop in order:
            slots[loop] = {"make": lambda loop=loop: harness.python_server(loop, style),
                           "server": None}

        def label(participant, name, spec):
            if participant == net_report.FLOOR:
                size_key = {size: key for key, size in SIZES}[spec["size"]]
                return f"floor/{size_key}/c{spec['conns']} {participant} ({style} block)"
            return f"{name} {participant}"

        def client(server, spec):
            return harness.run_echo_client(self.programs, server, spec["conns"], spec["size"],
                                           self.args.duration, self.args.warmup)

        self.client_block(rows, participants, slots, repeat, f"echo/{style}", self.echo_cell,
                          label, client)

    def client_block(self, rows, participants, slots, repeat, what, cell_of, label, client,
                     unit="req/s"):
        """Every row of `rows` on every participant, their servers live side by side.

        `slots[participant]` makes its server; `client(server, spec)` runs the load once and
        returns echo_client's answer; `cell_of(participant, name, spec)` is where the answer
        goes and `label(participant, name, spec)` names it in the progress lines; `what`
        names the block. For each row the client visits every participant in turn, so
        time-varying noise hits them alike. Every server is stopped at the end.
        """
        try:
            for index, (name, spec) in enumerate(rows):
                # Rotate within the block too, so no participant always runs first.
                shift = (repeat + index) % len(participants)
                for participant in participants[shift:] + participants[:shift]:
                    cell = cell_of(participant, name, spec)
                    if settled(cell):
                        self.done += 1
                        continue
                    pending = [cell_of(participant, n, sp) for n, sp in rows[index:]]
                    server = self.serve(slots, participant, pending, f"{what} {participant}")
                    if server is None:
                        self.done += 1
                        continue
                    try:
                        answer = client(server, spec)
                    except harness.Failure as failure:
                        self.record_failure(label(participant, name, spec), cell, failure)
                        self.stop(slots, participant)
                        continue
                    cell["rates"].append(answer["rps"])
                    cell["mib"].append(answer["mib_per_s"])
                    cell["requests"].append(answer["requests"])
                    cell["client_cpu"].append(answer["client_cpu"])
                    if answer["server_cpu_s"] is not None and answer.get("total_requests"):
                        cell["cpu_us"].append(
                            answer["server_cpu_s"] * 1e6 / answer["total_requests"])
                    self.progress(label(participant, name, spec),
                                  f"{net_report.fmt_rate(answer['rps'])} {unit}, "
                                  f"{net_report.fmt_mib(answer['mib_per_s'])} MiB/s, client "
                                  f"{answer['client_cpu'] or 0:.0%} CPU")
        finally:
            for participant in participants:
                self.stop(slots, participant)

    def echo_repeat(self, order, repeat):
        if not self.echo_rows or self.programs is None:
            return
        for style in ECHO_STYLES:
            if any(spec["style"] == style for _, spec in self.echo_rows):
                self.echo_style(style, order, repeat)

    # -- HTTP ------------------------------------------------------------------------------

    def http_repeat(self, order):
        """For each HTTP server kind, every loop's server lives together; wrk runs against
        each in turn (a warm-up run, then the timed run)."""
        args = self.args
        for name, spec in self.http_rows:
            slots = {}
            for loop in order:
                if spec["server"] == "uvicorn":
                    make = lambda loop=loop: harness.uvicorn_server(loop)  # noqa: E731
                else:
                    make = lambda loop=loop: harness.python_server(loop, "http")  # noqa: E731
                slots[loop] = {"make": make, "server": None}
            try:
                for loop in order:
                    label, cell = f"{name} {loop}", self.results[name][loop]
                    if settled(cell):
                        self.done += 1
                        continue
                    try:
                        harness.require_wrk()  # before starting a server for nothing
                    except harness.Unavailable as failure:
                        self.record_failure(label, cell, failure)
                        continue
                    server = self.serve(slots, loop, [cell], label)
                    if server is None:
                        self.done += 1
                        continue
                    try:
                        if args.http_warmup:
                            harness.run_wrk(server, args.http_warmup, args.wrk_connections,
                                            args.wrk_threads)
                        result = harness.run_wrk(server, args.http_duration,
                                                 args.wrk_connections, args.wrk_threads)
                    except (harness.Failure, harness.Unavailable) as failure:
                        self.record_failure(label, cell, failure)
                        self.stop(slots, loop)
                        continue
                    cell["rates"].append(result["rps"])
                    cell["requests"].append(result["requests"])
                    timeouts = result["errors"].get("timeout", 0)
                    note = f" ({timeouts} timeouts)" if timeouts else ""
                    self.progress(label, f"{net_report.fmt_rate(result['rps'])} req/s{note}")
            finally:
                for loop in order:
                    self.stop(slots, loop)

    def run(self):
        self.prepare()
        for repeat in range(self.args.repeats):
            # Rotate the loop order each repeat so no loop always runs just after another.
            shift = repeat % max(1, len(self.available))
            order = self.available[shift:] + self.available[:shift]
            self.echo_repeat(order, repeat)
            self.http_repeat(order)


def machine_lines(host, loop_info, tools, args):
    """The core runner's machine and loop lines, then the tools (name: version or None)."""
    lines = [line for line in report.header_lines(
        host, loop_info, {"repeats": args.repeats, "target_seconds": args.duration})
        if not line.startswith("method:")]
    shown = [f"{name} {version}" if name in ("uvicorn", "httptools") else version
             for name, version in tools.items() if version]
    missing = [name for name, version in tools.items() if not version]
    lines.append("tools:   " + "; ".join(shown)
                 + (f" (missing: {', '.join(missing)})" if missing else ""))
    return lines


def header_lines(host, loop_info, tools, args):
    """The machine, loops and tools, then this runner's method."""
    lines = machine_lines(host, loop_info, tools, args)
    cores = host["usable_cores"]
    lines.append(
        f"method:  median of {args.repeats} run{'s' if args.repeats != 1 else ''} per cell, "
        f"repeats interleaved round-robin; ±: largest deviation of one run from the median. "
        f"Echo: echo_client (C, one thread, epoll, one message in flight per connection, "
        f"every byte checked), {args.duration:g} s timed after {args.warmup:g} s warm-up; per "
        f"repeat and server style, the C floor and each loop's server run side by side (fresh "
        f"processes) and the client visits each in turn for every row. HTTP: "
        f"wrk -t{args.wrk_threads} -c{args.wrk_connections} -d{args.http_duration}s"
        + (f" after a {args.http_warmup} s warm-up run" if args.http_warmup else "")
        + f", each loop's server in turn. Nothing pinned: servers, client and kernel share "
          f"{cores} usable core{'s' if cores != 1 else ''}")
    return lines


def main(argv=None):
    started = time.perf_counter()
    args = parse_args(argv)
    host = machine.describe()
    loop_info = _core_runner().probe_loops(args.require_pyloop)
    available = [loop for loop in loops.columns() if not loop_info[loop].get("error")]
    bench = Bench(args, available)
    bench.run()
    tools = harness.tool_versions(bench.programs is not None)
    summary = net_report.summarize(args.rows, bench.results, bench.floors, available)
    header = header_lines(host, loop_info, tools, args)
    wall = time.perf_counter() - started
    print(net_report.render_markdown(header, summary) if args.markdown
          else net_report.render_text(header, summary))
    log(f"total wall time {wall:.1f} s")
    if args.json:
        config = {key: getattr(args, key) for key in (
            "quick", "repeats", "duration", "warmup", "http_duration", "http_warmup",
            "wrk_connections", "wrk_threads")}
        config["scenarios"] = [name for name, _ in args.rows]
        config["baseline"] = loops.baseline_dir()
        floors = {f"{size}/{conns}": net_report.summarize_cell(cell)
                  for (size, conns), cell in bench.floors.items()}
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump({"machine": host, "loops": loop_info, "tools": tools, "config": config,
                       "floors": floors, "results": summary, "wall_seconds": round(wall, 2)},
                      out, indent=2)
            out.write("\n")
    return exit_status(bench, args, loop_info)


def exit_status(bench, args, loop_info):
    """Say on stderr what failed, was missing or n/a; return the exit status (the module's
    docstring lists them)."""
    cells = [(name, loop, cell) for name in bench.results
             for loop, cell in bench.results[name].items()]
    cells += [(f"floor {size}/{conns}", net_report.FLOOR, cell)
              for (size, conns), cell in bench.floors.items()]
    failed = [f"{name} on {loop}" for name, loop, cell in cells if cell["error"]]
    not_available = [f"{name} on {loop}" for name, loop, cell in cells if cell["na"]]
    status = 0
    if failed:
        log(f"FAILED: {', '.join(failed)}")
        status = 1
    if bench.missing:
        log("missing requirements (see benchmarks/net/README.md): "
            + "; ".join(sorted(bench.missing)))
        status = 1
    if not_available:
        log(f"n/a: {len(not_available)} cells"
            + (" -- failing (--strict)" if args.strict else ""))
        if args.strict:
            status = 1
    if args.require_pyloop and loop_info["pyloop"].get("error"):
        log("PyLoop is required (--require-pyloop) but unavailable: "
            + loop_info["pyloop"]["error"])
        return 2
    return status


if __name__ == "__main__":
    sys.exit(main())

"""benchmarks/net/run_web.py — web frameworks under wrk: asyncio, uvloop, rloop and PyLoop.

    python benchmarks/net/run_web.py                  # full run: 5 interleaved repeats per cell
    python benchmarks/net/run_web.py --quick          # CI smoke run, about a minute
    python benchmarks/net/run_web.py --scenarios web/fastapi --json out.json
    python benchmarks/net/run_web.py --markdown       # the report as Markdown, for the docs
    python benchmarks/net/run_web.py --baseline DIR   # plus a pyloop-base column: the build in DIR

Rows (each a real framework, written as its documentation writes it, the same code on every
loop):
  web/fastapi/json   uvicorn (--http httptools, one worker) serving fastapi_app.py: an async
                     path operation returning a dict, serialized by FastAPI into JSON
  web/aiohttp/json   aiohttp_app.py: web.Application, a handler returning web.json_response,
                     served by web.AppRunner and web.TCPSite
The load is wrk (-t1 -c50, keep-alive, GET /), a warm-up run then the timed run; any non-2xx
answer or socket error other than a timeout fails the cell.

The harness is run.py's (harness.py, net_report.py): each loop's server is its own process on a
fresh loopback port, the servers of one row run side by side and wrk visits each in turn, the
repeats interleaved round-robin with the loop order rotated, each cell the median. --pin split
(the default) puts every server on one CPU and wrk on the other, as paired.py does, so no
server competes with its load generator. A second table gives the server's CPU time (user +
system, /proc/PID/stat) over the timed run per request answered: on a shared machine the rate
of a cell moves with the neighbours' load more than what each request costs the server.
Ratios: PyLoop's over uvloop's and rloop's (above 1: PyLoop serves more per second, or spends
less per request); asyncio/uvloop for scale. A loop on which a framework does not run shows
n/a or FAIL with the reason under the table. Exit status as run.py's.
"""

import argparse
import json
import os
import sys
import time

sys.dont_write_bytecode = True  # keep the source tree free of __pycache__
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # machine, report, loops
sys.path.insert(0, HERE)

import harness      # noqa: E402  (needs the path set above)
import loops        # noqa: E402
import machine      # noqa: E402
import net_report   # noqa: E402
import run as net_run  # noqa: E402  (benchmarks/net/run.py: the runner this one extends)


def _fastapi(loop, cpus):
    return harness.uvicorn_server(loop, "fastapi_app:app", cpus=cpus, modules=("fastapi",))


def _aiohttp(loop, cpus):
    command = [sys.executable, "-B", os.path.join(HERE, "aiohttp_app.py"), "--loop", loop,
               "--host", harness.HOST, "--port", "{port}"]
    return harness.Server(f"aiohttp_app.py --loop {loop}", command, cpus=cpus)


def all_rows():
    """Every row of the report, in order: (name, spec)."""
    return [("web/fastapi/json", {"kind": "http", "server": "fastapi", "make": _fastapi}),
            ("web/aiohttp/json", {"kind": "http", "server": "aiohttp", "make": _aiohttp})]


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description="Web frameworks under wrk: asyncio vs uvloop vs rloop vs PyLoop.")
    parser.add_argument("--quick", action="store_true", help="CI smoke run: 3 repeats of 1 s")
    parser.add_argument("--scenarios", metavar="A,B",
                        help="comma list of names, prefixes (web/fastapi) or globs; default all")
    parser.add_argument("--repeats", type=int, help="runs per cell (default 5, quick 3)")
    parser.add_argument("--duration", type=int, metavar="SECONDS",
                        help="wrk seconds per timed run (default 3, quick 1)")
    parser.add_argument("--warmup", type=int, metavar="SECONDS",
                        help="wrk seconds of the untimed run before it (default 1, quick 1)")
    parser.add_argument("--wrk-connections", type=int, default=50, metavar="N")
    parser.add_argument("--wrk-threads", type=int, default=1, metavar="N")
    parser.add_argument("--pin", choices=("none", "split"), default="split",
                        help="split (default): the servers on one CPU, wrk on the other; "
                             "none: the scheduler places them")
    net_run.add_report_options(parser)
    args = parser.parse_args(argv)
    loops.use_baseline_option(parser, args)
    net_run.quick_defaults(args, repeats=(5, 3), duration=(3, 1), warmup=(1, 1))
    if (args.repeats < 1 or args.duration < 1 or args.warmup < 0 or args.wrk_connections < 1
            or args.wrk_threads < 1):
        parser.error("counts and durations must be positive (wrk takes whole seconds)")
    net_run.place_and_select(parser, args, all_rows())
    return args


class WebBench(net_run.Bench):
    """run.py's Bench (cells, progress, server slots) over the framework rows, pinned, with
    the server's CPU time per request."""

    def __init__(self, args, available):
        super().__init__(args, available)
        self.server_cpus, self.client_cpus = harness.placement(args.pin)

    def http_repeat(self, order):
        args = self.args
        for name, spec in self.http_rows:
            slots = {loop: {"make": lambda loop=loop, spec=spec: spec["make"](
                loop, self.server_cpus), "server": None} for loop in order}
            try:
                for loop in order:
                    self.measure(name, loop, slots, args)
            finally:
                for loop in order:
                    self.stop(slots, loop)

    def measure(self, name, loop, slots, args):
        label, cell = f"{name} {loop}", self.results[name][loop]
        if net_run.settled(cell):
            self.done += 1
            return
        try:
            harness.require_wrk()  # before starting a server for nothing
        except harness.Unavailable as failure:
            self.record_failure(label, cell, failure)
            return
        server = self.serve(slots, loop, [cell], label)
        if server is None:
            self.done += 1
            return
        try:
            if args.warmup:
                harness.run_wrk(server, args.warmup, args.wrk_connections, args.wrk_threads,
                                cpus=self.client_cpus)
            before = harness.cpu_seconds(server.proc.pid)
            result = harness.run_wrk(server, args.duration, args.wrk_connections,
                                     args.wrk_threads, cpus=self.client_cpus)
            spent = harness.cpu_seconds(server.proc.pid) - before
        except (harness.Failure, harness.Unavailable, OSError) as failure:
            if isinstance(failure, OSError):
                failure = server.failure(f"{label}: {failure}")
            self.record_failure(label, cell, failure)
            self.stop(slots, loop)
            return
        cell["rates"].append(result["rps"])
        cell["requests"].append(result["requests"])
        # wrk's count is of the timed run; the server's CPU over the same run (10 ms ticks).
        cell["cpu_us"].append(spent * 1e6 / result["requests"])
        timeouts = result["errors"].get("timeout", 0)
        note = f" ({timeouts} timeouts)" if timeouts else ""
        self.progress(label, f"{net_report.fmt_rate(result['rps'])} req/s, "
                             f"{spent * 1e6 / result['requests']:.1f} µs CPU/request{note}")


def tables(summary):
    """[(title, header, rows)]: requests/s with ratios, then CPU per request with ratios."""
    columns = list(loops.columns())
    ratios = [f"{top}/{bottom}" for top, bottom in net_report.ratio_pairs()]
    rates = [[entry["scenario"]] + [net_report._rate_cell(entry["loops"].get(loop))
                                    for loop in columns]
             + [net_report._ratio(entry["ratios"][ratio]) for ratio in ratios]
             for entry in summary]
    costs = [[entry["scenario"]] + [net_report._cost_cell(entry["loops"].get(loop))
                                    for loop in columns]
             + [net_report._ratio(entry["cost_ratios"][ratio]) for ratio in ratios]
             for entry in summary]
    return [("HTTP/1.1 keep-alive, requests/s from wrk (median ± largest deviation); ratios "
             "(above 1: the first loop serves more)", ["requests/s"] + columns + ratios, rates),
            ("Server CPU time per request, µs (user + system over the timed run; median ± "
             "largest deviation); ratios (above 1: the first loop spends less)",
             ["CPU µs/request"] + columns + ratios, costs)]


def render(header_lines, summary, markdown):
    saved = net_report.tables
    net_report.tables = tables  # the renderers lay out whatever tables() returns
    try:
        text = (net_report.render_markdown if markdown else net_report.render_text)(
            header_lines, summary)
    finally:
        net_report.tables = saved
    notes = net_report.not_available_notes(summary)
    return text + ("\n\n" + "\n".join(notes) if notes else "")


def header_lines(host, loop_info, tools, args):
    lines = net_run.machine_lines(host, loop_info, tools, args)
    placement = ("servers on one CPU, wrk on the other" if args.pin == "split"
                 else "nothing pinned")
    lines.append(
        f"method:  median of {args.repeats} run{'s' if args.repeats != 1 else ''} per cell, "
        f"repeats interleaved round-robin; ±: largest deviation of one run from the median. "
        f"wrk -t{args.wrk_threads} -c{args.wrk_connections} -d{args.duration}s"
        + (f" after a {args.warmup} s warm-up run" if args.warmup else "")
        + f", each loop's server in turn (its own process, fresh port); {placement}")
    return lines


def tool_versions():
    from importlib import metadata
    tools = harness.tool_versions(False)
    for package in ("fastapi", "starlette", "pydantic", "aiohttp"):
        try:
            tools[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            tools[package] = None
    return tools


def main(argv=None):
    started = time.perf_counter()
    args = parse_args(argv)
    host = machine.describe()
    loop_info = net_run._core_runner().probe_loops(args.require_pyloop)
    available = [loop for loop in loops.columns() if not loop_info[loop].get("error")]
    bench = WebBench(args, available)
    bench.run()
    tools = tool_versions()
    summary = net_report.summarize(args.rows, bench.results, {}, available)
    header = header_lines(host, loop_info, tools, args)
    # The tools line names every package (machine_lines names only uvicorn and httptools).
    header = [line if not line.startswith("tools:") else "tools:   " + "; ".join(
        version if name in ("cc", "wrk") else f"{name} {version}"
        for name, version in tools.items() if version) for line in header]
    wall = time.perf_counter() - started
    print(render(header, summary, args.markdown))
    net_run.log(f"total wall time {wall:.1f} s")
    if args.json:
        config = {key: getattr(args, key) for key in (
            "quick", "repeats", "duration", "warmup", "wrk_connections", "wrk_threads", "pin")}
        config["scenarios"] = [name for name, _ in args.rows]
        config["baseline"] = loops.baseline_dir()
        results = [{key: value for key, value in entry.items()} for entry in summary]
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump({"machine": host, "loops": loop_info, "tools": tools, "config": config,
                       "results": results, "wall_seconds": round(wall, 2)}, out, indent=2,
                      default=str)
            out.write("\n")
    return net_run.exit_status(bench, args, loop_info)


if __name__ == "__main__":
    sys.exit(main())

"""benchmarks/run.py — every core-loop scenario on asyncio, uvloop, rloop and PyLoop side by side.

    python benchmarks/run.py                  # full run: 5 repeats of ~0.3 s per cell
    python benchmarks/run.py --quick          # CI smoke run, well under 30 s
    python benchmarks/run.py --scenarios timer_churn,sleep_zero --json out.json
    python benchmarks/run.py --markdown       # the table as Markdown, for the README
    python benchmarks/run.py --baseline DIR   # plus a pyloop-base column: the build in DIR

Noise control, for shared and noisy machines: each (loop, scenario) run happens in a fresh
process (worker.py) after a warm-up run, on a fresh loop; every cell is first calibrated to
a size taking about --target seconds; the repeats are interleaved round-robin (repeat 1 of
every scenario and loop, then repeat 2, ...) with the loop order rotated each repeat, and
each cell reports the median. Progress goes to stderr, the report to stdout.

A peer loop or the baseline build that raises NotImplementedError in a scenario gets
"n/a (NotImplementedError)" there; PyLoop itself fails instead. Exit status: 0 when every
available loop passed every scenario's checks, 1 when a run failed (a scenario caught a wrong
result, an error or a hang), 2 when --require-pyloop was given and PyLoop could not be loaded
(the other loops are measured all the same) or the --baseline build could not be loaded
(nothing is measured).
"""

import argparse
import json
import os
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # keep the source tree free of __pycache__
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import loops      # noqa: E402  (needs the path set above)
import machine    # noqa: E402
import report     # noqa: E402
import scenarios  # noqa: E402

WORKER = os.path.join(HERE, "worker.py")


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description="Core-loop benchmarks: asyncio vs uvloop vs rloop vs PyLoop, side by side.")
    parser.add_argument("--quick", action="store_true",
                        help="CI smoke run: 3 repeats of ~0.05 s per cell")
    parser.add_argument("--scenarios", metavar="A,B",
                        help="comma list of scenarios (module or row names); default: all")
    parser.add_argument("--repeats", type=int, help="runs per cell (default 5, quick 3)")
    parser.add_argument("--target", type=float, metavar="SECONDS",
                        help="duration of one timed run (default 0.3, quick 0.05)")
    parser.add_argument("--json", metavar="PATH", help="also write all samples as JSON here")
    parser.add_argument("--markdown", action="store_true",
                        help="print the report as Markdown (for the README)")
    parser.add_argument("--require-pyloop", action="store_true",
                        help="exit 2 when PyLoop cannot be loaded")
    loops.add_baseline_option(parser)
    args = parser.parse_args(argv)
    loops.use_baseline_option(parser, args)
    args.repeats = args.repeats or (3 if args.quick else 5)
    args.target = args.target or (0.05 if args.quick else 0.3)
    if args.repeats < 1 or args.target <= 0:
        parser.error("--repeats and --target must be positive")
    try:
        args.rows = scenarios.select(args.scenarios)
    except ValueError as exc:
        parser.error(str(exc))
    return args


def call_worker(arguments, deadline, cpus=None):
    """Run worker.py with `arguments` in a fresh interpreter; return its JSON answer.

    A worker still running after `deadline` seconds dumps its stack and exits (faulthandler);
    the answer is then {"error": ..., "detail": ...} like any other failure. `cpus`: the CPUs
    the worker, and every process it starts, may run on (default: any).
    """
    command = [sys.executable, "-B", WORKER, "--deadline", f"{deadline:g}", *map(str, arguments)]
    pin = (lambda: os.sched_setaffinity(0, cpus)) if cpus else None
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=deadline + 30,
                              preexec_fn=pin)
    except subprocess.TimeoutExpired as exc:
        return {"error": f"killed after {deadline + 30:.0f} s", "detail": str(exc.stderr or "")}
    lines = done.stdout.strip().splitlines()
    try:
        answer = json.loads(lines[-1]) if lines else None
    except json.JSONDecodeError:
        answer = None
    detail = "\n".join(done.stderr.strip().splitlines()[-20:])
    if not isinstance(answer, dict):
        if "Timeout (" in done.stderr:
            frames = [line.strip() for line in done.stderr.splitlines() if "File " in line]
            where = f"; innermost frame: {frames[0]}" if frames else ""
            answer = {"error": f"no result after {deadline:g} s (hung loop?){where}"}
        else:
            tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
            answer = {"error": f"worker exited with status {done.returncode}: {tail}"}
    if answer.get("error"):
        answer["detail"] = detail
    return answer


def log(message):
    print(message, file=sys.stderr, flush=True)


def log_detail(answer):
    """The tail of a failed worker's stderr (its traceback), indented under the failure."""
    for line in answer.get("detail", "").splitlines():
        log(f"    | {line}")


def probe_loops(require_pyloop):
    """Load each loop in a throwaway process; say clearly which ones are unavailable.

    A baseline build asked for (--baseline) that cannot be loaded, or not from its directory,
    ends the run at once (exit 2): a table without it would not answer the question asked.
    """
    info = {}
    for loop in loops.columns():
        info[loop] = call_worker(["probe", loop], deadline=60)
        info[loop].pop("detail", None)
        if info[loop].get("error") and loop == loops.BASELINE:
            log(f"{loop} (--baseline {loops.baseline_dir()}) unavailable: {info[loop]['error']}")
            sys.exit(2)
        if info[loop].get("error"):
            label = "PyLoop" if loop == "pyloop" else loop
            consequence = "its column reads n/a; the other loops are measured"
            if require_pyloop and loop == "pyloop":
                consequence += "; exit status 2 at the end (--require-pyloop)"
            log(f"{label} unavailable: {info[loop]['error']} -- {consequence}")
        elif info[loop].get("asyncio_fallback"):
            log(f"WARNING: {loop}'s new_event_loop() made {info[loop]['class']}, asyncio's own"
                f" loop class: its column is not measuring a native loop")
    return info


def calibrate_all(args, available, results, progress):
    """Find each cell's size for ~target seconds; return {(row, loop): size}.

    Quick runs skip this pass: size 0 makes each measuring process calibrate for itself,
    which saves one process per cell at the price of sizes varying a little between runs.
    """
    if args.quick:
        return {(row, loop): 0 for row in args.rows for loop in available}
    sizes = {}
    for row in args.rows:
        for loop in available:
            answer = call_worker(["calibrate", loop, row, args.target], 10 + 20 * args.target)
            if answer.get("error"):
                progress(f"{row} {loop}: {settle(results[row][loop], loop, answer)} calibrating:"
                         f" {answer['error']}", answer)
            else:
                sizes[row, loop] = answer["size"]
                progress(f"{row} {loop}: size {answer['size']}")
    return sizes


def settle(cell, loop, answer):
    """Record a worker's failure in `cell`: n/a when a peer or the baseline lacks a method
    (NotImplementedError), an error otherwise; return the word for the progress line."""
    if answer.get("not_implemented") and loop != "pyloop":
        cell.update(na="NotImplementedError", detail=answer.get("detail"))
        return "n/a"
    cell.update(error=answer["error"], detail=answer.get("detail"))
    return "FAILED"


def measure_all(args, available):
    """Calibrate every cell, then run the repeats round-robin; return results[row][loop]."""
    results = {row: {loop: {"rates": [], "sizes": [], "seconds": [], "error": None, "na": None}
                     for loop in available} for row in args.rows}
    cells = len(args.rows) * len(available)
    steps = cells * (args.repeats + (0 if args.quick else 1))
    done = 0

    def progress(message, failure=None):
        nonlocal done
        done += 1
        log(f"[{done}/{steps}] {message}")
        if failure:
            log_detail(failure)

    sizes = calibrate_all(args, available, results, progress)
    # Generous next to the ~target seconds a run takes, short enough that a hung loop does
    # not stall a CI smoke run for long.
    deadline = (10 if args.quick else 5) + 20 * args.target
    for repeat in range(args.repeats):
        # Rotate the loop order each repeat so no loop always runs just after another.
        order = available[repeat % len(available):] + available[:repeat % len(available)]
        for row in args.rows:
            for loop in order:
                cell = results[row][loop]
                if cell["error"] or cell["na"]:
                    done += 1  # a loop that failed a scenario once is not timed on it again
                    continue
                answer = call_worker(["measure", loop, row, sizes[row, loop],
                                      "--target", args.target], deadline)
                if answer.get("error"):
                    progress(f"{row} {loop}: {settle(cell, loop, answer)}: {answer['error']}",
                             answer)
                    continue
                cell["rates"].append(answer["rate"])
                cell["sizes"].append(answer["size"])
                cell["seconds"].append(answer["seconds"])
                progress(f"{row} {loop}: {answer['rate']:,.0f} ops/s ({answer['seconds']:.2f} s)")
    return results


def main(argv=None):
    started = time.perf_counter()
    args = parse_args(argv)
    host = machine.describe()
    loop_info = probe_loops(args.require_pyloop)
    available = [loop for loop in loops.columns() if not loop_info[loop].get("error")]
    results = measure_all(args, available) if available else {}
    summary = report.summarize(args.rows, results)
    config = {"repeats": args.repeats, "target_seconds": args.target, "quick": args.quick,
              "scenarios": args.rows, "baseline": loops.baseline_dir()}
    header = report.header_lines(host, loop_info, config)
    wall = time.perf_counter() - started
    print(report.render_markdown(header, summary) if args.markdown
          else report.render_text(header, summary))
    log(f"total wall time {wall:.1f} s")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump({"machine": host, "loops": loop_info, "config": config,
                       "results": summary, "wall_seconds": round(wall, 2)}, out, indent=2)
            out.write("\n")
    failed = [f"{row} on {loop}" for row in results for loop in results[row]
              if results[row][loop]["error"]]
    if failed:
        log(f"FAILED: {', '.join(failed)}")
    if args.require_pyloop and loop_info["pyloop"].get("error"):
        log("PyLoop is required (--require-pyloop) but unavailable: "
            + loop_info["pyloop"]["error"])
        return 2
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

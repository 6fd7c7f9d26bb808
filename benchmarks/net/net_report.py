"""benchmarks/net/net_report.py — medians, ratios, fractions of the C floor, tables.

Three tables: echo requests/s (with the ratios and each loop's fraction of the C epoll floor),
echo MiB/s, and HTTP requests/s (with the ratios); run_io.py's rows (kind "io": UDP,
subprocesses, pipes, TLS) make a fourth, each row in its own unit. Plain text or Markdown.
The ratios are asyncio's to uvloop's, then PyLoop's to each other loop's (uvloop, rloop, the
baseline build).
"""

import statistics

from loops import BASELINE, columns, pyloop_ratios

FLOOR = "c-epoll"  # the bare C epoll echo server: the machine's floor for the echo rows


def ratio_pairs():
    """(numerator, denominator) of every ratio column of this run, in column order."""
    return [("asyncio", "uvloop")] + pyloop_ratios(columns(), ("uvloop", "rloop", BASELINE))


def _stats(values):
    if not values:
        return None, None
    median = statistics.median(values)
    spread = max(abs(value - median) for value in values) / median if median else None
    return median, spread


def summarize_cell(cell):
    """Add median, spread, MiB/s median and CPU µs per operation median to one cell's
    samples."""
    median, spread = _stats(cell["rates"]) if not (cell["error"] or cell["na"]) else (None, None)
    mib, _ = _stats(cell["mib"]) if median is not None and cell["mib"] else (None, None)
    cost, cost_spread = (_stats(cell["cpu_us"]) if median is not None and cell.get("cpu_us")
                         else (None, None))  # CPU µs per operation
    return dict(cell, median=median, spread=spread, mib_median=mib, cpu_us_median=cost,
                cpu_us_spread=cost_spread)


def summarize(rows, results, floors, available):
    """One dict per row: every loop's summarized cell, the ratios, fractions of the floor.

    `results[row][loop]` and `floors[(size, conns)]` hold {"rates", "mib", "error", "na",
    "detail"}; `rows` are (name, spec) pairs, spec as run.py makes them.
    """
    summary = []
    for name, spec in rows:
        entry = {"scenario": name, "kind": spec["kind"], "loops": {}}
        if spec.get("unit"):
            entry["unit"] = spec["unit"]
        if spec["kind"] == "echo":
            entry.update(size=spec["size"], conns=spec["conns"])
            floor = floors.get((spec["size"], spec["conns"]))
            entry["floor"] = summarize_cell(floor) if floor else None
        for loop in columns():
            if loop in available:
                entry["loops"][loop] = summarize_cell(results[name][loop])
        entry["ratios"], entry["cost_ratios"] = {}, {}
        for top, bottom in ratio_pairs():
            value = entry["loops"].get(top, {}).get("median")
            base = entry["loops"].get(bottom, {}).get("median")
            entry["ratios"][f"{top}/{bottom}"] = value / base if value and base else None
            # The same sense for CPU per request: above 1, `top` spends less than `bottom`.
            cost = entry["loops"].get(top, {}).get("cpu_us_median")
            base_cost = entry["loops"].get(bottom, {}).get("cpu_us_median")
            entry["cost_ratios"][f"{top}/{bottom}"] = (base_cost / cost if cost and base_cost
                                                      else None)
        if spec["kind"] == "echo":
            floor_median = (entry["floor"] or {}).get("median")
            entry["of_floor"] = {
                loop: (entry["loops"].get(loop, {}).get("median") or 0) / floor_median
                if floor_median and entry["loops"].get(loop, {}).get("median") else None
                for loop in columns()}
        summary.append(entry)
    return summary


def fmt_rate(value):
    if value >= 1e6:
        return f"{value / 1e6:.2f}M"
    if value >= 1e4:
        return f"{value / 1e3:.1f}k"
    if value >= 1e3:
        return f"{value / 1e3:.2f}k"
    return f"{value:.0f}"


def fmt_mib(value):
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}"


def _status(cell):
    """The text of a cell that has no number, or None when it has one."""
    if cell is None:
        return "n/a"
    if cell["na"]:
        return f"n/a ({cell['na']})"
    if cell["error"]:
        return "FAIL"
    if cell["median"] is None:
        return "-"  # not measured (e.g. interrupted)
    return None


def _rate_cell(cell):
    status = _status(cell)
    if status:
        return status
    spread = f" ±{cell['spread'] * 100:.0f}%" if cell["spread"] is not None and len(
        cell["rates"]) > 1 else ""
    return fmt_rate(cell["median"]) + spread


def _mib_cell(cell):
    return _status(cell) or fmt_mib(cell["mib_median"])


def _ratio(value, percent=False):
    if value is None:
        return "n/a"
    return f"{value * 100:.0f}%" if percent else f"{value:.2f}x"


def tables(summary):
    """[(title, header, rows)] for the sections that have rows."""
    echo = [entry for entry in summary if entry["kind"] == "echo"]
    http = [entry for entry in summary if entry["kind"] == "http"]
    io = [entry for entry in summary if entry["kind"] == "io"]
    loops = list(columns())
    ratios = [f"{top}/{bottom}" for top, bottom in ratio_pairs()]
    out = []
    if echo:
        header = (["echo: requests/s", "C floor"] + loops + ratios
                  + [f"{loop}/floor" for loop in loops])
        rows = [[entry["scenario"], _rate_cell(entry["floor"])]
                + [_rate_cell(entry["loops"].get(loop)) for loop in loops]
                + [_ratio(entry["ratios"][ratio]) for ratio in ratios]
                + [_ratio(entry["of_floor"][loop], percent=True) for loop in loops]
                for entry in echo]
        out.append(("Echo, requests/s (median ± largest deviation); ratios; "
                    "fraction of the C epoll floor", header, rows))
        header = ["echo: MiB/s", "C floor"] + loops
        rows = [[entry["scenario"], _mib_cell(entry["floor"])]
                + [_mib_cell(entry["loops"].get(loop)) for loop in loops] for entry in echo]
        out.append(("Echo, MiB/s of payload echoed back (median)", header, rows))
    if http:
        header = ["http: requests/s"] + loops + ratios
        rows = [[entry["scenario"]] + [_rate_cell(entry["loops"].get(loop)) for loop in loops]
                + [_ratio(entry["ratios"][ratio]) for ratio in ratios]
                for entry in http]
        out.append(("HTTP/1.1 keep-alive, requests/s from wrk (median ± largest deviation); "
                    "ratios", header, rows))
    if io:
        header = ["scenario", "unit"] + loops + ratios
        rows = [[entry["scenario"], entry.get("unit", "")]
                + [_rate_cell(entry["loops"].get(loop)) for loop in loops]
                + [_ratio(entry["ratios"][ratio]) for ratio in ratios]
                for entry in io]
        out.append(("UDP, subprocesses, pipes, TLS: operations/s (median ± largest "
                    "deviation); ratios", header, rows))
        costed = [entry for entry in io if any(
            cell.get("cpu_us_median") for cell in entry["loops"].values())]
        if costed:
            header = ["CPU per operation", "unit"] + loops + ratios
            rows = [[entry["scenario"], "µs/op"]
                    + [_cost_cell(entry["loops"].get(loop)) for loop in loops]
                    + [_ratio(entry["cost_ratios"][ratio]) for ratio in ratios]
                    for entry in costed]
            out.append(("CPU time per operation (user + system, µs, median ± largest "
                        "deviation): the server process's for UDP and TLS, the worker's with "
                        "the children it reaped for subprocess and pipe rows; ratios in the "
                        "sense of the rates: above 1, the first loop spends less", header, rows))
    return out


def _cost_cell(cell):
    status = _status(cell)
    if status or cell["cpu_us_median"] is None:
        return status or "-"
    spread = cell["cpu_us_spread"]
    return f"{cell['cpu_us_median']:.1f}" + (
        f" ±{spread * 100:.0f}%" if spread is not None and len(cell["cpu_us"]) > 1 else "")


def not_available_notes(summary):
    """One line per n/a or failed cell: row, loop, and the reason (the error's own words)."""
    notes = []
    for entry in summary:
        for loop, cell in entry["loops"].items():
            if cell["na"] or cell["error"]:
                reason = (cell["detail"] or "").strip().splitlines()[-1:] or [""]
                status = f"n/a ({cell['na']})" if cell["na"] else f"FAIL: {cell['error']}"
                notes.append(f"{entry['scenario']} on {loop}: {status}"
                             + (f" -- {reason[0]}" if reason[0] and cell["na"] else ""))
    return notes


def render_text(header_lines, summary):
    out = list(header_lines)
    for title, header, rows in tables(summary):
        table = [header] + rows
        widths = [max(len(row[col]) for row in table) for col in range(len(header))]
        out += ["", title, ""]
        for index, row in enumerate(table):
            out.append("  ".join(cell.ljust(widths[0]) if col == 0 else cell.rjust(widths[col])
                                 for col, cell in enumerate(row)).rstrip())
            if index == 0:
                out.append("  ".join("-" * width for width in widths))
    return "\n".join(out)


def render_markdown(header_lines, summary):
    out = [f"- {line.split(':', 1)[0]}: {line.split(':', 1)[1].strip()}" for line in header_lines]
    for title, header, rows in tables(summary):
        out += ["", f"**{title}**", ""]
        out.append("| " + " | ".join(header) + " |")
        out.append("|" + "|".join([" --- "] + [" ---: "] * (len(header) - 1)) + "|")
        for row in rows:
            out.append("| " + " | ".join(row) + " |")
    return "\n".join(out)

"""benchmarks/report.py — medians, ratios and the side-by-side table (plain text or Markdown)."""

import statistics

from loops import columns, pyloop_ratios


def summarize(rows, results):
    """One dict per row: each loop's median rate, spread and error, and the ratio columns.

    `results[row][loop]` holds {"rates": [...], "error": str or None, "na": str or None}.
    The spread is the largest deviation of a single run from the median, as a fraction of
    the median.
    """
    summary = []
    for row in rows:
        entry = {"scenario": row, "loops": {}}
        for loop in columns():
            cell = results.get(row, {}).get(loop)
            if cell is None:
                continue
            rates = cell["rates"]
            measured = rates and not (cell["error"] or cell["na"])
            median = statistics.median(rates) if measured else None
            spread = max(abs(rate - median) for rate in rates) / median if median else None
            entry["loops"][loop] = dict(cell, median=median, spread=spread)
        for top, bottom in pyloop_ratios(columns()):
            a = entry["loops"].get(top, {}).get("median")
            b = entry["loops"].get(bottom, {}).get("median")
            entry[f"{top}/{bottom}"] = a / b if a and b else None
        summary.append(entry)
    return summary


def _rate(value):
    if value >= 1e6:
        return f"{value / 1e6:.2f}M"
    if value >= 1e3:
        return f"{value / 1e3:.0f}k"
    return f"{value:.0f}"


def _cells(entry):
    cells = [entry["scenario"]]
    for loop in columns():
        cell = entry["loops"].get(loop)
        if cell is None:
            cells.append("n/a")
        elif cell["na"]:
            cells.append(f"n/a ({cell['na']})")
        elif cell["error"]:
            cells.append("FAIL")
        else:
            cells.append(f"{_rate(cell['median'])} ±{cell['spread'] * 100:.0f}%")
    for top, bottom in pyloop_ratios(columns()):
        ratio = entry[f"{top}/{bottom}"]
        cells.append(f"{ratio:.2f}x" if ratio else "n/a")
    return cells


def _titles():
    return (["scenario"] + [f"{loop} ops/s" for loop in columns()]
            + [f"{top}/{bottom}" for top, bottom in pyloop_ratios(columns())])


def header_lines(machine, loop_info, config):
    """Lines describing the machine, the loops and the method, printed above the table."""
    load = machine["load_average"]
    lines = [
        f"date:    {machine['date']}",
        f"machine: {machine['cpu']}, {machine['logical_cores']} logical cores "
        f"({machine['usable_cores']} usable), {machine['os']}"
        + (f", load average {' '.join(map(str, load))} at start" if load else ""),
        f"python:  {machine['python']} ({machine['python_build']})",
    ]
    for loop in columns():
        info = loop_info[loop]
        if info.get("error"):
            lines.append(f"{loop + ':':8} UNAVAILABLE ({info['error']})")
        else:
            built = f", built in {info['from']}" if info.get("from") else ""
            lines.append(f"{loop + ':':8} {info['version']} ({info['class']}{built})"
                         + (" -- WARNING: asyncio's own loop class"
                            if info.get("asyncio_fallback") else ""))
    lines.append(
        f"method:  median of {config['repeats']} runs per cell, each sized to ~"
        f"{config['target_seconds']:g} s and run in a fresh process after a warm-up; loops "
        f"interleaved round-robin; ±: largest deviation of one run from the median")
    return lines


def render_text(header, summary):
    table = [_titles()] + [_cells(entry) for entry in summary]
    widths = [max(len(row[col]) for row in table) for col in range(len(table[0]))]
    out = list(header) + [""]
    for index, row in enumerate(table):
        out.append("  ".join(cell.ljust(widths[0]) if col == 0 else cell.rjust(widths[col])
                             for col, cell in enumerate(row)).rstrip())
        if index == 0:
            out.append("  ".join("-" * width for width in widths))
    return "\n".join(out)


def render_markdown(header, summary):
    out = [f"- {line.split(':', 1)[0]}: {line.split(':', 1)[1].strip()}" for line in header]
    out.append("")
    titles = _titles()
    out.append("| " + " | ".join(titles) + " |")
    out.append("|" + "|".join([" --- "] + [" ---: "] * (len(titles) - 1)) + "|")
    for entry in summary:
        out.append("| " + " | ".join(_cells(entry)) + " |")
    return "\n".join(out)

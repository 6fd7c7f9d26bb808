"""benchmarks/scenarios.py — the registry: scenario modules, their table rows, selection."""

import importlib

# Scenario modules in table order; each defines VARIANTS (row name -> fn(loop, size) -> ops)
# and MIN_SIZE (the smallest size worth timing).
MODULES = (
    "call_soon_storm",
    "timer_churn",
    "sleep_zero",
    "future_roundtrip",
    "task_gather",
)


def rows():
    """Every table row name, in order, e.g. 'call_soon_storm/chains'."""
    names = []
    for module in MODULES:
        names.extend(importlib.import_module(module).VARIANTS)
    return names


def lookup(row):
    """Return (function, min_size) for a row name."""
    module = importlib.import_module(row.split("/", 1)[0])
    return module.VARIANTS[row], module.MIN_SIZE


def select(spec):
    """Rows chosen by a comma list of module names ('timer_churn') or row names."""
    every = rows()
    if not spec:
        return every
    chosen = []
    for wanted in (part.strip() for part in spec.split(",")):
        if not wanted:
            continue
        matches = [row for row in every if row == wanted or row.split("/", 1)[0] == wanted]
        if not matches:
            raise ValueError(f"unknown scenario {wanted!r}; known: {', '.join(every)}")
        chosen.extend(row for row in matches if row not in chosen)
    return chosen

"""tests/checks/test_module_sizes.py — no source file of the engine, the bindings or the
package grows past 600 lines (CONVENTIONS.md 1: one concept per file, explain anything past
600) unless the allow-list below names it and says why."""

import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[2]
TREES = ("core", "bindings", "python/data_bridge/pyloop")
SUFFIXES = {".cpp", ".hpp", ".h", ".py"}
MAX_LINES = 600

# Files still over the limit, by path relative to the repository, with the reason. An entry
# must go once its file is back under the limit, so the list only shrinks.
ALLOWED_OVER: dict[str, str] = {}


def line_counts():
    """{relative path: number of lines} for every source file under TREES."""
    counts = {}
    for tree in TREES:
        for path in (ROOT / tree).rglob("*"):
            if path.is_file() and path.suffix in SUFFIXES:
                with path.open("rb") as f:
                    counts[path.relative_to(ROOT).as_posix()] = sum(1 for _ in f)
    return counts


def test_sources_are_found():
    counts = line_counts()
    for tree in TREES:
        assert any(path.startswith(tree + "/") for path in counts), f"{tree}/ has no sources"


def test_no_source_file_exceeds_the_limit():
    over = {path: n for path, n in line_counts().items() if n > MAX_LINES}
    unexpected = sorted(
        f"{path}: {n} lines" for path, n in over.items() if path not in ALLOWED_OVER
    )
    assert not unexpected, (
        f"over {MAX_LINES} lines, split them (or allow-list them with a reason): "
        + "; ".join(unexpected)
    )


def test_allow_list_names_only_files_still_over_the_limit():
    counts = line_counts()
    stale = sorted(
        f"{path}: {counts[path]} lines" if path in counts else f"{path}: no such source file"
        for path in ALLOWED_OVER
        if counts.get(path, 0) <= MAX_LINES
    )
    assert not stale, f"not over {MAX_LINES} lines, take off ALLOWED_OVER: " + "; ".join(stale)

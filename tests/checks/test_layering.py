"""tests/checks/test_layering.py — the C++ core never includes Python or nanobind."""

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[2]
FORBIDDEN = re.compile(r'#\s*include\s*[<"](Python\.h|nanobind/[^>"]*|pybind11/[^>"]*)[>"]')


def test_core_sources_do_not_include_python_or_nanobind():
    sources = [p for p in (ROOT / "core").rglob("*") if p.suffix in {".hpp", ".h", ".cpp", ".cc"}]
    assert sources, "core/ has no sources"
    offenders = [
        f"{p.relative_to(ROOT)}: {m.group(0)}"
        for p in sources
        for m in FORBIDDEN.finditer(p.read_text())
    ]
    assert offenders == []


def test_python_package_does_not_reach_into_core():
    """The Python package talks to the extension only (data_bridge.pyloop._pyloop)."""
    package = ROOT / "python" / "data_bridge" / "pyloop"
    for path in package.rglob("*.py"):
        text = path.read_text()
        assert "ctypes" not in text, path

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


# System calls that move bytes or manage descriptors: the core owns every one of them
# (core/socket_io, core/readiness_set...); the bindings only adapt Python objects to the core.
SYSCALLS = re.compile(
    r"(?<![\w.>])(?:::)?(recv|recvfrom|recvmsg|send|sendto|sendmsg|read|readv|write|writev|"
    r"accept4?|connect|shutdown|socket|socketpair|pipe2?|close|epoll_\w+|kqueue|kevent|ioctl|"
    r"fcntl|eventfd)\s*\("
)


def code_only(text):
    """C++ source without comments and string or character literals."""
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    text = re.sub(r"//[^\n]*", " ", text)
    return re.sub(r'"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\'', '""', text)


def test_code_only_strips_comments_and_literals():
    assert SYSCALLS.search(code_only('int n = ::recv(fd, b, 1, 0);'))
    assert SYSCALLS.search(code_only('ssize_t n = send(fd, b, 1, 0);'))
    assert not SYSCALLS.search(code_only('// recv(fd) in a comment\n"send(" ;'))
    assert not SYSCALLS.search(code_only("writer.write(data); r->read(x); io.reader.start();"))


def test_bindings_make_no_system_calls():
    sources = [p for p in (ROOT / "bindings").rglob("*") if p.suffix in {".hpp", ".h", ".cpp"}]
    assert sources, "bindings/ has no sources"
    offenders = [
        f"{p.relative_to(ROOT)}: {m.group(0)}"
        for p in sources
        for m in SYSCALLS.finditer(code_only(p.read_text()))
    ]
    assert offenders == []


def test_sigpipe_suppression_lives_in_one_place():
    """MSG_NOSIGNAL (absent on macOS) is named only where the core's sends are made."""
    users = sorted(
        str(p.relative_to(ROOT))
        for folder in ("core", "bindings")
        for p in (ROOT / folder).rglob("*")
        if p.suffix in {".hpp", ".h", ".cpp"} and "MSG_NOSIGNAL" in code_only(p.read_text())
    )
    assert users == ["core/src/socket_io.cpp"]

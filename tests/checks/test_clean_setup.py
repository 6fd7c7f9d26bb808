"""tests/checks/test_clean_setup.py — the build scripts use the project's own venv, never a
Python that happens to be on PATH.

A machine that had nanobind installed by hand in its system interpreter once hid a broken
sanitizer build (a relative -DPython_EXECUTABLE made CMake fall back to the PATH's python).
These checks put a bare interpreter, which has none of the build requirements, first on PATH
and run the scripts' build configuration: it must still succeed, with the venv's interpreter.
"""

import os
import pathlib
import re
import subprocess
import sys
import venv

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
PROJECT_PYTHON = ROOT / ".venv" / "bin" / "python"


@pytest.fixture(scope="module")
def bare_path(tmp_path_factory):
    """A PATH whose python, python3 and python3.X are an interpreter without nanobind."""
    home = tmp_path_factory.mktemp("bare-venv")
    venv.EnvBuilder(with_pip=False, symlinks=True).create(home)
    bare = home / "bin" / "python"
    probe = subprocess.run([str(bare), "-c", "import nanobind"], capture_output=True)
    assert probe.returncode != 0, "the bare interpreter unexpectedly imports nanobind"
    return f"{home / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"


def cache_value(build_dir, key):
    text = (build_dir / "CMakeCache.txt").read_text()
    found = re.search(rf"^{key}:[A-Z]+=(.*)$", text, re.MULTILINE)
    return found.group(1) if found else None


@pytest.mark.skipif(not PROJECT_PYTHON.exists(), reason="run scripts/setup.sh first")
def test_sanitizer_build_configures_with_the_venv_when_path_has_a_bare_python(bare_path, tmp_path):
    build = tmp_path / "asan"
    env = dict(os.environ, PATH=bare_path)
    env.pop("VIRTUAL_ENV", None)
    done = subprocess.run(
        ["bash", "scripts/sanitize.sh", "--configure-only", "--build-dir", str(build)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    found = pathlib.Path(cache_value(build, "Python_EXECUTABLE"))
    assert found == PROJECT_PYTHON, found


def test_cmake_names_the_interpreter_that_lacks_nanobind(bare_path, tmp_path):
    """Configured with an interpreter that cannot build the extension, CMake says which one
    and what to do, instead of a find_package search failure."""
    bare = pathlib.Path(bare_path.split(os.pathsep)[0]) / "python"
    done = subprocess.run(
        ["cmake", "-S", str(ROOT), "-B", str(tmp_path / "b"), "-G", "Ninja",
         f"-DPython_EXECUTABLE={bare}"],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode != 0
    assert "cannot import nanobind" in done.stderr and str(bare) in done.stderr, done.stderr


def test_scripts_never_pass_a_relative_interpreter_to_cmake():
    """Every -DPython_EXECUTABLE in the scripts and the Makefile is built from an absolute
    path ($PWD/..., $(abspath ...)), not a bare .venv/bin/python."""
    offenders = []
    for path in [*ROOT.joinpath("scripts").glob("*.sh"), ROOT / "Makefile", ROOT / ".ci" / "run"]:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            for value in re.findall(r"-DPython_EXECUTABLE=(\S+)", line):
                value = value.strip("'\"")
                if not (value.startswith(("/", "$PWD", '"$PWD', "${PWD}", "$(abspath", "$PY"))):
                    offenders.append(f"{path.relative_to(ROOT)}:{number}: {value}")
    assert offenders == []
    assert 'PY="$PWD/.venv/bin/python"' in (ROOT / "scripts" / "sanitize.sh").read_text()

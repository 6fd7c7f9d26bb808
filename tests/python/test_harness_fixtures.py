# tests/python/test_harness_fixtures.py: the suite's own contract, checked by running pytest on a
# tiny test file with this directory's conftest.py: an unexpected exception-handler call fails
# the test, and a missing data_bridge.pyloop errors loudly unless PYLOOP_TESTS_ASYNCIO_ONLY=1.

import os
import shutil
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))

SAMPLE_TESTS = '''
def test_quiet(loop):
    loop.call_soon(loop.stop)
    loop.run_forever()

def test_reports_unexpectedly(loop):
    loop.call_exception_handler({"message": "surprise"})

def test_reports_expectedly(loop, expect_exception_handler):
    loop.call_exception_handler({"message": "expected"})
    assert [c["message"] for c in expect_exception_handler] == ["expected"]

def test_has_timeout(request):
    assert request.node.get_closest_marker("timeout").args[0] > 0
'''


# Runs pytest with an import hook that makes data_bridge.pyloop fail to import, as in an unbuilt
# checkout (a hook, not a shadow package, so that an editable install's finder cannot win).
RUNNER = '''
import sys
import pytest


class BlockPyloop:
    def find_spec(self, name, path=None, target=None):
        if name == "data_bridge.pyloop" or name.startswith("data_bridge.pyloop."):
            raise ImportError("extension not built")
        return None


sys.meta_path.insert(0, BlockPyloop())
sys.exit(pytest.main(["-p", "no:cacheprovider", "-rA", "-q", "test_sample.py"]))
'''


def run_pytest(tmp_path, *, asyncio_only):
    """Run the sample tests with this directory's conftest, data_bridge.pyloop unimportable."""
    shutil.copy(os.path.join(HERE, "conftest.py"), tmp_path / "conftest.py")
    (tmp_path / "test_sample.py").write_text(SAMPLE_TESTS)
    env = dict(os.environ)
    env.pop("PYLOOP_TESTS_ASYNCIO_ONLY", None)
    if asyncio_only:
        env["PYLOOP_TESTS_ASYNCIO_ONLY"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return subprocess.run(
        [sys.executable, "-c", RUNNER],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture(scope="module")
def asyncio_only_run(tmp_path_factory):
    return run_pytest(tmp_path_factory.mktemp("asyncio_only"), asyncio_only=True)


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    return run_pytest(tmp_path_factory.mktemp("full"), asyncio_only=False)


def outcome_lines(output, word):
    return sorted(line.split()[1] for line in output.splitlines() if line.startswith(word + " "))


def test_unexpected_exception_handler_call_fails_the_test(asyncio_only_run):
    out = asyncio_only_run.stdout
    assert asyncio_only_run.returncode == 1, out
    assert outcome_lines(out, "ERROR") == ["test_sample.py::test_reports_unexpectedly[asyncio]"]
    assert "unexpected call_exception_handler" in out
    assert "surprise" in out
    passed = outcome_lines(out, "PASSED")
    assert "test_sample.py::test_quiet[asyncio]" in passed
    assert "test_sample.py::test_reports_expectedly[asyncio]" in passed


def test_asyncio_only_deselects_pyloop(asyncio_only_run):
    out = asyncio_only_run.stdout
    assert "[pyloop]" not in out
    assert "3 deselected" in out


def test_missing_pyloop_errors_loudly(full_run):
    out = full_run.stdout
    assert full_run.returncode != 0, out
    errors = outcome_lines(out, "ERROR")
    for name in ("test_quiet", "test_reports_expectedly", "test_reports_unexpectedly"):
        assert f"test_sample.py::{name}[pyloop]" in errors
    assert "PYLOOP_TESTS_ASYNCIO_ONLY" in out
    assert "SKIPPED" not in out


def test_every_test_gets_a_timeout(asyncio_only_run, full_run):
    assert "PASSED test_sample.py::test_has_timeout" in asyncio_only_run.stdout
    assert "PASSED test_sample.py::test_has_timeout" in full_run.stdout

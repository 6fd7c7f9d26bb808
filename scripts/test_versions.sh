#!/usr/bin/env bash
# scripts/test_versions.sh — builds PyLoop for every other CPython 3.12+ on this machine and
# runs the behaviour and check suites on it (asyncio's 3.12/3.13 differences: loop_factory,
# eager tasks, Server.close_clients, cleanup_socket...). Interpreters that are not installed
# are reported and skipped; the main interpreter is covered by `make test-python`.
set -euo pipefail
cd "$(dirname "$0")/.."

found=0
for version in 3.12 3.13; do
  python=""
  # pyenv installs first (its shims exist for versions that are not selected and then
  # fail), then whatever the PATH offers; a candidate must actually run.
  for candidate in "${PYENV_ROOT:-$HOME/.pyenv}/versions/$version"*/bin/python "python$version"; do
    if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c "import sys" >/dev/null 2>&1; then
      python=$(command -v "$candidate")
      break
    fi
  done
  if [ -z "$python" ]; then
    echo "test-versions: CPython $version not installed here; skipped"
    continue
  fi
  found=1
  venv=".venv-$version"
  echo "test-versions: CPython $version ($python)"
  [ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --upgrade pip >/dev/null
  "$venv/bin/python" -m pip install -q -r requirements-dev.txt
  "$venv/bin/python" -m pip install -q --no-build-isolation --no-deps .
  "$venv/bin/python" -m pip install -q --no-build-isolation --no-deps ./examples/native_extension
  "$venv/bin/python" -m pytest tests/python tests/checks -q -p no:cacheprovider
done
[ "$found" = 1 ] || echo "test-versions: no other CPython found"

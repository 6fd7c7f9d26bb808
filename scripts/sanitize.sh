#!/usr/bin/env bash
# scripts/sanitize.sh — runs the Python suites against an ASan + UBSan debug build of the extension.
#
# The interpreter is not instrumented, so libasan is preloaded and leak detection is off
# (CPython keeps objects alive until exit by design); reference leaks are covered by
# tests/checks/test_hot_path_leaks.py instead. Any ASan or UBSan report aborts the run.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python

cmake -S . -B build/asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DPYLOOP_SANITIZE=ON \
      -DPYLOOP_BUILD_TESTS=ON -DPython_EXECUTABLE="$PY" >/dev/null
cmake --build build/asan -j 2

# The core's own tests, instrumented.
(cd build/asan && ctest --output-on-failure -j 2)

# A package tree whose extension is the instrumented one; it shadows the installed one.
site=build/asan/site
rm -rf "$site" && mkdir -p "$site/data_bridge"
cp -r python/data_bridge/pyloop "$site/data_bridge/pyloop"
cp build/asan/_pyloop*.so "$site/data_bridge/pyloop/"

libasan=$(gcc -print-file-name=libasan.so)
libubsan=$(gcc -print-file-name=libubsan.so)
export LD_PRELOAD="$libasan $libubsan"
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:halt_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export PYTHONPATH="$PWD/$site"
export PYLOOP_SANITIZER_BUILD=1
export PYTHONMALLOC=malloc  # lets ASan see every Python allocation too
"$PY" -c "import data_bridge.pyloop._pyloop as m, sys; assert 'build/asan' in m.__file__, m.__file__; print('sanitize: using', m.__file__)"
"$PY" -m pytest tests/python tests/checks -q -p no:cacheprovider

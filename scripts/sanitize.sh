#!/usr/bin/env bash
# scripts/sanitize.sh — runs the Python suites against an ASan + UBSan debug build of the extension.
#
# The interpreter is not instrumented, so libasan is preloaded and leak detection is off
# (CPython keeps objects alive until exit by design); reference leaks are covered by
# tests/checks/test_hot_path_leaks.py instead. Any ASan or UBSan report aborts the run.
#
#   scripts/sanitize.sh                                  build, then run the suites
#   scripts/sanitize.sh --configure-only [--build-dir D] only configure CMake (tests/checks
#                                                        uses it to prove the venv is used)
set -euo pipefail
cd "$(dirname "$0")/.."
# Absolute: CMake resolves a relative interpreter path against its build directory, finds
# nothing there, and falls back to whatever python is on PATH (which may lack nanobind).
PY="$PWD/.venv/bin/python"

build=build/asan
configure_only=0
while (($#)); do
  case "$1" in
    --configure-only) configure_only=1 ;;
    --build-dir) build="$2"; shift ;;
    *) echo "sanitize.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Debug -DPYLOOP_SANITIZE=ON \
      -DPYLOOP_BUILD_TESTS=ON -DPython_EXECUTABLE="$PY" >/dev/null
((configure_only)) && exit 0
cmake --build "$build" -j 2

# The core's own tests, instrumented.
(cd "$build" && ctest --output-on-failure -j 2)

# A package tree whose extension is the instrumented one; it shadows the installed one.
site="$build/site"
rm -rf "$site" && mkdir -p "$site/data_bridge"
cp -r python/data_bridge/pyloop "$site/data_bridge/pyloop"
cp "$build"/_pyloop*.so "$site/data_bridge/pyloop/"
cp -r include "$site/data_bridge/pyloop/include"  # the native bridge headers (get_include())
# The native bridge's example extension, instrumented too, against the repository's headers.
cmake -S examples/native_extension -B "$build/native_example" -G Ninja -DCMAKE_BUILD_TYPE=Debug \
      -DEXAMPLE_SANITIZE=ON -DPython_EXECUTABLE="$PY" -DPYLOOP_INCLUDE_DIR="$PWD/include" >/dev/null
cmake --build "$build/native_example" -j 2
cp "$build"/native_example/pyloop_native_example*.so "$site/"

libasan=$(gcc -print-file-name=libasan.so)
libubsan=$(gcc -print-file-name=libubsan.so)
export LD_PRELOAD="$libasan $libubsan"
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:halt_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export PYTHONPATH="$PWD/$site"
export PYLOOP_SANITIZER_BUILD=1
export PYTHONMALLOC=malloc  # lets ASan see every Python allocation too
"$PY" -c "import data_bridge.pyloop._pyloop as m, sys; assert sys.argv[1] in m.__file__, m.__file__; print('sanitize: using', m.__file__)" "$PWD/$site"
"$PY" -c "import pyloop_native_example as m, sys; assert sys.argv[1] in m.__file__, m.__file__" "$PWD/$site"
"$PY" -m pytest tests/python tests/checks -q -p no:cacheprovider

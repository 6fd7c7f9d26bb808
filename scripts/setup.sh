#!/usr/bin/env bash
# scripts/setup.sh — installs what building and testing need, then builds PyLoop into .venv.
# Idempotent: system packages are installed only when missing; the build is incremental.
set -euo pipefail
cd "$(dirname "$0")/.."

# wrk loads the HTTP benchmarks (benchmarks/net); libssl-dev builds the TLS benchmark's C
# client and openssl makes its certificate at run time (benchmarks/net/run_io.py).
# postgresql and redis-server are the servers the library tests start on their own ports and
# data directories (tests/python/services.py); the packages' own instances are not used.
APT_PACKAGES=(g++ make cmake ninja-build libasio-dev libgtest-dev wrk libssl-dev openssl
              postgresql redis-server)

need_apt=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
if ((${#need_apt[@]})); then
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
  echo "setup: installing system packages: ${need_apt[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $("$PYTHON" --version)"
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -r requirements-dev.txt -r benchmarks/net/requirements.txt

echo "setup: building data_bridge.pyloop"
.venv/bin/python -m pip install -q --no-build-isolation --no-deps .
.venv/bin/python -c "import data_bridge.pyloop as p; print('setup: data_bridge.pyloop', p.__version__, 'ready')"
# The native bridge's example extension (docs/native.md), built against the headers just
# installed; tests/python/test_native_bridge*.py import it.
echo "setup: building the native bridge example (examples/native_extension)"
.venv/bin/python -m pip install -q --no-build-isolation --no-deps ./examples/native_extension

# Makefile — the project's commands. `make main` and `make test` are the README's two commands.
.PHONY: setup build main demo bench bench-net bench-io bench-native bench-quick test test-python test-cpp test-checks test-versions \
        conformance conformance-update sanitize soak clean

PY := .venv/bin/python
JOBS ?= 2

setup:
	bash scripts/setup.sh

build: setup

# The main job: an example asyncio program on PyLoop, then the side-by-side benchmark tables
# (the core loop, then networking: TCP echo and HTTP against the machine's C floor, then
# echo at 1 and 10 connections compared request by request, then UDP, subprocesses, pipes
# and TLS, then FastAPI (uvicorn) and aiohttp under wrk, then the native bridge: completions
# from other threads, CPU fan-out over the native pool, and file I/O).
main: setup
	$(PY) examples/hello_pyloop.py
	$(PY) benchmarks/run.py
	$(PY) benchmarks/net/run.py
	$(PY) benchmarks/net/paired.py --pin split --duration 5
	$(PY) benchmarks/net/paired.py --pin split --duration 5 --conns 10
	$(PY) benchmarks/net/run_io.py
	$(PY) benchmarks/net/run_web.py
	$(PY) benchmarks/native/bridge.py
	$(PY) benchmarks/native/fs.py

# The native bridge and data_bridge.pyloop.fs (issue 11).
bench-native: setup
	$(PY) benchmarks/native/bridge.py
	$(PY) benchmarks/native/fs.py

demo: setup
	$(PY) examples/hello_pyloop.py

bench: setup
	$(PY) benchmarks/run.py

bench-net: setup
	$(PY) benchmarks/net/run.py
	$(PY) benchmarks/net/paired.py --pin split --duration 5
	$(PY) benchmarks/net/paired.py --pin split --duration 5 --conns 10
	$(PY) benchmarks/net/run_io.py
	$(PY) benchmarks/net/run_web.py

# UDP echo, subprocess spawn, cat pipe round trips, TLS echo (issue 10).
bench-io: setup
	$(PY) benchmarks/net/run_io.py

bench-quick: setup
	$(PY) benchmarks/run.py --quick
	$(PY) benchmarks/net/run.py --quick
	$(PY) benchmarks/net/run_io.py --quick
	$(PY) benchmarks/net/run_web.py --quick
	$(PY) benchmarks/native/bridge.py --quick
	$(PY) benchmarks/native/fs.py --quick

# Every test: the C++ core (GoogleTest), the behaviour suite on asyncio and PyLoop, the
# structural and leak checks, CPython's asyncio suite on PyLoop against its expectations, and
# the Python suites again against an ASan + UBSan build, then on the other CPython versions
# installed here.
test: setup test-cpp test-python test-checks conformance sanitize test-versions soak

test-cpp:
	cmake -S . -B build/cpp -G Ninja -DPYLOOP_BUILD_EXTENSION=OFF -DPYLOOP_BUILD_TESTS=ON \
	      -DPYLOOP_WERROR=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null
	cmake --build build/cpp -j $(JOBS)
	cd build/cpp && ctest --output-on-failure -j $(JOBS)

# The networking and subprocess tests run twice: as they are, then in asyncio debug mode, where
# the transports, sock_* calls and children take the same native paths with debug's checks on top.
test-python:
	$(PY) -m pytest tests/python -q -p no:cacheprovider
	PYTHONASYNCIODEBUG=1 $(PY) -m pytest tests/python/test_net_*.py tests/python/test_subprocess*.py \
	      tests/python/test_lib_aiohttp.py tests/python/test_lib_uvicorn.py \
	      tests/python/test_lib_asyncpg.py tests/python/test_lib_redis.py tests/python/test_lib_grpc.py \
	      -q -p no:cacheprovider

test-checks:
	$(PY) -m pytest tests/checks -q -p no:cacheprovider

test-versions:
	bash scripts/test_versions.sh

conformance:
	$(PY) tests/conformance/run.py --loop both -j $(JOBS) --skip-expected-hangs

conformance-update:
	$(PY) tests/conformance/run.py --loop both -j $(JOBS) --update-expectations

# The Python suite against an AddressSanitizer + UBSan build of the extension.
sanitize: setup
	bash scripts/sanitize.sh

# A real aiohttp server on PyLoop under 10^6 requests and 10^4+ connections opened and closed
# (wrk and a churn client on the other CPU): descriptors, tasks, gc objects and RSS must stay
# flat (tests/soak/run_soak.py states the bounds). 1-1.5 minutes on the 2-core machine.
soak: setup
	$(PY) tests/soak/run_soak.py

clean:
	rm -rf build

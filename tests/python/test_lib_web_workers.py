# tests/python/test_lib_web_workers.py: using all cores: uvicorn --workers 2, gunicorn with
# uvicorn's worker class and hypercorn --workers 2, each serving web_apps' FastAPI app from two
# worker processes that share one listening port, on asyncio's loop and on PyLoop. Both workers
# must answer, and each must report the loop under test as its running loop.
#
# The ways to run PyLoop (the README's "Using all cores"): uvicorn's --loop import string,
# gunicorn's --worker-class data_bridge.pyloop.uvicorn_worker.UvicornWorker, and for hypercorn an
# application module that calls data_bridge.pyloop.install() (its workers make their loop with
# asyncio's default factory after importing the application).

import asyncio
import time

import pytest

import web_apps
from net_helpers import run
from server_procs import STARTUP_S, python_m, serving

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")

WORKERS = 2
BLOCK_S = 0.05  # /whoami holds its worker's loop this long: the next connection goes elsewhere


def uvicorn_argv(loop_factory):
    return python_m("uvicorn", "web_apps:fastapi_app", "--host", "127.0.0.1", "--port", "0",
                    "--workers", str(WORKERS), "--loop", loop_factory.spec)


def gunicorn_argv(loop_factory):
    pytest.importorskip("gunicorn")
    pytest.importorskip("uvicorn_worker")
    worker = {"asyncio": "web_apps.AsyncioUvicornWorker",
              "pyloop": "data_bridge.pyloop.uvicorn_worker.UvicornWorker"}[loop_factory.name]
    return python_m("gunicorn", "web_apps:fastapi_app", "--bind", "127.0.0.1:0",
                    "--workers", str(WORKERS), "--worker-class", worker, "--no-control-socket")


def hypercorn_argv(loop_factory):
    pytest.importorskip("hypercorn")
    module = {"asyncio": "web_apps", "pyloop": "web_apps_pyloop"}[loop_factory.name]
    return python_m("hypercorn", f"{module}:fastapi_app", "--bind", "127.0.0.1:0",
                    "--workers", str(WORKERS), "--worker-class", "asyncio")


SERVERS = {"uvicorn": uvicorn_argv, "gunicorn": gunicorn_argv, "hypercorn": hypercorn_argv}

# Workers sure to run their lifespan shutdown when the server is stopped: uvicorn and gunicorn
# wait for every worker; hypercorn's parent terminates the others once the first has exited.
GRACEFUL_WORKERS = {"uvicorn": WORKERS, "gunicorn": WORKERS, "hypercorn": 1}


async def ask_until_every_worker_answered(base, deadline):
    """Concurrent /whoami requests on fresh connections until WORKERS distinct processes
    answered (or the deadline passed); returns {pid: set of loop names}."""
    seen = {}
    limits = httpx.Limits(max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=base, limits=limits) as client:
        while len(seen) < WORKERS and time.monotonic() < deadline:
            try:
                replies = await asyncio.gather(
                    *(client.get("/whoami", params={"block": BLOCK_S}) for _ in range(4)))
            except httpx.TransportError:  # a worker still starting, or restarting
                await asyncio.sleep(0.1)
                continue
            for r in replies:
                assert r.status_code == 200, r.text
                seen.setdefault(r.json()["pid"], set()).add(r.json()["loop"])
    return seen


@pytest.mark.timeout(90)
@pytest.mark.parametrize("server_name", sorted(SERVERS))
def test_two_workers_share_a_port_and_both_answer(loop, loop_factory, server_name):
    argv = SERVERS[server_name](loop_factory)
    expected_loop = web_apps.loop_name(loop)  # the fixture's loop is loop_factory's
    with serving(argv) as server:
        port = server.port()
        deadline = time.monotonic() + STARTUP_S
        seen = run(loop, ask_until_every_worker_answered(f"http://127.0.0.1:{port}", deadline),
                   timeout=STARTUP_S + 5)
        code = server.stop()
    assert len(seen) == WORKERS, (seen, server.output)
    assert server.proc.pid not in seen  # the workers answer, not the process that started them
    assert all(loops == {expected_loop} for loops in seen.values()), seen
    # A graceful stop: the workers ran their lifespan shutdown, the server exited by itself.
    assert code is not None, server.output
    server.wait_for("lifespan shutdown", count=GRACEFUL_WORKERS[server_name], timeout=0)

# tests/python/services.py: PostgreSQL and Redis servers for the library tests, started on demand.
#
# Each server is started the first time a test asks for its fixture, on a loopback port chosen
# here and with a data directory of its own, and is stopped (its directory removed) when the
# session ends. The same stop also runs from atexit and from SIGTERM/SIGHUP, and each server
# gets SIGKILL-proof protection: it is started with a parent-death signal, so a test process
# that dies without cleaning up takes its servers with it. The Debian packages' own instances
# (port 5432, /var/lib/postgresql) are never used.
#
# A missing binary fails the test that needs it, naming scripts/setup.sh: it never skips.

import atexit
import ctypes
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest

SETUP_HINT = "install it with scripts/setup.sh (its APT_PACKAGES list)"
START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 10.0
PR_SET_PDEATHSIG = 1  # linux/prctl.h

# Variables of the test process that must not reach a server: the sanitizer run preloads
# libasan into every child, and Python's own settings mean nothing to C servers.
_SCRUBBED_ENV = ("LD_PRELOAD", "ASAN_OPTIONS", "UBSAN_OPTIONS", "PYTHONMALLOC", "PYTHONPATH")


def _server_env():
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED_ENV}
    env["LC_ALL"] = "C"
    return env


def free_port():
    """A loopback TCP port nobody listens on now (the kernel's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent():
    """preexec_fn: the child gets SIGKILL when the test process's thread that started it ends.

    Runs after Popen's user/group switch, which would otherwise clear the setting."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass  # not Linux: atexit and the signal handlers still stop the servers


def port_accepts(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_until_ready(ready, proc, name, log_path, timeout=START_TIMEOUT_S):
    """Return once ready() is true; fail if the server exits first or takes too long."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            pytest.fail(f"{name} exited with {proc.returncode} at start-up:\n{_tail(log_path)}",
                        pytrace=False)
        if ready():
            return
        if time.monotonic() > deadline:
            pytest.fail(f"{name} was not ready within {timeout:.0f} s:\n{_tail(log_path)}",
                        pytrace=False)
        time.sleep(0.05)


def _tail(path, lines=30):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return "(no log)"


class Server:
    """One running server process: its address, data directory and how to stop it.

    Thread safety: used from the test process's main thread (fixtures, atexit, signals)."""

    def __init__(self, name, proc, port, workdir, stop_signal):
        self.name = name  # "postgresql" or "redis"
        self.proc = proc  # the server's Popen
        self.host = "127.0.0.1"  # loopback only
        self.port = port  # the TCP port it listens on
        self.workdir = workdir  # its data directory and log, removed at stop
        self.stop_signal = stop_signal  # the signal asking it for a fast, clean shutdown

    def stop(self):
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(self.stop_signal)
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            except ProcessLookupError:
                pass
        shutil.rmtree(self.workdir, ignore_errors=True)


def _wait_or_stop(server, name, log_path, ready):
    """Register the server for the session's stop, then wait until it serves (or stop it)."""
    SERVICES.add(server)
    try:
        wait_until_ready(ready, server.proc, name, log_path)
    except BaseException:
        SERVICES.running.pop(server.name, None)
        server.stop()
        raise


class Services:
    """The servers started in this session, stopped once by whichever path comes first."""

    def __init__(self):
        self.running = {}  # name -> Server
        self._handlers_installed = False  # atexit and signal handlers are set once

    def add(self, server):
        self.running[server.name] = server
        if not self._handlers_installed:
            self._handlers_installed = True
            atexit.register(self.stop_all)
            for signum in (signal.SIGTERM, signal.SIGHUP):
                previous = signal.getsignal(signum)
                signal.signal(signum, self._on_signal(previous))

    def _on_signal(self, previous):
        def handler(signum, frame):
            self.stop_all()
            if callable(previous):
                previous(signum, frame)
            else:  # SIG_DFL (or SIG_IGN): die of the signal as we would have
                signal.signal(signum, signal.SIG_DFL)
                os.kill(os.getpid(), signum)
        return handler

    def stop_all(self):
        while self.running:
            _, server = self.running.popitem()
            server.stop()


SERVICES = Services()


# -- PostgreSQL ------------------------------------------------------------------------------


def _postgres_bindir():
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"),
                   key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    if not found:
        pytest.fail(f"PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/postgres); "
                    f"{SETUP_HINT}", pytrace=False)
    return os.path.dirname(found[-1])


def _postgres_account():
    """(uid, gid) to run PostgreSQL as: ourselves, or the package's `postgres` user as root."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam("postgres")
    except KeyError:
        pytest.fail(f"running as root and no `postgres` user exists to run PostgreSQL as; "
                    f"{SETUP_HINT}", pytrace=False)
    return entry.pw_uid, entry.pw_gid


def start_postgres():
    bindir = _postgres_bindir()
    account = _postgres_account()
    user_kw = {} if account is None else {"user": account[0], "group": account[1],
                                          "extra_groups": []}
    workdir = tempfile.mkdtemp(prefix="pyloop-pg-")
    datadir = os.path.join(workdir, "data")
    log_path = os.path.join(workdir, "server.log")
    if account is not None:
        os.chown(workdir, *account)
    env = _server_env()
    init = subprocess.run(
        [os.path.join(bindir, "initdb"), "-D", datadir, "-U", "pyloop", "--auth=trust",
         "--no-sync", "--no-instructions", "-E", "UTF8", "--locale=C"],
        env=env, cwd=workdir, capture_output=True, text=True, **user_kw)
    if init.returncode != 0:
        shutil.rmtree(workdir, ignore_errors=True)
        pytest.fail(f"initdb failed ({init.returncode}):\n{init.stdout}\n{init.stderr}",
                    pytrace=False)
    port = free_port()
    settings = {
        "listen_addresses": "127.0.0.1", "port": str(port), "unix_socket_directories": "",
        "fsync": "off", "synchronous_commit": "off", "full_page_writes": "off",
        "shared_buffers": "16MB", "max_connections": "40", "logging_collector": "off",
    }
    args = [os.path.join(bindir, "postgres"), "-D", datadir]
    for key, value in settings.items():
        args += ["-c", f"{key}={value}"]
    log = open(log_path, "wb")
    try:
        proc = subprocess.Popen(args, env=env, cwd=workdir, stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT,
                                preexec_fn=_die_with_parent, **user_kw)
    finally:
        log.close()
    # SIGINT is PostgreSQL's "fast" shutdown: clients are disconnected, nothing is waited for.
    server = Server("postgresql", proc, port, workdir, signal.SIGINT)
    pg_isready = [os.path.join(bindir, "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(port),
                  "-U", "pyloop", "-d", "postgres", "-t", "1"]

    def ready():
        # The port opens before the server accepts sessions ("the database system is starting
        # up"); pg_isready answers 0 only once it does.
        return subprocess.run(pg_isready, env=env).returncode == 0

    _wait_or_stop(server, "postgres", log_path, ready)
    server.user = "pyloop"
    server.database = "postgres"
    server.dsn = f"postgresql://pyloop@127.0.0.1:{port}/postgres"
    return server


# -- Redis -----------------------------------------------------------------------------------


def start_redis():
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not os.access(binary, os.X_OK):
        pytest.fail(f"redis-server is not installed; {SETUP_HINT}", pytrace=False)
    workdir = tempfile.mkdtemp(prefix="pyloop-redis-")
    log_path = os.path.join(workdir, "server.log")
    port = free_port()
    args = [binary, "--bind", "127.0.0.1", "--port", str(port), "--dir", workdir,
            "--save", "", "--appendonly", "no", "--daemonize", "no",
            "--logfile", log_path, "--protected-mode", "yes"]
    proc = subprocess.Popen(args, env=_server_env(), cwd=workdir, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                            preexec_fn=_die_with_parent)
    server = Server("redis", proc, port, workdir, signal.SIGTERM)
    _wait_or_stop(server, "redis-server", log_path, lambda: port_accepts(port))
    server.url = f"redis://127.0.0.1:{port}/0"
    return server


# -- fixtures (imported by conftest.py) ------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_server():
    """A PostgreSQL server of this session: .dsn, .host, .port, .user, .database."""
    server = start_postgres()
    yield server
    SERVICES.running.pop(server.name, None)
    server.stop()


@pytest.fixture(scope="session")
def redis_server():
    """A Redis server of this session: .url, .host, .port."""
    server = start_redis()
    yield server
    SERVICES.running.pop(server.name, None)
    server.stop()

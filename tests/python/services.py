# tests/python/services.py: PostgreSQL and Redis servers for the library tests, started on demand.
#
# Each server is started the first time a test asks for its fixture, on a loopback port chosen
# here and with a data directory of its own, and is stopped (its directory removed) when the
# session ends. The same stop also runs from atexit and from SIGTERM/SIGHUP. Each server runs
# under a guard (service_guard.py) holding one end of a socket pair whose other end is ours:
# when this process ends, however it ends (also SIGKILL), the guard sees end of file and stops
# the server. The guard detaches, so no server is a child of the test process (tests reaping
# every child with os.waitpid(-1) do not see them). The Debian packages' own instances (port
# 5432, /var/lib/postgresql) are never used.
#
# A missing binary fails the test that needs it, naming scripts/setup.sh: it never skips.

import atexit
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest

SETUP_HINT = "install it with scripts/setup.sh (its APT_PACKAGES list)"
START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 15.0  # the guard's own limit (10 s, then SIGKILL) and a margin
GUARD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "service_guard.py")

# Variables of the test process that must not reach a server: the sanitizer run preloads
# libasan into every child, and Python's own settings mean nothing to C servers.
_SCRUBBED_ENV = ("LD_PRELOAD", "ASAN_OPTIONS", "UBSAN_OPTIONS", "PYTHONMALLOC", "PYTHONPATH")


def _server_env():
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED_ENV}
    env["LC_ALL"] = "C"
    return env


def make_workdir(prefix):
    """A new private directory for one server. Under /tmp, not $TMPDIR: a Unix socket path must
    stay under 108 bytes, and as root the directory's parents must be open to `postgres`."""
    return tempfile.mkdtemp(prefix=prefix, dir="/tmp" if os.path.isdir("/tmp") else None)


def free_port():
    """A loopback TCP port nobody listens on now (the kernel's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_accepts(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class PortTaken(Exception):
    """The server could not bind the port free_port() picked: someone took it meanwhile."""


def with_port_retries(start, attempts=3):
    """Call start() again, on new ports, when its port was taken between pick and bind."""
    def retrying():
        for attempt in range(attempts):
            try:
                return start()
            except PortTaken as exc:
                if attempt == attempts - 1:
                    pytest.fail(f"no free port after {attempts} attempts:\n{exc}", pytrace=False)
    return retrying


def wait_until_ready(ready, server, name, log_path, timeout=START_TIMEOUT_S):
    """Return once ready() is true; fail if the server exits first or takes too long."""
    deadline = time.monotonic() + timeout
    while True:
        code = server.exit_code()
        if code is not None:
            log = _tail(log_path)
            if "already in use" in log:
                raise PortTaken(log)
            pytest.fail(f"{name} exited with {code} at start-up:\n{log}", pytrace=False)
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


def write_certificate(workdir, account):
    """A certificate authority and a server certificate for 127.0.0.1/localhost, as files
    in workdir readable by the server's account only (PostgreSQL refuses a shared key).

    Returns (cert path, key path, CA path)."""
    import trustme  # made at run time, never checked in; imported only when a server starts

    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    paths = []
    for name, blob in (("server.crt", cert.cert_chain_pems[0]), ("server.key", cert.private_key_pem),
                       ("ca.crt", ca.cert_pem)):
        path = os.path.join(workdir, name)
        blob.write_to_path(path)
        os.chmod(path, 0o600)
        if account is not None:
            os.chown(path, *account)
        paths.append(path)
    return tuple(paths)


class Server:
    """One server running under its guard: its address, data directory and how to stop it.

    Thread safety: used from the test process's main thread (fixtures, atexit, signals)."""

    def __init__(self, name, link, workdir):
        self.name = name  # "postgresql" or "redis"
        self.link = link  # our end of the guard's socket pair; closing it stops the server
        self.workdir = workdir  # its data directory and log, removed at stop
        self.host = "127.0.0.1"  # loopback only
        self.port = None  # the TCP port it listens on
        self.pid = None  # the server's process id, as the guard reported it
        self._exit = None  # the exit status the guard reported, once it did
        self._pending = b""  # bytes from the guard not yet split into lines

    def _read(self, timeout):
        """Read what the guard said within timeout; False at end of file."""
        self.link.settimeout(timeout)
        try:
            data = self.link.recv(256)
        except (socket.timeout, BlockingIOError):
            return True
        except OSError:
            data = b""
        if not data:
            return False
        self._pending += data
        while b"\n" in self._pending:
            line, self._pending = self._pending.split(b"\n", 1)
            word, _, value = line.decode().partition(" ")
            if word == "pid":
                self.pid = int(value)
            elif word == "exit":
                self._exit = int(value)
        return True

    def wait_started(self):
        deadline = time.monotonic() + START_TIMEOUT_S
        while self.pid is None and self._exit is None and time.monotonic() < deadline:
            if not self._read(0.2):
                self._exit = -1
        if self.pid is None and self._exit is None:
            self._exit = -1

    def exit_code(self):
        """The server's exit status if it has exited (-1: the guard vanished), else None."""
        if self._exit is None and not self._read(0):
            self._exit = -1
        return self._exit

    def stop(self):
        if self.link.fileno() != -1:
            try:
                self.link.shutdown(socket.SHUT_WR)  # end of file: the guard stops the server
                deadline = time.monotonic() + STOP_TIMEOUT_S
                while time.monotonic() < deadline and self._read(0.5):
                    pass
            except OSError:
                pass
            self.link.close()
        shutil.rmtree(self.workdir, ignore_errors=True)


def launch(name, command, workdir, stop_signal, account=None):
    """Start command under a guard; return its Server once the guard reported its pid."""
    ours, theirs = socket.socketpair()
    args = [sys.executable, GUARD, str(theirs.fileno()), workdir, str(int(stop_signal))]
    if account is not None:
        args += ["--user", f"{account[0]}:{account[1]}"]
    args += ["--", *command]
    try:
        # Returns as soon as the guard has detached (its first process exits at once).
        subprocess.run(args, env=_server_env(), pass_fds=[theirs.fileno()],
                       stdin=subprocess.DEVNULL, check=True)
    except BaseException:
        ours.close()
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    finally:
        theirs.close()
    server = Server(name, ours, workdir)
    server.wait_started()
    return server


def _wait_or_stop(server, name, log_path, ready):
    """Register the server for the session's stop, then wait until it serves (or stop it)."""
    SERVICES.add(server)
    try:
        wait_until_ready(ready, server, name, log_path)
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


def _start_postgres_once():
    bindir = _postgres_bindir()
    account = _postgres_account()
    user_kw = {} if account is None else {"user": account[0], "group": account[1],
                                          "extra_groups": []}
    workdir = make_workdir("pyloop-pg-")
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
    cert, key, ca = write_certificate(workdir, account)
    settings = {
        "listen_addresses": "127.0.0.1", "port": str(port), "unix_socket_directories": workdir,
        "ssl": "on", "ssl_cert_file": cert, "ssl_key_file": key,
        "fsync": "off", "synchronous_commit": "off", "full_page_writes": "off",
        "shared_buffers": "16MB", "max_connections": "40", "logging_collector": "off",
    }
    args = [os.path.join(bindir, "postgres"), "-D", datadir]
    for name, value in settings.items():
        args += ["-c", f"{name}={value}"]
    # SIGINT is PostgreSQL's "fast" shutdown: clients are disconnected, nothing is waited for.
    server = launch("postgresql", args, workdir, signal.SIGINT, account)
    server.port = port
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
    server.socket_dir = workdir  # the Unix socket is socket_dir/.s.PGSQL.<port>
    server.ca_file = ca  # the authority that signed the server's certificate
    return server


# -- Redis -----------------------------------------------------------------------------------


def _start_redis_once():
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not os.access(binary, os.X_OK):
        pytest.fail(f"redis-server is not installed; {SETUP_HINT}", pytrace=False)
    workdir = make_workdir("pyloop-redis-")
    log_path = os.path.join(workdir, "server.log")
    port, tls_port = free_port(), free_port()
    cert, key, ca = write_certificate(workdir, None)
    unix_path = os.path.join(workdir, "redis.sock")
    args = [binary, "--bind", "127.0.0.1", "--port", str(port), "--dir", workdir,
            "--unixsocket", unix_path, "--unixsocketperm", "700",
            "--tls-port", str(tls_port), "--tls-cert-file", cert, "--tls-key-file", key,
            "--tls-ca-cert-file", ca, "--tls-auth-clients", "no",
            "--save", "", "--appendonly", "no", "--daemonize", "no",
            "--protected-mode", "yes"]
    server = launch("redis", args, workdir, signal.SIGTERM)
    server.port = port
    _wait_or_stop(server, "redis-server", log_path,
                  lambda: port_accepts(port) and port_accepts(tls_port))
    server.url = f"redis://127.0.0.1:{port}/0"
    server.tls_port = tls_port  # TLS (no client certificate asked for)
    server.unix_path = unix_path  # its Unix socket
    server.ca_file = ca  # the authority that signed the server's certificate
    return server


start_postgres = with_port_retries(_start_postgres_once)
start_redis = with_port_retries(_start_redis_once)


# -- fixtures (imported by conftest.py) ------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_server():
    """A PostgreSQL server of this session: .dsn, .host, .port, .user, .database, .socket_dir;
    TLS on the same port, signed by .ca_file."""
    server = start_postgres()
    yield server
    SERVICES.running.pop(server.name, None)
    server.stop()


@pytest.fixture(scope="session")
def redis_server():
    """A Redis server of this session: .url, .host, .port, .unix_path, and TLS on .tls_port
    signed by .ca_file."""
    server = start_redis()
    yield server
    SERVICES.running.pop(server.name, None)
    server.stop()

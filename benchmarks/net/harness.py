"""benchmarks/net/harness.py — build the C programs, start and stop servers, run the load.

Everything here runs other processes and bounds them: every server is started on a fresh
loopback port (TCP or UDP), watched while it serves, and stopped (SIGTERM, then SIGKILL) by
the caller's `with` block; every client or wrk run has a duration and a hard timeout.
"""

import json
import os
import re
import resource
import select
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BENCH = os.path.dirname(HERE)  # benchmarks/: loops.py, which makes the pyloop-base loop
BUILD = os.path.join(HERE, "build")
HOST = "127.0.0.1"
# Each C program: its source and the compiler arguments it needs beyond -O2 -Wall. The TLS
# client is echo_client.c built against OpenSSL (libssl-dev), so a machine without OpenSSL's
# headers still builds the others.
C_PROGRAMS = {
    "echo_client": ("echo_client.c", ()),
    "epoll_echo_server": ("epoll_echo_server.c", ()),
    "paired_client": ("paired_client.c", ()),
    "tls_echo_client": ("echo_client.c", ("-DECHO_TLS", "-lssl", "-lcrypto")),
}
TCP_PROGRAMS = ("echo_client", "epoll_echo_server", "paired_client")  # what run.py needs
TICKS = os.sysconf("SC_CLK_TCK")  # the unit of /proc/PID/stat's CPU times
COMMON_HEADER = os.path.join(HERE, "client_common.h")  # included by the clients

# How each loop is named on uvicorn's command line (--loop). uvicorn >= 0.36 imports any
# "module:attribute" value and uses that attribute itself as the loop factory. The baseline
# goes through benchmarks/loops.py, which imports it from its directory and checks that.
UVICORN_LOOP = {"asyncio": "asyncio", "uvloop": "uvloop", "rloop": "rloop:new_event_loop",
                "pyloop": "data_bridge.pyloop:new_event_loop",
                "pyloop-base": "loops:new_baseline_loop"}


class Unavailable(Exception):
    """A cell cannot be measured for a reason that is not the loop's fault (a missing tool).

    `short` goes in the table cell ("no wrk"); the message says how to install it.
    """

    def __init__(self, short, message):
        super().__init__(message)
        self.short = short


class Failure(Exception):
    """A measurement failed. `na` is set when the server reported NotImplementedError."""

    def __init__(self, message, detail="", na=None):
        super().__init__(message)
        self.detail = detail
        self.na = na


def build_c_programs(names=TCP_PROGRAMS):
    """Compile the C programs `names` into build/ (when missing or out of date).

    Returns {name: path}; raises Unavailable when there is no C compiler or a build fails.
    """
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not compiler:
        raise Unavailable("no cc", "no C compiler (cc) found: apt-get install -y build-essential")
    os.makedirs(BUILD, exist_ok=True)
    paths = {}
    for name in names:
        source, flags = C_PROGRAMS[name]
        source = os.path.join(HERE, source)
        target = os.path.join(BUILD, name)
        paths[name] = target
        newest_input = max(os.path.getmtime(source), os.path.getmtime(COMMON_HEADER))
        if os.path.exists(target) and os.path.getmtime(target) >= newest_input:
            continue
        done = subprocess.run([compiler, "-O2", "-Wall", "-o", target, source, *flags],
                              capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            hint = (" (OpenSSL's headers: apt-get install -y libssl-dev)"
                    if "-lssl" in flags else "")
            raise Unavailable("build failed",
                              f"building {name} failed{hint}: {done.stderr.strip()[-500:]}")
    return paths


def make_certificate(directory):
    """A self-signed certificate and its key for 127.0.0.1 and localhost, made now with the
    openssl command in `directory`: (certfile, keyfile). Raises Unavailable without openssl."""
    openssl = shutil.which("openssl")
    if not openssl:
        raise Unavailable("no openssl",
                          "the openssl command is missing: apt-get install -y openssl")
    cert, key = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
    done = subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", key, "-out", cert, "-subj", "/CN=localhost",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise Unavailable("no certificate", f"openssl req failed: {done.stderr.strip()[-300:]}")
    return cert, key


def tool_versions(compiler_ok):
    """Versions of the external tools, for the report header (None when missing)."""
    versions = {}
    if compiler_ok:
        versions["cc"] = first_line_of(os.environ.get("CC") or "cc", "--version")
    wrk = first_line_of("wrk", "--version")
    versions["wrk"] = wrk.split(" Copyright")[0].strip() if wrk else None
    from importlib import metadata
    for package in ("uvicorn", "httptools"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return versions


def first_line_of(command, *arguments):
    """The first line a tool prints (its version, say), or None when it is not installed."""
    path = shutil.which(command)
    if not path:
        return None
    done = subprocess.run([path, *arguments], capture_output=True, text=True, timeout=30)
    return ((done.stdout + done.stderr).splitlines() or ["unknown"])[0].strip()


def free_port(kind=socket.SOCK_STREAM):
    """A loopback port (TCP, or UDP for SOCK_DGRAM) nobody uses right now."""
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def tcp_probe(port):
    """Return once `port` accepts a TCP connection (raises OSError until then)."""
    with socket.create_connection((HOST, port), timeout=0.5):
        pass


def udp_probe(port):
    """Return once a datagram sent to `port` comes back (raises OSError until then)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.settimeout(0.2)
        probe.connect((HOST, port))
        probe.send(b"ready?")
        if probe.recv(64) != b"ready?":
            raise OSError("the UDP server answered something else")


def tls_probe(cafile):
    """A probe completing a TLS handshake and one echoed byte, the certificate checked
    against `cafile`: a readiness check that leaves the server no half-made connection."""
    context = ssl.create_default_context(cafile=cafile)

    def probe(port):
        with socket.create_connection((HOST, port), timeout=0.5) as raw:
            with context.wrap_socket(raw, server_hostname="localhost") as tls:
                tls.sendall(b"?")
                if tls.recv(1) != b"?":
                    raise OSError("the TLS server answered something else")
    return probe


def placement(pin):
    """(CPUs for the servers, CPUs for the client) for a --pin mode: none (the scheduler
    places every process), split (servers on one CPU, the client on another), same (all on
    one CPU). Needs two usable CPUs for split and same."""
    if pin == "none":
        return None, None
    first, second = sorted(os.sched_getaffinity(0))[:2]
    return ({second}, {first}) if pin == "split" else ({first}, {first})


_FRAME = re.compile(r'File "([^"]*)", line (\d+), in (\S+)')


def not_implemented_line(text):
    """The NotImplementedError line of a traceback, or None. A bare NotImplementedError (no
    message) gets the function that raised it: "NotImplementedError in create_server
    (rloop/loop.py:499)"."""
    lines = text.splitlines()
    for index in range(len(lines) - 1, -1, -1):
        line = lines[index].strip()
        if "NotImplementedError" not in line:
            continue
        if line == "NotImplementedError":
            frames = [_FRAME.search(earlier) for earlier in lines[:index]]
            frames = [frame for frame in frames if frame]
            if frames:
                path, number, function = frames[-1].groups()
                where = "/".join(path.split(os.sep)[-2:])
                return f"{line} in {function} ({where}:{number})"
        return line
    return None


def cpu_seconds(pid):
    """User + system CPU seconds of process `pid` (all its threads) so far."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime (fields 14, 15)


def pin_to(cpus):
    """A preexec_fn that keeps the child on `cpus` (None when `cpus` is None)."""
    if cpus is None:
        return None
    return lambda: os.sched_setaffinity(0, cpus)


class Server:
    """One server process on a fresh loopback port; a context manager that always stops it."""

    def __init__(self, label, command, cwd=None, ready_timeout=20.0, cpus=None, env=None,
                 probe=tcp_probe, udp=False):
        self.label = label
        self.cpus = cpus  # CPU numbers the process may run on (None: wherever it is scheduled)
        self.env = env or {}  # variables set for the process on top of this one's
        self.probe = probe  # probe(port) returns once the server serves, raises OSError before
        self.port = free_port(socket.SOCK_DGRAM if udp else socket.SOCK_STREAM)
        self.command = [part.replace("{port}", str(self.port)) for part in command]
        self.cwd = cwd
        self.ready_timeout = ready_timeout
        self.proc = None
        self._log = None

    def __enter__(self):
        self._log = tempfile.TemporaryFile(mode="w+", encoding="utf-8", errors="replace")
        env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", PYTHONUNBUFFERED="1", **self.env)
        env.pop("PYTHONASYNCIODEBUG", None)  # debug mode would slow every loop differently
        self.proc = subprocess.Popen(self.command, cwd=self.cwd, env=env,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=self._log, preexec_fn=pin_to(self.cpus))
        try:
            self._wait_ready()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc_info):
        self.stop()
        if self._log is not None:
            self._log.close()
            self._log = None
        return False

    def _wait_ready(self):
        """Wait until the probe succeeds on the port; fail if the process exits first."""
        deadline = time.monotonic() + self.ready_timeout
        while True:
            if self.proc.poll() is not None:
                raise self.failure(f"{self.label} exited with status {self.proc.returncode}"
                                   " before listening")
            try:
                self.probe(self.port)
                return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise self.failure(f"{self.label} not listening after {self.ready_timeout:g} s")
            time.sleep(0.02)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stderr_text(self):
        if self._log is None:
            return ""
        self._log.flush()
        self._log.seek(0)
        text = self._log.read()
        self._log.seek(0, os.SEEK_END)
        return text

    def failure(self, message):
        """A Failure for `message`, after giving a dying server a moment to finish its report.

        If the server's stderr shows a NotImplementedError, the failure is an n/a.
        """
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.proc.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                pass
        text = self.stderr_text()
        tail = "\n".join(text.strip().splitlines()[-15:])
        missing = not_implemented_line(text)
        if missing:
            return Failure(message, detail=missing, na="NotImplementedError")
        if self.proc is not None and self.proc.poll() is not None:
            message += f" (server exited with status {self.proc.returncode})"
        return Failure(message, detail=tail)

    def check(self):
        """Raise a Failure if the server died or reported NotImplementedError while serving."""
        if not self.alive() or not_implemented_line(self.stderr_text()):
            raise self.failure(f"{self.label} stopped serving")

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


def python_server(loop, style, cpus=None, extra=(), **options):
    """servers.py serving `style` on `loop`; `extra` arguments go to servers.py, `options`
    (probe, udp) to Server."""
    command = [sys.executable, "-B", os.path.join(HERE, "servers.py"), "--loop", loop,
               "--style", style, "--host", HOST, "--port", "{port}", *extra]
    return Server(f"servers.py --loop {loop} --style {style}", command, cpus=cpus, **options)


def floor_server(programs, cpus=None):
    return Server("epoll_echo_server", [programs["epoll_echo_server"], "{port}", HOST],
                  cpus=cpus)


def uvicorn_server(loop, app="asgi_app:app", cpus=None, modules=()):
    """uvicorn (httptools) serving `app` (module:attribute in benchmarks/net) on `loop`;
    `modules` are the app's own requirements (checked like uvicorn's)."""
    for module in ("uvicorn", "httptools", *modules):
        if not _has_module(module):
            raise Unavailable(f"no {module}", f"{module} not installed: .venv/bin/pip install "
                              "-r benchmarks/net/requirements.txt")
    command = [sys.executable, "-B", "-m", "uvicorn", app, "--app-dir", HERE,
               "--host", HOST, "--port", "{port}", "--loop", UVICORN_LOOP[loop],
               "--http", "httptools", "--ws", "none", "--lifespan", "off",
               "--no-access-log", "--log-level", "warning", "--workers", "1"]
    env = None
    if UVICORN_LOOP[loop].startswith("loops:"):
        env = {"PYTHONPATH": os.pathsep.join(filter(None, (BENCH, os.environ.get("PYTHONPATH"))))}
    return Server(f"uvicorn --loop {UVICORN_LOOP[loop]}", command, env=env, cpus=cpus)


def _has_module(name):
    from importlib.util import find_spec
    return find_spec(name) is not None


def run_echo_client(programs, server, conns, size, duration, warmup, stall=5.0,
                    program="echo_client", extra=(), cpus=None):
    """One timed run of echo_client (or `program`, e.g. tls_echo_client, with `extra`
    arguments such as --udp) against `server`, on `cpus` if given; returns its JSON answer
    (rps, ...) plus client_cpu: the client's CPU time over its wall time (1.0: one core busy),
    and server_cpu_s: the CPU seconds the server spent from the moment the client reported its
    connections made (TLS handshakes done) to its end: the warm-up is included, as in
    total_requests; in 1/SC_CLK_TCK steps, 10 ms on Linux.
    """
    command = [programs[program], "--host", HOST, "--port", str(server.port),
               "--conns", str(conns), "--size", str(size), "--duration", f"{duration:g}",
               "--warmup", f"{warmup:g}", "--stall", f"{stall:g}", *extra]
    limit = warmup + duration + 2 * stall + 10
    before, started = resource.getrusage(resource.RUSAGE_CHILDREN), time.monotonic()
    client = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              bufsize=0, preexec_fn=pin_to(cpus))
    try:
        head = _first_line(client, limit)  # {"connected": N}, or the error that stopped it
        server_before = _cpu_or_none(server)
        out, err = client.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        client.kill()
        client.communicate()
        raise server.failure(f"{program} still running after {limit:g} s") from None
    except BaseException:  # Ctrl-C, a failure reading its first line: no client left behind
        client.kill()
        client.communicate()
        raise
    # The servers are still running (not reaped), so the children's usage that grew is the
    # client's.
    after, wall = resource.getrusage(resource.RUSAGE_CHILDREN), time.monotonic() - started
    server_after = _cpu_or_none(server)
    server_spent = (server_after - server_before
                    if server_before is not None and server_after is not None else None)
    lines = (head + out).decode(errors="replace").strip().splitlines()
    try:
        answer = json.loads(lines[-1]) if lines else {}
    except json.JSONDecodeError:
        answer = {}
    if client.returncode != 0 or "rps" not in answer:
        reason = answer.get("error") or (err.decode(errors="replace").strip()
                                         or f"status {client.returncode}")
        raise server.failure(f"{program}: {reason}")
    server.check()
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    answer["client_cpu"] = cpu / wall if wall > 0 else None
    answer["server_cpu_s"] = server_spent
    return answer


def _first_line(proc, timeout):
    """The bytes `proc` wrote on stdout up to its first newline (or its end), read from the
    unbuffered pipe so that communicate() finds the rest. TimeoutExpired after `timeout`."""
    deadline = time.monotonic() + timeout
    data = b""
    while b"\n" not in data:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([proc.stdout], [], [], left)[0]:
            raise subprocess.TimeoutExpired(proc.args, timeout)
        chunk = os.read(proc.stdout.fileno(), 4096)
        if not chunk:
            break
        data += chunk
    return data


def _cpu_or_none(server):
    try:
        return cpu_seconds(server.proc.pid)
    except OSError:  # the server is gone: check() says why
        return None


_WRK_RATE = re.compile(r"Requests/sec:\s+([0-9.]+)")
_WRK_TOTAL = re.compile(r"(\d+) requests in ([0-9.]+)(\w+)")
_WRK_SOCKET = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
_WRK_NON2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")


def parse_wrk(text):
    """Requests/sec, request count and error counts from wrk's report."""
    rate = _WRK_RATE.search(text)
    total = _WRK_TOTAL.search(text)
    errors = _WRK_SOCKET.search(text)
    non2xx = _WRK_NON2XX.search(text)
    return {
        "rps": float(rate.group(1)) if rate else None,
        "requests": int(total.group(1)) if total else 0,
        "errors": dict(zip(("connect", "read", "write", "timeout"),
                           map(int, errors.groups()))) if errors else {},
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
    }


def require_wrk():
    """wrk's path; Unavailable when it is not installed."""
    wrk = shutil.which("wrk")
    if not wrk:
        raise Unavailable("no wrk", "wrk not installed: apt-get install -y wrk")
    return wrk


def run_wrk(server, duration, connections, threads, cpus=None):
    """One wrk run (whole seconds, at least 1) against `server`, on `cpus` if given; returns
    parse_wrk's dict."""
    wrk = require_wrk()
    seconds = max(1, int(round(duration)))
    command = [wrk, f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--timeout", "2s",
               f"http://{HOST}:{server.port}/"]
    limit = seconds + 20
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=limit,
                              preexec_fn=pin_to(cpus))
    except subprocess.TimeoutExpired:
        raise server.failure(f"wrk still running after {limit} s") from None
    result = parse_wrk(done.stdout)
    server.check()
    hard_errors = {kind: count for kind, count in result["errors"].items()
                   if count and kind != "timeout"}
    if done.returncode != 0 or not result["rps"] or not result["requests"]:
        raise server.failure(f"wrk: no requests completed ({done.stderr.strip()[-200:]})")
    if result["non_2xx"] or hard_errors:
        raise server.failure(f"wrk: {result['non_2xx']} non-2xx responses, socket errors "
                             f"{hard_errors}")
    return result

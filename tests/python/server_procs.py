# tests/python/server_procs.py: web servers (uvicorn, gunicorn, hypercorn) started as subprocesses
# by the web-server tests, on a loopback port they choose themselves (port 0), found in their log.
#
# Each server runs in its own session (process group), so that every worker it forked or spawned
# can be found and killed; `serving()` stops the server on every exit path, failed tests
# included, then kills what is left of the group.

import contextlib
import os
import pathlib
import re
import signal
import subprocess
import sys
import threading
import time

HERE = pathlib.Path(__file__).resolve().parent
STARTUP_S = 20.0  # a cold interpreter importing FastAPI on a loaded 2-core machine
STOP_S = 10.0  # graceful stop before the group is killed
ADDRESS = re.compile(r"https?://127\.0\.0\.1:(\d+)")


class ServerProcess:
    """A server subprocess whose stderr and stdout are collected line by line."""

    def __init__(self, argv):
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), env.get("PYTHONPATH")]))
        env["PYTHONUNBUFFERED"] = "1"
        self.proc = subprocess.Popen(
            argv, cwd=HERE, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True, text=True)
        self.lines = []  # output lines so far (stdout and stderr merged)
        self._changed = threading.Condition()  # notified on each new line and at EOF
        self._eof = False
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._eof = True
            self._changed.notify_all()

    @property
    def output(self):
        with self._changed:
            return "\n".join(self.lines)

    def wait_for(self, pattern, count=1, timeout=STARTUP_S):
        """The first `count` matches of `pattern` in the output; fails if they do not come."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = [m for m in map(regex.search, self.lines) if m]
                if len(found) >= count:
                    return found[:count]
                left = deadline - time.monotonic()
                if self._eof or left <= 0:
                    raise AssertionError(
                        f"server did not log {pattern!r} x{count} "
                        f"(exit code {self.proc.poll()}):\n" + "\n".join(self.lines))
                self._changed.wait(left)

    def port(self):
        return int(self.wait_for(ADDRESS.pattern)[0].group(1))

    def stop(self, sig=signal.SIGTERM):
        """Signal the server (the process started), as a process manager would, and wait for it
        to stop its workers and exit; then kill whatever is left of its group.

        Returns the server's exit code (None if it had to be killed)."""
        if self.proc.stdout.closed:  # stopped already: the group id may belong to others now
            return self.proc.returncode
        code = None
        self.proc.send_signal(sig)
        try:
            code = self.proc.wait(STOP_S)
        except subprocess.TimeoutExpired:
            pass
        # Workers the leader failed to reap, or a leader that did not stop: kill them all.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self._reader.join(STOP_S)
        self.proc.stdout.close()
        return code


@contextlib.contextmanager
def serving(argv):
    server = ServerProcess(argv)
    try:
        yield server
    finally:
        server.stop()


def python_m(module, *args):
    """argv running `python -m module args...` with this interpreter (the project's venv)."""
    return [sys.executable, "-m", module, *args]

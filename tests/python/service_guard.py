# tests/python/service_guard.py: runs one server for the test session and stops it when told to,
# or when the test process goes away however it ends (a crash, SIGKILL).
#
#   service_guard.py FD WORKDIR STOP_SIGNAL [--user UID:GID] -- COMMAND...
#
# FD is this end of a socket pair whose other end the test process holds. The guard detaches
# first (forks, the parent exits at once), so neither the guard nor the server is a child of the
# test process: tests that reap every child with os.waitpid(-1) or assert there is none are
# unaffected. It then starts COMMAND (as UID:GID if given), reports "pid N" on FD, and waits.
# End of file on FD (a stop request, or the test process's death) makes it send STOP_SIGNAL to
# the server, SIGKILL after 10 s, remove WORKDIR and exit; if the server exits first it reports
# "exit CODE" on FD, removes WORKDIR and exits. Only the standard library is used.

import ctypes
import os
import select
import shutil
import signal
import socket
import subprocess
import sys

STOP_TIMEOUT_S = 10.0
PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with_guard():
    """preexec_fn: the server gets SIGKILL if the guard itself is killed.

    Runs after Popen's user switch, which would clear an earlier setting."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def parse(argv):
    fd, workdir, stop_signal = int(argv[0]), argv[1], int(argv[2])
    rest = argv[3:]
    account = None
    if rest and rest[0] == "--user":
        uid, gid = rest[1].split(":")
        account = int(uid), int(gid)
        rest = rest[2:]
    if not rest or rest[0] != "--":
        raise SystemExit("usage: service_guard.py FD WORKDIR SIGNAL [--user UID:GID] -- CMD...")
    return fd, workdir, stop_signal, account, rest[1:]


def stop(proc, stop_signal):
    if proc.poll() is None:
        proc.send_signal(stop_signal)
        try:
            proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_for_end_of_file(link, proc):
    """Wait until the test process closes its end; report the server's exit if it comes first."""
    reported = False
    while True:
        if not reported and proc is not None and proc.poll() is not None:
            link.sendall(f"exit {proc.returncode}\n".encode())
            reported = True
        try:
            readable, _, _ = select.select([link], [], [], 0.2)
        except InterruptedError:
            continue
        if readable and not link.recv(64):
            return  # the test process stopped us or is gone


def main(argv):
    fd, workdir, stop_signal, account, command = parse(argv)
    if os.fork() != 0:
        os._exit(0)  # the test process reaps this parent at once; the guard lives on alone
    os.setsid()  # no terminal signals from the test's process group
    signal.signal(signal.SIGTERM, lambda *_: None)  # a stray SIGTERM only ends one wait
    link = socket.socket(fileno=fd)
    user_kw = {} if account is None else {"user": account[0], "group": account[1],
                                          "extra_groups": []}
    proc = None
    try:
        with open(os.path.join(workdir, "server.log"), "ab") as log:
            try:
                proc = subprocess.Popen(command, cwd=workdir, stdin=subprocess.DEVNULL,
                                        stdout=log, stderr=subprocess.STDOUT,
                                        preexec_fn=die_with_guard, **user_kw)
            except OSError as exc:
                log.write(f"cannot start {command[0]}: {exc}\n".encode())
        if proc is None:
            link.sendall(b"exit 127\n")
        else:
            link.sendall(f"pid {proc.pid}\n".encode())
        # The log stays readable until the test process lets go, also after a failed start.
        wait_for_end_of_file(link, proc)
    except OSError:
        pass  # the other end is gone: stop the server all the same
    finally:
        if proc is not None:
            stop(proc, stop_signal)
        shutil.rmtree(workdir, ignore_errors=True)
        link.close()


if __name__ == "__main__":
    main(sys.argv[1:])

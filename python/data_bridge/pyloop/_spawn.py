"""data_bridge/pyloop/_spawn.py — starting a child as subprocess.Popen would, through the core's
posix_spawn (core/src/process_spawn.cpp), and the Popen object that stands for it.

Popen's own preparation is repeated step for step (argument list, the shell, the audit event,
the environment list, the executables to try over PATH, the standard streams), then one
native call starts the child on the native runtime (the subprocess mixin awaits it), and the
result is a real subprocess.Popen instance filled in as
Popen's constructor fills it (pid, args, the pipe file objects...), so poll(), wait(),
send_signal(), communicate() and repr() are Popen's own. Anything posix_spawn cannot express
(preexec_fn, user, group, extra_groups, umask, process_group, pipesize, or a stream argument
Popen would reject) goes to subprocess.Popen itself: the behaviour is the same either way.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import threading

from ._pyloop import fast_spawn_available

FAST_SPAWN = fast_spawn_available()

_PIPE, _STDOUT, _DEVNULL = subprocess.PIPE, subprocess.STDOUT, subprocess.DEVNULL

# Popen keyword arguments the fast path does not take, with the value that means "unused".
_UNUSED = {
    "preexec_fn": None, "startupinfo": None, "creationflags": 0, "user": None,
    "group": None, "extra_groups": None, "umask": -1, "pipesize": -1, "process_group": None,
    "encoding": None, "errors": None, "text": None,
}
_FAST_KEYWORDS = frozenset(
    {"executable", "close_fds", "cwd", "env", "restore_signals", "start_new_session", "pass_fds"}
)

# What Popen.__init__ leaves in a Popen that started a child with bufsize=0 and bytes pipes.
_POPEN_STATE = {
    "_child_created": True, "_closed_child_pipe_fds": True, "_communication_started": False,
    "_input": None, "_sigint_wait_secs": 0.25, "encoding": None, "errors": None,
    "pipesize": -1, "returncode": None, "text_mode": False,
}
_Popen = subprocess.Popen
_new_lock = threading.Lock
_FileIO = io.FileIO
_fsencode = os.fsencode
_FS_ENCODING, _FS_ERRORS = sys.getfilesystemencoding(), sys.getfilesystemencodeerrors()


def _encode(value) -> bytes:
    """os.fsencode(value), with the common case (a str) without its two calls."""
    if type(value) is str:
        return value.encode(_FS_ENCODING, _FS_ERRORS)
    return _fsencode(value)


def takes_fast_path(kwargs: dict) -> bool:
    """True when every keyword argument is one posix_spawn expresses (or is left unused), and
    subprocess.Popen is Popen itself: a program (or a test) that replaced it gets its own
    class called, as with asyncio."""
    if not FAST_SPAWN or subprocess.Popen is not _Popen:
        return False
    for name, value in kwargs.items():
        if name in _FAST_KEYWORDS:
            continue
        if name not in _UNUSED or value != _UNUSED[name] or type(value) is not type(_UNUSED[name]):
            return False
    return True


def _stream(value, name: str) -> int | None:
    """A standard stream argument as spawn() takes it: None, PIPE, DEVNULL or a descriptor.
    Raises _Fallback for what only Popen knows how to refuse."""
    if value is None:
        return None
    if value == _PIPE or value == _DEVNULL:
        return int(value)
    if isinstance(value, int):
        if value < 0:
            raise _Fallback
        return value
    return value.fileno()


class _Fallback(Exception):  # noqa: N818 (a signal, not an error)
    """An argument the fast path leaves to subprocess.Popen (it raises Popen's error)."""


def popen(args, shell, stdin, stdout, stderr, bufsize, kwargs):
    """subprocess.Popen as asyncio starts it (universal_newlines=False)."""
    return subprocess.Popen(args, shell=shell, stdin=stdin, stdout=stdout, stderr=stderr,
                            universal_newlines=False, bufsize=bufsize, **kwargs)


_searched = {}  # (PATH, executable) -> the paths Popen would try; bounded below


def _candidates(encoded: bytes, env) -> list:
    """The paths Popen's child tries for a bare name: each directory of os.get_exec_path(env)
    joined with it (as os._execvpe). Without env, the PATH of os.environ, looked up as
    os.get_exec_path does it, and the list kept per PATH value (a pure function of it)."""
    if env is not None:
        return [os.path.join(os.fsencode(d), encoded) for d in os.get_exec_path(env)]
    path = os.environ.get("PATH")
    key = (path, encoded)
    found = _searched.get(key)
    if found is None:
        dirs = os.defpath.split(os.pathsep) if path is None else path.split(os.pathsep)
        found = [os.path.join(os.fsencode(d), encoded) for d in dirs]
        if len(_searched) >= 256:
            _searched.clear()
        _searched[key] = found
    return list(found)


def prepare(args, shell, stdin, stdout, stderr, bufsize, executable=None, close_fds=True,
            cwd=None, env=None, restore_signals=True, start_new_session=False, pass_fds=(),
            **unused):
    """Popen's preparation, step for step: the arguments of spawn_async() after the loop
    and the future. Raises what Popen raises for bad arguments, or _Fallback."""
    if bufsize != 0 or stdin == _STDOUT or stdout == _STDOUT:
        raise _Fallback
    if pass_fds and not close_fds:
        import warnings
        warnings.warn("pass_fds overriding close_fds.", RuntimeWarning)
        close_fds = True
    if isinstance(args, (str, bytes)):
        args = [args]
    elif isinstance(args, os.PathLike):
        if shell:
            raise TypeError("path-like args is not allowed when shell is true")
        args = [args]
    else:
        args = list(args)
    if shell:
        args = ["/bin/sh", "-c"] + args
        if executable:
            args[0] = executable
    if executable is None:
        executable = args[0]
    in_fd = _stream(stdin, "stdin")
    out_fd = _stream(stdout, "stdout")
    if stderr == _STDOUT:
        err_fd = _STDOUT if out_fd is not None else sys.__stdout__.fileno()
    else:
        err_fd = _stream(stderr, "stderr")

    sys.audit("subprocess.Popen", executable, args, cwd, env)
    if env is not None:
        env_list = []
        for key, value in env.items():
            key = _encode(key)
            if b"=" in key:
                raise ValueError("illegal environment variable name")
            env_list.append(key + b"=" + _encode(value))
    else:
        env_list = None
    encoded = _encode(executable)
    if b"/" in encoded:  # os.path.dirname(encoded) is not empty
        candidates = [encoded]
    else:
        candidates = _candidates(encoded, env)
    argv = [_encode(a) for a in args]
    keep = sorted(map(int, set(pass_fds))) if pass_fds else []
    return (argv, candidates, env_list, None if cwd is None else os.fsencode(cwd),
            in_fd, out_fd, err_fd, close_fds, keep, start_new_session, restore_signals,
            executable, cwd)


def make_popen(popen_args, started):
    """The subprocess.Popen of a child spawn_async() started: (pid, stdin, stdout, stderr)."""
    pid, in_w, out_r, err_r = started
    proc = _Popen.__new__(_Popen)
    proc.__dict__.update(_POPEN_STATE)
    proc._waitpid_lock = _new_lock()
    proc.args = popen_args
    proc.pid = pid
    proc.stdin = None if in_w is None else _FileIO(in_w, "wb")
    proc.stdout = None if out_r is None else _FileIO(out_r, "rb")
    proc.stderr = None if err_r is None else _FileIO(err_r, "rb")
    return proc

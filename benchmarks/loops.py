"""benchmarks/loops.py — the event loops under comparison: how to make one, and its version.

Besides the installed loops, a run may compare PyLoop with another build of itself: the
`pyloop-base` column imports data_bridge.pyloop from the directory named by the
PYLOOP_BASELINE environment variable (set by the runners' --baseline option, inherited by
every worker and server process they start), and checks that it really came from there.
"""

import asyncio
import glob
import importlib
import os
import sys

# The order in which loops appear in every table column; BASELINE is added when one is set.
LOOPS = ("asyncio", "uvloop", "rloop", "pyloop")
BASELINE = "pyloop-base"  # the column of the build named by --baseline
KNOWN = LOOPS + (BASELINE,)  # every name a worker or server accepts
BASELINE_ENV = "PYLOOP_BASELINE"  # carries the baseline's directory to child processes
# The loops PyLoop's ratio columns divide by, in column order (those in the run).
PEERS = ("uvloop", "asyncio", "rloop", BASELINE)
# The module behind each loop (its new_event_loop makes the loop) and its distribution name.
MODULES = {"uvloop": ("uvloop", "uvloop"), "rloop": ("rloop", "rloop"),
           "pyloop": ("data_bridge.pyloop", "data-bridge-pyloop"),
           BASELINE: ("data_bridge.pyloop", "data-bridge-pyloop")}


def use_baseline(directory):
    """Make `directory` (or none, when None) the baseline of this process and its children.

    Raises ValueError when the directory holds no build of the package.
    """
    if directory is None:
        os.environ.pop(BASELINE_ENV, None)
        return
    directory = os.path.abspath(directory)
    if not glob.glob(os.path.join(directory, "data_bridge", "pyloop", "_pyloop*.so")):
        raise ValueError(f"{directory} holds no build of PyLoop "
                         "(expected data_bridge/pyloop/_pyloop*.so in it)")
    os.environ[BASELINE_ENV] = directory


def add_baseline_option(parser):
    """The runners' --baseline DIR option (argparse); use_baseline_option applies it."""
    parser.add_argument("--baseline", metavar="DIR",
                        help=f"also measure the PyLoop build in DIR (DIR/data_bridge/pyloop/) "
                             f"as column {BASELINE}, with the ratio pyloop/{BASELINE}")


def use_baseline_option(parser, args):
    """Hand --baseline to this process and every worker and server it starts."""
    try:
        use_baseline(args.baseline)
    except ValueError as exc:
        parser.error(f"--baseline: {exc}")


def baseline_dir():
    """The baseline build's directory, or None when this run has none."""
    return os.environ.get(BASELINE_ENV) or None


def columns():
    """The loops of this run, in table order: LOOPS, then BASELINE when a baseline is set."""
    return LOOPS + ((BASELINE,) if baseline_dir() else ())


def pyloop_ratios(present, peers=PEERS):
    """(numerator, denominator) ratio columns: PyLoop over each of `peers` in `present`."""
    return [("pyloop", peer) for peer in peers if peer in present]


def _built_in(module, directory):
    """True when `module`'s file is in the package directory of the build in `directory`."""
    package = os.path.join(directory, "data_bridge", "pyloop")
    return os.path.realpath(os.path.dirname(module.__file__)) == os.path.realpath(package)


def _import_pyloop(baseline):
    """data_bridge.pyloop from the baseline build (baseline=True) or from the installed one.

    A process measures one loop, so the two never meet in one interpreter; if they did, or if
    the baseline leaked onto sys.path, the wrong build would sit behind a column: refuse.
    """
    directory = baseline_dir()
    if baseline:
        if not directory:
            raise RuntimeError(f"{BASELINE} needs {BASELINE_ENV} (the runners' --baseline DIR)")
        if sys.path[:1] != [directory]:
            sys.path.insert(0, directory)
    module = importlib.import_module("data_bridge.pyloop")
    native = importlib.import_module("data_bridge.pyloop._pyloop")
    for loaded in (module, native):
        if directory and _built_in(loaded, directory) != baseline:
            where = f"not from {directory}" if baseline else f"from the baseline {directory}"
            raise RuntimeError(f"{BASELINE if baseline else 'pyloop'}: loaded {loaded.__name__}"
                               f" {where}: {loaded.__file__}")
    return module


def _module(name):
    if name in ("pyloop", BASELINE):
        return _import_pyloop(name == BASELINE)
    return importlib.import_module(MODULES[name][0])


def factory(name):
    """Return a zero-argument callable making a fresh loop of kind `name` (ImportError if absent)."""
    if name == "asyncio":
        # The default policy's loop class, whatever policy may be installed process-wide:
        # this column must always be CPython's own loop.
        return asyncio.DefaultEventLoopPolicy().new_event_loop
    if name not in MODULES:
        raise ValueError(f"unknown loop {name!r}; known: {', '.join(KNOWN)}")
    return _module(name).new_event_loop


def new_baseline_loop():
    """A fresh loop of the baseline build: uvicorn's --loop for the pyloop-base column."""
    return factory(BASELINE)()


def version(name):
    """Version string of the package behind loop `name` (Python's own version for asyncio)."""
    if name == "asyncio":
        import platform
        return platform.python_version()
    found = getattr(_module(name), "__version__", None)
    if found:
        return str(found)
    try:
        from importlib.metadata import version as dist_version
        return dist_version(MODULES[name][1])
    except Exception:
        return "unknown"


def describe(loop):
    """Fully qualified class name of a loop instance, e.g. 'uvloop.Loop'."""
    cls = type(loop)
    return f"{cls.__module__}.{cls.__qualname__}"


def is_asyncio_own(loop):
    """True when `loop` is CPython's pure-Python loop: a pyloop column made of it is a fallback."""
    from asyncio import base_events
    return isinstance(loop, base_events.BaseEventLoop)

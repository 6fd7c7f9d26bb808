"""data_bridge.pyloop — a drop-in asyncio event loop with a C++20 engine.

    import data_bridge.pyloop as pyloop
    pyloop.run(main())          # like asyncio.run, on PyLoop
    pyloop.install()            # make PyLoop asyncio's default loop
"""

from ._loop import PyLoop
from ._policy import EventLoopPolicy, install, is_installed, new_event_loop, run

__all__ = ["PyLoop", "EventLoopPolicy", "new_event_loop", "install", "is_installed", "run", "get_include"]


def get_include():
    """The directory of the native bridge's C++ headers (data_bridge/pyloop/*.hpp), for
    extensions that share PyLoop's loop (docs/native.md), as numpy.get_include()."""
    import os

    return os.path.join(os.path.dirname(__file__), "include")

__version__ = "0.1.0"

for _public in (PyLoop, EventLoopPolicy):
    _public.__module__ = __name__
del _public

"""data_bridge.pyloop — a drop-in asyncio event loop with a C++20 engine.

    import data_bridge.pyloop as pyloop
    pyloop.run(main())          # like asyncio.run, on PyLoop
    pyloop.install()            # make PyLoop asyncio's default loop
"""

from ._loop import PyLoop
from ._policy import EventLoopPolicy, install, is_installed, new_event_loop, run

__all__ = ["PyLoop", "EventLoopPolicy", "new_event_loop", "install", "is_installed", "run"]
__version__ = "0.1.0"

for _public in (PyLoop, EventLoopPolicy):
    _public.__module__ = __name__
del _public

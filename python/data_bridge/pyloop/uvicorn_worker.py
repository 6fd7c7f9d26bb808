"""data_bridge/pyloop/uvicorn_worker.py — gunicorn's worker class running uvicorn on PyLoop.

    gunicorn myapp:app --workers 4 --worker-class data_bridge.pyloop.uvicorn_worker.UvicornWorker

The uvicorn-worker package's UvicornWorker takes uvicorn's settings from its CONFIG_KWARGS and
no gunicorn setting names the loop, so this subclass names PyLoop's factory there (uvicorn's
--loop import string); everything else is uvicorn-worker's. Needs `pip install uvicorn-worker`
(or an uvicorn that still ships uvicorn.workers).
"""

from __future__ import annotations

try:
    from uvicorn_worker import UvicornWorker as _UvicornWorker
except ImportError:  # uvicorn-worker not installed: the class older uvicorns bundle
    from uvicorn.workers import UvicornWorker as _UvicornWorker

__all__ = ["UvicornWorker"]


class UvicornWorker(_UvicornWorker):
    """uvicorn's gunicorn worker, its event loop a PyLoop."""

    CONFIG_KWARGS = {**_UvicornWorker.CONFIG_KWARGS, "loop": "data_bridge.pyloop:new_event_loop"}

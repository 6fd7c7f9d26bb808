# tests/python/web_apps_pyloop.py: web_apps' applications in a module that makes PyLoop asyncio's
# default loop when it is imported: how hypercorn's worker processes (which make their loop with
# asyncio's default factory, after importing the application) run on PyLoop.

import data_bridge.pyloop

data_bridge.pyloop.install()

from web_apps import fastapi_app, starlette_app  # noqa: E402,F401

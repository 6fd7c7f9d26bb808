# tests/python/web_apps.py: the ASGI applications the web-server tests serve (a Starlette app and
# a FastAPI app with the same routes), importable in-process and by server subprocesses
# (`uvicorn web_apps:fastapi_app`, `gunicorn ... web_apps:fastapi_app`, `hypercorn ...`).
#
# Routes: /json, /items/{item_id}?q= (path and query parameters), POST /items (a validated JSON
# body: 422 when invalid), /stream (a streamed body), /ws (a WebSocket echo), /state (set by
# lifespan startup) and /whoami (the serving process and the type of its running loop; with
# ?block=S it holds the loop for S seconds, so that a second worker takes the next connection).

import asyncio
import contextlib
import os
import sys
import time

STREAM_CHUNKS = 64  # chunks of /stream
STREAM_CHUNK = 16 * 1024  # bytes per chunk of /stream


def loop_name(loop):
    """'module.QualName' of a loop's type, as the servers' /whoami reports it."""
    return f"{type(loop).__module__}.{type(loop).__qualname__}"


def whoami(block):
    if block:
        time.sleep(block)  # on purpose: holds this worker's loop
    return {"pid": os.getpid(), "loop": loop_name(asyncio.get_running_loop())}


def stream_chunks():
    for i in range(STREAM_CHUNKS):
        yield bytes([i % 256]) * STREAM_CHUNK


def make_lifespan(events):
    """A lifespan that records startup and shutdown in `events` and on stderr."""

    @contextlib.asynccontextmanager
    async def lifespan(app):
        events.append("startup")
        print("web_apps: lifespan startup", file=sys.stderr, flush=True)
        yield {"started": True}
        events.append("shutdown")
        print("web_apps: lifespan shutdown", file=sys.stderr, flush=True)

    return lifespan


def make_starlette_app(events):
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse, StreamingResponse
    from starlette.routing import Route, WebSocketRoute

    async def json_route(request):
        return JSONResponse({"hello": "world"})

    async def get_item(request):
        item_id = request.path_params["item_id"]
        return JSONResponse({"item_id": item_id, "q": request.query_params.get("q")})

    async def post_item(request):
        body = await request.json()
        if not isinstance(body.get("name"), str) or not isinstance(body.get("price"), float):
            return JSONResponse({"detail": "name and price required"}, status_code=422)
        return JSONResponse({"name": body["name"], "price": body["price"]})

    async def stream(request):
        async def body():
            for chunk in stream_chunks():
                yield chunk
                await asyncio.sleep(0)

        return StreamingResponse(body(), media_type="application/octet-stream")

    async def state(request):
        return JSONResponse({"started": request.state.started})

    async def whoami_route(request):
        return JSONResponse(whoami(float(request.query_params.get("block", 0))))

    async def ws_echo(websocket):
        await websocket.accept()
        async for text in websocket.iter_text():
            await websocket.send_text(text[::-1])

    return Starlette(
        routes=[
            Route("/json", json_route),
            Route("/items/{item_id:int}", get_item),
            Route("/items", post_item, methods=["POST"]),
            Route("/stream", stream),
            Route("/state", state),
            Route("/whoami", whoami_route),
            WebSocketRoute("/ws", ws_echo),
        ],
        lifespan=make_lifespan(events),
    )


def make_fastapi_app(events):
    from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
    from fastapi.responses import StreamingResponse
    from pydantic import BaseModel

    class Item(BaseModel):
        name: str
        price: float

    app = FastAPI(lifespan=make_lifespan(events))

    @app.get("/json")
    async def json_route():
        return {"hello": "world"}

    @app.get("/items/{item_id}")
    async def get_item(item_id: int, q: str | None = None):
        return {"item_id": item_id, "q": q}

    @app.post("/items")
    async def post_item(item: Item):
        return {"name": item.name, "price": item.price}

    @app.get("/stream")
    async def stream():
        async def body():
            for chunk in stream_chunks():
                yield chunk
                await asyncio.sleep(0)

        return StreamingResponse(body(), media_type="application/octet-stream")

    @app.get("/state")
    async def state(request: Request):
        return {"started": request.state.started}

    @app.get("/whoami")
    async def whoami_route(block: float = 0.0):
        return whoami(block)

    @app.websocket("/ws")
    async def ws_echo(websocket: WebSocket):
        await websocket.accept()
        try:
            while True:
                text = await websocket.receive_text()
                await websocket.send_text(text[::-1])
        except WebSocketDisconnect:
            pass

    return app


APPS = {"starlette": make_starlette_app, "fastapi": make_fastapi_app}

# Module-level instances for the server command lines.
starlette_app = make_starlette_app([])
fastapi_app = make_fastapi_app([])


def _asyncio_gunicorn_worker():
    """uvicorn's gunicorn worker on asyncio's own loop: the reference PyLoop's worker is
    compared with (uvicorn-worker's default, loop "auto", would pick uvloop)."""
    try:
        from uvicorn_worker import UvicornWorker
    except ImportError:
        return None
    return type("AsyncioUvicornWorker", (UvicornWorker,),
                {"CONFIG_KWARGS": {**UvicornWorker.CONFIG_KWARGS, "loop": "asyncio"}})


AsyncioUvicornWorker = _asyncio_gunicorn_worker()

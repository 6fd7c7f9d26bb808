"""benchmarks/net/fastapi_app.py — the FastAPI app of run_web.py: one JSON endpoint.

Written the way the FastAPI tutorial writes it: an async path operation returning a dict,
which FastAPI serializes into a JSONResponse. run_web.py serves it with
    python -m uvicorn fastapi_app:app --app-dir benchmarks/net --http httptools --loop ...
"""

from fastapi import FastAPI

app = FastAPI()


@app.get("/")
async def root():
    return {"message": "Hello, world!"}

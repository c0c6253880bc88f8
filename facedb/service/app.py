"""The REST service: FastAPI over the same FaceDB the CLI uses. create_app puts together what
every route shares (context), the gate that checks keys and sizes before a body is read, the
errors' one shape, and the routes, one module a resource (routes/)."""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..api import FaceDB
from ..config import Settings
from ..errors import FaceDBError, NotFound, TooLarge
from ..results import WatchRound
from .connections import with_header_deadline
from .context import NOT_SHOWN, Served
from .gate import RequestGate
from .routes import faces, indexing, models, pages, people, photos, search

__all__ = ["NOT_SHOWN", "create_app", "serve", "uvicorn_options"]


def create_app(
    facedb: FaceDB,
    roots: Sequence[str | os.PathLike] = (),
    *,
    max_upload_bytes: int | None = None,
    max_files: int = 16,
    watch: bool | None = None,
) -> FastAPI:
    """`roots`: folders whose photos may be indexed through the API and served back; `watch`
    (None: FACEDB_SERVE_WATCH): keep them indexed while the service runs, as `index --watch`."""
    settings = facedb.settings
    app = FastAPI(
        title="facedb",
        version="1",
        description="Who is this? Face search over your photo archive.",
        docs_url=None,  # FastAPI's loads Swagger UI from a CDN: routes/pages.py serves it from a package
        redoc_url=None,
        openapi_url="/openapi.json",
        lifespan=_background_work,
    )
    served = Served(
        facedb, roots, settings.max_upload_bytes if max_upload_bytes is None else max_upload_bytes, max_files
    )
    app.state.served = served
    app.state.watch = settings.serve_watch if watch is None else watch
    # multipart framing around max_files uploads stays far under the extra MiB
    app.add_middleware(
        RequestGate,
        keys=served.keys,
        json_limit=settings.max_json_bytes,
        upload_limit=max_files * served.max_upload_bytes + 2**20,
        body_grace=settings.serve_client_seconds,
    )
    _answer_errors_as_json(app)
    for resource in (pages, search, people, faces, photos, indexing, models):
        app.include_router(resource.router)
    return app


@asynccontextmanager
async def _background_work(app: FastAPI) -> AsyncIterator[None]:
    """What runs beside the requests while the service runs: the default model followed, and
    (`serve --watch`) the roots kept indexed."""
    async with _following_the_default_model(app), _watching_the_roots(app):
        yield


@asynccontextmanager
async def _watching_the_roots(app: FastAPI) -> AsyncIterator[None]:
    """`serve --watch`: the roots kept indexed in a thread of their own, as `index --watch`
    does; stopped after the round in hand when the service stops. A failure is one log line."""
    served = app.state.served
    if not app.state.watch or not served.served_roots:
        yield
        return
    facedb, stop = served.facedb, threading.Event()

    def say(done: WatchRound) -> None:
        s = done.index
        if done.changed:
            counts = "" if s is None else f"{s.new} new, {s.reindexed} reindexed, {s.moved} moved, {s.failed} failed; "
            print(f"facedb: watch: {counts}{len(done.gone)} gone, {done.kept} kept", file=sys.stderr, flush=True)

    def keep_indexed() -> None:
        try:
            facedb.watch(
                [str(root) for root in served.served_roots],
                settle=facedb.settings.watch_settle_seconds,
                rescan_every=60 * facedb.settings.watch_rescan_minutes,
                on_round=say,
                stop=stop,
            )
        except Exception as exc:  # noqa: BLE001 - the service goes on answering; the watch is said to stop
            print(f"facedb: the watch of the roots stopped: {exc}", file=sys.stderr, flush=True)

    watcher = threading.Thread(target=keep_indexed, name="facedb-watch", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        stop.set()
        await anyio.to_thread.run_sync(lambda: watcher.join(timeout=120))


@asynccontextmanager
async def _following_the_default_model(app: FastAPI) -> AsyncIterator[None]:
    """While the service runs, it takes up a new default model (`facedb models default` in
    another process) without a restart: FaceDB loads its weights, then answers with it."""
    facedb = app.state.served.facedb
    every = facedb.settings.serve_model_check_seconds

    async def follow() -> None:
        failing = False
        while True:
            await asyncio.sleep(every)
            try:
                before = facedb.model
                now = await anyio.to_thread.run_sync(facedb.follow_default_model)
                if now != before:
                    print(f"facedb: the default model is now {now} (was {before})", file=sys.stderr, flush=True)
                failing = False
            except Exception as exc:  # noqa: BLE001 - the service goes on with the model it has
                if not failing:
                    print(f"facedb: could not check the default model: {exc}", file=sys.stderr, flush=True)
                failing = True

    task = asyncio.create_task(follow()) if every > 0 else None
    try:
        yield
    finally:
        if task is not None:
            task.cancel()


def _answer_errors_as_json(app: FastAPI) -> None:
    """Every error is {"error": "one line"} with its status; never a traceback."""

    # Starlette's own (an unknown route, a wrong method) as well as the endpoints' HTTPException
    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(
            {"error": str(exc.detail)}, status_code=exc.status_code, headers=getattr(exc, "headers", None)
        )

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        return JSONResponse({"error": f"{where}: {first.get('msg', 'invalid request')}"}, status_code=422)

    @app.exception_handler(NotFound)
    async def not_found(request: Request, exc: NotFound) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=404)

    @app.exception_handler(TooLarge)
    async def too_large(request: Request, exc: TooLarge) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=413)

    @app.exception_handler(FaceDBError)
    async def refused(request: Request, exc: FaceDBError) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=422)


def serve(facedb: FaceDB, roots: list[str], host: str, port: int, *, watch: bool | None = None) -> None:
    import uvicorn

    started = time.monotonic()
    facedb.extractor.load()  # load the models before the first request, not during it
    facedb.status()
    print(
        f"facedb: models and database ready in {time.monotonic() - started:.1f} s; serving http://{host}:{port}/",
        flush=True,
    )
    uvicorn.run(create_app(facedb, roots, watch=watch), host=host, port=port, **uvicorn_options(facedb.settings))


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """How uvicorn serves the app: slow clients bounded (connections.py)."""
    return {
        "log_level": "warning",
        "http": with_header_deadline(settings.serve_client_seconds),
        "limit_concurrency": settings.serve_max_connections,
        "timeout_keep_alive": 5,
    }

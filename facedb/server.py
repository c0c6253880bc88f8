"""The REST service: FastAPI over the same FaceDB the CLI uses. It parses, checks keys and
formats; every answer comes from FaceDB."""

from __future__ import annotations

import hashlib
import itertools
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import Depends, FastAPI, File, Form, HTTPException, Request, Security, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.security import APIKeyHeader
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from .api import FaceDB
from .apikeys import ApiKeys, KeyInfo, allows
from .errors import FaceDBError, NotFound

API_KEY_HEADER = "X-API-Key"
_key_header = APIKeyHeader(name=API_KEY_HEADER, auto_error=False, description="a key from `facedb apikey create`")


# ---- response shapes (they are the OpenAPI schema) ----------------------------------------------
class Error(BaseModel):
    error: str


class Candidate(BaseModel):
    identity_id: int
    name: str | None
    distance: float
    faces_within_threshold: int
    faces: int
    source: str


class FaceResult(BaseModel):
    box: list[float]
    score: float
    identity: str | None
    unknown: bool
    distance: float | None
    candidates: list[Candidate]


class WhoResult(BaseModel):
    photo: str
    error: str | None
    faces: list[FaceResult]


HALFVEC_MAX = 65504.0


class SearchRequest(BaseModel):
    embedding: list[float] = Field(min_length=512, max_length=512)
    top_k: int = Field(3, ge=1, le=100)
    threshold: float | None = Field(None, ge=0, le=4)


class SearchResult(BaseModel):
    candidates: list[Candidate]


class CompareFace(BaseModel):
    photo: str
    face: int
    box: list[float]
    score: float


class CompareResult(BaseModel):
    faces: list[CompareFace]
    distances: list[list[float]]
    errors: list[dict[str, str]]
    photos_without_faces: list[str]


class Person(BaseModel):
    id: int
    name: str | None
    faces: int
    confirmed: int
    proposed: int
    clustered: int
    photos: int
    representative_face_id: int | None


class PersonFace(BaseModel):
    face_id: int
    photo: str
    box: list[float]
    source: str
    distance_to_centre: float


class PersonDetail(BaseModel):
    id: int
    name: str | None
    faces: list[PersonFace]


class Rename(BaseModel):
    name: str = Field(min_length=1, max_length=500)


class MergeRequest(BaseModel):
    other: int = Field(ge=1, le=2**62)


class MergeResult(BaseModel):
    id: int
    merged: int
    faces_moved: int


class ForgetResult(BaseModel):
    id: int
    name: str | None
    faces: int
    photos: int


class EnrollResult(BaseModel):
    name: str
    identity_id: int | None
    enrolled: list[str]
    warnings: list[dict[str, str]]
    failures: list[dict[str, str]]


class IndexRequest(BaseModel):
    paths: list[str] = Field(min_length=1, max_length=1000)
    retry_failed: bool = False


class Job(BaseModel):
    id: int
    state: Literal["queued", "running", "done", "failed"]
    paths: list[str]
    done: int
    total: int
    faces: int
    failed: int
    result: dict[str, Any] | None
    error: str | None


class Health(BaseModel):
    ok: bool
    database: bool
    models: bool


# ---- the app ---------------------------------------------------------------------------------
class Jobs:
    """Indexing jobs, one at a time in a background thread, with their progress."""

    def __init__(self, facedb: FaceDB) -> None:
        self.facedb = facedb
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="facedb-job")
        self.jobs: dict[int, dict] = {}
        self.ids = itertools.count(1)
        self.lock = threading.Lock()

    def start(self, paths: list[str], retry_failed: bool) -> dict:
        with self.lock:
            job = {"id": next(self.ids), "state": "queued", "paths": paths, "done": 0, "total": 0, "faces": 0,
                   "failed": 0, "result": None, "error": None}
            self.jobs[job["id"]] = job
        self.pool.submit(self._run, job, retry_failed)
        return dict(job)

    def _run(self, job: dict, retry_failed: bool) -> None:
        job["state"] = "running"

        def progress(event) -> None:
            job.update(done=event.done, total=event.total, faces=event.faces, failed=event.failed)

        try:
            summary = self.facedb.index(job["paths"], retry_failed=retry_failed, on_progress=progress)
            job.update(result=summary.as_dict(), state="done", total=summary.files, done=summary.files,
                       faces=summary.faces, failed=summary.failed)
        except Exception as exc:  # noqa: BLE001 - reported through the job, never lost
            job.update(state="failed", error=f"{type(exc).__name__}: {exc}"[:500])

    def get(self, job_id: int) -> dict:
        job = self.jobs.get(job_id)
        if job is None:
            raise NotFound(f"no job {job_id}")
        return dict(job)


def create_app(facedb: FaceDB, roots: list[str | os.PathLike] = (), *, max_upload_bytes: int = 20 * 2**20,
               max_files: int = 16) -> FastAPI:
    """`roots`: folders whose photos may be indexed through the API and served back."""
    app = FastAPI(title="facedb", version="1", description="Who is this? Face search over your photo archive.",
                  docs_url="/docs", openapi_url="/openapi.json")
    uploads = facedb.settings.home / "uploads"
    allowed_roots = [Path(os.path.realpath(r)) for r in roots] + [Path(os.path.realpath(uploads))]
    keys = ApiKeys(facedb.database.engine)
    jobs = Jobs(facedb)
    app.state.facedb, app.state.jobs = facedb, jobs

    @app.middleware("http")
    async def no_sniffing(request: Request, call_next):
        # a stored file that is not an image must never be run by a browser as HTML
        response = await call_next(request)
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response
    errors = {401: {"model": Error}, 403: {"model": Error}, 404: {"model": Error}, 413: {"model": Error},
              422: {"model": Error}}

    def need(scope: str):
        def check(key: Annotated[str | None, Security(_key_header)]) -> KeyInfo:
            if not key:
                raise HTTPException(401, f"an API key is needed in the {API_KEY_HEADER} header")
            info = keys.check(key)
            if info is None:
                raise HTTPException(401, "unknown or revoked API key")
            if not allows(info.scope, scope):
                raise HTTPException(403, f"this key's scope is {info.scope}; {scope} is needed")
            return info
        return Depends(check)

    # Starlette's own (an unknown route, a wrong method) as well as the endpoints' HTTPException
    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        return JSONResponse({"error": f"{where}: {first.get('msg', 'invalid request')}"}, status_code=422)

    @app.exception_handler(NotFound)
    async def not_found(request: Request, exc: NotFound) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=404)

    @app.exception_handler(FaceDBError)
    async def refused(request: Request, exc: FaceDBError) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=422)

    async def read_uploads(files: list[UploadFile]) -> list[tuple[str, bytes]]:
        if len(files) > max_files:
            raise HTTPException(413, f"at most {max_files} images per request")
        out = []
        for upload in files:
            data = await upload.read(max_upload_bytes + 1)
            if len(data) > max_upload_bytes:
                raise HTTPException(413, f"{upload.filename}: larger than {max_upload_bytes} bytes")
            out.append((upload.filename or "upload", data))
        return out

    def decoded(results):
        bad = [r for r in results if r.error]
        if bad:
            raise HTTPException(422, f"{bad[0].path}: {bad[0].error}")
        return results

    # ---- endpoints -----------------------------------------------------------------------------
    @app.get("/healthz", response_model=Health, tags=["service"])
    def healthz() -> JSONResponse:
        try:
            facedb.status()
            database = True
        except Exception:  # noqa: BLE001 - health says no, it does not fail
            database = False
        models = getattr(facedb.detector, "loaded", False) and getattr(facedb.embedder, "loaded", False)
        body = {"ok": database and models, "database": database, "models": models}
        return JSONResponse(body, status_code=200 if body["ok"] else 503)

    @app.post("/v1/who", response_model=WhoResult, responses=errors, tags=["faces"])
    async def who(image: Annotated[UploadFile, File(description="a photo")],
                  top_k: Annotated[int, Form(ge=1, le=100)] = 3,
                  threshold: Annotated[float | None, Form(ge=0, le=4)] = None,
                  _: KeyInfo = need("read")) -> dict:
        results = decoded(facedb.faces_in_uploads(await read_uploads([image])))
        (answer,) = facedb.answer(results, top_k=top_k, threshold=threshold)
        return answer.as_dict()

    @app.post("/v1/search", response_model=SearchResult, responses=errors, tags=["faces"])
    def search(request: SearchRequest, _: KeyInfo = need("read")) -> dict:
        vector = np.asarray(request.embedding, dtype=np.float64)
        if not np.isfinite(vector).all() or np.abs(vector).max() > HALFVEC_MAX:
            # the search index holds half precision, whose range ends at 65504
            raise HTTPException(422, f"embedding: values must be finite numbers within +-{HALFVEC_MAX:g}")
        vector = vector.astype(np.float32)
        return {"candidates": [c.as_dict() for c in facedb.search(vector, top_k=request.top_k,
                                                                    threshold=request.threshold)]}

    @app.post("/v1/compare", response_model=CompareResult, responses=errors, tags=["faces"])
    async def compare(images: Annotated[list[UploadFile], File(description="two or more photos")],
                      _: KeyInfo = need("read")) -> dict:
        return facedb.compare_faces(decoded(facedb.faces_in_uploads(await read_uploads(images))))

    @app.get("/v1/people", response_model=list[Person], responses=errors, tags=["people"])
    def people(_: KeyInfo = need("read")) -> list[dict]:
        return facedb.people()

    @app.get("/v1/people/{person_id}", response_model=PersonDetail, responses=errors, tags=["people"])
    def person(person_id: int, _: KeyInfo = need("read")) -> dict:
        return facedb.person(_person_id(person_id))

    @app.patch("/v1/people/{person_id}", response_model=PersonDetail, responses=errors, tags=["people"])
    def rename(person_id: int, body: Rename, _: KeyInfo = need("write")) -> dict:
        facedb.name(_person_id(person_id), body.name)
        return facedb.person(person_id)

    @app.post("/v1/people/{person_id}/merge", response_model=MergeResult, responses=errors, tags=["people"])
    def merge(person_id: int, body: MergeRequest, _: KeyInfo = need("write")) -> dict:
        return facedb.merge(_person_id(person_id), _person_id(body.other))

    @app.delete("/v1/people/{person_id}", response_model=ForgetResult, responses=errors, tags=["people"])
    def forget(person_id: int, photos: bool = False, _: KeyInfo = need("admin")) -> dict:
        return facedb.forget(_person_id(person_id), photos=photos)

    @app.post("/v1/enroll", response_model=EnrollResult, responses=errors, tags=["people"])
    async def enroll(name: Annotated[str, Form(min_length=1, max_length=500)],
                     images: Annotated[list[UploadFile], File(description="photos of the person")],
                     _: KeyInfo = need("write")) -> dict:
        files = await read_uploads(images)
        decoded(facedb.faces_in_uploads([(n, d) for n, d in files]))  # refuse non-images before storing any
        uploads.mkdir(parents=True, exist_ok=True)
        paths = []
        for filename, data in files:
            suffix = Path(filename).suffix.lower() if Path(filename).suffix.lower() in {
                ".jpg", ".jpeg", ".png", ".webp", ".heic", ".avif", ".gif", ".bmp", ".tif", ".tiff"} else ".img"
            target = uploads / (hashlib.sha256(data).hexdigest() + suffix)
            if not target.exists():
                target.write_bytes(data)
            paths.append(target)
        return facedb.enroll(name, paths).as_dict()

    @app.post("/v1/index", response_model=Job, status_code=202, responses=errors, tags=["indexing"])
    def index(body: IndexRequest, _: KeyInfo = need("admin")) -> dict:
        checked = [str(_inside_roots(p, allowed_roots[:-1] or [])) for p in body.paths]
        return jobs.start(checked, body.retry_failed)

    @app.get("/v1/jobs/{job_id}", response_model=Job, responses=errors, tags=["indexing"])
    def job(job_id: int, _: KeyInfo = need("read")) -> dict:
        return jobs.get(job_id)

    @app.get("/v1/faces/{face_id}/thumbnail", responses=errors | {200: {"content": {"image/jpeg": {}}}},
             response_class=Response, tags=["faces"])
    def thumbnail(face_id: int, _: KeyInfo = need("read")) -> Response:
        data = facedb.dedup_face_thumbnails([face_id]).get(face_id) if 0 < face_id < 2**62 else None
        if data is None:
            raise HTTPException(404, f"no face {face_id}")
        return Response(data, media_type="image/jpeg")

    @app.get("/v1/photos/{photo_id}", responses=errors | {200: {"content": {"image/*": {}}}},
             response_class=Response, tags=["faces"])
    def photo(photo_id: int, _: KeyInfo = need("read")) -> Response:
        path = facedb.photo_path(photo_id) if 0 < photo_id < 2**62 else None
        if path is None:
            raise HTTPException(404, f"no photo {photo_id}")
        return FileResponse(_inside_roots(path, allowed_roots))

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> HTMLResponse:
        return HTMLResponse((Path(__file__).parent / "web" / "index.html").read_text(encoding="utf-8"))

    return app


def _person_id(person_id: int) -> int:
    if not 0 < person_id < 2**62:
        raise NotFound(f"no person {person_id}")
    return person_id


def _inside_roots(path: str | os.PathLike, roots: list[Path]) -> Path:
    """The real path (symlinks resolved) if it lies inside one of the roots, else 403/404."""
    raw = os.fspath(path)
    if "\x00" in raw:
        raise HTTPException(404, "no such file")
    real = Path(os.path.realpath(raw))
    if not any(real == root or root in real.parents for root in roots):
        raise HTTPException(403, "outside the folders this service may read")
    if not real.exists():
        raise HTTPException(404, "no such file")
    return real


def serve(facedb: FaceDB, roots: list[str], host: str, port: int) -> None:
    import uvicorn

    started = time.monotonic()
    facedb.extractor.load()  # load the models before the first request, not during it
    facedb.status()
    print(f"facedb: models and database ready in {time.monotonic() - started:.1f} s; serving http://{host}:{port}/",
          flush=True)
    uvicorn.run(create_app(facedb, roots, max_upload_bytes=facedb.settings.max_upload_bytes), host=host, port=port,
                log_level="warning")

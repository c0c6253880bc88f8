"""The REST service: FastAPI over the same FaceDB the CLI uses. It parses, checks keys and
formats; every answer comes from FaceDB."""

from __future__ import annotations

import hashlib
import mimetypes
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Annotated, Any, TypeVar

import numpy as np
from fastapi import Depends, FastAPI, File, Form, HTTPException, Query, Request, Security, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from fastapi.security import APIKeyHeader
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..api import FaceDB
from ..config import Settings
from ..db.apikeys import KeyInfo, allows
from ..errors import FaceDBError, ImageError, NotFound, TooLarge
from ..files.images import MAX_FILE_BYTES, is_within, open_regular
from ..names import person_name
from ..results import (
    ClusterResult,
    CompareAnswer,
    Confirmed,
    DedupReport,
    EnrollResult,
    FaceListing,
    Forgotten,
    Health,
    Job,
    Merged,
    Moved,
    PersonDetail,
    PersonSummary,
    Rejected,
    SearchAnswer,
    WhoAnswer,
)
from ..vision.align import thumbnail_media_type
from .connections import with_header_deadline
from .gate import API_KEY_HEADER, RequestGate
from .requests import (
    HALFVEC_MAX,
    MAX_PEOPLE_PAGE,
    PEOPLE_PAGE,
    ClusterRequest,
    DedupRequest,
    Error,
    FaceToPerson,
    IndexRequest,
    MergeRequest,
    PersonChange,
    SearchRequest,
)
from .work import Jobs, ModelWork

ShownFaces = TypeVar("ShownFaces", PersonDetail, FaceListing)

# In answers, instead of the path of a stored photo outside the served folders.
NOT_SHOWN = "(outside the folders this service serves)"

_key_header = APIKeyHeader(name=API_KEY_HEADER, auto_error=False, description="a key from `facedb apikey create`")


def create_app(
    facedb: FaceDB, roots: Sequence[str | os.PathLike] = (), *, max_upload_bytes: int | None = None, max_files: int = 16
) -> FastAPI:
    """`roots`: folders whose photos may be indexed through the API and served back."""
    settings = facedb.settings
    max_upload_bytes = settings.max_upload_bytes if max_upload_bytes is None else max_upload_bytes
    app = FastAPI(
        title="facedb",
        version="1",
        description="Who is this? Face search over your photo archive.",
        docs_url=None,  # FastAPI's loads Swagger UI from a CDN: served from this package below
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    uploads = settings.home / "uploads"
    served_roots = [Path(os.path.realpath(r)) for r in roots]
    allowed_roots = served_roots + [Path(os.path.realpath(uploads))]
    # Stored paths a read key may see: inside the served folders (as given or as resolved)
    # as they are, enrolled uploads by their name; the rest of the machine's layout never.
    showable = sorted({os.path.abspath(r) for r in roots} | {str(r) for r in served_roots})
    upload_folders = sorted({os.path.abspath(uploads), os.path.realpath(uploads)})
    inside_roots = tuple(os.path.join(root, "") for root in showable)
    inside_uploads = tuple(os.path.join(folder, "") for folder in upload_folders)

    def shown(path: str | None) -> str | None:
        if path is None or path.startswith(inside_roots):
            return path
        for folder in inside_uploads:
            if path.startswith(folder):
                return "uploads/" + path[len(folder) :]
        return NOT_SHOWN

    def shown_faces(answer: ShownFaces) -> ShownFaces:
        faces = [face.model_copy(update={"photo": shown(face.photo)}) for face in answer.faces]
        return answer.model_copy(update={"faces": faces})

    keys = facedb.api_keys
    jobs = Jobs(facedb)
    model_work = ModelWork(settings.serve_model_workers, settings.serve_waiting_requests)
    app.state.facedb, app.state.jobs, app.state.model_work = facedb, jobs, model_work
    # multipart framing around max_files uploads stays far under the extra MiB
    app.add_middleware(
        RequestGate,
        keys=keys,
        json_limit=settings.max_json_bytes,
        upload_limit=max_files * max_upload_bytes + 2**20,
        body_grace=settings.serve_client_seconds,
    )
    errors: dict[int | str, dict[str, Any]] = {
        401: {"model": Error},
        403: {"model": Error},
        404: {"model": Error},
        413: {"model": Error},
        422: {"model": Error},
        503: {"model": Error},
    }

    def need(scope: str):
        def check(request: Request, key: Annotated[str | None, Security(_key_header)]) -> KeyInfo:
            info = request.scope.get("state", {}).get("api_key")  # checked by the gate before the body
            if info is None:
                info = keys.check(key) if key else None
                if info is None:
                    raise HTTPException(401, "unknown or revoked API key")
            if not allows(info.scope, scope):
                raise HTTPException(403, f"this key's scope is {info.scope}; {scope} is needed")
            return info

        return Depends(check)

    read_key, write_key, admin_key = need("read"), need("write"), need("admin")

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

    def faces_of(files: list[tuple[str, bytes]]):
        """In a model worker: decode, detect and embed; the first file that is not an image is a 422."""
        results = facedb.faces_in_uploads(files, max_total_pixels=settings.max_request_pixels)
        bad = [r for r in results if r.error]
        if bad:
            raise HTTPException(422, f"{bad[0].path}: {bad[0].error}")
        return results

    @app.get("/healthz", response_model=Health, tags=["service"])
    def healthz() -> JSONResponse:
        try:
            database = facedb.database_answers()  # not status(): its counts grow with the archive
        except Exception:  # noqa: BLE001 - health says no, it does not fail
            database = False
        models = getattr(facedb.detector, "loaded", False) and getattr(facedb.embedder, "loaded", False)
        health = Health(ok=database and models, database=database, models=models)
        return JSONResponse(health.to_json(), status_code=200 if health.ok else 503)

    @app.post("/v1/who", response_model=WhoAnswer, responses=errors, tags=["faces"])
    async def who(
        image: Annotated[UploadFile, File(description="a photo")],
        top_k: Annotated[int, Form(ge=1, le=100)] = 3,
        threshold: Annotated[float | None, Form(ge=0, le=4)] = None,
        _: KeyInfo = read_key,
    ) -> WhoAnswer:
        async with model_work.slot() as run:
            files = await read_uploads([image])

            def work() -> WhoAnswer:
                (answer,) = facedb.answer(faces_of(files), top_k=top_k, threshold=threshold)
                return answer

            return await run(work)

    @app.post("/v1/search", response_model=SearchAnswer, responses=errors, tags=["faces"])
    def search(request: SearchRequest, _: KeyInfo = read_key) -> SearchAnswer:
        vector = np.asarray(request.embedding, dtype=np.float64)
        if not np.isfinite(vector).all() or np.abs(vector).max() > HALFVEC_MAX:
            # the search index holds half precision, whose range ends at 65504
            raise HTTPException(422, f"embedding: values must be finite numbers within +-{HALFVEC_MAX:g}")
        vector = vector.astype(np.float32)
        return SearchAnswer(candidates=facedb.search(vector, top_k=request.top_k, threshold=request.threshold))

    @app.post("/v1/compare", response_model=CompareAnswer, responses=errors, tags=["faces"])
    async def compare(
        images: Annotated[list[UploadFile], File(description="two or more photos")], _: KeyInfo = read_key
    ) -> CompareAnswer:
        async with model_work.slot() as run:
            files = await read_uploads(images)
            return await run(lambda: facedb.compare_faces(faces_of(files)))

    @app.get("/v1/people", response_model=list[PersonSummary], responses=errors, tags=["people"])
    def people(
        response: Response,
        hidden: bool = False,
        limit: Annotated[int, Query(ge=1, le=MAX_PEOPLE_PAGE)] = PEOPLE_PAGE,
        offset: Annotated[int, Query(ge=0, le=2**62)] = 0,
        _: KeyInfo = read_key,
    ) -> list[PersonSummary]:
        """People by their number of faces, a page at a time; X-Total-Count says how many there are."""
        listing = facedb.people(include_hidden=hidden, within=showable + upload_folders, limit=limit, offset=offset)
        response.headers["X-Total-Count"] = str(facedb.count_people(include_hidden=hidden))
        return [p.model_copy(update={"representative_photo": shown(p.representative_photo)}) for p in listing]

    @app.get("/v1/people/{person_id}", response_model=PersonDetail, responses=errors, tags=["people"])
    def person(person_id: int, _: KeyInfo = read_key) -> PersonDetail:
        return shown_faces(facedb.person(_person_id(person_id)))

    @app.patch("/v1/people/{person_id}", response_model=PersonDetail, responses=errors, tags=["people"])
    def change_person(person_id: int, body: PersonChange, _: KeyInfo = write_key) -> PersonDetail:
        facedb.resolve_person(_person_id(person_id))  # 404 before any change
        if body.name is not None:
            facedb.name(person_id, body.name)
        if body.hidden is not None:
            facedb.hide(person_id, hidden=body.hidden)
        return shown_faces(facedb.person(person_id))

    @app.post("/v1/people/{person_id}/confirm", response_model=Confirmed, responses=errors, tags=["people"])
    def confirm(person_id: int, _: KeyInfo = write_key) -> Confirmed:
        return facedb.confirm(_person_id(person_id))

    @app.get("/v1/faces", response_model=FaceListing, responses=errors, tags=["people"])
    def faces(
        person: Annotated[int | None, Query(ge=1, le=2**62)] = None,
        unassigned: bool = False,
        photo_id: Annotated[int | None, Query(ge=1, le=2**62)] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        offset: Annotated[int, Query(ge=0, le=2**62)] = 0,
        _: KeyInfo = read_key,
    ) -> FaceListing:
        return shown_faces(
            facedb.faces(person=person, unassigned=unassigned, photo_id=photo_id, limit=limit, offset=offset)
        )

    @app.post("/v1/faces/{face_id}/move", response_model=Moved, responses=errors, tags=["people"])
    def move(face_id: int, body: FaceToPerson, _: KeyInfo = write_key) -> Moved:
        return facedb.move(_face_id(face_id), body.person)

    @app.post("/v1/faces/{face_id}/reject", response_model=Rejected, responses=errors, tags=["people"])
    def reject(face_id: int, body: FaceToPerson, _: KeyInfo = write_key) -> Rejected:
        return facedb.reject(_face_id(face_id), body.person)

    @app.post("/v1/dedup", response_model=DedupReport, responses=errors, tags=["people"])
    def dedup(body: DedupRequest, _: KeyInfo = read_key) -> DedupReport:
        """The dedup report for photos under `paths` (inside the service's roots; all of them
        when none): the same photo twice, near duplicates, the same face, the same person."""
        if not set(body.tiers) <= {1, 2, 3, 4, 5}:
            raise HTTPException(422, "tiers: each is 1, 2, 3, 4 or 5")
        scope = [str(_inside_roots(p, served_roots)) for p in body.paths] or [str(r) for r in served_roots]
        return DedupReport(**facedb.dedup(scope, tiers=tuple(sorted(set(body.tiers)))))

    @app.post("/v1/cluster", response_model=ClusterResult, responses=errors, tags=["people"])
    def cluster(body: ClusterRequest, _: KeyInfo = write_key) -> ClusterResult:
        return facedb.cluster(dry_run=body.dry_run)

    @app.post("/v1/people/{person_id}/merge", response_model=Merged, responses=errors, tags=["people"])
    def merge(person_id: int, body: MergeRequest, _: KeyInfo = write_key) -> Merged:
        return facedb.merge(_person_id(person_id), _person_id(body.other))

    @app.delete("/v1/people/{person_id}", response_model=Forgotten, responses=errors, tags=["people"])
    def forget(person_id: int, photos: bool = False, _: KeyInfo = admin_key) -> Forgotten:
        return facedb.forget(_person_id(person_id), photos=photos)

    @app.post("/v1/enroll", response_model=EnrollResult, responses=errors, tags=["people"])
    async def enroll(
        name: Annotated[str, Form(min_length=1, max_length=500)],
        images: Annotated[list[UploadFile], File(description="photos of the person")],
        _: KeyInfo = write_key,
    ) -> EnrollResult:
        name = person_name(name)  # a bad name is refused before anything is stored
        async with model_work.slot() as run:
            files = await read_uploads(images)
            return await run(lambda: enroll_uploads(name, files))

    def enroll_uploads(name: str, files: list[tuple[str, bytes]]) -> EnrollResult:
        faces_of(files)  # refuse non-images before storing any
        uploads.mkdir(parents=True, exist_ok=True)
        paths = []
        for filename, data in files:
            suffix = (
                Path(filename).suffix.lower()
                if Path(filename).suffix.lower()
                in {".jpg", ".jpeg", ".png", ".webp", ".heic", ".avif", ".gif", ".bmp", ".tif", ".tiff"}
                else ".img"
            )
            target = uploads / (hashlib.sha256(data).hexdigest() + suffix)
            if not target.exists():
                target.write_bytes(data)
            paths.append(target)
        enrolled = facedb.enroll(name, paths)
        return enrolled.model_copy(update={"enrolled": [shown(path) for path in enrolled.enrolled]})

    @app.post("/v1/index", response_model=Job, status_code=202, responses=errors, tags=["indexing"])
    def index(body: IndexRequest, _: KeyInfo = admin_key) -> Job:
        checked = [str(_inside_roots(p, served_roots)) for p in body.paths]
        return jobs.start(checked, body.retry_failed, within=served_roots)

    @app.get("/v1/jobs/{job_id}", response_model=Job, responses=errors, tags=["indexing"])
    def job(job_id: int, _: KeyInfo = read_key) -> Job:
        return jobs.get(job_id)

    @app.get(
        "/v1/faces/{face_id}/thumbnail",
        responses=errors | {200: {"content": {"image/webp": {}, "image/jpeg": {}}}},
        response_class=Response,
        tags=["faces"],
    )
    def thumbnail(face_id: int, _: KeyInfo = read_key) -> Response:
        found = facedb.face_thumbnail(face_id) if 0 < face_id < 2**62 else None
        if found is None:
            raise HTTPException(404, f"no face {face_id}")
        data, photo_path = found
        _inside_roots(photo_path, allowed_roots, must_exist=False)  # the crop's pixels are the photo's
        return Response(data, media_type=thumbnail_media_type(data))

    @app.get(
        "/v1/photos/{photo_id}",
        responses=errors | {200: {"content": {"image/*": {}}}},
        response_class=Response,
        tags=["faces"],
    )
    def photo(photo_id: int, _: KeyInfo = read_key) -> Response:
        path = facedb.photo_path(photo_id) if 0 < photo_id < 2**62 else None
        if path is None:
            raise HTTPException(404, f"no photo {photo_id}")
        real = _inside_roots(path, allowed_roots)
        try:
            handle, size = open_regular(real, within=allowed_roots)
        except ImageError as exc:
            raise HTTPException(403 if "outside" in str(exc) else 404, f"photo {photo_id}: {exc}") from None
        if size > MAX_FILE_BYTES:
            handle.close()
            raise HTTPException(404, f"photo {photo_id}: larger than {MAX_FILE_BYTES:,} bytes")
        media_type = mimetypes.guess_type(real.name)[0] or "application/octet-stream"
        return StreamingResponse(_chunks(handle, size), media_type=media_type, headers={"Content-Length": str(size)})

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> HTMLResponse:
        return HTMLResponse((Path(__file__).parent / "web" / "index.html").read_text(encoding="utf-8"))

    @app.get("/people", response_class=HTMLResponse, include_in_schema=False)
    def people_page() -> HTMLResponse:
        return HTMLResponse((Path(__file__).parent / "web" / "people.html").read_text(encoding="utf-8"))

    @app.get("/docs", response_class=HTMLResponse, include_in_schema=False)
    def api_docs() -> HTMLResponse:
        """Swagger UI from the swagger-ui-bundle package: the page works with no network."""
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="facedb API",
            swagger_js_url="/docs/assets/swagger-ui-bundle.js",
            swagger_css_url="/docs/assets/swagger-ui.css",
            swagger_favicon_url="data:,",
        )

    @app.get("/docs/assets/{name}", include_in_schema=False)
    def api_docs_assets(name: str) -> Response:
        if name not in _SWAGGER_ASSETS:
            raise HTTPException(404, f"no asset {name}")
        import swagger_ui_bundle

        data = (Path(swagger_ui_bundle.swagger_ui_path) / name).read_bytes()
        return Response(data, media_type=_SWAGGER_ASSETS[name], headers={"Cache-Control": "max-age=86400"})

    return app


_SWAGGER_ASSETS = {"swagger-ui-bundle.js": "text/javascript", "swagger-ui.css": "text/css"}


def _person_id(person_id: int) -> int:
    if not 0 < person_id < 2**62:
        raise NotFound(f"no person {person_id}")
    return person_id


def _face_id(face_id: int) -> int:
    if not 0 < face_id < 2**62:
        raise NotFound(f"no face {face_id}")
    return face_id


def _inside_roots(path: str | os.PathLike, roots: list[Path], *, must_exist: bool = True) -> Path:
    """The real path (symlinks resolved) if it lies inside one of the roots, else 403/404/422."""
    raw = os.fspath(path)
    if "\x00" in raw:
        raise HTTPException(404, "no such file")
    try:
        real = Path(os.path.realpath(raw))
        if not is_within(real, roots):
            raise HTTPException(403, "outside the folders this service may read")
        if must_exist and not real.exists():
            raise HTTPException(404, "no such file")
    except OSError as exc:  # a name too long for the file system, say
        raise HTTPException(422, f"{raw[:200]}: {exc.strerror or exc}") from None
    return real


def _chunks(handle, size: int, chunk: int = 1 << 20) -> Iterator[bytes]:
    """At most `size` bytes (what fstat said), so that a file growing meanwhile is not followed."""
    with handle:
        left = size
        while left > 0 and (data := handle.read(min(chunk, left))):
            left -= len(data)
            yield data


def serve(facedb: FaceDB, roots: list[str], host: str, port: int) -> None:
    import uvicorn

    started = time.monotonic()
    facedb.extractor.load()  # load the models before the first request, not during it
    facedb.status()
    print(
        f"facedb: models and database ready in {time.monotonic() - started:.1f} s; serving http://{host}:{port}/",
        flush=True,
    )
    uvicorn.run(create_app(facedb, roots), host=host, port=port, **uvicorn_options(facedb.settings))


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """How uvicorn serves the app: slow clients bounded (connections.py)."""
    return {
        "log_level": "warning",
        "http": with_header_deadline(settings.serve_client_seconds),
        "limit_concurrency": settings.serve_max_connections,
        "timeout_keep_alive": 5,
    }

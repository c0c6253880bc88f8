"""What is not the API: health, the browser pages and the API's own docs (served from the
swagger-ui-bundle package, so they work with no network)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response

from ...results import Health
from ..context import Service

router = APIRouter()

_WEB = Path(__file__).parent.parent / "web"
_SWAGGER_ASSETS = {"swagger-ui-bundle.js": "text/javascript", "swagger-ui.css": "text/css"}


@router.get("/healthz", response_model=Health, tags=["service"])
def healthz(service: Service) -> JSONResponse:
    facedb = service.facedb
    try:
        database = facedb.database_answers()  # not status(): its counts grow with the archive
    except Exception:  # noqa: BLE001 - health says no, it does not fail
        database = False
    models = getattr(facedb.detector, "loaded", False) and getattr(facedb.embedder, "loaded", False)
    health = Health(ok=database and models, database=database, models=models)
    return JSONResponse(health.to_json(), status_code=200 if health.ok else 503)


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
def page() -> HTMLResponse:
    return HTMLResponse((_WEB / "index.html").read_text(encoding="utf-8"))


@router.get("/people", response_class=HTMLResponse, include_in_schema=False)
def people_page() -> HTMLResponse:
    return HTMLResponse((_WEB / "people.html").read_text(encoding="utf-8"))


@router.get("/docs", response_class=HTMLResponse, include_in_schema=False)
def api_docs() -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="facedb API",
        swagger_js_url="/docs/assets/swagger-ui-bundle.js",
        swagger_css_url="/docs/assets/swagger-ui.css",
        swagger_favicon_url="data:,",
    )


@router.get("/docs/assets/{name}", include_in_schema=False)
def api_docs_assets(name: str) -> Response:
    if name not in _SWAGGER_ASSETS:
        raise HTTPException(404, f"no asset {name}")
    import swagger_ui_bundle

    data = (Path(swagger_ui_bundle.swagger_ui_path) / name).read_bytes()
    return Response(data, media_type=_SWAGGER_ASSETS[name], headers={"Cache-Control": "max-age=86400"})

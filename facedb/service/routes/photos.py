"""Photos: a stored photo's bytes (inside the served folders only) and the dedup report of
photos under the served folders (/v1/photos/{id}, /v1/dedup)."""

from __future__ import annotations

import mimetypes
from collections.abc import Iterator

from fastapi import APIRouter, HTTPException, Response
from fastapi.responses import StreamingResponse

from ...errors import ImageError
from ...files.images import MAX_FILE_BYTES, open_regular
from ...results import DedupReport
from ..context import ERRORS, ReadKey, Service, inside_roots
from ..requests import DedupRequest

router = APIRouter(prefix="/v1", responses=ERRORS)


@router.get(
    "/photos/{photo_id}",
    responses={200: {"content": {"image/*": {}}}},
    response_class=Response,
    tags=["faces"],
)
def photo(service: Service, _: ReadKey, photo_id: int) -> Response:
    path = service.facedb.photo_path(photo_id) if 0 < photo_id < 2**62 else None
    if path is None:
        raise HTTPException(404, f"no photo {photo_id}")
    real = inside_roots(path, service.allowed_roots)
    try:
        handle, size = open_regular(real, within=service.allowed_roots)
    except ImageError as exc:
        raise HTTPException(403 if "outside" in str(exc) else 404, f"photo {photo_id}: {exc}") from None
    if size > MAX_FILE_BYTES:
        handle.close()
        raise HTTPException(404, f"photo {photo_id}: larger than {MAX_FILE_BYTES:,} bytes")
    media_type = mimetypes.guess_type(real.name)[0] or "application/octet-stream"
    return StreamingResponse(_chunks(handle, size), media_type=media_type, headers={"Content-Length": str(size)})


@router.post("/dedup", response_model=DedupReport, tags=["people"])
def dedup(service: Service, _: ReadKey, body: DedupRequest) -> DedupReport:
    """The dedup report for photos under `paths` (inside the service's roots; all of them
    when none): the same photo twice, near duplicates, the same face, the same person."""
    if not set(body.tiers) <= {1, 2, 3, 4, 5}:
        raise HTTPException(422, "tiers: each is 1, 2, 3, 4 or 5")
    roots = service.served_roots
    scope = [str(inside_roots(p, roots)) for p in body.paths] or [str(r) for r in roots]
    return DedupReport(**service.facedb.dedup(scope, tiers=tuple(sorted(set(body.tiers)))))


def _chunks(handle, size: int, chunk: int = 1 << 20) -> Iterator[bytes]:
    """At most `size` bytes (what fstat said), so that a file growing meanwhile is not followed."""
    with handle:
        left = size
        while left > 0 and (data := handle.read(min(chunk, left))):
            left -= len(data)
            yield data

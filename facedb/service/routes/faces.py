"""Faces: listed by person, of nobody or of a photo; moved or rejected; their thumbnails
(/v1/faces...)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Response

from ...results import FaceListing, Moved, Rejected
from ...vision.align import thumbnail_media_type
from ..context import ERRORS, ReadKey, Service, WriteKey, checked_face, inside_roots
from ..requests import FaceToPerson

router = APIRouter(prefix="/v1/faces", responses=ERRORS)


@router.get("", response_model=FaceListing, tags=["people"])
def faces(
    service: Service,
    _: ReadKey,
    person: Annotated[int | None, Query(ge=1, le=2**62)] = None,
    unassigned: bool = False,
    photo_id: Annotated[int | None, Query(ge=1, le=2**62)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=2**62)] = 0,
    after: Annotated[int | None, Query(ge=0, le=2**62, description="start after this face id")] = None,
) -> FaceListing:
    return service.shown_faces(
        service.facedb.faces(
            person=person, unassigned=unassigned, photo_id=photo_id, limit=limit, offset=offset, after=after
        )
    )


@router.post("/{face_id}/move", response_model=Moved, tags=["people"])
def move(service: Service, _: WriteKey, face_id: int, body: FaceToPerson) -> Moved:
    return service.facedb.move(checked_face(face_id), body.person)


@router.post("/{face_id}/reject", response_model=Rejected, tags=["people"])
def reject(service: Service, _: WriteKey, face_id: int, body: FaceToPerson) -> Rejected:
    return service.facedb.reject(checked_face(face_id), body.person)


@router.get(
    "/{face_id}/thumbnail",
    responses={200: {"content": {"image/webp": {}, "image/jpeg": {}}}},
    response_class=Response,
    tags=["faces"],
)
def thumbnail(service: Service, _: ReadKey, face_id: int) -> Response:
    found = service.facedb.face_thumbnail(face_id) if 0 < face_id < 2**62 else None
    if found is None:
        raise HTTPException(404, f"no face {face_id}")
    data, photo_path = found
    inside_roots(photo_path, service.allowed_roots, must_exist=False)  # the crop's pixels are the photo's
    return Response(data, media_type=thumbnail_media_type(data))

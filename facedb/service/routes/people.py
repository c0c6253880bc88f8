"""The people of the archive: list, look at, name, hide, confirm, merge, forget, enrol, cluster
(/v1/people..., /v1/enroll, /v1/cluster)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, File, Form, Query, Response, UploadFile

from ...names import person_name
from ...results import ClusterResult, Confirmed, EnrollResult, Forgotten, Merged, PersonDetail, PersonSummary
from ..context import ERRORS, AdminKey, ReadKey, Served, Service, WriteKey, checked_person
from ..requests import MAX_PEOPLE_PAGE, PEOPLE_PAGE, ClusterRequest, MergeRequest, PersonChange

router = APIRouter(prefix="/v1", responses=ERRORS, tags=["people"])

# Kept as they were uploaded when they are photos; anything else is stored as .img
_PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".heic", ".avif", ".gif", ".bmp", ".tif", ".tiff"}


@router.get("/people", response_model=list[PersonSummary])
def people(
    service: Service,
    _: ReadKey,
    response: Response,
    hidden: bool = False,
    limit: Annotated[int, Query(ge=1, le=MAX_PEOPLE_PAGE)] = PEOPLE_PAGE,
    offset: Annotated[int, Query(ge=0, le=2**62)] = 0,
) -> list[PersonSummary]:
    """People by their number of faces, a page at a time; X-Total-Count says how many there are."""
    facedb = service.facedb
    within = service.showable + service.upload_folders
    listing = facedb.people(include_hidden=hidden, within=within, limit=limit, offset=offset)
    response.headers["X-Total-Count"] = str(facedb.count_people(include_hidden=hidden))
    return [p.model_copy(update={"representative_photo": service.shown(p.representative_photo)}) for p in listing]


@router.get("/people/{person_id}", response_model=PersonDetail)
def person(service: Service, _: ReadKey, person_id: int) -> PersonDetail:
    return service.shown_faces(service.facedb.person(checked_person(person_id)))


@router.patch("/people/{person_id}", response_model=PersonDetail)
def change_person(service: Service, _: WriteKey, person_id: int, body: PersonChange) -> PersonDetail:
    facedb = service.facedb
    facedb.resolve_person(checked_person(person_id))  # 404 before any change
    if body.name is not None:
        facedb.name(person_id, body.name)
    if body.hidden is not None:
        facedb.hide(person_id, hidden=body.hidden)
    return service.shown_faces(facedb.person(person_id))


@router.post("/people/{person_id}/confirm", response_model=Confirmed)
def confirm(service: Service, _: WriteKey, person_id: int) -> Confirmed:
    return service.facedb.confirm(checked_person(person_id))


@router.post("/people/{person_id}/merge", response_model=Merged)
def merge(service: Service, _: WriteKey, person_id: int, body: MergeRequest) -> Merged:
    return service.facedb.merge(checked_person(person_id), checked_person(body.other))


@router.delete("/people/{person_id}", response_model=Forgotten)
def forget(service: Service, _: AdminKey, person_id: int, photos: bool = False) -> Forgotten:
    return service.facedb.forget(checked_person(person_id), photos=photos)


@router.post("/cluster", response_model=ClusterResult)
def cluster(service: Service, _: WriteKey, body: ClusterRequest) -> ClusterResult:
    return service.facedb.cluster(dry_run=body.dry_run)


@router.post("/enroll", response_model=EnrollResult)
async def enroll(
    service: Service,
    _: WriteKey,
    name: Annotated[str, Form(min_length=1, max_length=500)],
    images: Annotated[list[UploadFile], File(description="photos of the person")],
) -> EnrollResult:
    name = person_name(name)  # a bad name is refused before anything is stored
    async with service.model_work.slot() as run:
        files = await service.read_uploads(images)
        return await run(lambda: _enroll_uploads(service, name, files))


def _enroll_uploads(service: Served, name: str, files: list[tuple[str, bytes]]) -> EnrollResult:
    service.faces_of(files)  # refuse non-images before storing any
    service.uploads.mkdir(parents=True, exist_ok=True)
    paths = []
    for filename, data in files:
        suffix = Path(filename).suffix.lower()
        target = service.uploads / (
            hashlib.sha256(data).hexdigest() + (suffix if suffix in _PHOTO_SUFFIXES else ".img")
        )
        if not target.exists():
            target.write_bytes(data)
        paths.append(target)
    enrolled = service.facedb.enroll(name, paths)
    return enrolled.model_copy(update={"enrolled": [service.shown(path) for path in enrolled.enrolled]})

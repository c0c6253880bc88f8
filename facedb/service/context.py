"""What every route shares: the FaceDB it calls, the folders it may read and show, the model
pool and jobs, and the checks a route asks for as dependencies (a key of a scope, the served
folders, the uploads)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, TypeVar

from fastapi import Depends, HTTPException, Request, Security, UploadFile
from fastapi.security import APIKeyHeader

from ..api import FaceDB
from ..db.apikeys import KeyInfo, allows
from ..errors import NotFound
from ..files.images import is_within
from ..results import FaceListing, PersonDetail
from .gate import API_KEY_HEADER
from .requests import Error
from .work import Jobs, ModelWork

ShownFaces = TypeVar("ShownFaces", PersonDetail, FaceListing)

# In answers, instead of the path of a stored photo outside the served folders.
NOT_SHOWN = "(outside the folders this service serves)"

# What a route may answer besides its own shape: {"error": "..."}
ERRORS: dict[int | str, dict[str, Any]] = {status: {"model": Error} for status in (401, 403, 404, 413, 422, 503)}

_key_header = APIKeyHeader(name=API_KEY_HEADER, auto_error=False, description="a key from `facedb apikey create`")


@dataclass
class Served:
    """One app's FaceDB and the folders it serves: `roots` (photos that may be indexed through
    the API and served back) and the uploads folder of enrolled photos."""

    facedb: FaceDB
    roots: Sequence[str | os.PathLike]
    max_upload_bytes: int
    max_files: int
    jobs: Jobs = field(init=False)
    model_work: ModelWork = field(init=False)

    def __post_init__(self) -> None:
        settings = self.facedb.settings
        self.uploads = settings.home / "uploads"
        self.served_roots = [Path(os.path.realpath(r)) for r in self.roots]
        self.allowed_roots = self.served_roots + [Path(os.path.realpath(self.uploads))]
        # Stored paths a read key may see: inside the served folders (as given or as resolved)
        # as they are, enrolled uploads by their name; the rest of the machine's layout never.
        self.showable = sorted({os.path.abspath(r) for r in self.roots} | {str(r) for r in self.served_roots})
        self.upload_folders = sorted({os.path.abspath(self.uploads), os.path.realpath(self.uploads)})
        self._inside_roots = tuple(os.path.join(root, "") for root in self.showable)
        self._inside_uploads = tuple(os.path.join(folder, "") for folder in self.upload_folders)
        self.keys = self.facedb.api_keys
        self.jobs = Jobs(self.facedb)
        self.model_work = ModelWork(settings.serve_model_workers, settings.serve_waiting_requests)

    def shown(self, path: str | None) -> str | None:
        """A stored photo's path as a client may see it."""
        if path is None or path.startswith(self._inside_roots):
            return path
        for folder in self._inside_uploads:
            if path.startswith(folder):
                return "uploads/" + path[len(folder) :]
        return NOT_SHOWN

    def shown_faces(self, answer: ShownFaces) -> ShownFaces:
        faces = [face.model_copy(update={"photo": self.shown(face.photo)}) for face in answer.faces]
        return answer.model_copy(update={"faces": faces})

    async def read_uploads(self, files: list[UploadFile]) -> list[tuple[str, bytes]]:
        if len(files) > self.max_files:
            raise HTTPException(413, f"at most {self.max_files} images per request")
        out = []
        for upload in files:
            data = await upload.read(self.max_upload_bytes + 1)
            if len(data) > self.max_upload_bytes:
                raise HTTPException(413, f"{upload.filename}: larger than {self.max_upload_bytes} bytes")
            out.append((upload.filename or "upload", data))
        return out

    def faces_of(self, files: list[tuple[str, bytes]], model: str | None = None):
        """In a model worker: decode, detect and embed (with `model`; None: the one in use);
        the first file that is not an image is a 422."""
        results = self.facedb.faces_in_uploads(
            files, max_total_pixels=self.facedb.settings.max_request_pixels, model=model
        )
        bad = [r for r in results if r.error]
        if bad:
            raise HTTPException(422, f"{bad[0].path}: {bad[0].error}")
        return results


def served(request: Request) -> Served:
    return request.app.state.served


Service = Annotated[Served, Depends(served)]


def _need(scope: str):
    def check(request: Request, key: Annotated[str | None, Security(_key_header)]) -> KeyInfo:
        info = request.scope.get("state", {}).get("api_key")  # checked by the gate before the body
        if info is None:
            info = served(request).keys.check(key) if key else None
            if info is None:
                raise HTTPException(401, "unknown or revoked API key")
        if not allows(info.scope, scope):
            raise HTTPException(403, f"this key's scope is {info.scope}; {scope} is needed")
        return info

    return Depends(check)


ReadKey = Annotated[KeyInfo, _need("read")]
WriteKey = Annotated[KeyInfo, _need("write")]
AdminKey = Annotated[KeyInfo, _need("admin")]


def checked_person(person_id: int) -> int:
    """The id as it is, or 404 for one no row can have (before it reaches SQL as a bigint)."""
    if not 0 < person_id < 2**62:
        raise NotFound(f"no person {person_id}")
    return person_id


def checked_face(face_id: int) -> int:
    if not 0 < face_id < 2**62:
        raise NotFound(f"no face {face_id}")
    return face_id


def inside_roots(path: str | os.PathLike, roots: list[Path], *, must_exist: bool = True) -> Path:
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

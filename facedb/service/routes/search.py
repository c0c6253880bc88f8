"""Who is this, search by embedding, compare faces: /v1/who, /v1/search, /v1/compare."""

from __future__ import annotations

from typing import Annotated

import numpy as np
from fastapi import APIRouter, File, Form, HTTPException, UploadFile

from ...results import CompareAnswer, SearchAnswer, WhoAnswer
from ..context import ERRORS, ReadKey, Service
from ..requests import HALFVEC_MAX, SearchRequest

router = APIRouter(prefix="/v1", responses=ERRORS, tags=["faces"])


@router.post("/who", response_model=WhoAnswer)
async def who(
    service: Service,
    _: ReadKey,
    image: Annotated[UploadFile, File(description="a photo")],
    top_k: Annotated[int, Form(ge=1, le=100)] = 3,
    threshold: Annotated[float | None, Form(ge=0, le=4)] = None,
    model: Annotated[str | None, Form(max_length=100, description="an embedding model (GET /v1/models)")] = None,
) -> WhoAnswer:
    key = service.facedb.named_model(model)  # an unknown model is refused before the upload is read
    async with service.model_work.slot() as run:
        files = await service.read_uploads([image])

        def work() -> WhoAnswer:
            (answer,) = service.facedb.answer(service.faces_of(files, key), top_k=top_k, threshold=threshold)
            return answer

        return await run(work)


@router.post("/search", response_model=SearchAnswer)
def search(service: Service, _: ReadKey, request: SearchRequest) -> SearchAnswer:
    vector = np.asarray(request.embedding, dtype=np.float64)
    if not np.isfinite(vector).all() or np.abs(vector).max() > HALFVEC_MAX:
        # the search index holds half precision, whose range ends at 65504
        raise HTTPException(422, f"embedding: values must be finite numbers within +-{HALFVEC_MAX:g}")
    vector = vector.astype(np.float32)
    facedb = service.facedb
    model = facedb.named_model(request.model)
    candidates = facedb.search(vector, top_k=request.top_k, threshold=request.threshold, model=model)
    return SearchAnswer(model=model, candidates=candidates)


@router.post("/compare", response_model=CompareAnswer)
async def compare(
    service: Service,
    _: ReadKey,
    images: Annotated[list[UploadFile], File(description="two or more photos")],
    model: Annotated[str | None, Form(max_length=100, description="an embedding model (GET /v1/models)")] = None,
) -> CompareAnswer:
    key = service.facedb.named_model(model)
    async with service.model_work.slot() as run:
        files = await service.read_uploads(images)
        return await run(lambda: service.facedb.compare_faces(service.faces_of(files, key)))

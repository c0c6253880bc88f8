"""The embedding models: what each is, its fingerprint, its distances and threshold in force,
and how many faces carry its embedding (/v1/models). who, search and compare take `model`."""

from __future__ import annotations

from fastapi import APIRouter

from ...results import ModelInfo
from ..context import ERRORS, ReadKey, Service

router = APIRouter(prefix="/v1", responses=ERRORS, tags=["models"])


@router.get("/models", response_model=list[ModelInfo])
def models(service: Service, _: ReadKey) -> list[ModelInfo]:
    """Every pinned model; `in_use` is the one who and search take when no model is named: the
    database's default, taken up by a running service within FACEDB_SERVE_MODEL_CHECK_SECONDS
    of `facedb models default`."""
    return service.facedb.models()

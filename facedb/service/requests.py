"""The shapes of the service's requests, checked before a route runs (the answers' shapes are
facedb.results, the same the CLI prints)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class Error(BaseModel):
    error: str


HALFVEC_MAX = 65504.0

MAX_EMBEDDING_VALUES = 4096

# /v1/people answers a page: the people with the most faces first (X-Total-Count: how many)
PEOPLE_PAGE = 1000

MAX_PEOPLE_PAGE = 10_000


class SearchRequest(BaseModel):
    # as many values as the model makes (512 or 128; checked against it)
    embedding: list[float] = Field(min_length=1, max_length=MAX_EMBEDDING_VALUES)
    top_k: int = Field(3, ge=1, le=100)
    threshold: float | None = Field(None, ge=0, le=4)  # None: the model's threshold in force
    model: str | None = Field(None, max_length=100, description="the model that made the embedding (GET /v1/models)")


class PersonChange(BaseModel):
    """What to change of a person: a new name, hidden or shown again (either or both)."""

    name: str | None = Field(None, min_length=1, max_length=500)
    hidden: bool | None = None


class FaceToPerson(BaseModel):
    """A person by id, or (to move a face) by name: a new name starts a person."""

    person: int | str = Field(description="a person's id, or a name")


class ClusterRequest(BaseModel):
    dry_run: bool = False


class DedupRequest(BaseModel):
    paths: list[str] = Field(default_factory=list, max_length=1000)  # none: the service's roots
    tiers: list[int] = Field(default_factory=lambda: [1, 2, 3, 4, 5], min_length=1, max_length=5)


class MergeRequest(BaseModel):
    other: int = Field(ge=1, le=2**62)


class IndexRequest(BaseModel):
    paths: list[str] = Field(min_length=1, max_length=1000)
    retry_failed: bool = False

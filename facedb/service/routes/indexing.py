"""Indexing folders inside the served roots as background jobs, and their progress
(/v1/index, /v1/jobs/{id})."""

from __future__ import annotations

from fastapi import APIRouter

from ...results import Job
from ..context import ERRORS, AdminKey, ReadKey, Service, inside_roots
from ..requests import IndexRequest

router = APIRouter(prefix="/v1", responses=ERRORS, tags=["indexing"])


@router.post("/index", response_model=Job, status_code=202)
def index(service: Service, _: AdminKey, body: IndexRequest) -> Job:
    checked = [str(inside_roots(p, service.served_roots)) for p in body.paths]
    return service.jobs.start(checked, body.retry_failed, within=service.served_roots)


@router.get("/jobs/{job_id}", response_model=Job)
def job(service: Service, _: ReadKey, job_id: int) -> Job:
    return service.jobs.get(job_id)

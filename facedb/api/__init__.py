"""FaceDB: the one domain API under the CLI, the REST service and the tests.

It is made of facets, one file each: parts (the database, stores and models it opens on first
use), photos (faces of photos, indexing, enrolment, face tags), who (who is this), people,
archive (dedup, backups, schema, checks, counts), proof (calibrate, eval) and models."""

from __future__ import annotations

from .archive import Archive
from .models import Models
from .people import People
from .proof import Proof
from .who import WhoIsThis


class FaceDB(WhoIsThis, Models, Archive, People, Proof):
    """Open lazily: nothing heavy (database, TensorFlow) happens until a method needs it."""


__all__ = ["FaceDB"]

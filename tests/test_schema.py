"""The schema comes only from Alembic migrations, and they go both ways."""

import numpy as np
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from facedb.config import Settings
from facedb.db.codec import EmbeddingRow, FaceRow, copy_embeddings, copy_faces, decode_halfvec_send, face_ids
from facedb.db.database import Database
from facedb.db.schema import Base
from facedb.db.sql import SCHEMA_HEAD, embedding_index
from facedb.vision.weights import embedder_specs

TABLES = {
    "photos",
    "faces",
    "face_embeddings",
    "database_settings",
    "identities",
    "face_identities",
    "face_rejections",
    "embedding_models",
    "api_keys",
    "calibrations",
    "person_summaries",
    "people_to_summarise",
    "archive_count_changes",
    "faces_of_nobody",
}


def _tables(database: Database) -> set[str]:
    return set(inspect(database.engine).get_table_names()) - {"alembic_version"}


def test_upgrade_from_empty_downgrade_and_upgrade_again(new_database_url):
    database = Database.open(Settings.load(database_url=new_database_url()), migrate=False)
    try:
        assert _tables(database) == set()
        database.upgrade()
        assert _tables(database) == TABLES
        # what opening compares with, without Alembic: the newest migration
        assert database.current_revision() == database.head_revision() == database.stored_revision() == SCHEMA_HEAD
        with database.engine.connect() as conn:
            # the migrated schema is exactly what the typed models describe
            assert compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata) == []
            indexes = dict(
                conn.execute(
                    text("SELECT indexname, indexdef FROM pg_indexes WHERE indexname LIKE 'face_embeddings_hnsw_%'")
                ).all()
            )
        # one search index per model of the manifest, at its dimension, on its rows only
        assert set(indexes) == {embedding_index(m) for m in embedder_specs()}
        for model, spec in embedder_specs().items():
            index = indexes[embedding_index(model)]
            assert "hnsw" in index and "halfvec_l2_ops" in index and f"halfvec({spec['dimension']})" in index
            assert f"model = '{model}'" in index
        database.downgrade("0006")  # a database one revision behind is brought up when opened
        database.close()
        database = Database.open(Settings.load(database_url=database.url))
        assert database.stored_revision() == SCHEMA_HEAD
        database.downgrade("base")
        assert _tables(database) == set() and database.current_revision() is None and database.stored_revision() is None
        database.upgrade()
        assert _tables(database) == TABLES
    finally:
        database.close()


def test_opening_a_new_database_migrates_it(new_database_url):
    database = Database.open(Settings.load(database_url=new_database_url()))
    try:
        assert _tables(database) == TABLES
    finally:
        database.close()


def test_deleting_a_photo_deletes_its_faces_and_their_identities(new_database_url):
    database = Database.open(Settings.load(database_url=new_database_url()))
    try:
        with database.engine.begin() as conn:
            model = conn.execute(
                text(
                    "INSERT INTO embedding_models (name, version, sha256, preprocessing, dimension) "
                    "VALUES ('m', '1', 'x', 'p', 512) RETURNING id"
                )
            ).scalar()
            photo = conn.execute(
                text("INSERT INTO photos (path, status) VALUES ('/a.jpg', 'indexed') RETURNING id")
            ).scalar()
            face = conn.execute(
                text(
                    "INSERT INTO faces (photo_id, box_x, box_y, box_w, box_h, landmarks, score) "
                    "VALUES (:p, 0, 0, 1, 1, '{}', 1) RETURNING id"
                ),
                {"p": photo},
            ).scalar()
            conn.execute(
                text(
                    "INSERT INTO face_embeddings (face_id, model, embedding_model_id, embedding) "
                    "VALUES (:f, '1', :m, :e)"
                ),
                {"f": face, "e": "[" + ",".join(["0"] * 511 + ["1"]) + "]", "m": model},
            )
            person = conn.execute(text("INSERT INTO identities (name) VALUES ('Ada') RETURNING id")).scalar()
            conn.execute(
                text("INSERT INTO face_identities (face_id, identity_id, source) VALUES (:f, :i, 'enrolled')"),
                {"f": face, "i": person},
            )
            conn.execute(text("DELETE FROM photos WHERE id = :p"), {"p": photo})
            left = conn.execute(
                text(
                    "SELECT (SELECT count(*) FROM faces), (SELECT count(*) FROM face_embeddings), "
                    "(SELECT count(*) FROM face_identities), (SELECT count(*) FROM identities)"
                )
            ).one()
        assert tuple(left) == (0, 0, 0, 1)  # the person stays; what was derived from the photo goes
    finally:
        database.close()


def test_binary_copy_stores_every_field_exactly(new_database_url):
    database = Database.open(Settings.load(database_url=new_database_url()))
    rng = np.random.default_rng(3)
    embeddings = rng.normal(size=(3, 512)).astype(np.float32)
    try:
        with database.engine.begin() as conn:
            model = conn.execute(
                text(
                    "INSERT INTO embedding_models (name, version, sha256, preprocessing, dimension) "
                    "VALUES ('m', '1', 'x', 'p', 512) RETURNING id"
                )
            ).scalar()
            photo = conn.execute(
                text("INSERT INTO photos (path, status) VALUES ('/a.jpg', 'indexed') RETURNING id")
            ).scalar()
            cursor = conn.connection.dbapi_connection.cursor()
            ids = face_ids(cursor, 3)
            rows = [
                FaceRow(ids[0], photo, (1.5, 2.25, 30.0, 40.5), [float(v) for v in range(10)], 0.99, b"\x00\t\n\\\xff"),
                FaceRow(ids[1], photo, (0, 0, 1, 1), [], 1.0),
                FaceRow(ids[2], photo, (-3.5, 7, 1e6, 2), [0.125] * 10, 0.5, b""),
            ]
            copy_faces(cursor, rows)
            copy_embeddings(cursor, [EmbeddingRow(i, "1", model, e) for i, e in zip(ids, embeddings)])
            stored = conn.execute(
                text(
                    "SELECT f.id, box_x, box_y, box_w, box_h, landmarks, score, halfvec_send(embedding), e.model, "
                    "embedding_model_id, thumbnail FROM faces f JOIN face_embeddings e ON e.face_id = f.id ORDER BY id"
                )
            ).all()
        assert [r[0] for r in stored] == ids
        for row, vector, (_, x, y, w, h, landmarks, score, raw, key, model_id, thumbnail) in zip(
            rows, embeddings, stored
        ):
            assert (x, y, w, h) == tuple(np.float32(v) for v in row.box)
            assert landmarks == [np.float32(v) for v in row.landmarks] and score == np.float32(row.score)
            stored_at_half = vector.astype(np.float16).astype(np.float32)
            assert np.array_equal(decode_halfvec_send(raw), stored_at_half) and model_id == model and key == "1"
            assert (None if thumbnail is None else bytes(thumbnail)) == row.thumbnail
    finally:
        database.close()


def test_downgrading_0007_merges_the_runtimes_of_a_model(new_database_url):
    """Faces and calibrations of a model made on two runtimes all belong to its one row again."""
    database = Database.open(Settings.load(database_url=new_database_url()))
    vector = "[" + ",".join(["0.044"] * 512) + "]"
    try:
        database.downgrade("0008")  # faces with their one embedding, as 0007 knew them
        with database.engine.begin() as conn:
            models = [
                conn.execute(
                    text(
                        "INSERT INTO embedding_models (name, version, sha256, preprocessing, dimension, runtime) "
                        "VALUES ('m', '1', 'x', 'p', 512, :r) RETURNING id"
                    ),
                    {"r": runtime},
                ).scalar()
                for runtime in ("tensorflow", "onnxruntime 1.32.0")
            ]
            photo = conn.execute(
                text("INSERT INTO photos (path, status) VALUES ('/a.jpg', 'indexed') RETURNING id")
            ).scalar()
            for model in models:
                conn.execute(
                    text(
                        "INSERT INTO faces (photo_id, box_x, box_y, box_w, box_h, landmarks, score, embedding, "
                        "embedding_model_id) VALUES (:p, 0, 0, 1, 1, '{}', 1, CAST(:v AS vector), :m)"
                    ),
                    {"p": photo, "v": vector, "m": model},
                )
            conn.execute(
                text(
                    "INSERT INTO calibrations (embedding_model_id, threshold, far_target, evidence) "
                    "VALUES (:m, 1.0, 0.001, '{}')"
                ),
                {"m": models[1]},
            )
        database.downgrade("0006")
        with database.engine.connect() as conn:
            assert conn.execute(text("SELECT id FROM embedding_models")).scalars().all() == [models[0]]
            assert conn.execute(text("SELECT DISTINCT embedding_model_id FROM faces")).scalars().all() == [models[0]]
            assert conn.execute(text("SELECT embedding_model_id FROM calibrations")).scalars().all() == [models[0]]
            assert conn.execute(text("SELECT count(*) FROM faces")).scalar() == 2  # no face lost
        database.upgrade()
        assert database.stored_revision() == SCHEMA_HEAD
    finally:
        database.close()


def test_0009_moves_the_embeddings_without_recomputing_them_and_back(new_database_url):
    """An archive at 0008 (one 512-d embedding a face) is upgraded in place: each vector is in
    face_embeddings under its model, exactly; people stay on the faces; the default model is
    the one it had. Downgrading puts them back."""
    database = Database.open(Settings.load(database_url=new_database_url()))
    rng = np.random.default_rng(9)
    vectors = rng.normal(size=(3, 512)).astype(np.float32)
    try:
        database.downgrade("0008")
        with database.engine.begin() as conn:
            model, photo = _facenet_model_and_photo(conn)
            faces = [
                conn.execute(
                    text(
                        "INSERT INTO faces (photo_id, box_x, box_y, box_w, box_h, landmarks, score, embedding, "
                        "embedding_model_id) VALUES (:p, 0, 0, 1, 1, '{}', 1, CAST(:v AS vector), :m) RETURNING id"
                    ),
                    {"p": photo, "v": "[" + ",".join(f"{x:.9g}" for x in v) + "]", "m": model},
                ).scalar()
                for v in vectors
            ]
            person = conn.execute(text("INSERT INTO identities (name) VALUES ('Ada') RETURNING id")).scalar()
            conn.execute(
                text("INSERT INTO face_identities (face_id, identity_id, source) VALUES (:f, :i, 'confirmed')"),
                {"f": faces[0], "i": person},
            )
        database.upgrade("0009")
        with database.engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT face_id, model, embedding_model_id, vector_send(embedding) FROM face_embeddings ORDER BY 1"
                )
            ).all()  # at 0009, before the embeddings went to half precision
            assert [(r[0], r[1], r[2]) for r in rows] == [(f, "20180408-102900", model) for f in faces]
            assert all(np.array_equal(decode_vector_send(r[3]), v) for r, v in zip(rows, vectors))
            assert conn.execute(text("SELECT face_id FROM face_identities")).scalars().all() == [faces[0]]
            assert conn.execute(text("SELECT value FROM database_settings")).scalars().all() == ["20180408-102900"]
        database.downgrade("0008")
        with database.engine.connect() as conn:
            back = conn.execute(text("SELECT id, vector_send(embedding) FROM faces ORDER BY id")).all()
        assert [r[0] for r in back] == faces
        assert all(np.array_equal(decode_vector_send(r[1]), v) for r, v in zip(back, vectors))
        database.upgrade()
    finally:
        database.close()


def _facenet_model_and_photo(conn) -> tuple[int, int]:
    """The ids of a FaceNet model row and of a photo, for faces stored by hand."""
    model = conn.execute(
        text(
            "INSERT INTO embedding_models (name, version, sha256, preprocessing, dimension, runtime) "
            "VALUES ('facenet', '20180408-102900', 'x', 'p', 512, 'onnxruntime') RETURNING id"
        )
    ).scalar()
    photo = conn.execute(text("INSERT INTO photos (path, status) VALUES ('/a.jpg', 'indexed') RETURNING id")).scalar()
    return model, photo


def decode_vector_send(raw) -> np.ndarray:
    """pgvector's binary form of a (float4) vector, as the schema stored embeddings before 0010."""
    return np.frombuffer(raw, dtype=">f4", offset=4).astype(np.float32)


def test_0010_stores_the_embeddings_at_half_precision_and_back(new_database_url):
    """Issue 28: each embedding becomes the halfvec of its float4 values (what its search index
    already held), its search index is rebuilt and answers; downgrading gives float4 vectors of
    those values."""
    database = Database.open(Settings.load(database_url=new_database_url()))
    rng = np.random.default_rng(10)
    vectors = rng.normal(size=(3, 512)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    try:
        database.downgrade("0009")
        with database.engine.begin() as conn:
            model, photo = _facenet_model_and_photo(conn)
            for v in vectors:
                face = conn.execute(
                    text(
                        "INSERT INTO faces (photo_id, box_x, box_y, box_w, box_h, landmarks, score, thumbnail) "
                        "VALUES (:p, 0, 0, 1, 1, '{}', 1, NULL) RETURNING id"
                    ),
                    {"p": photo},
                ).scalar()
                conn.execute(
                    text(
                        "INSERT INTO face_embeddings (face_id, model, embedding_model_id, embedding) "
                        "VALUES (:f, '20180408-102900', :m, CAST(:v AS vector))"
                    ),
                    {"f": face, "m": model, "v": "[" + ",".join(f"{x:.9g}" for x in v) + "]"},
                )
        database.upgrade()
        halves = vectors.astype(np.float16).astype(np.float32)
        with database.engine.connect() as conn:
            stored = conn.execute(text("SELECT halfvec_send(embedding) FROM face_embeddings ORDER BY face_id")).all()
            assert all(np.array_equal(decode_halfvec_send(r[0]), h) for r, h in zip(stored, halves))
            conn.execute(text("SET enable_seqscan = off"))
            plan = "\n".join(
                conn.execute(
                    text(
                        "EXPLAIN SELECT face_id FROM face_embeddings WHERE model = '20180408-102900' "
                        "ORDER BY embedding::halfvec(512) <-> CAST(:q AS halfvec)::halfvec(512) LIMIT 2"
                    ),
                    {"q": "[" + ",".join(f"{x:.9g}" for x in vectors[0]) + "]"},
                ).scalars()
            )
            assert "face_embeddings_hnsw_20180408_102900" in plan, plan
        database.downgrade("0009")
        with database.engine.connect() as conn:
            back = conn.execute(text("SELECT vector_send(embedding) FROM face_embeddings ORDER BY face_id")).all()
        assert all(np.array_equal(decode_vector_send(r[0]), h) for r, h in zip(back, halves))
        database.upgrade()
    finally:
        database.close()

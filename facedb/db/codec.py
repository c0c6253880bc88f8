"""Vectors and faces on their way into and out of PostgreSQL: pgvector's text and binary
forms, and binary COPY rows for bulk writes."""

from __future__ import annotations

import io
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np


def vector_literal(vector: np.ndarray) -> str:
    return "[" + ",".join(f"{float(v):.9g}" for v in vector) + "]"  # 9 digits: float32 round-trips exactly


@dataclass
class FaceRow:
    id: int  # taken from the faces' sequence beforehand, so that its embeddings can name it
    photo_id: int
    box: tuple[float, float, float, float]
    landmarks: Sequence[float]
    score: float
    thumbnail: bytes | None = None


@dataclass
class EmbeddingRow:
    face_id: int
    model: str
    embedding_model_id: int
    embedding: np.ndarray


_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
_FLOAT4_OID = 700
FACE_COLUMNS = "id, photo_id, box_x, box_y, box_w, box_h, landmarks, score, thumbnail"
EMBEDDING_COLUMNS = "face_id, model, embedding_model_id, embedding"


def encode_face_rows(rows: Iterable[FaceRow]) -> bytes:
    """Faces in PostgreSQL's binary COPY format: no number is ever printed and parsed back
    (text COPY spent 0.28 ms formatting each 512-d vector)."""
    parts = [_COPY_HEADER]
    for row in rows:
        landmarks = np.asarray(row.landmarks, ">f4")
        parts.append(struct.pack(">hiqiq", 9, 8, row.id, 8, row.photo_id))
        parts.append(
            struct.pack(
                ">ififififi",
                4,
                row.box[0],
                4,
                row.box[1],
                4,
                row.box[2],
                4,
                row.box[3],
                20 + 8 * len(landmarks) if len(landmarks) else 12,
            )
        )
        # a one-dimensional float4 array (an empty one has no dimensions)
        parts.append(
            struct.pack(">iiiii", 1, 0, _FLOAT4_OID, len(landmarks), 1)
            if len(landmarks)
            else struct.pack(">iii", 0, 0, _FLOAT4_OID)
        )
        elements = np.full(2 * len(landmarks), 4, ">i4")  # each element: its length (4), then the float4
        elements[1::2] = landmarks.view(">i4")
        parts.append(elements.tobytes())
        parts.append(struct.pack(">if", 4, row.score))
        if row.thumbnail is None:
            parts.append(struct.pack(">i", -1))
        else:
            parts.append(struct.pack(">i", len(row.thumbnail)) + row.thumbnail)
    parts.append(struct.pack(">h", -1))
    return b"".join(parts)


def encode_embedding_rows(rows: Iterable[EmbeddingRow]) -> bytes:
    parts = [_COPY_HEADER]
    for row in rows:
        model = row.model.encode()
        embedding = np.asarray(row.embedding, ">f2")  # halfvec's binary form: dimension, unused, halves
        parts.append(struct.pack(">hiqi", 4, 8, row.face_id, len(model)) + model)
        parts.append(struct.pack(">ihihh", 2, row.embedding_model_id, 4 + 2 * len(embedding), len(embedding), 0))
        parts.append(embedding.tobytes())
    parts.append(struct.pack(">h", -1))
    return b"".join(parts)


def copy_faces(cursor, rows: Iterable[FaceRow]) -> None:
    cursor.copy_expert(
        f"COPY faces ({FACE_COLUMNS}) FROM STDIN WITH (FORMAT binary)", io.BytesIO(encode_face_rows(rows))
    )


def copy_embeddings(cursor, rows: Iterable[EmbeddingRow]) -> None:
    cursor.copy_expert(
        f"COPY face_embeddings ({EMBEDDING_COLUMNS}) FROM STDIN WITH (FORMAT binary)",
        io.BytesIO(encode_embedding_rows(rows)),
    )


def face_ids(cursor, count: int) -> list[int]:
    """`count` new ids from the faces' sequence (one round trip)."""
    if count == 0:
        return []
    cursor.execute("SELECT nextval(pg_get_serial_sequence('faces', 'id')) FROM generate_series(1, %s)", (count,))
    return [row[0] for row in cursor.fetchall()]


def decode_halfvec_send(raw: bytes | memoryview) -> np.ndarray:
    """pgvector's binary form of a halfvec (halfvec_send, how embeddings are stored): int16
    dimension, int16 unused, big-endian halves; as float32 (exactly the stored values)."""
    return np.frombuffer(raw, dtype=">f2", offset=4).astype(np.float32)

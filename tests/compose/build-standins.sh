#!/bin/sh
# Builds stand-ins for the two registry images that docker-compose.yml's builds and services start
# from, python:3.11-slim and pgvector/pgvector:pg17, on a machine whose Docker reaches no image
# registry (tests/test_compose.py runs it): a minimal Debian from debootstrap, imported, then the
# Dockerfiles beside this script. A tag that is already the real image (one without the stand-in
# label) is left alone. Prints one line a tag, saying which it is. Needs root, a running Docker
# engine and Debian's debootstrap; the bases are kept as facedb-standin/debian:SUITE.
set -eu
here="$(cd "$(dirname "$0")" && pwd)"
mirror="${FACEDB_STANDIN_MIRROR:-http://deb.debian.org/debian}"

base() {  # facedb-standin/debian:SUITE
    suite="$1"
    docker image inspect "facedb-standin/debian:$suite" > /dev/null 2>&1 && return 0
    root="$(mktemp -d /var/tmp/facedb-standin-XXXXXX)"
    if ! debootstrap --variant=minbase "$suite" "$root/fs" "$mirror" > "$root/debootstrap.log" 2>&1; then
        echo "build-standins: debootstrap $suite from $mirror failed: $(tail -n 1 "$root/debootstrap.log")" >&2
        rm -rf "$root"
        exit 1
    fi
    tar -C "$root/fs" -c . | docker import --change 'CMD ["bash"]' \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' - "facedb-standin/debian:$suite" > /dev/null
    rm -rf "$root"
}

standin() {  # TAG DOCKERFILE SUITE
    tag="$1" dockerfile="$2" suite="$3"
    if docker image inspect "$tag" > /dev/null 2>&1 \
        && [ -z "$(docker image inspect -f '{{ index .Config.Labels "org.facedb.standin" }}' "$tag")" ]; then
        echo "$tag: the registry's image, present already"
        return 0
    fi
    base "$suite"
    context="$(mktemp -d)"
    cp "$here/$dockerfile" "$here/postgres-entrypoint.sh" "$context/"
    mkdir "$context/ca-certificates"
    cp /usr/local/share/ca-certificates/*.crt "$context/ca-certificates/" 2> /dev/null || true
    if ! docker build --network host -q -t "$tag" -f "$context/$dockerfile" "$context" > "$context/build.log" 2>&1; then
        echo "build-standins: building $tag failed:" >&2
        tail -n 20 "$context/build.log" >&2
        rm -rf "$context"
        exit 1
    fi
    rm -rf "$context"
    echo "STAND-IN $(docker image inspect -f '{{ index .Config.Labels "org.facedb.standin" }}' "$tag")"
}

standin python:3.11-slim python-3.11-slim.Dockerfile bookworm
standin pgvector/pgvector:pg17 pgvector-pg17.Dockerfile trixie

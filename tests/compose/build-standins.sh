#!/bin/sh
# The two registry images that docker-compose.yml's builds and services start from,
# python:3.11-slim and pgvector/pgvector:pg17: pulled from the registry when it answers, else
# stand-ins built here from Debian's packages (tests/test_compose.py runs it): a minimal Debian
# from debootstrap, imported, then the Dockerfiles beside this script, labelled
# org.facedb.standin. Prints one line a tag saying which it is. Stand-ins need root, a running
# Docker engine and Debian's debootstrap; their bases are kept as facedb-standin/debian:SUITE.
set -eu
here="$(cd "$(dirname "$0")" && pwd)"
mirror="${FACEDB_STANDIN_MIRROR:-http://deb.debian.org/debian}"
scratch=""
trap 'if [ -n "$scratch" ]; then rm -rf "$scratch"; fi' EXIT

base() {  # facedb-standin/debian:SUITE
    suite="$1"
    docker image inspect "facedb-standin/debian:$suite" > /dev/null 2>&1 && return 0
    scratch="$(mktemp -d /var/tmp/facedb-standin-XXXXXX)"
    if ! debootstrap --variant=minbase "$suite" "$scratch/fs" "$mirror" > "$scratch/debootstrap.log" 2>&1; then
        echo "build-standins: debootstrap $suite from $mirror failed: $(tail -n 1 "$scratch/debootstrap.log")" >&2
        exit 1
    fi
    # a file, not a pipe: sh has no pipefail, and a cut-short tar must not become a base
    tar -C "$scratch/fs" -cf "$scratch/fs.tar" .
    docker import --change 'CMD ["bash"]' \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        "$scratch/fs.tar" "facedb-standin/debian:$suite" > /dev/null
    rm -rf "$scratch"
    scratch=""
}

standin_label() {
    docker image inspect -f '{{ index .Config.Labels "org.facedb.standin" }}' "$1" 2> /dev/null || true
}

image() {  # TAG DOCKERFILE SUITE
    tag="$1" dockerfile="$2" suite="$3"
    if docker image inspect "$tag" > /dev/null 2>&1 && [ -z "$(standin_label "$tag")" ]; then
        echo "$tag: the registry's image, present"
        return 0
    fi
    if pulled="$(docker pull -q "$tag" 2>&1)"; then
        echo "$tag: the registry's image, pulled"
        return 0
    fi
    base "$suite"
    scratch="$(mktemp -d)"
    cp "$here/$dockerfile" "$here/postgres-entrypoint.sh" "$scratch/"
    mkdir "$scratch/ca-certificates"
    cp /usr/local/share/ca-certificates/*.crt "$scratch/ca-certificates/" 2> /dev/null || true
    if ! docker build --network host -q -t "$tag" -f "$scratch/$dockerfile" "$scratch" > "$scratch/build.log" 2>&1; then
        echo "build-standins: building a stand-in for $tag failed:" >&2
        tail -n 20 "$scratch/build.log" >&2
        exit 1
    fi
    rm -rf "$scratch"
    scratch=""
    echo "STAND-IN $(standin_label "$tag") (the registry: $(echo "$pulled" | tail -n 1))"
}

image python:3.11-slim python-3.11-slim.Dockerfile bookworm
image pgvector/pgvector:pg17 pgvector-pg17.Dockerfile trixie

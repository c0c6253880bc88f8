"""Face tags in XMP, as digiKam, Lightroom, Picasa, Mylio and immich share them: read from the
photo's embedded XMP and its sidecars, written back into sidecars (or, when asked, into the
photo), through exiv2 (pyexiv2).

Two schemas are read and written: Metadata Working Group regions (`mwg-rs:Regions`: a
normalised centre and size, `stArea`, with `AppliedToDimensions`) and Microsoft People
Tagging (`MP:RegionInfo`: `MPReg:Rectangle` as normalised left, top, width, height, with
`PersonDisplayName`). Both are in the frame of the pixels as stored: a photo shown turned by
its EXIF orientation has its regions turned with it here, so that a tag's box is in the same
frame as facedb's boxes (the photo as shown).

Untrusted XMP: exiv2's XMP toolkit refuses a packet holding a DTD (no entity is expanded, no
external one fetched); a sidecar larger than MAX_SIDECAR_BYTES is not read at all.
"""

from __future__ import annotations

import os
import secrets
import stat
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import FaceDBError, ImageError, one_line
from ..faces import Box, box_iou
from .images import open_regular

MAX_SIDECAR_BYTES = 4 * 2**20
MATCHING_OVERLAP = 0.3  # a tag names the detected face it overlaps most, at least this much (IoU)
_MWG = "Xmp.mwg-rs.Regions"
_MP = "Xmp.MP.RegionInfo"
_EMPTY_PACKET = (
    '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>'
    '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"/>'
    '</x:xmpmeta><?xpacket end="w"?>'
)


class FaceTagError(FaceDBError):
    """XMP that cannot be read or written, in one line."""


@dataclass(frozen=True)
class FaceTag:
    name: str
    box: Box  # x, y, width, height in the photo's pixels as shown (EXIF orientation applied)
    found_in: str  # "embedded" or the sidecar's path


# exiv2's XMP toolkit keeps state that two threads must not change at once (the indexer reads
# tags from several detecting threads): one call at a time, a few milliseconds each.
_EXIV2 = threading.Lock()


def _exiv2():
    import pyexiv2

    # errors raise (at 4, "mute", they would pass silently); its warnings would go to stderr
    pyexiv2.set_log_level(3)
    return pyexiv2


def sidecars(photo: Path) -> list[Path]:
    """The sidecars other programs keep beside a photo: photo.jpg.xmp (digiKam, darktable,
    immich) and photo.xmp (Lightroom), those that exist."""
    found = []
    for candidate in (photo.with_name(photo.name + ".xmp"), photo.with_suffix(".xmp")):
        if candidate != photo and candidate.is_file() and candidate not in found:
            found.append(candidate)
    return found


# ---- orientation: the stored frame <-> the frame shown -----------------------------------------
def _shown_point(u: float, v: float, orientation: int) -> tuple[float, float]:
    """A point of the stored image (normalised) where it lies once turned for showing."""
    return {
        1: (u, v),
        2: (1 - u, v),
        3: (1 - u, 1 - v),
        4: (u, 1 - v),
        5: (v, u),
        6: (1 - v, u),
        7: (1 - v, 1 - u),
        8: (v, 1 - u),
    }.get(orientation, (u, v))


def _stored_point(u: float, v: float, orientation: int) -> tuple[float, float]:
    inverse = {6: 8, 8: 6}.get(orientation, orientation)  # the others undo themselves
    return _shown_point(u, v, inverse)


def _turned(box: tuple[float, float, float, float], point) -> tuple[float, float, float, float]:
    x, y, w, h = box
    (a, b), (c, d) = point(x, y), point(x + w, y + h)
    return min(a, c), min(b, d), abs(c - a), abs(d - b)


def shown_box(stored: tuple[float, float, float, float], orientation: int, width: int, height: int) -> Box:
    """A normalised (left, top, width, height) box of the stored frame -> pixels of the photo
    as shown, `width` x `height`."""
    x, y, w, h = _turned(stored, lambda u, v: _shown_point(u, v, orientation))
    return (x * width, y * height, w * width, h * height)


def stored_box(shown: Box, orientation: int, width: int, height: int) -> tuple[float, float, float, float]:
    """Pixels of the photo as shown (`width` x `height`) -> a normalised box of the stored frame."""
    x, y, w, h = shown
    normalised = (x / width, y / height, w / width, h / height)
    return _turned(normalised, lambda u, v: _stored_point(u, v, orientation))


# ---- reading ---------------------------------------------------------------------------------
def read_tags(
    data: bytes, photo: Path, orientation: int, width: int, height: int, within: Sequence[Path] | None = None
) -> list[FaceTag]:
    """The named face regions of a photo (its bytes `data`, shown `width` x `height`): from its
    embedded XMP, then from its sidecars; a region given twice (both schemas, or embedded and
    in a sidecar) counts once. A sidecar is read as a photo is: a regular file, and with `within`
    one that really lies in those folders (a link out of them is refused). FaceTagError names the
    file and the reason."""
    found: list[FaceTag] = []
    sources: list[tuple[str, bytes]] = [("embedded", data)]
    for sidecar in sidecars(photo):
        try:
            handle, _ = open_regular(sidecar, within)
            with handle:
                raw = handle.read(MAX_SIDECAR_BYTES + 1)
        except ImageError as exc:
            raise FaceTagError(f"{sidecar}: {exc}") from None
        except OSError as exc:
            raise FaceTagError(f"{sidecar}: cannot read: {exc.strerror or exc}") from None
        if len(raw) > MAX_SIDECAR_BYTES:
            raise FaceTagError(f"{sidecar}: larger than {MAX_SIDECAR_BYTES:,} bytes")
        sources.append((str(sidecar), raw))
    for where, raw in sources:
        for name, box in _regions(_xmp_of(raw, where if where != "embedded" else str(photo))):
            tag = FaceTag(name, shown_box(box, orientation, width, height), where)
            if not any(t.name == tag.name and box_iou(t.box, tag.box) > 0.5 for t in found):
                found.append(tag)
    return found


def _xmp_of(raw: bytes, where: str) -> dict[str, str]:
    try:
        with _EXIV2, _exiv2().ImageData(raw) as image:
            return image.read_xmp()
    except RuntimeError as exc:
        if "unknown image type" in str(exc) and not raw.lstrip().startswith((b"<?xpacket", b"<x:xmpmeta")):
            if where.endswith(".xmp"):
                raise FaceTagError(f"{where}: not an XMP sidecar") from None
            return {}  # a format exiv2 does not know holds no XMP it could read
        raise FaceTagError(f"{where}: unreadable XMP: {one_line(str(exc))}") from None


def _regions(xmp: dict[str, str]) -> Iterable[tuple[str, tuple[float, float, float, float]]]:
    """(name, normalised left/top/width/height in the stored frame) of each named face region."""
    for index in range(1, 10_000):
        item = f"{_MWG}/mwg-rs:RegionList[{index}]"
        if item not in xmp and f"{item}/mwg-rs:Name" not in xmp:
            break
        name = xmp.get(f"{item}/mwg-rs:Name", "").strip()
        kind = xmp.get(f"{item}/mwg-rs:Type", "Face")
        unit = xmp.get(f"{item}/mwg-rs:Area/stArea:unit", "normalized")
        try:
            cx, cy, w, h = (float(xmp[f"{item}/mwg-rs:Area/stArea:{k}"]) for k in "xywh")
        except (KeyError, ValueError):
            continue
        if name and kind == "Face" and unit == "normalized" and w > 0 and h > 0:
            yield name, (cx - w / 2, cy - h / 2, w, h)
    for index in range(1, 10_000):
        item = f"{_MP}/MPRI:Regions[{index}]"
        if item not in xmp and f"{item}/MPReg:Rectangle" not in xmp:
            break
        name = xmp.get(f"{item}/MPReg:PersonDisplayName", "").strip()
        try:
            x, y, w, h = (float(v) for v in xmp.get(f"{item}/MPReg:Rectangle", "").split(","))
        except ValueError:
            continue
        if name and w > 0 and h > 0:
            yield name, (x, y, w, h)


def match(tags: Sequence[FaceTag], faces: Sequence[tuple[int, Box]]) -> tuple[dict[int, str], list[FaceTag]]:
    """Each tag names the face (id, box) it overlaps most (IoU at least MATCHING_OVERLAP), one
    face per tag: face id -> name, and the tags that matched no face."""
    pairs = sorted(
        ((box_iou(t.box, box), i, face_id) for i, t in enumerate(tags) for face_id, box in faces),
        key=lambda p: (-p[0], p[1], p[2]),
    )
    named: dict[int, str] = {}
    used: set[int] = set()
    for overlap, i, face_id in pairs:
        if overlap < MATCHING_OVERLAP:
            break
        if i not in used and face_id not in named:
            named[face_id] = tags[i].name
            used.add(i)
    return named, [t for i, t in enumerate(tags) if i not in used]


# ---- writing ---------------------------------------------------------------------------------
def write_tags(
    photo: Path,
    named: Sequence[tuple[str, Box]],
    orientation: int,
    width: int,
    height: int,
    *,
    embedded: bool = False,
) -> tuple[Path, bool]:
    """Write the named faces (name, box in the photo's pixels as shown) as MWG and MP regions
    into the photo's sidecar (the existing one, else photo.ext.xmp), or into the photo with
    `embedded`. Regions already there stay unless they are facedb's names or overlap one of
    facedb's faces; every other property stays. Writing the same twice changes nothing.
    Returns the file, and whether it changed."""
    with _EXIV2:
        try:
            return _write_tags(photo, named, orientation, width, height, embedded)
        except OSError as exc:  # a folder that cannot be written, a disk that is full
            raise FaceTagError(f"{photo}: cannot write its XMP: {exc.strerror or exc}") from None


def _write_tags(photo: Path, named, orientation: int, width: int, height: int, embedded: bool) -> tuple[Path, bool]:
    pyexiv2 = _exiv2()
    target = photo if embedded else (sidecars(photo) or [photo.with_name(photo.name + ".xmp")])[0]
    stored_width, stored_height = (height, width) if orientation in (5, 6, 7, 8) else (width, height)
    try:
        if target.exists():
            with pyexiv2.Image(str(target)) as image:
                existing = image.read_xmp()
        else:
            existing = {}
    except RuntimeError as exc:
        raise FaceTagError(f"{target}: unreadable XMP: {one_line(str(exc))}") from None
    ours = [(name, stored_box(box, orientation, width, height)) for name, box in named]
    kept = _kept_regions(existing, ours)
    regions = sorted(ours + kept, key=lambda r: (r[1][0], r[1][1], r[0]))
    values = _region_values(regions, stored_width, stored_height)
    stale = [k for k in existing if k.startswith((_MWG, _MP))]
    if not stale and not values:
        return target, False
    folder = target.parent
    # a new file gets what the umask leaves of 0666 (as any program's would), an old one keeps its mode
    mode = stat.S_IMODE(os.stat(target).st_mode) if target.exists() else 0o666
    scratch = str(folder / f".facedb-{secrets.token_hex(8)}{target.suffix or '.xmp'}")
    handle = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(handle, "wb") as out:
            if target.exists():
                with open(target, "rb") as source:
                    out.write(source.read())
            else:
                out.write(_EMPTY_PACKET.encode())
        with pyexiv2.Image(scratch) as image:
            if stale:
                image.modify_xmp(dict.fromkeys(stale))  # None deletes
            image.modify_xmp(values)
        with open(scratch, "rb") as written:
            result = written.read()
            os.fsync(written.fileno())
        if target.exists() and target.read_bytes() == result:
            return target, False  # already so: the file is left alone (its time too)
        if target.exists():
            os.chmod(scratch, mode)  # the umask may have taken bits the photo had
        os.replace(scratch, target)
    except RuntimeError as exc:
        raise FaceTagError(f"{target}: cannot write XMP: {one_line(str(exc))}") from None
    finally:
        if os.path.exists(scratch):
            os.unlink(scratch)
    return target, True


def _kept_regions(existing: dict[str, str], ours: list[tuple[str, tuple[float, float, float, float]]]):
    """The regions already in the file that facedb does not replace (once each)."""
    names = {n for n, _ in ours}
    kept: list[tuple[str, tuple[float, float, float, float]]] = []
    for name, box in _regions(existing):
        if name in names or any(box_iou(box, other) >= MATCHING_OVERLAP for _, other in ours):
            continue
        if not any(name == n and box_iou(box, b) > 0.5 for n, b in kept):
            kept.append((name, box))
    return kept


def _region_values(regions, stored_width: int, stored_height: int) -> dict[str, str]:
    if not regions:
        return {}
    values = {
        _MWG: 'type="Struct"',
        f"{_MWG}/mwg-rs:AppliedToDimensions": 'type="Struct"',
        f"{_MWG}/mwg-rs:AppliedToDimensions/stDim:w": str(stored_width),
        f"{_MWG}/mwg-rs:AppliedToDimensions/stDim:h": str(stored_height),
        f"{_MWG}/mwg-rs:AppliedToDimensions/stDim:unit": "pixel",
        f"{_MWG}/mwg-rs:RegionList": 'type="Bag"',
        _MP: 'type="Struct"',
        f"{_MP}/MPRI:Regions": 'type="Bag"',
    }
    for index, (name, (x, y, w, h)) in enumerate(regions, start=1):
        item = f"{_MWG}/mwg-rs:RegionList[{index}]"
        values |= {
            item: 'type="Struct"',
            f"{item}/mwg-rs:Area": 'type="Struct"',
            f"{item}/mwg-rs:Area/stArea:x": _number(x + w / 2),
            f"{item}/mwg-rs:Area/stArea:y": _number(y + h / 2),
            f"{item}/mwg-rs:Area/stArea:w": _number(w),
            f"{item}/mwg-rs:Area/stArea:h": _number(h),
            f"{item}/mwg-rs:Area/stArea:unit": "normalized",
            f"{item}/mwg-rs:Name": name,
            f"{item}/mwg-rs:Type": "Face",
        }
        mp = f"{_MP}/MPRI:Regions[{index}]"
        values |= {
            mp: 'type="Struct"',
            f"{mp}/MPReg:Rectangle": ", ".join(_number(v) for v in (x, y, w, h)),
            f"{mp}/MPReg:PersonDisplayName": name,
        }
    return values


def _number(value: float) -> str:
    return f"{min(max(value, 0.0), 1.0):.6f}"

"""Files to pixels: read, hash, decode (any Pillow format, HEIC/AVIF), EXIF orientation and metadata.

Every way a file can fail to be a usable photo ends in `ImageError` with a one-line reason.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import stat
import struct
import threading
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from PIL import ExifTags, Image, ImageFile, UnidentifiedImageError

from ..errors import ImageError, one_line

try:  # HEIC from phones; AVIF is built into recent Pillow.
    import pillow_heif

    pillow_heif.register_heif_opener()
except ImportError:  # pragma: no cover - pillow-heif is a declared dependency
    pass

# Truncated files must fail loudly, not come back half grey.
ImageFile.LOAD_TRUNCATED_IMAGES = False

DEFAULT_MAX_PIXELS = 120_000_000

# Pillow's warnings are it being lenient about odd files, which is what we want, quietly. Filters
# are set once here, not per decode: decode runs in several threads at once, and
# warnings.catch_warnings() is not thread-safe.
for _category in (UserWarning, RuntimeWarning):
    warnings.filterwarnings("ignore", category=_category, module=r"(PIL|pillow_heif)(\.|$)")

# Pillow's own guard also covers sub-images (icons, containers) that only show their size while
# decoding. It raises above twice MAX_IMAGE_PIXELS (below that it only warns), so half of
# facedb's limit makes it refuse what the limit refuses. The value is process-wide and only ever
# raised (by _allow_pixels), so that one thread's limit never lowers another's mid-decode.
Image.MAX_IMAGE_PIXELS = DEFAULT_MAX_PIXELS // 2
_guard_lock = threading.Lock()


def _allow_pixels(max_pixels: int) -> None:
    wanted = (max_pixels + 1) // 2
    if Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS < wanted:
        with _guard_lock:
            if Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS < wanted:
                Image.MAX_IMAGE_PIXELS = wanted


def readable_extensions() -> frozenset[str]:
    """Extensions Pillow (plus pillow-heif) can open: what a folder walk considers a photo."""
    Image.init()
    return frozenset(ext.lower() for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN)


@dataclass(frozen=True)
class PhotoMeta:
    width: int
    height: int
    format: str | None
    taken_at: datetime | None = None
    camera: str | None = None
    gps_lat: float | None = None
    gps_lon: float | None = None
    phash: int | None = None  # perceptual hash of the upright pixels (see perceptual_hash)
    orientation: int = 1  # EXIF orientation of the stored pixels (1: as shown), which XMP regions follow


@dataclass(frozen=True)
class DecodedPhoto:
    """Upright 8-bit RGB pixels (EXIF orientation applied) and what EXIF says about the shot."""

    rgb: np.ndarray
    meta: PhotoMeta
    # Pixels of `rgb` per pixel of the photo: below 1 where the photo was decoded smaller than
    # it is (boxes, landmarks and the meta's size are always in the photo's own pixels).
    scale: float = 1.0


# No photo is larger; a file that is (or that keeps growing, like /dev/zero) is refused.
MAX_FILE_BYTES = 1 << 30


OUTSIDE_ROOTS = "outside the folders this service may read (a link that leads out of them)"


def read_file(path: Path, max_bytes: int = MAX_FILE_BYTES, within: Sequence[Path] | None = None) -> tuple[bytes, str]:
    """The file's bytes and their sha256, or ImageError naming the reason. Only regular files
    are read (a FIFO would block for ever, a device never ends), at most max_bytes, and with
    `within` only files that really lie inside one of those folders."""
    handle, size = open_regular(path, within)
    with handle:
        try:
            data = handle.read(max_bytes + 1)
        except OSError as exc:
            raise ImageError(f"cannot read: {exc.strerror or exc}") from None
    if len(data) > max_bytes:
        raise ImageError(f"larger than {max_bytes:,} bytes")
    if not data:
        raise ImageError("empty file (0 bytes)")
    return data, hashlib.sha256(data).hexdigest()


def open_regular(path: Path, within: Sequence[Path] | None = None) -> tuple[BinaryIO, int]:
    """The open file and its size if it is a regular file, else ImageError with the reason.
    With `within`, the file opened (every link resolved, after opening, so that a link swapped
    in meanwhile is caught too) must lie inside one of those real folders."""
    try:
        if path.is_symlink() and not path.exists():
            raise ImageError("broken symbolic link")
        # O_NONBLOCK: opening a FIFO does not wait for a writer; fstat then tells what it is
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except ImageError:
        raise
    except PermissionError:
        raise ImageError("permission denied") from None
    except FileNotFoundError:
        raise ImageError("file vanished before it could be read") from None
    except OSError as exc:
        raise ImageError(f"cannot read: {exc.strerror or exc}") from None
    handle = os.fdopen(descriptor, "rb")
    try:
        info = os.fstat(descriptor)
        if not stat.S_ISREG(info.st_mode):
            raise ImageError(
                "is a directory" if stat.S_ISDIR(info.st_mode) else f"not a regular file ({_file_kind(info.st_mode)})"
            )
        if within is not None and not is_within(_opened_path(descriptor, path), within):
            raise ImageError(OUTSIDE_ROOTS)
    except BaseException:
        handle.close()
        raise
    return handle, info.st_size


def is_within(path: str | os.PathLike, roots: Sequence[Path]) -> bool:
    """Whether the real path (links resolved) is one of the real folders `roots` or inside one."""
    real = Path(os.path.realpath(path))
    return any(real == root or root in real.parents for root in roots)


def _opened_path(descriptor: int, path: Path) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{descriptor}")  # what was opened, not what the name says now
    except OSError:
        return os.path.realpath(path)


def _file_kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a file"


def decode(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS, max_decoded_pixels: int | None = None) -> DecodedPhoto:
    """The photo's upright RGB pixels; one with more than `max_decoded_pixels` comes back
    smaller, with at most that many (a JPEG already while decoding, at 1/2, 1/4 or 1/8 of its
    size), and its `scale` says by how much. The meta's width and height are the photo's own.
    However many threads decode at once, their pixels together stay within DECODING (one
    photo of any allowed size still decodes)."""
    _allow_pixels(max_pixels)
    try:
        image = Image.open(io.BytesIO(data))
        width, height = image.size
        if width <= 0 or height <= 0:
            raise ImageError(f"image has no pixels ({width}x{height})")
        if max(width, height) > 100 * min(width, height):
            # a 1x83,886,338 "image" is an attack or an accident, never a photo with a face
            raise ImageError(f"not a photo: {width}x{height} pixels (sides more than 100:1)")
        if width * height > max_pixels:
            raise ImageError(
                f"too many pixels: {width}x{height} = {width * height:,} > limit {max_pixels:,} "
                "(possible decompression bomb; raise FACEDB_MAX_PIXELS to allow)"
            )
        target = _decoded_size(width, height, max_decoded_pixels)
        if target != (width, height):
            image.draft(None, target)  # JPEG: decoded at the smallest DCT scale that is not below target
        with DECODING.holding(image.size[0] * image.size[1]):
            image.load()
            meta = _metadata(image)  # after load: a PNG's EXIF may follow its pixels
            rgb = _to_rgb8(image, target)
            del image
        rgb = _upright(rgb, meta.get("orientation", 1))
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError("not an image Pillow can identify") from None
    except Image.DecompressionBombError as exc:
        raise ImageError(f"decompression bomb: {exc}") from None
    except MemoryError:
        raise ImageError("not enough memory to decode") from None
    except (
        OSError,
        ValueError,
        SyntaxError,
        TypeError,
        IndexError,
        KeyError,
        EOFError,
        struct.error,
        ZeroDivisionError,
        RuntimeError,
        NotImplementedError,
        AttributeError,
    ) as exc:
        raise ImageError(one_line(f"cannot decode: {type(exc).__name__}: {exc}")) from None
    upright_width, upright_height = (height, width) if meta.get("orientation", 1) in _SIDEWAYS else (width, height)
    return DecodedPhoto(
        rgb=rgb,
        meta=PhotoMeta(width=upright_width, height=upright_height, phash=perceptual_hash(rgb), **meta),
        scale=rgb.shape[1] / upright_width,
    )


class PixelBudget:
    """Work on images runs at once while their pixels together stay within the budget; one
    image larger than the budget runs alone."""

    def __init__(self, pixels: int) -> None:
        self.pixels, self.in_use = pixels, 0
        self._changed = threading.Condition()

    @contextmanager
    def holding(self, pixels: int) -> Iterator[None]:
        with self._changed:
            self._changed.wait_for(lambda: self.in_use == 0 or self.in_use + pixels <= self.pixels)
            self.in_use += pixels
        try:
            yield
        finally:
            with self._changed:
                self.in_use -= pixels
                self._changed.notify_all()


# Decoding holds up to 7 bytes a pixel (Pillow's 4 and the array's 3) until the photo is
# reduced or converted: one 120 MP photo, or many ordinary ones, decode at once, whatever the
# number of threads or requests that want to.
DECODING = PixelBudget(DEFAULT_MAX_PIXELS)

_SIDEWAYS = (5, 6, 7, 8)


def _decoded_size(width: int, height: int, max_decoded_pixels: int | None) -> tuple[int, int]:
    if not max_decoded_pixels or width * height <= max_decoded_pixels:
        return width, height
    factor = (max_decoded_pixels / (width * height)) ** 0.5
    return max(1, int(width * factor)), max(1, int(height * factor))


def _upright(rgb: np.ndarray, orientation: int) -> np.ndarray:
    """The pixels as they are shown, EXIF orientation applied (as Pillow's exif_transpose)."""
    turned = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: a.transpose(1, 0, 2),
        6: lambda a: np.rot90(a, -1),
        7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),
        8: lambda a: np.rot90(a, 1),
    }.get(orientation)
    return rgb if turned is None else np.ascontiguousarray(turned(rgb))


def exif_orientation(path: Path) -> int:
    """The EXIF orientation of a photo file (1 when it has none), from its header; ImageError
    names the reason it cannot be read."""
    try:
        with Image.open(path) as image:
            value = image.getexif().get(ExifTags.Base.Orientation, 1)
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as exc:
        raise ImageError(one_line(f"cannot read: {exc}")) from None
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def pixel_count(data: bytes) -> int | None:
    """Width x height from the image's header, without decoding it; None if Pillow cannot tell."""
    try:
        width, height = Image.open(io.BytesIO(data)).size
    except Exception:  # noqa: BLE001 - decode names the reason for a file that is not an image
        return None
    return width * height


def _dct_matrix(size: int) -> np.ndarray:
    k = np.arange(size)
    matrix = np.cos(np.pi * (2 * k[None, :] + 1) * k[:, None] / (2 * size))
    matrix[0] /= np.sqrt(2)
    return matrix * np.sqrt(2 / size)


_DCT32 = _dct_matrix(32)


def perceptual_hash(rgb: np.ndarray) -> int:
    """pHash: the signs of the 8x8 lowest frequencies of a 32x32 greyscale DCT, against their
    median, as a signed 64-bit integer. Re-encoding, resizing and format changes move a few
    bits at most; a different picture moves about half of them."""
    grey = _greyscale(rgb).resize((32, 32), Image.Resampling.BILINEAR, reducing_gap=2.0)
    pixels = np.asarray(grey, dtype=np.float64)
    low = (_DCT32 @ pixels @ _DCT32.T)[:8, :8].ravel()
    bits = low > np.median(low)
    value = int("".join("1" if b else "0" for b in bits), 2)
    return value - (1 << 64) if value >= 1 << 63 else value


def resized(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The pixels resized to `size` (width, height), bilinear. A large image is resized a strip
    of rows at a time: Pillow's copy of all of it took 4 bytes a pixel (200 MB for 50 MP),
    and the strips differ from one resize by 1 in about 1 value in 20,000."""
    height, width = rgb.shape[:2]
    if height * width < STRIPS_FROM_PIXELS:
        return np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.BILINEAR))
    out_width, out_height = size
    rows_per_row = height / out_height
    margin = math.ceil(rows_per_row) + 2  # the filter's reach beyond a strip's rows
    out = np.empty((out_height, out_width, 3), np.uint8)
    rows = max(1, _CONVERT_PIXELS // max(width, out_width))
    for top in range(0, out_height, rows):
        bottom = min(out_height, top + rows)
        first, last = top * rows_per_row, bottom * rows_per_row
        start, stop = max(0, int(first) - margin), min(height, math.ceil(last) + margin)
        part = Image.fromarray(rgb[start:stop])
        box = (0.0, first - start, float(width), last - start)
        out[top:bottom] = np.asarray(part.resize((out_width, bottom - top), Image.Resampling.BILINEAR, box=box))
    return out


# Smaller images are resized at once, as they always were (strips differ in a few values).
STRIPS_FROM_PIXELS = 16_000_000


def _greyscale(rgb: np.ndarray) -> Image.Image:
    """Pillow's greyscale of the pixels, made a strip at a time (at once, Pillow's own copy of
    them took 4 bytes a pixel)."""
    height, width = rgb.shape[:2]
    grey = Image.new("L", (width, height))
    rows = max(1, _CONVERT_PIXELS // width)
    for top in range(0, height, rows):
        grey.paste(Image.fromarray(rgb[top : top + rows]).convert("L"), (0, top))
    return grey


def hamming(a: int, b: int) -> int:
    return ((a ^ b) & ((1 << 64) - 1)).bit_count()


def _to_rgb8(image: Image.Image, size: tuple[int, int] | None = None) -> np.ndarray:
    """8-bit RGB pixels of the image, resized to `size` (bilinear) where that differs."""
    size = size or image.size
    mode = image.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        if size != image.size:
            image = image.convert("F").resize(size, Image.Resampling.BILINEAR)
        # 16-bit and float greyscale: scale the real range to 0..255 instead of clipping at 255.
        values = np.asarray(image, dtype=np.float64)
        low, high = float(np.nanmin(values)), float(np.nanmax(values))
        scaled = (
            np.zeros(values.shape, np.uint8)
            if high <= low
            else ((values - low) * (255.0 / (high - low))).astype(np.uint8)
        )
        return np.ascontiguousarray(np.stack([scaled] * 3, axis=-1))
    transparent = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in image.info)
    if mode in ("1", "P", "PA") and size != image.size:  # Pillow resizes these by the nearest pixel only
        image = image.convert("RGBA" if transparent else "RGB")
    # A strip of rows at a time into one array: converting (and resizing) the whole image at
    # once held it up to four times over (Pillow's RGB at 4 bytes a pixel, its bytes, the
    # array): 1.2 GB for a 110 MP PNG. A strip resized from its box of the image reads the
    # pixels around the box too, so strips meet without seams.
    width, height = size
    rows_per_row = image.size[1] / height
    rgb = np.empty((height, width, 3), np.uint8)
    rows = max(1, _CONVERT_PIXELS // width)
    for top in range(0, height, rows):
        bottom = min(height, top + rows)
        if size == image.size:
            strip = image.crop((0, top, width, bottom))
        else:
            box = (0.0, top * rows_per_row, float(image.size[0]), bottom * rows_per_row)
            strip = image.resize((width, bottom - top), Image.Resampling.BILINEAR, box=box)
        if transparent:  # onto white
            strip = strip.convert("RGBA")
            strip = Image.alpha_composite(Image.new("RGBA", strip.size, (255, 255, 255, 255)), strip)
        rgb[top:bottom] = np.asarray(strip if strip.mode == "RGB" else strip.convert("RGB"), dtype=np.uint8)
    return rgb


_CONVERT_PIXELS = 1 << 20


_EXIF_IFD = 0x8769
_GPS_IFD = 0x8825


def _metadata(image: Image.Image) -> dict:
    """Capture time, camera and GPS position from EXIF; odd or broken EXIF just yields None."""
    out: dict = {"format": image.format}
    try:
        exif = image.getexif()
    except Exception:  # noqa: BLE001 - broken EXIF must not fail the photo
        return out
    orientation = exif.get(ExifTags.Base.Orientation)
    if isinstance(orientation, int) and 1 <= orientation <= 8:
        out["orientation"] = orientation
    try:
        sub = exif.get_ifd(_EXIF_IFD)
        stamp = (
            sub.get(ExifTags.Base.DateTimeOriginal)
            or sub.get(ExifTags.Base.DateTimeDigitized)
            or exif.get(ExifTags.Base.DateTime)
        )
        out["taken_at"] = _exif_time(stamp)
    except Exception:  # noqa: BLE001
        pass
    try:
        make = _clean(exif.get(ExifTags.Base.Make))
        model = _clean(exif.get(ExifTags.Base.Model))
        if model and make and model.lower().startswith(make.lower()):
            make = None
        camera = " ".join(part for part in (make, model) if part)
        out["camera"] = camera or None
    except Exception:  # noqa: BLE001
        pass
    try:
        gps = exif.get_ifd(_GPS_IFD)
        lat = _gps_degrees(gps.get(ExifTags.GPS.GPSLatitude), gps.get(ExifTags.GPS.GPSLatitudeRef))
        lon = _gps_degrees(gps.get(ExifTags.GPS.GPSLongitude), gps.get(ExifTags.GPS.GPSLongitudeRef))
        if lat is not None and lon is not None and abs(lat) <= 90 and abs(lon) <= 180:
            out["gps_lat"], out["gps_lon"] = lat, lon
    except Exception:  # noqa: BLE001
        pass
    return out


def _clean(value: object) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str):
        return None
    value = value.replace("\x00", "").strip()
    return value or None


def _exif_time(value: object) -> datetime | None:
    text = _clean(value)
    if not text:
        return None
    for pattern in ("%Y:%m:%d %H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y:%m:%d %H:%M"):
        try:
            return datetime.strptime(text[:19], pattern)
        except ValueError:
            continue
    return None


def _gps_degrees(parts: Any, ref: object) -> float | None:
    if not parts or len(parts) != 3:
        return None
    d, m, s = (float(x) for x in parts)
    value = d + m / 60.0 + s / 3600.0
    if value != value:  # NaN from a 0/0 rational
        return None
    if _clean(ref) in ("S", "W"):
        value = -value
    return round(value, 7)

"""Which files to look at: folders walked recursively, symlink loops broken, odd names survived."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from .images import OUTSIDE_ROOTS, is_within, readable_extensions

# Phones save these; Pillow only knows them once pillow-heif registered its opener.
_EXTRA_EXTENSIONS = frozenset({".heic", ".heif", ".avif", ".hif"})


@dataclass(frozen=True)
class ScannedPath:
    path: str  # absolute, as the user sees it (symlinks not resolved)
    error: str | None = None  # set when the path cannot even be considered a file


def photo_extensions() -> frozenset[str]:
    return readable_extensions() | _EXTRA_EXTENSIONS


def display_path(path: str | os.PathLike) -> str:
    """A text form of any path; names that are not UTF-8 keep their bytes as \\x escapes."""
    raw = os.fsencode(path)
    return raw.decode("utf-8", "backslashreplace")


def scan(paths: Sequence[str | os.PathLike], within: Sequence[Path] | None = None) -> Iterator[ScannedPath]:
    """Files named directly are always candidates; in folders, files with a photo extension.
    With `within` (real folders), a path or link that leads outside them is a candidate with
    that error, and a folder outside them is not walked."""
    extensions = photo_extensions()
    for given in paths:
        path = os.path.abspath(os.fspath(given))
        if within is not None and not is_within(path, within):
            yield ScannedPath(display_path(path), OUTSIDE_ROOTS)
        elif os.path.isdir(path):
            yield from _walk(path, extensions, within)
        elif os.path.lexists(path):
            yield _scanned(path)
        else:
            yield ScannedPath(display_path(path), "no such file or directory")


def _scanned(path: str) -> ScannedPath:
    shown = display_path(path)
    if shown != os.fsdecode(os.fsencode(path)) or _has_surrogates(path):
        return ScannedPath(shown, "file name is not valid UTF-8; rename the file to index it")
    return ScannedPath(shown)


def _has_surrogates(text: str) -> bool:
    try:
        text.encode("utf-8")
        return False
    except UnicodeEncodeError:
        return True


def _walk(root: str, extensions: frozenset[str], within: Sequence[Path] | None) -> Iterator[ScannedPath]:
    """Depth first, names in byte order, each folder's files before its subfolders; a stack,
    not recursion, so that no depth of folders ends the walk."""
    seen_dirs: set[tuple[int, int]] = set()
    pending = [root]
    while pending:
        folder = pending.pop()
        try:
            info = os.stat(folder)
        except OSError as exc:
            yield ScannedPath(display_path(folder), f"cannot open folder: {exc.strerror}")
            continue
        key = (info.st_dev, info.st_ino)
        if key in seen_dirs:  # a symlink loop, or a second way into a folder already walked
            continue
        seen_dirs.add(key)
        try:
            with os.scandir(folder) as entries:
                items = sorted(entries, key=lambda e: os.fsencode(e.name))
        except OSError as exc:
            yield ScannedPath(display_path(folder), f"cannot list folder: {exc.strerror}")
            continue
        subfolders = []
        for entry in items:
            try:
                is_dir = entry.is_dir(follow_symlinks=True)
            except OSError:
                is_dir = False
            photo = os.path.splitext(entry.name)[1].lower() in extensions
            if within is not None and (is_dir or photo) and entry.is_symlink() and not is_within(entry.path, within):
                yield ScannedPath(display_path(entry.path), OUTSIDE_ROOTS)
            elif is_dir:
                subfolders.append(entry.path)
            elif photo:
                yield _scanned(entry.path)
        pending.extend(reversed(subfolders))

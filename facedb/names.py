"""The one rule for a person's name, however it gets in."""

from __future__ import annotations

import unicodedata

from .errors import FaceDBError

MAX_NAME_LENGTH = 200  # characters: a name is printed in every people, who and /v1/who answer
# Characters that turn or break the line a name is printed on: the bidirectional embeddings,
# overrides and isolates (U+202E shows the rest of a terminal line reversed), and the line and
# paragraph separators.
LINE_BREAKING = {chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A))}


def person_name(name: str) -> str:
    """A name as stored, the one rule for every way a name gets in (the command line, REST, XMP
    face tags, imports): trimmed of spaces and invisible format characters at its ends; not
    empty or invisible only; at most MAX_NAME_LENGTH characters; without control characters (a
    terminal would run them: `\r` rewrites the line, ESC sequences recolour or move it; NUL ends C
    strings) or characters that reverse or break the line; and not like a person's id (`5`,
    `#3`), since move and merge take an id or a name. Invisible characters inside a name stay:
    Persian names are written with U+200C, emoji sequences with U+200D."""
    name = name.strip()
    while name and (unicodedata.category(name[0]) == "Cf" or name[0].isspace()):
        name = name[1:]
    while name and (unicodedata.category(name[-1]) == "Cf" or name[-1].isspace()):
        name = name[:-1]
    if not name:
        raise FaceDBError("a name cannot be empty (or only invisible characters)")
    if len(name) > MAX_NAME_LENGTH:
        raise FaceDBError(f"a name can have at most {MAX_NAME_LENGTH} characters, not {len(name):,}")
    bad = sorted({repr(c) for c in name if unicodedata.category(c) == "Cc"})
    if bad:
        raise FaceDBError(f"a name cannot hold control characters ({', '.join(bad)})")
    turning = sorted({f"U+{ord(c):04X}" for c in name if c in LINE_BREAKING or unicodedata.category(c) in ("Zl", "Zp")})
    if turning:
        raise FaceDBError(f"a name cannot hold characters that reverse or break the line ({', '.join(turning)})")
    if name.lstrip("#").isdigit():
        raise FaceDBError(f"a name cannot look like a person's id ({name!r}): move and merge take ids")
    return name

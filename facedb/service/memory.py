"""Memory the process no longer uses, given back to the system.

glibc's malloc keeps what it freed in its arenas (one per thread that allocated), ready for
reuse: after four requests with large photos the service stayed 0.7 GB over its idle size.
malloc_trim hands the free pages back; it takes a few milliseconds."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools


@functools.cache
def _malloc_trim():
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to trim this way
        return None


def give_back() -> None:
    trim = _malloc_trim()
    if trim is not None:
        trim(0)

"""The `facedb` command: parse options, call FaceDB, print text or JSON. Nothing else.

app.py holds the group and what every command shares; each other module one group of
commands, which it adds to the group when imported."""

from . import admin, bench, models, people, photos, proof  # noqa: F401 - each adds its commands
from .app import cli, main

__all__ = ["cli", "main"]

"""The references stay in step with the code: every setting in docs/configuration.md, every
command in docs/cli.md (generated from the commands' own help), the README short."""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path

from facedb.config import Settings

ROOT = Path(__file__).resolve().parent.parent


def test_every_setting_is_in_the_configuration_reference():
    text = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    missing = [
        f"FACEDB_{f.name.upper()}" for f in dataclasses.fields(Settings) if f"FACEDB_{f.name.upper()}" not in text
    ]
    assert missing == [], f"document these in docs/configuration.md: {missing}"


def test_the_cli_reference_is_what_the_commands_say():
    spec = importlib.util.spec_from_file_location("cli_reference", ROOT / "scripts" / "cli_reference.py")
    assert spec and spec.loader
    reference = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(reference)
    written = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    assert written == reference.render(), "docs/cli.md is out of date: run `python scripts/cli_reference.py`"
    for path, _ in reference.commands(reference.cli):
        assert f"## facedb {' '.join(path)}\n" in written


def test_the_readme_stays_short_and_links_the_docs():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.encode()) < 10_000
    for page in sorted((ROOT / "docs").glob("*.md")):
        assert f"docs/{page.name}" in readme, f"the README does not link docs/{page.name}"

"""The house as CONTRIBUTING.md draws it: imports run down the floors, never up, and only
facedb/db/ talks SQL. Read from the source (every import, also those inside functions and
under TYPE_CHECKING), so a move that breaks the map fails here before a reader is misled."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "facedb"

# Lowest first. A module may import from its own floor and those below it.
FLOORS = [
    ["facedb.errors", "facedb.config", "facedb.faces", "facedb.names", "facedb.samples"],
    ["facedb.files"],
    ["facedb.records", "facedb.results", "facedb.annotate"],
    ["facedb.vision"],
    ["facedb.people", "facedb.dedup"],
    ["facedb.db"],
    ["facedb.ingest"],
    ["facedb.proof"],
    ["facedb.api", "facedb"],  # facedb/__init__.py hands FaceDB on
    ["facedb.cli", "facedb.service", "facedb.bench", "facedb.__main__"],
]


def _floor(module: str) -> int:
    best, floor = "", -1
    for number, prefixes in enumerate(FLOORS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > len(best):
                best, floor = prefix, number
    assert floor >= 0, f"{module} is on no floor of tests/test_layout.py (nor of CONTRIBUTING.md's map)"
    return floor


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _imports(module: str, path: Path) -> list[tuple[str, int]]:
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names = [f"{target}.{alias.name}" for alias in node.names]
            found += [(target, node.lineno)] + [(name, node.lineno) for name in names]
        elif isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
    return found


def test_imports_run_down_the_floors():
    modules = _modules()
    upward = []
    for module, path in modules.items():
        here = _floor(module)
        for target, line in _imports(module, path):
            if target not in modules:  # a name from a module, or another package
                continue
            if _floor(target) > here and target != "facedb":
                upward.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {target}")
    assert not upward, "imports that run up the floors:\n" + "\n".join(upward)


def test_only_the_database_layer_talks_sql():
    talkers = []
    for module, path in _modules().items():
        if module == "facedb.db" or module.startswith("facedb.db."):
            continue
        for target, line in _imports(module, path):
            # catching the driver's exceptions is allowed; statements are not
            if (target.startswith("sqlalchemy") or target.startswith("psycopg2")) and not target.startswith(
                "sqlalchemy.exc"
            ):
                talkers.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {target}")
    assert not talkers, "SQL outside facedb/db/:\n" + "\n".join(talkers)

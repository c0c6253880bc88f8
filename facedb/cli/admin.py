"""`facedb status`, `check`, `serve`, `export`, `import`, `apikey` and `db`: the archive kept."""

from __future__ import annotations

import os
import sys

import click

from .app import EXIT_FILES_FAILED, Context, answer, cli, pass_context, print_json, threshold_label


@cli.command()
@click.option("--errors", is_flag=True, help="Also list every failed file with its reason.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
def status(context: Context, errors: bool, as_json: bool) -> None:
    """Counts of photos, faces and identities (and failures)."""
    status = context.facedb.status(with_failures=errors)
    if as_json:
        print_json(status)
        return
    click.echo(f"database:   {status.database}")
    click.echo(f"photos:     {status.photos} ({status.indexed} indexed, {status.failed} failed)")
    click.echo(f"faces:      {status.faces} ({status.assigned_faces} with an identity)")
    click.echo(f"identities: {status.identities}")
    click.echo(f"model:      {status.model}")
    click.echo(f"threshold:  {threshold_label(status.threshold)}")
    for replica in status.replicas:
        state = (
            f"answers, {replica.behind_s or 0:.1f} s behind"
            if replica.answers
            else f"does not answer: {replica.reason}"
        )
        click.echo(f"replica:    {replica.url} ({state})")
    for failure in status.failures or []:
        click.echo(f"failed: {failure.path}: {failure.reason}")


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--root",
    "roots",
    multiple=True,
    type=click.Path(file_okay=False, exists=True),
    help="A folder the API may index and serve photos from (repeat; env FACEDB_SERVE_ROOTS, ':'-separated).",
)
@click.option(
    "--watch",
    is_flag=True,
    default=None,
    help="Keep the roots indexed as photos arrive, change, move or go, as `index --watch` does "
    "[env FACEDB_SERVE_WATCH].",
)
@pass_context
def serve(context: Context, host: str, port: int, roots: tuple[str, ...], watch: bool | None) -> None:
    """Run the REST service (OpenAPI at /openapi.json, docs at /docs, a web page at /)."""
    from ..service.app import serve as run

    facedb = context.facedb
    roots = roots or tuple(r for r in facedb.settings.serve_roots.split(os.pathsep) if r)
    run(facedb, list(roots), host, port, watch=watch)


@cli.command()
@click.option("--fix", is_flag=True, help="Repair what is safe to repair (missing files are only reported).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("-q", "--quiet", is_flag=True, help="No progress lines.")
@pass_context
def check(context: Context, fix: bool, as_json: bool, quiet: bool) -> None:
    """Verify the store: faces and photos agree, embeddings are sound, files exist, indexes are
    valid and of the kind FACEDB_SEARCH_INDEX chooses (--fix builds it; searches go on meanwhile)."""
    result = context.facedb.check(fix=fix, on_progress=None if quiet else (lambda m: click.echo(m, err=True)))
    remaining = result.after if fix and result.after is not None else result.problems
    if as_json:
        print_json(result)
    else:
        if not result.problems:
            click.echo("no problems found")
        for kind, items in result.problems.items():
            click.echo(f"{kind.replace('_', ' ')}: {len(items)}")
            for item in items[:20]:
                click.echo(f"    {item}")
            if len(items) > 20:
                click.echo(f"    ... and {len(items) - 20} more")
        for kind, count in result.repaired.items():
            click.echo(f"repaired {kind.replace('_', ' ')}: {count}")
    if remaining:
        sys.exit(EXIT_FILES_FAILED)


@cli.command("export")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print JSON: the file and the count of each kind of record.")
@pass_context
def export_command(context: Context, file: str, as_json: bool) -> None:
    """Write photos, faces, embeddings, people and decisions to FILE (gzip JSON Lines, versioned)."""
    counts = context.facedb.export(file)
    answer({"file": file, **counts}, as_json, f"exported to {file}: {_counted(counts)}")


@cli.command("import")
@click.argument("file", type=click.Path(dir_okay=False, exists=True))
@click.option("--json", "as_json", is_flag=True, help="Print JSON: the file and the count of each kind added.")
@pass_context
def import_command(context: Context, file: str, as_json: bool) -> None:
    """Add everything in FILE (from `facedb export`) to this database, in one transaction."""
    added = context.facedb.import_(file)
    answer({"file": file, **added}, as_json, f"imported from {file}: {_counted(added)}")


def _counted(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {_plural(kind.replace('_', ' '), n)}" for kind, n in counts.items())


def _plural(noun: str, count: int) -> str:
    if count == 1:
        return noun
    return noun[:-1] + "ies" if noun.endswith("y") and noun[-2:-1] not in "aeiou" else noun + "s"


@cli.group()
def apikey() -> None:
    """API keys for the REST service (stored hashed; shown once)."""


@apikey.command("create")
@click.argument("name")
@click.option("--scope", type=click.Choice(["read", "write", "admin"]), default="read", show_default=True)
@pass_context
def apikey_create(context: Context, name: str, scope: str) -> None:
    """Create a key called NAME; prints the key once."""
    info, key = context.facedb.api_keys.create(name, scope)
    click.echo(f"created key {info.id} ({info.name}, {info.scope}); keep it now, it is not shown again:", err=True)
    click.echo(key)


@apikey.command("list")
@click.option("--json", "as_json", is_flag=True)
@pass_context
def apikey_list(context: Context, as_json: bool) -> None:
    """List keys (never their secrets)."""
    listing = context.facedb.api_keys.list()
    if as_json:
        print_json(listing)
        return
    for k in listing:
        state = f"revoked {k.revoked_at:%Y-%m-%d}" if k.revoked_at else "active"
        used = f"last used {k.last_used_at:%Y-%m-%d %H:%M}" if k.last_used_at else "never used"
        click.echo(f"{k.id:>4}  {k.name:<24} {k.scope:<6} {state}, {used}")


@apikey.command("revoke")
@click.argument("key_id", type=int)
@pass_context
def apikey_revoke(context: Context, key_id: int) -> None:
    """Revoke key KEY_ID."""
    context.facedb.api_keys.revoke(key_id)
    click.echo(f"revoked key {key_id}")


@cli.group()
def db() -> None:
    """Database schema (Alembic migrations)."""


@db.command("upgrade")
@click.argument("revision", default="head")
@pass_context
def db_upgrade(context: Context, revision: str) -> None:
    """Upgrade the schema (a new database is upgraded automatically)."""
    schema = context.facedb.upgrade_schema(revision)
    click.echo(f"{schema.database}: at revision {schema.current}")


@db.command("current")
@pass_context
def db_current(context: Context) -> None:
    """Show the schema revision of the database and the newest one facedb knows."""
    schema = context.facedb.schema_revision()
    click.echo(f"{schema.database}: revision {schema.current} (newest: {schema.newest})")

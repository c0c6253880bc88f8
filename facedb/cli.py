"""The `facedb` command: parse options, call FaceDB, print text or JSON. Nothing else."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .errors import FaceDBError

if TYPE_CHECKING:
    from .results import ThresholdInForce

EXIT_FILES_FAILED = 1
EXIT_ERROR = 2


class Context:
    def __init__(self, **settings: object) -> None:
        self.settings_overrides = settings
        self._facedb = None

    @property
    def facedb(self):
        if self._facedb is None:
            from .api import FaceDB
            from .config import Settings

            self._facedb = FaceDB(Settings.load(**self.settings_overrides))
        return self._facedb

    def close(self) -> None:
        if self._facedb is not None:
            self._facedb.close()


class FaceDBGroup(click.Group):
    """Turns every FaceDBError (and a Ctrl-C) into one line on stderr and an exit status."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except FaceDBError as exc:
            click.echo(f"facedb: error: {exc}", err=True)
            sys.exit(EXIT_ERROR)
        except OSError as exc:  # a file or folder the command was told to write or read
            where = f"{os.fsdecode(exc.filename)}: " if exc.filename is not None else ""
            click.echo(f"facedb: error: {where}{exc.strerror or exc}", err=True)
            sys.exit(EXIT_ERROR)
        except Exception as exc:
            if not _is_connection_error(exc):
                raise
            reason = " ".join(str(getattr(exc, "orig", exc)).split())
            click.echo(f"facedb: error: the database connection failed: {reason}", err=True)
            sys.exit(EXIT_ERROR)
        except KeyboardInterrupt:
            click.echo(
                "\nfacedb: interrupted; what was stored so far is kept. Run the same command again to continue.",
                err=True,
            )
            sys.exit(130)


def _is_connection_error(exc: Exception) -> bool:
    if "sqlalchemy" not in sys.modules:  # keeps `facedb --help` from importing SQLAlchemy
        return False
    from sqlalchemy.exc import DBAPIError, OperationalError

    return isinstance(exc, OperationalError) or (isinstance(exc, DBAPIError) and exc.connection_invalidated)


pass_context = click.make_pass_decorator(Context)


@click.group(cls=FaceDBGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--home", type=click.Path(file_okay=False), help="Data folder (embedded database). Env: FACEDB_HOME.")
@click.option(
    "--database-url", help="Use this PostgreSQL (>= 15, with pgvector) instead of the embedded one. Env: DATABASE_URL."
)
@click.option(
    "--model-cache", type=click.Path(file_okay=False), help="Where model weights are cached. Env: FACEDB_MODEL_CACHE."
)
@click.option(
    "--verbose", "-v", is_flag=True, help="Also show TensorFlow's own start-up and log lines. Env: FACEDB_VERBOSE=1."
)
@click.version_option(package_name="facedb")
@click.pass_context
def cli(ctx: click.Context, home: str | None, database_url: str | None, model_cache: str | None, verbose: bool) -> None:
    """facedb: index the faces in photo archives and ask who is who."""
    if verbose:
        os.environ["FACEDB_VERBOSE"] = "1"  # read where TensorFlow is first imported (tfruntime)
    context = Context(home=home, database_url=database_url, model_cache=model_cache)
    ctx.obj = context
    ctx.call_on_close(context.close)


def _print_json(value: Any) -> None:
    """A result (facedb.results), a list of them, or plain JSON values."""
    if isinstance(value, list):
        value = [item.to_json() if hasattr(item, "to_json") else item for item in value]
    elif hasattr(value, "to_json"):
        value = value.to_json()
    click.echo(json.dumps(value, indent=2, ensure_ascii=False, default=str))


def _answer(result: Any, as_json: bool, line: str) -> None:
    """A command's one result: its JSON, or its line of text."""
    if as_json:
        _print_json(result)
    else:
        click.echo(line)


def _report_failure(path: str, reason: str) -> None:
    click.echo(f"facedb: failed: {path}: {reason}", err=True)


def _report_warning(path: str, message: str) -> None:
    click.echo(f"facedb: warning: {path}: {message}", err=True)


class ProgressPrinter:
    """One updating line on a terminal; a line every few seconds in a log."""

    def __init__(self, quiet: bool = False, every: float = 5.0) -> None:
        self.quiet = quiet
        self.tty = sys.stderr.isatty()
        self.every = every
        self.last = 0.0

    def __call__(self, event) -> None:
        if self.quiet:
            return
        now = time.monotonic()
        final = event.done == event.total
        if not self.tty and not final and now - self.last < self.every:
            return
        self.last = now
        line = self.line(event, f"{event.eta:.0f}s" if event.eta is not None else "?")
        if self.tty:
            click.echo("\r" + line.ljust(78), err=True, nl=final)
        else:
            click.echo(line, err=True)

    def line(self, event, eta: str) -> str:
        return (
            f"{event.done}/{event.total} files  {event.faces} faces  {event.failed} failed  "
            f"{event.rate:.1f} files/s  ETA {eta}"
        )


def _choose_model(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value:
        ctx.ensure_object(Context).settings_overrides["model"] = value


causes_option = click.option(
    "--causes",
    is_flag=True,
    help="For each pair misjudged at the default threshold, why: each photo looked at again with mtcnn's own "
    "detector and FaceNet's LFW crop, one stage at a time.",
)
model_option = click.option(
    "--model",
    callback=_choose_model,
    expose_value=False,
    help="The embedding model (`facedb models` lists them) [default: the database's, for eval the manifest's; "
    "env FACEDB_MODEL].",
)


# ---- commands ---------------------------------------------------------------------------------


@cli.command()
@click.argument("images", nargs=-1, required=True, type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@model_option
@pass_context
def compare(context: Context, images: tuple[str, ...], as_json: bool) -> None:
    """Euclidean distances between all faces in IMAGES (FaceNet's compare)."""
    result = context.facedb.compare(list(images))
    if as_json:
        _print_json(result)
    else:
        for error in result.errors:
            _report_failure(error.photo, error.error)
        for path in result.photos_without_faces:
            click.echo(f"facedb: no face found in {path}", err=True)
        for i, face in enumerate(result.faces):
            click.echo(f"{i}: {face.photo} face {face.face} box {_box(face.box)}")
        if result.faces:
            click.echo("\nDistance matrix")
            click.echo("      " + "".join(f"{i:>8}" for i in range(len(result.faces))))
            for i, row in enumerate(result.distances):
                click.echo(f"{i:>6}" + "".join(f"{d:8.4f}" for d in row))
    if result.errors:
        sys.exit(EXIT_FILES_FAILED)


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--retry-failed", is_flag=True, help="Try again files that failed before, even if unchanged.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("-q", "--quiet", is_flag=True, help="No progress line.")
@click.option(
    "--face-tags/--no-face-tags",
    default=None,
    help="Let the photos' XMP face tags (digiKam, Lightroom, ...) name the faces they overlap "
    "[default: yes; env FACEDB_READ_FACE_TAGS].",
)
@click.option(
    "--ray",
    "ray_address",
    is_flag=False,
    flag_value="local",
    default=None,
    metavar="[ADDRESS]",
    help="Do the model work on a Ray cluster: its head's host:port, `auto` (the cluster this machine is in), "
    "or no value to start Ray here (then put --ray after the paths, or it takes the first as its address). "
    "The photos must be at the same paths on every worker. Needs pip install 'facedb[ray]' "
    "[env FACEDB_RAY_ADDRESS].",
)
@model_option
@pass_context
def index(
    context: Context,
    paths: tuple[str, ...],
    retry_failed: bool,
    as_json: bool,
    quiet: bool,
    face_tags: bool | None,
    ray_address: str | None,
) -> None:
    """Find, embed and store every face in PATHS (files or folders, recursively)."""
    summary = context.facedb.index(
        list(paths),
        retry_failed=retry_failed,
        on_progress=ProgressPrinter(quiet or as_json),
        on_failure=_report_failure,
        on_warning=_report_warning,
        read_face_tags=face_tags,
        ray=ray_address,
    )
    facedb = context.facedb
    if summary.new + summary.reindexed and facedb.model != facedb.default_model:
        click.echo(
            f"facedb: warning: these faces have embeddings of {facedb.model} only; `who`, `cluster` and `dedup` "
            f"without --model use the database's default {facedb.default_model} and do not see them until "
            f"`facedb reembed --model {facedb.default_model}`",
            err=True,
        )
    if summary.interrupted:
        click.echo(
            "facedb: interrupted; every photo stored so far is complete. Run the same command again to "
            "continue where it stopped.",
            err=True,
        )
    if as_json:
        _print_json(summary)
    else:
        rate = summary.files / summary.seconds if summary.seconds > 0 else 0.0
        click.echo(
            f"{summary.files} files in {summary.seconds:.1f}s ({rate:.1f} files/s): {summary.new} new, "
            f"{summary.reindexed} reindexed, {summary.unchanged} unchanged, {summary.copies} copies, "
            f"{summary.moved} moved, {summary.failed} failed; {summary.faces} faces found; "
            + (f"{summary.tagged_faces} named by face tags; " if summary.tagged_faces else "")
            + (f"models loaded in {summary.model_load_seconds:.1f}s, " if summary.model_load_seconds else "")
            + f"{summary.wall_seconds:.1f}s in all"
        )
    if summary.interrupted:
        sys.exit(130)
    if summary.failed:
        sys.exit(EXIT_FILES_FAILED)


@cli.command()
@click.argument("name", required=False)
@click.argument("images", nargs=-1, type=click.Path())
@click.option(
    "--from-folders",
    type=click.Path(file_okay=False, exists=True),
    help="DIR/<person>/<photos>: enrol every person folder under DIR.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@model_option
@pass_context
def enroll(
    context: Context, name: str | None, images: tuple[str, ...], from_folders: str | None, as_json: bool
) -> None:
    """Add the face in each of IMAGES (photos or folders) to the person NAME."""
    if from_folders:
        if name or images:
            raise click.UsageError("give either NAME IMAGES... or --from-folders DIR, not both")
        results = context.facedb.enroll_from_folders(from_folders, on_failure=_report_failure)
    else:
        if not name or not images:
            raise click.UsageError("give NAME and at least one image or folder (or --from-folders DIR)")
        results = [context.facedb.enroll(name, list(images), on_failure=_report_failure)]
    if as_json:
        _print_json(results)
    for result in results:
        for warning in result.warnings:
            click.echo(f"facedb: warning: {warning.path}: {warning.message}", err=True)
        for failure in result.failures:
            if failure.reason == "no face found":
                _report_failure(failure.path, failure.reason)
        if not as_json:
            click.echo(f"{result.name}: {len(result.enrolled)} photo(s) enrolled")
    if any(r.failures for r in results):
        sys.exit(EXIT_FILES_FAILED)


@cli.command()
@click.argument("images", nargs=-1, required=True, type=click.Path())
@click.option("--top-k", default=3, show_default=True, type=click.IntRange(1, 100), help="Identities per face.")
@click.option(
    "--threshold",
    type=click.FloatRange(0, 4),
    help="Largest distance still called a match [default: the one calibrated for the model, else the model's "
    "default: 1.0, or 0.95 for 20170512-110547].",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (one entry per photo, in the order given).")
@click.option(
    "--annotate",
    type=click.Path(file_okay=False),
    help="Also write each photo with faces boxed and named into this folder.",
)
@model_option
@pass_context
def who(
    context: Context, images: tuple[str, ...], top_k: int, threshold: float | None, as_json: bool, annotate: str | None
) -> None:
    """Who is in IMAGES? The nearest known identities of every face."""
    answers = context.facedb.who(list(images), top_k=top_k, threshold=threshold, annotate_into=annotate)
    if as_json:
        _print_json(answers)
    else:
        for answer in answers:
            if answer.error:
                _report_failure(answer.photo, answer.error)
                continue
            click.echo(f"{answer.photo}: {len(answer.faces)} face(s)")
            for i, face in enumerate(answer.faces):
                label = "unknown" if face.unknown else face.identity
                others = ", ".join(f"{c.name or '#' + str(c.identity_id)} {c.distance:.3f}" for c in face.candidates)
                stored = f" (face id {face.face_id})" if face.face_id is not None else ""
                click.echo(
                    f"  face {i}{stored} at {_box(face.box)}: {label}"
                    + (f"   [{others}]" if others else "   [no identities yet]")
                )
            if answer.annotated:
                click.echo(f"  annotated: {answer.annotated}")
    if any(a.error for a in answers):
        sys.exit(EXIT_FILES_FAILED)


@cli.command()
@click.option("--dry-run", is_flag=True, help="Show what would change, change nothing.")
@click.option(
    "--eps", type=click.FloatRange(0.1, 2.0), help="Largest distance between neighbouring faces of one person."
)
@click.option("--min-size", type=click.IntRange(2, 10_000), help="Fewest faces that make a new person.")
@click.option(
    "--incremental/--full",
    default=None,
    help="Only the faces of nobody new since the last run, their neighbours from the search index; "
    "or every face [default: incremental from 100,000 faces on, after a first run].",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress lines.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@model_option
@pass_context
def cluster(
    context: Context,
    dry_run: bool,
    eps: float | None,
    min_size: int | None,
    incremental: bool | None,
    quiet: bool,
    as_json: bool,
) -> None:
    """Group faces that belong to nobody into people (unnamed until you name them)."""
    facedb = context.facedb
    params = facedb.cluster_params()
    if eps is not None or min_size is not None:
        from dataclasses import replace

        params = replace(
            params,
            eps=eps if eps is not None else params.eps,
            min_size=min_size if min_size is not None else params.min_size,
        )
    result = facedb.cluster(
        dry_run=dry_run,
        params=params,
        incremental=incremental,
        on_progress=None if quiet else (lambda message: click.echo(f"cluster: {message}", err=True)),
    )
    if as_json:
        _print_json(result)
        return
    verb = "would" if dry_run else "did"
    click.echo(f"{result.faces_considered} faces considered; {result.unchanged} placements unchanged")
    for person in result.new_people:
        who = f"#{person.person_id}" if person.person_id is not None else "a new person"
        click.echo(f"  {verb} create {who} with {person.faces} faces")
    for joining in result.joining:
        click.echo(f"  {verb} add {joining.faces} face(s) to {_person_label(joining.person_id, joining.name)}")
    if result.leaving:
        click.echo(f"  {verb} release {len(result.leaving)} face(s) from the people they were proposed to")
    for suggestion in result.merge_suggestions:
        a, b = suggestion.people
        na, nb = suggestion.names
        click.echo(
            f"  perhaps the same person: {_person_label(a, na)} and {_person_label(b, nb)} "
            f"(faces {suggestion.faces[0]} and {suggestion.faces[1]} at {suggestion.distance:.3f}); "
            f"`facedb merge {a} {b}` makes them one"
        )


def _person_label(person_id: int, name: str | None) -> str:
    return f"{name} (#{person_id})" if name else f"#{person_id}"


def _box(box: tuple[float, ...]) -> list[float]:
    """A box as the JSON shows it: pixels to one decimal."""
    return [round(v, 1) for v in box]


@cli.group(invoke_without_command=True)
@click.option("--hidden", "include_hidden", is_flag=True, help="Also list the people set aside with `facedb hide`.")
@click.option(
    "--limit", type=click.IntRange(1), help="At most this many (those with the most faces first) [default: all]."
)
@click.option("--offset", default=0, show_default=True, type=click.IntRange(0), help="Skip this many first.")
@click.option("-q", "--quiet", is_flag=True, help="No progress lines.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def people(
    ctx: click.Context, include_hidden: bool, limit: int | None, offset: int, quiet: bool, as_json: bool
) -> None:
    """List people with their face counts and a representative face, those with the most faces first."""
    if ctx.invoked_subcommand is not None:
        return
    listing = ctx.obj.facedb.people(
        include_hidden=include_hidden,
        limit=limit,
        offset=offset,
        on_progress=None if quiet else (lambda message: click.echo(f"people: {message}", err=True)),
    )
    if as_json:
        _print_json(listing)
        return
    if not listing:
        click.echo("no people yet: `facedb enroll` someone, or `facedb cluster`")
    for p in listing:
        click.echo(
            f"{_person_label(p.id, p.name) + (' [hidden]' if p.hidden else ''):<32} {p.distinct_faces:>5} faces"
            + (f" (+{p.faces - p.distinct_faces} copies)" if p.faces > p.distinct_faces else "")
            + f" in {p.photos} photos ({p.enrolled} enrolled, {p.confirmed} confirmed, {p.proposed} proposed, "
            f"{p.clustered} clustered)  e.g. face {p.representative_face_id} in {p.representative_photo}"
        )


@people.command("show")
@click.argument("person")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option(
    "--sheet", type=click.Path(dir_okay=False), help="Also write a contact sheet of the faces (ids under each) here."
)
@pass_context
def people_show(context: Context, person: str, as_json: bool, sheet: str | None) -> None:
    """Every face of PERSON (an id or a name), nearest their centre first."""
    shown = context.facedb.person(person)
    if sheet:
        written = context.facedb.contact_sheet(person, sheet)
        if not as_json:
            click.echo(f"contact sheet: {written}")
    if as_json:
        _print_json(shown)
        return
    click.echo(f"{_person_label(shown.id, shown.name)}{' [hidden]' if shown.hidden else ''}: {len(shown.faces)} faces")
    for face in shown.faces:
        click.echo(
            f"  face {face.face_id:<7} {face.source:<10} {face.distance_to_centre:.3f}  {face.photo} {_box(face.box)}"
        )


@cli.command()
@click.argument("person")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
def name(context: Context, person: str, name: str, as_json: bool) -> None:
    """Give PERSON (an id) a NAME; their clustered faces count as confirmed."""
    result = context.facedb.name(person, name)
    _answer(result, as_json, f"#{result.id} is now {result.name}")


@cli.command()
@click.argument("keep")
@click.argument("other")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
def merge(context: Context, keep: str, other: str, as_json: bool) -> None:
    """Make two people one: OTHER's faces go to KEEP."""
    result = context.facedb.merge(keep, other)
    _answer(result, as_json, f"merged #{result.merged} into #{result.id} ({result.faces_moved} faces)")


@cli.command()
@click.argument("face_id", type=int)
@click.argument("person")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
def move(context: Context, face_id: int, person: str, as_json: bool) -> None:
    """Put face FACE_ID in PERSON (an id, or a name: a new name creates them)."""
    result = context.facedb.move(face_id, person)
    _answer(result, as_json, f"face {result.face_id} is now in #{result.person_id} (confirmed)")


@cli.command()
@click.argument("face_id", type=int)
@click.argument("person")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
def reject(context: Context, face_id: int, person: str, as_json: bool) -> None:
    """Say face FACE_ID is not PERSON; clustering will not put it back."""
    result = context.facedb.reject(face_id, person)
    _answer(result, as_json, f"face {result.face_id} is not #{result.rejected_from}; remembered")


@cli.command()
@click.argument("person")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
def confirm(context: Context, person: str, as_json: bool) -> None:
    """Accept the faces proposed for (or clustered into) PERSON."""
    result = context.facedb.confirm(person)
    _answer(result, as_json, f"#{result.id}: {result.confirmed} face(s) confirmed")


@cli.command()
@click.argument("person")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
def hide(context: Context, person: str, as_json: bool) -> None:
    """Set PERSON aside (a stranger in the background): they keep their faces, so clustering
    does not make them again, and `people` leaves them out until `facedb unhide`."""
    result = context.facedb.hide(person)
    _answer(result, as_json, f"{_person_label(result.id, result.name)} is hidden")


@cli.command()
@click.argument("person")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
def unhide(context: Context, person: str, as_json: bool) -> None:
    """Show PERSON in the people lists again."""
    result = context.facedb.hide(person, hidden=False)
    _answer(result, as_json, f"{_person_label(result.id, result.name)} is shown again")


@cli.command()
@click.option("--person", help="The faces of this person (an id or a name).")
@click.option("--unassigned", is_flag=True, help="The faces of nobody yet.")
@click.option("--photo", type=click.Path(), help="The faces of this indexed photo.")
@click.option("--limit", type=click.IntRange(1, 100_000), default=100, show_default=True)
@click.option("--offset", type=click.IntRange(0), default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
def faces(
    context: Context, person: str | None, unassigned: bool, photo: str | None, limit: int, offset: int, as_json: bool
) -> None:
    """Stored faces with their ids (for `move`, `reject`), photos, boxes and people."""
    listing = context.facedb.faces(person=person, unassigned=unassigned, photo=photo, limit=limit, offset=offset)
    if as_json:
        _print_json(listing)
        return
    for face in listing.faces:
        owner = _person_label(face.person_id, face.name) + f" ({face.source})" if face.person_id else "nobody"
        click.echo(f"face {face.face_id:<7} {owner:<32} {face.photo} {_box(face.box)}")
    shown_to = listing.offset + len(listing.faces)
    more = f"; --offset {shown_to} for more" if shown_to < listing.total else ""
    click.echo(f"{len(listing.faces)} of {listing.total} face(s){more}")


@cli.command()
@click.argument("person")
@click.option("--eps", type=click.FloatRange(0.1, 2.0), help="Tighter neighbour distance [default: 0.8 x cluster eps].")
@click.option("--apply", is_flag=True, help="Make every part but the largest a new person.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
def split(context: Context, person: str, eps: float | None, apply: bool, as_json: bool) -> None:
    """Re-cluster PERSON's faces more tightly and offer the parts."""
    result = context.facedb.split(person, eps=eps, apply=apply)
    if as_json:
        _print_json(result)
        return
    click.echo(f"{_person_label(result.id, result.name)} at eps {result.eps}: {result.verdict}")
    if len(result.parts) == 1:
        return
    for i, part in enumerate(result.parts):
        made = f" -> new person #{part.new_person_id}" if part.new_person_id is not None else ""
        click.echo(f"  part {i + 1}: {part.faces} faces {part.face_ids[:12]}{'...' if part.faces > 12 else ''}{made}")
    if not apply and len(result.parts) > 1:
        click.echo("run again with --apply to make the smaller parts people of their own")


@cli.command()
@click.argument("person")
@click.option("--photos", is_flag=True, help="Also remove the photos the person appears in from the index.")
@click.option("--yes", is_flag=True, help="Do not ask.")
@pass_context
def forget(context: Context, person: str, photos: bool, yes: bool) -> None:
    """Remove PERSON and every face embedding, thumbnail and assignment derived from them."""
    facedb = context.facedb
    identity_id, person_name = facedb.resolve_person(person)
    label = _person_label(identity_id, person_name)
    if not yes:
        if not sys.stdin.isatty():
            raise FaceDBError(f"forget {label} deletes their faces for good; it cannot ask here: add --yes")
        click.confirm(
            f"Forget {label} and all their faces, for good (indexing the photos again will not bring them back)?",
            abort=True,
        )
    result = facedb.forget(identity_id, photos=photos)
    click.echo(
        f"forgot {_person_label(result.id, result.name)}: {result.faces} faces"
        + (f", {result.photos} photos" if photos else "")
        + ", for good"
    )


@cli.command()
@click.argument("paths", nargs=-1, type=click.Path())
@click.option(
    "--json",
    "json_file",
    type=click.Path(dir_okay=False, allow_dash=True),
    help="Write the JSON report here (- for stdout).",
)
@click.option(
    "--csv", "csv_file", type=click.Path(dir_okay=False, allow_dash=True), help="Write a CSV (a row per group member)."
)
@click.option("--html", "html_file", type=click.Path(dir_okay=False), help="Write a self-contained HTML report.")
@click.option("--tier", "tiers", type=click.IntRange(1, 5), multiple=True, help="Only these tiers (repeat the option).")
@click.option("--same-picture-bits", type=click.IntRange(0, 32), help="Perceptual-hash bits a copy may differ by [4].")
@click.option("--burst-seconds", type=click.FloatRange(0), help="Capture times this close make a burst [10].")
@click.option("--same-face-distance", type=click.FloatRange(0, 2), help="Faces this close are the same shot [0.35].")
@model_option
@pass_context
def dedup(
    context: Context,
    paths: tuple[str, ...],
    json_file: str | None,
    csv_file: str | None,
    html_file: str | None,
    tiers: tuple[int, ...],
    same_picture_bits: int | None,
    burst_seconds: float | None,
    same_face_distance: float | None,
) -> None:
    """Report duplicate photos, near duplicates, the same face twice and people filed twice.

    Only reports: nothing is ever deleted. PATHS limit the report to indexed photos under them."""
    from dataclasses import replace

    from .dedup.tiers import DedupThresholds

    thresholds = DedupThresholds()
    changes: dict[str, Any] = {
        "same_picture_bits": same_picture_bits,
        "burst_seconds": burst_seconds,
        "same_face_distance": same_face_distance,
    }
    thresholds = replace(thresholds, **{k: v for k, v in changes.items() if v is not None})
    facedb = context.facedb
    quiet = json_file == "-" or csv_file == "-"
    report = facedb.dedup(
        list(paths),
        thresholds=thresholds,
        tiers=tiers or (1, 2, 3, 4, 5),
        on_progress=None if quiet else (lambda message: click.echo(f"dedup: {message}", err=True)),
    )
    from .dedup import report_files as files

    for target, writer in ((json_file, files.write_json), (csv_file, files.write_csv)):
        if target == "-":
            writer(report, sys.stdout)
        elif target:
            with open(target, "w", encoding="utf-8", newline="") as out:
                writer(report, out)
    if html_file:
        face_ids = [f["face_id"] for g in report["groups"] for f in g.get("faces", [])]
        files.write_html(report, Path(html_file), facedb.dedup_face_thumbnails(face_ids))
    if not quiet:
        for kind, count in report["counts"].items():
            click.echo(f"{kind.replace('_', ' '):>15}: {count} group(s)")
        for group in report["groups"]:
            members = group.get("photos") or [f["photo"] for f in group.get("faces", [])]
            names = [p["path"] for p in members] or [p["name"] or f"#{p['id']}" for p in group["people"]]
            click.echo(f"[{group['id']}] {group['kind']}: keep {group['keep']} ({group['reason']})")
            for name in names[:6]:
                click.echo(f"    {name}")
            if len(names) > 6:
                click.echo(f"    ... and {len(names) - 6} more")


@cli.command()
@click.option("--errors", is_flag=True, help="Also list every failed file with its reason.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
def status(context: Context, errors: bool, as_json: bool) -> None:
    """Counts of photos, faces and identities (and failures)."""
    status = context.facedb.status(with_failures=errors)
    if as_json:
        _print_json(status)
        return
    click.echo(f"database:   {status.database}")
    click.echo(f"photos:     {status.photos} ({status.indexed} indexed, {status.failed} failed)")
    click.echo(f"faces:      {status.faces} ({status.assigned_faces} with an identity)")
    click.echo(f"identities: {status.identities}")
    click.echo(f"model:      {status.model}")
    click.echo(f"threshold:  {_threshold_label(status.threshold)}")
    for replica in status.replicas:
        state = (
            f"answers, {replica.behind_s or 0:.1f} s behind"
            if replica.answers
            else f"does not answer: {replica.reason}"
        )
        click.echo(f"replica:    {replica.url} ({state})")
    for failure in status.failures or []:
        click.echo(f"failed: {failure.path}: {failure.reason}")


def _threshold_label(threshold: ThresholdInForce) -> str:
    value = round(threshold.value, 4)
    if threshold.source == "setting":
        return f"{value} (set by FACEDB_THRESHOLD)"
    if threshold.source == "default" or threshold.calibration is None:
        note = f"; {threshold.note}" if threshold.note else ""
        return f"{value} (the default; `facedb calibrate` chooses one from your people{note})"
    c = threshold.calibration
    e = c.evidence
    if e.get("method") != "open-set identification":  # an older calibration on pairs (never looser than the default)
        return f"{value} (calibrated {c.created_at} on pairs, for FAR {c.far_target:g})"
    low, high = e["fpir_ci"]
    return (
        f"{value} ({e['decision']} {c.created_at} for FPIR {c.far_target:g}: {e['false_identifications']} of "
        f"{e['probes']} searches of {e['identities']} people named someone else, 95% CI {low:.4f}-{high:.4f})"
    )


def _share(count: int, total: int, ci: tuple[float, float] | None) -> str:
    if not total or ci is None:
        return f"{count} of {total}"
    return f"{count} of {total} ({count / total:.4f}, 95% CI {ci[0]:.4f}-{ci[1]:.4f})"


@cli.command()
@click.option(
    "--far",
    default=1e-3,
    show_default=True,
    type=click.FloatRange(1e-6, 0.5, max_open=True),
    help="The false positive identification rate to allow: the share of searches by people who are not "
    "enrolled that may name somebody.",
)
@click.option("--dry-run", is_flag=True, help="Measure and show the threshold, store nothing.")
@click.option(
    "--with-unlabelled",
    is_flag=True,
    help="Count faces of nobody as strangers too, each unnamed cluster as one more person (only where they "
    "are not your people, unnamed).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@model_option
@pass_context
def calibrate(context: Context, far: float, dry_run: bool, with_unlabelled: bool, as_json: bool) -> None:
    """Choose the who-is-this threshold from your own people: every face you enrolled or
    confirmed is searched against everyone else (as a stranger's search would be), and so are
    faces you rejected; the threshold names at most --far of those searches. With too few
    people to know what strangers look like, the model's default stays (or only tightens)."""
    result = context.facedb.calibrate(far=far, dry_run=dry_run, with_unlabelled=with_unlabelled)
    if as_json:
        _print_json(result)
    else:
        nobody = (
            f"{result.probes_of_nobody} faces of nobody ({result.unnamed_people} unnamed people and "
            f"{result.unassigned_faces} unassigned faces; {result.same_shot_left_out} same-shot faces left out)"
            if result.unnamed_people is not None
            else "faces of nobody not counted: --with-unlabelled"
        )
        click.echo(
            f"{result.probes} searches by people who are not there: {result.probes_of_people} faces of "
            f"{result.people} named people against everyone else, {result.probes_rejected} rejected faces, {nobody}"
        )
        if result.measured_threshold is not None:
            click.echo(f"the searches alone put the threshold for FPIR {far:g} at {result.measured_threshold:.4f}")
        fpir = _share(result.false_identifications, result.probes, result.fpir_ci)
        found = _share(round((result.recall or 0) * result.genuine_probes), result.genuine_probes, result.recall_ci)
        click.echo(
            f"threshold {result.threshold:.4f} ({result.decision}): strangers named {fpir}; people found {found}"
        )
        if result.threshold != result.default_threshold:
            at_default = _share(result.false_identifications_at_default, result.probes, result.fpir_at_default_ci)
            click.echo(f"at the default {result.default_threshold:g}: strangers named {at_default}")
        for closest in result.closest_impostors[:1]:
            click.echo(
                f"closest: face {closest.face_id} ({closest.kind}) at {closest.distance:.4f} from face "
                f"{closest.nearest_face_id} of {closest.nearest_name or f'person #{closest.nearest_identity_id}'}"
            )
        if result.reason:
            click.echo(result.reason)
        if result.stored:
            click.echo("stored: who and dedup's same-person tier use it from now on, clustering proposals 0.1 under it")
        click.echo(f"threshold in force: {_threshold_label(result.in_force)}")
    if result.decision == "kept the default":
        sys.exit(EXIT_FILES_FAILED)


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
@pass_context
def serve(context: Context, host: str, port: int, roots: tuple[str, ...]) -> None:
    """Run the REST service (OpenAPI at /openapi.json, docs at /docs, a web page at /)."""
    from .service.app import serve as run

    facedb = context.facedb
    roots = roots or tuple(r for r in facedb.settings.serve_roots.split(os.pathsep) if r)
    run(facedb, list(roots), host, port)


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
        _print_json(result)
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


@cli.group()
def tags() -> None:
    """Face tags shared with digiKam, Lightroom, immich and others (XMP regions)."""


@tags.command("write")
@click.argument("paths", nargs=-1, type=click.Path())
@click.option("--sidecar/--embedded", default=True, help="Into photo.ext.xmp sidecars [default], or into the photos.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
def tags_write(context: Context, paths: tuple[str, ...], sidecar: bool, as_json: bool) -> None:
    """Write the names of named faces in PATHS (all indexed photos if none) as XMP face regions
    (MWG and Microsoft), merged with what the sidecar holds; writing twice changes nothing."""
    result = context.facedb.write_face_tags(list(paths), embedded=not sidecar)
    for failure in result.failures:
        _report_failure(failure.path, failure.reason)
    _answer(
        result,
        as_json,
        f"{result.faces} named faces in {result.photos} photos: {len(result.written)} files written, "
        f"{result.unchanged} already so, {len(result.failures)} failed",
    )
    if result.failures:
        sys.exit(EXIT_FILES_FAILED)


@cli.command("export")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print JSON: the file and the count of each kind of record.")
@pass_context
def export_command(context: Context, file: str, as_json: bool) -> None:
    """Write photos, faces, embeddings, people and decisions to FILE (gzip JSON Lines, versioned)."""
    counts = context.facedb.export(file)
    _answer({"file": file, **counts}, as_json, f"exported to {file}: {_counted(counts)}")


@cli.command("import")
@click.argument("file", type=click.Path(dir_okay=False, exists=True))
@click.option("--json", "as_json", is_flag=True, help="Print JSON: the file and the count of each kind added.")
@pass_context
def import_command(context: Context, file: str, as_json: bool) -> None:
    """Add everything in FILE (from `facedb export`) to this database, in one transaction."""
    added = context.facedb.import_(file)
    _answer({"file": file, **added}, as_json, f"imported from {file}: {_counted(added)}")


def _counted(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {_plural(kind.replace('_', ' '), n)}" for kind, n in counts.items())


def _plural(noun: str, count: int) -> str:
    if count == 1:
        return noun
    return noun[:-1] + "ies" if noun.endswith("y") and noun[-2:-1] not in "aeiou" else noun + "s"


@cli.group("eval")
def eval_group() -> None:
    """Measure facedb on your own labelled photos (nothing is stored, your database is not opened)."""


def _print_evaluation(result: dict) -> None:
    v = result["verification"]
    click.echo(f"model: {result['model']}")
    if "people" in result:
        click.echo(f"{result['photos']} photos of {result['people']} people, a face in {result['faces']}")
    click.echo(
        f"verification over {v['pairs']} pairs ({v['genuine_pairs']} same person, {v['impostor_pairs']} "
        f"different): accuracy {v['accuracy']:.4f} +- {v['accuracy_std']:.4f} (10 folds), AUC {v['auc']:.4f}, "
        f"VAL {v['val_at_far_0.001']:.4f} at FAR 0.001, EER {v['eer']:.4f}, best threshold {v['best_threshold']:.2f}"
        + (
            f"; accuracy {v['accuracy_at_default']:.4f} at the default threshold {v['default_threshold']:g}"
            if "accuracy_at_default" in v
            else ""
        )
    )
    if result.get("identification"):
        i = result["identification"]
        click.echo(
            f"identification (leave one out, {i['queries']} queries): rank-1 {i['rank1']:.4f}, rank-5 {i['rank5']:.4f}"
        )
    if result.get("calibration"):
        c = result["calibration"]
        click.echo(
            f"calibrate with these people enrolled, for FPIR {c['far_target']:g}: {c['threshold']:.4f} "
            f"({c['decision']}; the searches alone: "
            + ("-" if c["measured_threshold"] is None else f"{c['measured_threshold']:.4f}")
            + ")"
        )
    if result.get("open_set"):
        o = result["open_set"]
        for key in ("at_default", "at_calibrated"):
            at = o[key]
            click.echo(
                f"strangers named at threshold {at['threshold']:.4f} ({key[3:]}): {at['named']} of "
                f"{o['strangers']}" + (f" ({at['rate']:.2%})" if at["rate"] is not None else "")
            )
    _print_misjudged(result["misjudged"])
    if result.get("pairs_skipped"):
        click.echo(f"pairs skipped (a photo without a face, or missing): {result['pairs_skipped']}")
    for path in result["no_face"] + (result.get("open_set") or {}).get("no_face", []):
        click.echo(f"facedb: no face found in {path}", err=True)
    for path in result.get("missing", []):
        click.echo(f"facedb: failed: {path}: no such file", err=True)
    for failure in result.get("failed", []) + (result.get("open_set") or {}).get("failed", []):
        _report_failure(failure["path"], failure["reason"])
    if result.get("plot"):
        click.echo(f"plot: {result['plot']}")


MISJUDGED_SHOWN = 20


def _print_misjudged(misjudged: dict) -> None:
    click.echo(
        f"misjudged at the default threshold {misjudged['threshold']:g}: {misjudged['pairs']} pairs "
        f"({misjudged['same_rejected']} same person rejected, {misjudged['different_accepted']} different accepted)"
    )
    if misjudged["by_cause"]:
        click.echo("  by cause: " + ", ".join(f"{c} {n}" for c, n in misjudged["by_cause"].items() if n))
    for e in misjudged["listed"][:MISJUDGED_SHOWN]:
        click.echo(
            f"  {'same person' if e['same'] else 'different'} {e['distance']:.4f}: {e['left']} ~ {e['right']}"
            + (f"  [{e['cause']}; faces {e['face_px'][0]} and {e['face_px'][1]} px]" if "cause" in e else "")
        )
    if misjudged["pairs"] > MISJUDGED_SHOWN:
        click.echo(f"  ... and {misjudged['pairs'] - MISJUDGED_SHOWN} more (--json lists them)")


def _print_models_side_by_side(results: list[dict]) -> None:
    """Several models' evaluations of the same photos, a column each."""
    rows = [
        ("faces", lambda r: str(r["faces"])),
        (
            "accuracy (10 folds)",
            lambda r: f"{r['verification']['accuracy']:.4f} +- {r['verification']['accuracy_std']:.4f}",
        ),
        ("AUC", lambda r: f"{r['verification']['auc']:.4f}"),
        ("VAL at FAR 0.001", lambda r: f"{r['verification']['val_at_far_0.001']:.4f}"),
        ("EER", lambda r: f"{r['verification']['eer']:.4f}"),
        ("best threshold", lambda r: f"{r['verification']['best_threshold']:.2f}"),
        ("accuracy at the default threshold", lambda r: f"{r['verification']['accuracy_at_default']:.4f}"),
        ("rank-1", lambda r: f"{r['identification']['rank1']:.4f}" if r.get("identification") else "-"),
        ("rank-5", lambda r: f"{r['identification']['rank5']:.4f}" if r.get("identification") else "-"),
        (
            "threshold calibrate would choose",
            lambda r: f"{r['calibration']['threshold']:.4f}" if r.get("calibration") else "-",
        ),
        (
            "strangers named (default)",
            lambda r: (
                f"{r['open_set']['at_default']['named']}/{r['open_set']['strangers']}" if r.get("open_set") else "-"
            ),
        ),
        (
            "strangers named (calibrated)",
            lambda r: (
                f"{r['open_set']['at_calibrated']['named']}/{r['open_set']['strangers']}" if r.get("open_set") else "-"
            ),
        ),
        ("misjudged at the default threshold", lambda r: str(r["misjudged"]["pairs"])),
        ("seconds per face (embed)", lambda r: f"{r['seconds_per_face']:.4f}"),
    ]
    first = results[0]
    click.echo(f"{first['photos']} photos of {first['people']} people, the same pairs for every model")
    width = max(len(label) for label, _ in rows) + 2
    names = [r["model"].split()[-1] for r in results]  # the versions tell them apart
    columns = [max(len(n), 16) + 2 for n in names]
    click.echo("".ljust(width) + "".join(n.rjust(c) for n, c in zip(names, columns)))
    for label, cell in rows:
        click.echo(label.ljust(width) + "".join(cell(r).rjust(c) for r, c in zip(results, columns)))


def _report_evaluation(evaluate, as_json: bool) -> None:
    """Runs `evaluate(on_progress)`, prints its result as text or JSON, exit 1 when files failed."""
    result = evaluate(None if as_json else lambda message: click.echo(f"eval: {message}", err=True))
    if as_json:
        _print_json(result)
    elif "models" in result:
        _print_models_side_by_side(result["models"])
        for path in result["models"][0]["no_face"]:
            click.echo(f"facedb: no face found in {path}", err=True)
        for failure in result["models"][0]["failed"]:
            _report_failure(failure["path"], failure["reason"])
        if result.get("plot"):
            click.echo(f"plot: {result['plot']}")
    else:
        _print_evaluation(result)
    first = result["models"][0] if "models" in result else result
    if first.get("failed") or first.get("missing") or (first.get("open_set") or {}).get("failed"):
        sys.exit(EXIT_FILES_FAILED)


@eval_group.command("folders")
@click.argument("root", type=click.Path(file_okay=False, exists=True))
@click.option(
    "--strangers", type=click.Path(exists=True), help="Photos of people not in ROOT: how many would be named."
)
@click.option(
    "--far",
    default=1e-3,
    show_default=True,
    type=click.FloatRange(1e-6, 0.5, min_open=False),
    help="False-accept rate of the calibrated threshold.",
)
@click.option(
    "--plot",
    type=click.Path(dir_okay=False),
    help="Write the ROC curve and distance histograms (PNG); with several models, their ROC curves in one.",
)
@click.option(
    "--model",
    "models",
    help="The model, or several separated by commas to compare them side by side on the same photos "
    "(`facedb models` lists them) [default: FACEDB_MODEL, else the manifest's: eval opens no database].",
)
@causes_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
def eval_folders(
    context: Context,
    root: str,
    strangers: str | None,
    far: float,
    plot: str | None,
    models: str | None,
    causes: bool,
    as_json: bool,
) -> None:
    """Verification (LFW's 10-fold protocol) and identification on ROOT/<person>/<photos>."""
    chosen = [m.strip() for m in models.split(",") if m.strip()] if models else []
    if len(chosen) == 1:
        context.settings_overrides["model"] = chosen[0]
        chosen = []
    _report_evaluation(
        lambda progress: context.facedb.eval_folders(
            root, strangers, far=far, plot=plot, on_progress=progress, models=chosen, causes=causes
        ),
        as_json,
    )


@eval_group.command("lfw")
@click.option(
    "--pairs",
    "pairs_file",
    required=True,
    type=click.Path(dir_okay=False, exists=True),
    help="LFW's pairs.txt (or any file in its format).",
)
@click.option(
    "--images",
    required=True,
    type=click.Path(file_okay=False, exists=True),
    help="The folder of <name>/<name>_NNNN.jpg photos.",
)
@click.option("--plot", type=click.Path(dir_okay=False), help="Write the ROC curve and distance histograms (PNG).")
@causes_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@model_option
@pass_context
def eval_lfw(context: Context, pairs_file: str, images: str, plot: str | None, causes: bool, as_json: bool) -> None:
    """LFW's verification protocol with its pairs file: accuracy as the papers report it."""
    _report_evaluation(
        lambda progress: context.facedb.eval_lfw(pairs_file, images, plot=plot, on_progress=progress, causes=causes),
        as_json,
    )


@cli.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def models(ctx: click.Context, as_json: bool) -> None:
    """The embedding models: dimension, training set, published LFW accuracy, preprocessing,
    weights, which is the database's default, and how many faces carry an embedding of each."""
    if ctx.invoked_subcommand is not None:
        return
    listed = ctx.ensure_object(Context).facedb.models()
    if as_json:
        _print_json(listed)
        return
    for m in listed:
        click.echo(
            f"{m.model}{'  (default)' if m.default else ''}\n"
            f"    {m.name}, {m.dimension}-d, trained on {m.trained_on}, LFW {m.published_lfw_accuracy:.4f} "
            f"(published)\n"
            f"    preprocessing {m.preprocessing}\n"
            f"    sha256 {m.sha256}, weights {'present' if m.weights_present else 'fetched on first use'}\n"
            f"    faces with its embedding: {m.faces}" + (f" ({m.faces_without} without)" if m.faces_without else "")
        )


@models.command("default")
@click.argument("model")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
def models_default(context: Context, model: str, as_json: bool) -> None:
    """Make MODEL the database's default (refused while faces lack its embedding)."""
    result = context.facedb.set_default_model(model)
    _answer(result, as_json, f"default model: {result.model} (was {result.previous or 'none'})")


class ReembedProgress(ProgressPrinter):
    def line(self, event, eta: str) -> str:
        rate = event.faces / event.elapsed if event.elapsed > 0 else 0.0
        return f"{event.done}/{event.total} faces  {event.failed} photos failed  {rate:.1f} faces/s  ETA {eta}"


@cli.command()
@click.option("--model", "model", required=True, help="The model to embed every stored face with (`facedb models`).")
@click.option("--batch", default=64, show_default=True, type=click.IntRange(1, 100_000), help="Faces a transaction.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("-q", "--quiet", is_flag=True, help="No progress line.")
@pass_context
def reembed(context: Context, model: str, batch: int, as_json: bool, quiet: bool) -> None:
    """Embed every stored face with MODEL from its original photo, skipping faces that have one;
    people and decisions stay with the faces. Resumable: run it again after an interruption."""
    summary = context.facedb.reembed(
        model, batch=batch, on_progress=ReembedProgress(quiet or as_json), on_failure=_report_failure
    )
    if as_json:
        _print_json(summary)
    else:
        click.echo(
            f"{summary.model}: {summary.faces} faces embedded from {summary.photos} photos in {summary.seconds:.1f}s "
            f"({summary.faces_per_second:.1f} faces/s); {summary.already} had one already, "
            f"{len(summary.failures)} photos failed, {summary.left} faces still without one"
        )
    if summary.interrupted:
        click.echo("facedb: interrupted; run the same command again to continue.", err=True)
        sys.exit(130)
    if summary.failures:
        sys.exit(EXIT_FILES_FAILED)


@cli.group()
def bench() -> None:
    """Benchmarks that print figures (never part of the tests)."""


@bench.command("ingest")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--limit", type=click.IntRange(1), help="Only the first N photos (by path).")
@click.option("--detect-max-side", type=click.IntRange(64), help="Override FACEDB_DETECT_MAX_SIDE for this run.")
@click.option("--json", "json_file", type=click.Path(dir_okay=False), help="Also write the figures here.")
@click.option(
    "--ray",
    "ray_address",
    is_flag=False,
    flag_value="local",
    default=None,
    metavar="[ADDRESS]",
    help="Instead: a local run against one on this Ray cluster (no value: start Ray here), the workers' stage "
    "times and the database's write rate.",
)
@model_option
@pass_context
def bench_ingest(
    context: Context,
    paths: tuple[str, ...],
    limit: int | None,
    detect_max_side: int | None,
    json_file: str | None,
    ray_address: str | None,
) -> None:
    """Indexing speed on the photos in PATHS against the tutorial's way and the stage limits,
    in a temporary embedded database (your database is not touched)."""
    from dataclasses import replace

    from .bench import ingest
    from .config import Settings

    settings = Settings.load(**context.settings_overrides)
    if detect_max_side:
        settings = replace(settings, detect_max_side=detect_max_side)
    say = lambda m: click.echo(m, err=True)  # noqa: E731
    if ray_address:
        from .bench import distributed
        from .errors import FaceDBError

        files = ingest.photo_files(list(paths), limit)
        if not files:
            raise FaceDBError("no photos to benchmark in " + ", ".join(paths))
        result = distributed.run(files, settings, ray_address, say=say)
        click.echo(distributed.table(result))
    else:
        result = ingest.run(list(paths), settings, limit=limit, say=say)
        click.echo(ingest.table(result))
    if json_file:
        Path(json_file).write_text(json.dumps(result, indent=2))
    click.echo(json.dumps(result))


@bench.command("detect")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@click.option(
    "--no-faces",
    "no_faces",
    multiple=True,
    type=click.Path(exists=True),
    help="Photos (files or folders) with no face in them: whatever is found there is a false face.",
)
@click.option("--limit", type=click.IntRange(1), help="Only the first N photos (by path).")
@click.option("--detect-max-side", type=click.IntRange(64), help="Override FACEDB_DETECT_MAX_SIDE for this run.")
@click.option("--min-face-score", type=click.FloatRange(0, 1), help="Override FACEDB_MIN_FACE_SCORE for this run.")
@click.option("--json", "json_file", type=click.Path(dir_okay=False), help="Also write the figures here.")
@pass_context
def bench_detect(
    context: Context,
    paths: tuple[str, ...],
    no_faces: tuple[str, ...],
    limit: int | None,
    detect_max_side: int | None,
    min_face_score: float | None,
    json_file: str | None,
) -> None:
    """Faces facedb's detector finds in PATHS against mtcnn's own detect_faces at full resolution:
    faces found and missed, photos with no face, false faces, seconds per photo."""
    from .bench import detect
    from .config import Settings

    settings = Settings.load(
        **context.settings_overrides, detect_max_side=detect_max_side, min_face_score=min_face_score
    )
    result = detect.run(
        list(paths), settings, no_faces=list(no_faces), limit=limit, say=lambda m: click.echo(m, err=True)
    )
    click.echo(detect.table(result))
    if json_file:
        Path(json_file).write_text(json.dumps(result, indent=2))
    click.echo(json.dumps(result))


@bench.command("search")
@click.option("--faces", default=100_000, show_default=True, type=click.IntRange(1000, 10_000_000))
@click.option("--per-person", default=10, show_default=True, type=click.IntRange(2, 1000))
@click.option("--queries", default=200, show_default=True, type=click.IntRange(10, 100_000))
@click.option("--ef-search", "ef_values", default="40,100", show_default=True, help="Comma-separated values to try.")
@click.option(
    "--index",
    "kinds",
    default="halfvec,binary",
    show_default=True,
    help="Comma-separated search index kinds to build and measure, in turn.",
)
@click.option(
    "--clients", default="1,4", show_default=True, help="Comma-separated numbers of clients searching at once."
)
@click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for the temporary database (ten million faces take about 40 GB) [default: the system's temporary folder].",
)
@click.option("--json", "json_file", type=click.Path(dir_okay=False), help="Also write the figures here.")
def bench_search(
    faces: int,
    per_person: int,
    queries: int,
    ef_values: str,
    kinds: str,
    clients: str,
    home: Path | None,
    json_file: str | None,
) -> None:
    """Who-is-this search on synthetic clustered embeddings, in a temporary embedded database:
    load, then for each index kind its build, bytes a face, memory, latency and recall."""
    from .bench import search
    from .config import SEARCH_INDEX_KINDS

    ef_list, client_list = _numbers(ef_values, "--ef-search"), _numbers(clients, "--clients")
    kind_list = [k.strip() for k in kinds.split(",") if k.strip()]
    if not kind_list or any(k not in SEARCH_INDEX_KINDS for k in kind_list):
        raise click.BadParameter(
            f"{kinds!r}: each must be one of {', '.join(SEARCH_INDEX_KINDS)}", param_hint="--index"
        )
    report = search.run(
        faces,
        per_person,
        queries,
        ef_list,
        kind_list,
        client_list,
        progress=lambda m: click.echo(m, err=True),
        figures=click.echo,
        home=home,
    )
    if json_file:
        Path(json_file).write_text(json.dumps(report, indent=2))
    click.echo(json.dumps(report))


def _numbers(values: str, option: str) -> list[int]:
    try:
        numbers = [int(v) for v in values.split(",")]
    except ValueError:
        raise click.BadParameter(f"{values!r} is not a comma-separated list of numbers", param_hint=option) from None
    if any(n < 1 for n in numbers):
        raise click.BadParameter(f"{values!r}: each must be 1 or more", param_hint=option)
    return numbers


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
        _print_json(listing)
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


def _exit_on_sigterm(signum: int, frame) -> None:
    # systemd and Docker stop services with SIGTERM. Leaving through SystemExit runs the exit
    # handlers, which stop the embedded PostgreSQL this process started (Python's default for
    # SIGTERM ends the process without them and leaves the server running). `serve` gets here
    # too: uvicorn shuts down on SIGTERM, puts this handler back and raises the signal again.
    raise SystemExit(128 + signum)


def main() -> None:
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    cli(prog_name="facedb")

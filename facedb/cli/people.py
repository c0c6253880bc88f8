"""`facedb cluster`, `people` and what a person can be told: name, merge, move, reject, confirm,
hide, unhide, faces, split, forget."""

from __future__ import annotations

import sys

import click

from ..errors import FaceDBError
from .app import Context, answer, cli, model_option, pass_context, print_json, rounded_box


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
        print_json(result)
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
        print_json(listing)
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
        print_json(shown)
        return
    click.echo(f"{_person_label(shown.id, shown.name)}{' [hidden]' if shown.hidden else ''}: {len(shown.faces)} faces")
    for face in shown.faces:
        click.echo(
            f"  face {face.face_id:<7} {face.source:<10} {face.distance_to_centre:.3f}  {face.photo} {rounded_box(face.box)}"
        )


@cli.command()
@click.argument("person")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
def name(context: Context, person: str, name: str, as_json: bool) -> None:
    """Give PERSON (an id) a NAME; their clustered faces count as confirmed."""
    result = context.facedb.name(person, name)
    answer(result, as_json, f"#{result.id} is now {result.name}")


@cli.command()
@click.argument("keep")
@click.argument("other")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
def merge(context: Context, keep: str, other: str, as_json: bool) -> None:
    """Make two people one: OTHER's faces go to KEEP."""
    result = context.facedb.merge(keep, other)
    answer(result, as_json, f"merged #{result.merged} into #{result.id} ({result.faces_moved} faces)")


@cli.command()
@click.argument("face_id", type=int)
@click.argument("person")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
def move(context: Context, face_id: int, person: str, as_json: bool) -> None:
    """Put face FACE_ID in PERSON (an id, or a name: a new name creates them)."""
    result = context.facedb.move(face_id, person)
    answer(result, as_json, f"face {result.face_id} is now in #{result.person_id} (confirmed)")


@cli.command()
@click.argument("face_id", type=int)
@click.argument("person")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
def reject(context: Context, face_id: int, person: str, as_json: bool) -> None:
    """Say face FACE_ID is not PERSON; clustering will not put it back."""
    result = context.facedb.reject(face_id, person)
    answer(result, as_json, f"face {result.face_id} is not #{result.rejected_from}; remembered")


@cli.command()
@click.argument("person")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
def confirm(context: Context, person: str, as_json: bool) -> None:
    """Accept the faces proposed for (or clustered into) PERSON."""
    result = context.facedb.confirm(person)
    answer(result, as_json, f"#{result.id}: {result.confirmed} face(s) confirmed")


@cli.command()
@click.argument("person")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
def hide(context: Context, person: str, as_json: bool) -> None:
    """Set PERSON aside (a stranger in the background): they keep their faces, so clustering
    does not make them again, and `people` leaves them out until `facedb unhide`."""
    result = context.facedb.hide(person)
    answer(result, as_json, f"{_person_label(result.id, result.name)} is hidden")


@cli.command()
@click.argument("person")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
def unhide(context: Context, person: str, as_json: bool) -> None:
    """Show PERSON in the people lists again."""
    result = context.facedb.hide(person, hidden=False)
    answer(result, as_json, f"{_person_label(result.id, result.name)} is shown again")


@cli.command()
@click.option("--person", help="The faces of this person (an id or a name).")
@click.option("--unassigned", is_flag=True, help="The faces of nobody yet.")
@click.option("--photo", type=click.Path(), help="The faces of this indexed photo.")
@click.option("--limit", type=click.IntRange(1, 100_000), default=100, show_default=True)
@click.option("--offset", type=click.IntRange(0), default=0, show_default=True)
@click.option("--after", type=click.IntRange(0), help="Start after this face id (the next page, at any depth).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
def faces(
    context: Context,
    person: str | None,
    unassigned: bool,
    photo: str | None,
    limit: int,
    offset: int,
    after: int | None,
    as_json: bool,
) -> None:
    """Stored faces with their ids (for `move`, `reject`), photos, boxes and people."""
    listing = context.facedb.faces(
        person=person, unassigned=unassigned, photo=photo, limit=limit, offset=offset, after=after
    )
    if as_json:
        print_json(listing)
        return
    for face in listing.faces:
        owner = _person_label(face.person_id, face.name) + f" ({face.source})" if face.person_id else "nobody"
        click.echo(f"face {face.face_id:<7} {owner:<32} {face.photo} {rounded_box(face.box)}")
    more = f"; --after {listing.faces[-1].face_id} for more" if len(listing.faces) == limit else ""
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
        print_json(result)
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

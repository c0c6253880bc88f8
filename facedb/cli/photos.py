"""`facedb index`, `enroll`, `who`, `compare`, `dedup` and `tags write`: photos in, answers out."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from ..results import WatchRound
from .app import (
    EXIT_FILES_FAILED,
    Context,
    ProgressPrinter,
    answer,
    cli,
    model_option,
    pass_context,
    print_json,
    report_failure,
    report_warning,
    rounded_box,
)


@cli.command()
@click.argument("images", nargs=-1, required=True, type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@model_option
@pass_context
def compare(context: Context, images: tuple[str, ...], as_json: bool) -> None:
    """Euclidean distances between all faces in IMAGES (FaceNet's compare)."""
    result = context.facedb.compare(list(images))
    if as_json:
        print_json(result)
    else:
        for error in result.errors:
            report_failure(error.photo, error.error)
        for path in result.photos_without_faces:
            click.echo(f"facedb: no face found in {path}", err=True)
        for i, face in enumerate(result.faces):
            click.echo(f"{i}: {face.photo} face {face.face} box {rounded_box(face.box)}")
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
@click.option(
    "--watch",
    is_flag=True,
    help="Then keep indexing the folders PATHS as photos arrive, change, move or go, until Ctrl-C or SIGTERM.",
)
@click.option(
    "--settle",
    type=click.FloatRange(0, 3600),
    help="With --watch: seconds a file must stay untouched before it is read (a copy in progress is not) "
    "[default: 2; env FACEDB_WATCH_SETTLE_SECONDS].",
)
@click.option(
    "--rescan-minutes",
    type=click.FloatRange(0, 100_000),
    help="With --watch: look at every file again this often, for changes no event told of (0: only at the start) "
    "[default: 10; env FACEDB_WATCH_RESCAN_MINUTES].",
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
    watch: bool,
    settle: float | None,
    rescan_minutes: float | None,
) -> None:
    """Find, embed and store every face in PATHS (files or folders, recursively)."""
    if watch:
        _watch(context, paths, as_json, face_tags, settle, rescan_minutes)
        return
    summary = context.facedb.index(
        list(paths),
        retry_failed=retry_failed,
        on_progress=ProgressPrinter(quiet or as_json),
        on_failure=report_failure,
        on_warning=report_warning,
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
        print_json(summary)
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


def _watch(
    context: Context,
    paths: tuple[str, ...],
    as_json: bool,
    face_tags: bool | None,
    settle: float | None,
    minutes: float | None,
) -> None:
    """`index --watch`: a line (or a JSON line) a round, until Ctrl-C or SIGTERM."""

    def say(done: WatchRound) -> None:
        if as_json:
            print(json.dumps(done.to_json()), flush=True)  # a line a round, as it happens
            return
        s = done.index
        parts = []
        if s is not None and (s.changed or done.rescan):
            parts.append(
                f"{s.files} files: {s.new} new, {s.reindexed} reindexed, {s.moved} moved, {s.copies} copies, "
                f"{s.failed} failed, {s.unchanged} unchanged; {s.faces} faces"
            )
        if done.gone:
            parts.append(f"{len(done.gone)} gone (forgotten with their faces)")
        if done.kept:
            parts.append(f"{done.kept} missing with their folder, kept (not mounted?)")
        if parts:
            print(f"{'rescan' if done.rescan else 'changes'}: " + "; ".join(parts), flush=True)

    if not as_json:
        print(f"facedb: watching {len(paths)} folder(s); Ctrl-C or SIGTERM stops after the round in hand", flush=True)
    settings = context.facedb.settings
    context.facedb.watch(
        list(paths),
        settle=settings.watch_settle_seconds if settle is None else settle,
        rescan_every=60 * (settings.watch_rescan_minutes if minutes is None else minutes),
        on_round=say,
        on_failure=report_failure,
        on_warning=report_warning,
        read_face_tags=face_tags,
    )
    if not as_json:
        click.echo("facedb: stopped; every round so far is stored")


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
        results = context.facedb.enroll_from_folders(from_folders, on_failure=report_failure)
    else:
        if not name or not images:
            raise click.UsageError("give NAME and at least one image or folder (or --from-folders DIR)")
        results = [context.facedb.enroll(name, list(images), on_failure=report_failure)]
    if as_json:
        print_json(results)
    for result in results:
        for warning in result.warnings:
            click.echo(f"facedb: warning: {warning.path}: {warning.message}", err=True)
        for failure in result.failures:
            if failure.reason == "no face found":
                report_failure(failure.path, failure.reason)
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
        print_json(answers)
    else:
        for answer in answers:
            if answer.error:
                report_failure(answer.photo, answer.error)
                continue
            click.echo(f"{answer.photo}: {len(answer.faces)} face(s)")
            for i, face in enumerate(answer.faces):
                label = "unknown" if face.unknown else face.identity
                others = ", ".join(f"{c.name or '#' + str(c.identity_id)} {c.distance:.3f}" for c in face.candidates)
                stored = f" (face id {face.face_id})" if face.face_id is not None else ""
                click.echo(
                    f"  face {i}{stored} at {rounded_box(face.box)}: {label}"
                    + (f"   [{others}]" if others else "   [no identities yet]")
                )
            if answer.annotated:
                click.echo(f"  annotated: {answer.annotated}")
    if any(a.error for a in answers):
        sys.exit(EXIT_FILES_FAILED)


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
@click.option(
    "--same-face-distance", type=click.FloatRange(0, 2), help="Faces this close are the same shot [the model's: 0.35]."
)
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

    thresholds = context.facedb.dedup_thresholds()
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
    from ..dedup import report_files as files

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
        report_failure(failure.path, failure.reason)
    answer(
        result,
        as_json,
        f"{result.faces} named faces in {result.photos} photos: {len(result.written)} files written, "
        f"{result.unchanged} already so, {len(result.failures)} failed",
    )
    if result.failures:
        sys.exit(EXIT_FILES_FAILED)

"""`facedb bench ingest|detect|search`: the benchmarks, figures printed and written as JSON."""

from __future__ import annotations

import json
from pathlib import Path

import click

from .app import Context, cli, model_option, pass_context


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

    from ..bench import ingest
    from ..config import Settings

    settings = Settings.load(**context.settings_overrides)
    if detect_max_side:
        settings = replace(settings, detect_max_side=detect_max_side)
    say = lambda m: click.echo(m, err=True)  # noqa: E731
    if ray_address:
        from ..bench import distributed
        from ..errors import FaceDBError

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
    from ..bench import detect
    from ..config import Settings

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
    from ..bench import search
    from ..config import SEARCH_INDEX_KINDS

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

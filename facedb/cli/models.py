"""`facedb models` (the pinned models, the database's default) and `facedb reembed`."""

from __future__ import annotations

import sys

import click

from .app import EXIT_FILES_FAILED, Context, ProgressPrinter, answer, cli, pass_context, print_json, report_failure


@cli.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def models(ctx: click.Context, as_json: bool) -> None:
    """The embedding models: dimension, training set, published LFW accuracy, preprocessing,
    weights, which is the database's default, each one's distances and threshold in force, and
    how many faces carry an embedding of each."""
    if ctx.invoked_subcommand is not None:
        return
    listed = ctx.ensure_object(Context).facedb.models()
    if as_json:
        print_json(listed)
        return
    for m in listed:
        click.echo(
            f"{m.model}{'  (default)' if m.default else ''}{'  (in use)' if m.in_use and not m.default else ''}\n"
            f"    {m.name}, {m.dimension}-d, trained on {m.trained_on}, LFW {m.published_lfw_accuracy:.4f} "
            f"(published)\n"
            f"    preprocessing {m.preprocessing}\n"
            f"    sha256 {m.sha256}, weights {'present' if m.weights_present else 'fetched on first use'}\n"
            f"    threshold {m.threshold.value:g} ({m.threshold.source}); clustering eps {m.distances.cluster_eps:g}, "
            f"proposals {m.distances.propose_threshold:g}, same face {m.distances.same_face_distance:g}\n"
            f"    faces with its embedding: {m.faces}" + (f" ({m.faces_without} without)" if m.faces_without else "")
        )


@models.command("fetch")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
def models_fetch(context: Context, as_json: bool) -> None:
    """Fetch every pinned model's weights (checked by sha256) and convert them for ONNX Runtime
    now, so that later runs need neither the network nor the conversion (no database is opened)."""
    fetched = context.facedb.fetch_models()
    if as_json:
        print_json(fetched)
        return
    for m in fetched:
        click.echo(f"{m.model}: weights sha256 {m.sha256}, ONNX graph {m.onnx} ({m.seconds:.1f}s)")


@models.command("default")
@click.argument("model")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
def models_default(context: Context, model: str, as_json: bool) -> None:
    """Make MODEL the database's default (refused while faces lack its embedding)."""
    result = context.facedb.set_default_model(model)
    answer(result, as_json, f"default model: {result.model} (was {result.previous or 'none'})")


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
        model, batch=batch, on_progress=ReembedProgress(quiet or as_json), on_failure=report_failure
    )
    if as_json:
        print_json(summary)
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

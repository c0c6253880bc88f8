"""`facedb calibrate` and `facedb eval`: the figures printed as a person reads them."""

from __future__ import annotations

import sys

import click

from .app import (
    EXIT_FILES_FAILED,
    MISJUDGED_SHOWN,
    Context,
    cli,
    model_option,
    pass_context,
    print_json,
    report_failure,
    threshold_label,
)

causes_option = click.option(
    "--causes",
    is_flag=True,
    help="For each pair misjudged at the default threshold, why: each photo looked at again with mtcnn's own "
    "detector and FaceNet's LFW crop, one stage at a time.",
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
        print_json(result)
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
        click.echo(f"threshold in force: {threshold_label(result.in_force)}")
    if result.decision == "kept the default":
        sys.exit(EXIT_FILES_FAILED)


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
        report_failure(failure["path"], failure["reason"])
    if result.get("plot"):
        click.echo(f"plot: {result['plot']}")


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
        print_json(result)
    elif "models" in result:
        _print_models_side_by_side(result["models"])
        for path in result["models"][0]["no_face"]:
            click.echo(f"facedb: no face found in {path}", err=True)
        for failure in result["models"][0]["failed"]:
            report_failure(failure["path"], failure["reason"])
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

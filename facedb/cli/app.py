"""The `facedb` command's group, its context and what every command shares: one-line errors
and exit statuses, JSON and text printers, progress lines, the --model option, `main`."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from typing import TYPE_CHECKING, Any

import click

from ..errors import FaceDBError

if TYPE_CHECKING:
    from ..results import ThresholdInForce

EXIT_FILES_FAILED = 1

EXIT_ERROR = 2


class Context:
    def __init__(self, **settings: object) -> None:
        self.settings_overrides = settings
        self._facedb = None

    @property
    def facedb(self):
        if self._facedb is None:
            from ..api import FaceDB
            from ..config import Settings

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


def print_json(value: Any) -> None:
    """A result (facedb.results), a list of them, or plain JSON values."""
    if isinstance(value, list):
        value = [item.to_json() if hasattr(item, "to_json") else item for item in value]
    elif hasattr(value, "to_json"):
        value = value.to_json()
    click.echo(json.dumps(value, indent=2, ensure_ascii=False, default=str))


def answer(result: Any, as_json: bool, line: str) -> None:
    """A command's one result: its JSON, or its line of text."""
    if as_json:
        print_json(result)
    else:
        click.echo(line)


def report_failure(path: str, reason: str) -> None:
    click.echo(f"facedb: failed: {path}: {reason}", err=True)


def report_warning(path: str, message: str) -> None:
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


def choose_model(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value:
        ctx.ensure_object(Context).settings_overrides["model"] = value


model_option = click.option(
    "--model",
    callback=choose_model,
    expose_value=False,
    help="The embedding model (`facedb models` lists them) [default: the database's, for eval the manifest's; "
    "env FACEDB_MODEL].",
)


def rounded_box(box: tuple[float, ...]) -> list[float]:
    """A box as the JSON shows it: pixels to one decimal."""
    return [round(v, 1) for v in box]


def threshold_label(threshold: ThresholdInForce) -> str:
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


MISJUDGED_SHOWN = 20


def _exit_on_sigterm(signum: int, frame) -> None:
    # systemd and Docker stop services with SIGTERM. Leaving through SystemExit runs the exit
    # handlers, which stop the embedded PostgreSQL this process started (Python's default for
    # SIGTERM ends the process without them and leaves the server running). `serve` gets here
    # too: uvicorn shuts down on SIGTERM, puts this handler back and raises the signal again.
    raise SystemExit(128 + signum)


def main() -> None:
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    cli(prog_name="facedb")

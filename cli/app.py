"""The ``ragkit`` application: every command registers here."""

from __future__ import annotations

from typing import Annotated

import typer

from ragkit.cli import (
    collections,
    doctor,
    encoders,
    finetune,
    ingest,
    migrate,
    migrate_moves,  # noqa: F401  (registers cutover, rollback, ... on migrate.app)
    query,
    reindex,
    runs,
    schedule,
    serve,
    sources,
    status,
    tune_fusion,
)
from ragkit.cli import eval as eval_cli

app = typer.Typer(
    name="ragkit",
    help="Ingest documents, index them (dense + sparse), query, evaluate and fine-tune retrieval.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)
app.command("ingest")(ingest.ingest_command)
app.command("query")(query.query_command)
app.command("status")(status.status_command)
app.command("collections")(collections.collections_command)
app.command("doctor")(doctor.doctor_command)
app.command("eval")(eval_cli.eval_command)
app.command("tune-fusion")(tune_fusion.tune_fusion_command)
app.command("finetune")(finetune.finetune_command)
app.command("encoders")(encoders.encoders_command)
app.command("reindex")(reindex.reindex_command)
app.add_typer(runs.app, name="runs")
app.command("schedule")(schedule.schedule_command)
app.command("serve")(serve.serve_command)
app.add_typer(sources.app, name="sources")
app.add_typer(migrate.app, name="migrate")


def _version() -> str:
    """The installed distribution's version; ``ragkit.__version__`` for a source checkout.
    Neither imports torch, so ``ragkit --version`` stays as fast as ``--help``."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ragkit")
    except PackageNotFoundError:
        import ragkit

        return ragkit.__version__


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"ragkit {_version()}")
        raise typer.Exit()


@app.callback()
def _root(
    show_version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            help="Print the version and exit.",
        ),
    ] = False,
) -> None:
    """Ingest documents, index them (dense + sparse), query, evaluate and fine-tune retrieval."""


def main() -> None:
    app()


if __name__ == "__main__":
    main()

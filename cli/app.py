"""The ``ragkit`` application: every command registers here."""

from __future__ import annotations

import typer

from ragkit.cli import doctor, encoders, finetune, ingest, query, status, tune_fusion
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
app.command("doctor")(doctor.doctor_command)
app.command("eval")(eval_cli.eval_command)
app.command("tune-fusion")(tune_fusion.tune_fusion_command)
app.command("finetune")(finetune.finetune_command)
app.command("encoders")(encoders.encoders_command)


def main() -> None:
    app()


if __name__ == "__main__":
    main()

"""``ragkit encoders``: the presets, one config word each (``[encoder] preset = "..."``)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from ragkit.cli._common import console, print_json


def encoders_command(
    as_json: Annotated[bool, typer.Option("--json", help="Print the presets as JSON.")] = False,
) -> None:
    """List the encoder presets: provider, model, dimensions and the prompts each one sets."""
    from ragkit.encoders.presets import PRESETS

    rows = [
        {
            "name": p.name,
            "provider": p.provider,
            "model": p.model,
            "dims": list(p.dims),
            "query_prompt": p.prompts[0],
            "document_prompt": p.prompts[1],
            "note": p.note,
        }
        for p in PRESETS.values()
    ]
    if as_json:
        print_json(rows)
        return
    table = Table(title='encoder presets: \\[encoder] preset = "<name>"', header_style="bold")
    for column in ("name", "provider", "model", "dims", "query prompt", "document prompt"):
        table.add_column(column, overflow="fold", no_wrap=column == "name")
    for row in rows:
        table.add_row(
            row["name"],
            row["provider"],
            row["model"],
            "/".join(map(str, row["dims"])),
            repr(row["query_prompt"]) if row["query_prompt"] else "",
            repr(row["document_prompt"]) if row["document_prompt"] else "",
        )
    console.print(table)

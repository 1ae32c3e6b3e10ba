"""What csv/tsv and jsonl rows have in common: one document per record.

Each record gets a stable id (from an id column, else its position) so that re-ingesting an
edited file updates the same documents instead of creating new ones.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ragkit.connectors.base import printable_path
from ragkit.documents import Block, Document

__all__ = ["problem_count", "record_document", "render_fields"]


def render_fields(values: list[tuple[str, str]]) -> str:
    """One field is just its text; several are labelled so each value keeps its meaning."""
    present = [(name, value) for name, value in values if value]
    if len(present) == 1:
        return present[0][1]
    return "\n".join(f"{name}: {value}" for name, value in present)


def problem_count(problems: list[str]) -> str:
    return f"{len(problems)} problem" + ("" if len(problems) == 1 else "s")


def record_document(
    *,
    path: Path,
    uri: str,
    row_id: str,
    title: str | None,
    text: str,
    format: str,
    metadata: dict[str, Any],
) -> Document:
    return Document(
        uri=f"{uri}#{row_id}",
        title=title or f"{printable_path(path.stem)} #{row_id}",
        blocks=[Block(text)],
        format=format,
        metadata=metadata,
    )

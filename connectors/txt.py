"""Plain text: paragraphs are the only structure a .txt file reliably has."""

from __future__ import annotations

import re
from pathlib import Path

from ragkit.connectors.base import LoadOptions, LoadResult, single_document
from ragkit.connectors.text import decode_text, finish_result
from ragkit.documents import Block

__all__ = ["load_txt", "split_paragraphs"]

_BLANK_LINES = re.compile(r"\n[ \t\f\v]*\n")
_MAX_TITLE_CHARS = 120


def split_paragraphs(text: str) -> list[str]:
    """Split on blank lines; a file with no newline at all stays one (possibly huge) paragraph
    because the chunker, not the loader, decides how to cut long text."""
    return [part.strip() for part in _BLANK_LINES.split(text) if part.strip()]


def _title_line(paragraphs: list[str]) -> str | None:
    """A short first line standing alone, without closing punctuation, is how plain-text
    documents are titled; it reads better in results than the file name."""
    if len(paragraphs) < 2:
        return None
    first = paragraphs[0]
    if "\n" in first or len(first) > _MAX_TITLE_CHARS or first.endswith((".", ",", ";", ":")):
        return None
    return first


def load_txt(data: bytes, *, path: Path, uri: str, options: LoadOptions) -> LoadResult:
    decoded = decode_text(data, path)
    paragraphs = split_paragraphs(decoded.text)
    blocks = [Block(text=paragraph) for paragraph in paragraphs]
    result = single_document(
        path, uri=uri, title=_title_line(paragraphs), blocks=blocks, format="txt"
    )
    return finish_result(result, path, decoded)

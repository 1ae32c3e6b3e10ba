"""Word (.docx): heading styles become the heading path, tables stay tables.

A .docx is a zip archive, and zip entries can expand a thousandfold, so the declared sizes are
checked before python-docx inflates anything.
"""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path
from typing import Any

from ragkit.connectors.base import LoadOptions, LoadResult, human_size, single_document
from ragkit.connectors.text import finish_result
from ragkit.documents import Block
from ragkit.errors import ConnectorError

__all__ = ["check_zip_size", "load_docx"]

_HEADING_STYLE = re.compile(r"^Heading (\d)$")


def check_zip_size(data: bytes, path: Path, limit: int) -> None:
    """Refuse archives whose entries would expand past ``limit`` bytes.

    Declared sizes are enough: :mod:`zipfile` never inflates an entry past its declared size.
    """
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            total = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError, EOFError) as exc:
        raise ConnectorError(
            str(path),
            f"corrupt docx, not a valid zip archive ({exc}); an old .doc file must be "
            "converted to .docx first",
        ) from exc
    if total > limit:
        raise ConnectorError(
            str(path),
            f"docx would expand to {human_size(total)}, more than the limit of "
            f"{human_size(limit)} (possible zip bomb); raise max_docx_uncompressed_bytes "
            "if you trust the file",
        )


def _style_name(paragraph: Any) -> str:
    style = paragraph.style
    return (style.name or "") if style is not None else ""


def _list_level(paragraph: Any, style: str) -> int | None:
    """Indent level of a list paragraph, or None when the paragraph is not a list item."""
    properties = paragraph._p.pPr
    numbering = properties.numPr if properties is not None else None
    if numbering is not None:
        level = numbering.ilvl
        return int(level.val) if level is not None and level.val is not None else 0
    if style.startswith("List"):
        trailing = style.rsplit(" ", 1)[-1]
        return int(trailing) - 1 if trailing.isdigit() else 0
    return None


def _table_text(table: Any) -> str:
    rows = []
    for row in table.rows:
        cells: list[str] = []
        previous = None
        for cell in row.cells:
            if cell._tc is previous:  # a merged cell is repeated once per grid column it spans
                continue
            previous = cell._tc
            cells.append(" ".join(cell.text.split()))
        if any(cells):
            rows.append(" | ".join(cells))
    return "\n".join(rows)


class _Builder:
    """Accumulates blocks; consecutive list items and code lines are merged into one block."""

    def __init__(self) -> None:
        self.blocks: list[Block] = []
        self.path: list[tuple[int, str]] = []
        self.first_h1: str | None = None
        self.title_paragraph: str | None = None
        self._run_kind: str | None = None
        self._run_lines: list[str] = []

    def headings(self) -> tuple[str, ...]:
        return tuple(text for _, text in self.path)

    def flush(self) -> None:
        if self._run_kind is not None and self._run_lines:
            self.blocks.append(Block("\n".join(self._run_lines), self.headings(), self._run_kind))
        self._run_kind, self._run_lines = None, []

    def add_run_line(self, kind: str, line: str) -> None:
        if self._run_kind != kind:
            self.flush()
            self._run_kind = kind
        self._run_lines.append(line)

    def heading(self, level: int, text: str) -> None:
        self.flush()
        while self.path and self.path[-1][0] >= level:
            self.path.pop()
        self.path.append((level, text))
        if level == 0 and self.title_paragraph is None:
            self.title_paragraph = text
        if level == 1 and self.first_h1 is None:
            self.first_h1 = text

    def paragraph(self, paragraph: Any) -> None:
        text = paragraph.text.strip()
        if not text:
            return
        style = _style_name(paragraph)
        heading = _HEADING_STYLE.match(style)
        if style == "Title" or heading is not None:
            self.heading(int(heading.group(1)) if heading else 0, " ".join(text.split()))
            return
        if "code" in style.lower() or "preformatted" in style.lower():
            self.add_run_line("code", paragraph.text.rstrip())
            return
        level = _list_level(paragraph, style)
        if level is not None:
            self.add_run_line("list", f"{'  ' * level}- {text}")
            return
        self.flush()
        self.blocks.append(Block(text, self.headings(), "paragraph"))

    def table(self, table: Any) -> None:
        self.flush()
        self.blocks.append(Block(_table_text(table), self.headings(), "table"))


def load_docx(data: bytes, *, path: Path, uri: str, options: LoadOptions) -> LoadResult:
    check_zip_size(data, path, options.max_docx_uncompressed_bytes)
    import docx
    from docx.table import Table

    builder = _Builder()
    try:
        document = docx.Document(io.BytesIO(data))
        core_title = (document.core_properties.title or "").strip()
        for item in document.iter_inner_content():
            if isinstance(item, Table):
                builder.table(item)
            else:
                builder.paragraph(item)
        builder.flush()
    except RecursionError:
        raise ConnectorError(str(path), "corrupt docx: XML nested too deeply") from None
    except Exception as exc:
        raise ConnectorError(
            str(path),
            f"corrupt or unsupported docx ({exc}): open and re-save it in a word processor",
        ) from exc
    title = core_title or builder.title_paragraph or builder.first_h1
    result = single_document(path, uri=uri, title=title, blocks=builder.blocks, format="docx")
    return finish_result(result, path)

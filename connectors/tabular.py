"""CSV and TSV: one document per row.

The delimiter is fixed by the extension instead of sniffed: sniffing guesses wrong on
single-column files and on prose full of commas, and a wrong guess silently garbles every row.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Sequence
from pathlib import Path

from ragkit.connectors.base import LoadOptions, LoadResult
from ragkit.connectors.records import problem_count, record_document, render_fields
from ragkit.connectors.text import decode_text, finish_result
from ragkit.documents import Document
from ragkit.errors import ConnectorError

__all__ = ["load_csv", "load_delimited", "load_tsv"]

_ID_COLUMNS = ("id", "_id")
_TITLE_COLUMNS = ("title",)


def _column_index(columns: Sequence[str]) -> dict[str, int]:
    index: dict[str, int] = {}
    for position, name in enumerate(columns):
        index.setdefault(name, position)  # with duplicate names the first column wins
    return index


def _require(path: Path, index: dict[str, int], name: str, option: str) -> int:
    if name not in index:
        raise ConnectorError(
            str(path), f"{option} {name!r} is not a column; columns are: {', '.join(index)}"
        )
    return index[name]


def _choose_columns(
    path: Path, columns: Sequence[str], options: LoadOptions
) -> tuple[int | None, int | None, list[int], list[int]]:
    """Pick the id, title, metadata and text columns: explicit options first, then defaults."""
    index = _column_index(columns)
    if options.id_field is not None:
        id_col: int | None = _require(path, index, options.id_field, "id_field")
    else:
        id_col = next((index[name] for name in _ID_COLUMNS if name in index), None)
    if options.title_field is not None:
        title_col: int | None = _require(path, index, options.title_field, "title_field")
    else:
        title_col = next((index[name] for name in _TITLE_COLUMNS if name in index), None)
    meta_cols = [_require(path, index, f, "metadata field") for f in options.metadata_fields or ()]
    if options.text_fields is not None:
        missing = [name for name in options.text_fields if name not in index]
        if missing or not options.text_fields:
            raise ConnectorError(
                str(path),
                f"no usable text field: text_fields {list(options.text_fields)} "
                f"not found among the columns {list(index)}",
            )
        text_cols = [index[name] for name in options.text_fields]
    else:
        used = {id_col, title_col, *meta_cols}
        text_cols = [i for i, name in enumerate(columns) if name and i not in used]
    if not text_cols:
        raise ConnectorError(
            str(path),
            f"no usable text field: every column ({', '.join(index)}) is used as id, title or "
            "metadata; pass text_fields",
        )
    return id_col, title_col, meta_cols, text_cols


def _unclosed_quote(lines: list[str], first: int) -> int | None:
    """The 1-based line, from ``first`` on, where a quote opens that no later quote closes.

    An escaped quote (``""``) adds two quotes, so the parity of the count per line tells
    whether a line leaves a quoted field open or closes it.
    """
    open_at = None
    for number in range(first, len(lines) + 1):
        if lines[number - 1].count('"') % 2:
            open_at = number if open_at is None else None
    return open_at


def _swallowed_rows(row: list[str], delimiter: str) -> int:
    """Lines inside one row's fields that look like rows themselves (they hold a delimiter)."""
    return sum(
        1 for cell in row if "\n" in cell for part in cell.split("\n")[1:] if delimiter in part
    )


def _rows(text: str, delimiter: str, problems: list[str]) -> Iterator[tuple[int, list[str]]]:
    """Yield ``(line, row)`` for every row, reporting damage the csv module accepts silently.

    A quote that is never closed makes the csv module read the rest of the file as one field,
    so hundreds of rows vanish into one; that tail is read again with quotes as plain
    characters.  A stray quote closed by another one far below is reported but kept, since
    a long multi-line field can be legitimate.
    """
    lines = text.split("\n")
    physical = len(lines) - 1 if text.endswith("\n") else len(lines)
    offset, quoting = 0, csv.QUOTE_MINIMAL
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    while True:
        line = offset + reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            problems.append(f"line {line}: {exc}; row skipped")
            if offset + reader.line_num < line:  # the reader cannot move past the damage
                return
            continue
        end = offset + reader.line_num
        if end > line and quoting == csv.QUOTE_MINIMAL:
            opened = _unclosed_quote(lines, line) if end >= physical else None
            if opened is not None:
                problems.append(
                    f"line {opened}: a quote opened here is never closed and swallowed the "
                    f"rest of the file (lines {opened}-{end}); lines {line}-{end} were read "
                    "again with quotes as plain characters: check the quoting"
                )
                offset, quoting = line - 1, csv.QUOTE_NONE
                tail = "\n".join(lines[line - 1 :])
                reader = csv.reader(
                    io.StringIO(tail, newline=""), delimiter=delimiter, quoting=quoting
                )
                continue
            swallowed = _swallowed_rows(row, delimiter)
            if swallowed >= 2:
                problems.append(
                    f"line {line}: a quoted field runs to line {end} and holds {swallowed} "
                    "lines that look like rows; check for a stray quote"
                )
        yield line, row


def load_delimited(
    data: bytes, *, path: Path, uri: str, options: LoadOptions, delimiter: str, format: str
) -> LoadResult:
    decoded = decode_text(data, path)
    problems: list[str] = []
    reader = _rows(decoded.text, delimiter, problems)
    first = next(reader, None)
    if first is None and problems:
        raise ConnectorError(str(path), f"cannot read the header row: {problems[0]}")
    header = [name.strip() for name in first[1]] if first is not None else []
    if not any(header):
        raise ConnectorError(str(path), "empty file (no header row)")
    id_col, title_col, meta_cols, text_cols = _choose_columns(path, header, options)

    documents: list[Document] = []
    seen: set[str] = set()
    row_number = 0
    rows_without_text = 0
    for line, row in reader:
        if not any(cell.strip() for cell in row):
            continue
        row_number += 1
        if len(row) > len(header):
            problems.append(
                f"line {line}: {len(row)} fields but the header has {len(header)}; "
                "extra fields ignored"
            )
        cells = [cell.strip() for cell in row] + [""] * (len(header) - len(row))
        row_id = cells[id_col] if id_col is not None else str(row_number)
        if not row_id:  # only possible with an id column
            problems.append(f"line {line}: empty id; row skipped")
            continue
        if row_id in seen:
            problems.append(f"line {line}: duplicate id {row_id!r}; row skipped")
            continue
        body = render_fields([(header[i], cells[i]) for i in text_cols])
        if not body:
            names = ", ".join(header[i] for i in text_cols)
            problems.append(f"line {line}: no text in {names}; row skipped")
            rows_without_text += 1
            continue
        seen.add(row_id)
        documents.append(
            record_document(
                path=path,
                uri=uri,
                row_id=row_id,
                title=cells[title_col] if title_col is not None else None,
                text=body,
                format=format,
                metadata={header[i]: cells[i] for i in meta_cols},
            )
        )
    if not documents:
        if not problems:
            raise ConnectorError(str(path), "empty file (a header row but no data rows)")
        if rows_without_text == row_number:
            names = ", ".join(header[i] for i in text_cols)
            raise ConnectorError(
                str(path), f"no usable text field: no row has text in {names}; pass text_fields"
            )
        raise ConnectorError(
            str(path), f"no usable rows ({problem_count(problems)}; first: {problems[0]})"
        )
    return finish_result(LoadResult(documents=documents, problems=problems), path, decoded)


def load_csv(data: bytes, *, path: Path, uri: str, options: LoadOptions) -> LoadResult:
    return load_delimited(data, path=path, uri=uri, options=options, delimiter=",", format="csv")


def load_tsv(data: bytes, *, path: Path, uri: str, options: LoadOptions) -> LoadResult:
    return load_delimited(data, path=path, uri=uri, options=options, delimiter="\t", format="tsv")

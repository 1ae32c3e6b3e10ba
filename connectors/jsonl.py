"""JSON Lines: one document per object.

JSONL exports are often produced by scripts that crash half-way or interleave log lines, so a
bad line is reported as a problem and the rest of the file still loads.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ragkit.connectors.base import LoadOptions, LoadResult
from ragkit.connectors.records import problem_count, record_document, render_fields
from ragkit.connectors.text import decode_text, finish_result
from ragkit.documents import Document
from ragkit.errors import ConnectorError

__all__ = ["DEFAULT_ID_FIELDS", "DEFAULT_TEXT_FIELDS", "load_jsonl"]

DEFAULT_TEXT_FIELDS = ("text", "content", "body", "page_content")
DEFAULT_ID_FIELDS = ("_id", "id")
_DEFAULT_TITLE_FIELD = "title"


def _as_text(value: Any) -> str:
    """Strings, numbers and lists of them count as text; objects and booleans do not."""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, bool) or value is None:
        return ""
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list):
        parts = [_as_text(item) for item in value if not isinstance(item, dict | list)]
        return "\n".join(part for part in parts if part)
    return ""


def _record_text(record: dict[str, Any], options: LoadOptions) -> str:
    if options.text_fields is not None:
        return render_fields([(name, _as_text(record.get(name))) for name in options.text_fields])
    for name in DEFAULT_TEXT_FIELDS:
        text = _as_text(record.get(name))
        if text:
            return text
    return ""


def _record_id(record: dict[str, Any], options: LoadOptions, line: int) -> str | None:
    names = (options.id_field,) if options.id_field is not None else DEFAULT_ID_FIELDS
    for name in names:
        value = record.get(name)
        if isinstance(value, str | int) and not isinstance(value, bool):
            return str(value).strip() or None
        if name in record:
            return None
    return None if options.id_field is not None else str(line)


def _metadata(record: dict[str, Any], options: LoadOptions) -> dict[str, Any]:
    nested = record.get("metadata")
    metadata: dict[str, Any] = dict(nested) if isinstance(nested, dict) else {}
    for name in options.metadata_fields or ():
        if name in record:
            metadata[name] = record[name]
    return metadata


def _parse_line(line: str, number: int) -> tuple[dict[str, Any] | None, str | None]:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        return None, f"line {number}: invalid JSON: {exc.msg} (column {exc.colno})"
    except RecursionError:
        return None, f"line {number}: invalid JSON: nested too deeply"
    except ValueError as exc:
        # Python refuses to convert integers of more than 4300 digits (CVE-2020-10735); any
        # other ValueError from the decoder is just as much a problem of this one line.
        reason = str(exc)
        if "integer string conversion" in reason:
            reason = "a number with more digits than Python converts (4300)"
        return None, f"line {number}: invalid JSON: {reason}; record skipped"
    if not isinstance(record, dict):
        return None, f"line {number}: not a JSON object (got {type(record).__name__})"
    return record, None


def load_jsonl(data: bytes, *, path: Path, uri: str, options: LoadOptions) -> LoadResult:
    decoded = decode_text(data, path)
    text = decoded.text
    documents: list[Document] = []
    problems: list[str] = []
    seen: set[str] = set()
    records = 0
    records_without_text = 0
    text_fields = list(options.text_fields or DEFAULT_TEXT_FIELDS)
    title_field = options.title_field or _DEFAULT_TITLE_FIELD
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        record, problem = _parse_line(line, number)
        if record is None:
            problems.append(problem or f"line {number}: unreadable")
            continue
        records += 1
        body = _record_text(record, options)
        if not body:
            problems.append(f"line {number}: no text in any of {text_fields}; record skipped")
            records_without_text += 1
            continue
        row_id = _record_id(record, options, number)
        if row_id is None:
            wanted = options.id_field or " or ".join(DEFAULT_ID_FIELDS)
            problems.append(f"line {number}: missing or empty id ({wanted}); record skipped")
            continue
        if row_id in seen:
            problems.append(f"line {number}: duplicate id {row_id!r}; record skipped")
            continue
        seen.add(row_id)
        title = " ".join(_as_text(record.get(title_field)).split())
        documents.append(
            record_document(
                path=path,
                uri=uri,
                row_id=row_id,
                title=title or None,
                text=body,
                format="jsonl",
                metadata=_metadata(record, options),
            )
        )
    if not documents:
        if not problems:
            raise ConnectorError(str(path), "empty file")
        if records and records_without_text == records:
            raise ConnectorError(
                str(path),
                f"no usable text field: no record has text in any of {text_fields}; "
                "pass text_fields",
            )
        raise ConnectorError(
            str(path), f"no valid records ({problem_count(problems)}; first: {problems[0]})"
        )
    return finish_result(LoadResult(documents=documents, problems=problems), path, decoded)

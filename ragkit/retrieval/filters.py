"""Metadata filters: ``source=docs``, ``format=pdf``, ``year>=2020``, ``uri=guides/*``.

Filters resolve, in SQL, to the set of chunk ids allowed; the index searches only inside that set
(a FAISS ID selector), so a selective filter still returns k hits whenever k exist. A key that no
document has matches nothing; rather than answer "no hits" to a typo (``fromat=pdf``), a search
whose filters allow nothing asks :func:`check_filter_keys`, which names the keys that exist.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ragkit.errors import ConfigError

if TYPE_CHECKING:
    from ragkit.store import Store

__all__ = ["Filter", "check_filter_keys", "filters_sql", "parse_filters"]

_OPS = ("!=", ">=", "<=", "=", ">", "<")
_PATTERN = re.compile(r"^\s*([A-Za-z_][\w.\-]*)\s*(!=|>=|<=|=|>|<)\s*(.*?)\s*$")
_COLUMNS = {
    "source": "d.source",
    "uri": "d.uri",
    "format": "d.format",
    "title": "d.title",
    "doc_id": "d.doc_id",
    "path": "d.file_path",
}


@dataclass(frozen=True, slots=True)
class Filter:
    key: str
    op: str
    value: Any


def parse_filters(spec: str | list[str] | dict[str, Any] | None) -> list[Filter]:
    """Accept ``"a=b"``, a list of those, or ``{"a": "b"}`` (equality) from the Python API."""
    if spec is None:
        return []
    if isinstance(spec, dict):
        return [Filter(key, "=", value) for key, value in spec.items()]
    items = [spec] if isinstance(spec, str) else list(spec)
    out = []
    for item in items:
        match = _PATTERN.match(item)
        if not match:
            raise ConfigError(
                f"filter {item!r} is not KEY OP VALUE with OP one of {' '.join(_OPS)} "
                "(e.g. source=docs, year>=2020, uri=guides/*)"
            )
        key, op, raw = match.groups()
        out.append(Filter(key, op, _coerce(raw)))
    return out


def _coerce(raw: str) -> Any:
    for cast in (int, float):
        try:
            return cast(raw)
        except ValueError:
            pass
    return raw


def filters_sql(filters: list[Filter]) -> tuple[str, list[Any]]:
    """A WHERE clause over ``chunks c JOIN documents d``; metadata keys read the JSON column."""
    clauses: list[str] = []
    params: list[Any] = []
    for f in filters:
        column = _COLUMNS.get(f.key) or "json_extract(d.metadata_json, ?)"
        if f.key not in _COLUMNS:
            params.append(f"$.{f.key}")
        value = f.value
        if f.key == "source" and isinstance(value, str):
            value = value.rstrip("/") or value
        if f.op in ("=", "!=") and isinstance(value, str) and any(ch in value for ch in "*?["):
            negate = "NOT " if f.op == "!=" else ""
            clauses.append(f"{negate}({column} GLOB ?)")
        else:
            clauses.append(f"{column} {f.op} ?")
        params.append(value)
    return " AND ".join(clauses) or "1", params


def check_filter_keys(filters: list[Filter], store: Store) -> None:
    """Raise ConfigError when a filter names a key that no document has, listing the known
    keys. Called only when the filters allow no chunk, so a normal query pays nothing."""
    wanted = {f.key for f in filters if f.key not in _COLUMNS}
    if not wanted:
        return
    rows = store._query(
        "SELECT DISTINCT j.key FROM documents d, json_each(d.metadata_json) j"
    )  # one read over the metadata, only on this rare path
    metadata = {row[0] for row in rows}
    unknown = sorted(key for key in wanted if key.split(".", 1)[0] not in metadata)
    if unknown:
        known = ", ".join([*_COLUMNS, *sorted(metadata)])
        raise ConfigError(
            f"no document has the filter key {', '.join(map(repr, unknown))}; "
            f"the keys you can filter on are: {known}"
        )

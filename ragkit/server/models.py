"""The JSON shapes of the API, as pydantic models so that /docs describes them and FastAPI
rejects a malformed body with a 422 before any work is done."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

MAX_K = 100
MAX_TEXT = 2000
MAX_BATCH = 64
_KEY = re.compile(r"^[A-Za-z_][\w.\-]*$")

Scalar = str | int | float | bool
Where = str | list[str] | dict[str, Scalar] | None


class QueryOptions(BaseModel):
    """What every query carries besides its text."""

    model_config = ConfigDict(extra="forbid")

    k: int = Field(10, ge=1, le=MAX_K, description="How many hits.")
    mode: str | None = Field(
        None,
        description="dense, sparse or hybrid, optionally '+rerank' "
        "(default: hybrid when the collection has a sparse index).",
    )
    where: Where = Field(
        None,
        description="Metadata filter: 'KEY OP VALUE', a list of those, or {key: value} for "
        "equality (e.g. 'format=md', ['source=docs', 'uri=guides/*']).",
    )
    collection: str = Field(
        "default", min_length=1, description="An alias, or a collection an alias points at."
    )
    rerank: bool | str | None = Field(
        None, description="true, or a cross-encoder name, re-ranks the top hits."
    )

    @field_validator("where")
    @classmethod
    def _where_keys(cls, where: Where) -> Where:
        # The store turns a key into a JSON path: refuse what would only fail there, as a 500.
        if isinstance(where, dict):
            bad = [key for key in where if not _KEY.match(key)]
            if bad:
                raise ValueError(f"filter keys {bad} are not names (letters, digits, _ . -)")
        return where


class QueryRequest(QueryOptions):
    text: str = Field(..., max_length=MAX_TEXT, description="What to search for.")

    @field_validator("text")
    @classmethod
    def _check_text(cls, text: str) -> str:
        if not text.strip():
            raise ValueError("the query text is empty")
        return text


class BatchRequest(QueryOptions):
    texts: list[str] = Field(..., min_length=1, max_length=MAX_BATCH)

    @field_validator("texts")
    @classmethod
    def _check_texts(cls, texts: list[str]) -> list[str]:
        for position, text in enumerate(texts):
            if len(text) > MAX_TEXT:
                raise ValueError(f"texts[{position}] is longer than {MAX_TEXT} characters")
            if not text.strip():
                raise ValueError(f"texts[{position}] is empty")
        return texts


class HitOut(BaseModel):
    rank: int
    score: float
    chunk_id: str
    doc_id: str
    uri: str
    title: str
    headings: list[str]
    text: str
    metadata: dict[str, Any]


class QueryResponse(BaseModel):
    text: str
    mode: str
    collection: str
    hits: list[HitOut]
    warnings: list[str] = []
    took_ms: float


class BatchResponse(BaseModel):
    mode: str
    collection: str
    results: list[list[HitOut]]
    warnings: list[str] = []
    took_ms: float


class ErrorOut(BaseModel):
    error: str
    message: str

"""Read BEIR-format datasets and qrels files.

BEIR's layout (``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``) is what most public
retrieval benchmarks ship in, so supporting it lets ragkit report numbers comparable with
published ones. Errors name the file and line, because a dataset that half-loads would produce
plausible but wrong scores.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ragkit.errors import ConnectorError

__all__ = ["BeirDataset", "available_splits", "load_beir", "load_qrels", "read_queries"]

_HEADER = ("query-id", "corpus-id", "score")


@dataclass(slots=True)
class BeirDataset:
    """One split of a BEIR dataset.

    ``corpus`` maps a document id to ``{"title": ..., "text": ...}``; ``qrels`` maps a query id
    to ``{document id: grade}``, grade-0 entries kept as judged non-relevant. ``queries`` may
    hold queries of the split that have no judgments; :func:`ragkit.evaluation.evaluate` leaves
    those out, since nothing can be said about a query with no relevant document.
    """

    corpus: dict[str, dict[str, str]]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    path: Path
    split: str


def load_beir(path: str | Path, split: str = "dev") -> BeirDataset:
    """Load the corpus, the queries of ``split`` and its qrels.

    A document ``_id`` that appears twice in ``corpus.jsonl`` keeps its last line (BEIR's rule).

    When the queries carry a ``split`` field (as when one ``queries.jsonl`` serves several
    splits), a query is kept if its split matches or it is judged in the split's qrels. Queries
    without that field are kept only if judged in the split's qrels, as BEIR's own loader does,
    so the train queries of a dataset are not run when evaluating dev.
    """
    root = Path(path)
    if not root.is_dir():
        raise ConnectorError(str(root), "not a directory; expected a BEIR dataset folder")
    corpus_path = root / "corpus.jsonl"
    queries_path = root / "queries.jsonl"
    qrels_path = root / "qrels" / f"{split}.tsv"
    for required in (corpus_path, queries_path):
        if not required.is_file():
            raise ConnectorError(
                str(required),
                "missing; a BEIR dataset needs corpus.jsonl, queries.jsonl and qrels/<split>.tsv",
            )
    if not qrels_path.is_file():
        splits = available_splits(root)
        found = ", ".join(splits) if splits else "none"
        raise ConnectorError(
            str(qrels_path), f"missing: no qrels for split {split!r}; available splits: {found}"
        )
    qrels = load_qrels(qrels_path)
    corpus = _read_corpus(corpus_path)
    queries = _read_queries(queries_path, split=split, judged=qrels)
    unknown = sorted(set(qrels) - set(queries))
    if unknown:
        raise ConnectorError(
            str(qrels_path),
            f"{len(unknown)} judged query ids are not in {queries_path.name}, e.g. {unknown[:3]}",
        )
    return BeirDataset(corpus=corpus, queries=queries, qrels=qrels, path=root, split=split)


def available_splits(path: str | Path) -> list[str]:
    """The splits a BEIR dataset has qrels for (the stems of ``qrels/*.tsv``), sorted."""
    qrels_dir = Path(path) / "qrels"
    if not qrels_dir.is_dir():
        return []
    return sorted(file.stem for file in qrels_dir.glob("*.tsv") if file.is_file())


def load_qrels(path: str | Path) -> dict[str, dict[str, int]]:
    """Read relevance judgments from a BEIR TSV or a TREC qrels file.

    BEIR: tab-separated ``query-id corpus-id score`` with an optional header. TREC:
    whitespace-separated ``qid iteration docid relevance``. The format is taken from the first
    data line, and every line must follow it, so a mixed file fails loudly instead of half-loading.
    """
    path = Path(path)
    qrels: dict[str, dict[str, int]] = {}
    trec: bool | None = None
    for number, line in _lines(path):
        if not line.strip():
            continue
        if trec is None:
            if tuple(field.strip().lower() for field in line.split("\t")) == _HEADER:
                continue
            trec = len(line.split("\t")) != 3 and len(line.split()) == 4
        if trec:
            fields = line.split()
            if len(fields) != 4:
                raise ConnectorError(
                    str(path),
                    f"line {number}: expected 4 fields 'qid iteration docid relevance' "
                    f"(TREC qrels), got {len(fields)}: {line!r}",
                )
            qid, _, doc, grade_text = fields
        else:
            fields = [field.strip() for field in line.split("\t")]
            if len(fields) != 3 or not all(fields):
                raise ConnectorError(
                    str(path),
                    f"line {number}: expected 3 tab-separated fields "
                    f"'query-id corpus-id score', got {line!r}",
                )
            qid, doc, grade_text = fields
        grade = _parse_grade(path, number, grade_text)
        docs = qrels.setdefault(qid, {})
        if docs.get(doc, grade) != grade:
            raise ConnectorError(
                str(path),
                f"line {number}: query {qid!r}, document {doc!r} judged twice "
                f"with different grades ({docs[doc]} and {grade})",
            )
        docs[doc] = grade
    return qrels


def _parse_grade(path: Path, number: int, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value.is_integer():
        raise ConnectorError(str(path), f"line {number}: score {text!r} is not an integer grade")
    return int(value)


def _read_corpus(path: Path) -> dict[str, dict[str, str]]:
    corpus: dict[str, dict[str, str]] = {}
    for number, record in _json_lines(path):
        # A repeated _id overwrites the earlier line, as BEIR's own loader does, so document
        # counts and scores stay comparable with numbers computed by BEIR tooling.
        corpus[_record_id(path, number, record)] = {
            "title": _text_field(path, number, record, "title"),
            "text": _text_field(path, number, record, "text"),
        }
    return corpus


def read_queries(path: str | Path) -> dict[str, str]:
    """All queries of a jsonl file (``_id``, ``text``), for evaluating a user's own workspace."""
    path = Path(path)
    return {
        _record_id(path, number, record): _text_field(path, number, record, "text")
        for number, record in _json_lines(path)
    }


def _read_queries(path: Path, *, split: str, judged: dict[str, Any]) -> dict[str, str]:
    queries: dict[str, str] = {}
    for number, record in _json_lines(path):
        query_id = _record_id(path, number, record)
        query_split = record.get("split")
        keep = query_id in judged or (query_split is not None and str(query_split) == split)
        if keep:
            queries[query_id] = _text_field(path, number, record, "text")
    return queries


def _json_lines(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    for number, line in _lines(path):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise ConnectorError(str(path), f"line {number}: invalid JSON ({error.msg})") from None
        if not isinstance(record, dict):
            raise ConnectorError(str(path), f"line {number}: expected a JSON object")
        yield number, record


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    try:
        with path.open(encoding="utf-8") as file:
            for number, line in enumerate(file, start=1):
                yield number, line.rstrip("\r\n")
    except FileNotFoundError:
        raise ConnectorError(str(path), "file not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConnectorError(str(path), f"cannot read: {error}") from error


def _record_id(path: Path, number: int, record: dict[str, Any]) -> str:
    value = record.get("_id")
    if value is None or value == "":
        raise ConnectorError(str(path), f"line {number}: missing '_id'")
    return str(value)


def _text_field(path: Path, number: int, record: dict[str, Any], key: str) -> str:
    value = record.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ConnectorError(str(path), f"line {number}: {key!r} must be a string")
    return value

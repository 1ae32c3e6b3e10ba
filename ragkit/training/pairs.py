"""Training pairs: from a file, from BEIR qrels, or generated from the workspace's own corpus.

A :class:`Pair` is (query, positive passage[, negatives]). ``positive_doc`` names the positive's
document the way retrieval hits name theirs (:func:`doc_key`), so mining can exclude the whole
positive document and evaluation can build qrels from held-out pairs.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import random
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragkit.errors import ConfigError, ConnectorError
from ragkit.evaluation import corpus_id_from_uri

if TYPE_CHECKING:
    from ragkit.collection_parts import CollectionSource
    from ragkit.evaluation import BeirDataset

__all__ = [
    "InverseCloze",
    "Pair",
    "QueryGenerator",
    "doc_key",
    "generate_pairs",
    "load_pairs",
    "pairs_from_beir",
    "passage_text",
    "qrels_from_pairs",
    "sample_pairs",
    "split_pairs",
    "write_pairs",
]

QueryGenerator = Callable[[str, str, tuple[str, ...]], list[str]]
"""``(chunk_text, title, headings) -> queries``: any callable, e.g. a wrapper around an LLM."""


@dataclass(frozen=True, slots=True)
class Pair:
    query: str
    positive: str
    negatives: tuple[str, ...] = ()
    query_id: str = ""
    positive_doc: str = ""
    source: str = ""
    meta: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def group(self) -> str:
        """What a held-out split keeps together: one query never lands on both sides."""
        return self.query_id or self.query


def doc_key(uri: str) -> str:
    """The document id used in qrels and mining exclusions (the BEIR ``_id`` for jsonl rows)."""
    return corpus_id_from_uri(uri)


def passage_text(title: str, text: str, headings: Sequence[str] = ()) -> str:
    """A passage as the encoder should see it: title and heading path in front of the body."""
    head = [part for part in (title, *headings) if part]
    return "\n".join([*dict.fromkeys(head), text]) if head else text


# -- from files ------------------------------------------------------------------------------
def load_pairs(path: str | Path) -> list[Pair]:
    """Pairs from ``.jsonl`` (``query``, ``positive``, optional ``negatives`` list) or ``.csv``.

    CSV: columns ``query`` and ``positive``; every column whose name starts with ``negative``
    adds a negative. Both accept an optional ``positive_doc`` (the positive's document id, for
    mining exclusions and held-out qrels) and ``query_id``.
    """
    path = Path(path)
    if not path.is_file():
        raise ConnectorError(str(path), "not found; expected a .jsonl or .csv file of pairs")
    suffix = path.suffix.lower()
    if suffix in {".jsonl", ".json"}:
        records = list(_jsonl_records(path))
    elif suffix in {".csv", ".tsv"}:
        records = list(_csv_records(path, delimiter="\t" if suffix == ".tsv" else ","))
    else:
        raise ConnectorError(str(path), "unknown format; use .jsonl or .csv")
    pairs = [_pair_from_record(path, number, record) for number, record in records]
    if not pairs:
        raise ConnectorError(str(path), "holds no pairs")
    return pairs


def _jsonl_records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with path.open(encoding="utf-8") as file:
        for number, line in enumerate(file, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ConnectorError(
                    str(path), f"line {number}: invalid JSON ({exc.msg})"
                ) from None
            if not isinstance(record, dict):
                raise ConnectorError(str(path), f"line {number}: expected a JSON object")
            yield number, record


def _csv_records(path: Path, *, delimiter: str) -> Iterator[tuple[int, dict[str, Any]]]:
    with path.open(encoding="utf-8", newline="") as file:
        reader = csv.DictReader(file, delimiter=delimiter)
        names = reader.fieldnames or []
        negative_columns = [n for n in names if n.lower().startswith("negative")]
        for number, row in enumerate(reader, start=2):
            record: dict[str, Any] = {k: v for k, v in row.items() if k not in negative_columns}
            record["negatives"] = [row[n] for n in negative_columns if row.get(n)]
            yield number, record


def _pair_from_record(path: Path, number: int, record: dict[str, Any]) -> Pair:
    query, positive = record.get("query"), record.get("positive")
    if not isinstance(query, str) or not query.strip():
        raise ConnectorError(str(path), f"line {number}: missing 'query'")
    if not isinstance(positive, str) or not positive.strip():
        raise ConnectorError(str(path), f"line {number}: missing 'positive'")
    negatives = record.get("negatives") or []
    if isinstance(negatives, str):
        negatives = [negatives]
    if not isinstance(negatives, list) or not all(isinstance(n, str) for n in negatives):
        raise ConnectorError(str(path), f"line {number}: 'negatives' must be a list of strings")
    return Pair(
        query=query.strip(),
        positive=positive,
        negatives=tuple(n for n in negatives if n.strip()),
        query_id=str(record.get("query_id") or ""),
        positive_doc=str(record.get("positive_doc") or ""),
        source="file",
    )


def write_pairs(pairs: Iterable[Pair], path: str | Path) -> Path:
    """Write pairs as jsonl (atomically), the format :func:`load_pairs` reads back."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as file:
        for pair in pairs:
            record = {
                "query": pair.query,
                "positive": pair.positive,
                "negatives": list(pair.negatives),
                "query_id": pair.query_id,
                "positive_doc": pair.positive_doc,
                "source": pair.source,
            }
            file.write(json.dumps(record, ensure_ascii=False) + "\n")
    os.replace(tmp, path)
    return path


# -- from BEIR qrels -------------------------------------------------------------------------
def pairs_from_beir(dataset: BeirDataset) -> list[Pair]:
    """One pair per (query, relevant document); the positive is ``title + "\\n" + text``."""
    pairs = []
    for qid in sorted(dataset.qrels):
        query = dataset.queries.get(qid)
        if not query:
            continue
        for doc_id, grade in sorted(dataset.qrels[qid].items()):
            doc = dataset.corpus.get(doc_id)
            if grade <= 0 or doc is None:
                continue
            positive = f"{doc['title']}\n{doc['text']}" if doc["title"] else doc["text"]
            pairs.append(Pair(query, positive, query_id=qid, positive_doc=doc_id, source="beir"))
    if not pairs:
        raise ConfigError(
            f"{dataset.path}: split {dataset.split!r} gives no (query, relevant document) pair"
        )
    return pairs


# -- generated from the workspace's corpus ---------------------------------------------------
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")


class InverseCloze:
    """The offline default generator (inverse cloze task, Lee et al. 2019).

    A chunk's heading (or its document title) or one of its sentences becomes the query; the
    pair's positive is the rest of the chunk, so the model must learn what a passage is about
    rather than to spot a copied sentence. The choice is seeded by the chunk's text, so the
    same corpus always gives the same pairs.
    """

    def __init__(self, *, seed: int = 0, title_rate: float = 0.25, min_words: int = 4) -> None:
        self.seed = seed
        self.title_rate = title_rate
        self.min_words = min_words

    def __call__(self, text: str, title: str, headings: tuple[str, ...]) -> list[str]:
        digest = hashlib.sha256(f"{self.seed}\x00{text}".encode()).digest()
        rng = random.Random(int.from_bytes(digest[:8], "big"))
        sentences = [s.strip() for s in _SENTENCE.split(text) if s.strip()]
        usable = [s for s in sentences if len(s.split()) >= self.min_words]
        heading = headings[-1] if headings else title
        # A lone sentence is the whole chunk: using it would leave an empty positive.
        if len(sentences) < 2 or not usable or (heading and rng.random() < self.title_rate):
            return [heading] if heading else []
        return [rng.choice(usable)]


def generate_pairs(
    kit: CollectionSource,
    *,
    generator: QueryGenerator | None = None,
    max_chunks: int | None = None,
    seed: int = 0,
) -> list[Pair]:
    """Pairs from the workspace's chunks, for users who have no queries of their own.

    For every chunk (a seeded sample of ``max_chunks`` when given), ``generator`` proposes
    queries; a query found verbatim in the passage (a sentence, the title, a heading) is cut out
    of the positive, so an inverse-cloze pair never contains its own answer string.
    """
    generator = generator or InverseCloze(seed=seed)
    collection = kit.collection()  # pairs come from the default collection's chunks
    ids = [int(i) for i in kit.store.all_chunk_ids(collection.chunking_fp if collection else None)]
    if not ids:
        raise ConfigError(f"{kit.root}: the workspace has no chunks; ingest documents first")
    if max_chunks is not None and len(ids) > max_chunks:
        ids = sorted(random.Random(seed).sample(ids, max_chunks))
    rows = kit.store.chunk_rows(ids)
    pairs = []
    for chunk in ids:
        row = rows.get(chunk)
        if row is None:
            continue
        title, text = row["title"] or "", row["text"]
        headings = tuple(json.loads(row["headings_json"]))
        for query in generator(text, title, headings):
            query = " ".join(query.split())
            positive = _positive_without(query, title, headings, text)
            if query and positive.strip():
                pairs.append(
                    Pair(
                        query,
                        positive,
                        positive_doc=doc_key(row["uri"]),
                        source="generated",
                        meta={"chunk_id": row["chunk_id"]},
                    )
                )
    if not pairs:
        raise ConfigError(f"{kit.root}: the query generator produced no pairs")
    return pairs


def _positive_without(query: str, title: str, headings: tuple[str, ...], text: str) -> str:
    head = [h for h in (title, *headings) if h and " ".join(h.split()) != query]
    body = text
    if query in " ".join(text.split()):
        parts = [s for s in _SENTENCE.split(text) if " ".join(s.split()) != query]
        body = " ".join(p.strip() for p in parts if p.strip())
    return passage_text(head[0] if head else "", body, head[1:])


# -- splits and qrels ------------------------------------------------------------------------
def split_pairs(
    pairs: Sequence[Pair], *, fraction: float = 0.1, max_queries: int | None = 1000, seed: int = 0
) -> tuple[list[Pair], list[Pair]]:
    """A seeded (train, held-out) split by query: all pairs of one query go to one side."""
    if not 0 < fraction < 1:
        raise ConfigError(f"held-out fraction must be between 0 and 1 (got {fraction})")
    groups = sorted({p.group for p in pairs})
    random.Random(seed).shuffle(groups)
    count = max(1, round(len(groups) * fraction))
    if max_queries is not None:
        count = min(count, max_queries)
    if count >= len(groups):
        raise ConfigError(
            f"only {len(groups)} distinct queries: too few to hold some out for evaluation; "
            "give an evaluation set or more pairs"
        )
    held = set(groups[:count])
    return [p for p in pairs if p.group not in held], [p for p in pairs if p.group in held]


def sample_pairs(
    pairs: Sequence[Pair], limit: int | None, *, seed: int = 0
) -> tuple[list[Pair], list[Pair]]:
    """(a seeded sample of at most ``limit`` pairs, the rest), drawn by whole query groups."""
    if limit is None:
        return list(pairs), []
    sizes: dict[str, int] = {}
    for pair in pairs:
        sizes[pair.group] = sizes.get(pair.group, 0) + 1
    groups = sorted(sizes)
    random.Random(seed + 1).shuffle(groups)
    chosen: set[str] = set()
    count = 0
    for group in groups:
        if count + sizes[group] > limit:
            continue
        chosen.add(group)
        count += sizes[group]
    return [p for p in pairs if p.group in chosen], [p for p in pairs if p.group not in chosen]


def qrels_from_pairs(pairs: Iterable[Pair]) -> tuple[dict[str, str], dict[str, dict[str, int]]]:
    """(queries, qrels) to evaluate held-out pairs; pairs without ``positive_doc`` are skipped."""
    queries: dict[str, str] = {}
    qrels: dict[str, dict[str, int]] = {}
    ids: dict[str, str] = {}
    for pair in pairs:
        if not pair.positive_doc:
            continue
        qid = pair.query_id or ids.setdefault(pair.query, f"q{len(ids)}")
        queries[qid] = pair.query
        qrels.setdefault(qid, {})[pair.positive_doc] = 1
    return queries, qrels

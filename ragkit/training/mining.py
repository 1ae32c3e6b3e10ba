"""Hard negatives mined from the workspace's own index, with false-negative protection.

Candidates come from the same retrieval the user queries (hybrid when the workspace offers it),
so the model learns to fix the confusions of *this* index. A candidate is dropped when it

* belongs to a positive document of the query (exclusion by document, not by chunk);
* ranks above ``range_min`` or at/after ``range_max`` among the remaining documents;
* scores above the positive under the dense encoder, by the relative margin:
  ``cos(q, c) > cos(q, p) − |cos(q, p)| · relative_margin`` (``relative_margin=0.05`` keeps
  candidates below 95 % of the positive's score: NV-Retriever's TopK-PercPos, the same
  convention as ``sentence_transformers.util.mine_hard_negatives``);
* is scored by the optional cross-encoder at least as high as the positive.

Why not call ``sentence_transformers.util.mine_hard_negatives``: it embeds a corpus list and
searches it itself, so it cannot take candidates from our (hybrid) index, and it applies
``range_min`` after the margin filter. Its filters are reproduced here on our candidates; the
dense scores reuse the vectors cached in the store, so only queries and positives are encoded.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ragkit.errors import ConfigError
from ragkit.training.pairs import Pair, doc_key, passage_text

if TYPE_CHECKING:
    from ragkit.collection_parts import QueryableSource
    from ragkit.documents import Hit
    from ragkit.encoders.protocol import Encoder

__all__ = [
    "ChunkTable",
    "MiningConfig",
    "MiningResult",
    "mine_hard_negatives",
    "mining_mode",
    "search",
]

ProgressCallback = Callable[[str, int], None]


@dataclass(kw_only=True)
class MiningConfig:
    num_negatives: int = 1  # one per query is the measured recipe (BENCHMARKS.md, run H)
    range_min: int = 0
    range_max: int = 30
    relative_margin: float | None = 0.05
    mode: str | None = None  # None: hybrid when the workspace has it, else dense
    batch_size: int = 512
    cross_encoder_batch_size: int = 64
    fill_random: bool = True
    seed: int = 0

    def validate(self) -> None:
        if self.num_negatives < 0:
            raise ConfigError(f"num_negatives must be >= 0 (got {self.num_negatives})")
        if self.range_min < 0 or self.range_max <= self.range_min:
            raise ConfigError(
                f"mining range [{self.range_min}, {self.range_max}) is empty; "
                "need 0 <= range_min < range_max"
            )
        if self.num_negatives > self.range_max - self.range_min:
            raise ConfigError(
                f"cannot mine {self.num_negatives} negatives from ranks "
                f"[{self.range_min}, {self.range_max}); widen the range"
            )
        if self.relative_margin is not None and not 0 <= self.relative_margin < 1:
            raise ConfigError(
                f"relative_margin must be in [0, 1) (got {self.relative_margin}); 0.05 drops "
                "candidates scoring above 95% of the positive"
            )


@dataclass
class MiningStats:
    mode: str
    queries: int = 0
    candidates: int = 0
    positive_documents: int = 0
    out_of_range: int = 0
    margin: int = 0
    cross_encoder: int = 0
    mined: int = 0
    random_fill: int = 0
    seconds: float = 0.0


@dataclass
class MiningResult:
    pairs: list[Pair]
    records: list[dict[str, Any]]
    stats: MiningStats
    config: MiningConfig = field(default_factory=MiningConfig)

    def write(self, path: str | Path) -> Path:
        """One json line per query: its positives, kept negatives, and what was dropped why."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        with tmp.open("w", encoding="utf-8") as file:
            for record in self.records:
                file.write(json.dumps(record, ensure_ascii=False) + "\n")
        os.replace(tmp, path)
        return path

    def summary(self) -> dict[str, Any]:
        return {"config": asdict(self.config), "stats": asdict(self.stats)}


def search(
    kit: QueryableSource,
    texts: list[str],
    *,
    k: int,
    mode: str,
    query_vectors: np.ndarray | None = None,
) -> list[list[Hit]]:
    """``kit.query_many`` without the optional cross-encoder stage: mining and evaluation
    compare retrievers, and a reranker over thousands of queries would dominate the cost."""
    return kit.query_many(texts, k=k, mode=mode, rerank=False, query_vectors=query_vectors)


def mining_mode(kit: QueryableSource, requested: str | None = None) -> str:
    modes = kit.available_modes()
    if requested is not None:
        if requested not in modes:
            raise ConfigError(
                f"mining mode {requested!r} is not available here; use one of {modes}"
            )
        return requested
    return "hybrid" if "hybrid" in modes else "dense"


class ChunkTable:
    """Every chunk's passage text, document key and cached dense vector, read once per run."""

    def __init__(self, kit: QueryableSource, encoder: Encoder) -> None:
        self.store = kit.store
        self.encoder = encoder
        collection = kit.collection()  # mining searches the default collection: its chunks
        hashes = self.store.chunk_hashes(collection.chunking_fp if collection else None)
        rows = self.store.chunk_rows([h[0] for h in hashes])
        self.ids: list[int] = []
        self.by_chunk_id: dict[str, int] = {}
        self.doc: dict[int, str] = {}
        self.passage: dict[int, str] = {}
        self.text_hash: dict[int, str] = {}
        self.embed_text: dict[int, str] = {}
        self.by_passage: dict[str, int] = {}
        for chunk, text_hash, embed_text in hashes:
            row = rows.get(chunk)
            if row is None:
                continue
            self.ids.append(chunk)
            self.by_chunk_id[row["chunk_id"]] = chunk
            self.doc[chunk] = doc_key(row["uri"])
            self.passage[chunk] = passage_text(
                row["title"] or "", row["text"], tuple(json.loads(row["headings_json"]))
            )
            self.text_hash[chunk] = text_hash
            self.embed_text[chunk] = embed_text
            self.by_passage.setdefault(self.passage[chunk], chunk)

    def doc_of_passage(self, text: str) -> str:
        chunk = self.by_passage.get(text)
        return "" if chunk is None else self.doc[chunk]

    def passage_vectors(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """Vectors of passages; one that is exactly an indexed chunk's passage (a BEIR
        positive usually is) reuses that chunk's cached vector instead of being encoded."""
        known = {t: self.by_passage[t] for t in texts if t in self.by_passage}
        out = dict(zip(known, self.vectors(list(known.values())), strict=True))
        rest = [t for t in texts if t not in known]
        if rest:
            out.update(zip(rest, self.encoder.encode_documents(rest), strict=True))
        return out

    def vectors(self, chunks: Sequence[int], *, encoder: Encoder | None = None) -> np.ndarray:
        """Dense vectors as indexed: from the store's cache, encoding only what is missing."""
        encoder = encoder or self.encoder
        hashes = [self.text_hash[c] for c in chunks]
        cached = self.store.cached_vectors(hashes, encoder.fingerprint["id"], encoder.dim)
        missing = list(dict.fromkeys(h for h in hashes if h not in cached))
        if missing:
            texts = {self.text_hash[c]: self.embed_text[c] for c in chunks}
            encoded = encoder.encode_documents([texts[h] for h in missing])
            cached.update(zip(missing, encoded, strict=True))
        if not chunks:
            return np.zeros((0, encoder.dim), dtype=np.float32)
        return np.stack([cached[h] for h in hashes]).astype(np.float32)


def mine_hard_negatives(
    kit: QueryableSource,
    pairs: Sequence[Pair],
    config: MiningConfig | None = None,
    *,
    cross_encoder: Any | None = None,
    table: ChunkTable | None = None,
    progress: ProgressCallback | None = None,
) -> MiningResult:
    """Give every pair ``config.num_negatives`` negatives: its given ones first, then mined.

    Queries are mined once each, in batches of ``config.batch_size`` through
    ``kit.query_many``. Pairs sharing a query share its negatives, and every positive document
    of that query is excluded. When fewer candidates survive the filters, random chunks of
    other documents fill the row (``fill_random``), so every row has the same number of columns.
    """
    config = config or MiningConfig()
    config.validate()
    notify = progress or (lambda event, n: None)
    started = time.perf_counter()
    mode = mining_mode(kit, config.mode)
    stats = MiningStats(mode=mode)
    encoder = kit.encoder
    table = table or ChunkTable(kit, encoder)
    rng = random.Random(config.seed)

    positives: dict[str, list[Pair]] = {}
    for pair in pairs:
        positives.setdefault(pair.query, []).append(pair)
    queries = list(positives)
    stats.queries = len(queries)
    notify("mining_total", len(queries))
    mined: dict[str, list[int]] = {}
    records: list[dict[str, Any]] = []
    fetch = min(len(table.ids), 2 * config.range_max + 20)
    for start in range(0, len(queries), config.batch_size):
        batch = queries[start : start + config.batch_size]
        if config.num_negatives:
            query_vectors = encoder.encode_queries(batch)  # for the margins and the dense search
            hits = search(kit, batch, k=fetch, mode=mode, query_vectors=query_vectors)
            positive_texts = list(dict.fromkeys(p.positive for q in batch for p in positives[q]))
            positive_vectors = table.passage_vectors(positive_texts)
        for i, query in enumerate(batch):
            if not config.num_negatives:
                mined[query] = []
                continue
            own = positives[query]
            # A positive without a document id is excluded by its text, when it is indexed.
            excluded = {p.positive_doc or table.doc_of_passage(p.positive) for p in own} - {""}
            kept, record = _filter_candidates(
                query,
                query_vectors[i],
                [positive_vectors[p.positive] for p in own],
                [h.chunk_id for h in hits[i]],
                excluded,
                table,
                config,
                stats,
                cross_encoder,
                [p.positive for p in own],
            )
            if config.fill_random and len(kept) < config.num_negatives:
                taken = excluded | {table.doc[c] for c in kept}
                fill = _random_chunks(table, rng, config.num_negatives - len(kept), taken)
                stats.random_fill += len(fill)
                record["random"] = [table.doc[c] for c in fill]
                kept = kept + fill
            mined[query] = kept
            record["positive_docs"] = sorted(excluded)
            records.append(record)
        notify("mining", len(batch))
    out = []
    for pair in pairs:
        extra = [table.passage[c] for c in mined[pair.query]]
        negatives = list(dict.fromkeys([*pair.negatives, *extra]))
        negatives = [n for n in negatives if n != pair.positive][: config.num_negatives]
        out.append(
            Pair(
                pair.query,
                pair.positive,
                tuple(negatives),
                query_id=pair.query_id,
                positive_doc=pair.positive_doc,
                source=pair.source,
                meta=pair.meta,
            )
        )
    stats.seconds = time.perf_counter() - started
    return MiningResult(pairs=out, records=records, stats=stats, config=config)


def _filter_candidates(
    query: str,
    query_vector: np.ndarray,
    positive_vectors: list[np.ndarray],
    chunk_ids: list[str],
    excluded: set[str],
    table: ChunkTable,
    config: MiningConfig,
    stats: MiningStats,
    cross_encoder: Any | None,
    positive_texts: list[str],
) -> tuple[list[int], dict[str, Any]]:
    seen: set[str] = set()
    ranked: list[int] = []  # best chunk of each candidate document, in retrieval order
    for chunk_id in chunk_ids:
        chunk = table.by_chunk_id.get(chunk_id)
        if chunk is None:
            continue
        doc = table.doc[chunk]
        if doc in seen:
            continue
        seen.add(doc)
        if doc in excluded:
            stats.positive_documents += 1
            continue
        ranked.append(chunk)
    stats.candidates += len(ranked)
    window = ranked[config.range_min : config.range_max]
    stats.out_of_range += len(ranked) - len(window)
    scores = table.vectors(window) @ query_vector if window else np.zeros(0)
    positive = min(float(v @ query_vector) for v in positive_vectors)
    record: dict[str, Any] = {"query": query, "positive_score": round(positive, 4)}
    ranks = range(config.range_min, config.range_min + len(window))
    survivors = list(zip(window, scores.tolist(), ranks, strict=True))
    if config.relative_margin is not None:
        threshold = positive - abs(positive) * config.relative_margin
        before = len(survivors)
        survivors = [s for s in survivors if s[1] <= threshold]
        stats.margin += before - len(survivors)
    ce_scores: dict[int, float] = {}
    if cross_encoder is not None and survivors:
        # Scoring every candidate would cost a cross-encoder pass per (query, candidate);
        # twice the needed number leaves room for the ones it rejects.
        head = survivors[: 2 * config.num_negatives]
        texts = [table.passage[c] for c, _, _ in head]
        predicted = cross_encoder.predict(
            [(query, t) for t in [*texts, *positive_texts]],
            batch_size=config.cross_encoder_batch_size,
            show_progress_bar=False,
        )
        predicted = [float(x) for x in np.asarray(predicted).reshape(-1)]
        bar = min(predicted[len(head) :])
        record["positive_ce_score"] = round(bar, 4)
        ce_scores = {c: s for (c, _, _), s in zip(head, predicted, strict=False)}
        kept_head = [s for s in head if ce_scores[s[0]] < bar]
        stats.cross_encoder += len(head) - len(kept_head)
        survivors = kept_head
    kept = survivors[: config.num_negatives]
    stats.mined += len(kept)
    record["negatives"] = [
        {
            "doc": table.doc[c],
            "rank": rank,
            "score": round(score, 4),
            **({"ce_score": round(ce_scores[c], 4)} if c in ce_scores else {}),
        }
        for c, score, rank in kept
    ]
    return [c for c, _, _ in kept], record


def _random_chunks(
    table: ChunkTable, rng: random.Random, count: int, excluded: set[str]
) -> list[int]:
    out: list[int] = []
    docs = set(excluded)
    for _ in range(20 * count):
        if len(out) == count or not table.ids:
            break
        chunk = table.ids[rng.randrange(len(table.ids))]
        if table.doc[chunk] not in docs:
            out.append(chunk)
            docs.add(table.doc[chunk])
    return out

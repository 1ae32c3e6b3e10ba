"""Score an encoder on held-out queries over the workspace's chunks, without touching its index.

Before/after comparisons must run the same procedure on both encoders, so neither side goes
through the live index: the chunks' passages are encoded (the workspace's own encoder reads its
vectors from the store's cache) and searched exactly. Hybrid fuses that dense chunk ranking with
the workspace's sparse ranking using the workspace's own fusion settings, as ``kit.query_many``
does. Hits are aggregated to documents (a document scores its best chunk) before the trec_eval
metrics, as in ``ragkit eval``.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ragkit.evaluation import evaluate
from ragkit.evaluation.report import ReportRun
from ragkit.training.mining import ChunkTable, search

if TYPE_CHECKING:
    from ragkit.collection_parts import QueryableSource
    from ragkit.encoders.protocol import Encoder
    from ragkit.encoders.sparse import SpladeEncoder

__all__ = ["REPORT_METRICS", "RetrievalEvaluator", "hard_subset"]

REPORT_METRICS: tuple[str, ...] = ("ndcg@10", "mrr@10", "recall@100")

ChunkRun = list[dict[int, float]]  # per query: chunk id -> score
DocRun = dict[str, dict[str, float]]  # per query id: document -> score


class RetrievalEvaluator:
    def __init__(
        self,
        kit: QueryableSource,
        queries: dict[str, str],
        qrels: dict[str, dict[str, int]],
        *,
        table: ChunkTable,
        chunk_ids: Sequence[int] | None = None,
        metrics: Sequence[str] = REPORT_METRICS,
        depth: int = 100,
    ) -> None:
        self.kit = kit
        self.qids = [q for q in queries if q in qrels]
        self.texts = [queries[q] for q in self.qids]
        self.qrels = qrels
        self.table = table
        self.chunks = list(chunk_ids) if chunk_ids is not None else list(table.ids)
        self.metrics = tuple(metrics)
        self.depth = depth
        fusion = getattr(kit.config, "fusion", None)
        # as deep as `ragkit eval` asks the workspace for (3 chunks per document of the cut)
        self.chunk_depth = max(depth * 3, getattr(fusion, "depth", 0))
        self._sparse: ChunkRun | None = None

    @property
    def has_sparse(self) -> bool:
        return "sparse" in self.kit.available_modes()

    def dense_chunks(
        self, encoder: Encoder, *, on_vectors: Callable[..., Any] | None = None
    ) -> ChunkRun:
        vectors = self.table.vectors(self.chunks, encoder=encoder)
        if on_vectors is not None:
            on_vectors(self.chunks, vectors)
        queries = encoder.encode_queries(self.texts)
        top = min(len(self.chunks), self.chunk_depth)
        out: ChunkRun = []
        for start in range(0, len(self.texts), 256):
            out.extend(self._top(queries[start : start + 256] @ vectors.T, top))
        return out

    def sparse_chunks(self) -> ChunkRun:
        if self._sparse is None:
            allowed = set(self.chunks)
            hits = search(self.kit, self.texts, k=self.chunk_depth, mode="sparse")
            self._sparse = [
                {
                    chunk: hit.score
                    for hit in query_hits
                    if (chunk := self.table.by_chunk_id.get(hit.chunk_id, -1)) in allowed
                }
                for query_hits in hits
            ]
        return self._sparse

    def splade_chunks(
        self, encoder: SpladeEncoder, *, on_vectors: Callable[..., Any] | None = None
    ) -> ChunkRun:
        """The sparse ranking of a SPLADE encoder, searched exactly over the evaluation chunks
        (the same procedure for the base and the fine-tuned model). Vectors the workspace's
        SPLADE channel already cached under this model's fingerprint are read, not encoded."""
        from scipy import sparse

        from ragkit.encoders.sparse import sparse_from_bytes, sparse_to_bytes

        fingerprint = str(encoder.fingerprint["id"])
        hashes = [self.table.text_hash[c] for c in self.chunks]
        cached = self.kit.store.cached_blobs(hashes, fingerprint)
        todo = [c for c in self.chunks if self.table.text_hash[c] not in cached]
        for start in range(0, len(todo), 512):
            part = todo[start : start + 512]
            matrix = encoder.encode_documents([self.table.embed_text[c] for c in part])
            blobs = [sparse_to_bytes(matrix[i]) for i in range(matrix.shape[0])]
            cached.update(zip([self.table.text_hash[c] for c in part], blobs, strict=True))
            if on_vectors is not None:
                on_vectors([self.table.text_hash[c] for c in part], blobs)
        width = encoder.vocab_size
        documents = sparse.vstack(
            [sparse_from_bytes(cached[h], width) for h in hashes], format="csr"
        )
        queries = encoder.encode_queries(self.texts)
        top = min(len(self.chunks), self.chunk_depth)
        out: ChunkRun = []
        for start in range(0, len(self.texts), 256):
            scores = (queries[start : start + 256] @ documents.T).toarray()
            # an inverted index returns only chunks sharing a term with the query
            out.extend({c: s for c, s in run.items() if s > 0} for run in self._top(scores, top))
        return out

    def _top(self, scores: np.ndarray, top: int) -> ChunkRun:
        ids = np.asarray(self.chunks)
        best = np.argpartition(-scores, top - 1, axis=1)[:, :top]
        out: ChunkRun = []
        for row in range(scores.shape[0]):
            picked = best[row][np.argsort(-scores[row, best[row]], kind="stable")]
            out.append(dict(zip(ids[picked].tolist(), scores[row, picked].tolist(), strict=True)))
        return out

    def documents(self, runs: ChunkRun) -> DocRun:
        """Chunk runs to document runs: a document takes its best chunk's score."""
        out: DocRun = {}
        for qid, run in zip(self.qids, runs, strict=True):
            ranked: dict[str, float] = {}
            for chunk, score in sorted(run.items(), key=lambda x: (-x[1], x[0])):
                ranked.setdefault(self.table.doc[chunk], float(score))
                if len(ranked) == self.depth:
                    break
            out[qid] = ranked
        return out

    def hybrid(self, dense: ChunkRun, sparse: ChunkRun | None = None) -> ChunkRun:
        """Dense fused with ``sparse`` (default: the workspace's own sparse channel)."""
        from ragkit.retrieval.fusion import fuse

        fusion = self.kit.config.fusion  # type: ignore[attr-defined]
        return [
            dict(
                fuse(
                    [d, s],
                    method=fusion.method,
                    weights=fusion.weights,
                    k=fusion.k,
                    normalization=fusion.normalization,
                )
            )
            for d, s in zip(dense, self.sparse_chunks() if sparse is None else sparse, strict=True)
        ]

    def score(self, run: DocRun) -> dict[str, float]:
        return evaluate(run, self.qrels, self.metrics).mean

    def dense_score(self, encoder: Encoder) -> dict[str, float]:
        return self.score(self.documents(self.dense_chunks(encoder)))

    def runs(
        self,
        encoder: Encoder,
        *,
        splade: SpladeEncoder | None = None,
        on_sparse_vectors: Callable[..., Any] | None = None,
        **kwargs: Any,
    ) -> dict[str, DocRun]:
        """``{"dense": run[, "sparse": run][, "hybrid": run]}``: document rankings per query.

        With ``splade`` the sparse side is that SPLADE model (its own mode, and the sparse half
        of hybrid); without it, hybrid fuses with the workspace's sparse channel."""
        dense = self.dense_chunks(encoder, **kwargs)
        out = {"dense": self.documents(dense)}
        if splade is not None:
            sparse = self.splade_chunks(splade, on_vectors=on_sparse_vectors)
            out["sparse"] = self.documents(sparse)
            out["hybrid"] = self.documents(self.hybrid(dense, sparse))
        elif self.has_sparse:
            out["hybrid"] = self.documents(self.hybrid(dense))
        return out

    def evaluate(self, encoder: Encoder, **kwargs: Any) -> dict[str, dict[str, float]]:
        """``{"dense": metrics[, "hybrid": metrics]}`` for this encoder."""
        return {mode: self.score(run) for mode, run in self.runs(encoder, **kwargs).items()}

    def report_runs(self, label: str, runs: dict[str, DocRun]) -> list[ReportRun]:
        """The runs as :class:`ReportRun` rows of an HTML report (per-query scores and hits)."""
        out = []
        for mode, run in runs.items():
            result = evaluate(run, self.qrels, self.metrics)
            out.append(
                ReportRun(
                    label,
                    mode,
                    result.mean,
                    per_query=result.per_query,
                    rankings={q: list(docs) for q, docs in run.items()},
                )
            )
        return out


def hard_subset(
    kit: QueryableSource,
    table: ChunkTable,
    texts: Sequence[str],
    qrels: dict[str, dict[str, int]],
    *,
    size: int,
    distractors: int = 2,
    seed: int = 0,
) -> list[int]:
    """A smaller corpus that stays hard and fair: every chunk of the relevant documents and of
    each query's top ``distractors`` documents under the *sparse* channel, then random others up
    to ``size`` chunks. Distractors picked by a dense model would hold exactly that model's
    confusions and so favour any other model; the lexical channel is neutral between the dense
    encoders being compared. Without a sparse channel the fill is random only. Cheaper to encode
    for every candidate model, at the price of comparability with whole-corpus numbers."""
    wanted = {doc for docs in qrels.values() for doc, grade in docs.items() if grade > 0}
    if distractors and "sparse" in kit.available_modes():
        for start in range(0, len(texts), 256):
            batch = list(texts[start : start + 256])
            for hits in search(kit, batch, k=5 * distractors, mode="sparse"):
                docs = dict.fromkeys(table.doc[table.by_chunk_id[h.chunk_id]] for h in hits)
                wanted.update([d for d in docs if d not in wanted][:distractors])
    chosen = [c for c in table.ids if table.doc[c] in wanted]
    rest = [c for c in table.ids if table.doc[c] not in wanted]
    random.Random(seed).shuffle(rest)
    return sorted(chosen + rest[: max(0, size - len(chosen))])

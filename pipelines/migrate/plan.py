"""``ragkit migrate plan``: what a migration would change and cost, writing nothing.

The plan compares the source collection's spec with the target's field by field, counts the
chunks the shadow will index (exactly when the chunking is shared; from a sample of documents
chunked the new way otherwise) and how many of their vectors the embedding cache already holds
for the new encoder, estimates the disk the shadow needs, and times a sample encode of the new
model to estimate how long the backfill takes.
"""

from __future__ import annotations

import dataclasses
import random
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from ragkit.collection import Collection
from ragkit.collection_parts import chunker_for
from ragkit.collection_spec import CollectionSpec
from ragkit.errors import WorkspaceError
from ragkit.store_collections import CollectionRecord
from ragkit.workspace import Workspace

from .target import TargetSpec, shadow_name

__all__ = ["Change", "MigrationPlan", "make_plan", "spec_changes"]

#: bytes per vector of each FAISS kind, relative to float32 (for the disk estimate)
_INDEX_FACTOR = {"flat": 1.0, "hnsw": 1.35, "int8": 0.27, "binary": 0.3, "ivfpq": 0.3}
_SAMPLE_DOCUMENTS = 300
_SAMPLE_TEXTS = 64


@dataclass(frozen=True)
class Change:
    field: str
    source: Any
    target: Any

    def __str__(self) -> str:
        return f"{self.field}: {self.source!r} → {self.target!r}"


@dataclass
class MigrationPlan:
    alias: str
    source: str
    target: str
    target_described: str
    changes: list[Change]
    documents: int
    chunks: int
    chunks_estimated: bool  # counted from a sample: the chunking changes
    cached: int  # of those chunks, vectors the cache holds for the new encoder
    to_encode: int
    dims: tuple[int, int]
    disk_bytes: int
    sample_rate: float | None = None  # chunks per second of the new encoder, measured
    seconds_estimated: float | None = None
    same_chunking: bool = True
    same_encoder: bool = False
    notes: list[str] = field(default_factory=list)
    #: the target collection's record (not stored by a plan)
    record: CollectionRecord | None = field(default=None, repr=False, compare=False)

    @property
    def empty(self) -> bool:
        return not self.changes

    def to_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values.pop("record", None)
        values["changes"] = [asdict(c) for c in self.changes]
        return values


def spec_changes(source: CollectionSpec, target: CollectionSpec) -> list[Change]:
    """What the target changes in vectors or chunks: encoder, dims, chunking, index, sparse."""
    found = []
    a, b = source.encoder, target.encoder
    if a.fingerprint != b.fingerprint:
        found.append(Change("encoder", a.name, b.name))
        for name in ("provider", "dim", "query_prompt", "document_prompt", "truncate_dim"):
            if getattr(a, name) != getattr(b, name):
                found.append(Change(f"encoder.{name}", getattr(a, name), getattr(b, name)))
    if source.chunking.fingerprint != target.chunking.fingerprint:
        found.append(
            Change("chunking", source.chunking.fingerprint[:12], target.chunking.fingerprint[:12])
        )
        for name in ("max_tokens", "overlap_tokens", "context_headers", "tokenizer"):
            old, new = getattr(source.chunking, name), getattr(target.chunking, name)
            if old != new:
                found.append(Change(f"chunking.{name}", old, new))
    for name in ("backend", "kind", "document_vectors"):
        if getattr(source.index, name) != getattr(target.index, name):
            found.append(
                Change(f"index.{name}", getattr(source.index, name), getattr(target.index, name))
            )
    for name in sorted(set(source.index.params) | set(target.index.params)):
        old, new = source.index.params.get(name), target.index.params.get(name)
        if old != new:
            found.append(Change(f"index.{name}", old, new))
    if source.sparse != target.sparse:
        found.append(Change("sparse", source.sparse.model, target.sparse.model))
    return found


def make_plan(
    workspace: Workspace,
    source: Collection,
    target: TargetSpec,
    *,
    alias: str,
    sample: bool = True,
) -> MigrationPlan:
    store = workspace.store
    record = workspace.new_collection_record(
        "(planned)",
        encoder=target.encoder,
        chunking=target.chunking,
        index=target.index,
        sparse=target.sparse,
        state="building",
    )
    name = shadow_name(workspace, record.encoder.get("name", "collection"), record.model_fp)
    record = dataclasses.replace(record, name=name)
    changes = spec_changes(source.record.spec, record.spec)
    documents = store.counts()["documents"]
    fp = record.spec.chunking.fingerprint
    same_chunking = fp == source.chunking_fp or store.has_chunks(fp)
    encoder = workspace.parts.encoder(Collection(store, workspace.root, record))
    if same_chunking:
        rows = store.chunk_hashes(fp)
        hashes = [h for _, h, _ in rows]
        cached = len(store.cached_vectors(hashes, record.model_fp, record.dim)) if hashes else 0
        chunks, texts = len(rows), [t for _, h, t in rows]
    else:
        chunks, cached, texts = _estimate_chunks(workspace, encoder, target, record)
    to_encode = chunks - cached
    factor = _INDEX_FACTOR.get(record.spec.index.kind, 1.0)
    vector = 4 * record.dim
    disk = int(to_encode * (vector + 96) + chunks * (vector * factor + 16))
    if not same_chunking:
        disk += int(chunks * 600)  # the new chunk rows (text, context, keys)
    plan = MigrationPlan(
        alias=alias,
        source=source.name,
        target=name,
        target_described=target.described,
        changes=changes,
        documents=documents,
        chunks=chunks,
        chunks_estimated=not same_chunking,
        cached=cached,
        to_encode=to_encode,
        dims=(source.record.dim, record.dim),
        disk_bytes=disk,
        same_chunking=same_chunking,
        same_encoder=source.record.model_fp == record.model_fp,
        record=record,
    )
    if sample and to_encode and texts:
        plan.sample_rate = _sample_rate(encoder, texts)
        plan.seconds_estimated = to_encode / plan.sample_rate if plan.sample_rate else None
    if plan.empty:
        plan.notes.append("the target is the source's spec: nothing to migrate")
    if store.open_migration(alias) is not None:
        plan.notes.append(f"alias {alias!r} has a migration open already: `ragkit migrate status`")
    return plan


def _estimate_chunks(
    workspace: Workspace, encoder: Any, target: TargetSpec, record: CollectionRecord
) -> tuple[int, int, list[str]]:
    store = workspace.store
    doc_ids = store.doc_ids()
    if not doc_ids:
        return 0, 0, []
    sample = doc_ids
    if len(doc_ids) > _SAMPLE_DOCUMENTS:
        sample = random.Random(0).sample(doc_ids, _SAMPLE_DOCUMENTS)
    chunker = chunker_for(encoder, target.chunking)
    chunks = [c for d in sample for c in chunker.chunk(d, store.load_document(d))]
    hashes = list({c.text_hash for c in chunks})
    hits = len(store.cached_vectors(hashes, record.model_fp, record.dim)) if hashes else 0
    scale = len(doc_ids) / len(sample)
    hit_share = hits / len(hashes) if hashes else 0.0
    total = round(len(chunks) * scale)
    return total, round(total * hit_share), [c.embed_text for c in chunks]


def _sample_rate(encoder: Any, texts: list[str]) -> float | None:
    """Chunks per second of the new encoder on a seeded sample of the texts it will encode
    (a first, warm-up call is not timed). Nothing is cached: a plan writes nothing."""
    picked = random.Random(1).sample(texts, min(len(texts), _SAMPLE_TEXTS))
    try:
        encoder.encode_documents(picked[:4])
        started = time.perf_counter()
        encoder.encode_documents(picked)
        elapsed = time.perf_counter() - started
    except Exception as exc:  # a remote encoder that cannot be reached: the plan still shows
        raise WorkspaceError(f"the new encoder could not encode a sample: {exc}") from exc
    return len(picked) / elapsed if elapsed > 0 else None

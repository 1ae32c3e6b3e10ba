"""``ragkit doctor --repair``: rebuild from the store whatever the checks found broken.

A writer like ingest: it holds the workspace's writer lock throughout, encodes what the cache
lacks before any store transaction (the cache commits on its own, so a crash never loses that
work), and commits rebuilt indexes as a new generation through :class:`CollectionWriter`, in
one store transaction, exactly as an ingest batch does. Besides that commit it writes only
cached vectors and a ``runs`` row; it never deletes a store row nor touches documents and
chunks: the store is the record of truth, and a damaged store is reported, not "fixed".
"""

from __future__ import annotations

from collections.abc import Callable

from ragkit.collection import Collection, CollectionWriter
from ragkit.doctor import (
    CHECKSUMS,
    DENSE_FILE,
    DENSE_IDS,
    DOCUMENT_CACHE,
    DOCUMENT_VECTORS,
    EMBEDDINGS,
    SPARSE_FILE,
    SPARSE_IDS,
    STORE_INTEGRITY,
    STRAY_FILES,
    CollectionReport,
    DoctorReport,
    check_workspace,
)
from ragkit.doctor_qdrant import QDRANT_SPARSE, compare_sparse
from ragkit.document_vectors import encode_stored_leads
from ragkit.embedding_cache import encode_into_cache
from ragkit.errors import EncoderMismatchError
from ragkit.indexes import close_index
from ragkit.pipelines._runner import job
from ragkit.sparse_channel import SparseChannel
from ragkit.workspace import Workspace

__all__ = ["repair"]

ProgressCallback = Callable[[str, int], None]


def repair(
    workspace: Workspace,
    *,
    quick: bool = False,
    wait: float = 0.0,
    progress: ProgressCallback | None = None,
) -> DoctorReport:
    """Check, rebuild what is broken, check again; the report is the second check's, with
    ``repaired`` saying what was done (or why something could not be)."""
    with job(workspace, "repair", {"quick": quick}, wait=wait) as run:
        found = check_workspace(workspace, quick=quick)
        actions = run.followed + _repair(workspace, found, progress or (lambda event, n: None))
        report = check_workspace(workspace, quick=quick)
        report.repaired = actions
        run.outcome(report.ok, {"repaired": actions, "ok": report.ok})
    return report


def _repair(workspace: Workspace, found: DoctorReport, progress: ProgressCallback) -> list[str]:
    damaged = [c for c in found.store if c.name == STORE_INTEGRITY and not c.ok]
    if damaged:
        # Indexes rebuilt from a damaged store would only copy the damage.
        return [f"nothing rebuilt: the store itself is damaged ({damaged[0].detail})"]
    actions: list[str] = []
    for report in found.collections:
        if not report.ok:
            actions += _repair_collection(workspace, report, progress)
    return actions


def _repair_collection(
    workspace: Workspace, report: CollectionReport, progress: ProgressCallback
) -> list[str]:
    record = workspace.store.collection(report.name)
    if record is None:
        return []
    collection = Collection(workspace.store, workspace.root, record)
    channel = workspace.sparse_channel_for(collection)
    actions: list[str] = []
    if report.problem(EMBEDDINGS):
        actions.append(_encode_uncached(workspace, collection, progress))
    if report.problem(DOCUMENT_CACHE):
        actions.append(_encode_document_vectors(workspace, collection, progress))
    rebuild = _what_to_rebuild(report, channel)
    uncached = workspace.store.count_uncached(record.model_fp, record.dim, collection.chunking_fp)
    backfilling = workspace.store.backfilling(record.name) is not None  # uncached by design
    if "dense" in rebuild and uncached and not backfilling:
        rebuild.discard("dense")
        actions.append(f"{report.name}: dense index not rebuilt: {uncached} chunks lack a vector")
    if rebuild:
        if "sparse" in rebuild and channel is not None:
            channel.warm(workspace.store, progress, collection.chunking_fp)
        generation = _commit_rebuild(collection, channel, rebuild)
        names = " and ".join(sorted(rebuild))
        actions.append(f"{report.name}: rebuilt the {names} index as generation {generation}")
    if channel is not None and report.problem(QDRANT_SPARSE):
        actions.append(rewrite_qdrant_sparse(collection, channel))
    stray = report.check(STRAY_FILES)
    if stray is not None and not stray.ok:
        collection.remove_stale_files()  # a rebuild's writer has already done so: harmless
        count = stray.counts.get("files", 0)
        actions.append(f"{report.name}: removed {count} stray file{'s' * (count != 1)}")
    return actions


def _what_to_rebuild(report: CollectionReport, channel: SparseChannel | None) -> set[str]:
    rebuild = set()
    changed = report.check(CHECKSUMS)
    changed_counts = changed.counts if changed is not None and not changed.ok else {}
    if report.problem(DENSE_FILE, DENSE_IDS) or changed_counts.get("dense"):
        rebuild.add("dense")
    sparse_broken = report.problem(SPARSE_FILE, SPARSE_IDS) or changed_counts.get("sparse")
    if channel is not None and sparse_broken:
        rebuild.add("sparse")
    if report.problem(DOCUMENT_VECTORS) or changed_counts.get("documents"):
        rebuild.add("documents")
    return rebuild


def rewrite_qdrant_sparse(collection: Collection, channel: SparseChannel) -> str:
    """Compare every point's sparse vector with the channel's index and commit the ones that
    differ again, as a new generation through the writer's own commit."""
    writer = CollectionWriter(collection, channel)
    try:
        found = compare_sparse(writer.index, channel, writer.sparse, limit=None)
        wrong = found.ids()
        if len(wrong) and writer.copy_sparse_again(wrong):
            with writer.committing():
                pass  # nothing to apply: the mirror's copy is the whole commit
    finally:
        close_index(writer.index)
    return (
        f"{collection.name}: rewrote {len(wrong)} sparse vectors in its Qdrant points "
        f"({len(found.missing)} missing, {len(found.stale)} stale)"
    )


def _encode_uncached(
    workspace: Workspace, collection: Collection, progress: ProgressCallback
) -> str:
    """Encode the chunks without a cached vector, so that the index can be rebuilt from the
    cache, with the collection's own encoder (loaded from its spec)."""
    record = collection.record
    _, _, missing = collection.vectors_from_cache()
    try:
        encoder = workspace.encoder_for(collection)
    except EncoderMismatchError as exc:
        return f"{record.name}: {len(missing)} chunks have no cached vector: {exc}"
    texts = {text_hash: text for _, text_hash, text in missing}
    encode_into_cache(encoder, workspace.store, record.model_fp, texts, progress)
    return f"{record.name}: encoded and cached {len(missing)} chunks that had no vector"


def _encode_document_vectors(
    workspace: Workspace, collection: Collection, progress: ProgressCallback
) -> str:
    """Cache the document vectors the store's documents lack (``[index] document_vectors``),
    so that the document index can be rebuilt from the cache."""
    try:
        encoder = workspace.encoder_for(collection)
    except EncoderMismatchError as exc:
        return f"{collection.name}: document vectors not encoded: {exc}"
    encoded = encode_stored_leads(workspace.store, collection, encoder, progress)
    return f"{collection.name}: encoded and cached {encoded} document vectors"


def _commit_rebuild(
    collection: Collection, channel: SparseChannel | None, rebuild: set[str]
) -> int:
    """One new generation, through the writer's own commit, like an ingest batch."""
    writer = CollectionWriter(collection, channel, rebuild=rebuild)
    try:
        with writer.committing():
            pass  # nothing to apply: the rebuilt indexes are the whole commit
    finally:
        close_index(writer.index)
    return collection.record.generation

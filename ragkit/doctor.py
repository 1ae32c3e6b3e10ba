"""``ragkit doctor``: check that a workspace's index files agree with its store.

The store is the record of truth and every index is derived from it, so a damaged index loses
no data: these checks say what disagrees, and ``ragkit doctor --repair``
(:mod:`ragkit.pipelines.repair`) rebuilds it from the store. Checking only reads: it writes
nothing, only peeks at the writer lock and never loads the dense encoder, so it is safe next to
a running ingest.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ragkit.collection import Collection
from ragkit.encoders.drift import drift_checks
from ragkit.errors import IndexCorruptError, StoreDamagedError, WorkspaceError
from ragkit.index_checksums import file_digest
from ragkit.indexes import close_index
from ragkit.sparse_channel import SparseChannel, sparse_path

if TYPE_CHECKING:
    from ragkit.collection_parts import CheckedSource
    from ragkit.store import Store

__all__ = ["Check", "CollectionReport", "DoctorReport", "check_workspace"]

OK, PROBLEM, SKIPPED = "ok", "problem", "skipped"
#: ragkit.toml disagrees with a collection's spec: reported, not a fault of the indexes
DRIFT = "drift"

# Check names: the repair reads them back to decide what to rebuild.
STORE_INTEGRITY = "store integrity"
FOREIGN_KEYS = "foreign keys"
ALIASES = "aliases"
DENSE_FILE = "dense index"
DENSE_IDS = "dense ids"
EMBEDDINGS = "cached vectors"
SPARSE_FILE = "sparse index"
SPARSE_IDS = "sparse ids"
CHECKSUMS = "checksums"
STRAY_FILES = "stray files"
SETTINGS = "settings"
DOCUMENT_VECTORS = "document vectors"
DOCUMENT_CACHE = "cached document vectors"
STATE = "state"


@dataclass(frozen=True, slots=True)
class Check:
    """One finding: ``status`` is ok, problem or skipped (could not be checked, not a problem)."""

    name: str
    status: str
    detail: str = ""
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status != PROBLEM


@dataclass
class CollectionReport:
    name: str
    aliases: list[str]
    generation: int
    checks: list[Check]
    state: str = "live"

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)

    def problem(self, *names: str) -> bool:
        return any(check.name in names and not check.ok for check in self.checks)

    def check(self, name: str) -> Check | None:
        return next((check for check in self.checks if check.name == name), None)


@dataclass
class DoctorReport:
    """What ``ragkit doctor`` found; after a repair, ``repaired`` says what it did."""

    workspace: str
    store: list[Check]
    collections: list[CollectionReport]
    repaired: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.store) and all(c.ok for c in self.collections)

    def collection(self, name: str) -> CollectionReport | None:
        return next((c for c in self.collections if c.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, **asdict(self)}


def check_workspace(workspace: CheckedSource, *, quick: bool = False) -> DoctorReport:
    """Every check, for the store and for each collection (also those no alias points at)."""
    store = workspace.store
    checks = _store_checks(store, quick)
    collections: list[CollectionReport] = []
    try:
        aliases = store.aliases()
        checks.append(_alias_check(store, aliases))
        writer_active = workspace.lock.held_elsewhere()
        qdrant_aliases = _qdrant_alias_checks(workspace)
        for record in store.collections():
            collection = Collection(store, workspace.root, record)
            names = sorted(a for a, target in aliases.items() if target == record.name)
            channel = workspace.sparse_channel_for(collection)
            backfill = store.backfilling(record.name)
            report = check_collection(
                collection, channel, names, writer_active, backfilling=backfill is not None
            )
            report.checks.append(_settings_check(workspace, collection))
            report.checks.extend(drift_checks(workspace, record))  # remote encoders only
            report.checks.extend(qdrant_aliases(collection))
            collections.append(report)
    except (sqlite3.DatabaseError, StoreDamagedError) as exc:
        checks.append(Check("store", PROBLEM, f"cannot read the store ({exc})"))
    return DoctorReport(str(workspace.root), checks, collections)


def _settings_check(workspace: CheckedSource, collection: Collection) -> Check:
    from ragkit.collection_spec import MIGRATION_HINT
    from ragkit.workspace_status import collection_drift

    drift = collection_drift(workspace, collection)
    if not drift:
        return Check(SETTINGS, OK, "ragkit.toml matches the collection's spec")
    detail = "ragkit.toml differs: " + "; ".join(map(str, drift)) + f". {MIGRATION_HINT}"
    return Check(SETTINGS, DRIFT, detail, {"fields": len(drift)})


def _store_checks(store: Store, quick: bool) -> list[Check]:
    """SQLite's integrity check, and that every chunk's document row still exists."""
    try:
        broken = store.integrity_problems(quick=quick)
        orphans = store.foreign_key_problems()
    except (sqlite3.DatabaseError, StoreDamagedError) as exc:
        return [Check(STORE_INTEGRITY, PROBLEM, f"{store.path}: {exc}")]
    how = "quick_check" if quick else "integrity_check"
    checks = [
        Check(STORE_INTEGRITY, PROBLEM, "; ".join(broken) + " (restore store.sqlite from a backup)")
        if broken
        else Check(STORE_INTEGRITY, OK, f"PRAGMA {how}: ok")
    ]
    if orphans:
        tables = sorted({f"{table} → {parent}" for table, _, parent in orphans})
        detail = f"{len(orphans)} rows refer to missing rows ({', '.join(tables)})"
        checks.append(Check(FOREIGN_KEYS, PROBLEM, detail, {"rows": len(orphans)}))
    else:
        checks.append(Check(FOREIGN_KEYS, OK, "every row's parent exists"))
    return checks


def _alias_check(store: Store, aliases: dict[str, str]) -> Check:
    known = {record.name for record in store.collections()}
    dangling = {a: c for a, c in aliases.items() if c not in known}
    if dangling:
        names = ", ".join(f"{a} → {c}" for a, c in sorted(dangling.items()))
        return Check(ALIASES, PROBLEM, f"aliases point at missing collections: {names}")
    return Check(ALIASES, OK, ", ".join(f"{a} → {c}" for a, c in sorted(aliases.items())))


def check_collection(
    collection: Collection,
    channel: SparseChannel | None,
    aliases: list[str],
    writer_active: bool,
    *,
    backfilling: bool = False,
) -> CollectionReport:
    """Index files against the store's chunk ids; the cache; files left by a crash. A shadow
    being ``backfilling`` holds part of the chunks by design: missing dense ids and uncached
    vectors are its progress, not a fault (extra and duplicate ids still are)."""
    snapshot = _Snapshot.read(collection, channel)
    try:
        record = collection.record
        checks = [
            snapshot.dense_check,
            _ids_check(DENSE_IDS, snapshot.dense, snapshot.store_ids, partial=backfilling),
            _backfill_check() if backfilling else _cache_check(collection),
        ]
        if channel is not None:
            checks += [
                snapshot.sparse_check,
                _ids_check(SPARSE_IDS, snapshot.sparse, snapshot.store_ids),
            ]
        checks.extend(_qdrant_sparse_checks(collection, channel, snapshot, writer_active))
        if record.spec.index.document_vectors:
            checks += _document_vector_checks(collection, snapshot.generation, backfilling)
        checks.append(_checksum_check(collection, channel))
        checks.append(_stray_check(collection, writer_active))
        return CollectionReport(record.name, aliases, record.generation, checks, record.state)
    finally:
        _close(snapshot.dense)


@dataclass
class _Snapshot:
    """The committed generation's indexes and the store's chunk ids, read so that they belong
    together: when a writer commits meanwhile, everything is read again."""

    dense: Any
    dense_check: Check
    sparse: Any
    sparse_check: Check
    store_ids: np.ndarray
    generation: int = 0

    @classmethod
    def read(cls, collection: Collection, channel: SparseChannel | None) -> _Snapshot:
        for attempt in range(3):
            collection.refresh()
            generation = collection.record.generation
            dense, dense_check = _load_dense(collection)
            sparse, sparse_check = _load_sparse(collection, channel)
            store_ids = collection.store.all_chunk_ids(collection.chunking_fp)
            collection.refresh()
            if collection.record.generation == generation or attempt == 2:
                return cls(dense, dense_check, sparse, sparse_check, store_ids, generation)
            _close(dense)
        raise AssertionError("unreachable")


def _load_dense(collection: Collection) -> tuple[Any, Check]:
    generation = collection.record.generation
    if generation == 0:
        return _Empty(), Check(DENSE_FILE, OK, "nothing committed yet")
    path = collection.dense_path(generation)
    return _load(DENSE_FILE, path, "vectors", collection.load_dense)


def _load_sparse(collection: Collection, channel: SparseChannel | None) -> tuple[Any, Check]:
    record = collection.record
    if channel is None:
        return None, Check(SPARSE_FILE, SKIPPED, "the collection has no sparse channel")
    if record.generation == 0:
        return _Empty(), Check(SPARSE_FILE, OK, "nothing committed yet")
    if not collection.has_sparse(channel):
        held = record.sparse.get("kind") or "none"
        detail = f"the index holds {held}, the collection's spec names {channel.kind}"
        return None, Check(SPARSE_FILE, PROBLEM, detail)
    path = sparse_path(collection.dir, channel, record.generation)
    return _load(SPARSE_FILE, path, "chunks", lambda: collection.load_sparse(channel))


def _load(name: str, path: Path, unit: str, load: Callable[[], Any]) -> tuple[Any, Check]:
    if not path.exists():
        return None, Check(name, PROBLEM, f"{path.name} is missing")
    try:
        index = load()
    except WorkspaceError as exc:  # not damage: e.g. an embedded Qdrant open in another process
        return None, Check(name, SKIPPED, f"{path.name} cannot be opened now: {exc}")
    except IndexCorruptError as exc:
        return None, Check(name, PROBLEM, str(exc))
    except Exception as exc:  # any backend's failure to read a damaged file is the finding
        return None, Check(name, PROBLEM, f"{path.name} does not load: {exc}")
    return index, Check(name, OK, f"{path.name}: {len(index)} {unit}")


def _ids_check(name: str, index: Any, store_ids: np.ndarray, *, partial: bool = False) -> Check:
    """Extra ids point at chunks that are gone; missing ones are chunks no query can find
    (or, ``partial``, the part of a shadow still to be backfilled)."""
    if index is None:
        return Check(name, SKIPPED, "the index did not load")
    ids = np.asarray(index.ids(), dtype=np.int64)
    unique = np.unique(ids)
    counts = {
        "extra": len(np.setdiff1d(unique, store_ids)),
        "missing": len(np.setdiff1d(store_ids, unique)),
        "duplicate": int(len(ids) - len(unique)),
    }
    if partial and not counts["extra"] and not counts["duplicate"]:
        done = len(store_ids) - counts["missing"]
        detail = f"backfill in progress: {done} of {len(store_ids)} chunks, no stray id"
        return Check(name, OK, detail, counts)
    if any(counts.values()):
        found = ", ".join(f"{n} {what}" for what, n in counts.items() if n)
        return Check(name, PROBLEM, f"{found} ids against {len(store_ids)} chunks", counts)
    return Check(name, OK, f"same {len(store_ids)} ids as the store", counts)


def _backfill_check() -> Check:
    return Check(EMBEDDINGS, SKIPPED, "backfill in progress: `ragkit migrate status` shows it")


def _cache_check(collection: Collection) -> Check:
    """A rebuild takes every vector from the cache, so each chunk needs one."""
    record = collection.record
    uncached = collection.store.count_uncached(record.model_fp, record.dim, collection.chunking_fp)
    encoder = record.encoder.get("name", record.model_fp[:12])
    if uncached:
        detail = f"{uncached} chunks have no cached vector for {encoder}"
        return Check(EMBEDDINGS, PROBLEM, detail, {"missing": uncached})
    return Check(EMBEDDINGS, OK, f"every chunk has a vector for {encoder}", {"missing": 0})


def _checksum_check(collection: Collection, channel: SparseChannel | None) -> Check:
    """Each committed file against the digest its commit recorded: a garbled FAISS file can
    still load and hold the right ids. ``counts`` says which index to rebuild."""
    record = collection.record
    if record.generation == 0:
        return Check(CHECKSUMS, OK, "nothing committed yet")
    held = channel if collection.has_sparse(channel) else None
    files = collection.checksummed_files(held, record.generation)
    recorded = collection.store.index_checksums(record.name, record.generation)
    changed, verified, notes = [], [], []
    for kind, path in files.items():
        if not path.is_file():
            continue  # reported by the file's own check
        if path.name not in recorded:
            notes.append(f"{path.name}: no checksum recorded (written before ragkit kept them)")
        elif file_digest(path) != recorded[path.name]:
            changed.append(kind)
            notes.append(f"{path.name} changed after it was written")
        else:
            verified.append(path.name)
    if "dense" not in files:
        notes.append(f"{record.backend}: the vectors live in Qdrant, no file to checksum")
    kinds = ("dense", "sparse", *(("documents",) if "documents" in files else ()))
    counts = {kind: int(kind in changed) for kind in kinds}
    detail = "; ".join([*(f"{name}: ok" for name in verified), *notes])
    status = PROBLEM if changed else OK if verified else SKIPPED
    return Check(CHECKSUMS, status, detail, counts)


def _stray_check(collection: Collection, writer_active: bool) -> Check:
    if writer_active:
        return Check(STRAY_FILES, SKIPPED, "a writer is at work; its next generation is not stray")
    stale = collection.stale_files()
    if stale:
        names = ", ".join(path.name for path in stale[:5]) + (" …" if len(stale) > 5 else "")
        return Check(STRAY_FILES, PROBLEM, names, {"files": len(stale)})
    return Check(STRAY_FILES, OK, "only the committed generation", {"files": 0})


def _qdrant_alias_checks(workspace: CheckedSource) -> Callable[[Collection], list[Check]]:
    """Qdrant aliases against the store's (:mod:`ragkit.doctor_qdrant`), read once."""
    from ragkit.doctor_qdrant import QdrantAliasChecks

    aliases = QdrantAliasChecks.read(workspace)
    return lambda collection: [c for c in [aliases.check(collection)] if c is not None]


def _qdrant_sparse_checks(
    collection: Collection, channel: SparseChannel | None, snapshot: _Snapshot, writer_active: bool
) -> list[Check]:
    """With ``qdrant_sparse``: the points' sparse vectors against the channel's index."""
    from ragkit.doctor_qdrant import qdrant_sparse_check

    dense, sparse = snapshot.dense, snapshot.sparse
    check = qdrant_sparse_check(collection, channel, dense, sparse, writer_active=writer_active)
    return [] if check is None else [check]


def _document_vector_checks(
    collection: Collection, generation: int, backfilling: bool
) -> list[Check]:
    """``[index] document_vectors``: the committed generation's document index holds exactly
    one vector per stored document (under its first chunk's id: a vector of a document since
    changed or deleted is an extra id), and the cache has every document's vector, which a
    rebuild takes them from. A shadow gets them at the end of its backfill."""
    from ragkit.document_vectors import document_path, load_document_index, uncached_leads

    if backfilling:
        detail = "added at the end of the backfill: `ragkit migrate status` shows it"
        return [Check(DOCUMENT_VECTORS, SKIPPED, detail)]
    store = collection.store
    if generation == 0:
        index_check = Check(DOCUMENT_VECTORS, OK, "nothing committed yet")
    else:
        path = document_path(collection, generation)
        index, loaded = _load(
            DOCUMENT_VECTORS, path, "documents", lambda: load_document_index(collection)
        )
        leads = store.lead_chunk_ids(collection.chunking_fp)
        index_check = loaded if index is None else _ids_check(DOCUMENT_VECTORS, index, leads)
        if index is not None and index_check.ok:
            index_check = Check(
                DOCUMENT_VECTORS, OK, f"one vector for each of {len(leads)} documents"
            )
    uncached = uncached_leads(store, collection)
    if uncached:
        detail = f"{uncached} documents have no cached document vector"
        cache_check = Check(DOCUMENT_CACHE, PROBLEM, detail, {"missing": uncached})
    else:
        cache_check = Check(
            DOCUMENT_CACHE, OK, "every document has a cached vector", {"missing": 0}
        )
    return [index_check, cache_check]


class _Empty:
    """Generation 0: no file yet, so no backend needs opening to know it holds nothing."""

    def __len__(self) -> int:
        return 0

    def ids(self) -> np.ndarray:
        return np.zeros(0, dtype=np.int64)


def _close(index: Any) -> None:
    """Qdrant backends hold a client or an open shard; FAISS and BM25 hold nothing."""
    close_index(index)

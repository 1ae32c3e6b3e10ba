"""The store's tables and the numbered steps that bring an older store up to date.

A new store is made the way an old one is upgraded: the version 1 tables, then every step in
:data:`UPGRADES`, so both end with the same tables. Opening never upgrades (queries and
``ragkit doctor`` only read): a writer applies the pending steps under the writer lock, all in
one transaction with ``meta.schema_version``, so a crash leaves the old version or the new one.
A release that changes the tables appends one function here and nothing else.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from collections.abc import Callable
from typing import Any

from ragkit.collection_spec import (
    ChunkingSpec,
    CollectionSpec,
    DenseIndexSpec,
    EncoderSpec,
    SparseSpec,
)
from ragkit.config import IndexConfig, WorkspaceConfig

__all__ = ["SCHEMA_VERSION", "UPGRADES", "create_tables", "legacy_spec", "upgrade_tables"]

#: the fusion method of a collection recorded before collections stored their spec, when
#: ragkit.toml sets no ``[fusion]``: what ragkit fused by then (the default is DBSF since)
LEGACY_FUSION_METHOD = "rrf"

# The tables of ragkit 0.1.0 (schema version 1).
_VERSION_1 = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sources(
    name TEXT PRIMARY KEY, root TEXT NOT NULL, config_json TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS files(
    source TEXT NOT NULL, path TEXT NOT NULL, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
    content_hash TEXT NOT NULL, format TEXT NOT NULL, updated REAL NOT NULL,
    PRIMARY KEY(source, path));
CREATE TABLE IF NOT EXISTS documents(
    doc_id TEXT PRIMARY KEY, source TEXT NOT NULL, file_path TEXT NOT NULL, uri TEXT NOT NULL,
    title TEXT NOT NULL, format TEXT NOT NULL, content_hash TEXT NOT NULL,
    metadata_json TEXT NOT NULL, blocks_json TEXT NOT NULL, updated REAL NOT NULL);
CREATE INDEX IF NOT EXISTS documents_by_file ON documents(source, file_path);
CREATE TABLE IF NOT EXISTS chunks(
    id INTEGER PRIMARY KEY AUTOINCREMENT, chunk_id TEXT NOT NULL UNIQUE,
    doc_id TEXT NOT NULL REFERENCES documents(doc_id) ON DELETE CASCADE,
    ordinal INTEGER NOT NULL, text TEXT NOT NULL, context TEXT NOT NULL,
    headings_json TEXT NOT NULL, text_hash TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS chunks_by_doc ON chunks(doc_id);
CREATE TABLE IF NOT EXISTS embeddings(
    text_hash TEXT NOT NULL, model_fp TEXT NOT NULL, vector BLOB NOT NULL,
    PRIMARY KEY(text_hash, model_fp)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS collections(
    name TEXT PRIMARY KEY, model_fp TEXT NOT NULL, chunking_fp TEXT NOT NULL,
    backend TEXT NOT NULL, dim INTEGER NOT NULL, state TEXT NOT NULL,
    generation INTEGER NOT NULL DEFAULT 0, encoder_json TEXT NOT NULL,
    index_json TEXT NOT NULL, sparse_fp TEXT NOT NULL DEFAULT '',
    sparse_json TEXT NOT NULL DEFAULT '{}', created REAL NOT NULL, updated REAL NOT NULL);
CREATE TABLE IF NOT EXISTS aliases(alias TEXT PRIMARY KEY, collection TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs(
    run_id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, started REAL NOT NULL,
    finished REAL, status TEXT NOT NULL, stats_json TEXT NOT NULL DEFAULT '{}', error TEXT,
    pid INTEGER, host TEXT);
CREATE TABLE IF NOT EXISTS checkpoints(
    job TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY(job, key));
"""


def _v2_index_checksums(db: sqlite3.Connection) -> None:
    """A digest of each committed index file, written in the commit that makes the file's
    generation current, so ``ragkit doctor`` finds a file whose bytes changed afterwards."""
    db.execute(
        "CREATE TABLE IF NOT EXISTS index_checksums(collection TEXT NOT NULL, file TEXT NOT NULL,"
        " generation INTEGER NOT NULL, digest TEXT NOT NULL, size INTEGER NOT NULL,"
        " PRIMARY KEY(collection, file))"
    )


def _v3_run_parameters(db: sqlite3.Connection) -> None:
    """What each run was asked to do (its parameters, secrets masked) and, for a job started
    inside another, the outer job's run: written by the job runner (``pipelines/_runner.py``)."""
    db.execute("ALTER TABLE runs ADD COLUMN params_json TEXT NOT NULL DEFAULT '{}'")
    db.execute("ALTER TABLE runs ADD COLUMN parent_id INTEGER")


_CHUNKS_V3 = """
CREATE TABLE chunks_v3(
    id INTEGER PRIMARY KEY AUTOINCREMENT, chunking_fp TEXT NOT NULL, chunk_id TEXT NOT NULL,
    doc_id TEXT NOT NULL REFERENCES documents(doc_id) ON DELETE CASCADE,
    ordinal INTEGER NOT NULL, text TEXT NOT NULL, context TEXT NOT NULL,
    headings_json TEXT NOT NULL, text_hash TEXT NOT NULL, UNIQUE(chunking_fp, chunk_id))
"""
_CHUNK_COLUMNS = "chunk_id, doc_id, ordinal, text, context, headings_json, text_hash"


def _v4_collection_specs(db: sqlite3.Connection, config: WorkspaceConfig) -> None:
    """Each collection stores its whole spec (``spec_json``); chunks are keyed by the chunking
    fingerprint, so collections chunked differently live over the same documents; state
    ``ready`` becomes ``live``; the index settings lose any secret 0.1.0 copied into them.

    Existing chunks keep their ``id`` (the vector id in every index file) and the table's
    AUTOINCREMENT counter, and are scoped to the chunking they were made with
    (``meta.chunking_fp``, which ingest kept equal to the collection's)."""
    db.execute("ALTER TABLE collections ADD COLUMN spec_json TEXT NOT NULL DEFAULT '{}'")
    meta_fp = _meta(db, "chunking_fp")
    cursor = db.execute("SELECT * FROM collections")
    columns = [column[0] for column in cursor.description]
    for row in cursor.fetchall():
        record = dict(zip(columns, row, strict=True))
        spec = legacy_spec(record, meta_fp, config)
        index = json.loads(record["index_json"])
        index.pop("qdrant_api_key", None)
        state = "live" if record["state"] == "ready" else record["state"]
        db.execute(
            "UPDATE collections SET spec_json=?, index_json=?, state=?, chunking_fp=? WHERE name=?",
            (spec.to_json(), json.dumps(index), state, spec.chunking.fingerprint, record["name"]),
        )
    chunks_fp = meta_fp or _default_chunking_fp(db)
    (seq,) = db.execute(
        "SELECT COALESCE(MAX(seq), 0) FROM sqlite_sequence WHERE name='chunks'"
    ).fetchone()
    db.execute(_CHUNKS_V3)
    db.execute(
        f"INSERT INTO chunks_v3(id, chunking_fp, {_CHUNK_COLUMNS})"
        f" SELECT id, ?, {_CHUNK_COLUMNS} FROM chunks ORDER BY id",
        (chunks_fp,),
    )
    db.execute("DROP TABLE chunks")
    db.execute("ALTER TABLE chunks_v3 RENAME TO chunks")
    db.execute("CREATE INDEX chunks_by_doc ON chunks(doc_id)")
    # Ids are never reused: keep the counter where 0.1.0 left it, past deleted chunks too.
    db.execute("DELETE FROM sqlite_sequence WHERE name='chunks'")
    db.execute(
        "INSERT INTO sqlite_sequence(name, seq) SELECT 'chunks', MAX(?, COALESCE(MAX(id), 0))"
        " FROM chunks",
        (int(seq),),
    )


def _v5_migrations(db: sqlite3.Connection) -> None:
    """``ragkit migrate``: one row per migration of an alias onto a shadow collection (its
    state, backfill cursor and counts, fitted adapter, gate result), and the history of every
    alias move, so a rollback knows where to go back to and ``ragkit collections`` can show it."""
    db.execute(
        "CREATE TABLE IF NOT EXISTS migrations(id INTEGER PRIMARY KEY AUTOINCREMENT,"
        " alias TEXT NOT NULL, source TEXT NOT NULL, target TEXT NOT NULL, state TEXT NOT NULL,"
        " cursor TEXT NOT NULL DEFAULT '', stats_json TEXT NOT NULL DEFAULT '{}',"
        " plan_json TEXT NOT NULL DEFAULT '{}', adapter_json TEXT NOT NULL DEFAULT '{}',"
        " gate_json TEXT NOT NULL DEFAULT '{}', created REAL NOT NULL, updated REAL NOT NULL)"
    )
    db.execute(
        "CREATE TABLE IF NOT EXISTS alias_history(id INTEGER PRIMARY KEY AUTOINCREMENT,"
        " alias TEXT NOT NULL, collection TEXT NOT NULL, previous TEXT, reason TEXT NOT NULL,"
        " at REAL NOT NULL)"
    )


def _meta(db: sqlite3.Connection, key: str) -> str:
    row = db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
    return str(row[0]) if row else ""


def _default_chunking_fp(db: sqlite3.Connection) -> str:
    row = db.execute(
        "SELECT c.chunking_fp FROM collections c JOIN aliases a ON a.collection = c.name"
        " WHERE a.alias = 'default'"
    ).fetchone()
    return str(row[0]) if row else ""


def legacy_spec(record: dict[str, Any], meta_fp: str, config: WorkspaceConfig) -> CollectionSpec:
    """The spec of a collection recorded before collections stored one: the encoder, index and
    sparse channel from its row, the chunking fingerprint from ``meta`` (the chunks stored),
    and the settings no row kept (prompts as configured, chunking budget) from ragkit.toml as
    it is now. Also what a reader uses on a store no writer has upgraded yet."""
    described = json.loads(record.get("encoder_json") or "{}")
    name = str(described.get("name") or config.encoder.model)
    encoder = config.encoder
    encoder_spec = EncoderSpec(
        model=name,
        query_prompt=encoder.query_prompt,
        document_prompt=encoder.document_prompt,
        truncate_dim=encoder.truncate_dim,
        max_seq_length=encoder.max_seq_length,
        name=name,
        dim=int(record["dim"]),
        fingerprint=str(record["model_fp"]),
    )
    chunking = config.chunking
    chunking_spec = ChunkingSpec(
        max_tokens=chunking.max_tokens,
        overlap_tokens=chunking.overlap_tokens,
        context_headers=chunking.context_headers,
        fingerprint=meta_fp or str(record["chunking_fp"]),
    )
    index = json.loads(record.get("index_json") or "{}")
    index.pop("qdrant_api_key", None)
    known = {k: v for k, v in index.items() if k in IndexConfig.__dataclass_fields__}
    sparse = json.loads(record.get("sparse_json") or "{}")
    if record.get("sparse_fp"):
        sparse_model = str(sparse.get("name") or sparse.get("kind") or "bm25")
    elif int(record.get("generation") or 0):
        sparse_model = "none"  # committed without a sparse index: the channel was off
    else:
        sparse_model = config.sparse.model
    seeded = CollectionSpec.seed(config, encoder=encoder_spec, chunking=chunking_spec)
    fusion = seeded.fusion
    if "fusion" not in config.sections_set:  # it fused by the default of its day
        fusion = dataclasses.replace(fusion, method=LEGACY_FUSION_METHOD)
    return CollectionSpec(
        encoder=encoder_spec,
        chunking=chunking_spec,
        index=DenseIndexSpec.from_config(IndexConfig(**{**known, "document_vectors": False})),
        sparse=SparseSpec(model=sparse_model, max_seq_length=config.sparse.max_seq_length),
        fusion=fusion,
    )


Step = Callable[[sqlite3.Connection, WorkspaceConfig], None]

#: (version reached, step): each step takes a store of the version before it to that version,
#: given ragkit.toml as it is at upgrade time (for settings an older store never recorded).
UPGRADES: list[tuple[int, Step]] = [
    (2, lambda db, config: _v2_index_checksums(db)),
    (3, lambda db, config: _v3_run_parameters(db)),
    (4, _v4_collection_specs),
    (5, lambda db, config: _v5_migrations(db)),
]
SCHEMA_VERSION = UPGRADES[-1][0]


def create_tables(db: sqlite3.Connection, config: WorkspaceConfig | None = None) -> None:
    """Make an empty store current; call inside a transaction (a no-op on an existing one)."""
    for statement in _VERSION_1.split(";"):
        if statement.strip():
            db.execute(statement)
    if db.execute("SELECT 1 FROM meta WHERE key='schema_version'").fetchone() is None:
        db.execute("INSERT INTO meta(key, value) VALUES('schema_version', '1')")
    upgrade_tables(db, config)


def upgrade_tables(db: sqlite3.Connection, config: WorkspaceConfig | None = None) -> list[int]:
    """Apply the steps above the store's version, in order; call inside a transaction.
    Returns the versions reached (empty when the store was current)."""
    config = config or WorkspaceConfig()
    (version,) = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    applied = []
    for target, step in UPGRADES:
        if target > int(version):
            step(db, config)
            applied.append(target)
    if applied:
        db.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(applied[-1]),))
    return applied

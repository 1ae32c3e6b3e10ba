"""The store's tables and the numbered steps that bring an older store up to date.

A new store is made the way an old one is upgraded: the version 1 tables, then every step in
:data:`UPGRADES`, so both end with the same tables. Opening never upgrades (queries and
``ragkit doctor`` only read): a writer applies the pending steps under the writer lock, all in
one transaction with ``meta.schema_version``, so a crash leaves the old version or the new one.
A release that changes the tables appends one function here and nothing else.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

__all__ = ["SCHEMA_VERSION", "UPGRADES", "create_tables", "upgrade_tables"]

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


#: (version reached, step): each step takes a store of the version before it to that version.
UPGRADES: list[tuple[int, Callable[[sqlite3.Connection], None]]] = [
    (2, _v2_index_checksums),
    (3, _v3_run_parameters),
]
SCHEMA_VERSION = UPGRADES[-1][0]


def create_tables(db: sqlite3.Connection) -> None:
    """Make an empty store current; call inside a transaction (a no-op on an existing one)."""
    for statement in _VERSION_1.split(";"):
        if statement.strip():
            db.execute(statement)
    if db.execute("SELECT 1 FROM meta WHERE key='schema_version'").fetchone() is None:
        db.execute("INSERT INTO meta(key, value) VALUES('schema_version', '1')")
    upgrade_tables(db)


def upgrade_tables(db: sqlite3.Connection) -> list[int]:
    """Apply the steps above the store's version, in order; call inside a transaction.
    Returns the versions reached (empty when the store was current)."""
    (version,) = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    applied = []
    for target, step in UPGRADES:
        if target > int(version):
            step(db)
            applied.append(target)
    if applied:
        db.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(applied[-1]),))
    return applied

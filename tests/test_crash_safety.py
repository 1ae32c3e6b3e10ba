"""Kill a real ingest process with SIGKILL mid-way; the next run must finish cleanly."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

import ragkit
from ragkit.encoders import DenseEncoder

WORDS = [
    "backup",
    "restore",
    "snapshot",
    "disk",
    "storage",
    "pool",
    "sqlite",
    "index",
    "query",
    "network",
    "dns",
    "ssh",
    "key",
]


def make_corpus(root: Path, files: int) -> None:
    for i in range(files):
        paragraphs = [
            " ".join(WORDS[(i + j + n) % len(WORDS)] for n in range(40)) + f" doc{i} part{j}."
            for j in range(6)
        ]
        path = root / f"d{i // 50}" / f"file{i:04d}.md"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"# File {i}\n\n" + "\n\n".join(paragraphs), encoding="utf-8")


def chunk_count(store: Path) -> int:
    try:
        with sqlite3.connect(store, timeout=1) as db:
            return db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0]
    except sqlite3.Error:
        return 0


@pytest.mark.slow
def test_sigkill_during_ingest_leaves_a_consistent_workspace(tmp_path, tiny_model) -> None:  # type: ignore[no-untyped-def]
    model_dir = tmp_path / "model"
    tiny_model.save(str(model_dir))
    corpus = tmp_path / "corpus"
    make_corpus(corpus, 400)
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "ragkit.toml").write_text(
        f'[encoder]\nmodel = "{model_dir}"\n\n[chunking]\nmax_tokens = 64\n', encoding="utf-8"
    )
    command = [
        sys.executable,
        "-m",
        "ragkit.cli.app",
        "ingest",
        str(corpus),
        "-w",
        str(ws),
        "--commit-every",
        "200",
        "--json",
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    kills = 0
    for delay in (0.0, 0.4, 0.9):
        process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
        )
        start_count = chunk_count(ws / "store.sqlite")
        deadline = time.monotonic() + 60
        # wait for at least one commit of this run, then let it run a little more
        while time.monotonic() < deadline and process.poll() is None:
            if chunk_count(ws / "store.sqlite") > start_count:
                break
            time.sleep(0.05)
        time.sleep(delay)
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            kills += 1
        process.wait()
    assert kills >= 2, "the ingest finished before it could be killed; make the corpus larger"

    finish = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert finish.returncode == 0, finish.stderr

    encoder = DenseEncoder.load(ragkit.WorkspaceConfig.load(ws / "ragkit.toml").encoder)
    kit = ragkit.open(ws, encoder=encoder, create=True)
    fresh = ragkit.open(tmp_path / "fresh", encoder=encoder, create=True)
    fresh.config.chunking = kit.config.chunking
    fresh.ingest(corpus)

    chunk_rows = kit.store._query("SELECT doc_id, ordinal FROM chunks")
    assert len(chunk_rows) == len(set(chunk_rows)), "duplicate chunks after crash recovery"
    assert kit.store.counts()["chunks"] == fresh.store.counts()["chunks"]
    assert kit.store.counts()["documents"] == 400
    collection = kit.collection()
    assert collection is not None
    stored = set(kit.store.all_chunk_ids().tolist())
    assert set(collection.load_dense().ids().tolist()) == stored
    assert set(collection.load_sparse(kit.sparse_channel).ids().tolist()) == stored
    generation = f".g{collection.record.generation:06d}."
    leftovers = [p.name for p in collection.dir.iterdir() if generation not in p.name]
    assert leftovers == []
    # dense, sparse and document vectors (on by default) of the committed generation
    assert len(list(collection.dir.iterdir())) == 3
    statuses = [run["status"] for run in kit.store.runs(limit=10)]
    # killed runs stay visible: the next job marked them crashed, not finished
    assert statuses[0] == "ok" and "crashed" in statuses and "running" not in statuses

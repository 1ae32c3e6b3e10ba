"""The pipelined ingest: a producer thread reads, parses and chunks ahead of the encoder.

It must be bounded (the producer waits when the queue holds ``pipeline_chunks``), give the very
rows and vectors a serial ingest gives, fail a bad file alone in the middle of a batch, and stop
its thread and the parse workers when the main thread fails.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

import ragkit
from ragkit.compute import InProcessEngine
from ragkit.connectors import LoadOptions
from ragkit.connectors.pool import ParsePool
from ragkit.documents import Block
from ragkit.errors import ConnectorError
from ragkit.pipelines import ingest as ingest_module
from ragkit.pipelines import ingest_stage
from ragkit.pipelines.ingest_pipeline import FileProducer, Handoff, run_ahead
from ragkit.pipelines.ingest_stage import Staging
from tests.test_parse_pool import NESTED_HTML, children

WORDS = [
    "the",
    "cat",
    "sat",
    "on",
    "the",
    "red",
    "apple",
    "dog",
    "ate",
    "a",
    "green",
    "pear",
    "banana",
    "cherry",
    "grape",
    "lemon",
    "plum",
]
PRODUCER = "ragkit-ingest-producer"


def write_corpus(root: Path, files: int = 60) -> Path:
    """Files of a few paragraphs each, some long enough for several chunks at 32 tokens."""
    for i in range(files):
        paragraphs = [
            " ".join(WORDS[(i + j + k) % len(WORDS)] for k in range(6 + (i * j) % 23))
            for j in range(1 + i % 5)
        ]
        sub = root / f"part{i % 3}"
        sub.mkdir(parents=True, exist_ok=True)
        suffix = ".md" if i % 2 else ".txt"
        heading = f"# file {i}\n\n" if suffix == ".md" else ""
        (sub / f"doc{i:03d}{suffix}").write_text(heading + "\n\n".join(paragraphs) + "\n")
    return root


def snapshot(kit) -> tuple[list[tuple], np.ndarray]:  # type: ignore[no-untyped-def]
    rows = kit.store._query(
        "SELECT id, chunk_id, doc_id, ordinal, text, context, text_hash FROM chunks ORDER BY id"
    )
    rows = [tuple(r) for r in rows]
    collection = kit.collection()
    vectors = kit.store.cached_vectors(
        [r[6] for r in rows], collection.record.model_fp, collection.record.dim
    )
    return rows, np.stack([vectors[r[6]] for r in rows])


def ingest_with(tmp_path: Path, encoder, docs: Path, name: str, **ingest):  # type: ignore[no-untyped-def]
    kit = ragkit.open(tmp_path / name, encoder=encoder, create=True)
    kit.config.chunking.max_tokens = 32
    report = kit.ingest(docs, **ingest)
    return kit, report


def producer_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == PRODUCER]


# -- the handoff is bounded ----------------------------------------------------------------
def test_the_producer_waits_when_the_handoff_is_full() -> None:
    produced: list[int] = []

    def items(stopped: Callable[[], bool]) -> Iterator[int]:
        for i in range(20):
            produced.append(i)
            yield i

    with run_ahead(items, depth=3, weight=lambda item: 1) as handoff:
        with handoff._cond:  # the condition the producer waits on when the queue is full
            assert handoff._cond.wait_for(lambda: handoff.producer_waits > 0, timeout=30)
            # nothing taken yet: 3 queued (the depth) and the 4th made, waiting for room
            assert len(produced) == 4 and handoff.peak == 3
        assert list(handoff.items()) == list(range(20))
    assert handoff.peak == 3 and handoff.producer_waits >= 1
    assert not producer_threads()


def test_an_item_heavier_than_the_depth_passes_alone() -> None:
    handoff: Handoff[str] = Handoff(depth=4)
    handoff.put("big", 10)  # an empty queue always takes one item, or it could never pass
    handoff.finish()
    assert list(handoff.items()) == ["big"] and handoff.peak == 10


def test_the_ingest_holds_at_most_pipeline_chunks_ahead(  # type: ignore[no-untyped-def]
    tmp_path, tiny_encoder, monkeypatch
) -> None:
    docs = write_corpus(tmp_path / "docs")
    handoffs: list[Handoff] = []

    def recording(*args, **kwargs):  # type: ignore[no-untyped-def]
        context = run_ahead(*args, **kwargs)
        handoff = context.__enter__()
        handoffs.append(handoff)
        return _Entered(context, handoff)

    monkeypatch.setattr(ingest_module, "run_ahead", recording)
    original = Staging.stage_documents

    def slow_first(self, *args):  # type: ignore[no-untyped-def]
        (handoff,) = handoffs
        with handoff._cond:  # the main thread stalls until the producer has filled the queue
            assert handoff._cond.wait_for(lambda: handoff.producer_waits > 0, timeout=30)
        return original(self, *args)

    monkeypatch.setattr(Staging, "stage_documents", slow_first)
    options = LoadOptions(pipeline_chunks=5)
    kit, report = ingest_with(tmp_path, tiny_encoder, docs, "ws", load_options=options)
    (handoff,) = handoffs
    biggest = max(len(c) for c in _chunks_per_file(kit).values())
    assert handoff.producer_waits > 0 and handoff.peak <= max(5, biggest)
    assert report.files_new == 60 and report.chunks_added == kit.store.counts()["chunks"]
    kit.close()


class _Entered:
    def __init__(self, context, handoff) -> None:  # type: ignore[no-untyped-def]
        self.context, self.handoff = context, handoff

    def __enter__(self):  # type: ignore[no-untyped-def]
        return self.handoff

    def __exit__(self, *exc):  # type: ignore[no-untyped-def]
        return self.context.__exit__(*exc)


def _chunks_per_file(kit) -> dict[str, list[str]]:  # type: ignore[no-untyped-def]
    out: dict[str, list[str]] = {}
    for path, chunk_id in kit.store._query(
        "SELECT file_path, chunk_id FROM chunks JOIN documents USING(doc_id)"
    ):
        out.setdefault(path, []).append(chunk_id)
    return out


# -- the same results as a serial ingest ---------------------------------------------------
def test_pipelined_and_serial_ingests_make_the_same_chunks_and_vectors(  # type: ignore[no-untyped-def]
    tmp_path, tiny_encoder, monkeypatch
) -> None:
    docs = write_corpus(tmp_path / "docs")
    # Small encoder parts, so the main thread encodes ahead whenever the producer is behind.
    monkeypatch.setattr(ingest_stage, "part_size", lambda encoder: 4)
    encoded_ahead: list[bool] = []
    original = Staging.encode_ahead
    monkeypatch.setattr(
        Staging, "encode_ahead", lambda self: encoded_ahead.append(original(self)) or False
    )
    serial, serial_report = ingest_with(
        tmp_path,
        tiny_encoder,
        docs,
        "serial",
        load_options=LoadOptions(pipeline_chunks=0),
        commit_every=40,
    )
    assert not encoded_ahead  # a serial ingest never waits on a producer
    piped, piped_report = ingest_with(tmp_path, tiny_encoder, docs, "piped", commit_every=40)
    assert any(encoded_ahead)  # the main thread encoded while the producer was behind
    assert not producer_threads()
    rows, vectors = snapshot(serial)
    piped_rows, piped_vectors = snapshot(piped)
    assert len(rows) > 60 and piped_rows == rows  # same ids, order, texts and contexts
    assert np.array_equal(piped_vectors, vectors)
    for field in ("files_new", "documents_added", "chunks_added", "chunks_encoded"):
        assert getattr(piped_report, field) == getattr(serial_report, field), field
    assert piped_report.chunks_from_cache == serial_report.chunks_from_cache == 0
    assert piped_report.commits == serial_report.commits > 1
    query = "green pear banana"
    assert [h.chunk_id for h in piped.query(query, k=5)] == [
        h.chunk_id for h in serial.query(query, k=5)
    ]
    # A re-ingest after an edit goes through the same producer for known files.
    (docs / "part1" / "doc001.md").write_text("# file 1\n\nlemon plum cherry\n")
    again = piped.ingest(docs)
    assert (again.files_changed, again.files_unchanged) == (1, 59)
    serial.close()
    piped.close()


class _OneCallPerJobEngine(InProcessEngine):
    """In-process encoding that says, as the Ray engine does, that each call starts workers."""

    encodes_ahead = False

    def __init__(self) -> None:
        self.calls: list[int] = []

    def encode(self, encoder, model_fp, items, step):  # type: ignore[no-untyped-def]
        self.calls.append(len(items))
        yield from super().encode(encoder, model_fp, items, step)


def test_an_engine_with_a_start_up_per_call_is_not_fed_part_by_part(  # type: ignore[no-untyped-def]
    tmp_path, tiny_encoder, monkeypatch
) -> None:
    docs = write_corpus(tmp_path / "docs")
    monkeypatch.setattr(ingest_stage, "part_size", lambda encoder: 4)
    engine = _OneCallPerJobEngine()
    kit = ragkit.open(tmp_path / "ws", encoder=tiny_encoder, create=True)
    kit.config.chunking.max_tokens = 32
    kit.config.index.document_vectors = False
    kit.store.encode_engine = engine
    report = kit.ingest(docs, commit_every=40)
    # one call per commit batch (each holds all of its chunks), none while parsing ran ahead
    assert report.commits > 1 and len(engine.calls) == report.commits
    assert sum(engine.calls) == report.chunks_encoded == kit.store.counts()["chunks"]
    kit.close()


def test_progress_events_count_every_file_once_after_the_total(  # type: ignore[no-untyped-def]
    tmp_path, tiny_encoder
) -> None:
    docs = write_corpus(tmp_path / "docs", files=30)
    (docs / "style.css").write_text("body {}\n")
    events: list[tuple[str, int]] = []
    kit, report = ingest_with(
        tmp_path, tiny_encoder, docs, "ws", progress=lambda e, n: events.append((e, n))
    )
    files = [e for e in events if e[0] in ("files_total", "file")]
    assert files[0] == ("files_total", 31) and files[1:] == [("file", 1)] * 31
    assert sum(n for e, n in events if e == "chunks") == report.chunks_encoded
    kit.close()


# -- a bad file in the middle fails alone --------------------------------------------------
def test_bad_files_in_the_middle_of_a_pipelined_batch_fail_alone(  # type: ignore[no-untyped-def]
    tmp_path, tiny_encoder
) -> None:
    docs = write_corpus(tmp_path / "docs", files=40)
    outside = tmp_path / "secret.txt"
    outside.write_text("secret outside the root\n")
    (docs / "part1" / "bad_binary.txt").write_bytes(b"\x00\x01" * 100)
    (docs / "part1" / "bad_deep.html").write_bytes(NESTED_HTML)  # over the time limit
    (docs / "part1" / "bad_link.txt").symlink_to(outside)  # leaves the root
    options = LoadOptions(parse_timeout_s=1.0)
    kit, report = ingest_with(tmp_path, tiny_encoder, docs, "ws", load_options=options)
    failed = {Path(f.path).name: f.reason for f in report.failures}
    assert set(failed) == {"bad_binary.txt", "bad_deep.html", "bad_link.txt"}
    assert "binary" in failed["bad_binary.txt"]
    assert "took longer than 1 s" in failed["bad_deep.html"]
    assert "symlink leaves the source root" in failed["bad_link.txt"]
    assert report.files_new == 40 and report.files_failed == 3
    uris = {uri for (uri,) in kit.store._query("SELECT DISTINCT file_path FROM documents")}
    assert len(uris) == 40 and "part1/doc001.md" in uris  # the files after them went on
    assert "secret" not in " ".join(row[4] for row in snapshot(kit)[0])
    assert not producer_threads() and not children()
    kit.close()


def test_a_batch_sent_to_a_worker_fails_only_the_file_over_the_limit() -> None:
    options = LoadOptions()
    with ParsePool(timeout_s=1.0, max_pending=16) as pool:
        files = [(f"f{i}.txt".encode(), "txt") for i in range(8)]
        files[3] = (NESTED_HTML, "html")
        futures = [
            pool.submit(data, fmt=fmt, path=Path(f"f{i}.{fmt}"), uri=f"f{i}", options=options)
            for i, (data, fmt) in enumerate(files)
        ]
        with pytest.raises(ConnectorError, match="took longer than 1 s") as failed:
            futures[3].result()
        assert failed.value.path == "f3.html"
        for i in (0, 1, 2, 4, 5, 6, 7):
            assert futures[i].result().documents[0].blocks == [Block(f"f{i}.txt")]
        # All 8 were queued while the worker started: f0-f2 went together, the 8.6 MB f3 alone
        # (past 4 MiB a batch takes no more files), and f4-f7 to a new worker after f3's kill.
        assert pool.batches_sent == 3 and pool.workers_started == 2
    assert not children()


# -- a failure on either side stops both ----------------------------------------------------
def test_an_error_in_the_main_thread_stops_the_producer_and_the_pool(  # type: ignore[no-untyped-def]
    tmp_path, tiny_encoder, monkeypatch
) -> None:
    docs = write_corpus(tmp_path / "docs")
    staged: list[str] = []

    def fail_third(self, source, file_path, documents, chunked=None):  # type: ignore[no-untyped-def]
        staged.append(file_path)
        assert producer_threads() and children()  # both alive while the job runs
        if len(staged) == 3:
            raise RuntimeError("staging broke")

    monkeypatch.setattr(Staging, "stage_documents", fail_third)
    kit = ragkit.open(tmp_path / "ws", encoder=tiny_encoder, create=True)
    with pytest.raises(RuntimeError, match="staging broke"):
        kit.ingest(docs, load_options=LoadOptions(pipeline_chunks=2))
    assert len(staged) == 3
    assert not producer_threads() and not children()
    assert kit.store.counts()["chunks"] == 0  # nothing committed
    kit.close()


def test_an_error_in_the_producer_reaches_the_main_thread(  # type: ignore[no-untyped-def]
    tmp_path, tiny_encoder, monkeypatch
) -> None:
    docs = write_corpus(tmp_path / "docs")
    original = FileProducer._start

    def broken(self, entry):  # type: ignore[no-untyped-def]
        if entry.uri.endswith("doc030.txt"):
            raise ValueError("producer bug")
        return original(self, entry)

    monkeypatch.setattr(FileProducer, "_start", broken)
    kit = ragkit.open(tmp_path / "ws", encoder=tiny_encoder, create=True)
    with pytest.raises(ValueError, match="producer bug"):
        kit.ingest(docs)
    assert not producer_threads() and not children()
    kit.close()

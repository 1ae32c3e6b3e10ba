"""Parsing under per-file limits: a slow or memory-hungry file fails alone, the batch goes on.

Limits here are small (1 s, 48 MiB) and the inputs really exceed them: 1,600 subtrees of 500
nested <div>s (8.6 MB; nesting is flattened below 512 levels, and lexbor is superlinear in depth
up to there) take ~5 s in the HTML parser, and a 32 MB single-line text needs well over 48 MiB
to decode.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ragkit.config import IngestConfig, WorkspaceConfig
from ragkit.connectors import LoadOptions
from ragkit.connectors.pool import ParsePool
from ragkit.documents import Block, Document
from ragkit.errors import ConfigError, ConnectorError

OPTIONS = LoadOptions()
NESTED_HTML = (
    b"<html><body>" + (b"<div>" * 500 + b"deep" + b"</div>" * 500) * 1600 + b"</body></html>"
)


def parse(pool: ParsePool, data: bytes, name: str) -> list[Document]:
    fmt = {"html": "html", "txt": "txt", "xyz": "xyz"}[name.rsplit(".", 1)[1]]
    return pool.parse(data, fmt=fmt, path=Path(name), uri=name, options=OPTIONS).documents


def children() -> set[int]:
    """Live child processes of this process (Linux /proc), to prove none is left behind."""
    me, out = os.getpid(), set()
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text()
        except (OSError, ValueError):
            continue
        if entry.name.isdigit() and int(stat.rsplit(")", 1)[1].split()[1]) == me:
            out.add(int(entry.name))
    return out


def test_a_hanging_parse_is_killed_and_the_next_file_parses_in_a_new_worker() -> None:
    with ParsePool(timeout_s=1.0) as pool:
        assert parse(pool, b"first file", "a.txt")[0].blocks == [Block("first file")]
        (first_worker,) = pool.worker_pids()
        with pytest.raises(ConnectorError) as failed:
            parse(pool, NESTED_HTML, "deep.html")
        assert failed.value.path == "deep.html"
        assert "took longer than 1 s to parse" in failed.value.reason
        assert "parse_timeout" in failed.value.reason
        assert parse(pool, b"next file", "b.txt")[0].blocks == [Block("next file")]
        assert pool.worker_pids() != [first_worker] and pool.workers_started == 2
    assert not children()


def test_running_out_of_memory_is_a_clear_per_file_failure() -> None:
    with ParsePool(memory_bytes=48 * 1024**2) as pool:
        assert parse(pool, b"small file fits", "small.txt")[0].title == "small"
        with pytest.raises(ConnectorError, match=r"needed more than 48\.0 MiB of memory"):
            parse(pool, b"word " * 6_400_000, "huge.txt")
        assert parse(pool, b"next file", "b.txt")[0].blocks == [Block("next file")]


def test_parse_errors_come_back_as_connector_errors_and_the_worker_is_reused() -> None:
    with ParsePool() as pool:
        with pytest.raises(ConnectorError, match="unsupported format 'xyz'"):
            parse(pool, b"??", "image.xyz")
        with pytest.raises(ConnectorError, match="binary"):
            parse(pool, b"\x00\x01" * 100, "binary.txt")
        assert parse(pool, b"ok", "c.txt")[0].blocks == [Block("ok")]
        assert pool.workers_started == 1


def test_submit_runs_files_on_several_workers_and_close_stops_a_busy_one() -> None:
    pool = ParsePool(max_workers=2, timeout_s=30.0)
    slow = pool.submit(NESTED_HTML, fmt="html", path=Path("deep.html"), uri="d", options=OPTIONS)
    quick = pool.submit(b"quick", fmt="txt", path=Path("q.txt"), uri="q", options=OPTIONS)
    assert quick.result().documents[0].blocks == [Block("quick")]
    assert not slow.done() and len(pool.worker_pids()) == 2
    pool.close()  # kills the busy worker at once instead of waiting ~10 s for it
    with pytest.raises(ConnectorError, match="ingest stopped"):
        slow.result()
    assert not children()


def test_ingest_limits_come_from_ragkit_toml_and_only_changes_are_written() -> None:
    config = WorkspaceConfig.from_dict({"ingest": {"parse_timeout": 5, "max_chunks_per_file": 9}})
    assert config.to_dict() == {"ingest": {"parse_timeout": 5, "max_chunks_per_file": 9}}
    options = LoadOptions.from_config(config.ingest)
    assert (options.parse_timeout_s, options.max_chunks_per_file) == (5.0, 9)
    assert options.parse_memory_bytes == 2 * 1024**3
    assert WorkspaceConfig().to_dict() == {}
    with pytest.raises(ConfigError, match=r"\[ingest\] parse_memory_mib must be a number >= 0"):
        WorkspaceConfig.from_dict({"ingest": {"parse_memory_mib": -1}})
    assert IngestConfig(parse_timeout=0).parse_timeout == 0  # 0: no limit


def test_ingest_fails_a_slow_file_and_a_file_over_the_chunk_cap_and_goes_on(  # type: ignore[no-untyped-def]
    workspace, docs
) -> None:
    (docs / "deep.html").write_bytes(NESTED_HTML)
    (docs / "long.txt").write_text(
        "\n\n".join(f"paragraph {i} " + "lemon " * 40 for i in range(30)), encoding="utf-8"
    )
    records = "".join(f'{{"id": "r{i}", "text": "{"plum " * 40}"}}\n' for i in range(8))
    (docs / "many.jsonl").write_text(records, encoding="utf-8")
    workspace.config.chunking.max_tokens = 32
    options = LoadOptions(parse_timeout_s=1.0, max_chunks_per_file=6)
    report = workspace.ingest(docs, load_options=options)
    failed = {Path(f.path).name: f.reason for f in report.failures}
    assert set(failed) == {"deep.html", "long.txt", "many.jsonl"}
    assert "took longer than 1 s" in failed["deep.html"]
    assert failed["long.txt"].startswith("would make more than 6 chunks")
    assert "max_chunks_per_file" in failed["many.jsonl"]  # the cap is per file, not per record
    assert report.files_new == 3 and report.files_failed == 3
    uris = {uri for (uri,) in workspace.store._query("SELECT uri FROM documents")}
    assert uris == {"pets.md", "fruit.txt", "sub/net.md"}  # nothing of the failed files staged
    assert workspace.query("banana cherry", k=1)[0].uri == "fruit.txt"
    assert not children()


def test_the_default_cap_is_per_document_so_record_files_of_many_documents_ingest(  # type: ignore[no-untyped-def]
    workspace, docs
) -> None:
    # A BEIR corpus or a jsonl export holds tens of thousands of records in one file: a cap
    # per file failed it whole. One huge document still fails alone.
    (docs / "long.txt").write_text(
        "\n\n".join(f"paragraph {i} " + "lemon " * 40 for i in range(30)), encoding="utf-8"
    )
    records = "".join(f'{{"id": "r{i}", "text": "plum {i} " }}\n' for i in range(12))
    (docs / "many.jsonl").write_text(records, encoding="utf-8")
    workspace.config.chunking.max_tokens = 32
    assert LoadOptions().max_chunks_per_file == 0  # no file cap unless asked
    report = workspace.ingest(docs, load_options=LoadOptions(max_chunks_per_document=6))
    failed = {Path(f.path).name: f.reason for f in report.failures}
    assert set(failed) == {"long.txt"}, failed
    assert failed["long.txt"].startswith("one document would make more than 6 chunks")
    assert "max_chunks_per_document" in failed["long.txt"]
    (count,) = workspace.store._query(
        "SELECT COUNT(*) FROM chunks JOIN documents USING(doc_id) WHERE file_path = 'many.jsonl'"
    )[0]
    assert count == 12  # one chunk per record: the file as a whole is not capped at 6


def test_an_interrupted_ingest_leaves_no_worker_behind(workspace, docs, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from ragkit.pipelines.ingest_stage import Staging

    def interrupt(self, source, file_path, documents, chunked=None):  # type: ignore[no-untyped-def]
        assert children()  # the worker is alive while the job runs
        raise KeyboardInterrupt

    monkeypatch.setattr(Staging, "stage_documents", interrupt)
    with pytest.raises(KeyboardInterrupt):
        workspace.ingest(docs)
    assert not children()

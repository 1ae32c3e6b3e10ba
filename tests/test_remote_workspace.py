"""A workspace on a remote encoder: ingest, query, eval, doctor's drift check, keys kept out of
the store and the output, presets and ``ragkit encoders``. The server is loopback only."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import ragkit
from ragkit.cli.app import app
from ragkit.config import EncoderConfig
from ragkit.encoders.drift import ENCODER_DRIFT
from ragkit.encoders.http.client import RemoteEncoderError
from ragkit.encoders.presets import PRESETS, apply_preset
from ragkit.errors import ConfigError
from tests.embedding_server import EmbeddingServer, hashed_bag_of_words, serving

KEY = "sk-test-KEEP-ME-SECRET-42"
TOPICS = [
    "backup restore snapshot",
    "sqlite database wal vacuum",
    "git rebase merge bisect",
    "dns dhcp subnet router",
    "ssh key agent config",
    "systemd unit timer cron",
    "docker container image",
    "python package wheel venv",
]


@pytest.fixture
def server() -> Iterator[EmbeddingServer]:
    with serving() as running:
        yield running


def write_config(root: Path, server: EmbeddingServer, **extra: object) -> Path:
    values: dict[str, object] = {
        "provider": "openai",
        "model": "fake-embed",
        "base_url": f"{server.url}/v1",
        "api_key_env": "RAGKIT_TEST_KEY",
        "retry_base_delay": 0.01,
        "retry_max_delay": 0.05,
        "timeout": 2.0,
        "batch_size": 4,
        **extra,
    }
    lines = ["[encoder]", *(f"{key} = {json.dumps(value)}" for key, value in values.items())]
    root.mkdir(parents=True, exist_ok=True)
    (root / "ragkit.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def corpus(tmp_path: Path, n: int = 8) -> Path:
    root = tmp_path / "docs"
    root.mkdir()
    for i, topic in enumerate(TOPICS[:n]):
        (root / f"d{i}.md").write_text(f"# {topic.split()[0]}\n\n{topic} notes\n", encoding="utf-8")
    return root


def test_ingest_query_over_a_flaky_server_embeds_every_chunk_once(
    tmp_path: Path, server: EmbeddingServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAGKIT_TEST_KEY", KEY)
    root = write_config(tmp_path / "ws", server, max_retries=30, concurrency=3, batch_size=1)
    server.fault_rate = 0.4  # 429 with Retry-After, 500, dropped connections
    events: list[str] = []
    with ragkit.open(root, create=True) as kit:
        report = kit.ingest(corpus(tmp_path), progress=lambda event, n: events.append(event))
        assert report.ok and report.chunks_encoded == len(TOPICS)
        server.fault_rate = 0.0
        hits = kit.query("rebase bisect", k=1, mode="dense")
        assert hits[0].text.startswith("git rebase merge bisect")
    assert "retry" in events and "throttle" in events
    # every chunk got exactly one successful reply (the server logs only those)
    documents = [t for t in server.embedded_log if "notes" in t]
    assert len(documents) == len(set(documents)) == len(TOPICS)
    with ragkit.open(
        root, create=True
    ) as kit:  # reopened: fingerprint matches, nothing is sent again
        before = len(server.embedded_log)
        assert kit.ingest(tmp_path / "docs").chunks_encoded == 0
    # only the probe that tells an encoder without ``dimensions`` its width
    assert all(t.startswith("ragkit encoder probe") for t in server.embedded_log[before:])


def test_a_failed_ingest_resends_only_what_is_missing(
    tmp_path: Path, server: EmbeddingServer
) -> None:
    root = write_config(tmp_path / "ws", server, max_retries=0, concurrency=1)
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(300):  # more than one cache part (256 texts) of encode_into_cache
        (docs / f"f{i:03}.txt").write_text(f"file {i} about topic{i % 17}\n", encoding="utf-8")
    with ragkit.open(root, create=True) as kit:
        assert kit.encoder.dim == 64  # learn the width before faults start
        sent_before = len(server.embedded_log)
        # the fingerprint's probe, then 64 requests of 4 texts (one cache part, 256 texts)
        # succeed; the next fails
        server.faults = [""] * 65 + ["500"]
        with pytest.raises(RemoteEncoderError, match="running the command again sends only"):
            kit.ingest(docs)
        first = len(server.embedded_log) - sent_before
    with ragkit.open(root, create=True) as kit:
        mark = len(server.embedded_log)
        report = kit.ingest(docs)
    resent = [t for t in server.embedded_log[mark:] if not t.startswith("ragkit encoder probe")]
    assert report.chunks_from_cache == 256 and report.chunks_encoded == 44
    assert len(resent) == 44 and first >= 256


def test_eval_runs_against_the_remote_encoder(tmp_path: Path, server: EmbeddingServer) -> None:
    from ragkit.pipelines.eval import eval_dataset

    beir = tmp_path / "beir"
    (beir / "qrels").mkdir(parents=True)
    with open(beir / "corpus.jsonl", "w") as docs, open(beir / "queries.jsonl", "w") as queries:
        for i, topic in enumerate(TOPICS):
            docs.write(json.dumps({"_id": f"d{i}", "title": "", "text": topic}) + "\n")
            query = " ".join(topic.split()[1:])
            queries.write(json.dumps({"_id": f"q{i}", "text": query}) + "\n")
    rows = ["query-id\tcorpus-id\tscore", *(f"q{i}\td{i}\t1" for i in range(len(TOPICS)))]
    (beir / "qrels" / "dev.tsv").write_text("\n".join(rows) + "\n")
    workspace = write_config(tmp_path / "ws", server)
    report = eval_dataset(beir, workspace=workspace, modes=["dense", "hybrid"])
    for result in report.results:
        assert result.metrics["ndcg@10"] > 0.9, result.mode


def test_the_key_never_reaches_the_store_or_the_output(
    tmp_path: Path, server: EmbeddingServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAGKIT_TEST_KEY", KEY)
    root = write_config(tmp_path / "ws", server)
    runner = CliRunner()
    docs = corpus(tmp_path)
    outputs = [
        runner.invoke(app, ["ingest", str(docs), "-w", str(root), "--json"]),
        runner.invoke(app, ["query", "rebase", "-w", str(root), "--json"]),
        runner.invoke(app, ["doctor", "-w", str(root), "--json"]),
        runner.invoke(app, ["status", "-w", str(root), "--json"]),
    ]
    assert [o.exit_code for o in outputs] == [0, 0, 0, 0], [o.output for o in outputs]
    server.faults = ["401"]
    refused = runner.invoke(app, ["query", "rebase", "-w", str(root)])
    assert refused.exit_code == 1 and "RAGKIT_TEST_KEY" in refused.output
    assert "Traceback" not in refused.output
    assert all(r["headers"].get("authorization") == f"Bearer {KEY}" for r in server.requests)
    for output in [*outputs, refused]:
        assert KEY not in output.output
    for path in root.rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path


def test_doctor_reports_drift_when_the_model_behind_the_name_changes(
    tmp_path: Path, server: EmbeddingServer
) -> None:
    root = write_config(tmp_path / "ws", server)
    with ragkit.open(root, create=True) as kit:
        kit.ingest(corpus(tmp_path))
        record = kit.collection().record
        assert record.encoder["probe"]["sha256"] and "vector_f16" in record.encoder["probe"]
        check = kit.doctor().collections[0].check(ENCODER_DRIFT)
        assert check is not None and check.ok and "probe cosine 1.0" in check.detail
    server.embed = lambda texts: hashed_bag_of_words([t[::-1] for t in texts])  # a new model
    with ragkit.open(root, create=True) as kit:
        report = kit.doctor()
    check = report.collections[0].check(ENCODER_DRIFT)
    assert check is not None and not check.ok and not report.ok
    assert "changed the model behind 'fake-embed'" in check.detail
    runner = CliRunner()
    result = runner.invoke(app, ["doctor", "-w", str(root)])
    assert result.exit_code == 1 and "encoder drift" in result.output


def test_presets_fill_what_the_file_leaves_at_defaults() -> None:
    config = apply_preset(EncoderConfig(preset="nv-embed-v2", base_url="http://127.0.0.1:1/v1"))
    assert config.provider == "openai" and config.model == "nvidia/nv-embed-v2"
    assert config.query_prompt == (
        "Instruct: Given a question, retrieve passages that answer the question\nQuery: "
    )
    assert config.base_url == "http://127.0.0.1:1/v1"  # the file's value wins
    gemma = apply_preset(EncoderConfig(preset="embeddinggemma", truncate_dim=256))
    assert gemma.document_prompt == "title: none | text: " and gemma.truncate_dim == 256
    assert PRESETS["embeddinggemma"].dims == (768, 512, 256, 128)
    with pytest.raises(ConfigError, match="nv-embed-v2"):
        apply_preset(EncoderConfig(preset="nope"))


def test_the_encoders_command_lists_the_presets() -> None:
    result = CliRunner().invoke(app, ["encoders", "--json"])
    assert result.exit_code == 0
    rows = {row["name"]: row for row in json.loads(result.output)}
    assert {"gemini-embedding-001", "nv-embed-v2", "embeddinggemma", "e5-base-v2"} <= set(rows)
    assert {"bge-base-en-v1.5", "gte-base-en-v1.5", "nomic-embed-text-v1.5"} <= set(rows)
    assert {"all-minilm-l6-v2", "all-mpnet-base-v2"} <= set(rows)
    assert rows["nv-embed-v2"]["dims"] == [4096] and rows["nv-embed-v2"]["provider"] == "openai"
    assert rows["e5-base-v2"]["query_prompt"] == "query: "
    table = CliRunner().invoke(app, ["encoders"], env={"COLUMNS": "200"})
    assert table.exit_code == 0 and "nv-embed-v2" in table.output


def test_vectors_stored_equal_the_servers(tmp_path: Path, server: EmbeddingServer) -> None:
    root = write_config(tmp_path / "ws", server)
    with ragkit.open(root, create=True) as kit:
        kit.ingest(corpus(tmp_path, 2))
        chunks = kit.store._query("SELECT text_hash FROM chunks")
        cached = kit.store.cached_vectors([r[0] for r in chunks], kit.encoder.fingerprint["id"], 64)
    assert len(cached) == 2
    for vector in cached.values():
        assert np.isclose(np.linalg.norm(vector), 1.0)

"""Remote encoders against a loopback server speaking each provider's wire format, with faults."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from ragkit.config import EncoderConfig
from ragkit.encoders.http.client import RateLimiter, RemoteEncoderError, RetryPolicy, plan_batches
from ragkit.encoders.protocol import Encoder, ReportsProgress
from ragkit.encoders.registry import load_encoder
from ragkit.errors import ConfigError
from tests.embedding_server import EmbeddingServer, hashed_bag_of_words, serving

TEXTS = [f"text number {i} about cats and dogs" for i in range(10)]


@pytest.fixture
def server() -> Iterator[EmbeddingServer]:
    with serving() as running:
        yield running


def config_for(server: EmbeddingServer, provider: str = "openai", **settings: Any) -> EncoderConfig:
    base = {"openai": "/v1", "gemini": "/v1beta"}.get(provider, "")
    values: dict[str, Any] = {
        "provider": provider,
        "model": "fake-embed",
        "base_url": server.url + base,
        "retry_base_delay": 0.01,
        "retry_max_delay": 0.05,
        "timeout": 2.0,
        **settings,
    }
    return EncoderConfig(**values)


def encoder_for(server: EmbeddingServer, provider: str = "openai", **settings: Any) -> Any:
    return load_encoder(config_for(server, provider, **settings))


@pytest.mark.parametrize("provider", ["openai", "gemini", "tei", "ollama"])
def test_each_provider_returns_the_servers_vectors_in_order(
    server: EmbeddingServer, provider: str
) -> None:
    encoder = encoder_for(server, provider, batch_size=3, document_prompt="doc: ")
    vectors = encoder.encode_documents(TEXTS)
    expected = hashed_bag_of_words([f"doc: {t}" for t in TEXTS])
    np.testing.assert_allclose(vectors, expected, atol=1e-6)
    assert vectors.dtype == np.float32 and encoder.dim == 64
    assert len(server.requests) == 4  # ten texts, three per request
    assert isinstance(encoder, Encoder) and isinstance(encoder, ReportsProgress)
    encoder.close()


def test_gemini_sends_task_types_and_the_output_width(server: EmbeddingServer) -> None:
    encoder = encoder_for(server, "gemini", dimensions=64)
    encoder.encode_queries(["q"])
    encoder.encode_documents(["d"])
    bodies = [r["body"]["requests"][0] for r in server.requests]
    assert [b["taskType"] for b in bodies] == ["RETRIEVAL_QUERY", "RETRIEVAL_DOCUMENT"]
    assert all(b["outputDimensionality"] == 64 for b in bodies)
    assert server.requests[0]["path"] == "/v1beta/models/fake-embed:batchEmbedContents"
    assert encoder.fingerprint["query_task"] == "RETRIEVAL_QUERY"


def test_openai_base64_and_dimensions(server: EmbeddingServer) -> None:
    encoder = encoder_for(server, encoding_format="base64", dimensions=64)
    np.testing.assert_allclose(
        encoder.encode_documents(TEXTS[:2]), hashed_bag_of_words(TEXTS[:2]), atol=1e-6
    )
    assert server.requests[0]["body"]["dimensions"] == 64
    assert server.requests[0]["body"]["encoding_format"] == "base64"


def test_truncation_renormalises(server: EmbeddingServer) -> None:
    encoder = encoder_for(server, truncate_dim=16)
    vectors = encoder.encode_documents(TEXTS)
    assert vectors.shape == (10, 16)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)


def test_batches_split_by_count_and_by_token_budget() -> None:
    assert plan_batches([1] * 7, max_items=3, max_tokens=0) == [(0, 3), (3, 6), (6, 7)]
    assert plan_batches([5, 5, 5, 20, 1], max_items=10, max_tokens=10) == [
        (0, 2),
        (2, 3),
        (3, 4),
        (4, 5),
    ]
    assert plan_batches([], max_items=3, max_tokens=10) == []


def test_the_rate_limiter_paces_requests_and_tokens() -> None:
    now = [0.0]
    limiter = RateLimiter(rpm=60, tpm=600, clock=lambda: now[0])
    assert limiter.reserve(10) == 0.0
    assert limiter.reserve(10) == pytest.approx(1.0)  # 60 rpm: one a second
    assert limiter.reserve(100) == pytest.approx(2.0)  # queued behind the first two
    assert limiter.reserve(1) == pytest.approx(12.0)  # 100 tokens at 600 tpm take 10 s
    assert RateLimiter().reserve(10**9) == 0.0


def test_backoff_doubles_with_jitter_and_honours_retry_after() -> None:
    policy = RetryPolicy(retries=5, base=1.0, cap=8.0)
    for attempt, full in [(0, 1.0), (1, 2.0), (3, 8.0), (6, 8.0)]:
        delays = [policy.delay(attempt) for _ in range(50)]
        assert all(full / 2 <= d <= full for d in delays)
        assert len(set(delays)) > 1
    assert policy.delay(0, retry_after=5.0) == 5.0


def test_transient_faults_are_retried_and_reported(server: EmbeddingServer) -> None:
    server.faults = ["429", "500", "drop", "slow"]
    server.slow_seconds = 0.6
    encoder = encoder_for(server, timeout=0.3, concurrency=1)
    events: list[tuple[str, int]] = []
    with encoder.reporting(lambda event, n: events.append((event, n))):
        vectors = encoder.encode_documents(TEXTS[:3])
    np.testing.assert_allclose(vectors, hashed_bag_of_words(TEXTS[:3]), atol=1e-6)
    assert events.count(("retry", 1)) == 4
    assert ("throttle", 1) in events  # the 429 paused the client


def test_retry_after_is_honoured(server: EmbeddingServer) -> None:
    server.faults, server.retry_after = ["429"], "0.4"
    encoder = encoder_for(server, retry_max_delay=0.01)
    started = time.perf_counter()
    encoder.encode_documents(["x"])
    assert time.perf_counter() - started >= 0.4


def test_concurrent_requests_keep_order_under_faults(server: EmbeddingServer) -> None:
    server.fault_rate = 0.3
    texts = [f"document {i} word{i % 7}" for i in range(200)]
    encoder = encoder_for(server, batch_size=8, concurrency=4, max_retries=20)
    np.testing.assert_allclose(
        encoder.encode_documents(texts), hashed_bag_of_words(texts), atol=1e-6
    )
    assert server.texts_embedded == 200  # failed requests embedded nothing
    encoder.close()


def test_giving_up_names_the_position_and_the_last_failure(server: EmbeddingServer) -> None:
    server.faults = ["500"] * 3
    encoder = encoder_for(server, max_retries=2, batch_size=4, concurrency=1)
    with pytest.raises(
        RemoteEncoderError, match=r"texts 0–3 of 6 after 2 retries \(last: HTTP 500"
    ):
        encoder.encode_documents(TEXTS[:6])


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ("truncated", r"malformed JSON for texts 0–1 of 2"),
        ("nan", r"vector 0 of the reply holds NaN"),
        ("wrong_model", r"reply is from model 'other-model', not 'fake-embed'"),
        ("404", r"model 'fake-embed' or its route was not found at http://127\.0\.0\.1:\d+/v1"),
    ],
)
def test_bad_replies_are_refused_with_the_position(
    server: EmbeddingServer, fault: str, message: str
) -> None:
    server.faults = [fault]
    with pytest.raises(RemoteEncoderError, match=message):
        encoder_for(server).encode_documents(TEXTS[:2])


def test_a_reply_of_another_width_is_refused(server: EmbeddingServer) -> None:
    encoder = encoder_for(server)
    assert encoder.dim == 64  # learned from the first reply
    server.faults = ["wrong_dim"]
    with pytest.raises(RemoteEncoderError, match="width 63 came back, the encoder's is 64"):
        encoder.encode_documents(TEXTS[:2])
    configured = encoder_for(server, "tei", dimensions=32)
    with pytest.raises(RemoteEncoderError, match="width 64 came back, the encoder's is 32"):
        configured.encode_documents(["x"])


def test_auth_errors_name_the_variable_and_never_the_key(
    server: EmbeddingServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MY_EMBED_KEY", "sk-very-secret-123")
    encoder = encoder_for(server, api_key_env="MY_EMBED_KEY")
    encoder.encode_documents(["x"])
    assert server.requests[-1]["headers"]["authorization"] == "Bearer sk-very-secret-123"
    server.faults = ["401"]
    with pytest.raises(
        RemoteEncoderError, match="check the key in the environment variable MY_EMBED_KEY"
    ) as caught:
        encoder.encode_documents(["x"])
    assert "sk-very-secret" not in str(caught.value)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    server.faults = ["401"]
    with pytest.raises(RemoteEncoderError, match="OPENAI_API_KEY is not set"):
        encoder_for(server).encode_documents(["x"])


def test_azure_sends_the_key_as_api_key_and_the_version(
    server: EmbeddingServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", "azure-secret")
    encoder_for(
        server, api_key_env="AZURE_OPENAI_API_KEY", api_version="2024-10-21"
    ).encode_documents(["x"])
    request = server.requests[-1]
    assert request["headers"]["api-key"] == "azure-secret"
    assert "authorization" not in request["headers"]
    assert request["path"] == "/v1/embeddings?api-version=2024-10-21"


def test_the_fingerprint_id_needs_no_request_but_recording_it_embeds_the_probe(
    server: EmbeddingServer,
) -> None:
    encoder = encoder_for(server, dimensions=64)
    fingerprint = encoder.fingerprint
    assert fingerprint["id"] and fingerprint["model"] == "fake-embed" and not server.requests
    recorded = {**fingerprint}
    assert len(server.requests) == 1 and recorded["probe"]["sha256"]
    other = encoder_for(server, dimensions=64, query_prompt="query: ")
    assert other.fingerprint["id"] != fingerprint["id"]
    assert encoder_for(server, dimensions=64).fingerprint["id"] == fingerprint["id"]


def test_config_errors_are_clear(server: EmbeddingServer) -> None:
    with pytest.raises(ConfigError, match=r"encoder\.model must name"):
        load_encoder(EncoderConfig(provider="openai"))
    with pytest.raises(ConfigError, match="encoding_format"):
        encoder_for(server, encoding_format="int8")


def test_importing_the_remote_providers_imports_no_torch() -> None:
    code = (
        "import sys\n"
        "import ragkit.encoders.http.openai, ragkit.encoders.http.gemini, "
        "ragkit.encoders.http.tei, ragkit.encoders.http.ollama, ragkit.encoders.drift, "
        "ragkit.encoders.presets\n"
        "print([m for m in ('torch', 'sentence_transformers', 'transformers') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"

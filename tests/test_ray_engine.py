"""The Ray encode engine against a real local Ray cluster: same chunks and vectors as the
in-process engine, and a worker killed mid-job is retried without losing or doubling a chunk.

One cluster (2 CPUs, no dashboard) serves the whole module; the actors load the session's tiny
model from a folder, the way a worker node loads a model from ``[encoder] model``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="ray is not installed: pip install 'ragkit[ray]'")

from _ray_crash_encoder import MARKER_ENV  # noqa: E402
from conftest import SAMPLE_CORPUS  # noqa: E402

import ragkit  # noqa: E402
from ragkit.cli.app import app  # noqa: E402
from ragkit.config import ComputeConfig, EncoderConfig, WorkspaceConfig  # noqa: E402
from ragkit.errors import ConfigError, EncoderMismatchError  # noqa: E402

TESTS = Path(__file__).resolve().parent
COMPUTE = {"actors": 2, "batch_size": 40, "cpus_per_actor": 0.5, "threads_per_actor": 1}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):  # type: ignore[no-untyped-def]
    marker = tmp_path_factory.mktemp("crash") / "crashed"
    env = {"PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        configure_logging=False,
        log_to_driver=False,
        runtime_env={"env_vars": {**env, MARKER_ENV: str(marker)}},
    )
    yield marker
    ray.shutdown()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tiny_model):  # type: ignore[no-untyped-def]
    folder = tmp_path_factory.mktemp("tiny-model")
    tiny_model.save(str(folder))
    return folder


def make_workspace(root: Path, model_dir: Path, **compute: object) -> Path:
    config = WorkspaceConfig.from_dict(
        {
            "encoder": {
                "model": str(model_dir),
                "provider": compute.pop("provider", "sentence-transformers"),
            },
            "chunking": {"max_tokens": 48, "overlap_tokens": 8},
            "index": {"document_vectors": False},  # what the engine encodes: chunks alone
            "compute": {**COMPUTE, **compute},
        }
    )
    root.mkdir(parents=True)
    config.save(root / "ragkit.toml")
    return root


def chunks_and_vectors(root: Path) -> tuple[list[tuple], dict[str, np.ndarray]]:
    kit = ragkit.open(root, create=True)
    try:
        rows = kit.store._query("SELECT doc_id, ordinal, text_hash, text FROM chunks ORDER BY id")
        chunks = sorted(tuple(r) for r in rows)
        record = kit.collection().record
        vectors = kit.store.cached_vectors([c[2] for c in chunks], record.model_fp, record.dim)
        assert kit.doctor().ok
    finally:
        kit.close()
    return chunks, vectors


@pytest.fixture(scope="module")
def in_process(tmp_path_factory, model_dir):  # type: ignore[no-untyped-def]
    root = make_workspace(tmp_path_factory.mktemp("local") / "ws", model_dir)
    kit = ragkit.open(root, create=True)
    report = kit.ingest(SAMPLE_CORPUS)
    kit.close()
    assert report.ok and report.chunks_encoded > 3 * COMPUTE["batch_size"]  # several parts
    return chunks_and_vectors(root)


def test_ray_ingest_matches_in_process(cluster, tmp_path, model_dir, in_process) -> None:
    from typer.testing import CliRunner

    root = make_workspace(tmp_path / "ws", model_dir)  # engine in-process; --ray overrides
    result = CliRunner().invoke(
        app, ["ingest", str(SAMPLE_CORPUS), "--workspace", str(root), "--ray", "auto", "--json"]
    )
    assert result.exit_code == 0, result.output
    chunks, vectors = chunks_and_vectors(root)
    want_chunks, want_vectors = in_process
    assert chunks == want_chunks
    assert vectors.keys() == want_vectors.keys() == {c[2] for c in chunks}
    for text_hash, vector in want_vectors.items():
        np.testing.assert_allclose(vectors[text_hash], vector, atol=1e-5)


def test_killed_worker_is_retried_and_every_chunk_embedded_once(
    cluster, tmp_path, model_dir, in_process, monkeypatch
) -> None:
    import _ray_crash_encoder  # noqa: F401  registers "crash-once" in the driver

    assert not cluster.exists()
    root = make_workspace(
        tmp_path / "ws", model_dir, engine="ray", provider="crash-once", actors=1, max_restarts=2
    )
    kit = ragkit.open(root, create=True)
    written: list[str] = []
    cache_blobs = kit.store.cache_blobs

    def recording(hashes, model_fp, blobs):  # type: ignore[no-untyped-def]
        written.extend(hashes)
        cache_blobs(hashes, model_fp, blobs)

    monkeypatch.setattr(kit.store, "cache_blobs", recording)
    report = kit.ingest(SAMPLE_CORPUS)
    kit.close()
    assert cluster.exists(), "no worker was killed: the test did not test a crash"
    assert report.ok
    assert len(written) == len(set(written)) == report.chunks_encoded
    chunks, vectors = chunks_and_vectors(root)
    want_chunks, want_vectors = in_process
    assert chunks == want_chunks
    assert set(written) == vectors.keys() == want_vectors.keys()
    for text_hash, vector in want_vectors.items():
        np.testing.assert_allclose(vectors[text_hash], vector, atol=1e-5)


def test_each_collection_is_encoded_by_actors_of_its_own_model(
    cluster, tmp_path, model_dir
) -> None:
    """Two collections of two tiny models in one workspace on Ray: the actors of each load the
    model of its spec (also the one ragkit.toml does not name), and the vectors cached for
    each are its model's, for the build of the second collection and for a later ingest."""
    from conftest import build_tiny_model
    from test_ingest import write

    from ragkit.encoders.dense import DenseEncoder

    other = tmp_path / "other-model"
    build_tiny_model(seed=1).save(str(other))
    root = make_workspace(tmp_path / "ws", model_dir, engine="ray")
    kit = ragkit.open(root, create=True)
    try:
        assert kit.store.encode_engine.name == "ray"
        assert kit.ingest(SAMPLE_CORPUS).ok
        kit.create_collection("other", encoder=EncoderConfig(model=str(other)))
        extra = tmp_path / "extra"
        write(extra / "new.md", "# Late\n\nthe router sat on a green subnet\n")
        report = kit.ingest(extra)
        assert report.ok and report.chunks_encoded >= 2  # the new chunk, once per model
        by_model = {}
        for collection in kit.collections():
            record = collection.record
            rows = kit.store.chunk_hashes(collection.chunking_fp)
            cached = kit.store.cached_vectors([h for _, h, _ in rows], record.model_fp, record.dim)
            assert len(cached) == len({h for _, h, _ in rows}) > 3 * COMPUTE["batch_size"]
            texts = {h: t for _, h, t in rows}
            model = record.spec.encoder.model
            local = DenseEncoder.load(EncoderConfig(model=model)).encode_documents(
                list(texts.values())
            )
            got = np.stack([cached[h] for h in texts])
            np.testing.assert_allclose(got, local, atol=1e-5)
            by_model[model] = got
        assert set(by_model) == {str(model_dir), str(other)}
        first, second = by_model.values()
        assert not np.allclose(first, second, atol=1e-2)  # two models, two sets of vectors
        assert kit.doctor().ok
    finally:
        kit.close()


def test_vectors_of_another_model_are_refused(tiny_encoder) -> None:
    """A worker that loaded other files than the writer's model must not fill its cache."""
    from ragkit.compute.ray_engine import check_part

    fp = tiny_encoder.fingerprint["id"]
    part = {
        "text_hash": np.array(["a", "b"], dtype=object),
        "vector": np.ones((2, 4), dtype=np.float32),
        "encoder": np.array([f"{fp} tiny"] * 2, dtype=object),
    }
    hashes, vectors = check_part(part, fp)
    assert hashes == ["a", "b"] and vectors.shape == (2, 4)
    part["encoder"][1] = "0123456789abcdef other"
    with pytest.raises(EncoderMismatchError, match="'other' \\(0123456789ab\\)"):
        check_part(part, fp)


def test_unknown_engine_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="in-process, ray"):
        from ragkit.compute import make_engine

        make_engine(ComputeConfig(engine="spark"), EncoderConfig())
    with pytest.raises(ConfigError, match="cpus_per_actor"):
        ComputeConfig(cpus_per_actor=-1)

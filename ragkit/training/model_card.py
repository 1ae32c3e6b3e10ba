"""The fine-tuned model's card (README.md) and its entry in the workspace's model registry.

The card says what a reader needs to trust or reproduce the model: the data it saw, the losses
and their settings, the before/after metrics on held-out queries, and the encoder fingerprints,
so a reader can tell which index the model belongs to.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["REGISTRY", "read_registry", "register_model", "render_model_card", "write_model_card"]

REGISTRY = Path("models") / "registry.json"


def render_model_card(info: Mapping[str, Any]) -> str:
    metrics = info.get("metrics", {})
    sparse = info.get("kind") == "sparse"
    tags = "sparse-encoder, splade" if sparse else "sentence-similarity"
    lines = [
        "---",
        "library_name: sentence-transformers",
        f"tags: [sentence-transformers, {tags}, ragkit]",
        f"base_model: {json.dumps(str(info.get('base_model', '')))}",
        "---",
        "",
        f"# {info.get('name', 'fine-tuned encoder')}",
        "",
        f"Fine-tuned by ragkit on the workspace `{info.get('workspace', '')}` from "
        f"`{info.get('base_model', '')}`.",
        "",
        "## Encoder",
        "",
        f"- fingerprint: `{info.get('fingerprint', '')}`",
        f"- base fingerprint: `{info.get('base_fingerprint', '')}`",
        f"- query prompt: {json.dumps(info.get('query_prompt', ''))}; "
        f"document prompt: {json.dumps(info.get('document_prompt', ''))}",
        "",
        "## Data",
        "",
    ]
    for key, value in info.get("data", {}).items():
        lines.append(f"- {key}: {_fmt(value)}")
    lines += ["", "## Hard negatives", ""]
    for key, value in info.get("mining", {}).items():
        lines.append(f"- {key}: {_fmt(value)}")
    lines += ["", "## Training", ""]
    for key, value in info.get("training", {}).items():
        lines.append(f"- {key}: {_fmt(value)}")
    lines += ["", "## Loss", "", "```json", json.dumps(info.get("loss", {}), indent=2), "```"]
    if info.get("soup"):
        lines += ["", "## Checkpoint selection", ""]
        for key, value in info["soup"].items():
            lines.append(f"- {key}: {_fmt(value)}")
    lines += ["", "## Held-out metrics", ""]
    lines += metrics_table(metrics)
    lines += [
        "",
        "## Use",
        "",
        *_use(sparse),
        "",
        "```toml",
        "[sparse]" if sparse else "[encoder]",
        f"model = {json.dumps(str(info.get('path', '<this folder>')))}",
        "```",
        "",
    ]
    return "\n".join(lines)


def _use(sparse: bool) -> list[str]:
    if sparse:
        return [
            "The sparse channel of a new collection (or of a new workspace's ragkit.toml);",
            "its SPLADE vectors are built when the collection is ingested.",
        ]
    return [
        "A workspace encodes with one model: set it in a new workspace's ragkit.toml and",
        "ingest there (a workspace built with another encoder refuses it).",
    ]


def metrics_table(metrics: Mapping[str, Mapping[str, Mapping[str, float]]]) -> list[str]:
    """``metrics[stage][mode][metric]`` as a markdown table, before and after side by side."""
    before, after = metrics.get("before", {}), metrics.get("after", {})
    rows = ["| mode | metric | before | after | Δ |", "|---|---|---:|---:|---:|"]
    for mode in after or before:
        for name in after.get(mode) or before.get(mode) or {}:
            b = before.get(mode, {}).get(name)
            a = after.get(mode, {}).get(name)
            delta = f"{(a - b) * 100:+.2f}" if a is not None and b is not None else ""
            rows.append(f"| {mode} | {name} | {_pct(b)} | {_pct(a)} | {delta} |")
    return rows


def write_model_card(path: str | Path, info: Mapping[str, Any]) -> Path:
    target = Path(path) / "README.md"
    _atomic_write(target, render_model_card(info))
    return target


def read_registry(workspace: str | Path) -> list[dict[str, Any]]:
    path = Path(workspace) / REGISTRY
    if not path.exists():
        return []
    return list(json.loads(path.read_text(encoding="utf-8")).get("models", []))


def register_model(workspace: str | Path, entry: Mapping[str, Any]) -> Path:
    """Add (or replace, by path) a model in ``<workspace>/models/registry.json``, atomically."""
    models = [m for m in read_registry(workspace) if m.get("path") != entry.get("path")]
    models.append({"registered": time.time(), **entry})
    path = Path(workspace) / REGISTRY
    _atomic_write(path, json.dumps({"version": 1, "models": models}, indent=2, default=str) + "\n")
    return path


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("w", encoding="utf-8") as file:
        file.write(text)
        file.flush()
        os.fsync(file.fileno())
    os.replace(tmp, path)


def _pct(value: float | None) -> str:
    return "" if value is None else f"{value * 100:.2f}"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (dict, list, tuple)):
        return f"`{json.dumps(value, default=str)}`"
    return str(value)

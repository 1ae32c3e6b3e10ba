"""Options, results and the extension registry shared by every loader.

Loader modules are imported lazily by :func:`load_file`, so importing ``ragkit.connectors`` does
not pay for pypdf, python-docx or markdown-it when a corpus has none of those files.
"""

from __future__ import annotations

import errno
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
    "UnsafeSourceError",
    "format_for_path",
    "human_size",
    "load_file",
    "parse_bytes",
    "printable_path",
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
    process can be killed, a parse in this process cannot) and ``max_chunks_per_document`` /
    ``max_chunks_per_file`` by the ingest's chunking; ``0`` switches a limit off.
    """

    max_file_bytes: int = 100 * 1024**2
    text_fields: tuple[str, ...] | None = None
    id_field: str | None = None
    title_field: str | None = None
    metadata_fields: tuple[str, ...] | None = None
    max_docx_uncompressed_bytes: int = 200 * 1024**2
    parse_timeout_s: float = 30.0
    parse_memory_bytes: int = 2 * 1024**3
    max_chunks_per_document: int = 10_000
    max_chunks_per_file: int = 0
    #: chunks a pipelined ingest may hold ready ahead of the encoder (0: no producer thread)
    pipeline_chunks: int = 4096

    @classmethod
    def from_config(cls, config: IngestConfig) -> LoadOptions:
        """The limits set in ragkit.toml's ``[ingest]`` section, other options at defaults."""
        return cls(
            parse_timeout_s=float(config.parse_timeout),
            parse_memory_bytes=int(config.parse_memory_mib * 1024**2),
            max_chunks_per_document=int(config.max_chunks_per_document),
            max_chunks_per_file=int(config.max_chunks_per_file),
            pipeline_chunks=int(config.pipeline_chunks),
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


def printable_path(path: Path | str) -> str:
    """A path or uri as printable text, escaped losslessly.

    A name that is not valid UTF-8 reaches Python as lone surrogates, which SQLite, JSON
    consumers and terminals refuse; control characters in a name can rewrite a terminal.
    Both become ``\\xNN`` and a literal backslash becomes ``\\\\``, so two different names
    never share an escaped form and a name gets the same form on every run.
    """
    return str(path).translate(_PRINTABLE)


_PRINTABLE = {
    **{code: f"\\x{code:02x}" for code in (*range(0x20), 0x7F)},
    **{0xDC00 + byte: f"\\x{byte:02x}" for byte in range(0x80, 0x100)},  # surrogateescape
    ord("\\"): "\\\\",
}


class UnsafeSourceError(ConnectorError):
    """The path no longer leads to the file the walk accepted: it became a symlink out of the
    source root (or any symlink while it was opened).  Unlike a file that merely turned bad,
    whatever the index holds for this path must go, or a swapped link would keep serving
    content from outside the root as "the last good version"."""


_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_LEFT_ROOT = "is a symlink that leads outside the source root; not read (use follow_symlinks)"
_SWAPPED = "was replaced by a symlink while it was being opened; not read"
_DIR_SWAPPED = "a folder on its path was replaced (by a symlink or a file) after the walk; not read"


def _open_error(path: Path, exc: OSError, shown: str) -> ConnectorError:
    """Turn an OSError into a reason the user can act on."""
    if isinstance(exc, FileNotFoundError):
        if os.path.islink(path):
            return ConnectorError(shown, "dangling symlink: its target does not exist")
        return ConnectorError(shown, "file not found (was it moved or deleted?)")
    if isinstance(exc, IsADirectoryError):
        return ConnectorError(shown, "is a directory, not a file")
    if isinstance(exc, PermissionError):
        return ConnectorError(shown, "permission denied: check the file's permissions")
    if exc.errno == errno.ELOOP:
        return UnsafeSourceError(shown, _SWAPPED)
    if exc.errno in (errno.ENXIO, errno.EOPNOTSUPP):  # a socket
        return ConnectorError(shown, "not a regular file (device, FIFO or socket)")
    return ConnectorError(shown, f"cannot read file: {exc.strerror or exc}")


def _open_beneath(root_real: str, rel: str) -> int:
    """Open ``rel`` one component at a time from the root's descriptor, never following a
    link, so a directory swapped for a symlink after the walk cannot lead the open outside."""
    *dirs, name = rel.split(os.sep)
    fd = os.open(root_real, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in dirs:
            child = os.open(part, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = child
        return os.open(name, _OPEN_FLAGS, dir_fd=fd)
    finally:
        os.close(fd)


def _open_source(path: Path, root: Path | None, follow_symlinks: bool, shown: str) -> int:
    """A descriptor for the file ``path`` names now, opened without following a link or
    blocking on a FIFO.

    A symlink the walk accepted (inside the root, or any with ``follow_symlinks``) is read
    through its resolved target, and that target is opened with O_NOFOLLOW too, so a swap
    between resolving and opening is refused rather than followed.
    """
    real = os.path.realpath(path)
    try:
        # Not the check (that is fstat on the descriptor): opening a device can have effects.
        st = os.lstat(real)
        if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
            raise ConnectorError(shown, "not a regular file (device, FIFO or socket)")
        if root is None or follow_symlinks:
            return os.open(real, _OPEN_FLAGS)
        root_real = os.path.realpath(root)
        if real == root_real:  # a single-file source
            return os.open(real, _OPEN_FLAGS)
        if not real.startswith(root_real.rstrip(os.sep) + os.sep):
            raise UnsafeSourceError(shown, _LEFT_ROOT)
        return _open_beneath(root_real, os.path.relpath(real, root_real))
    except OSError as exc:
        if exc.errno == errno.ENOTDIR and root is not None and not follow_symlinks:
            raise UnsafeSourceError(shown, _DIR_SWAPPED) from exc
        raise _open_error(path, exc, shown) from exc


def read_source_bytes(
    path: Path, max_bytes: int, *, root: Path | None = None, follow_symlinks: bool = False
) -> bytes:
    """Read a whole source file, refusing directories, special files and oversized files.

    Every check is made on the opened descriptor, not on the path: the path may be swapped for
    a FIFO (whose open would block forever, holding the writer lock) or for a symlink to a
    secret between the walk and this read.  With ``root`` (ingest passes the source's) the
    file must still lie inside it unless ``follow_symlinks``.  The read is capped at
    ``max_bytes + 1`` so a file that grows after the ``fstat`` still cannot exhaust memory.
    :class:`UnsafeSourceError` means the path now leads elsewhere than the walk saw.
    """
    shown = printable_path(path)
    fd = _open_source(Path(path), root, follow_symlinks, shown)
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise ConnectorError(shown, "is a directory, not a file")
        if not stat.S_ISREG(st.st_mode):
            raise ConnectorError(shown, "not a regular file (device, FIFO or socket)")
        too_large = (
            f"file is {human_size(st.st_size)}, larger than the limit of "
            f"{human_size(max_bytes)}; raise max_file_bytes to load it"
        )
        if st.st_size > max_bytes:
            raise ConnectorError(shown, too_large)
        if st.st_size == 0:
            raise ConnectorError(shown, "empty file")
        os.set_blocking(fd, True)
        handle = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with handle:
        try:
            data = handle.read(max_bytes + 1)
        except OSError as exc:
            raise _open_error(Path(path), exc, shown) from exc
    if len(data) > max_bytes:
        raise ConnectorError(shown, too_large)
    if not data:
        raise ConnectorError(shown, "empty file")
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
                title=(title or printable_path(path.stem)).strip() or printable_path(path.name),
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

"""Connectors: turn source files into :class:`~ragkit.documents.Document` objects.

``walk_files`` finds the files of a source tree, ``load_file`` parses one of them.  Both report
bad input as data (:class:`WalkFailure`) or as :class:`~ragkit.errors.ConnectorError`, never as
any other exception, so one broken file cannot stop an ingest.
"""

from __future__ import annotations

from ragkit.connectors.base import (
    SUPPORTED_FORMATS,
    LoadOptions,
    LoadResult,
    format_for_path,
    load_file,
    parse_bytes,
    read_source_bytes,
)
from ragkit.connectors.filesystem import FileEntry, WalkFailure, WalkSkip, walk_files
from ragkit.connectors.text import read_text

__all__ = [
    "SUPPORTED_FORMATS",
    "FileEntry",
    "LoadOptions",
    "LoadResult",
    "WalkFailure",
    "WalkSkip",
    "format_for_path",
    "load_file",
    "parse_bytes",
    "read_source_bytes",
    "read_text",
    "walk_files",
]

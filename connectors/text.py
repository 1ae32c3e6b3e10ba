"""Turning the bytes of a text-like file into ``str``.

Real corpora mix UTF-8 with legacy encodings (Windows "ANSI" exports, latin-1 mail archives,
UTF-16 files from Windows tools), so decoding tries the cheap, unambiguous options first and
only then asks charset_normalizer to guess.
"""

from __future__ import annotations

import codecs
from pathlib import Path

from ragkit.connectors.base import LoadOptions, read_source_bytes
from ragkit.errors import ConnectorError

__all__ = ["BINARY_SNIFF_BYTES", "decode_text", "looks_binary", "read_text"]

BINARY_SNIFF_BYTES = 8192

# Checked longest first: the UTF-32-LE BOM starts with the UTF-16-LE one.
_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)

# Single-byte Western encodings that charset_normalizer cannot tell apart from cp1250 & co. on
# short samples; when they score as well as its first pick they are far more likely in practice.
_WESTERN = ("cp1252", "latin_1", "iso8859_15")


def _bom_encoding(data: bytes) -> str | None:
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return encoding
    return None


def looks_binary(data: bytes) -> bool:
    """NUL bytes near the start mean an image, archive or executable with a text extension."""
    return _bom_encoding(data) is None and b"\x00" in data[:BINARY_SNIFF_BYTES]


def _guess(data: bytes) -> str | None:
    from charset_normalizer import from_bytes

    matches = from_bytes(data)
    best = matches.best()
    if best is None:
        return None
    for match in matches:
        if (
            match.encoding in _WESTERN
            and match.chaos <= best.chaos + 0.01
            and match.coherence >= best.coherence - 0.01
        ):
            try:
                return data.decode("cp1252")
            except UnicodeDecodeError:
                return data.decode("latin_1")
    return str(best)


def _try_declared(data: bytes, declared: str | None) -> str | None:
    if not declared:
        return None
    try:
        encoding = codecs.lookup(declared).name
    except LookupError:
        return None
    # Browsers treat these labels as windows-1252 (WHATWG Encoding spec), and so do we.
    if encoding in ("latin-1", "iso8859-1", "ascii"):
        encoding = "cp1252"
    try:
        return data.decode(encoding)
    except UnicodeDecodeError:
        return None


def decode_text(data: bytes, path: Path | str, *, declared: str | None = None) -> str:
    """Decode ``data`` and normalise line endings to ``\\n``.

    A byte-order mark wins, then strict UTF-8 (valid UTF-8 is almost never anything else),
    then the encoding the file declares itself (``declared``, e.g. an HTML ``<meta charset>``),
    then a guess.  ``path`` is only used in error messages.
    """
    if looks_binary(data):
        raise ConnectorError(str(path), "looks like a binary file, not text (NUL bytes found)")
    encoding = _bom_encoding(data) or "utf-8"
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError:
        guessed = None
        if encoding == "utf-8":
            guessed = _try_declared(data, declared) or _guess(data)
        if guessed is None:
            raise ConnectorError(
                str(path),
                f"cannot decode text (not valid {encoding} and no other encoding fits): "
                "convert the file to UTF-8",
            ) from None
        text = guessed
    if text.startswith("\ufeff"):
        text = text[1:]
    return text.replace("\r\n", "\n").replace("\r", "\n")


def read_text(path: Path, data: bytes | None = None) -> str:
    """Read (unless ``data`` is given) and decode a text file; see :func:`decode_text`."""
    if data is None:
        data = read_source_bytes(Path(path), LoadOptions().max_file_bytes)
    return decode_text(data, path)

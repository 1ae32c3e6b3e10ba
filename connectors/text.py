"""Turning the bytes of a text-like file into ``str``.

Real corpora mix UTF-8 with legacy encodings (Windows "ANSI" exports, latin-1 mail archives,
UTF-16 files from Windows tools), so decoding tries the cheap, unambiguous options first and
only then asks charset_normalizer to guess.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from ragkit.connectors.base import LoadOptions, LoadResult, read_source_bytes
from ragkit.errors import ConnectorError

__all__ = [
    "BINARY_SNIFF_BYTES",
    "DecodedText",
    "decode_text",
    "finish_result",
    "looks_binary",
    "read_text",
    "strip_controls",
]

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

# C0 control characters other than tab, newline, carriage return and form feed: a NUL past the
# binary sniff or a stray escape code is never text, and NULs break SQLite FTS and tokenizers.
# Lone surrogates (a JSON "\ud800" escape) are no text either: they cannot be encoded as UTF-8,
# so the tokenizer and SQLite would refuse the whole batch.
_CONTROLS = re.compile("[\x00-\x08\x0b\x0e-\x1f\ud800-\udfff]+")


@dataclass(frozen=True)
class DecodedText:
    """Decoded text plus what decoding had to guess or repair.

    A guessed encoding or replaced bytes still yield text, so they are not errors; but a person
    must be told, because a wrong guess turns a whole file into plausible-looking garbage.
    """

    text: str
    problems: list[str] = field(default_factory=list)
    removed_controls: int = 0


def strip_controls(text: str) -> tuple[str, int]:
    """Remove C0 control characters (except ``\\t \\n \\r \\f``) and lone surrogates; return
    the count removed."""
    removed = 0

    def count(match: re.Match[str]) -> str:
        nonlocal removed
        removed += len(match.group())
        return ""

    cleaned = _CONTROLS.sub(count, text)
    return cleaned, removed


def _controls_problem(count: int) -> str:
    return (
        f"removed {count} control character{'' if count == 1 else 's'} (NUL, other C0 codes "
        "or lone surrogates); the file may be partly binary or damaged"
    )


def _bom_encoding(data: bytes) -> str | None:
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return encoding
    return None


def looks_binary(data: bytes) -> bool:
    """NUL bytes near the start mean an image, archive or executable with a text extension."""
    return _bom_encoding(data) is None and b"\x00" in data[:BINARY_SNIFF_BYTES]


def _guess(data: bytes) -> tuple[str, str] | None:
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
                return data.decode("cp1252"), "cp1252"
            except UnicodeDecodeError:
                return data.decode("latin_1"), "latin-1"
    return str(best), best.encoding


def _damaged_utf8(data: bytes) -> tuple[str, int] | None:
    """UTF-8 with a few broken bytes (a truncated copy, a bad splice) is still UTF-8.

    Guessing a single-byte encoding for it would garble every accented letter of the file to
    save the few broken ones, so when valid multi-byte sequences outnumber the broken ones the
    broken bytes are replaced instead; the count is reported.
    """
    text = data.decode("utf-8", errors="replace")
    replaced = text.count("\ufffd") - data.count("\ufffd".encode())
    multibyte = len(text) - len(text.encode("ascii", errors="ignore")) - replaced
    if replaced <= 0 or multibyte < replaced:
        return None
    return text, replaced


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


def decode_text(data: bytes, path: Path | str, *, declared: str | None = None) -> DecodedText:
    """Decode ``data``, normalise line endings to ``\\n`` and remove control characters.

    A byte-order mark wins, then strict UTF-8 (valid UTF-8 is almost never anything else),
    then the encoding the file declares itself (``declared``, e.g. an HTML ``<meta charset>``),
    then UTF-8 with its few broken bytes replaced, then a guess.  Replacements, guesses and
    removed control characters are returned as problems.  ``path`` is only used in errors.
    """
    if looks_binary(data):
        raise ConnectorError(str(path), "looks like a binary file, not text (NUL bytes found)")
    encoding = _bom_encoding(data) or "utf-8"
    problems: list[str] = []
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError:
        decoded = None
        if encoding == "utf-8":
            decoded = _try_declared(data, declared)
            if decoded is None:
                damaged = _damaged_utf8(data)
                if damaged is not None:
                    decoded = damaged[0]
                    problems.append(
                        f"{damaged[1]} undecodable byte sequence{'' if damaged[1] == 1 else 's'}"
                        " replaced with U+FFFD (not valid UTF-8); check the text"
                    )
            if decoded is None:
                guessed = _guess(data)
                if guessed is not None:
                    decoded = guessed[0]
                    problems.append(
                        f"not valid UTF-8: decoded as {guessed[1]} by guess; check the text, "
                        "or convert the file to UTF-8"
                    )
        if decoded is None:
            raise ConnectorError(
                str(path),
                f"cannot decode text (not valid {encoding} and no other encoding fits): "
                "convert the file to UTF-8",
            ) from None
        text = decoded
    if text.startswith("\ufeff"):
        text = text[1:]
    text, removed = strip_controls(text.replace("\r\n", "\n").replace("\r", "\n"))
    return DecodedText(text, problems, removed)


def finish_result(result: LoadResult, path: Path, decoded: DecodedText | None = None) -> LoadResult:
    """Put decoding problems first and strip control characters the parser let through.

    Parsers decode escapes of their own (``\\u0000`` in JSON, ``&#1;`` in HTML, PDF and docx
    text), so cleaning the decoded bytes alone is not enough: every loader passes its result
    through here.  Blocks and documents left empty by the cleaning are dropped.
    """
    removed = decoded.removed_controls if decoded is not None else 0
    documents = []
    for document in result.documents:
        blocks = []
        for block in document.blocks:
            text, count = strip_controls(block.text)
            headings = tuple(strip_controls(heading)[0] for heading in block.headings)
            removed += count
            if text.strip():
                blocks.append(replace(block, text=text, headings=headings))
        if blocks:
            document.blocks = blocks
            document.title = strip_controls(document.title)[0].strip() or path.stem
            documents.append(document)
    if not documents:
        raise ConnectorError(str(path), "empty file (no text left after removing control codes)")
    problems = list(decoded.problems) if decoded is not None else []
    if removed:
        problems.append(_controls_problem(removed))
    return LoadResult(documents=documents, problems=problems + result.problems)


def read_text(path: Path, data: bytes | None = None) -> str:
    """Read (unless ``data`` is given) and decode a text file; see :func:`decode_text`."""
    if data is None:
        data = read_source_bytes(Path(path), LoadOptions().max_file_bytes)
    return decode_text(data, path).text

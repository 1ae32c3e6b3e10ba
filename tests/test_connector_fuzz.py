"""Generated malformed input against every connector.

Whatever the bytes, a loader either raises :class:`ConnectorError` (the file fails on its own)
or returns documents whose text holds no control codes and is not much larger than the input.
Runs are derandomized so a failure in CI reproduces locally; found bugs stay as ``@example``.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import docx
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ragkit.connectors import SUPPORTED_FORMATS, parse_bytes
from ragkit.errors import ConnectorError

CONTROL_CODES = frozenset(chr(code) for code in range(32)) - set("\t\n\r\f")
FORMATS = sorted(set(SUPPORTED_FORMATS.values()))
EXTENSIONS = {fmt: ext for ext, fmt in sorted(SUPPORTED_FORMATS.items(), reverse=True)}
# Rendering adds list markers, "name: " labels and separators; anything beyond this is blow-up.
GROWTH = 4
SLACK = 2048

FUZZ = settings(
    max_examples=25,
    deadline=None,  # the run is bounded by max_examples; a loaded CI box has slow outliers
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _docx_sample() -> bytes:
    document = docx.Document()
    document.add_heading("Title", level=1)
    document.add_paragraph("A paragraph of text.")
    document.add_paragraph("an item", style="List Bullet")
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def _pdf_sample() -> bytes:
    content = b"BT /F1 12 Tf 72 720 Td (Hello PDF text) Tj ET"
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


SAMPLES: dict[str, bytes] = {
    "txt": "Title line\n\nSome text, with accents: café.\n".encode(),
    "md": b"# Head\n\n- item\n  - nested\n\n> quote\n\n| a | b |\n|---|---|\n| 1 | 2 |\n",
    "html": b"<html><head><title>T</title></head><body><h1>H</h1><p>text</p>"
    b"<ul><li>one<ul><li>two</li></ul></li></ul><table><tr><td>c</td></tr></table></body></html>",
    "csv": b'id,title,text\n1,One,"first, quoted"\n2,Two,second\n',
    "tsv": b"id\ttext\n1\tfirst\n2\tsecond\n",
    "jsonl": b'{"id": 1, "text": "first"}\n{"id": 2, "text": "second", "n": 12}\n',
    "pdf": _pdf_sample(),
    "docx": _docx_sample(),
}

# Inputs that attack a structure rather than flip bits: deep nesting, huge numbers, quotes.
HOSTILE: dict[str, list[bytes]] = {
    "txt": [b"a\x00b" * 5000, b"\xff\xfe" + b"\x00\xd8" * 100, b"\x1b[31m" * 500],
    "md": [b">" * 20_000 + b" deep", b"- " * 5000 + b"x", b"[" * 5000 + b"*" * 5000, b"`" * 9000],
    "html": [
        b"<ul><li>" * 3000 + b"deep",
        b"<table><tr><td>" * 1000 + b"deep",
        b"<div>" * 5000 + b"&#0;&#1;&#x1b;",
    ],
    "csv": [b'id,text\n1,"' + b"a\n" * 3000, b'"' * 5000, b"id,text\n" + b",,,,\n" * 2000],
    "tsv": [b'id\ttext\n1\t"open\n2\tx\n', b"\t" * 9000],
    "jsonl": [
        b'{"text": "x", "n": ' + b"9" * 5000 + b"}",
        b"[" * 100_000,
        b'{"text": "\\u0000\\ud800"}',
        b'{"text": "' + b"\\u0001" * 3000 + b'"}',
    ],
    "pdf": [b"%PDF-1.4\n" + b"<<" * 5000, b"%PDF-1.7\n1 0 obj\n<< /Kids [1 0 R] >>\nendobj\n"],
    "docx": [b"PK\x03\x04" + b"\x00" * 200, b"PK\x05\x06" + b"\x00" * 18],
}


def check(data: bytes, fmt: str) -> None:
    """The contract every loader keeps on any input."""
    name = f"x{EXTENSIONS[fmt]}"
    try:
        result = parse_bytes(data, fmt=fmt, path=Path(name), uri=name)
    except ConnectorError as exc:
        assert exc.reason
        return
    assert result.documents
    total = 0
    for document in result.documents:
        for text in (
            document.title,
            document.text,
            *(h for b in document.blocks for h in b.headings),
        ):
            assert not CONTROL_CODES.intersection(text), (fmt, text[:200])
        total += len(document.text) + len(document.title)
    assert all(isinstance(problem, str) and problem for problem in result.problems)
    if fmt != "docx":  # a zip legitimately inflates; its limit is max_docx_uncompressed_bytes
        assert total <= GROWTH * len(data) + SLACK, (fmt, total, len(data))


def mutate(sample: bytes, draw: st.DrawFn) -> bytes:
    """Truncate, flip, insert NULs or splice random bytes into a valid sample."""
    data = bytearray(sample)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["truncate", "flip", "nul", "splice", "repeat"]))
        position = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "truncate":
            del data[position:]
        elif kind == "flip" and data:
            data[position] ^= 1 << draw(st.integers(0, 7))
        elif kind == "nul":
            data[position:position] = b"\x00" * draw(st.integers(1, 3))
        elif kind == "splice":
            data[position:position] = draw(st.binary(max_size=64))
        else:
            data[position:position] = bytes(data[position : position + 16]) * draw(
                st.integers(1, 200)
            )
    return bytes(data)


@st.composite
def mutated(draw: st.DrawFn, fmt: str) -> bytes:
    return mutate(SAMPLES[fmt], draw)


@st.composite
def reencoded(draw: st.DrawFn, fmt: str) -> bytes:
    """A text sample in another encoding, as legacy tools write them."""
    if fmt in ("pdf", "docx"):
        return SAMPLES[fmt]
    text = SAMPLES[fmt].decode() + draw(st.text(max_size=40))
    encoding = draw(st.sampled_from(["utf-16", "utf-32", "cp1252", "cp1251", "latin-1", "gb18030"]))
    return text.encode(encoding, errors="replace")


def test_valid_samples_load_cleanly() -> None:
    for fmt in FORMATS:
        name = f"x{EXTENSIONS[fmt]}"
        result = parse_bytes(SAMPLES[fmt], fmt=fmt, path=Path(name), uri=name)
        assert result.documents and result.problems == [], fmt


def test_hostile_inputs() -> None:
    for fmt, inputs in HOSTILE.items():
        for data in inputs:
            check(data, fmt)


@settings(FUZZ, max_examples=80)
@given(fmt=st.sampled_from(FORMATS), data=st.binary(max_size=2048))
@example(fmt="jsonl", data=b'{"text": "x", "n": ' + b"1" * 4301 + b"}")
@example(fmt="txt", data=b"a" * 9000 + b"\x00")
def test_random_bytes(fmt: str, data: bytes) -> None:
    check(data, fmt)


@settings(FUZZ, max_examples=120)
@given(fmt=st.sampled_from(FORMATS), data=st.data())
def test_mutated_samples(fmt: str, data: st.DataObject) -> None:
    check(data.draw(mutated(fmt)), fmt)


@FUZZ
@given(fmt=st.sampled_from(FORMATS), data=st.data())
def test_odd_encodings(fmt: str, data: st.DataObject) -> None:
    check(data.draw(reencoded(fmt)), fmt)


@settings(FUZZ, max_examples=10)
@given(data=st.binary(min_size=1, max_size=512), position=st.integers(0, 2000))
def test_docx_with_corrupted_zip_entries(data: bytes, position: int) -> None:
    archive = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(SAMPLES["docx"])) as source,
        zipfile.ZipFile(archive, "w") as target,
    ):
        for info in source.infolist():
            content = source.read(info)
            if info.filename == "word/document.xml":
                cut = min(position, len(content))
                content = content[:cut] + data + content[cut:]
            target.writestr(info, content)
    check(archive.getvalue(), "docx")

"""The hostile inputs and workspace damages that ``bench/reliability.py`` tries.

Every input case writes its file(s) into a folder under names that start with ``bad-<tag>``, so
the probe can find each case's outcome in the ingest report and the store even when many cases
share one folder. Files are built by hand (zipfile, hand-written PDF objects), never with the
libraries ragkit parses them with, so a parser bug cannot hide in the fixture.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

PASSWD = "/etc/passwd"
KIB, MIB = 1024, 1024**2


def passwd_marker() -> str:
    """A line of /etc/passwd: if it appears anywhere in a workspace, the file leaked."""
    try:
        return Path(PASSWD).read_text(errors="replace").splitlines()[0].strip()
    except (OSError, IndexError):
        return "root:x:0:0"


# -- file builders ------------------------------------------------------------------------------
def pdf_bytes(
    text: str = "hello pdf", *, stream: bytes | None = None, encrypt: bool = False, raw: str = ""
) -> bytes:
    """A one-page PDF with correct xref offsets; ``stream`` replaces the content stream."""
    content = stream if stream is not None else f"BT /F1 12 Tf 72 712 Td ({text}) Tj ET".encode()
    flate = stream is not None
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d%s >>\nstream\n" % (len(content), b" /Filter /FlateDecode" if flate else b"")
        + content
        + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    if encrypt:
        objects.append(
            b"<< /Filter /Standard /V 1 /R 2 /O <"
            + b"41" * 32
            + b"> /U <"
            + b"42" * 32
            + b"> /P -4 >>"
        )
    if raw:
        objects.append(raw.encode())
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    trailer = b"<< /Size %d /Root 1 0 R" % (len(objects) + 1)
    if encrypt:
        trailer += b" /Encrypt %d 0 R /ID [<%s> <%s>]" % (len(objects), b"00" * 16, b"00" * 16)
    out += b"trailer\n" + trailer + b" >>\nstartxref\n%d\n%%%%EOF\n" % xref
    return bytes(out)


_W = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
_CONTENT_TYPES = (
    '<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/'
    'package/2006/content-types"><Default Extension="rels" ContentType="application/'
    'vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" '
    'ContentType="application/xml"/><Override PartName="/word/document.xml" ContentType='
    '"application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/></Types>'
)
_RELS = (
    '<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.'
    'org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.'
    'openxmlformats.org/officeDocument/2006/relationships/officeDocument" '
    'Target="word/document.xml"/></Relationships>'
)


def docx_xml(body: str, prolog: str = "") -> str:
    return f'<?xml version="1.0" encoding="UTF-8"?>{prolog}<w:document xmlns:w="{_W}"><w:body>{body}</w:body></w:document>'


def docx_para(text: str) -> str:
    return f"<w:p><w:r><w:t>{text}</w:t></w:r></w:p>"


def write_docx(path: Path, document_xml: str | None, *, skip_rels: bool = False) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", _CONTENT_TYPES)
        if not skip_rels:
            archive.writestr("_rels/.rels", _RELS)
        if document_xml is not None:
            archive.writestr("word/document.xml", document_xml)


def write_docx_bomb(path: Path, uncompressed: int) -> None:
    """A docx whose document.xml inflates to ``uncompressed`` bytes (written streaming)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        archive.writestr("[Content_Types].xml", _CONTENT_TYPES)
        archive.writestr("_rels/.rels", _RELS)
        with archive.open("word/document.xml", "w", force_zip64=True) as handle:
            handle.write(docx_xml("<w:p><w:r><w:t>").split("</w:t>")[0].encode())
            block = b"a" * MIB
            for _ in range(uncompressed // MIB):
                handle.write(block)
            handle.write(b"</w:t></w:r></w:p></w:body></w:document>")


def write_bytes(data: bytes) -> Callable[[Path], None]:
    return lambda path: path.write_bytes(data)


def write_text(text: str, encoding: str = "utf-8") -> Callable[[Path], None]:
    return lambda path: path.write_bytes(text.encode(encoding))


def single_line(size: int) -> Callable[[Path], None]:
    def build(path: Path) -> None:
        word = b"lorem ipsum dolor sit amet "
        with open(path, "wb") as handle:
            block = word * (MIB // len(word))
            for _ in range(size // len(block)):
                handle.write(block)
            handle.write(b"singlelineend")

    return build


def flate_bomb(size: int) -> Callable[[Path], None]:
    def build(path: Path) -> None:
        packer = zlib.compressobj(9)
        body = packer.compress(b"BT /F1 12 Tf 72 712 Td (")
        block = b" " * MIB
        body += b"".join(packer.compress(block) for _ in range(size // MIB))
        body += packer.compress(b"x) Tj ET") + packer.flush()
        path.write_bytes(pdf_bytes(stream=body))

    return build


def sparse_file(size: int) -> Callable[[Path], None]:
    def build(path: Path) -> None:
        with open(path, "wb") as handle:
            handle.write(b"over the size limit ")
            handle.truncate(size)

    return build


# -- input cases --------------------------------------------------------------------------------
@dataclass(frozen=True)
class InputCase:
    """One hostile input. ``expect`` says what a correct outcome is:

    - ``reject``: listed as a failure with a reason (or a warning), contributing no text;
    - ``skip``: an unsupported type found in a folder: counted as skipped, not failed, no text;
    - ``ingest``: ingested, and ``contains`` is in its chunks (warnings allowed);
    - ``lossless``: listed as a failure or a warning, or else ingested with all of ``contains``;
    - ``warn``: listed as a failure, or ingested with a warning naming it (the text was guessed);
    - ``any``: nothing asked beyond the batch-wide rules (no traceback, hang, leak, lost file).
    """

    tag: str
    fmt: str
    title: str
    suffix: str
    build: Callable[[Path], None] | None
    expect: str
    contains: tuple[str, ...] = ()
    min_docs: int = 0  # fewer documents from the file, and no warning: records were merged
    absent: tuple[str, ...] = ()
    full_only: bool = False
    heavy: bool = False  # a longer timeout, and left out of the mixed batch
    special: str = ""  # build by a name the folder needs (fs cases, see build_special)
    hook: str = ""  # "walk:<action>" or "stat:<action>": swap the file in-process
    note: str = ""

    def filename(self) -> str:
        return f"bad-{self.tag}{self.suffix}"


def _case(tag: str, fmt: str, title: str, suffix: str, build, expect: str, **kw) -> InputCase:  # type: ignore[no-untyped-def]
    return InputCase(tag, fmt, title, suffix, build, expect, **kw)


def _lines(n: int, word: str) -> str:
    return "".join(f"{word} line {i}\n" for i in range(n))


def input_cases(full: bool) -> list[InputCase]:
    nul = ("alpha beta " * 900).encode() + b"\x00\x00" + b" nulafterword gamma\n"
    deep_md = "".join("  " * i + f"- item{i}\n" for i in range(400))
    quotes = ">" * 100_000 + " quotedword\n"
    tables, columns, row, jline = (
        (10_000, 200_000, MIB, 5 * MIB) if full else (1_000, 50_000, 200_000, MIB)
    )
    bomb = (60 if full else 10) * MIB
    html_lists = "<ul><li>" * 30_000 + "deeplistword" + "</li></ul>" * 30_000
    divs = "<div>" * 150_000 + "deepdivword" + "</div>" * 150_000
    # fmt: off
    cases = [
        # txt
        _case("t01", "txt", "empty", ".txt", write_bytes(b""), "reject"),
        _case("t02", "txt", "whitespace only", ".txt", write_bytes(b" \n\t\n" * 100), "reject"),
        _case("t03", "txt", "random binary", ".txt", write_bytes(os.urandom(20_000)), "reject"),
        _case("t04", "txt", "ELF header", ".txt", write_bytes(b"\x7fELF\x02\x01\x01" + bytes(4000)), "reject"),
        _case("t05", "txt", "NUL bytes after 8 KiB", ".txt", write_bytes(nul), "warn", contains=("nulafterword",), absent=("\x00",)),
        _case("t06", "txt", "cp1252 without declaration", ".txt", write_text("café résumé naïve façade " * 20, "cp1252"), "warn", contains=("café",)),
        _case("t07", "txt", "utf-16 with BOM", ".txt", write_text("utf sixteen bomword\n", "utf-16"), "ingest", contains=("bomword",)),
        _case("t08", "txt", "utf-16-le without BOM", ".txt", write_text("utf sixteen nobomword text\n" * 5, "utf-16-le"), "warn", contains=("nobomword",)),
        _case("t09", "txt", "shift-jis", ".txt", write_text("日本語のテキストです。" * 10, "shift_jis"), "warn"),
        _case("t10", "txt", "invalid utf-8 bytes mid-text", ".txt", write_bytes(b"valid start " * 50 + b"\xff\xfe\xc3" + b" validend"), "warn", contains=("validend",)),
        _case("t11", "txt", "utf-8 with BOM", ".txt", write_bytes(b"\xef\xbb\xbfbomutfword here\n"), "ingest", contains=("bomutfword",)),
        _case("t12", "txt", "CRLF and lone CR", ".txt", write_bytes(b"crlfword one\r\nline two\rcrword\r\n"), "ingest", contains=("crlfword", "crword")),
        _case("t13", "txt", "truncated multibyte at end", ".txt", write_bytes("fine text endtruncword é".encode()[:-1]), "lossless", contains=("endtruncword",)),
        _case("t14", "txt", "1 MB word without spaces", ".txt", write_bytes(b"x" * MIB), "any", heavy=True),
        _case("t15", "txt", "control characters", ".txt", write_bytes(bytes(range(1, 32)) * 50 + b" ctrlword"), "lossless", contains=("ctrlword",)),
        _case("t16", "txt", "5 MB single line", ".txt", single_line(5 * MIB), "lossless", contains=("singlelineend",), heavy=True),
        _case("t17", "txt", "over the size limit (sparse 101 MiB)", ".txt", sparse_file(101 * MIB), "reject"),
        _case("t18", "txt", "PDF bytes named .txt", ".txt", write_bytes(pdf_bytes(stream=zlib.compress(b"BT (wrongext) Tj ET" * 500))), "reject"),
        _case("t19", "txt", "utf-32 with BOM", ".txt", write_text("thirtytwoword\n", "utf-32"), "ingest", contains=("thirtytwoword",)),
        # md
        _case("m01", "md", "empty", ".md", write_bytes(b""), "reject"),
        _case("m02", "md", "front matter only", ".md", write_text("---\ntitle: x\n---\n"), "reject" ),
        _case("m03", "md", "unterminated front matter", ".md", write_text("---\ntitle: x\nfmword body\n"), "lossless", contains=("fmword",)),
        _case("m04", "md", "invalid YAML front matter", ".md", write_text("---\n: [unclosed\n---\n# H\nyamlbodyword\n"), "lossless", contains=("yamlbodyword",)),
        _case("m05", "md", "400-level nested list", ".md", write_text(deep_md), "lossless", contains=("item0", "item200", "item399")),
        _case("m06", "md", "100k nested blockquotes", ".md", write_text(quotes), "lossless", contains=("quotedword",), heavy=True),
        _case("m07", "md", "10k headings", ".md", write_text("".join(f"# h{i}\nheadbody{i}\n" for i in range(10_000))), "lossless", contains=("headbody9999",), heavy=True),
        _case("m08", "md", "unclosed code fence", ".md", write_text("intro fenceword\n```\ncode forever\n"), "lossless", contains=("fenceword",)),
        _case("m09", "md", "inline script tag", ".md", write_text("mdscriptword\n<script>alert(1)</script>\n"), "ingest", contains=("mdscriptword",)),
        _case("m10", "md", "binary named .md", ".md", write_bytes(bytes(range(256)) * 40), "reject" ),
        _case("m11", "md", "DOCX bytes named .md", ".md", lambda p: write_docx(p, docx_xml(docx_para("x"))), "reject"),
        _case("m12", "md", f"{row // 1000:,} kB table row", ".md", write_text("| a |" * (row // 5) + "\n|---|\nmdtableword\n"), "any", heavy=True),
        # html
        _case("h01", "html", "empty", ".html", write_bytes(b""), "reject"),
        _case("h02", "html", "only script and style", ".html", write_text("<script>var x=1</script><style>p{}</style>"), "reject"),
        _case("h03", "html", "unclosed tags", ".html", write_text("<html><body><p>unclosedword<div><span>more"), "ingest", contains=("unclosedword",)),
        _case("h04", "html", "30k nested lists", ".html", write_text(html_lists), "lossless", contains=("deeplistword",), heavy=True),
        _case("h05", "html", "150k nested divs", ".html", write_text(divs), "lossless", contains=("deepdivword",), heavy=True, full_only=not full),
        _case("h06", "html", "latin-1 bytes, charset declared", ".html", write_text('<meta charset="iso-8859-1"><p>déclaréword</p>', "latin-1"), "ingest", contains=("déclaréword",)),
        _case("h07", "html", "wrong charset declared", ".html", write_text('<meta charset="utf-8"><p>fauxcharset é à</p>', "latin-1"), "warn", contains=("fauxcharset",)),
        _case("h08", "html", "binary named .html", ".html", write_bytes(os.urandom(10_000)), "reject" ),
        _case("h09", "html", "unterminated comment", ".html", write_text("<p>beforecomment</p><!-- never closed <p>hidden</p>"), "lossless", contains=("beforecomment",)),
        _case("h10", "html", "invalid entities", ".html", write_text("<p>&#x110000; &#0; &bogus; entityword</p>"), "lossless", contains=("entityword",)),
        _case("h11", "html", "2 MB attribute", ".html", write_text('<p title="' + "a" * 2 * MIB + '">attrword</p>'), "lossless", contains=("attrword",), heavy=True),
        _case("h12", "html", "NUL bytes in markup", ".html", write_bytes(b"<p>nulhtml" + b"\x00" * 10 + b"word</p>"), "any", absent=("\x00",)),
        _case("h13", "html", f"{tables:,} nested tables", ".html", write_text("<table><tr><td>" * tables + "tableword"), "lossless", contains=("tableword",), heavy=True),
        # pdf
        _case("p01", "pdf", "empty", ".pdf", write_bytes(b""), "reject"),
        _case("p02", "pdf", "truncated", ".pdf", write_bytes(pdf_bytes("truncword")[:200]), "reject" ),
        _case("p03", "pdf", "garbage with PDF header", ".pdf", write_bytes(b"%PDF-1.4\n" + os.urandom(5000)), "reject"),
        _case("p04", "pdf", "encrypted", ".pdf", write_bytes(pdf_bytes("secretpdfword", encrypt=True)), "reject", absent=("secretpdfword",)),
        _case("p05", "pdf", "no text (empty page)", ".pdf", write_bytes(pdf_bytes(stream=zlib.compress(b""))), "reject"),
        _case("p06", "pdf", "valid, xref offsets wrong", ".pdf", write_bytes(pdf_bytes("xrefword").replace(b"startxref\n", b"startxref\n9")), "lossless", contains=("xrefword",)),
        _case("p07", "pdf", "page tree loop", ".pdf", write_bytes(pdf_bytes("loopword").replace(b"/Kids [3 0 R]", b"/Kids [3 0 R 2 0 R]")), "any"),
        _case("p08", "pdf", "100k nested arrays", ".pdf", write_bytes(pdf_bytes("nestword", raw="[" * 100_000 + "]" * 100_000)), "any"),
        _case("p09", "pdf", f"{bomb // MIB} MB flate bomb content", ".pdf", flate_bomb(bomb), "any", heavy=True),
        _case("p10", "pdf", "HTML named .pdf", ".pdf", write_text("<html><p>notapdf</p></html>"), "reject"),
        _case("p11", "pdf", "bad stream length", ".pdf", write_bytes(pdf_bytes("lenword").replace(b"/Length ", b"/Length 9")), "lossless", contains=("lenword",)),
        # docx
        _case("d01", "docx", "empty", ".docx", write_bytes(b""), "reject"),
        _case("d02", "docx", "not a zip", ".docx", write_bytes(b"plain text pretending"), "reject"),
        _case("d03", "docx", "truncated zip", ".docx", lambda p: (write_docx(p, docx_xml(docx_para("x" * 5000))), p.write_bytes(p.read_bytes()[:300])), "reject"),
        _case("d04", "docx", "zip without document.xml", ".docx", lambda p: write_docx(p, None), "reject"),
        _case("d05", "docx", "zip bomb (210 MiB document.xml)", ".docx", lambda p: write_docx_bomb(p, 210 * MIB), "reject", heavy=True),
        _case("d06", "docx", "malformed XML", ".docx", lambda p: write_docx(p, docx_xml("<w:p><w:r><w:t>broken")), "reject"),
        _case("d07", "docx", "entity expansion (billion laughs)", ".docx", lambda p: write_docx(p, docx_xml(docx_para("&lol9;"), _LAUGHS)), "any"),
        _case("d08", "docx", "10k nested XML elements", ".docx", lambda p: write_docx(p, docx_xml("<w:p>" * 10_000 + docx_para("nestdocx") + "</w:p>" * 10_000) ), "any"),
        _case("d09", "docx", "OLE file (encrypted docx / old .doc)", ".docx", write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(5000)), "reject"),
        _case("d10", "docx", "no relationships", ".docx", lambda p: write_docx(p, docx_xml(docx_para("relword")), skip_rels=True), "lossless", contains=("relword",)),
        _case("d11", "docx", "valid, 2k paragraphs", ".docx", lambda p: write_docx(p, docx_xml("".join(docx_para(f"para{i}") for i in range(2000)))), "ingest", contains=("para0", "para1999")),
        # csv / tsv
        _case("c01", "csv", "empty", ".csv", write_bytes(b""), "reject"),
        _case("c02", "csv", "header only", ".csv", write_text("id,text\n"), "reject"),
        _case("c03", "csv", "unterminated quote", ".csv", write_text('id,text\n1,"open quote\n2,rowtwoword\n3,rowthreeword\n'), "lossless", contains=("rowtwoword", "rowthreeword"), min_docs=2),
        _case("c04", "csv", "NUL bytes", ".csv", write_bytes(b"id,text\n1,nul\x00csv\n2,csvnulword\n"), "lossless", contains=("csvnulword",), absent=("\x00",)),
        _case("c05", "csv", f"{columns:,} columns", ".csv", write_text(",".join(f"c{i}" for i in range(columns)) + "\n" + ",".join("v" for _ in range(columns)) + "\n" ), "any", heavy=True),
        _case("c06", "csv", "field over csv.field_size_limit", ".csv", write_text("id,text\n1," + "y" * 200_000 + "\n2,smallfieldword\n"), "lossless", contains=("smallfieldword",)),
        _case("c07", "csv", "cp1252 bytes", ".csv", write_text("id,text\n1,café crème csvlatinword\n", "cp1252"), "warn", contains=("csvlatinword",)),
        _case("c08", "csv", "ragged rows", ".csv", write_text("id,text\n1\n2,raggedword,extra,extra\n"), "lossless", contains=("raggedword",)),
        _case("c09", "csv", "binary named .csv", ".csv", write_bytes(os.urandom(8000)), "reject"),
        _case("c10", "tsv", "quotes in tsv", ".tsv", write_text('id\ttext\n1\t"half quote\n2\ttsvquoteword\n'), "lossless", contains=("tsvquoteword",), min_docs=2),
        _case("c11", "tsv", "BOM and CRLF", ".tsv", write_bytes(b"\xef\xbb\xbfid\ttext\r\n1\ttsvbomword\r\n"), "ingest", contains=("tsvbomword",)),
        _case("c12", "csv", "JSON named .csv", ".csv", write_text('{"a": [1, 2, {"b": "jsonincsv"}]}\n'), "any"),
        # jsonl
        _case("j01", "jsonl", "empty", ".jsonl", write_bytes(b""), "reject"),
        _case("j02", "jsonl", "5,000-digit integer", ".jsonl", write_text('{"id": "a", "text": "bigintword", "n": ' + "9" * 5000 + '}\n{"id": "b", "text": "afterbigint"}\n' ), "lossless", contains=("afterbigint",)),
        _case("j03", "jsonl", "100k nested arrays", ".jsonl", write_text("[" * 100_000 + "]" * 100_000 + '\n{"id": "b", "text": "afternested"}\n'), "lossless", contains=("afternested",)),
        _case("j04", "jsonl", "invalid lines among valid", ".jsonl", write_text('{"id": 1, "text": "goodjsonword"}\nnot json\n{"id": 2,\n'), "lossless", contains=("goodjsonword",)),
        _case("j05", "jsonl", "non-object lines", ".jsonl", write_text('[1,2]\n3\n"str"\nnull\n{"id": "x", "text": "objword"}\n'), "lossless", contains=("objword",)),
        _case("j06", "jsonl", "NaN and Infinity", ".jsonl", write_text('{"id": "n", "text": "nanword", "v": NaN, "w": Infinity}\n'), "any"),
        _case("j07", "jsonl", "lone surrogate escape", ".jsonl", write_text('{"id": "s", "text": "surr \\ud800 surrogateword"}\n'), "lossless", contains=("surrogateword",)),
        _case("j08", "jsonl", "duplicate ids", ".jsonl", write_text('{"id": "d", "text": "firstdup"}\n{"id": "d", "text": "seconddup"}\n'), "lossless", contains=("firstdup",)),
        _case("j09", "jsonl", "utf-16 with BOM", ".jsonl", write_text('{"id": "u", "text": "utf16jsonword"}\n', "utf-16"), "lossless", contains=("utf16jsonword",)),
        _case("j10", "jsonl", "only blank lines", ".jsonl", write_text("\n\n   \n"), "reject"),
        _case("j11", "jsonl", "900-deep nested object", ".jsonl", write_text('{"id": "deep", "text": "deepobjword", "x": ' + '{"a": ' * 900 + "1" + "}" * 900 + "}\n" ), "lossless", contains=("deepobjword",)),
        _case("j12", "jsonl", f"{jline // MIB} MB line", ".jsonl", write_text('{"id": "big", "text": "' + "word " * (jline // 5) + 'bigjsonend"}\n'), "lossless", contains=("bigjsonend",), heavy=True),
        _case("j13", "jsonl", "truncated last line", ".jsonl", write_text('{"id": 1, "text": "wholeline"}\n{"id": 2, "text": "cut'), "lossless", contains=("wholeline",)),
        _case("j14", "jsonl", "null and numeric text", ".jsonl", write_text('{"id": 1, "text": null}\n{"id": 2, "text": 12345}\n{"id": 3, "text": "nulltextword"}\n' ), "lossless", contains=("nulltextword",)),
        # filesystem
        _case("f01", "fs", "file name with invalid UTF-8 (\\xe9\\xff)", "", None, "any", special="badname"),
        _case("f02", "fs", "FIFO", ".txt", None, "reject", special="fifo"),
        _case("f03", "fs", "socket", ".txt", None, "reject", special="socket"),
        _case("f04", "fs", "dangling symlink", ".txt", None, "reject", special="dangling"),
        _case("f05", "fs", "symlink loop", "", None, "reject", special="loop"),
        _case("f06", "fs", "directory symlink back to the root", "", None, "any", special="dirloop" ),
        _case("f07", "fs", "symlink to /etc/passwd (leaves the root)", ".txt", None, "reject", special="passwd", absent=("@passwd",)),
        _case("f08", "fs", "symlink to a folder outside the root", "", None, "reject", special="outside"),
        _case("f09", "fs", "unreadable (chmod 000)", ".txt", None, "any", special="chmod", note="as root, chmod 000 does not prevent reading" if os.geteuid() == 0 else ""),
        _case("f10", "fs", "unsupported extension", ".exe", write_bytes(b"MZ" + bytes(100)), "skip"),
        _case("f11", "fs", "no extension", "", write_text("noextword"), "skip"),
        _case("f12", "fs", "folder named like a file", ".txt", None, "any", special="dirfile"),
        _case("f13", "fs", "newline in the file name", ".txt", None, "any", special="newline"),
        _case("f14", "fs", "255-byte file name", ".txt", None, "ingest", special="longname", contains=("longnameword",)),
        _case("f15", "fs", "100-level deep folders", ".txt", None, "ingest", special="deepdir", contains=("deepdirword",)),
        _case("f16", "fs", "FIFO swapped in after the walk", ".txt", write_text("fifoswapword\n"), "any", hook="walk:fifo"),
        _case("f17", "fs", "FIFO swapped in between stat and open", ".txt", write_text("fifoswapword\n"), "any", hook="stat:fifo"),
        _case("f18", "fs", "symlink to /etc/passwd swapped in after the walk", ".txt", write_text("swapword\n"), "any", hook="walk:passwd", absent=("@passwd",)),
        _case("f19", "fs", "symlink to /etc/passwd swapped in between stat and open", ".txt", write_text("swapword\n"), "any", hook="stat:passwd", absent=("@passwd",)),
        _case("f20", "fs", "deleted after the walk", ".txt", write_text("deletedword\n"), "any", hook="walk:delete"),
        _case("f21", "fs", "swapped for a symlink to /etc/passwd after a first ingest", ".txt", write_text("firstversionword\n"), "any", special="reswap", absent=("@passwd",)),
    ]
    # fmt: on
    if full:
        cases.append(
            _case(
                "t20",
                "txt",
                "50 MB single line",
                ".txt",
                single_line(50 * MIB),
                "lossless",
                contains=("singlelineend",),
                heavy=True,
            )
        )
    return cases


_LAUGHS = (
    '<!DOCTYPE lolz [<!ENTITY lol "lol">'
    + "".join(
        f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">'
        for i in range(1, 10)
    )
    + "]>"
)


def build_special(case: InputCase, folder: Path, outside: Path) -> None:
    """The filesystem cases: names and file types a plain write cannot make."""
    stem = f"bad-{case.tag}"
    path = folder / case.filename()
    kind = case.special
    if kind == "badname":
        with open(os.path.join(os.fsencode(folder), stem.encode() + b"-\xe9\xff.txt"), "wb") as f:
            f.write(b"badnameword\n")
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "socket":
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(path))
        sock.close()
    elif kind == "dangling":
        path.symlink_to(folder / "does-not-exist.txt")
    elif kind == "loop":
        (folder / f"{stem}-a.txt").symlink_to(folder / f"{stem}-b.txt")
        (folder / f"{stem}-b.txt").symlink_to(folder / f"{stem}-a.txt")
    elif kind == "dirloop":
        (folder / stem).symlink_to(".")
    elif kind == "passwd":
        path.symlink_to(PASSWD)
    elif kind == "outside":
        (outside / "outsideword.txt").write_text("outsidefolderword\n")
        (folder / stem).symlink_to(outside)
    elif kind == "chmod":
        path.write_text("chmodword\n")
        path.chmod(0)
    elif kind == "dirfile":
        path.mkdir()
        (path / "inner.md").write_text("# inner\ndirfileword\n")
    elif kind == "newline":
        (folder / f"{stem}-new\nline.txt").write_text("newlinenameword\n")
    elif kind == "longname":
        (folder / (stem + "-" + "n" * (250 - len(stem) - 5) + ".txt")).write_text("longnameword\n")
    elif kind == "deepdir":
        deep = folder.joinpath(stem, *["d"] * 100)
        deep.mkdir(parents=True)
        (deep / "deep.txt").write_text("deepdirword\n")
    elif kind == "reswap" and case.build is not None:
        case.build(path)
    else:
        raise ValueError(f"unknown special case {kind!r}")


def swap(path: Path, action: str) -> None:
    """Replace ``path`` atomically by a FIFO or a symlink to /etc/passwd, or delete it."""
    temp = path.with_name(path.name + ".swap")
    if action == "fifo":
        os.mkfifo(temp)
    elif action == "passwd":
        temp.symlink_to(PASSWD)
    elif action == "delete":
        path.unlink()
        return
    os.replace(temp, path)


# -- damaged workspaces -------------------------------------------------------------------------
@dataclass(frozen=True)
class DamageCase:
    """``doctor``: the exit code a correct ``ragkit doctor`` gives; ``repairable``: whether
    ``doctor --repair`` must restore a clean state (the store, the record of truth, is intact);
    ``sparse_only``: only the sparse index is hurt, so dense queries must still work."""

    tag: str
    title: str
    damage: Callable[[Path], None]
    doctor: int = 1
    repairable: bool = True
    sparse_only: bool = False
    extra: dict[str, str] = field(default_factory=dict)


def _collection(ws: Path) -> Path:
    return next(p for p in (ws / "collections").iterdir() if p.is_dir())


def _one(ws: Path, pattern: str) -> Path:
    return sorted(_collection(ws).glob(pattern))[-1]


def _garble(path: Path, offset: int, length: int) -> None:
    with open(path, "r+b") as handle:
        handle.seek(offset)
        handle.write(os.urandom(length))


def _garble_middle(path: Path) -> None:
    size = path.stat().st_size
    _garble(path, size // 2, max(16, min(4096, size // 4)))


def _truncate(path: Path, fraction: float) -> None:
    os.truncate(path, int(path.stat().st_size * fraction))


def _sql(ws: Path, statement: str) -> None:
    db = sqlite3.connect(ws / "store.sqlite")
    db.execute("PRAGMA foreign_keys=OFF")
    db.execute(statement)
    db.commit()
    db.close()


def _dense(ws: Path) -> Path:
    return _one(ws, "dense.g*")


def _sparse(ws: Path) -> Path:
    return _one(ws, "sparse.g*")


def damage_cases() -> list[DamageCase]:
    store = lambda ws: ws / "store.sqlite"  # noqa: E731
    # fmt: off
    return [
        DamageCase("s01", "store: garbled pages", lambda ws: _garble(store(ws), 8192, 12288), repairable=False),
        DamageCase("s02", "store: garbled header", lambda ws: _garble(store(ws), 0, 100), repairable=False ),
        DamageCase("s03", "store: truncated to 0 bytes", lambda ws: _truncate(store(ws), 0), repairable=False),
        DamageCase("s04", "store: truncated to half", lambda ws: _truncate(store(ws), 0.5), repairable=False),
        DamageCase("s05", "store: deleted beside the index files", lambda ws: store(ws).unlink(), repairable=False),
        DamageCase("s06", "store: chunk rows deleted (index holds extra ids)", lambda ws: _sql(ws, "DELETE FROM chunks WHERE id % 3 = 0")),
        DamageCase("s07", "store: cached vectors deleted", lambda ws: _sql(ws, "DELETE FROM embeddings") ),
        DamageCase("s08", "store: generation points at a missing file", lambda ws: _sql(ws, "UPDATE collections SET generation = generation + 7")),
        DamageCase("i01", "dense: garbled middle", lambda ws: _garble_middle(_dense(ws))),
        DamageCase("i02", "dense: garbled header", lambda ws: _garble(_dense(ws), 0, 32)),
        DamageCase("i03", "dense: truncated to half", lambda ws: _truncate(_dense(ws), 0.5)),
        DamageCase("i04", "dense: truncated to 0 bytes", lambda ws: _truncate(_dense(ws), 0)),
        DamageCase("i05", "dense: deleted", lambda ws: _dense(ws).unlink()),
        DamageCase("i06", "sparse: garbled middle", lambda ws: _garble_middle(_sparse(ws)), sparse_only=True),
        DamageCase("i07", "sparse: truncated to half", lambda ws: _truncate(_sparse(ws), 0.5), sparse_only=True),
        DamageCase("i08", "sparse: deleted", lambda ws: _sparse(ws).unlink(), sparse_only=True),
        DamageCase("i09", "sparse: garbled header", lambda ws: _garble(_sparse(ws), 0, 32), sparse_only=True),
        DamageCase("x01", "stray temp files of a crashed writer", _stray_files),
        DamageCase("x02", "lock file naming a dead pid", lambda ws: (ws / "write.lock").write_text("pid 999999 on deadhost"), doctor=0),
        DamageCase("x03", "collections folder deleted", lambda ws: _rmtree(ws / "collections")),
        DamageCase("x04", "ragkit.toml garbled", lambda ws: (ws / "ragkit.toml").write_text("[encoder\nmodel = "), repairable=False),
    ]
    # fmt: on


def _stray_files(ws: Path) -> None:
    folder = _collection(ws)
    dense = _dense(ws)
    (folder / "dense.g999999.faiss").write_bytes(dense.read_bytes())
    (folder / (dense.name + ".tmp")).write_bytes(b"partial")
    (folder / "sparse.g999999.bm25.tmp").write_bytes(b"partial")


def _rmtree(path: Path) -> None:
    import shutil

    shutil.rmtree(path)

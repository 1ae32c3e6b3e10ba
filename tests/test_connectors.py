"""Connectors: every format's structure, the title rules, encodings, and every kind of bad input.

Bad inputs are built in ``tmp_path``; the only fixtures read from the repository are the files of
``examples/sample-corpus``, which must all load cleanly because README's first command ingests
them.
"""

from __future__ import annotations

import codecs
import io
import json
import logging
import os
import random
import time
import zipfile
from pathlib import Path

import pytest

from ragkit.connectors import (
    SUPPORTED_FORMATS,
    LoadOptions,
    LoadResult,
    format_for_path,
    load_file,
    read_text,
    walk_files,
)
from ragkit.connectors.filesystem import FileEntry
from ragkit.documents import Document
from ragkit.errors import ConnectorError, RagkitError

SAMPLE_CORPUS = Path(__file__).resolve().parents[1] / "examples" / "sample-corpus"


# ---------------------------------------------------------------------------- helpers


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    else:
        path.write_bytes(content)
    return path


def load_one(path: Path, options: LoadOptions | None = None) -> Document:
    result = load_file(path, uri=path.name, options=options or LoadOptions())
    assert len(result.documents) == 1
    return result.documents[0]


def reason_of(path: Path, options: LoadOptions | None = None) -> str:
    with pytest.raises(ConnectorError) as info:
        load_file(path, uri=path.name, options=options or LoadOptions())
    assert info.value.path == str(path)
    return info.value.reason


def _pdf_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def make_pdf(pages: list[list[str]], *, title: str | None = None, bad_xref: bool = False) -> bytes:
    """A minimal but valid PDF with a Helvetica text layer; "" in a page's lines is a blank line."""
    page_ids = [4 + 2 * i for i in range(len(pages))]
    kids = " ".join(f"{pid} 0 R" for pid in page_ids)
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        f"<< /Type /Pages /Kids [{kids}] /Count {len(pages)} >>".encode(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    for page_id, lines in zip(page_ids, pages):
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            f"/Resources << /Font << /F1 3 0 R >> >> /Contents {page_id + 1} 0 R >>".encode()
        )
        ops = ["BT", "/F1 11 Tf", "14 TL", "72 740 Td"]
        ops += ["T*" if not line else f"({_pdf_escape(line)}) Tj T*" for line in lines]
        stream = "\n".join([*ops, "ET"]).encode("latin-1")
        objects.append(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream))
    trailer = f"/Size {len(objects) + 2} /Root 1 0 R"
    if title is not None:
        objects.append(f"<< /Title ({_pdf_escape(title)}) >>".encode())
        trailer += f" /Info {len(objects)} 0 R"
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    startxref = xref + 7 if bad_xref else xref
    out += f"trailer\n<< {trailer} >>\nstartxref\n{startxref}\n%%EOF\n".encode()
    return bytes(out)


LONG_A = "Backups only count once a restore has been tested on spare hardware at home"
LONG_B = "and the measured restore time is written down next to the recovery objectives"
LONG_C = "Snapshots live in the same pool as the data and vanish together with that pool"
LONG_D = "so a second copy on another machine in another building is still required here"


# ---------------------------------------------------------------------------- registry


def test_supported_formats_and_format_for_path() -> None:
    assert SUPPORTED_FORMATS == {
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
    assert format_for_path(Path("a/b/NOTES.MD")) == "md"
    assert format_for_path("report.Pdf") == "pdf"
    assert format_for_path(Path("archive.tar.gz")) is None
    assert format_for_path(Path("Makefile")) is None


def test_unsupported_extension_lists_supported_ones(tmp_path: Path) -> None:
    reason = reason_of(write(tmp_path, "data.xyz", "hello"))
    assert reason.startswith("unsupported file type '.xyz'")
    assert ".md" in reason and ".pdf" in reason and ".jsonl" in reason
    assert "no extension" in reason_of(write(tmp_path, "LICENSE", "text"))


def test_connector_error_is_a_ragkit_error_with_path_in_message(tmp_path: Path) -> None:
    path = write(tmp_path, "empty.md", "")
    with pytest.raises(RagkitError, match=r"empty\.md: empty file"):
        load_file(path, uri="empty.md")


# ---------------------------------------------------------------------------- unreadable files


def test_missing_file(tmp_path: Path) -> None:
    assert "file not found" in reason_of(tmp_path / "gone.txt")


def test_directory_named_like_a_file(tmp_path: Path) -> None:
    (tmp_path / "x.txt").mkdir()
    assert reason_of(tmp_path / "x.txt") == "is a directory, not a file"


def test_dangling_symlink(tmp_path: Path) -> None:
    link = tmp_path / "link.md"
    link.symlink_to(tmp_path / "missing.md")
    assert reason_of(link).startswith("dangling symlink")


def test_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.txt"
    os.mkfifo(fifo)
    assert "not a regular file" in reason_of(fifo)


def test_empty_and_blank_files(tmp_path: Path) -> None:
    for name in ("empty.txt", "empty.md", "empty.pdf", "empty.docx", "empty.csv", "empty.jsonl"):
        assert reason_of(write(tmp_path, name, b"")) == "empty file"
    for name, content in [
        ("blank.txt", "  \n\n\t\n"),
        ("blank.md", "\n\n   \n"),
        ("blank.html", "<html><body>  <div> </div></body></html>"),
        ("only-script.html", "<html><body><script>var x = 1;</script></body></html>"),
        ("blank.jsonl", "\n\n  \n"),
    ]:
        assert "empty file" in reason_of(write(tmp_path, name, content)), name


def test_file_larger_than_limit(tmp_path: Path) -> None:
    path = write(tmp_path, "big.txt", "x" * 2048)
    reason = reason_of(path, LoadOptions(max_file_bytes=1024))
    assert "larger than the limit" in reason and "max_file_bytes" in reason
    assert load_one(path, LoadOptions(max_file_bytes=2048)).text == "x" * 2048


# ---------------------------------------------------------------------------- decoding


def test_binary_content_behind_text_extension(tmp_path: Path) -> None:
    png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256))
    for name in ("image.txt", "image.md", "image.html", "image.csv", "image.jsonl"):
        assert "looks like a binary file, not text" in reason_of(write(tmp_path, name, png))


@pytest.mark.parametrize(
    ("text", "encoding"),
    [
        ("Café au lait, naïve façade, résumé of the crème brûlée.\nÀ bientôt, Noël!\n", "latin-1"),
        ("Grüße aus Köln: Straße, Öl und Äpfel.\n", "latin-1"),
        ("“Smart quotes” – dashes — and a price of 100 € for the café.\n", "cp1252"),
        ("Plain ASCII stays plain.\n", "ascii"),
        ("UTF-8 ✓ works: 日本語, Ελληνικά, русский.\n", "utf-8"),
        ("BOM’d UTF-8 text.\n", "utf-8-sig"),
        ("UTF-16 little endian: ünïcödé ✓\n", "utf-16-le-bom"),
        ("UTF-16 big endian: ünïcödé ✓\n", "utf-16-be-bom"),
    ],
)
def test_encodings_decode_exactly(tmp_path: Path, text: str, encoding: str) -> None:
    if encoding == "utf-16-le-bom":
        data = codecs.BOM_UTF16_LE + text.encode("utf-16-le")
    elif encoding == "utf-16-be-bom":
        data = codecs.BOM_UTF16_BE + text.encode("utf-16-be")
    else:
        data = text.encode(encoding)
    path = write(tmp_path, "note.txt", data)
    assert read_text(path) == text
    assert read_text(path, data) == text
    assert load_one(path).text == text.strip()


def test_line_endings_are_normalised(tmp_path: Path) -> None:
    path = write(tmp_path, "dos.txt", b"first line\r\nsame paragraph\r\n\r\nsecond\rold mac\r\n")
    assert read_text(path) == "first line\nsame paragraph\n\nsecond\nold mac\n"
    assert [b.text for b in load_one(path).blocks] == [
        "first line\nsame paragraph",
        "second\nold mac",
    ]


def test_undecodable_text(tmp_path: Path) -> None:
    path = write(tmp_path, "odd.txt", codecs.BOM_UTF16_LE + b"A\x00B")  # odd byte count
    reason = reason_of(path)
    assert reason.startswith("cannot decode text") and "UTF-8" in reason


def test_read_text_reports_missing_file_as_connector_error(tmp_path: Path) -> None:
    with pytest.raises(ConnectorError, match="file not found"):
        read_text(tmp_path / "nope.txt")


# ---------------------------------------------------------------------------- txt


def test_txt_paragraphs_and_titles(tmp_path: Path) -> None:
    doc = load_one(
        write(tmp_path, "notes/chrony.txt", "Time sync notes\n\nFirst para\nline two\n \nSecond.")
    )
    assert doc.uri == "chrony.txt"
    assert doc.format == "txt"
    assert doc.title == "Time sync notes"
    assert [(b.text, b.kind, b.headings) for b in doc.blocks] == [
        ("Time sync notes", "paragraph", ()),
        ("First para\nline two", "paragraph", ()),
        ("Second.", "paragraph", ()),
    ]
    untitled = load_one(write(tmp_path, "plain-notes.txt", "This starts with a sentence.\n\nMore."))
    assert untitled.title == "plain-notes"


def test_huge_single_line_txt_loads(tmp_path: Path) -> None:
    line = "word " * 1_000_000  # 5 MB, no newline
    path = write(tmp_path, "huge.txt", line)
    started = time.perf_counter()
    doc = load_one(path)
    assert time.perf_counter() - started < 5
    assert len(doc.blocks) == 1
    assert doc.text == line.strip()


# ---------------------------------------------------------------------------- markdown

MARKDOWN = """\
Intro before any heading.

Backups
=======

Why *backups* matter, with `code` and a [link](https://example.org).

## Restic

- init the repository
- run a backup
  1. nested step one
  2. nested step two

| Command | Purpose |
|---------|---------|
| `restic init` | create a repository |
| `restic check` | verify it |

```bash
# this is a comment, not a heading
restic restore latest --target /tmp/restore
```

### Deeper

Deep text.

## Snapshots
Setext sibling
--------------

    indented code block

<div class="note">Raw <b>HTML</b> note</div>

# Second top

Final words.
"""


def test_markdown_heading_paths_and_kinds(tmp_path: Path) -> None:
    doc = load_one(write(tmp_path, "guide.md", MARKDOWN))
    assert doc.format == "md"
    assert doc.title == "Backups"  # first H1
    blocks = [(b.kind, b.headings, b.text) for b in doc.blocks]
    assert blocks[0] == ("paragraph", (), "Intro before any heading.")
    assert blocks[1] == (
        "paragraph",
        ("Backups",),
        "Why backups matter, with code and a link.",
    )
    assert blocks[2] == (
        "list",
        ("Backups", "Restic"),
        "- init the repository\n- run a backup\n  1. nested step one\n  2. nested step two",
    )
    assert blocks[3] == (
        "table",
        ("Backups", "Restic"),
        "Command | Purpose\nrestic init | create a repository\nrestic check | verify it",
    )
    assert blocks[4] == (
        "code",
        ("Backups", "Restic"),
        "# this is a comment, not a heading\nrestic restore latest --target /tmp/restore",
    )
    assert blocks[5] == ("paragraph", ("Backups", "Restic", "Deeper"), "Deep text.")
    assert blocks[6] == ("code", ("Backups", "Setext sibling"), "indented code block")
    assert blocks[7] == ("paragraph", ("Backups", "Setext sibling"), "Raw HTML note")
    assert blocks[8] == ("paragraph", ("Second top",), "Final words.")
    assert len(blocks) == 9
    # heading lines are not blocks of their own
    assert not any(b.text in {"Backups", "Restic", "Deeper", "Snapshots"} for b in doc.blocks)


def test_markdown_front_matter(tmp_path: Path) -> None:
    source = (
        "---\n"
        'title: "Restic Quick Reference"\n'
        "author: Alice\n"
        "tags:\n"
        "  - backups\n"
        "  - restic\n"
        "---\n"
        "# Restic\n\nBody text.\n"
    )
    doc = load_one(write(tmp_path, "restic.md", source))
    assert doc.title == "Restic Quick Reference"
    assert doc.metadata == {
        "title": "Restic Quick Reference",
        "author": "Alice",
        "tags": ["backups", "restic"],
    }
    assert [(b.headings, b.text) for b in doc.blocks] == [(("Restic",), "Body text.")]
    assert "author" not in doc.text


def test_markdown_without_h1_uses_stem_and_thematic_break_is_not_front_matter(
    tmp_path: Path,
) -> None:
    doc = load_one(write(tmp_path, "only-h2.md", "---\n\nSome text\n\n---\n\n## Part\n\nMore.\n"))
    assert doc.title == "only-h2"
    assert doc.metadata == {}
    assert [b.text for b in doc.blocks] == ["Some text", "More."]


# ---------------------------------------------------------------------------- html

HTML = """\
<!DOCTYPE html>
<html lang="en-GB">
<head>
  <title>DNS Basics | Wiki</title>
  <style>body { color: red; }</style>
  <script>trackPageView("dns");</script>
</head>
<body>
<header><a href="/">Site logo text</a><nav><a>Recent changes</a></nav></header>
<nav>Main menu link</nav>
<aside>Related sidebar</aside>
<main>
<article>
<header><h1>How DNS works</h1></header>
<p>The resolver   asks
   other servers.</p>
<div>Bare text in a div <span>with inline</span> parts<div>nested block</div>tail text</div>
<h2>Records</h2>
<ul><li>A record</li><li>CNAME<ol><li>alias</li><li>target</li></ol></li></ul>
<table><tr><th>Type</th><th>Holds</th></tr><tr><td>A</td><td>IPv4</td></tr></table>
<pre>dig example.org
  +short</pre>
<h3>Caching</h3>
<blockquote><p>TTL decides.</p></blockquote>
<dl><dt>TTL</dt><dd>time to live</dd></dl>
<h2>Debugging</h2>
<p>Use dig.</p>
<form><label>Search the wiki</label><input name="q"></form>
<noscript>Enable JavaScript please</noscript>
<iframe src="ad.html">Advert frame</iframe>
<svg><text>Chart label</text></svg>
<template><p>Template text</p></template>
<p hidden>Hidden paragraph</p>
</article>
</main>
<footer>Copyright footer text</footer>
<script>console.log("late script text")</script>
</body>
</html>
"""


def test_html_structure_and_noise_removal(tmp_path: Path) -> None:
    doc = load_one(write(tmp_path, "dns.html", HTML))
    assert doc.format == "html"
    assert doc.title == "DNS Basics | Wiki"
    assert doc.metadata == {"lang": "en-GB"}
    blocks = [(b.kind, b.headings, b.text) for b in doc.blocks]
    h1 = ("How DNS works",)
    assert blocks == [
        ("paragraph", h1, "The resolver asks other servers."),
        ("paragraph", h1, "Bare text in a div with inline parts"),
        ("paragraph", h1, "nested block"),
        ("paragraph", h1, "tail text"),
        ("list", (*h1, "Records"), "- A record\n- CNAME\n  1. alias\n  2. target"),
        ("table", (*h1, "Records"), "Type | Holds\nA | IPv4"),
        ("code", (*h1, "Records"), "dig example.org\n  +short"),
        ("paragraph", (*h1, "Records", "Caching"), "TTL decides."),
        ("paragraph", (*h1, "Records", "Caching"), "TTL"),
        ("paragraph", (*h1, "Records", "Caching"), "time to live"),
        ("paragraph", (*h1, "Debugging"), "Use dig."),
    ]
    for noise in [
        "trackPageView",
        "color: red",
        "Site logo",
        "Recent changes",
        "Main menu",
        "Related sidebar",
        "Search the wiki",
        "Enable JavaScript",
        "Advert frame",
        "Chart label",
        "Template text",
        "Hidden paragraph",
        "Copyright footer",
        "late script",
    ]:
        assert noise not in doc.text, noise


def test_html_title_falls_back_to_h1_then_stem(tmp_path: Path) -> None:
    with_h1 = load_one(write(tmp_path, "a.html", "<h2>Sub</h2><p>x</p><h1>Main</h1><p>y</p>"))
    assert with_h1.title == "Main"
    assert with_h1.metadata == {}
    bare = load_one(write(tmp_path, "bare-page.htm", "<p>Just a paragraph.</p>"))
    assert bare.title == "bare-page"
    assert [(b.kind, b.headings, b.text) for b in bare.blocks] == [
        ("paragraph", (), "Just a paragraph.")
    ]


def test_html_declared_legacy_charset(tmp_path: Path) -> None:
    html = '<html><head><meta charset="windows-1252"><title>Caf\xe9</title></head>'
    html += "<body><p>\u201cQuoted\u201d caf\xe9 \u2013 100 \u20ac</p></body></html>"
    doc = load_one(write(tmp_path, "legacy.html", html.encode("cp1252")))
    assert doc.title == "Café"
    assert doc.text == "“Quoted” café – 100 €"


def test_deeply_nested_html_does_not_crash(tmp_path: Path) -> None:
    depth = 10_000
    html = "<html><body>" + "<div>" * depth + "deep text" + "</div>" * depth
    html += "<p>after the divs</p>" + "<ul><li>" * 2000 + "deep item" + "</li></ul>" * 2000
    html += "</body></html>"
    path = write(tmp_path, "deep.html", html)
    try:
        doc = load_one(path)
    except ConnectorError as exc:  # refusing is acceptable; crashing is not
        assert "nested" in exc.reason
    else:
        assert "deep text" in doc.text and "after the divs" in doc.text and "deep item" in doc.text


# ---------------------------------------------------------------------------- pdf


def test_pdf_text_paragraphs_title_and_pages(tmp_path: Path) -> None:
    data = make_pdf(
        [[LONG_A, LONG_B, "", LONG_C, LONG_D], ["Second page text (with parens)."]],
        title="ZFS Snapshot Guide",
    )
    doc = load_one(write(tmp_path, "guide.pdf", data))
    assert doc.format == "pdf"
    assert doc.title == "ZFS Snapshot Guide"
    assert doc.metadata == {"pages": 2}
    assert [b.text for b in doc.blocks] == [
        f"{LONG_A} {LONG_B}",
        f"{LONG_C} {LONG_D}",
        "Second page text (with parens).",
    ]
    assert all(b.kind == "paragraph" and b.headings == () for b in doc.blocks)


def test_pdf_without_title_uses_stem(tmp_path: Path) -> None:
    doc = load_one(write(tmp_path, "scan-2024.pdf", make_pdf([["Hello PDF"]])))
    assert doc.title == "scan-2024"


def test_pdf_without_text_layer(tmp_path: Path) -> None:
    from pypdf import PdfWriter

    writer = PdfWriter()
    writer.add_blank_page(width=612, height=792)
    buffer = io.BytesIO()
    writer.write(buffer)
    reason = reason_of(write(tmp_path, "scanned.pdf", buffer.getvalue()))
    assert reason == "no extractable text (scanned PDF?): run OCR first"


def test_encrypted_pdf(tmp_path: Path) -> None:
    from pypdf import PdfReader, PdfWriter

    def encrypted(user_password: str) -> bytes:
        writer = PdfWriter(clone_from=PdfReader(io.BytesIO(make_pdf([["Secret text"]]))))
        writer.encrypt(user_password, owner_password="owner-secret", algorithm="RC4-128")
        buffer = io.BytesIO()
        writer.write(buffer)
        return buffer.getvalue()

    reason = reason_of(write(tmp_path, "locked.pdf", encrypted("secret")))
    assert reason.startswith("encrypted PDF: decrypt it first")
    # An empty user password (only an owner password) opens without asking anyone.
    assert load_one(write(tmp_path, "owner-only.pdf", encrypted(""))).text == "Secret text"


def test_corrupt_pdfs(tmp_path: Path) -> None:
    garbage = write(tmp_path, "garbage.pdf", b"%PDF-1.7\nthis is not really a pdf\n%%EOF\n")
    assert "PDF" in reason_of(garbage)
    assert "PDF" in reason_of(write(tmp_path, "text.pdf", b"just some text, no pdf at all"))
    whole = make_pdf([[LONG_A, LONG_B]], title="T")
    truncated = write(tmp_path, "truncated.pdf", whole[: len(whole) // 3])
    try:
        load_file(truncated, uri="truncated.pdf")
    except ConnectorError as exc:
        assert exc.reason
    # any other exception fails the test


def test_pdf_repair_warnings_do_not_leak(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    before = logging.getLogger("pypdf").level
    doc = load_one(write(tmp_path, "badxref.pdf", make_pdf([["Still readable"]], bad_xref=True)))
    assert doc.text == "Still readable"
    assert not [r for r in caplog.records if r.name.startswith("pypdf")]
    assert logging.getLogger("pypdf").level == before


# ---------------------------------------------------------------------------- docx


def make_docx(path: Path, *, core_title: str = "") -> Path:
    import docx

    document = docx.Document()
    document.core_properties.title = core_title
    document.add_paragraph("Preface before any heading.")
    document.add_heading("Runbook", level=0)  # "Title" style
    document.add_paragraph("Intro paragraph.")
    document.add_heading("Restore", level=1)
    document.add_paragraph("Step one", style="List Bullet")
    document.add_paragraph("Step two", style="List Bullet")
    document.add_paragraph("Sub step", style="List Bullet 2")
    document.add_heading("Details", level=2)
    table = document.add_table(rows=2, cols=2)
    for cell, text in zip(
        table.rows[0].cells + table.rows[1].cells, ["Service", "RTO", "DNS", "1h"]
    ):
        cell.text = text
    document.add_paragraph("After the table.")
    document.add_heading("Verify", level=1)
    document.add_paragraph("Check everything.")
    document.save(str(path))
    return path


def test_docx_heading_paths_kinds_and_title(tmp_path: Path) -> None:
    doc = load_one(make_docx(tmp_path / "runbook.docx", core_title="DR Runbook"))
    assert doc.format == "docx"
    assert doc.title == "DR Runbook"
    assert [(b.kind, b.headings, b.text) for b in doc.blocks] == [
        ("paragraph", (), "Preface before any heading."),
        ("paragraph", ("Runbook",), "Intro paragraph."),
        ("list", ("Runbook", "Restore"), "- Step one\n- Step two\n  - Sub step"),
        ("table", ("Runbook", "Restore", "Details"), "Service | RTO\nDNS | 1h"),
        ("paragraph", ("Runbook", "Restore", "Details"), "After the table."),
        ("paragraph", ("Runbook", "Verify"), "Check everything."),
    ]


def test_docx_title_falls_back_to_title_style_then_stem(tmp_path: Path) -> None:
    assert load_one(make_docx(tmp_path / "a.docx")).title == "Runbook"
    import docx

    document = docx.Document()
    document.add_paragraph("Only a paragraph.")
    document.save(str(tmp_path / "plain-doc.docx"))
    assert load_one(tmp_path / "plain-doc.docx").title == "plain-doc"


def test_docx_zip_bomb_is_refused_before_parsing(tmp_path: Path) -> None:
    path = tmp_path / "bomb.docx"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("word/document.xml", b"\0" * 3_000_000)
    assert path.stat().st_size < 50_000
    reason = reason_of(path, LoadOptions(max_docx_uncompressed_bytes=1_000_000))
    assert "possible zip bomb" in reason and "max_docx_uncompressed_bytes" in reason


def test_corrupt_and_foreign_docx(tmp_path: Path) -> None:
    assert "not a valid zip archive" in reason_of(write(tmp_path, "junk.docx", b"PK\x03\x04junk"))
    path = tmp_path / "not-word.docx"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("hello.txt", "this zip is not a Word document")
    assert "docx" in reason_of(path)
    whole = make_docx(tmp_path / "whole.docx").read_bytes()
    assert "docx" in reason_of(write(tmp_path, "cut.docx", whole[: len(whole) // 2]))


# ---------------------------------------------------------------------------- csv / tsv

CSV = """\
id,title,body,category,lang
g1,RAID,"Redundant disks, not a backup.",storage,en
g2,WAL,Write-ahead log,databases,en
g3,Empty,,misc,en
g1,Duplicate,Again,misc,en
g4,"Multi","line one
line two",misc,de
"""


def test_csv_defaults(tmp_path: Path) -> None:
    result = load_file(write(tmp_path, "gloss.csv", CSV), uri="data/gloss.csv")
    docs = {doc.uri: doc for doc in result.documents}
    assert list(docs) == [f"data/gloss.csv#g{n}" for n in (1, 2, 3, 4)]
    raid = docs["data/gloss.csv#g1"]
    assert raid.title == "RAID"
    assert raid.format == "csv"
    assert raid.text == "body: Redundant disks, not a backup.\ncategory: storage\nlang: en"
    assert raid.metadata == {}
    assert docs["data/gloss.csv#g4"].text.startswith("body: line one\nline two")
    assert docs["data/gloss.csv#g3"].text == "category: misc\nlang: en"
    assert result.problems == ["line 5: duplicate id 'g1'; row skipped"]


def test_csv_problems_do_not_stop_the_file(tmp_path: Path) -> None:
    options = LoadOptions(text_fields=("body",), metadata_fields=("category", "lang"))
    result = load_file(write(tmp_path, "gloss.csv", CSV), uri="gloss.csv", options=options)
    assert [doc.uri for doc in result.documents] == ["gloss.csv#g1", "gloss.csv#g2", "gloss.csv#g4"]
    assert result.documents[0].text == "Redundant disks, not a backup."
    assert result.documents[0].metadata == {"category": "storage", "lang": "en"}
    assert result.problems == [
        "line 4: no text in body; row skipped",
        "line 5: duplicate id 'g1'; row skipped",
    ]


def test_csv_row_numbers_as_ids_and_explicit_fields(tmp_path: Path) -> None:
    data = "term,definition,area\nRAID,Disks,storage\n\nDNS,Names,net\n"
    result = load_file(write(tmp_path, "g.csv", data), uri="g.csv")
    assert [(d.uri, d.title) for d in result.documents] == [
        ("g.csv#1", "g #1"),
        ("g.csv#2", "g #2"),
    ]
    options = LoadOptions(
        id_field="term", title_field="term", text_fields=("definition",), metadata_fields=("area",)
    )
    result = load_file(tmp_path / "g.csv", uri="g.csv", options=options)
    assert [(d.uri, d.title, d.text, d.metadata) for d in result.documents] == [
        ("g.csv#RAID", "RAID", "Disks", {"area": "storage"}),
        ("g.csv#DNS", "DNS", "Names", {"area": "net"}),
    ]


def test_tsv_and_legacy_encoding(tmp_path: Path) -> None:
    data = "id\ttext\n1\tCafé crème, 5 €\n2\tsecond, with comma\n".encode("cp1252")
    result = load_file(write(tmp_path, "t.tsv", data), uri="t.tsv")
    assert [(d.uri, d.text, d.format) for d in result.documents] == [
        ("t.tsv#1", "Café crème, 5 €", "tsv"),
        ("t.tsv#2", "second, with comma", "tsv"),
    ]


def test_csv_without_usable_text(tmp_path: Path) -> None:
    only_ids = write(tmp_path, "ids.csv", "id,title\n1,a\n2,b\n")
    assert "no usable text field" in reason_of(only_ids)
    empty_values = write(tmp_path, "blank.csv", "id,text\n1,\n2,  \n")
    assert "no usable text field" in reason_of(empty_values)
    wrong_option = write(tmp_path, "g.csv", "id,text\n1,a\n")
    assert "no usable text field" in reason_of(wrong_option, LoadOptions(text_fields=("body",)))
    assert "'nope' is not a column" in reason_of(wrong_option, LoadOptions(id_field="nope"))
    assert "empty file" in reason_of(write(tmp_path, "header.csv", "id,text\n"))


# ---------------------------------------------------------------------------- jsonl


def test_jsonl_defaults_and_problems(tmp_path: Path) -> None:
    lines = [
        json.dumps({"_id": "a1", "title": "First", "text": "Alpha text", "metadata": {"k": 1}}),
        "{not json",
        json.dumps({"id": 7, "content": "From content field", "source": "wiki"}),
        "[1, 2, 3]",
        "",
        json.dumps({"body": "Body field wins when alone"}),
        json.dumps({"id": "x", "title": "no text here"}),
        json.dumps({"_id": "a1", "text": "duplicate id"}),
        json.dumps({"page_content": ["list", "of", "lines"]}),
    ]
    options = LoadOptions(metadata_fields=("source",))
    result = load_file(write(tmp_path, "d.jsonl", "\n".join(lines)), uri="d.jsonl", options=options)
    assert isinstance(result, LoadResult)
    assert [(d.uri, d.title, d.text, d.metadata) for d in result.documents] == [
        ("d.jsonl#a1", "First", "Alpha text", {"k": 1}),
        ("d.jsonl#7", "d #7", "From content field", {"source": "wiki"}),
        ("d.jsonl#6", "d #6", "Body field wins when alone", {}),
        ("d.jsonl#9", "d #9", "list\nof\nlines", {}),
    ]
    assert all(d.format == "jsonl" for d in result.documents)
    assert len(result.problems) == 4
    assert result.problems[0].startswith("line 2: invalid JSON: ")
    assert result.problems[1] == "line 4: not a JSON object (got list)"
    assert result.problems[2].startswith("line 7: no text in any of ['text', 'content'")
    assert result.problems[3] == "line 8: duplicate id 'a1'; record skipped"


def test_jsonl_explicit_fields(tmp_path: Path) -> None:
    record = {"key": "k1", "q": "Question?", "a": "Answer.", "name": "FAQ", "lang": "en"}
    options = LoadOptions(
        text_fields=("q", "a"), id_field="key", title_field="name", metadata_fields=("lang",)
    )
    doc = load_one(write(tmp_path, "faq.ndjson", json.dumps(record) + "\n"), options)
    assert (doc.uri, doc.title, doc.text, doc.metadata) == (
        "faq.ndjson#k1",
        "FAQ",
        "q: Question?\na: Answer.",
        {"lang": "en"},
    )


def test_jsonl_with_no_valid_record(tmp_path: Path) -> None:
    reason = reason_of(write(tmp_path, "bad.jsonl", "{oops\nnot json either\n"))
    assert reason.startswith("no valid records (2 problems; first: line 1: invalid JSON")
    no_text = write(tmp_path, "notext.jsonl", '{"id": 1, "title": "t"}\n{"id": 2}\n')
    assert "no usable text field" in reason_of(no_text)


# ---------------------------------------------------------------------------- robustness


@pytest.mark.parametrize("extension", sorted(SUPPORTED_FORMATS))
def test_garbage_input_only_ever_raises_connector_error(tmp_path: Path, extension: str) -> None:
    rng = random.Random(f"garbage{extension}")
    samples = [
        bytes(rng.randrange(1, 256) for _ in range(rng.randrange(1, 3000))) for _ in range(6)
    ]
    samples += [b"\xff\xfe" + bytes(rng.randrange(256) for _ in range(101))]
    samples += [b"PK\x03\x04" + bytes(rng.randrange(256) for _ in range(200))]
    samples += [b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog /Pages 9 0 R >>\nendobj\ntrailer\n<<>>"]
    for number, data in enumerate(samples):
        path = write(tmp_path, f"sample{number}{extension}", data)
        try:
            result = load_file(path, uri=path.name)
        except ConnectorError as exc:
            assert exc.reason
        else:
            assert result.documents and all(d.text.strip() for d in result.documents)


# ---------------------------------------------------------------------------- sample corpus

HTML_NOISE = [
    "trackPageView",
    "wikiStats",
    "Recent changes",
    "Random page",
    "Wiki home",
    "Log in",
    "Search the wiki",
    "Related pages",
    "wiki bot",
    "CC BY-SA",
    "tracking pixel",
    "copyable",
    "font-family",
]


def sample_entries() -> list[FileEntry]:
    entries = list(walk_files(SAMPLE_CORPUS))
    assert all(isinstance(entry, FileEntry) for entry in entries), entries
    return entries  # type: ignore[return-value]


def test_sample_corpus_has_the_promised_mix() -> None:
    entries = sample_entries()
    formats = [entry.format for entry in entries]
    assert 28 <= len(entries) <= 40
    assert formats.count("md") >= 12
    assert formats.count("html") >= 6
    assert formats.count("pdf") >= 4
    assert formats.count("txt") >= 3
    assert formats.count("docx") >= 1 and formats.count("csv") >= 1
    assert any("/" in entry.uri for entry in entries)
    total = sum(path.stat().st_size for path in SAMPLE_CORPUS.rglob("*") if path.is_file())
    assert total < 1.5 * 1024**2


def test_every_sample_corpus_file_loads_cleanly() -> None:
    for entry in sample_entries():
        result = load_file(entry.path, uri=entry.uri)
        assert result.problems == [], entry.uri
        assert result.documents, entry.uri
        for doc in result.documents:
            assert doc.uri.startswith(entry.uri)
            assert doc.format == entry.format
            assert doc.text.strip() and all(b.text.strip() for b in doc.blocks), entry.uri
            assert doc.title.strip() and doc.title != entry.path.name, entry.uri
        if entry.format in {"md", "html", "pdf", "txt", "docx"}:
            (doc,) = result.documents
            assert len(doc.text.split()) >= 300, entry.uri
            assert doc.title != entry.path.stem, f"{entry.uri} should carry a real title"
        if entry.format in {"md", "html", "docx"}:
            assert any(b.headings for b in result.documents[0].blocks), entry.uri
        if entry.format == "html":
            text = result.documents[0].text
            assert [noise for noise in HTML_NOISE if noise in text] == [], entry.uri
            assert result.documents[0].metadata.get("lang", "").startswith("en")
        if entry.format == "pdf":
            assert result.documents[0].metadata["pages"] >= 1


def test_sample_corpus_answers_the_readme_question() -> None:
    doc = load_one(SAMPLE_CORPUS / "backups" / "restic.md")
    restore = [b for b in doc.blocks if "Restoring files" in b.headings]
    assert any("restic restore latest --target" in b.text and b.kind == "code" for b in restore)

"""Connectors under hostile input: each case here once stopped a file, lost text or blew up.

Every loader must turn bad input into either a per-file ``ConnectorError`` or documents plus
human-readable ``problems``; nothing may be silently dropped, garbled or grown quadratically.
"""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

from ragkit.connectors import LoadResult, parse_bytes
from ragkit.connectors.text import BINARY_SNIFF_BYTES

CONTROL_CODES = {chr(code) for code in range(32)} - set("\t\n\r\f")


def parse(data: bytes, fmt: str, ext: str | None = None) -> LoadResult:
    name = f"x.{ext or fmt}"
    return parse_bytes(data, fmt=fmt, path=Path(name), uri=name)


def text_of(result: LoadResult) -> str:
    return "\n".join(document.text for document in result.documents)


# ---------------------------------------------------------------------------- jsonl


def test_jsonl_huge_integer_is_a_problem_of_its_line_only() -> None:
    lines = [
        json.dumps({"id": "a", "text": "first"}),
        '{"id": "b", "text": "huge", "n": ' + "9" * 5000 + "}",
        json.dumps({"id": "c", "text": "third"}),
    ]
    result = parse("\n".join(lines).encode(), "jsonl")
    assert [d.uri for d in result.documents] == ["x.jsonl#a", "x.jsonl#c"]
    assert len(result.problems) == 1
    assert result.problems[0].startswith("line 2: invalid JSON: a number with more digits")


def test_jsonl_escaped_nul_never_reaches_the_text() -> None:
    result = parse(b'{"id": 1, "text": "a\\u0000b\\u0007c"}\n', "jsonl")
    assert result.documents[0].text == "abc"
    assert result.problems == [
        "removed 2 control characters (NUL, other C0 codes or lone surrogates); "
        "the file may be partly binary or damaged"
    ]


def test_jsonl_lone_surrogate_never_reaches_the_text() -> None:
    # A lone surrogate cannot be encoded as UTF-8: it stopped the whole batch in the tokenizer.
    result = parse(b'{"id": "s", "text": "surr \\ud800 word", "title": "t\\udfff"}\n', "jsonl")
    document = result.documents[0]
    assert document.text == "surr  word"
    assert document.title == "t"
    document.text.encode("utf-8")
    assert result.problems == [
        "removed 1 control character (NUL, other C0 codes or lone surrogates); "
        "the file may be partly binary or damaged"
    ]


# ---------------------------------------------------------------------------- html


def _python_peak_bytes(fmt: str, data: bytes) -> tuple[int, LoadResult]:
    tracemalloc.start()
    try:
        result = parse(data, fmt)
        return tracemalloc.get_traced_memory()[1], result
    finally:
        tracemalloc.stop()


def test_deeply_nested_html_list_renders_in_linear_memory() -> None:
    depth = 8000  # the indent of each line used to grow with its depth: ~64 MB of spaces here
    data = b"<html><body>" + b"<ul><li>" * depth + b"deep text" + b"</li></ul>" * depth
    peak, result = _python_peak_bytes("html", data)
    assert "deep text" in text_of(result)
    assert len(text_of(result)) < 100
    assert peak < 16 * 1024**2, f"{peak / 1024**2:.0f} MiB of Python memory for {len(data)} bytes"


def test_nested_html_tables_do_not_repeat_their_text_per_level() -> None:
    depth = 2000  # every level used to render the rows of all tables below it again
    data = (
        b"<html><body>" + b"<table><tr><td>cell " * depth + b"deep" + b"</td></tr></table>" * depth
    )
    text = text_of(parse(data, "html"))
    assert "deep" in text and text.count("cell") == depth
    assert len(text) < 2 * len(data)


def test_header_inside_article_in_deep_html_is_kept() -> None:
    depth = 3000
    body = b"<article>" + b"<header><div>" * depth + b"article title" + b"</div></header>" * depth
    result = parse(b"<html><body>" + body + b"<p>text</p></article></body></html>", "html")
    assert "article title" in text_of(result) and "text" in text_of(result)


# ---------------------------------------------------------------------------- decoding


def test_guessed_encoding_is_reported() -> None:
    data = "Привет, мир: это текст в старой кодировке Windows.\n".encode("cp1251")
    result = parse(data, "txt")
    (problem,) = result.problems
    assert problem.startswith("not valid UTF-8: decoded as ") and "by guess" in problem


def test_damaged_utf8_keeps_its_accents_and_reports_the_replaced_bytes() -> None:
    data = "Grüße aus Köln, Straße und Öl.\n".encode() + b"\xff\xfe broken tail\n"
    result = parse(data, "txt")
    assert result.documents[0].text.startswith("Grüße aus Köln, Straße und Öl.")
    assert result.problems == [
        "2 undecodable byte sequences replaced with U+FFFD (not valid UTF-8); check the text"
    ]


def test_nul_after_the_binary_sniff_is_stripped_and_counted() -> None:
    data = b"word " * (BINARY_SNIFF_BYTES // 5 + 10) + b"\x00\x00tail\x1b[0m end\n"
    for fmt in ("txt", "md", "html"):
        result = parse(data, fmt)
        text = text_of(result)
        assert not CONTROL_CODES & set(text), fmt
        assert "tail[0m end" in text, fmt
        assert result.problems == [
            "removed 3 control characters (NUL, other C0 codes or lone surrogates); "
            "the file may be partly binary or damaged"
        ], fmt


def test_html_character_references_to_control_codes_are_stripped() -> None:
    result = parse(b"<html><body><p>a&#1;b&#27;c</p></body></html>", "html")
    assert text_of(result) == "abc" and "removed 2 control characters" in result.problems[0]


# ---------------------------------------------------------------------------- csv


def test_csv_unterminated_quote_is_reported_and_later_rows_still_load() -> None:
    rows = ["id,text", "1,fine", '2,"opens a quote that never closes'] + [
        f"{n},row {n}" for n in range(3, 8)
    ]
    result = parse("\n".join(rows).encode() + b"\n", "csv")
    assert [d.uri for d in result.documents] == [f"x.csv#{n}" for n in range(1, 8)]
    assert result.documents[1].text == '"opens a quote that never closes'
    (problem,) = result.problems
    assert problem.startswith("line 3: a quote opened here is never closed")


def test_csv_stray_quote_closed_far_below_is_reported() -> None:
    rows = ["id,text", '1,"stray'] + [f"{n},row {n}" for n in range(2, 6)] + ['6,"x', "7,ok"]
    result = parse("\n".join(rows).encode(), "csv")
    assert [d.uri for d in result.documents] == ["x.csv#1", "x.csv#7"]
    (problem,) = result.problems
    assert problem.startswith("line 2: a quoted field runs to line 7 and holds 5 lines")


def test_csv_multiline_field_is_not_a_problem() -> None:
    result = parse(b'id,text\n1,"two lines,\nwith a comma"\n2,next\n', "csv")
    assert result.problems == [] and result.documents[0].text == "two lines,\nwith a comma"


# ---------------------------------------------------------------------------- markdown


def test_deep_markdown_list_keeps_its_deep_text() -> None:
    md = "".join("  " * level + f"- item{level}\n" for level in range(30))
    result = parse(md.encode(), "md")
    text = text_of(result)
    assert all(f"item{level}" in text for level in range(30))
    (problem,) = result.problems
    assert problem.startswith("markdown nested more than 20 levels deep (1 place, first at line")


def test_hundred_thousand_nested_blockquotes_keep_their_text() -> None:
    result = parse(b">" * 100_000 + b" the deep text\n\nafter\n", "md")
    assert text_of(result).split("\n\n") == ["the deep text", "after"]
    assert "nested more than 20 levels deep" in result.problems[0]

"""HTML nested deeper than browsers build is flattened before parsing, keeping every word.

lexbor's tree construction is superlinear in depth (150k nested divs took 124 s), so without the
cap one hostile page would eat its whole per-file time limit.
"""

from __future__ import annotations

from pathlib import Path

from ragkit.connectors import parse_bytes
from ragkit.connectors.html_depth import MAX_DEPTH, cap_nesting


def _text(data: str) -> tuple[str, list[str]]:
    result = parse_bytes(data.encode(), fmt="html", path=Path("deep.html"), uri="deep.html")
    return " ".join(block.text for block in result.documents[0].blocks), result.problems


def test_thirty_thousand_nested_lists_keep_every_item_and_say_so() -> None:
    depth = 30_000
    text, problems = _text("<ul><li>item " * depth + "deepword" + "</li></ul>" * depth)
    assert text.count("item") == depth
    assert "deepword" in text
    assert len(problems) == 1
    assert f"nested deeper than {MAX_DEPTH} levels" in problems[0]
    assert "text is kept" in problems[0]


def test_hundred_fifty_thousand_nested_divs_keep_their_text() -> None:
    depth = 150_000
    text, problems = _text("<div>" * depth + "divword" + "</div>" * depth)
    assert text == "divword"
    assert problems and "flattened" in problems[0]


def test_unclosed_nested_tables_keep_their_text() -> None:
    text, problems = _text("<table><tr><td>" * 10_000 + "tableword")
    assert "tableword" in text
    assert problems


def test_pages_within_the_depth_are_returned_unchanged() -> None:
    # Optional end tags (li, p, td, dd ...) close their open sibling: a long list of unclosed
    # items is one level deep, not thousands.
    items = "".join(f"<li>item {i}<p>para {i}" for i in range(3000))
    rows = "".join(f"<tr><td>a{i}<td>b{i}" for i in range(2000))
    terms = "".join(f"<dt>t{i}<dd>d{i}" for i in range(2000))
    page = f"<html><body><ul>{items}</ul><table>{rows}</table><dl>{terms}</dl></body></html>"
    capped, flattened = cap_nesting(page)
    assert flattened == 0
    assert capped is page
    exact = "<div>" * (MAX_DEPTH - 2) + "x" + "</div>" * (MAX_DEPTH - 2)
    assert cap_nesting(f"<html><body>{exact}</body></html>")[1] == 0


def test_markup_inside_scripts_comments_and_void_elements_does_not_count() -> None:
    script = "<script>" + "if (a <b) { x = '<div>'; }" * 2000 + "</script>"
    comment = "<!--" + "<div>" * 2000 + "-->"
    voids = "<br><img src=x><hr/>" * 2000
    page = f"<html><body>{script}{comment}{voids}<p>hello</p></body></html>"
    assert cap_nesting(page) == (page, 0)


def test_only_the_structure_below_the_cap_is_flattened() -> None:
    depth = MAX_DEPTH + 100
    page = "<div>" * depth + "x" + "</div>" * depth
    capped, flattened = cap_nesting(page)
    assert flattened == 100
    assert capped.count("<div>") == MAX_DEPTH
    assert capped.count("</div>") == MAX_DEPTH

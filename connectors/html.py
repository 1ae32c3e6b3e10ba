"""HTML: keep the article, drop the page chrome, keep h1-h6 as the heading path.

Which container is the article and which elements are chrome (DocBook Prev/Up/Next tables,
Sphinx sidebars, breadcrumbs, "edit this page" links) is decided in :mod:`.html_chrome`.

The DOM is walked with explicit stacks rather than recursion because real-world HTML (and
hostile HTML) can nest elements tens of thousands deep, which would overflow Python's stack.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ragkit.connectors.base import LoadOptions, LoadResult, single_document
from ragkit.connectors.html_chrome import chrome_kind, clean_title, main_container
from ragkit.connectors.html_depth import MAX_DEPTH, cap_nesting
from ragkit.connectors.text import decode_text, finish_result
from ragkit.documents import Block
from ragkit.errors import ConnectorError

__all__ = ["DROPPED_TAGS", "load_html"]

# Navigation, scripts and widgets repeat on every page of a site; indexing them makes every page
# match queries about the menu instead of its content.
DROPPED_TAGS = frozenset(
    {
        "script",
        "style",
        "noscript",
        "nav",
        "header",
        "footer",
        "aside",
        "form",
        "svg",
        "iframe",
        "template",
        "head",
        "button",
        "select",
        "object",
        "canvas",
    }
)
_HEADINGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}
_TEXT_BLOCKS = {"p": "paragraph", "blockquote": "paragraph", "dd": "paragraph", "dt": "paragraph"}
_LISTS = frozenset({"ul", "ol", "li"})
# Javadoc (and some Sphinx themes) lay whole sections out as list items with headings inside;
# such a list is walked as containers so its headings still make heading paths.  Only this
# many such lists deep is a list searched for headings, which keeps hostile nesting linear.
_MAX_SECTION_LISTS = 8
_HEADING_SELECTOR = "h1, h2, h3, h4, h5, h6"
# Elements that do not break a line; everything else separates the text around it.
_INLINE = frozenset(
    [
        "a",
        "abbr",
        "b",
        "bdi",
        "bdo",
        "cite",
        "code",
        "data",
        "del",
        "dfn",
        "em",
        "font",
        "i",
        "img",
        "ins",
        "kbd",
        "label",
        "mark",
        "q",
        "s",
        "samp",
        "small",
        "span",
        "strike",
        "strong",
        "sub",
        "sup",
        "time",
        "tt",
        "u",
        "var",
        "wbr",
    ]
)
_ARTICLE = frozenset({"article", "main"})
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9._:-]+)""", re.I)


def _normalise(text: str) -> str:
    return " ".join(text.split())


def _children(node: Any) -> list[Any]:
    return list(node.iter(include_text=True))


# What a walk drops besides the tags: site chrome always, in-page tables of contents unless they
# are all the page has.
_DROP_ALL = frozenset({"chrome", "toc"})
_DROP_CHROME = frozenset({"chrome"})
_META_GENERATOR = 'meta[name="generator"]'


def _dropped(node: Any, in_article: bool, drop: frozenset[str]) -> bool:
    """``<header>`` inside an article usually holds the article's own title, so it stays.

    Whether the node is inside an article is carried down by the walkers instead of looked up
    through the parents, which would cost the depth of the tree for every ``<header>``.
    """
    tag = node.tag
    if tag == "header" and in_article:
        return False
    if tag in DROPPED_TAGS:
        return True
    attributes = node.attributes
    if "hidden" in attributes or attributes.get("aria-hidden") == "true":
        return True
    return bool(attributes) and chrome_kind(node) in drop


def _collect_text(root: Any, in_article: bool, drop: frozenset[str]) -> str:
    """Text of a subtree without dropped elements; block elements and ``<br>`` break lines."""
    parts: list[str] = []
    stack: list[tuple[Any, bool] | str] = [(root, in_article)]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            parts.append(item)
            continue
        node, inside = item
        if node.is_text_node:
            parts.append(node.text_content or "")
            continue
        if not node.is_element_node or _dropped(node, inside, drop):
            continue
        if node.tag == "br":
            parts.append("\n")
            continue
        if node is not root and node.tag not in _INLINE:
            parts.append("\n")
            stack.append("\n")
        inside = inside or node.tag in _ARTICLE
        stack.extend((child, inside) for child in reversed(_children(node)))
    return "".join(parts)


# Indentation stops growing here: a list nested 30,000 deep would otherwise render as
# gigabytes of leading spaces (the indent of every line is as long as its depth).
_MAX_INDENT_LEVELS = 8


def _render_list(root: Any, in_article: bool, drop: frozenset[str]) -> str:
    """A whole list is one block, nested lists indented, ordered lists numbered.

    One pass over the subtree with an explicit stack; each line keeps its depth as a number
    and gets its (capped) indent only when rendered, so time and memory are linear in the input
    however deep the nesting.
    """
    lines: list[tuple[int, str, list[str]]] = []
    stack: list[tuple[Any, int, list[int] | None, bool]] = [(root, 0, None, in_article)]
    while stack:
        node, depth, counter, inside = stack.pop()
        if node.is_text_node:
            if not lines:
                lines.append((0, "", []))
            lines[-1][2].append(node.text_content or "")
            continue
        if not node.is_element_node or _dropped(node, inside, drop):
            continue
        tag = node.tag
        if tag in ("ul", "ol"):
            child_depth, child_counter = depth + 1, ([0] if tag == "ol" else None)
        else:
            child_depth, child_counter = depth, counter
        if tag == "li":
            if counter is not None:
                counter[0] += 1
            marker = f"{counter[0]}. " if counter is not None else "- "
            lines.append((max(depth - 1, 0), marker, []))
        elif tag == "br" or (tag not in _INLINE and tag not in _LISTS and lines):
            lines[-1][2].append(" ")
        inside = inside or tag in _ARTICLE
        stack.extend(
            (child, child_depth, child_counter, inside) for child in reversed(_children(node))
        )
    rendered = []
    for depth, marker, parts in lines:
        text = _normalise("".join(parts))
        if text:
            rendered.append(f"{'  ' * min(depth, _MAX_INDENT_LEVELS)}{marker}{text}")
    return "\n".join(rendered)


def _table_rows(table: Any) -> list[Any]:
    """The rows of this table only: rows of tables nested in its cells belong to those cells,
    and collecting them here too would repeat every nested level's text once per level."""
    rows = []
    for child in _children(table):
        if child.tag == "tr":
            rows.append(child)
        elif child.tag in ("thead", "tbody", "tfoot"):
            rows.extend(row for row in _children(child) if row.tag == "tr")
    return rows


def _render_table(root: Any, in_article: bool, drop: frozenset[str]) -> str:
    rows = []
    for row in _table_rows(root):
        cells = [
            _normalise(_collect_text(cell, in_article, drop))
            for cell in _children(row)
            if cell.tag in ("td", "th")
        ]
        if any(cells):
            rows.append(" | ".join(cells))
    return "\n".join(rows)


def _blocks(body: Any, in_article: bool, drop: frozenset[str]) -> tuple[list[Block], str | None]:
    blocks: list[Block] = []
    path: list[tuple[int, str]] = []
    first_h1: str | None = None
    pending: list[str] = []

    def headings() -> tuple[str, ...]:
        return tuple(text for _, text in path)

    def flush() -> None:
        # Bare text directly inside <div>s and <section>s is content too, not just <p>s.
        text = _normalise("".join(pending))
        pending.clear()
        if text:
            blocks.append(Block(text, headings(), "paragraph"))

    stack: list[tuple[Any, bool, bool, int]] = [(body, False, in_article, 0)]
    while stack:
        node, exiting, inside, lists = stack.pop()
        if exiting:
            if node.tag not in _INLINE:
                flush()
            continue
        if node.is_text_node:
            pending.append(node.text_content or "")
            continue
        if not node.is_element_node or _dropped(node, inside, drop):
            continue
        tag = node.tag
        if tag in _HEADINGS:
            flush()
            # A heading's own links are never a table of contents (Sphinx's "toc-backref").
            heading_drop = drop & _DROP_CHROME
            level, text = _HEADINGS[tag], _normalise(_collect_text(node, inside, heading_drop))
            while path and path[-1][0] >= level:
                path.pop()
            if text:
                path.append((level, text))
                if level == 1 and first_h1 is None:
                    first_h1 = text
        elif tag in _TEXT_BLOCKS:
            flush()
            text = _normalise(_collect_text(node, inside, drop))
            blocks.append(Block(text, headings(), _TEXT_BLOCKS[tag]))
        elif tag == "pre":
            flush()
            blocks.append(Block(_collect_text(node, inside, drop).strip("\n"), headings(), "code"))
        elif tag in _LISTS and (
            lists >= _MAX_SECTION_LISTS or node.css_first(_HEADING_SELECTOR) is None
        ):
            flush()
            blocks.append(Block(_render_list(node, inside, drop), headings(), "list"))
        elif tag == "table":
            flush()
            blocks.append(Block(_render_table(node, inside, drop), headings(), "table"))
        elif tag == "br":
            pending.append(" ")
        else:
            if tag not in _INLINE:
                flush()
            stack.append((node, True, inside, lists))
            inside = inside or tag in _ARTICLE
            lists += tag in _LISTS
            stack.extend((child, False, inside, lists) for child in reversed(_children(node)))
    flush()
    return blocks, first_h1


def _content_blocks(tree: Any, body: Any) -> tuple[list[Block], str | None]:
    """Blocks of the page's content, falling back to wider walks when a narrow one is empty.

    A marked main container is walked first; a page whose container or text is nothing but an
    in-page table of contents (a chapter's landing page) keeps that list rather than failing
    as an empty file.
    """
    main = main_container(tree, body)
    if main is not None:
        blocks, first_h1 = _blocks(main, True, _DROP_ALL)
        if any(block.text.strip() for block in blocks):
            return blocks, first_h1
    for drop in (_DROP_ALL, _DROP_CHROME):
        blocks, first_h1 = _blocks(body, False, drop)
        if any(block.text.strip() for block in blocks):
            break
    return blocks, first_h1


def _rooted(blocks: list[Block], title: str) -> list[Block]:
    """Root every heading path at the page title, for pages without an ``<h1>``.

    DocBook reference pages (PostgreSQL's "CREATE INDEX") put the command's name and its
    "Description", "Notes" sections all at ``<h2>``, and Doxygen's title is no heading at all;
    without the title a chunk's heading path is just "Notes".  A path that already starts with
    the title (DocBook section pages repeat it as their first heading) is left as it is.
    """
    return [
        block
        if block.headings[:1] == (title,)
        else Block(block.text, (title, *block.headings), block.kind)
        for block in blocks
    ]


def load_html(data: bytes, *, path: Path, uri: str, options: LoadOptions) -> LoadResult:
    from selectolax.lexbor import LexborHTMLParser

    declared = _META_CHARSET.search(data[:4096])
    decoded = decode_text(
        data, path, declared=declared.group(1).decode("ascii") if declared else None
    )
    markup, flattened = cap_nesting(decoded.text)
    try:
        tree = LexborHTMLParser(markup)
        title_node = tree.css_first("head > title") or tree.css_first("title")
        title = _normalise(title_node.text()) if title_node is not None else ""
        generator_node = tree.css_first(_META_GENERATOR)
        generator = (generator_node.attributes.get("content") or "") if generator_node else ""
        root = tree.root
        lang = root.attributes.get("lang") if root is not None else None
        body = tree.body or root
        blocks, first_h1 = _content_blocks(tree, body) if body is not None else ([], None)
    except RecursionError:
        raise ConnectorError(str(path), "HTML nested too deeply to parse") from None
    except (ValueError, RuntimeError) as exc:
        raise ConnectorError(str(path), f"cannot parse HTML: {exc}") from exc
    title = clean_title(title, first_h1, generator.strip().lower())
    if title and first_h1 is None:
        blocks = _rooted(blocks, title)
    metadata = {"lang": lang.strip()} if lang and lang.strip() else {}
    result = single_document(
        path, uri=uri, title=title or first_h1, blocks=blocks, format="html", metadata=metadata
    )
    if flattened:
        result.problems.append(
            f"nested deeper than {MAX_DEPTH} levels: {flattened} elements below that depth were "
            "flattened (their text is kept), as browsers do"
        )
    return finish_result(result, path, decoded)

"""HTML: keep the article, drop the page chrome, keep h1-h6 as the heading path.

The DOM is walked with explicit stacks rather than recursion because real-world HTML (and
hostile HTML) can nest elements tens of thousands deep, which would overflow Python's stack.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ragkit.connectors.base import LoadOptions, LoadResult, single_document
from ragkit.connectors.text import decode_text
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


def _inside(node: Any, tags: frozenset[str]) -> bool:
    parent = node.parent
    while parent is not None:
        if parent.tag in tags:
            return True
        parent = parent.parent
    return False


def _dropped(node: Any) -> bool:
    """``<header>`` inside an article usually holds the article's own title, so it stays."""
    tag = node.tag
    if tag == "header" and _inside(node, _ARTICLE):
        return False
    if tag in DROPPED_TAGS:
        return True
    attributes = node.attributes
    return "hidden" in attributes or attributes.get("aria-hidden") == "true"


def _collect_text(root: Any) -> str:
    """Text of a subtree without dropped elements; block elements and ``<br>`` break lines."""
    parts: list[str] = []
    stack: list[Any] = [root]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            parts.append(item)
            continue
        if item.is_text_node:
            parts.append(item.text_content or "")
            continue
        if not item.is_element_node or _dropped(item):
            continue
        if item.tag == "br":
            parts.append("\n")
            continue
        if item is not root and item.tag not in _INLINE:
            parts.append("\n")
            stack.append("\n")
        stack.extend(reversed(_children(item)))
    return "".join(parts)


def _render_list(root: Any) -> str:
    """A whole list is one block, nested lists indented, ordered lists numbered."""
    lines: list[tuple[str, list[str]]] = []
    stack: list[tuple[Any, int, list[int] | None]] = [(root, 0, None)]
    while stack:
        node, depth, counter = stack.pop()
        if node.is_text_node:
            if not lines:
                lines.append(("", []))
            lines[-1][1].append(node.text_content or "")
            continue
        if not node.is_element_node or _dropped(node):
            continue
        tag = node.tag
        if tag in ("ul", "ol"):
            child_depth, child_counter = depth + 1, ([0] if tag == "ol" else None)
        else:
            child_depth, child_counter = depth, counter
        if tag == "li":
            if counter is not None:
                counter[0] += 1
            marker = f"{counter[0]}." if counter is not None else "-"
            lines.append((f"{'  ' * max(depth - 1, 0)}{marker} ", []))
        elif tag == "br" or (tag not in _INLINE and tag not in _LISTS and lines):
            lines[-1][1].append(" ")
        stack.extend((child, child_depth, child_counter) for child in reversed(_children(node)))
    rendered = (prefix + _normalise("".join(parts)) for prefix, parts in lines)
    return "\n".join(line for line in rendered if line.strip() not in ("", "-"))


def _render_table(root: Any) -> str:
    rows = []
    for row in root.css("tr"):
        cells = [
            _normalise(_collect_text(cell)) for cell in _children(row) if cell.tag in ("td", "th")
        ]
        if any(cells):
            rows.append(" | ".join(cells))
    return "\n".join(rows)


def _blocks(body: Any) -> tuple[list[Block], str | None]:
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

    stack: list[tuple[Any, bool]] = [(body, False)]
    while stack:
        node, exiting = stack.pop()
        if exiting:
            if node.tag not in _INLINE:
                flush()
            continue
        if node.is_text_node:
            pending.append(node.text_content or "")
            continue
        if not node.is_element_node or _dropped(node):
            continue
        tag = node.tag
        if tag in _HEADINGS:
            flush()
            level, text = _HEADINGS[tag], _normalise(_collect_text(node))
            while path and path[-1][0] >= level:
                path.pop()
            if text:
                path.append((level, text))
                if level == 1 and first_h1 is None:
                    first_h1 = text
        elif tag in _TEXT_BLOCKS:
            flush()
            blocks.append(Block(_normalise(_collect_text(node)), headings(), _TEXT_BLOCKS[tag]))
        elif tag == "pre":
            flush()
            blocks.append(Block(_collect_text(node).strip("\n"), headings(), "code"))
        elif tag in _LISTS:
            flush()
            blocks.append(Block(_render_list(node), headings(), "list"))
        elif tag == "table":
            flush()
            blocks.append(Block(_render_table(node), headings(), "table"))
        elif tag == "br":
            pending.append(" ")
        else:
            if tag not in _INLINE:
                flush()
            stack.append((node, True))
            stack.extend((child, False) for child in reversed(_children(node)))
    flush()
    return blocks, first_h1


def load_html(data: bytes, *, path: Path, uri: str, options: LoadOptions) -> LoadResult:
    from selectolax.lexbor import LexborHTMLParser

    declared = _META_CHARSET.search(data[:4096])
    text = decode_text(data, path, declared=declared.group(1).decode("ascii") if declared else None)
    try:
        tree = LexborHTMLParser(text)
        title_node = tree.css_first("head > title") or tree.css_first("title")
        title = _normalise(title_node.text()) if title_node is not None else ""
        root = tree.root
        lang = root.attributes.get("lang") if root is not None else None
        body = tree.body or root
        blocks, first_h1 = _blocks(body) if body is not None else ([], None)
    except RecursionError:
        raise ConnectorError(str(path), "HTML nested too deeply to parse") from None
    except (ValueError, RuntimeError) as exc:
        raise ConnectorError(str(path), f"cannot parse HTML: {exc}") from exc
    metadata = {"lang": lang.strip()} if lang and lang.strip() else {}
    return single_document(
        path, uri=uri, title=title or first_h1, blocks=blocks, format="html", metadata=metadata
    )

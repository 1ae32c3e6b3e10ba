"""Markdown: headings become the heading path of the blocks below them.

markdown-it's token stream is used instead of regexes because fenced code, setext headings and
lists nested inside lists are easy to get subtly wrong, and a ``#`` inside a code fence must
not start a new section.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ragkit.connectors.base import LoadOptions, LoadResult, single_document
from ragkit.connectors.text import decode_text, finish_result
from ragkit.documents import Block
from ragkit.errors import ConnectorError

__all__ = ["load_markdown", "parse_front_matter"]

_FRONT_MATTER = re.compile(r"\A---[ \t]*\n(.*?)^(?:---|\.\.\.)[ \t]*(?:\n|\Z)", re.S | re.M)
_KEY_VALUE = re.compile(r"^([A-Za-z_][\w.-]*)[ \t]*:(?:[ \t]+(.*?))?[ \t]*$")
_LIST_ITEM = re.compile(r"^[ \t]+-[ \t]+(.*?)[ \t]*$")
_HTML_COMMENT = re.compile(r"<!--.*?-->", re.S)
_HTML_TAG = re.compile(r"<[^>]*>")
_SPACES = re.compile(r"\s+")
# Leading block-quote and list markers of a raw line; every repetition consumes a marker, so
# a line of 100,000 ``>`` is stripped in one linear pass.
_MARKERS = re.compile(r"^(?:[ \t]*(?:>|[-+*](?=[ \t]|$)|\d{1,9}[.)](?=[ \t]|$)))*[ \t]*")
# Containers whose content markdown-it parses by recursing into the block parser; past its
# ``maxNesting`` it silently drops that content.
_CONTAINERS = frozenset({"blockquote_open", "list_item_open"})


class _Source:
    """The parsed body's lines, for falling back to raw text where markdown-it gave up.

    markdown-it stops parsing (and emits nothing for) the content of containers nested more
    than ``maxNesting`` levels deep; rather than lose that text, the lines it spans are kept
    as raw text with their quote and list markers removed, and the spot is reported.
    """

    def __init__(self, body: str, max_nesting: int) -> None:
        self.lines = body.split("\n")
        self.max_nesting = max_nesting
        self.fallback_lines: list[int] = []

    def too_deep(self, token: Any) -> bool:
        return (
            token.type in _CONTAINERS
            and token.map is not None
            and token.level + 1 >= self.max_nesting
        )

    def raw_text(self, token: Any) -> str:
        start, end = token.map
        self.fallback_lines.append(start + 1)
        kept = (_MARKERS.sub("", line, count=1).strip() for line in self.lines[start:end])
        return "\n".join(line for line in kept if line)

    def problem(self) -> str | None:
        if not self.fallback_lines:
            return None
        count, first = len(self.fallback_lines), self.fallback_lines[0]
        return (
            f"markdown nested more than {self.max_nesting} levels deep ({count} "
            f"place{'' if count == 1 else 's'}, first at line {first}); the text there is kept "
            "as raw lines without its list or quote structure"
        )


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value


def parse_front_matter(text: str) -> tuple[dict[str, Any], str]:
    """Split a leading ``---`` block of ``key: value`` lines from the body.

    Only flat keys and simple ``- item`` lists are understood; that covers the title/tags/date
    front matter of static-site generators without pulling in a YAML parser.  A ``---`` block
    with no ``key: value`` line is left alone, since it is then a thematic break.
    """
    match = _FRONT_MATTER.match(text)
    if match is None:
        return {}, text
    meta: dict[str, Any] = {}
    current_list: list[str] | None = None
    for line in match.group(1).split("\n"):
        item = _LIST_ITEM.match(line)
        if item is not None and current_list is not None:
            current_list.append(_unquote(item.group(1)))
            continue
        current_list = None
        key_value = _KEY_VALUE.match(line)
        if key_value is None:
            continue
        key, value = key_value.group(1), key_value.group(2)
        if value:
            meta[key] = _unquote(value)
        else:
            current_list = []
            meta[key] = current_list
    meta = {key: value for key, value in meta.items() if value not in ("", [])}
    if not meta:
        return {}, text
    return meta, text[match.end() :]


def _inline_text(token: Any) -> str:
    parts: list[str] = []
    for child in token.children or ():
        if child.type in ("text", "code_inline", "image"):
            parts.append(child.content)  # an image's content is its alt text
        elif child.type == "softbreak":
            parts.append(" ")
        elif child.type == "hardbreak":
            parts.append("\n")
    return "".join(parts).strip()


def _matching_close(tokens: Sequence[Any], start: int) -> int:
    depth = 0
    for index in range(start, len(tokens)):
        depth += tokens[index].nesting
        if depth == 0:
            return index
    return len(tokens) - 1


def _render_list(tokens: Sequence[Any], source: _Source) -> str:
    """One block per top-level list keeps related items together; nesting becomes indentation."""
    lines: list[str] = []
    ordered_stack: list[bool] = []
    item_open = False
    index = 0
    while index < len(tokens):
        token = tokens[index]
        index += 1
        indent = "  " * max(len(ordered_stack) - 1, 0)
        if source.too_deep(token):
            lines.extend(f"{indent}  {line}" for line in source.raw_text(token).split("\n"))
            index = _matching_close(tokens, index - 1) + 1
            item_open = False
        elif token.type in ("bullet_list_open", "ordered_list_open"):
            ordered_stack.append(token.type == "ordered_list_open")
        elif token.type in ("bullet_list_close", "ordered_list_close"):
            ordered_stack.pop()
        elif token.type == "list_item_open":
            marker = f"{token.info or '1'}." if ordered_stack and ordered_stack[-1] else "-"
            lines.append(f"{indent}{marker} ")
            item_open = True
        elif token.type == "inline":
            text = _inline_text(token)
            if item_open:
                lines[-1] += text
                item_open = False
            elif text:
                lines.append(f"{indent}  {text}")
        elif token.type in ("fence", "code_block"):
            code = token.content.rstrip("\n")
            lines.extend(f"{indent}    {line}" for line in code.split("\n"))
            item_open = False
    return "\n".join(line.rstrip() for line in lines if line.strip())


def _render_table(tokens: Sequence[Any]) -> str:
    rows: list[list[str]] = []
    for token in tokens:
        if token.type == "tr_open":
            rows.append([])
        elif token.type == "inline" and rows:
            rows[-1].append(_inline_text(token))
    return "\n".join(" | ".join(row) for row in rows if any(row))


def _html_block_text(source: str) -> str:
    text = _HTML_TAG.sub(" ", _HTML_COMMENT.sub(" ", source))
    return _SPACES.sub(" ", html.unescape(text)).strip()


def _blocks(tokens: Sequence[Any], source: _Source) -> tuple[list[Block], str | None]:
    blocks: list[Block] = []
    path: list[tuple[int, str]] = []
    first_h1: str | None = None
    index = 0
    while index < len(tokens):
        token = tokens[index]
        headings = tuple(text for _, text in path)
        if source.too_deep(token):
            blocks.append(Block(source.raw_text(token), headings, "paragraph"))
            index = _matching_close(tokens, index) + 1
            continue
        if token.type == "heading_open":
            level = int(token.tag[1:])
            text = _inline_text(tokens[index + 1])
            while path and path[-1][0] >= level:
                path.pop()
            if text:
                path.append((level, text))
                if level == 1 and first_h1 is None:
                    first_h1 = text
            index = _matching_close(tokens, index) + 1
            continue
        if token.type in ("bullet_list_open", "ordered_list_open", "table_open"):
            end = _matching_close(tokens, index)
            if token.type == "table_open":
                blocks.append(Block(_render_table(tokens[index : end + 1]), headings, "table"))
            else:
                rendered = _render_list(tokens[index : end + 1], source)
                blocks.append(Block(rendered, headings, "list"))
            index = end + 1
            continue
        if token.type in ("fence", "code_block"):
            blocks.append(Block(token.content.rstrip("\n"), headings, "code"))
        elif token.type == "inline":
            blocks.append(Block(_inline_text(token), headings, "paragraph"))
        elif token.type == "html_block":
            blocks.append(Block(_html_block_text(token.content), headings, "paragraph"))
        index += 1
    return blocks, first_h1


def load_markdown(data: bytes, *, path: Path, uri: str, options: LoadOptions) -> LoadResult:
    from markdown_it import MarkdownIt

    decoded = decode_text(data, path)
    meta, body = parse_front_matter(decoded.text)
    parser = MarkdownIt("commonmark").enable("table")
    try:
        tokens = parser.parse(body)
    except RecursionError:
        raise ConnectorError(str(path), "markdown nested too deeply to parse") from None
    source = _Source(body, parser.options.maxNesting)
    blocks, first_h1 = _blocks(tokens, source)
    title = meta.get("title")
    title = title if isinstance(title, str) and title.strip() else first_h1
    result = single_document(path, uri=uri, title=title, blocks=blocks, format="md", metadata=meta)
    deep = source.problem()
    if deep is not None:
        result.problems.append(deep)
    return finish_result(result, path, decoded)

"""Flatten HTML nested deeper than browsers build, before the parser sees it.

lexbor's tree construction is superlinear in nesting depth (20k nested lists: ~4.5 s, 30k: over
10 s, with the time going into the parser itself), so one hostile page could use a whole
per-file time limit. Browsers cap the DOM depth instead (Blink builds at most 512 levels and
attaches deeper elements to the deepest allowed parent): this module does the same on the raw
markup in one linear pass. Start tags beyond the depth are dropped together with their end
tags, so every word of text is kept; only the structure below level 512 is flattened.
"""

from __future__ import annotations

import re

__all__ = ["MAX_DEPTH", "cap_nesting"]

#: The depth Blink's HTML parser builds to (``kMaximumHTMLParserDOMTreeDepth``).
MAX_DEPTH = 512

# One token of markup: a comment, a raw-text element (its body may hold "<"), a doctype or
# processing instruction, or a start/end tag. Everything else is text.
_TOKEN = re.compile(
    r"<!--.*?(?:-->|\Z)"
    r"|<(script|style|textarea|title|xmp|noscript)\b[^>]*>.*?(?:</\1\s*>|\Z)"
    r"|<[!?][^>]*>"
    r"|<(/?)([a-zA-Z][a-zA-Z0-9:-]*)\b[^>]*?(/?)>",
    re.S | re.I,
)
_VOID = frozenset(
    [
        "area",
        "base",
        "br",
        "col",
        "embed",
        "hr",
        "img",
        "input",
        "link",
        "meta",
        "param",
        "source",
        "track",
        "wbr",
        "basefont",
        "frame",
        "keygen",
    ]
)
# Elements whose end tag is optional: a new one closes the open one of the same name, within
# the nearest enclosing container, so a list of 1,000 unclosed <li> is 1 level deep, not 1,000.
_SELF_CLOSING_SIBLINGS = {
    "li": frozenset({"ul", "ol", "menu"}),
    "dt": frozenset({"dl"}),
    "dd": frozenset({"dl"}),
    "p": frozenset({"div", "section", "article", "li", "td", "th", "blockquote", "body"}),
    "tr": frozenset({"table", "thead", "tbody", "tfoot"}),
    "td": frozenset({"tr", "table"}),
    "th": frozenset({"tr", "table"}),
    "option": frozenset({"select", "datalist", "optgroup"}),
}
# How far up an implied end tag or an end tag is looked for: bounded, so that hostile markup
# (thousands of stray end tags at depth 30k) stays linear.
_SEARCH = 64


class _Stack:
    """Open elements, each with whether its tags are kept; ``depth`` counts the kept ones."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.kept: list[bool] = []
        self.open: dict[str, int] = {}
        self.depth = 0

    def push(self, name: str, keep: bool) -> None:
        self.names.append(name)
        self.kept.append(keep)
        self.open[name] = self.open.get(name, 0) + 1
        self.depth += keep

    def pop_to(self, index: int) -> bool:
        """Pop the element at ``index`` and everything above it; whether it was kept."""
        kept = self.kept[index]
        for name, keep in zip(self.names[index:], self.kept[index:], strict=True):
            self.open[name] -= 1
            self.depth -= keep
        del self.names[index:], self.kept[index:]
        return kept

    def find(self, name: str, scope: frozenset[str] = frozenset()) -> int | None:
        """Index of the innermost open ``name`` not beyond an element of ``scope``."""
        if not self.open.get(name):
            return None
        for i in range(len(self.names) - 1, max(-1, len(self.names) - 1 - _SEARCH), -1):
            if self.names[i] == name:
                return i
            if self.names[i] in scope:
                return None
        return None


def cap_nesting(text: str, max_depth: int = MAX_DEPTH) -> tuple[str, int]:
    """The markup with start and end tags below ``max_depth`` levels removed, and how many
    elements were flattened. Pages within the depth come back unchanged (the same object)."""
    if text.count("<") <= max_depth:
        return text, 0
    stack = _Stack()
    dropped: list[tuple[int, int]] = []
    flattened = 0
    for match in _TOKEN.finditer(text):
        name = match.group(3)
        if name is None:
            continue
        name = name.lower()
        if match.group(2):  # an end tag: dropped when its start tag was
            index = stack.find(name)
            if index is not None and not stack.pop_to(index):
                dropped.append(match.span())
            continue
        if name in _VOID or match.group(4):
            continue
        scope = _SELF_CLOSING_SIBLINGS.get(name)
        if scope is not None and (index := stack.find(name, scope)) is not None:
            stack.pop_to(index)
        keep = stack.depth < max_depth
        stack.push(name, keep)
        if not keep:
            dropped.append(match.span())
            flattened += 1
    if not dropped:
        return text, 0
    out: list[str] = []
    last = 0
    for start, end in dropped:
        out.append(text[last:start])
        out.append(" ")
        last = end
    out.append(text[last:])
    return "".join(out), flattened

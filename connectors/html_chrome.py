"""Which part of a documentation page is content, and which is the site's chrome.

Documentation generators do not mark their navigation with ``<nav>``/``<footer>`` alone: DocBook
writes ``div.navheader``/``div.navfooter`` tables of Prev/Up/Next links, Sphinx a
``div.related`` bar and a ``div.sphinxsidebar``, Doxygen a ``div#nav-path`` breadcrumb. Indexed,
that text repeats on every page and outranks the content for any query about the site's
topics. Two signals decide, both measured in ``bench/html_chrome.py``:

- the main content container, when the generator marks one (``<main>``, ``role=main``,
  Sphinx ``div.body``, MkDocs Material ``article.md-content__inner``, Docusaurus
  ``.theme-doc-markdown``, ``itemprop=articleBody``);
- chrome classes, ids and ARIA roles inside whatever is walked.

Ids are matched against an exact list only: generators derive ids from heading text (a Sphinx
section titled "Navigation" becomes ``<section id="navigation">``), so a pattern over ids would
drop content.  Neither ``header`` nor a bare ``sidebar`` is a chrome class: AsciiDoc's
``div#header`` and Doxygen's and Javadoc's ``div.header`` hold the page's own title, and DocBook
and Sphinx render a sidebar *in the text* as ``div.sidebar``.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["chrome_kind", "clean_title", "main_container"]

# Tried in order; the first that holds enough of the page's text is the content.
_MAIN_SELECTORS = (
    "[itemprop=articleBody]",
    "article.md-content__inner",
    ".theme-doc-markdown",
    "div.body[role=main]",
    "[role=main]",
    "main",
)
# A marked container this much smaller than the body is a wrapper of something else (a
# search box, a banner), not the page's content.
_MIN_MAIN_SHARE = 0.1

# Site chrome: whole class tokens (exact, or the listed prefixes/suffixes).
_CHROME_CLASS = re.compile(
    r"""^(?:
        navheader|navfooter|navbar|navbar-.*|nav|navigation|.*-nav|nav-.*|navpath|subnav
        |breadcrumbs?|.*-breadcrumbs?|breadcrumbs?-.*
        |.*-sidebar|sidebar-.*|sphinxsidebar.*|bs-sidebar
        |related|footer|.*-footer|footer-.*|site-footer
        |.*edit-this-page|edit-page|edit-link|editthispage
        |skip-link|skip-nav|skiplink|screen-reader-text|visually-hidden|sr-only
        |cookie.*|.*-cookie.*|consent.*|gdpr.*
        |headerlink|hash-link|anchorlink|anchor-link|anchorjs-link
        |pagination|pagination-.*|pager|prev-next|menu|.*-menu|menu-.*|mobile-nav
        |md-header.*|md-tabs.*|md-footer.*|md-sidebar.*|md-search.*|md-source.*|md-top
        |md-content__button|md-dialog|md-skip
        |theme-doc-toc.*|theme-doc-footer.*|theme-doc-breadcrumbs|theme-doc-version-badge
        |theme-edit-this-page|theme-last-updated|announcementbar.*
        |version_switcher.*|language_switcher.*|inline-search|searchbox|search-box|clearer
        |header-links|top-nav|sub-nav|flex-header|nav-list-search|ingroups
    )$""",
    re.VERBOSE,
)
# In-page tables of contents: dropped when the page has other content, kept when they are the
# whole page (a chapter's landing page is its list of sections).
_TOC_CLASS = re.compile(
    r"^(?:toc|.*-toc|toc-(?!backref).*|table-of-contents.*|tableofcontents|contents-panel"
    r"|list-of-(?:tables|figures|examples|equations|procedures)|topic-contents)$"
)
_CHROME_IDS = frozenset(
    {
        "footer",
        "footer-text",
        "nav-path",
        "side-nav",
        "nav-tree",
        "titlearea",
        "main-nav",
        "main-menu",
        "navbar",
        "navbar-top",
        "navbar-bottom",
        "sidebar",
        "breadcrumbs",
        "cookie-banner",
        "cookie-consent",
        "skip-link",
        "searchbox",
    }
)
_TOC_IDS = frozenset({"toc", "table-of-contents", "tocbox"})
_CHROME_ROLES = frozenset({"navigation", "banner", "contentinfo", "complementary", "search"})
# Section wrappers carry ids made from their heading's text, so their ids say nothing.
_SECTION_TAGS = frozenset({"section", "h1", "h2", "h3", "h4", "h5", "h6"})


def chrome_kind(node: Any) -> str | None:
    """``"chrome"``, ``"toc"`` or None for an element, from its class, id and role."""
    attributes = node.attributes
    if attributes.get("role") in _CHROME_ROLES:
        return "chrome"
    classes = (attributes.get("class") or "").split()
    if any(_CHROME_CLASS.match(name) for name in classes):
        return "chrome"
    if any(_TOC_CLASS.match(name) for name in classes):
        return "toc"
    element_id = attributes.get("id")
    if element_id and node.tag not in _SECTION_TAGS and "section" not in classes:
        if element_id in _CHROME_IDS:
            return "chrome"
        if element_id in _TOC_IDS:
            return "toc"
    return None


def main_container(tree: Any, body: Any) -> Any | None:
    """The generator's content container, or None when the page marks none (walk the body)."""
    total = len(body.text(deep=True, separator=" ", strip=True))
    for selector in _MAIN_SELECTORS:
        for node in tree.css(selector):
            size = len(node.text(deep=True, separator=" ", strip=True))
            if size and size >= _MIN_MAIN_SHARE * total:
                return node
    return None


# Separators between a page's name and its site's name in <title>.
_TITLE_SEPARATORS = (" — ", " – ", " | ", " - ", " · ", " :: ", " » ")
_SITE_WORDS = re.compile(
    r"\b(?:documentation|docs|manual|handbook|reference guide|user guide|mkdocs)\b", re.I
)
_JAVADOC_SUFFIX = re.compile(r"\s*\((?:Java SE|JDK|Java Platform)[^()]*\)$")


def clean_title(title: str, first_h1: str | None, generator: str) -> str:
    """The page's own name from ``<title>``, without the site's name around it.

    Sphinx writes "os.path — Common pathname manipulations — Python 3.11 documentation", MkDocs
    "Configuration - MkDocs", Doxygen "libstdc++: stdlib.h File Reference", Javadoc
    "ArrayDeque (Java SE 17 & JDK 17)"; the site part is on every page, so in a contextual
    header it only dilutes the embedding.  A title the rules do not recognise is kept whole.
    """
    if not title:
        return title
    if first_h1 and first_h1 != title:
        for separator in _TITLE_SEPARATORS:
            if title.startswith(first_h1 + separator):
                return first_h1
    if generator.startswith("doxygen"):
        head, colon, rest = title.partition(": ")
        if colon and rest and " " not in head:
            return rest
    if generator.startswith("javadoc"):
        stripped = _JAVADOC_SUFFIX.sub("", title)
        if stripped:
            return stripped
    for separator in _TITLE_SEPARATORS:
        head, found, tail = title.rpartition(separator)
        if found and head and _SITE_WORDS.search(tail) and not _SITE_WORDS.search(head):
            return head
    return title

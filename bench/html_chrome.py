"""How much site chrome reaches the chunks of real documentation sites, per HTML extractor.

Sites are Debian's documentation packages (``apt-get install postgresql-doc-15 python3.11-doc
git-doc debian-reference-en mkdocs-doc mkdocs-literate-nav-doc libstdc++-12-doc
openjdk-17-doc``); a site whose folder is missing is skipped.  Each page is loaded by one of
the extractors below and chunked by ragkit's ``Chunker`` over the default encoder's tokenizer
(all-MiniLM-L6-v2, offline), exactly as an ingest chunks it.

Navigation text is defined on the raw page, independent of every extractor: the text of the
site's own navigation containers, listed per site in ``SITES`` (DocBook's ``.navheader`` and
``.navfooter`` Prev/Up/Next tables, Sphinx's ``div.related`` bars and ``div.sphinxsidebar``,
MkDocs' navbar and sidebar, Doxygen's breadcrumb, Javadoc's top bars, AsciiDoc's footer).  Its
word 4-grams (lower-cased ``\\w+`` words; a container of 2-3 words is one gram) that occur
nowhere else in the page's text (as 2-, 3- or 4-grams) are the page's *navigation grams*.
Then, over a chunk's text (the contextual header is not counted):

- *with nav*: the chunk contains at least one navigation gram of its page;
- *chrome-only*: navigation grams cover at least 80% of the chunk's words;
- *content kept*: the share of the page's other 4-grams (its text outside the navigation
  containers, scripts and styles) found in the page's chunks, so an extractor cannot win by
  dropping everything;
- *headings kept*: the share of the page's headings outside the navigation containers that
  appear in some chunk's heading path.

Run: ``python bench/html_chrome.py [--pages 300] [--extractors "ragkit (after),..."]``; the
library rows need ``pip install trafilatura==2.3.1 readability-lxml==0.9`` (not dependencies
of ragkit: they measured worse, see BENCHMARKS.md).
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common
from selectolax.lexbor import LexborHTMLParser

from ragkit.config import ChunkingConfig, EncoderConfig
from ragkit.connectors import html as html_connector
from ragkit.connectors.base import LoadOptions
from ragkit.documents import Document

DOC = Path("/usr/share/doc")
# site -> (folder, glob, navigation containers); globs pick the pages a reader searches.
SITES: dict[str, tuple[Path, str, str]] = {
    "PostgreSQL 15 (DocBook)": (DOC / "postgresql-doc-15/html", "*.html", ".navheader, .navfooter"),
    "Debian Reference (DocBook)": (
        Path("/usr/share/debian-reference"),
        "*.en.html",
        ".navheader, .navfooter",
    ),
    "Python 3.11 (Sphinx)": (
        DOC / "python3.11/html",
        "library/*.html",
        "div.related, div.sphinxsidebar, div.footer, .mobile-nav",
    ),
    "Git (AsciiDoc)": (DOC / "git-doc", "*.html", "#footer"),
    "MkDocs (mkdocs theme)": (DOC / "mkdocs/html", "**/*.html", ".navbar, .bs-sidebar, footer"),
    "literate-nav (MkDocs Material)": (
        DOC / "mkdocs-literate-nav-doc/html",
        "*.html",
        ".md-header, .md-tabs, .md-sidebar, .md-footer",
    ),
    "libstdc++ (Doxygen)": (
        DOC / "gcc-12-base/libstdc++/user",
        "a0*[0-9].html",
        "#top, #side-nav, #nav-path",
    ),
    "OpenJDK 17 (Javadoc)": (
        DOC / "openjdk-17-jre-headless/api/java.base/java/util",
        "*.html",
        "header.flex-header, footer",
    ),
}
_WORD = re.compile(r"\w+")
_GRAM = 4
_CHROME_ONLY_COVER = 0.8
_SKIP = "script, style, noscript, template"


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _grams(words: list[str], n: int) -> set[tuple[str, ...]]:
    if 2 <= len(words) < n:
        return {tuple(words)}
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def _page_truth(text: str, selector: str) -> tuple[set, set, set[str]]:
    """Navigation grams, content grams and content headings of one raw page."""
    tree = LexborHTMLParser(text)
    nav: set[tuple[str, ...]] = set()
    for node in tree.css(selector):
        nav |= _grams(_words(node.text(deep=True, separator=" ")), _GRAM)
        node.decompose()
    for node in tree.css(_SKIP):
        node.decompose()
    body = tree.body
    rest = _words(body.text(deep=True, separator=" ")) if body is not None else []
    content = _grams(rest, _GRAM)
    elsewhere = content | _grams(rest, 2) | _grams(rest, 3)  # short nav grams too
    headings = {
        " ".join(_words(h.text(deep=True, separator=" "))) for h in tree.css("h1,h2,h3,h4,h5,h6")
    }
    return nav - elsewhere, content, headings - {""}


# -- extractors: raw page text -> ragkit Document ------------------------------------------
def _ragkit(text: str, path: Path) -> Document:
    options = LoadOptions()
    result = html_connector.load_html(text.encode(), path=path, uri=path.name, options=options)
    return result.documents[0]


def _tags_only(text: str, path: Path) -> Document:
    """The extractor before chrome detection: drop nav/header/footer/aside tags, walk the body."""
    tree = LexborHTMLParser(text)
    title = tree.css_first("title")
    blocks, first_h1 = html_connector._blocks(tree.body, False, frozenset())
    name = " ".join(title.text().split()) if title is not None else ""
    return Document(
        uri=path.name, title=name or first_h1 or path.stem, blocks=blocks, format="html"
    )


def _walk_fragment(fragment: str | None, text: str, path: Path) -> Document:
    """A library's cleaned HTML walked by ragkit's walker, so heading paths are kept."""
    original = LexborHTMLParser(text).css_first("title")
    tree = LexborHTMLParser(fragment or "<p></p>")
    blocks, first_h1 = html_connector._blocks(tree.body, True, frozenset())
    name = " ".join(original.text().split()) if original is not None else ""
    return Document(
        uri=path.name, title=name or first_h1 or path.stem, blocks=blocks, format="html"
    )


def _trafilatura(text: str, path: Path) -> Document:
    import trafilatura

    fragment = trafilatura.extract(
        text, output_format="html", include_tables=True, include_formatting=True, favor_recall=True
    )
    return _walk_fragment(fragment, text, path)


def _readability(text: str, path: Path) -> Document:
    from readability import Document as Readable

    return _walk_fragment(Readable(text).summary(html_partial=True), text, path)


EXTRACTORS: dict[str, Callable[[str, Path], Document]] = {
    "tags only (before)": _tags_only,
    "ragkit (after)": _ragkit,
    "trafilatura 2.3.1": _trafilatura,
    "readability-lxml 0.9": _readability,
}


def _pages(folder: Path, pattern: str, limit: int) -> list[Path]:
    """Every n-th page in name order, so a sample spans the whole site."""
    pages = sorted(p for p in folder.glob(pattern) if p.is_file())
    step = max(1, len(pages) // limit) if limit else 1
    return pages[::step][:limit] if limit else pages


def measure(site: str, extractor: str, pages: list[Path], selector: str, chunker) -> list:
    chunks = with_nav = chrome_only = 0
    kept = total = headings_kept = headings_total = 0
    started = time.perf_counter()
    for page in pages:
        text = page.read_bytes().decode("utf-8", "replace")
        nav, content, headings = _page_truth(text, selector)
        try:
            document: Document | None = EXTRACTORS[extractor](text, page)
        except Exception:  # a page the extractor refuses counts as nothing kept
            document = None
        found: set[tuple[str, ...]] = set()
        paths: set[str] = set()
        for chunk in chunker.chunk(page.name, document) if document and document.blocks else []:
            chunks += 1
            words = _words(chunk.text)
            covered = [False] * len(words)
            for n in (2, 3, _GRAM):
                for i in range(len(words) - n + 1):
                    if tuple(words[i : i + n]) in nav:
                        covered[i : i + n] = [True] * n
            with_nav += any(covered)
            chrome_only += bool(words) and sum(covered) >= _CHROME_ONLY_COVER * len(words)
            found |= _grams(words, _GRAM) & content
            paths |= {" ".join(_words(h)) for h in chunk.headings}
        kept, total = kept + len(found), total + len(content)
        headings_kept += len(headings & paths)
        headings_total += len(headings)
    share = lambda part, whole: f"{100 * part / whole:.1f}%" if whole else "—"  # noqa: E731
    return [
        site,
        extractor,
        len(pages),
        chunks,
        share(chrome_only, chunks),
        share(with_nav, chunks),
        share(kept, total),
        share(headings_kept, headings_total),
        f"{time.perf_counter() - started:.1f}",
    ]


def main() -> None:
    p = _common.parser(__doc__.splitlines()[0])
    p.add_argument("--pages", type=int, default=300, help="pages per site (0: all)")
    p.add_argument("--extractors", default=",".join(EXTRACTORS), help="comma-separated names")
    args = p.parse_args()
    _common.offline()
    from ragkit.chunking import Chunker
    from ragkit.encoders.dense import DenseEncoder

    encoder = DenseEncoder.load(EncoderConfig())
    chunker = Chunker(
        encoder.tokens,
        ChunkingConfig(),
        encoder_max_tokens=encoder.max_seq_length,
        prompt=encoder.document_prompt,
    )
    columns = ["site", "extractor", "pages", "chunks", "chrome-only", "with nav"]
    columns += ["content kept", "headings kept", "s"]
    rows = []
    for site, (folder, pattern, selector) in SITES.items():
        pages = _pages(folder, pattern, args.pages)
        if not pages:
            print(f"skipped {site}: no pages under {folder}", file=sys.stderr)
            continue
        for extractor in args.extractors.split(","):
            rows.append(measure(site, extractor, pages, selector, chunker))
            print(" | ".join(map(str, rows[-1])), file=sys.stderr)
    print(_common.machine_line())
    print(_common.markdown_table(columns, rows))
    records = [dict(zip(columns, row, strict=True)) for row in rows]
    _common.write_result("html_chrome", {"pages_per_site": args.pages, "rows": records})


if __name__ == "__main__":
    main()

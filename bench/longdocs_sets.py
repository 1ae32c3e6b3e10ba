"""Long-document evaluation sets built from Debian's documentation packages.

``python bench/longdocs.py`` calls :func:`build`; each set is written under ``--root``
(default ``/tmp/ragkit-longdocs/<set>``) and never committed:

- ``pages/``: the HTML pages as ragkit ingests them (ragkit's own HTML connector parses them);
- ``corpus.jsonl``: ``{"_id": file name, "title", "text"}``, the same pages as that connector
  reads them, for the whole-page baselines;
- ``queries.jsonl`` and ``qrels/test.tsv``: BEIR-style queries and judgments.

Sets (``apt-get install python3.11-doc git-doc postgresql-doc-15``):

- ``python``: every ``library/*.html`` page whose title is ``module — summary``; the query is
  the summary ("Regular expression operations" of re.html; markup inside it is kept as text:
  "Support for bzip2 compression" of bz2.html), the relevant document that page.
  The summary is removed from the page's ``<title>`` and ``<h1>`` (they keep the module name),
  so the query is not a verbatim copy of the page's title.
- ``git``: every ``git-*.html`` command page; the query is its NAME line's description
  ("git-add - Add file contents to the index" → "Add file contents to the index"), removed
  from the page the same way (the NAME paragraph keeps the command's name).
- ``postgres``: every page of the PostgreSQL 15 manual, unchanged; its questions are
  ``bench/postgres_questions.jsonl`` (one or more right pages per question).
"""

from __future__ import annotations

import html
import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path

from ragkit.connectors import html as html_connector
from ragkit.connectors.base import LoadOptions

__all__ = ["SETS", "build"]

DOC = Path("/usr/share/doc")
QUESTIONS = Path(__file__).resolve().parent / "postgres_questions.jsonl"

_TAG = re.compile(r"<[^>]+>")
_H1 = re.compile(r"(<h1[^>]*>)(.*?)(</h1>)", re.S)
_TITLE = re.compile(r"<title>(.*?)</title>", re.S)
_DASH = r"(?:—|&#8212;|&mdash;)"
_PY_DASH = re.compile(rf"\s*{_DASH}\s*")
_HEADERLINK = re.compile(r'<a class="headerlink".*?</a>', re.S)
_GIT_NAME = re.compile(r'(<h2>NAME</h2>\s*<div class="sectionbody">\s*<p>)(.*?)(</p>)', re.S)


def _text(fragment: str) -> str:
    return " ".join(html.unescape(_TAG.sub(" ", fragment)).split())


def _python_page(raw: str) -> tuple[str, str] | None:
    """(page without its summary, summary), or None for a page without one (chapter indexes).

    The summary is everything after the dash up to the heading's permalink, markup included
    ("Support for <strong>bzip2</strong> compression" is one summary, not "Support for")."""
    h1 = _H1.search(raw)
    if h1 is None:
        return None
    content = h1.group(2)
    dash = _PY_DASH.search(content)
    if dash is None:
        return None
    link = _HEADERLINK.search(content, dash.end())
    end = link.start() if link else len(content)
    # inline markup joins its words as it renders: "<code>with</code>-statement" → "with-statement"
    summary = " ".join(html.unescape(_TAG.sub("", content[dash.end() : end])).split())
    name = _text(content[: dash.start()])
    if not summary or not name:
        return None
    inner = content[: dash.start()] + content[end:]
    page = raw[: h1.start(2)] + inner + raw[h1.end(2) :]
    page = _TITLE.sub(lambda _: f"<title>{html.escape(name)}</title>", page, count=1)
    return page, summary


def _git_page(raw: str) -> tuple[str, str] | None:
    found = _GIT_NAME.search(raw)
    if found is None:
        return None
    name, sep, description = _text(found.group(2)).partition(" - ")
    if not sep or not description.strip():
        return None
    page = raw[: found.start(2)] + html.escape(name) + raw[found.end(2) :]
    return page, description.strip()


def _unchanged(raw: str) -> tuple[str, str] | None:
    return raw, ""


# set -> (folder, glob, page rewriter: raw HTML -> (page, query) or None to leave the page out)
SETS: dict[str, tuple[Path, str, Callable[[str], tuple[str, str] | None]]] = {
    "python": (DOC / "python3.11-doc/html/library", "*.html", _python_page),
    "git": (DOC / "git-doc", "git-*.html", _git_page),
    "postgres": (DOC / "postgresql-doc-15/html", "*.html", _unchanged),
}


def build(name: str, root: Path) -> Path:
    """Write the set ``name`` under ``root / name`` (rebuilt when its ``queries.jsonl`` is
    missing)."""
    folder, pattern, rewrite = SETS[name]
    out = root / name
    if (out / "queries.jsonl").is_file():
        return out
    if not folder.is_dir():
        raise SystemExit(f"{folder} is missing: apt-get install the package that ships it")
    # the set's files are rewritten; a workspace beside them (``ws``) is kept, so the next
    # ingest re-encodes only the pages that changed
    for stale in ("pages", "qrels"):
        shutil.rmtree(out / stale, ignore_errors=True)
    for stale in ("corpus.jsonl", "first256.npy"):
        (out / stale).unlink(missing_ok=True)
    (out / "pages").mkdir(parents=True)
    (out / "qrels").mkdir()
    queries: list[dict[str, str]] = []
    qrels: list[tuple[str, str]] = []
    with open(out / "corpus.jsonl", "w", encoding="utf-8") as corpus:
        for path in sorted(folder.glob(pattern)):
            rewritten = rewrite(path.read_text(encoding="utf-8", errors="replace"))
            if rewritten is None:
                continue
            page, query = rewritten
            target = out / "pages" / path.name
            target.write_text(page, encoding="utf-8")
            loaded = html_connector.load_html(
                page.encode(), path=target, uri=path.name, options=LoadOptions()
            )
            document = loaded.documents[0]
            row = {"_id": path.name, "title": document.title, "text": document.text}
            corpus.write(json.dumps(row, ensure_ascii=False) + "\n")
            if query:
                qid = f"q{len(queries):04d}"
                queries.append({"_id": qid, "text": query})
                qrels.append((qid, path.name))
    if name == "postgres":
        for row in map(json.loads, QUESTIONS.read_text(encoding="utf-8").splitlines()):
            queries.append({"_id": row["_id"], "text": row["text"]})
            qrels += [(row["_id"], page) for page in row["pages"]]
    with open(out / "queries.jsonl", "w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(q, ensure_ascii=False) + "\n" for q in queries)
    with open(out / "qrels" / "test.tsv", "w", encoding="utf-8") as handle:
        handle.write("query-id\tcorpus-id\tscore\n")
        handle.writelines(f"{qid}\t{doc}\t1\n" for qid, doc in qrels)
    return out

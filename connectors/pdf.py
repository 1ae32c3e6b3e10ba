"""PDF: the text layer, page by page, cut back into paragraphs.

A PDF has no paragraphs, only positioned lines, so paragraphs are rebuilt from blank lines and
from lines that stop well short of the page's usual line length.  pypdf is chatty about the
many small defects of real PDFs; those messages are silenced here because a defect that still
yields text is not the user's problem, and one that does not yields a ConnectorError.
"""

from __future__ import annotations

import io
import logging
import re
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ragkit.connectors.base import LoadOptions, LoadResult, single_document
from ragkit.connectors.text import finish_result
from ragkit.documents import Block
from ragkit.errors import ConnectorError

__all__ = ["load_pdf", "split_pdf_paragraphs"]

# A line shorter than this share of the page's typical line length ends its paragraph.
_SHORT_LINE = 0.7
# A gap to the next line wider than this multiple of the usual line spacing ends a paragraph.
_WIDE_GAP = 1.3


@contextmanager
def _quiet_pypdf() -> Iterator[None]:
    """Silence pypdf's warnings and log records for the duration of one load only.

    Like ``warnings.catch_warnings`` itself this is not thread-safe; loaders run one file at a
    time per process.
    """
    logger = logging.getLogger("pypdf")
    previous = logger.level
    logger.setLevel(logging.CRITICAL + 1)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(previous)


def _join_lines(lines: list[str]) -> str:
    text = lines[0]
    for line in lines[1:]:
        if len(text) > 1 and text.endswith("-") and text[-2].isalpha() and line[:1].islower():
            text = text[:-1] + line  # re-join a word hyphenated at the line end
        else:
            text = f"{text} {line}"
    return text


def _paragraph_breaks(lines: list[str], line_ys: Sequence[float] | None) -> list[bool]:
    """For each line, whether a paragraph ends after it.

    A paragraph ends where the vertical gap to the next line is clearly larger than the usual
    line spacing (when positions are known), or where a line stops well short of the typical
    line length, as the last line of a paragraph usually does.
    """
    lengths = sorted(len(line) for line in lines)
    typical = lengths[int(0.8 * (len(lengths) - 1))] if lengths else 0
    cut_short = len(lines) >= 3 and typical >= 40
    breaks = [cut_short and len(line) < _SHORT_LINE * typical for line in lines]
    if line_ys is not None and len(line_ys) == len(lines) > 2:
        gaps = [line_ys[i] - line_ys[i + 1] for i in range(len(lines) - 1)]
        positive = sorted(gap for gap in gaps if gap > 0)
        if positive:
            usual = positive[len(positive) // 2]
            for i, gap in enumerate(gaps):
                if gap > _WIDE_GAP * usual or gap < 0:
                    breaks[i] = True
    if breaks:
        breaks[-1] = True
    return breaks


def split_pdf_paragraphs(page_text: str, line_ys: Sequence[float] | None = None) -> list[str]:
    """Rebuild paragraphs from the lines pypdf extracted from one page.

    ``line_ys`` are the baselines of the non-empty lines, top to bottom, when known.
    """
    paragraphs: list[str] = []
    for chunk in re.split(r"\n[ \t]*\n", page_text):
        lines = [line.strip() for line in chunk.split("\n") if line.strip()]
        if not lines:
            continue
        ys = line_ys if line_ys is not None and "\n\n" not in page_text.strip() else None
        current: list[str] = []
        for line, ends in zip(lines, _paragraph_breaks(lines, ys), strict=True):
            current.append(line)
            if ends:
                paragraphs.append(_join_lines(current))
                current = []
    return paragraphs


def _page_text(page: Any) -> tuple[str, list[float] | None]:
    """Text of a page plus the baseline of each non-empty line, when they can be matched up."""
    baselines: list[float] = []

    def visit(text: str, cm: Sequence[float], tm: Sequence[float], *_: Any) -> None:
        if text.strip():
            y = tm[4] * cm[1] + tm[5] * cm[3] + cm[5]
            if not baselines or abs(baselines[-1] - y) > 0.5:
                baselines.append(y)

    text = page.extract_text(visitor_text=visit) or ""
    lines = [line for line in text.split("\n") if line.strip()]
    return text, (baselines if len(baselines) == len(lines) else None)


def _title(reader: Any) -> str | None:
    try:
        metadata = reader.metadata
        title = metadata.title if metadata is not None else None
    except Exception:  # a broken /Info dictionary should not cost us the text
        return None
    text = str(title).strip() if title else ""
    return text or None


def load_pdf(data: bytes, *, path: Path, uri: str, options: LoadOptions) -> LoadResult:
    from pypdf import PdfReader

    problems: list[str] = []
    page_texts: list[tuple[str, list[float] | None]] = []
    with _quiet_pypdf():
        try:
            reader = PdfReader(io.BytesIO(data), strict=False)
            if reader.is_encrypted:
                try:
                    opened = reader.decrypt("")
                except Exception as exc:
                    raise ConnectorError(
                        str(path), f"encrypted PDF: decrypt it first ({exc})"
                    ) from exc
                if not opened:
                    raise ConnectorError(
                        str(path), "encrypted PDF: decrypt it first (it needs a password)"
                    )
            pages = list(reader.pages)
            title = _title(reader)
        except ConnectorError:
            raise
        except RecursionError:
            raise ConnectorError(
                str(path), "corrupt PDF: object structure nested too deeply"
            ) from None
        except Exception as exc:
            raise ConnectorError(
                str(path),
                f"corrupt or unreadable PDF ({exc}): re-export it or repair it (e.g. with qpdf)",
            ) from exc
        for number, page in enumerate(pages, start=1):
            try:
                page_texts.append(_page_text(page))
            except Exception as exc:  # one bad content stream should not lose the other pages
                problems.append(f"page {number}: cannot extract text: {exc}")
                page_texts.append(("", None))
    if not pages:
        raise ConnectorError(str(path), "PDF has no pages")
    blocks = [
        Block(paragraph)
        for page_text, line_ys in page_texts
        for paragraph in split_pdf_paragraphs(page_text, line_ys)
    ]
    if not any(block.text.strip() for block in blocks):
        raise ConnectorError(str(path), "no extractable text (scanned PDF?): run OCR first")
    result = single_document(
        path, uri=uri, title=title, blocks=blocks, format="pdf", metadata={"pages": len(pages)}
    )
    result.problems.extend(problems)
    return finish_result(result, path)

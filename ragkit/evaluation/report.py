"""A self-contained HTML page of an evaluation: one file to open, mail or attach to a ticket.

Metric bars per mode (before and after side by side when there are two runs), recall@k curves
computed from the rankings themselves, and the queries that gained and lost most, each with its
top hits marked relevant or not, because a mean hides which queries a change broke. Everything
is inline (SVG and CSS, no script, no external asset), so the page renders offline and the same
everywhere.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["CURVE_KS", "ReportRun", "recall_curve", "render_report", "write_report"]

CURVE_KS: tuple[int, ...] = (1, 2, 3, 5, 10, 20, 50, 100)
COLOURS = ("#8a94a6", "#2563eb", "#16a34a", "#d97706", "#9333ea", "#dc2626")
WIDTH, BAR_HEIGHT = 560, 16


@dataclass
class ReportRun:
    """One (label, mode) evaluation: label is e.g. "before"/"after", mode "dense"/"hybrid"."""

    label: str
    mode: str
    metrics: dict[str, float]
    per_query: dict[str, dict[str, float]] = field(default_factory=dict)
    rankings: dict[str, list[str]] = field(default_factory=dict)  # query id -> ranked doc ids


def recall_curve(
    rankings: Mapping[str, Sequence[str]],
    qrels: Mapping[str, Mapping[str, int]],
    ks: Sequence[int] = CURVE_KS,
) -> list[tuple[int, float]]:
    """Mean recall@k over the judged queries (a query with no ranking counts as 0)."""
    judged = {q: {d for d, g in docs.items() if g > 0} for q, docs in qrels.items()}
    judged = {q: docs for q, docs in judged.items() if docs and q in rankings}
    if not judged:
        return [(k, 0.0) for k in ks]
    out = []
    for k in ks:
        total = sum(len(set(rankings[q][:k]) & docs) / len(docs) for q, docs in judged.items())
        out.append((k, total / len(judged)))
    return out


def render_report(
    title: str,
    runs: Sequence[ReportRun],
    *,
    queries: Mapping[str, str],
    qrels: Mapping[str, Mapping[str, int]],
    subtitle: str = "",
    metric: str = "ndcg@10",
    movers: int = 5,
    hits: int = 5,
) -> str:
    """The page as a string; see :func:`write_report`."""
    labels = list(dict.fromkeys(r.label for r in runs))
    modes = list(dict.fromkeys(r.mode for r in runs))
    colour = {label: COLOURS[i % len(COLOURS)] for i, label in enumerate(labels)}
    by_key = {(r.label, r.mode): r for r in runs}
    parts = [_head(title), f"<h1>{_e(title)}</h1>"]
    if subtitle:
        parts.append(f'<p class="sub">{_e(subtitle)}</p>')
    parts.append(
        '<p class="legend">'
        + "".join(f'<span><i style="background:{colour[x]}"></i>{_e(x)}</span>' for x in labels)
        + "</p>"
    )
    parts.append("<h2>Metrics</h2>")
    for mode in modes:
        mode_runs = [by_key[(x, mode)] for x in labels if (x, mode) in by_key]
        parts.append(f'<section class="mode" data-mode="{_e(mode)}"><h3>{_e(mode)}</h3>')
        parts.append(_bars(mode_runs, colour))
        curves = [(r.label, recall_curve(r.rankings, qrels)) for r in mode_runs if r.rankings]
        if curves:
            parts.append(_curves(mode, curves, colour))
        parts.append("</section>")
    parts.append(_movers(labels, modes, by_key, queries, qrels, metric, movers, hits))
    parts.append("</body></html>\n")
    return "\n".join(parts)


def write_report(path: str | Path, title: str, runs: Sequence[ReportRun], **kwargs: object) -> Path:
    """Write :func:`render_report` to ``path`` (parents created) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_report(title, runs, **kwargs), encoding="utf-8")  # type: ignore[arg-type]
    return path


# -- pieces -------------------------------------------------------------------------------------
def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _head(title: str) -> str:
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>{_e(title)}</title><style>
body{{font:14px/1.4 system-ui,sans-serif;margin:24px auto;max-width:960px;color:#1f2937}}
h1{{font-size:22px;margin:0 0 4px}} h2{{margin-top:28px;border-bottom:1px solid #e5e7eb}}
.sub{{color:#6b7280;margin:0}} .legend span{{margin-right:16px}}
.legend i{{display:inline-block;width:12px;height:12px;margin-right:4px;vertical-align:-1px}}
section.mode{{display:flex;flex-wrap:wrap;gap:24px;align-items:flex-start}}
section.mode h3{{width:100%;margin:12px 0 0}} svg text{{font-size:11px;fill:#374151}}
table{{border-collapse:collapse;width:100%;margin:8px 0 16px}}
td,th{{border-bottom:1px solid #f3f4f6;padding:3px 6px;text-align:left;vertical-align:top}}
.won td.delta{{color:#15803d}} .lost td.delta{{color:#b91c1c}}
ol.hits{{margin:0;padding-left:18px}} ol.hits li.relevant{{font-weight:600;color:#15803d}}
</style></head><body>"""


def _bars(runs: Sequence[ReportRun], colour: Mapping[str, str]) -> str:
    names = list(dict.fromkeys(m for r in runs for m in r.metrics))
    label_w, value_w = 90, 60
    scale = WIDTH - label_w - value_w
    row_h = BAR_HEIGHT * len(runs) + 8
    rows = []
    for i, name in enumerate(names):
        y0 = i * row_h
        rows.append(f'<text x="0" y="{y0 + BAR_HEIGHT}">{_e(name)}</text>')
        for j, run in enumerate(runs):
            value = run.metrics.get(name)
            if value is None:
                continue
            y = y0 + j * BAR_HEIGHT
            w = max(0.0, min(1.0, value)) * scale
            rows.append(
                f'<rect class="bar" data-label="{_e(run.label)}" data-metric="{_e(name)}" '
                f'data-value="{value:.4f}" x="{label_w}" y="{y + 2}" width="{w:.1f}" '
                f'height="{BAR_HEIGHT - 4}" fill="{colour[run.label]}"/>'
                f'<text x="{label_w + w + 4:.1f}" y="{y + BAR_HEIGHT - 4}">{100 * value:.2f}</text>'
            )
    height = row_h * len(names)
    return (
        f'<svg class="bars" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" '
        f'xmlns="http://www.w3.org/2000/svg">{"".join(rows)}</svg>'
    )


def _curves(
    mode: str, curves: Sequence[tuple[str, list[tuple[int, float]]]], colour: Mapping[str, str]
) -> str:
    import math

    w, h, pad = 320, 200, 30
    ks = [k for k, _ in curves[0][1]]
    span = math.log(ks[-1]) or 1.0

    def point(k: int, v: float) -> str:
        return f"{pad + (w - 2 * pad) * math.log(k) / span:.1f},{h - pad - (h - 2 * pad) * v:.1f}"

    lines = [f'<text x="{pad}" y="14">recall@k ({_e(mode)})</text>']
    lines.append(
        f'<line x1="{pad}" y1="{h - pad}" x2="{w - pad}" y2="{h - pad}" stroke="#9ca3af"/>'
    )
    lines.append(f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{h - pad}" stroke="#9ca3af"/>')
    for k in ks:
        x = point(k, 0).split(",")[0]
        lines.append(f'<text x="{x}" y="{h - pad + 14}" text-anchor="middle">{k}</text>')
    for label, curve in curves:
        coords = " ".join(point(k, v) for k, v in curve)
        lines.append(
            f'<polyline class="curve" data-label="{_e(label)}" points="{coords}" fill="none" '
            f'stroke="{colour[label]}" stroke-width="2"/>'
        )
    return (
        f'<svg class="curves" width="{w}" height="{h}" viewBox="0 0 {w} {h}" '
        f'xmlns="http://www.w3.org/2000/svg">{"".join(lines)}</svg>'
    )


def _movers(
    labels: Sequence[str],
    modes: Sequence[str],
    by_key: Mapping[tuple[str, str], ReportRun],
    queries: Mapping[str, str],
    qrels: Mapping[str, Mapping[str, int]],
    metric: str,
    count: int,
    hits: int,
) -> str:
    """Won and lost queries (first vs last label), or the hardest ones when there is one run."""
    parts = []
    for mode in modes:
        last = by_key.get((labels[-1], mode))
        first = by_key.get((labels[0], mode))
        if last is None or not last.per_query:
            continue
        score = {q: s.get(metric, 0.0) for q, s in last.per_query.items()}
        if first is not None and first is not last and first.per_query:
            delta = {q: v - first.per_query.get(q, {}).get(metric, 0.0) for q, v in score.items()}
            ranked = sorted(delta, key=lambda q: (-delta[q], q))
            sections = [
                ("won", [q for q in ranked if delta[q] > 0][:count]),
                ("lost", [q for q in reversed(ranked) if delta[q] < 0][:count]),
            ]
            shown = (first, last)
        else:
            delta = {}
            sections = [("hardest", sorted(score, key=lambda q: (score[q], q))[:count])]
            shown = (last,)
        parts.append(f"<h2>Queries · {_e(mode)} · {_e(metric)}</h2>")
        for kind, qids in sections:
            parts.append(f'<h3>{kind}</h3><table class="{kind}" data-mode="{_e(mode)}">')
            head = "".join(f"<th>top {hits} · {_e(r.label)}</th>" for r in shown)
            parts.append(f"<tr><th>query</th><th>{_e(metric)}</th><th>Δ</th>{head}</tr>")
            if not qids:
                parts.append(f'<tr><td colspan="{3 + len(shown)}">none</td></tr>')
            for q in qids:
                relevant = {d for d, g in qrels.get(q, {}).items() if g > 0}
                cells = "".join(_hit_list(r.rankings.get(q, [])[:hits], relevant) for r in shown)
                change = f"{100 * delta[q]:+.1f}" if q in delta else ""
                parts.append(
                    f'<tr class="query" data-qid="{_e(q)}"><td>{_e(queries.get(q, q))}</td>'
                    f'<td>{100 * score[q]:.1f}</td><td class="delta">{change}</td>{cells}</tr>'
                )
            parts.append("</table>")
    return "\n".join(parts)


def _hit_list(docs: Sequence[str], relevant: set[str]) -> str:
    items = "".join(
        f'<li class="{"relevant" if d in relevant else "other"}">{_e(d)}</li>' for d in docs
    )
    return f'<td><ol class="hits">{items}</ol></td>'

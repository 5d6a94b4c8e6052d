"""HTML fragments of the page: held-out score bars, the fitted profile, status and error messages."""

from __future__ import annotations

import html
from collections.abc import Collection, Mapping

# bar scale per held-out metric (soups.eval.scorers.METRICS): (low, high) of a full bar
SCALES = {"grade": (0.0, 20.0), "words": (0.0, 120.0), "distinct": (0.0, 90.0), "sentiment": (-1.0, 1.0)}

CSS = """
.soups-bars {font-size: 0.85em; margin-top: 4px}
.soups-bar {display: grid; grid-template-columns: 12.5em 1fr 3.6em; gap: 6px; align-items: center; margin: 2px 0}
.soups-bar .track {background: #e5e7eb; border-radius: 3px; height: 10px; position: relative; overflow: hidden}
.soups-bar .fill {background: #6366f1; height: 100%; position: absolute; top: 0}
.soups-bar .name {white-space: nowrap; overflow: hidden; text-overflow: ellipsis}
.soups-bar.declared .name {font-weight: 600}
.soups-bar .val {text-align: right; font-variant-numeric: tabular-nums}
.soups-note {color: #6b7280; font-size: 0.8em}
.soups-error {color: #b91c1c; background: #fef2f2; border: 1px solid #fecaca; border-radius: 6px; padding: 6px 10px}
.soups-info {color: #374151; padding: 2px 0}
.soups-profile td, .soups-profile th {padding: 2px 8px; text-align: right}
.soups-profile td:first-child, .soups-profile th:first-child {text-align: left}
"""


def scores_html(scores: Mapping[str, float], declared: Collection[str] = ()) -> str:
    """One small bar per dimension: its held-out metric's value (bold: a dimension the soup declares)."""
    from soups.eval.scorers import scorer_for

    if not scores:
        return '<div class="soups-bars soups-note">no held-out scores yet</div>'
    rows = []
    for dim, value in scores.items():
        sc = scorer_for(dim)
        lo, hi = SCALES.get(sc.metric.name, (0.0, max(1.0, abs(value))))
        frac = min(max((value - lo) / (hi - lo), 0.0), 1.0)
        if lo < 0 < hi:  # a signed metric: the bar grows from the middle
            mid = -lo / (hi - lo)
            left, width = (frac, mid - frac) if frac < mid else (mid, frac - mid)
        else:
            left, width = 0.0, frac
        title = f"{dim}: {sc.metric.label} {value:.2f} (a more {dim} answer has a {sc.wants} value)"
        cls = "soups-bar declared" if dim in declared else "soups-bar"
        rows.append(
            f'<div class="{cls}" data-dim="{html.escape(dim)}" data-value="{value:.4f}" title="{html.escape(title)}">'
            f'<span class="name">{html.escape(dim)} <span class="soups-note">{html.escape(sc.metric.label)} '
            f'{"↑" if sc.direction > 0 else "↓"}</span></span>'
            f'<span class="track"><span class="fill" style="left:{100 * left:.1f}%;width:{100 * width:.1f}%">'
            f'</span></span><span class="val">{value:.2f}</span></div>'
        )
    return '<div class="soups-bars">' + "".join(rows) + "</div>"


def status_html(message: str = "", error: bool = False, answer: int | None = None) -> str:
    """`answer`: a finished answer's number (data-answer), so a reader tells this answer's end from the last one's."""
    if not message:
        return ""
    cls = "soups-error" if error else "soups-info"
    number = f' data-answer="{answer}"' if answer is not None else ""
    return f'<div class="{cls}" role="{"alert" if error else "status"}"{number}>{html.escape(message)}</div>'


def profile_html(profile: Mapping) -> str:
    """The fitted weights with their 95% intervals and the merge weights they give."""
    rows = "".join(
        f"<tr><td>{html.escape(d)}</td><td>{w:+.2f}</td><td>[{lo:+.2f}, {hi:+.2f}]</td>"
        f"<td>{profile['merge_weights'][d]:.2f}</td></tr>"
        for d, w, (lo, hi) in zip(profile["dimensions"], profile["w"], profile["w_ci95"])
    )
    return (
        f'<div id="soups-profile"><p>Fitted from {profile["n_answers"]} answers (w: preference per standard '
        "deviation of each dimension; the sliders now hold the merge weights).</p>"
        '<table class="soups-profile"><tr><th>dimension</th><th>w</th><th>95% interval</th>'
        f"<th>merge weight</th></tr>{rows}</table></div>"
    )

"""Charts drawn on the server as SVG: readable without JavaScript, nothing to download."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape


def bars(series: Sequence[tuple[str, int]], title: str, width: int = 640, height: int = 180) -> str:
    """A bar chart of (label, value) with the value on each bar; an empty series says so."""
    if not series:
        return (
            f'<svg role="img" aria-label="{escape(title)}" width="{width}" height="40">'
            '<text x="8" y="24">No data yet</text></svg>'
        )
    top = max(value for _, value in series) or 1
    pad, label_h = 8, 28
    step = (width - 2 * pad) / len(series)
    bar_w = max(step * 0.7, 2)
    parts = [
        f'<svg role="img" aria-label="{escape(title)}" viewBox="0 0 {width} {height}" width="100%" '
        f'preserveAspectRatio="xMidYMid meet" class="chart"><title>{escape(title)}</title>'
    ]
    usable = height - label_h - pad
    for i, (label, value) in enumerate(series):
        h = round(usable * value / top)
        x = pad + i * step + (step - bar_w) / 2
        y = pad + usable - h
        parts.append(
            f'<rect x="{x:.1f}" y="{y}" width="{bar_w:.1f}" height="{h}" class="bar">'
            f"<title>{escape(label)}: {value}</title></rect>"
        )
        if len(series) <= 31:
            parts.append(f'<text x="{x + bar_w / 2:.1f}" y="{y - 2}" text-anchor="middle" class="val">{value}</text>')
        if len(series) <= 10 or i % max(len(series) // 8, 1) == 0:
            parts.append(
                f'<text x="{x + bar_w / 2:.1f}" y="{height - 8}" text-anchor="middle" class="lbl">'
                f"{escape(label[-5:])}</text>"
            )
    parts.append("</svg>")
    return "".join(parts)

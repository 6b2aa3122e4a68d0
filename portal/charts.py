"""Charts drawn on the server as SVG: readable without JavaScript, nothing to download. Each chart's data is
also on the page as a table (the template's job), for screen readers and for people who prefer numbers."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from html import escape

from portal.i18n import gettext_


def bars(
    series: Sequence[tuple[str, int]],
    title: str,
    width: int = 640,
    height: int = 200,
    label: Callable[[int], str] = str,
    unit: str = "",
) -> str:
    """A bar chart of (day, value) with a labelled y axis (0, half, top, in `unit`) and day labels; values are
    shown through `label` (e.g. minor units as money). An empty series says so."""
    if not series or not any(value for _, value in series):
        empty, nothing = escape(gettext_("no data yet")), escape(gettext_("No data in this period yet"))
        return (
            f'<svg role="img" aria-label="{escape(title)}: {empty}" viewBox="0 0 {width} 40" width="100%" '
            f'class="chart"><text x="8" y="24">{nothing}</text></svg>'
        )
    top = max(max(value for _, value in series), 1)
    left, pad, label_h = 64, 10, 30
    step = (width - left - pad) / len(series)
    bar_w = max(step * 0.7, 2)
    usable = height - label_h - pad
    parts = [
        f'<svg role="img" aria-label="{escape(title)}" viewBox="0 0 {width} {height}" width="100%" '
        f'preserveAspectRatio="xMidYMid meet" class="chart"><title>{escape(title)}</title>'
    ]
    for fraction in (0, 0.5, 1):
        y = pad + usable - round(usable * fraction)
        parts.append(f'<line x1="{left}" x2="{width - pad}" y1="{y}" y2="{y}" stroke="#d5dae1"/>')
        parts.append(
            f'<text x="{left - 6}" y="{y + 4}" text-anchor="end">{escape(label(round(top * fraction)))}</text>'
        )
    if unit:
        parts.append(f'<text x="4" y="{pad + 2}" dominant-baseline="hanging">{escape(unit)}</text>')
    every = max(len(series) // 7, 1)
    for i, (day, value) in enumerate(series):
        h = round(usable * value / top) if value > 0 else 0
        x = left + i * step + (step - bar_w) / 2
        y = pad + usable - h
        parts.append(
            f'<rect x="{x:.1f}" y="{y}" width="{bar_w:.1f}" height="{h}" class="bar">'
            f"<title>{escape(day)}: {escape(label(value))}</title></rect>"
        )
        if i % every == 0:
            parts.append(
                f'<text x="{x + bar_w / 2:.1f}" y="{height - 10}" text-anchor="middle">{escape(day[5:])}</text>'
            )
    parts.append("</svg>")
    return "".join(parts)

"""QR codes of tracking links, drawn on the server as inline SVG (segno: pure Python, no image files)."""

from __future__ import annotations

import html

import segno


def svg(text: str, label: str) -> str:
    """A QR code of `text`, named for screen readers."""
    drawing = segno.make(text, error="m").svg_inline(scale=3, border=2)
    return f'<span class="qr" role="img" aria-label="{html.escape(label, quote=True)}">{drawing}</span>'

"""Inline SVG sparkline of a rule's recent values against its threshold (no JavaScript)."""

from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

WIDTH, HEIGHT, PAD = 160, 36, 3


def sparkline(points: list, threshold: float) -> SafeString:
    """An <svg> with the values as a line and the threshold as a dashed line."""
    values = [(t, v) for t, v in points if v is not None]
    if not values:
        return mark_safe('<span class="muted small">no data yet</span>')
    low = min(threshold, *(v for _, v in values))
    high = max(threshold, *(v for _, v in values))
    span = (high - low) or 1.0
    count = max(len(points) - 1, 1)

    def y(value: float) -> float:
        return round(HEIGHT - PAD - (value - low) / span * (HEIGHT - 2 * PAD), 1)

    coords = " ".join(
        f"{round(PAD + i / count * (WIDTH - 2 * PAD), 1)},{y(v)}"
        for i, (_, v) in enumerate(points)
        if v is not None
    )
    last = values[-1][1]
    return format_html(
        '<svg class="sparkline" width="{}" height="{}" viewBox="0 0 {} {}" role="img" '
        'aria-label="last value {} against threshold {}">'
        '<line x1="0" x2="{}" y1="{}" y2="{}" stroke="currentColor" stroke-opacity="0.5" '
        'stroke-dasharray="3 3"/>'
        '<polyline fill="none" stroke="currentColor" stroke-width="1.5" points="{}"/></svg>',
        WIDTH,
        HEIGHT,
        WIDTH,
        HEIGHT,
        f"{last:.4g}",
        f"{threshold:g}",
        WIDTH,
        y(threshold),
        y(threshold),
        coords,
    )

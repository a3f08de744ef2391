"""A small server-side SVG renderer: column charts (a series over time) and bar rows (categories).

Every bar carries its number in ``data-value`` (and its label in ``data-label``) and a ``<title>``
tooltip, so a reader hovering over it, a script or a browser test reads the exact figure plotted.
Text is escaped; sizes are in SVG user units and the charts scale to their container's width.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape

__all__ = ["Bar", "bar_rows", "column_chart", "compact", "human_bytes", "human_seconds", "nice_ceiling"]

Formatter = Callable[[float], str]


@dataclass(frozen=True)
class Bar:
    label: str
    value: float
    #: a CSS class: ``ok``, ``warn``, ``bad``, ``info`` or ``muted``
    tone: str = "info"
    #: the hover text (the label and the value when empty)
    tooltip: str = ""
    #: the text shown beside the bar (the formatted value when empty)
    text: str = ""
    #: what the bar stands for in full, as ``data-key`` (a day, a run id), when the label abbreviates it
    key: str = ""

    def data(self) -> str:
        """The bar's ``data-*`` attributes."""
        values = {"data_label": self.label, "data_value": _number(self.value)}
        if self.key:
            values["data_key"] = self.key
        return _attrs(**values)


def compact(value: float) -> str:
    """1234 → ``1.2k``, 3_400_000 → ``3.4M``; integers below 10 000 as they are."""
    if value != value:  # NaN
        return "-"
    magnitude = abs(value)
    if magnitude < 10_000:
        return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}".rstrip("0").rstrip(".")
    for size, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if magnitude >= size:
            return f"{value / size:.1f}".rstrip("0").rstrip(".") + suffix
    return str(value)  # pragma: no cover


def human_bytes(value: float) -> str:
    size = float(value)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(size) < 1024 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} PB"  # pragma: no cover


def human_seconds(value: float) -> str:
    """An age or duration: ``42 s``, ``5 min``, ``3.5 h``, ``12 d``."""
    seconds = max(float(value), 0.0)
    if seconds < 10:
        return f"{seconds:.2g} s"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h".replace(".0 h", " h")
    return f"{seconds / 86400:.0f} d"


def nice_ceiling(value: float) -> float:
    """The smallest 1, 2, 2.5 or 5 times a power of ten at or above ``value`` (an axis maximum people read easily)."""
    if value <= 0:
        return 1.0
    exponent = math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        candidate = step * 10.0**exponent
        if candidate >= value * (1 - 1e-9):
            return candidate
    return 10.0 ** (exponent + 1)  # pragma: no cover


def _attrs(**values: object) -> str:
    return " ".join(f'{name.replace("_", "-")}="{escape(str(value), quote=True)}"' for name, value in values.items())


def _number(value: float) -> str:
    """A value for ``data-value``: integers without a decimal point."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _empty(name: str, width: int, height: int, message: str) -> str:
    return (
        f'<svg class="chart empty" {_attrs(data_chart=name)} viewBox="0 0 {width} {height}" role="img">'
        f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" class="note">{escape(message)}</text></svg>'
    )


def column_chart(
    bars: Sequence[Bar],
    *,
    name: str,
    width: int = 420,
    height: int = 170,
    fmt: Formatter = compact,
    empty: str = "nothing yet",
) -> str:
    """Vertical bars left to right (oldest first), a y axis from 0 to a round maximum, and as many x
    labels as fit."""
    if not bars:
        return _empty(name, width, 60, empty)
    left, right, top, bottom = 46, 8, 16, 30
    plot_w, plot_h = width - left - right, height - top - bottom
    ceiling = nice_ceiling(max(max(bar.value for bar in bars), 0))
    slot = plot_w / len(bars)
    bar_w = max(min(slot * 0.78, 48), 1.5)
    parts = [f'<svg class="chart columns" {_attrs(data_chart=name)} viewBox="0 0 {width} {height}" role="img">']
    for fraction in (0, 0.5, 1):
        y = top + plot_h * (1 - fraction)
        parts.append(f'<line class="grid" x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}"/>')
        parts.append(
            f'<text class="axis" x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{fmt(ceiling * fraction)}</text>'
        )
    label_every = max(1, math.ceil(len(bars) / max(int(plot_w // 64), 1)))
    show_values = len(bars) <= 14
    for position, bar in enumerate(bars):
        value = max(bar.value, 0)
        bar_h = plot_h * value / ceiling
        x = left + slot * position + (slot - bar_w) / 2
        y = top + plot_h - bar_h
        tooltip = bar.tooltip or f"{bar.label}: {bar.text or fmt(bar.value)}"
        parts.append(
            f'<rect class="bar {escape(bar.tone)}" x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" '
            f'height="{max(bar_h, 0.5 if value else 0):.1f}" rx="1.5" '
            f"{bar.data()}><title>{escape(tooltip)}</title></rect>"
        )
        if show_values:  # zeros too: a missing bar reads as missing data
            parts.append(
                f'<text class="value" x="{x + bar_w / 2:.1f}" y="{y - 4:.1f}" text-anchor="middle">'
                f"{escape(bar.text or fmt(bar.value))}</text>"
            )
        if position % label_every == 0:
            parts.append(
                f'<text class="axis" x="{left + slot * (position + 0.5):.1f}" y="{height - bottom + 16}" '
                f'text-anchor="middle">{escape(bar.label)}</text>'
            )
    parts.append(f'<line class="baseline" x1="{left}" x2="{width - right}" y1="{top + plot_h}" y2="{top + plot_h}"/>')
    parts.append("</svg>")
    return "".join(parts)


def bar_rows(
    bars: Sequence[Bar],
    *,
    name: str,
    width: int = 420,
    fmt: Formatter = compact,
    marker: tuple[float, str] | None = None,
    empty: str = "nothing yet",
) -> str:
    """One horizontal bar per category, its label on the left and its value on the right; ``marker``
    draws a dashed line at a limit (a TTL, a threshold) with its caption."""
    if not bars:
        return _empty(name, width, 40, empty)
    label_w, value_w, row_h, top = 132, 70, 22, 18 if marker else 4
    plot_w = width - label_w - value_w
    ceiling = max(max(bar.value for bar in bars), marker[0] if marker else 0, 0) or 1.0
    height = top + row_h * len(bars) + 4
    parts = [f'<svg class="chart rows" {_attrs(data_chart=name)} viewBox="0 0 {width} {height}" role="img">']
    for position, bar in enumerate(bars):
        y = top + row_h * position
        length = plot_w * max(bar.value, 0) / ceiling
        label = bar.label if len(bar.label) <= 22 else bar.label[:21] + "…"
        text = bar.text or fmt(bar.value)
        tooltip = bar.tooltip or f"{bar.label}: {text}"
        parts.append(
            f'<text class="label" x="{label_w - 8}" y="{y + 15}" text-anchor="end">{escape(label)}'
            f"<title>{escape(bar.label)}</title></text>"
        )
        parts.append(
            f'<rect class="bar {escape(bar.tone)}" x="{label_w}" y="{y + 3}" '
            f'width="{max(length, 1 if bar.value else 0):.1f}" '
            f'height="{row_h - 6}" rx="2" {bar.data()}>'
            f"<title>{escape(tooltip)}</title></rect>"
        )
        parts.append(f'<text class="value" x="{label_w + length + 6:.1f}" y="{y + 15}">{escape(text)}</text>')
    if marker:
        x = label_w + plot_w * marker[0] / ceiling
        parts.append(f'<line class="marker" x1="{x:.1f}" x2="{x:.1f}" y1="{top - 4}" y2="{height}"/>')
        parts.append(
            f'<text class="marker-label" x="{x:.1f}" y="{top - 7}" text-anchor="middle">{escape(marker[1])}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)

"""The shapes the report's charts are drawn with, as SVG text: a frame, bars with a tooltip, labels, axes,
a legend. Every text is escaped; nothing is fetched and no script runs, so a chart shows offline and under
a content policy that allows no script (pure: values in, a string out)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape

WIDTH = 560  # the chart's own pixels; the page lets it shrink, never below a readable size
FONT = 13  # px, every label; a tick's too
LINE = 18  # px from one line of text to the next
INK, MUTED, GRID = "#1f2937", "#4b5563", "#e5e7eb"
TEAL, PALE, AMBER, SLATE, RED, GREEN, BLUE = "#0f766e", "#99d5cf", "#b45309", "#64748b", "#b91c1c", "#15803d", "#2563eb"


def number(value: float) -> str:
    """A coordinate, short: 12, 12.5."""
    return f"{value:.1f}".removesuffix(".0")


def clip(label: str, size: int) -> str:
    """At most `size` characters of `label`, an ellipsis marking a cut (the tooltip keeps all of it)."""
    return label if len(label) <= size else label[: size - 1] + "\u2026"


def text(x: float, y: float, content: str, anchor: str = "start", fill: str = INK, tooltip: str = "") -> str:
    """A label; with a tooltip, for a label cut short."""
    hover = f"<title>{escape(tooltip)}</title>" if tooltip else ""
    return (f'<text x="{number(x)}" y="{number(y)}" font-size="{FONT}" text-anchor="{anchor}" fill="{fill}">'
            f'{hover}{escape(content)}</text>')


def rect(x: float, y: float, width: float, height: float, fill: str, tooltip: str) -> str:
    """A bar, its tooltip (the browser shows a `<title>` on hover) saying what it counts."""
    return (f'<rect x="{number(x)}" y="{number(y)}" width="{number(max(width, 0))}" height="{number(height)}" '
            f'fill="{fill}"><title>{escape(tooltip)}</title></rect>')


def line(x1: float, y1: float, x2: float, y2: float, stroke: str = GRID, dashed: bool = False) -> str:
    dash = ' stroke-dasharray="4 3"' if dashed else ""
    return (f'<line x1="{number(x1)}" y1="{number(y1)}" x2="{number(x2)}" y2="{number(y2)}" stroke="{stroke}" '
            f'stroke-width="{2 if dashed else 1}"{dash}/>')


def dot(x: float, y: float, fill: str, tooltip: str) -> str:
    return f'<circle cx="{number(x)}" cy="{number(y)}" r="4" fill="{fill}"><title>{escape(tooltip)}</title></circle>'


def path(points: Sequence[tuple[float, float]], stroke: str) -> str:
    d = " ".join(f"{'M' if index == 0 else 'L'}{number(x)} {number(y)}" for index, (x, y) in enumerate(points))
    return f'<path d="{d}" fill="none" stroke="{stroke}" stroke-width="2"/>'


def image(label: str, height: float, parts: Sequence[str]) -> str:
    """The chart: an image to assistive technology, named by `label`."""
    return (f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" aria-label="{escape(label)}" '
            f'viewBox="0 0 {WIDTH} {number(height)}" width="{WIDTH}" height="{number(height)}" '
            f'font-family="system-ui, sans-serif">{"".join(parts)}</svg>')


def empty(label: str, message: str = "No data yet") -> str:
    """An honest chart of nothing: a frame and what is missing, no axis pretending a scale."""
    height = 120
    return image(f"{label}: {message}", height, [
        f'<rect x="1" y="1" width="{WIDTH - 2}" height="{height - 2}" fill="none" stroke="{GRID}" rx="6"/>',
        text(WIDTH / 2, height / 2 + 5, message, anchor="middle", fill=MUTED)])


def legend(x: float, y: float, entries: Sequence[tuple[str, str]]) -> list[str]:
    """Swatches and names in one line from (x, y), the text's baseline."""
    parts = []
    for name, color in entries:
        parts += [f'<rect x="{number(x)}" y="{number(y - 10)}" width="12" height="12" fill="{color}"/>',
                  text(x + 16, y, name)]
        x += 16 + 8 * len(name) + 16
    return parts


TICKS = 4  # steps on an axis


def count_top(largest: float) -> int:
    """The end of an axis of counts reaching `largest` in TICKS whole, round steps (1, 1.5, 2, 2.5, 3, 4,
    5, 6 or 8 times a power of ten): the scale reads 0, 150, 300, 450, 600, never 2.5 people."""
    wanted = max(largest, 1) / TICKS
    power = 10 ** math.floor(math.log10(wanted))
    step = next(m * power for m in (1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10) if m * power >= wanted and m * power % 1 == 0)
    return int(step * TICKS)


@dataclass(frozen=True)
class Frame:
    """The plot's area inside a chart, in the chart's pixels; values map onto it from 0 to `top`."""

    left: float
    top_y: float
    right: float
    bottom: float
    top: float = 1.0

    @property
    def width(self) -> float:
        return self.right - self.left

    @property
    def height(self) -> float:
        return self.bottom - self.top_y

    def across(self, value: float) -> float:
        """The length of a horizontal bar of `value`."""
        return self.width * min(max(value, 0) / self.top, 1)

    def up(self, value: float, top: float | None = None) -> float:
        """The y of `value` on a vertical scale from 0 to `top` (the frame's own by default)."""
        scale = top or self.top
        return self.bottom - self.height * min(max(value, 0) / scale, 1)

    def slot(self, index: int, count: int) -> tuple[float, float]:
        """The left edge and the width of column `index` of `count`, with a gap between columns."""
        each = self.width / count
        gap = min(each * 0.25, 12)
        return self.left + index * each + gap / 2, each - gap


def grid_across(frame: Frame, shown: Callable[[float], str]) -> list[str]:
    """Vertical grid lines of a horizontal scale, their values under the plot."""
    parts = []
    for index in range(TICKS + 1):
        value = frame.top * index / TICKS
        x = frame.left + frame.across(value)
        parts += [line(x, frame.top_y, x, frame.bottom), text(x, frame.bottom + LINE - 2, shown(value),
                                                               anchor="middle", fill=MUTED)]
    return parts


def grid_up(frame: Frame, shown: Callable[[float], str], top: float | None = None,
            right: bool = False) -> list[str]:
    """Horizontal grid lines of a vertical scale, their values left of the plot (or right: a second scale)."""
    parts = []
    scale = top or frame.top
    for index in range(TICKS + 1):
        value = scale * index / TICKS
        y = frame.up(value, scale)
        if not right:
            parts.append(line(frame.left, y, frame.right, y))
        x, anchor = (frame.right + 6, "start") if right else (frame.left - 6, "end")
        parts.append(text(x, y + 4, shown(value), anchor=anchor, fill=MUTED))
    return parts


@dataclass(frozen=True)
class Bar:
    value: float  # on the frame's scale
    fill: str
    tooltip: str
    note: str = ""  # written after the bar


@dataclass(frozen=True)
class Row:
    label: str
    bars: tuple[Bar, ...]


BAR = 18  # px, a horizontal bar's thickness
LABELS = 150  # px, the column of a row's label
LABEL_CHARS = 20


def rows_across(label: str, rows: Sequence[Row], top: float, notes: float = 150,
                scale: Callable[[float], str] | None = None, key: Sequence[tuple[str, str]] = ()) -> str:
    """Horizontal bars, one row per label with one bar or a group, the longest `top`; each bar's note after
    it (`notes` px kept free for them), a scale under the plot when `scale` formats its values."""
    head = LINE + 8 if key else 8
    row_height = BAR * max(len(row.bars) for row in rows) + 10
    frame = Frame(LABELS, head, WIDTH - notes, head + row_height * len(rows), top)
    parts = legend(LABELS, LINE - 2, key) + (grid_across(frame, scale) if scale else [])
    for index, row in enumerate(rows):
        y = frame.top_y + index * row_height + 5
        shown = clip(row.label, LABEL_CHARS)
        parts.append(text(LABELS - 8, y + BAR * len(row.bars) / 2 + 5, shown, anchor="end",
                          tooltip=row.label if shown != row.label else ""))
        for bar in row.bars:
            length = frame.across(bar.value)
            parts += [rect(LABELS, y, length, BAR - 2, bar.fill, bar.tooltip),
                      text(LABELS + length + 6, y + BAR - 5, bar.note)]
            y += BAR
    return image(label, frame.bottom + (LINE + 6 if scale else 6), parts)


def column(frame: Frame, index: int, count: int, value: float, fill: str, tooltip: str) -> str:
    """A vertical bar of `value` in column `index` of `count`."""
    x, width = frame.slot(index, count)
    return rect(x, frame.up(value), width, frame.bottom - frame.up(value), fill, tooltip)


def column_middle(frame: Frame, index: int, count: int) -> float:
    x, width = frame.slot(index, count)
    return x + width / 2

"""The report's figures, as PNG bytes: training curves, the capability/safety trade-off, and diversity.

Figures are built on `matplotlib.figure.Figure` with the Agg canvas, never through `pyplot`, so drawing keeps no
global state and needs no display. Each function takes plain numbers (the report reads the run directory) and
returns PNG bytes, or None when there is nothing to draw.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

DPI = 100
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf", "#7f7f7f")


@dataclass(frozen=True)
class Estimate:
    """A rate with its 95% interval (the interval ends equal the value when unknown)."""

    value: float
    low: float
    high: float


@dataclass(frozen=True)
class TradeoffPoint:
    """One checkpoint on the trade-off plot; a missing measurement is None."""

    label: str
    capability: Estimate | None
    harmful: Estimate | None
    over_refusal: Estimate | None


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def to_png(fig) -> bytes:
    """Render `fig` to PNG bytes (no timestamp or software tag, so the bytes depend only on the data)."""
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return buffer.getvalue()


def curves_png(
    rows: Sequence[Mapping],
    keys: Sequence[str],
    boundaries: Sequence[tuple[int, str]] = (),
    x_label: str = "step",
    rates: bool = False,
) -> bytes | None:
    """One panel per key of `keys` present in `rows` (against "step"); `boundaries` are (step, label) marks. With
    `rates`, every panel spans 0 to 1 and the x axis has whole-number ticks (rounds), so small moves look small."""
    present = [k for k in keys if any(_is_number(r.get(k)) for r in rows)]
    if not present:
        return None
    columns = min(3, len(present))
    n_rows = -(-len(present) // columns)
    fig = _figure(4.2 * columns, 2.8 * n_rows)
    for i, key in enumerate(present):
        ax = fig.add_subplot(n_rows, columns, i + 1)
        points = [(r["step"], r[key]) for r in rows if _is_number(r.get(key)) and "step" in r]
        for segment in _split(points, [step for step, _ in boundaries]):
            ax.plot(
                *zip(*segment, strict=True),
                color=COLOURS[i % len(COLOURS)],
                marker="o" if len(points) < 40 else None,
                markersize=3,
                linewidth=1.5,
            )
        _mark_boundaries(ax, boundaries)
        if rates:
            ax.set_ylim(-0.02, 1.02)
            ax.set_xticks(sorted({x for x, _ in points}))
        ax.set_title(key, fontsize=10)
        ax.set_xlabel(x_label, fontsize=9)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
    return to_png(fig)


def _split(points: Sequence[tuple[float, float]], cuts: Sequence[float]) -> list[list[tuple[float, float]]]:
    """`points` (in step order) cut at each step of `cuts`, so no line joins the end of a round to the next."""
    segments: dict[int, list] = {}
    for x, y in points:
        segments.setdefault(sum(c < x for c in cuts), []).append((x, y))
    return list(segments.values())


def _mark_boundaries(ax, boundaries: Sequence[tuple[int, str]]) -> None:
    for step, label in boundaries:
        ax.axvline(step, color="#888888", linestyle="--", linewidth=0.8)
        ax.text(step, 1.0, f" {label}", transform=ax.get_xaxis_transform(), fontsize=7, color="#555555", va="top")


def _is_number(x) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and x == x


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats: lower-or-equal x and higher-or-equal y, one of them strictly."""

    def dominated(i: int) -> bool:
        xi, yi = points[i]
        return any(x <= xi and y >= yi and (x, y) != (xi, yi) for x, y in points)

    return sorted((i for i in range(len(points)) if not dominated(i)), key=lambda i: points[i])


def tradeoff_png(points: Sequence[TradeoffPoint]) -> bytes | None:
    """Capability against harmful compliance (left) and over-refusal (right); each checkpoint a labelled point."""
    panels = [
        (attr, title)
        for attr, title in (("harmful", "harmful compliance"), ("over_refusal", "over-refusal"))
        if any(p.capability and getattr(p, attr) for p in points)
    ]
    if not panels:
        return None
    fig = _figure(5.2 * len(panels), 4.4)
    for i, (attr, title) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        drawn = [(p.label, getattr(p, attr), p.capability) for p in points if p.capability and getattr(p, attr)]
        _tradeoff_panel(ax, drawn, COLOURS[1 + 2 * i])
        ax.set_xlabel(f"{title} (lower is better)", fontsize=9)
        ax.set_ylabel("capability: arithmetic accuracy", fontsize=9)
        ax.set_title(f"capability vs {title}", fontsize=10)
    return to_png(fig)


def _tradeoff_panel(ax, drawn: list[tuple[str, Estimate, Estimate]], colour: str) -> None:
    xy = [(x.value, y.value) for _, x, y in drawn]
    front = pareto_front(xy)
    for (label, x, y), is_front in zip(drawn, [i in front for i in range(len(drawn))], strict=True):
        ax.errorbar(
            x.value,
            y.value,
            xerr=[[x.value - x.low], [x.high - x.value]],
            yerr=[[y.value - y.low], [y.high - y.value]],
            fmt="o",
            color=colour,
            ecolor=colour + "55",
            markersize=7 if is_front else 5,
            markerfacecolor=colour if is_front else "white",
            capsize=2,
        )
        ax.annotate(label, (x.value, y.value), textcoords="offset points", xytext=(6, 5), fontsize=8)
    ax.plot(
        [xy[i][0] for i in front],
        [xy[i][1] for i in front],
        color=colour,
        linewidth=1.2,
        alpha=0.7,
        drawstyle="steps-post",
        label="frontier",
    )
    ax.set_xlim(-0.05, 1.05)
    ax.set_ylim(-0.05, 1.05)
    ax.text(0.02, 0.98, "better ↖", transform=ax.transAxes, fontsize=8, color="#555555", va="top")
    ax.tick_params(labelsize=8)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")


def diversity_png(labels: Sequence[str], series: Mapping[str, Sequence[float | None]]) -> bytes | None:
    """Grouped bars: one group per checkpoint, one bar per metric in `series` (None leaves a gap)."""
    if not labels or not any(v is not None for values in series.values() for v in values):
        return None
    fig = _figure(max(4.5, 1.1 * len(labels) + 2), 3.0)
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / max(1, len(series))
    for j, (name, values) in enumerate(series.items()):
        xs = [i + (j - (len(series) - 1) / 2) * width for i, v in enumerate(values) if v is not None]
        ax.bar(xs, [v for v in values if v is not None], width, label=name, color=COLOURS[j % len(COLOURS)])
    ax.set_xticks(range(len(labels)), labels, fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.tick_params(labelsize=8)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    return to_png(fig)

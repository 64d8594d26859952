"""Figures for the HTML reports, drawn with matplotlib (the optional `nl2code[report]` extra).

Only matplotlib's object API is used (Figure + the Agg canvas), never pyplot: no global
backend is switched and no window can open. Every figure comes back as a `data:` URI of
a PNG, so a report is one self-contained file.
"""

from __future__ import annotations

import base64
import io
from typing import Sequence

from nl2code.errors import UsageError

PALETTE = ("#3366aa", "#ee8833", "#55aa55", "#cc4444", "#8866bb", "#999999")
DPI = 80


def require() -> None:
    """Fail with one clear line when the plotting library is missing."""
    try:
        import matplotlib  # noqa: F401
        from matplotlib.figure import Figure  # noqa: F401
    except ImportError:
        raise UsageError("reports need matplotlib, which is not installed: "
                         "pip install 'nl2code[report]' (or pip install matplotlib)") from None


def _figure(width: float = 7.0, height: float = 3.2):
    require()
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI)
    ax = fig.subplots()
    ax.grid(axis="y", color="#dddddd", linewidth=0.8)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    return fig, ax


def to_uri(fig) -> str:
    buf = io.BytesIO()
    # no Software/date metadata: the same data gives the same bytes
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight", metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def grouped_bars(title: str, groups: Sequence[str], series: dict[str, Sequence[float]],
                 ylabel: str = "", ymax: float | None = None, counts: Sequence[int] | None = None) -> str:
    """One group of bars per category, one bar per series, each bar labelled with its value."""
    width = max(5.0, min(11.0, 1.2 + 0.45 * len(groups) * max(len(series), 1)))
    fig, ax = _figure(width)
    n = max(len(series), 1)
    bar = 0.8 / n
    for k, (name, values) in enumerate(series.items()):
        xs = [i - 0.4 + bar * (k + 0.5) for i in range(len(groups))]
        bars = ax.bar(xs, values, bar * 0.92, label=name, color=PALETTE[k % len(PALETTE)])
        ax.bar_label(bars, labels=[f"{v:.1f}" for v in values], fontsize=7, padding=1)
    labels = [f"{g}\n(n={c})" for g, c in zip(groups, counts)] if counts else list(groups)
    crowded = len(groups) > 8 or max((len(str(g)) for g in groups), default=0) * len(groups) > 70
    ax.set_xticks(range(len(groups)), labels, fontsize=8, rotation=25 if crowded else 0,
                  ha="right" if crowded else "center")
    if ymax is not None:
        ax.set_ylim(0, ymax * 1.08)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=11)
    if len(series) > 1:
        ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)  # clear of the labels
    return to_uri(fig)


def histogram(title: str, values: Sequence[float], xlabel: str, marks: dict[str, float] | None = None,
              bins: int = 30) -> str:
    fig, ax = _figure()
    ax.hist(values, bins=bins, color=PALETTE[0], edgecolor="white", linewidth=0.5)
    ax.set_xlim(left=0)
    for k, (name, x) in enumerate((marks or {}).items()):
        ax.axvline(x, color=PALETTE[(k + 1) % len(PALETTE)], linestyle="--", linewidth=1.2, label=f"{name} {x:g}")
    if marks:
        ax.legend(fontsize=8, frameon=False)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("examples")
    ax.set_title(title, fontsize=11)
    return to_uri(fig)


def lines(title: str, series: list[tuple[str, list[list[tuple[float, float]]]]], xlabel: str, ylabel: str,
          vlines: Sequence[tuple[float, str]] = (), logy: bool = False, best: tuple[float, float] | None = None) -> str:
    """Line plots; each series is a list of segments (a resumed run starts a new segment)."""
    fig, ax = _figure(6.4, 3.0)
    for k, (name, segments) in enumerate(series):
        color = PALETTE[k % len(PALETTE)]
        for j, seg in enumerate(segments):
            if not seg:
                continue
            xs, ys = zip(*seg)
            ax.plot(xs, ys, color=color, linewidth=1.3, marker="o" if len(seg) < 30 else None, markersize=3,
                    label=name if j == 0 else None)
    seen = set()
    for x, label in vlines:
        ax.axvline(x, color="#cc4444", linestyle="--", linewidth=1.0,
                   label=label if label not in seen else None)
        seen.add(label)
    if best is not None:
        ax.plot([best[0]], [best[1]], marker="*", markersize=12, color="#ddaa00", linestyle="none",
                label=f"best {best[1]:.2f} at step {best[0]:g}")
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=11)
    ax.legend(fontsize=8, frameon=False)
    return to_uri(fig)


def scatter(title: str, xs: Sequence[float], ys: Sequence[float], xlabel: str, ylabel: str, top: float = 100.0) -> str:
    """Per-case A vs B: points above the diagonal got better."""
    fig, ax = _figure(4.6, 4.2)
    ax.plot([0, top], [0, top], color="#999999", linewidth=1.0, linestyle=":")
    ax.scatter(xs, ys, s=10, alpha=0.5, color=PALETTE[0], edgecolors="none")
    ax.set_xlim(-2, top * 1.02)
    ax.set_ylim(-2, top * 1.02)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=11)
    return to_uri(fig)

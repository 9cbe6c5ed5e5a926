"""Plotly charts: frame budgets and selection latency vs retention. No gradio here."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio

__all__ = ["budget_chart", "budget_spec", "latency_chart", "sweep_chart"]


def budget_chart(budgets: np.ndarray, saliency: np.ndarray, weights: np.ndarray, mean_entropy: np.ndarray,
                 mean_score: np.ndarray, b_min: int, b_max: int,
                 timestamps: Sequence[float] | np.ndarray | None = None) -> go.Figure:
    """Bars: tokens per frame B_f (hover: saliency S̄_f, weight w_f, clamp); lines: mean Ĥ and S per frame."""
    return _figure(budget_spec(budgets, saliency, weights, mean_entropy, mean_score, b_min, b_max, timestamps))


def budget_spec(budgets: np.ndarray, saliency: np.ndarray, weights: np.ndarray, mean_entropy: np.ndarray,
                mean_score: np.ndarray, b_min: int, b_max: int,
                timestamps: Sequence[float] | np.ndarray | None = None) -> dict:
    """The budget chart as a plain plotly figure dict (see budget_chart)."""
    t = len(budgets)
    x = [f"F{f}" for f in range(t)]
    clamp = ["at B_min" if b <= b_min else "at B_max" if b >= b_max else "" for b in budgets]
    when = [f"{s:.2f} s" for s in timestamps] if timestamps is not None else [""] * t

    def line(y: np.ndarray, name: str, colour: str, **kw: object) -> dict:
        return dict(type="scatter", x=x, y=y, name=name, line=dict(color=colour, **kw), yaxis="y2",
                    mode="lines" if kw else "lines+markers")

    bar = dict(type="bar", x=x, y=budgets, name="budget B_f", marker=dict(color="#4c78a8"),
               customdata=np.stack([saliency, weights, clamp, when], axis=1),
               hovertemplate="%{x} %{customdata[3]}<br>B_f = %{y}<br>saliency S̄_f = %{customdata[0]:.4f}"
                             "<br>weight w_f = %{customdata[1]:.4f}<br>%{customdata[2]}<extra></extra>")
    return dict(
        data=[bar, line(mean_entropy, "mean entropy Ĥ", "#e45756"), line(mean_score, "mean score S", "#f58518"),
              line(saliency, "saliency S̄_f (top-q mean)", "#54a24b", dash="dot")],
        layout=dict(yaxis=dict(title=dict(text="tokens kept")),
                    yaxis2=dict(title=dict(text="map value"), overlaying="y", side="right", range=[0, 1.05],
                                showgrid=False),
                    title=dict(text=f"Frame budgets (sum {int(np.sum(budgets))}; B_min {b_min}, B_max {b_max})"),
                    height=340, margin=dict(l=50, r=50, t=50, b=30), legend=dict(orientation="h", y=-0.15)))


def empty_chart(text: str, height: int = 340) -> go.Figure:
    """A chart with no data and `text` in its middle: the page shows it before a video is analysed, so the browser
    loads its plotting code with the page rather than on the first result."""
    return _figure(dict(data=[], layout=dict(
        height=height, margin=dict(l=50, r=50, t=50, b=30), xaxis=dict(visible=False), yaxis=dict(visible=False),
        annotations=[dict(text=text, showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5,
                          font=dict(size=14, color="#888"))])))


@functools.lru_cache(maxsize=4)
def _template(name: str) -> dict:
    return pio.templates[name].to_plotly_json()


def _figure(spec: dict) -> go.Figure:
    """A Figure from a dict without plotly's per-property validation and with the default template read once
    (a fresh figure copies and checks the template every time): the budget chart, redrawn on every slider
    move, takes ~2 ms instead of ~17 on a 2-core CPU. Tests check that the validated figure is the same."""
    layout = spec.get("layout", {})
    if "template" not in layout and isinstance(pio.templates.default, str):
        spec = {**spec, "layout": {**layout, "template": _template(pio.templates.default)}}
    try:
        return go.Figure(spec, _validate=False)
    except TypeError:  # a plotly without the private switch: validated, same figure
        return go.Figure(spec)


def latency_chart(rows: Sequence[dict], note: str = "") -> go.Figure:
    """rows: {'retention', 'median_ms', 'min_ms', 'max_ms', 'kept'} measured on the cached features; `note` goes
    under the title (e.g. retentions that were left out)."""
    r = [row["retention"] for row in rows]
    med = [row["median_ms"] for row in rows]
    fig = go.Figure()
    fig.add_scatter(
        x=r, y=med, mode="lines+markers", name="median",
        error_y=dict(type="data", symmetric=False, array=[row["max_ms"] - row["median_ms"] for row in rows],
                     arrayminus=[row["median_ms"] - row["min_ms"] for row in rows]),
        customdata=[row["kept"] for row in rows],
        hovertemplate="retention %{x}<br>%{y:.1f} ms<br>%{customdata} tokens kept<extra></extra>",
    )
    spread = max(med) / max(min(med), 1e-9)
    title = f"Selection latency vs retention (max/min of medians {spread:.2f})"
    fig.update_layout(title=title + (f"<br><sup>{note}</sup>" if note else ""),
                      xaxis_title="retention r", yaxis_title="ms", height=300, yaxis_rangemode="tozero",
                      margin=dict(l=50, r=20, t=50, b=40))
    return fig


def sweep_chart(rows: Sequence[dict]) -> go.Figure:
    """rows: {'method', 'retention', 'coverage', 'ms'} (selector.compare.__main__.rows_for): coverage (solid, left
    axis) and time (dotted, right axis, log) against retention, one colour per method."""
    fig = go.Figure()
    methods = list(dict.fromkeys(row["method"] for row in rows))
    colours = pio.templates["plotly"].layout.colorway
    for i, name in enumerate(methods):
        mine = [row for row in rows if row["method"] == name]
        c = colours[i % len(colours)]
        fig.add_scatter(x=[row["retention"] for row in mine], y=[row["coverage"] for row in mine], name=name,
                        mode="lines+markers", line=dict(color=c), legendgroup=name)
        fig.add_scatter(x=[row["retention"] for row in mine], y=[row["ms"] for row in mine], name=f"{name} ms",
                        mode="lines+markers", line=dict(color=c, dash="dot"), yaxis="y2", legendgroup=name,
                        showlegend=False)
    fig.update_layout(title="Coverage (solid) and time (dotted) against retention<br><sup>coverage: mean over all "
                            "tokens of the best cosine similarity to a kept row — a proxy, not accuracy</sup>",
                      xaxis_title="retention r", yaxis=dict(title="coverage"),
                      yaxis2=dict(title="ms", overlaying="y", side="right", type="log"), height=440,
                      # the legend below the plot: on the right it would cover the time axis' tick labels
                      legend=dict(orientation="h", yanchor="top", y=-0.18, xanchor="left", x=0),
                      margin=dict(l=50, r=60, t=60, b=40))
    return fig


def frame_rows_chart(rows: Sequence[dict]) -> go.Figure:
    """rows: {'method', 'frame_rows'} (selector.compare.result_row): the rows each method keeps in each frame, one
    line per method (ENTROPY-SELECT's is its frame budgets b_t), so the spreads compare at a glance: a method that
    keeps whole frames shows peaks, one that spreads a flat line."""
    fig = go.Figure()
    for row in rows:
        counts = row.get("frame_rows") or []
        fig.add_scatter(x=[f"F{i}" for i in range(len(counts))], y=counts, name=row["method"], mode="lines+markers")
    fig.update_layout(title="Rows kept per frame (a merged row counted at its anchor's frame)",
                      xaxis_title="frame", yaxis_title="rows kept", height=360,
                      legend=dict(orientation="h", yanchor="top", y=-0.2, xanchor="left", x=0),
                      margin=dict(l=50, r=20, t=50, b=40))
    return fig

"""Plotly charts: frame budgets and selection latency vs retention. No gradio here."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

__all__ = ["budget_chart", "latency_chart"]


def budget_chart(budgets: np.ndarray, saliency: np.ndarray, weights: np.ndarray, mean_entropy: np.ndarray,
                 mean_score: np.ndarray, b_min: int, b_max: int,
                 timestamps: Sequence[float] | np.ndarray | None = None) -> go.Figure:
    """Bars: tokens per frame B_f (hover: saliency S̄_f, weight w_f, clamp); lines: mean Ĥ and S per frame."""
    t = len(budgets)
    x = [f"F{f}" for f in range(t)]
    clamp = ["at B_min" if b <= b_min else "at B_max" if b >= b_max else "" for b in budgets]
    when = [f"{s:.2f} s" for s in timestamps] if timestamps is not None else [""] * t
    fig = go.Figure()
    fig.add_bar(
        x=x, y=budgets, name="budget B_f", marker_color="#4c78a8",
        customdata=np.stack([saliency, weights, clamp, when], axis=1),
        hovertemplate="%{x} %{customdata[3]}<br>B_f = %{y}<br>saliency S̄_f = %{customdata[0]:.4f}"
                      "<br>weight w_f = %{customdata[1]:.4f}<br>%{customdata[2]}<extra></extra>",
    )
    fig.add_scatter(x=x, y=mean_entropy, name="mean entropy Ĥ", mode="lines+markers", line_color="#e45756",
                    yaxis="y2")
    fig.add_scatter(x=x, y=mean_score, name="mean score S", mode="lines+markers", line_color="#f58518",
                    yaxis="y2")
    fig.add_scatter(x=x, y=saliency, name="saliency S̄_f (top-q mean)", mode="lines", line_dash="dot",
                    line_color="#54a24b", yaxis="y2")
    fig.update_layout(
        yaxis=dict(title="tokens kept"),
        yaxis2=dict(title="map value", overlaying="y", side="right", range=[0, 1.05], showgrid=False),
title=f"Frame budgets (sum {int(np.sum(budgets))}; B_min {b_min}, B_max {b_max})",
                      height=340, margin=dict(l=50, r=50, t=50, b=30), legend=dict(orientation="h", y=-0.15))
    return fig


def latency_chart(rows: Sequence[dict]) -> go.Figure:
    """rows: {'retention', 'median_ms', 'min_ms', 'max_ms', 'kept'} measured on the cached features."""
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
    fig.update_layout(title=f"Selection latency vs retention (max/min of medians {spread:.2f})",
                      xaxis_title="retention r", yaxis_title="ms", height=300, yaxis_rangemode="tozero",
                      margin=dict(l=50, r=20, t=50, b=40))
    return fig

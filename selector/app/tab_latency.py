"""Selection latency against retention."""

from __future__ import annotations

from typing import Any

import gradio as gr

from .service import RETENTIONS, latency_rows


class LatencyTab:
    """A part of `Explorer` (it reads and fills the page's components in `self.c`): the handlers,
    layout and events of this tab."""

    def _latency(self, *ui: Any) -> dict:
        from viz import latency_chart

        a = self.analysis(self.page_values(ui))
        if a is None:
            raise gr.Error("Upload a video or pick an example first.")
        rows = latency_rows(a.features, a.params.config())
        left_out = [r for r in RETENTIONS if r not in {row["retention"] for row in rows}]
        note = (f"retention {', '.join(map(str, left_out))} left out: more tokens than B_max = "
                f"{a.params.max_tokens} a frame allows" if left_out else "")
        return {self.c["lat_plot"]: latency_chart(rows, note)}

    def _layout_latency(self) -> None:
        self.c["lat_btn"] = gr.Button("Measure selection latency vs retention")
        self.c["lat_plot"] = gr.Plot(label="Latency")

    def _wire_latency(self, ui_inputs: list) -> None:
        c = self.c
        c["lat_btn"].click(self.latency, ui_inputs, c["lat_plot"], api_visibility="private", concurrency_id="compute")

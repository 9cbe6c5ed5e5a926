"""One frame in detail: its maps and kept tokens."""

from __future__ import annotations

from typing import Any

import gradio as gr

from .page import DEFAULT_FRAMES


class FrameTab:
    """A part of `Explorer` (it reads and fills the page's components in `self.c`): the handlers,
    layout and events of this tab."""

    def _frame_view(self, *ui: Any) -> dict:
        from viz import render_frame

        *ui, shown = ui
        u = self.on_page(tuple(ui), shown)
        a = self.analysis(u)
        if a is None:
            return {self.c["frame_img"]: None}
        frames = a.features.clip.frames
        i = min(max(int(u["frame_index"] or 0), 0), len(frames) - 1)
        img = render_frame(frames[i], a.selection, i, bool(u["stretch"]))
        return {self.c["frame_img"]: self.out.image(self.out.folder(), f"frame-{i}", img)}

    def _layout_frame(self) -> None:
        self.c["frame_index"] = gr.Slider(0, DEFAULT_FRAMES - 1, 0, step=1, label="Frame", elem_id="frame-index")
        self.c["frame_img"] = gr.Image(label="One frame: maps and kept tokens", type="filepath", show_label=False,
                                       elem_id="frame-img")

    def _wire_frame(self, ui_inputs: list) -> None:
        c = self.c
        c["frame_index"].release(self.frame_view, [*ui_inputs, c["shown"]], c["frame_img"], api_visibility="private",
                                 concurrency_id="compute")

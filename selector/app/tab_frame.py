"""One frame in detail: its maps and kept tokens."""

from __future__ import annotations

from typing import Any

import gradio as gr

from .page import DEFAULT_FRAMES


class FrameTab:
    """A part of `Explorer` (it reads and fills the page's components in `self.c`): the handlers,
    layout and events of this tab."""

    def _frame_view(self, *ui: Any) -> dict:
        """The frame view of the page's values; nothing is drawn or sent when it already shows them (`drawn`: the
        values it was drawn from, e.g. after an example click, whose video box change follows with the same)."""
        from viz import render_frame

        drawn = ui[-1] if len(ui) == len(self.ui_fields) + 2 else None  # a script may leave the state out
        *ui, shown = ui[: len(self.ui_fields) + 1]
        u = self.on_page(tuple(ui), shown)
        c, key = self.c, repr(sorted(u.items()))
        if key == drawn:
            return {c["frame_img"]: gr.skip(), c["frame_drawn"]: gr.skip()}
        a = self.analysis(u)
        if a is None:
            return {c["frame_img"]: None, c["frame_drawn"]: None}
        frames = a.features.clip.frames
        i = min(max(int(u["frame_index"] or 0), 0), len(frames) - 1)
        img = render_frame(frames[i], a.selection, i, bool(u["stretch"]))
        return {c["frame_img"]: self.out.image(self.out.folder(), f"frame-{i}", img), c["frame_drawn"]: key}

    def _layout_frame(self) -> None:
        self.c["frame_index"] = gr.Slider(0, DEFAULT_FRAMES - 1, 0, step=1, label="Frame", elem_id="frame-index")
        self.c["frame_img"] = gr.Image(label="One frame: maps and kept tokens", type="filepath", show_label=False,
                                       elem_id="frame-img")
        self.c["frame_drawn"] = gr.State(None)  # the page values the frame view shows (see _frame_view)

    def _wire_frame(self, ui_inputs: list) -> None:
        c = self.c
        c["frame_index"].release(self.frame_view, [*ui_inputs, c["shown"], c["frame_drawn"]],
                                 [c["frame_img"], c["frame_drawn"]], api_visibility="private", concurrency_id="compute")

"""The download files of the selection the views show."""

from __future__ import annotations

from typing import Any

import gradio as gr


class DownloadsTab:
    """A part of `Explorer` (it reads and fills the page's components in `self.c`): the handlers,
    layout and events of this tab."""

    def _downloads(self, *ui: Any) -> dict:
        """Download files for the selection the views show, written when the Downloads tab is opened; while it is
        open, the page's path writes them with every new view (closed, it clears them: they cost ~0.2 s of CPU
        that the views need more)."""
        *ui, shown = ui
        a = self.analysis(self.on_page(tuple(ui), shown))
        if a is None:
            return {self.c["json_file"]: None, self.c["npz_file"]: None}
        j, n = self.downloads_of(a)
        return {self.c["json_file"]: j, self.c["npz_file"]: n}

    def _layout_downloads(self) -> None:
        c = self.c
        c["json_file"] = gr.File(label="Selection (JSON)", elem_id="json-file")
        c["npz_file"] = gr.File(label="Selection (NPZ)", elem_id="npz-file")
        c["summary"] = gr.JSON(label="Summary")

    def _wire_downloads(self, ui_inputs: list, downloads_open: Any) -> None:
        """Opening the tab writes the files of the views on the page; while it is open the page's path writes
        them with every new view (`downloads_open`), any other tab closes it."""
        c = self.c
        self.tabs["downloads"].select(lambda: True, None, downloads_open, api_visibility="private", queue=False).then(
            self.downloads, [*ui_inputs, c["shown"]], [c["json_file"], c["npz_file"]], api_visibility="private",
            concurrency_id="compute")
        for name, tab in self.tabs.items():
            if name != "downloads":
                tab.select(lambda: False, None, downloads_open, api_visibility="private", queue=False)

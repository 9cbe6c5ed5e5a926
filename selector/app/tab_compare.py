"""Compare: other methods at the same retention, their sweep and their answers."""

from __future__ import annotations

import inspect
from typing import Any

import gradio as gr

from .. import SelectorError
from ..compare import DEFAULT_METHODS, METHODS, compress, parse_methods, result_row, rows_for
from ..export import finite
from ..video import read_clip
from ..vlm import known_vlms, load_vlm
from .service import Analysis
from .zerogpu import answer_seconds

#: the Compare tab's table columns (the /compare JSON's keys)
TABLE = ("method", "tokens_kept", "merged", "coverage", "frames_covered", "cells_covered", "ms")


#: the /analyze outputs, in the order clients receive them (`out[6]` is the summary)
#: retentions of the Compare tab's sweep
SWEEP = (0.05, 0.1, 0.25, 0.5, 0.9)


def compare_answers_seconds(model: Any = "", methods: Any = "", num_frames: Any = 16) -> int:
    """GPU seconds of the Compare tab's answers: the full answer and one per method."""
    return answer_seconds(num_frames, 64, model, 1 + max(1, len(str(methods or "x").split(","))))


def frame_rows_plot(rows: Any) -> Any:
    """The Compare tab's chart of the rows each method keeps per frame (from the /compare JSON)."""
    from viz import frame_rows_chart

    return frame_rows_chart(rows or []) if rows else None


def table_rows(rows: Any) -> list[list[Any]]:
    return [[row.get(k) for k in TABLE] for row in rows or []]


class CompareTab:
    """A part of `Explorer` (it reads and fills the page's components in `self.c`): the handlers,
    layout and events of this tab."""

    @staticmethod
    def _method_names(methods: Any) -> list[str]:
        """Method names from a comma-separated string (or a list); SelectorError names unknown ones."""
        if not isinstance(methods, (str, list, tuple)):
            raise SelectorError("methods must be a comma-separated list of method names")
        try:
            return parse_methods(methods if isinstance(methods, str) else ",".join(map(str, methods)))
        except ValueError as e:
            raise SelectorError(str(e)) from None

    def _compare_inputs(self, v: dict, progress: Any = None) -> tuple[Analysis, list[str]]:
        """The (cached) analysis of the video with the page's defaults for the knobs, and the methods asked for."""
        names = self._method_names(v.get("methods"))
        p = self.params(v)
        a = self.service.analyze(self.uploaded(v["video"]), p,
                                 progress=None if progress is None else (lambda f, msg: progress(f, desc=msg)))
        return a, names

    def _compare(self, v: dict, progress: Any) -> dict:
        from viz import compression_overlay, thumbnails

        a, names = self._compare_inputs(v, progress)
        tokens = a.features.tokens
        thumbs = self.service.thumbnails(a.features, thumbnails)
        folder = self.out.folder()
        gallery, table = [], []
        for i, name in enumerate(names):
            progress(i / len(names), desc=f"{name} at r = {a.params.retention:g}")
            c = compress(name, tokens, a.params.retention)
            row = result_row(tokens, c)
            img = compression_overlay(thumbs, c.grid, c.positions.cpu().numpy(), c.merged.cpu().numpy(),
                                      f"{name}: {c.num_tokens:,} rows, coverage {row['coverage']:.3f}")
            gallery.append((self.out.image(folder, f"compare-{i}-{name}", img), name))
            table.append(row)
        return {self.c["compare_gallery"]: gallery, self.c["compare_json"]: finite(table)}

    def _compare_answers(self, video: Any, question: Any, retention: Any, model: Any, methods: Any, num_frames: Any,
                         progress: Any = None) -> dict:
        """The Compare tab's methods answering through the connected VLM (the Ask tab's model and question)."""
        names = self._method_names(methods)
        p = self.params({"retention": retention, "num_frames": num_frames, "encoder": None})
        if not isinstance(question, str) or not question.strip():
            raise SelectorError("write a question in the Ask tab first")
        default = self.settings.vlm
        name = self.allowed("model", (model or default).strip() if isinstance(model, str) else default,
                            {default, *known_vlms()})
        vlm = load_vlm(name)
        clip = read_clip(self.uploaded(video), min(p.num_frames, self.service.max_frames))
        rows = vlm.compare_methods(clip.frames, question, p.retention, names, max_new_tokens=32,
                                   timestamps=clip.timestamps)
        return {self.c["compare_answers"]: finite(rows)}

    def compare_if_shown(self, on: bool, *inputs: Any) -> dict:
        """The Compare tab's methods again at a new retention, once the tab has shown results (features cached)."""
        return self.compare_page(*inputs) if on else gr.skip()

    def _sweep(self, video: Any, methods: Any, num_frames: Any, encoder: Any,
               progress: Any = gr.Progress()) -> dict:  # noqa: B008 (gradio fills in a parameter with this default)
        """Coverage and time of each method at every retention of SWEEP; the progress bar names the method."""
        from viz import sweep_chart

        a, names = self._compare_inputs({"video": video, "methods": methods, "retention": 0.35,
                                       "num_frames": num_frames, "encoder": encoder})
        rows: list[dict] = []
        for i, name in enumerate(names):
            progress(i / len(names), desc=f"{name} ({i + 1} of {len(names)} methods) at r = "
                                          f"{', '.join(map(str, SWEEP))}")
            rows += rows_for(a.features.tokens, [name], list(SWEEP))
        rows.sort(key=lambda row: row["retention"])  # rows_for's order: by retention, then method
        return {self.c["sweep_plot"]: sweep_chart(rows)}

    def _layout_compare(self) -> None:
        c = self.c
        gr.Markdown("Other methods at the retention on the left, on the same features: EVS (what vLLM and SGLang "
                    "ship) and HoliTom's merging among them. **Coverage** = mean over all tokens of the best cosine "
                    "similarity to a kept row: a proxy for what the rows still represent, not accuracy. **Rows kept "
                    "per frame** shows how each method spreads its budget over the frames (ENTROPY-SELECT's b_t).")
        c["methods"] = gr.CheckboxGroup(list(METHODS), value=list(DEFAULT_METHODS), label="Methods")
        with gr.Row():
            c["compare_btn"] = gr.Button("Compare", variant="primary", elem_id="compare-btn")
            c["sweep_btn"] = gr.Button("Sweep retention 0.05–0.9", elem_id="sweep-btn")
            c["answers_btn"] = gr.Button("Answer with each method (the Ask tab's model)")
        # the sweep's chart right under its button: its progress shows where the user looks
        c["sweep_plot"] = gr.Plot(label="Coverage and time against retention", elem_id="sweep")
        c["compare_table"] = gr.Dataframe(headers=list(TABLE), label="Methods at this retention", interactive=False,
                                          elem_id="compare-table")
        c["frame_rows_plot"] = gr.Plot(label="Rows kept per frame, per method", elem_id="frame-rows")
        c["compare_json"] = gr.JSON(label="Methods at this retention (JSON)")
        gr.Markdown("**Kept tokens per method**")
        c["compare_gallery"] = gr.Gallery(label="Kept tokens per method", columns=1, height="auto", show_label=False,
                                          elem_id="compare-gallery",
                                          object_fit="contain")  # each overlay whole, at any page width
        c["compare_answers"] = gr.JSON(label="Answers: KL of the first token from the full answer's, same answer, "
                                             "time to first token")

    def _wire_compare(self, api: dict) -> None:
        c, s = self.c, self.settings
        compare_inputs = [api[n] for n in inspect.signature(self.compare_endpoint).parameters if n != "progress"]
        compare_outputs = [c["compare_gallery"], c["compare_json"]]
        c["methods"].change(lambda m: ",".join(m), c["methods"], api["methods"], api_visibility="private",
                            queue=False)
        c["compare_btn"].click(self.compare_page, compare_inputs, compare_outputs, api_visibility="private",
                               concurrency_limit=s.concurrency, concurrency_id="compute", time_limit=s.time_limit
                               ).then(lambda: True, None, c["compare_on"], api_visibility="private", queue=False)
        c["compare_json"].change(table_rows, c["compare_json"], c["compare_table"], api_visibility="private",
                                 queue=False)
        c["compare_json"].change(frame_rows_plot, c["compare_json"], c["frame_rows_plot"], api_visibility="private",
                                 queue=False)
        c["retention"].release(self.compare_if_shown, [c["compare_on"], *compare_inputs], compare_outputs,
                               api_visibility="private", concurrency_id="compute", show_progress="hidden")
        c["sweep_btn"].click(self.sweep, [c["video"], api["methods"], c["num_frames"], c["encoder"]],
                             c["sweep_plot"], api_visibility="private", concurrency_id="compute",
                             show_progress="full")
        c["answers_btn"].click(self.compare_answers, [c["video"], c["question"], c["retention"], c["model"],
                                                      api["methods"], c["num_frames"]], c["compare_answers"],
                               api_visibility="private", concurrency_limit=1, concurrency_id="vlm",
                               time_limit=s.time_limit)

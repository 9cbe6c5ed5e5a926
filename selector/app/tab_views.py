"""The analysis views and the page's path: settings on the left, the views, the budget chart, examples."""

from __future__ import annotations

import math
import threading
import time
from typing import Any

import gradio as gr

from .. import SelectorConfig, SelectorError
from ..config import Knob
from ..encoders import EncoderError
from ..export import finite, to_json, to_npz
from ..limits import TimeLimitError
from ..method.pipeline import MAP_FIELDS
from ..video import VideoError, describe
from .page import DEFAULT_FRAMES, EXAMPLES, START, STRETCH, VIEWS, examples_as_they_are, lasting, log
from .service import Analysis


class ViewsTab:
    """A part of `Explorer` (it reads and fills the page's components in `self.c`): the handlers,
    layout and events of this tab."""

    def _map_keys(self, a: Analysis, stretch: bool) -> dict[str, tuple]:
        """What the map images depend on: the entropy and gradient stay the same when only r, α, ρ or g move, the
        score S = αĤ + (1-α)Ĝ when only r, ρ, g or grid fusion move."""
        base = (a.features.digest, a.features.encoder, a.params.num_frames, stretch)
        entropy = (*base, *(getattr(a.params, f) for f in MAP_FIELDS))
        return {"entropy": entropy, "gradient": base,
                "score": (*entropy, a.params.alpha, getattr(a.params, "invert_entropy", False))}

    def views(self, video: str, p: Any, stretch: bool, progress: Any = None, files: bool = True,
              shown: dict | None = None, sent: dict | None = None) -> dict:
        """Analysis + views, keyed by component. `shown` (page events only) holds the keys of the maps the page
        already shows (and the video and settings they are of): those are neither redrawn nor re-sent, and settings
        the selector refuses for the video on the page keep its views (see `refused`; `sent` is what the page's
        inputs said). `files`: write the download files; on the page without it, the files on the page are
        cleared, so a download always matches the views."""
        from viz import render_views, summary_markdown, thumbnails

        video = self.uploaded(video)
        report = None if progress is None else (lambda f, msg: progress(f, desc=msg))
        try:
            a = self.service.analyze(video, p, progress=report)
        except (SelectorError, EncoderError, TimeLimitError) as e:  # settings (or the encoder) refused: not the video
            if shown is not None:
                return self.refused(e, video, shown, sent or {})
            raise
        except VideoError as e:
            if shown is not None:  # the page: the box goes back to its upload area, the sentence says why
                return self.unreadable(e)
            raise
        if not a.features.from_cache or any(getattr(n, "kind", "") == "capped" for n in a.notes):
            for note in a.notes:
                gr.Warning(note)
        keys = self._map_keys(a, stretch)
        keys["page"] = (a.features.digest, a.features.encoder, a.params, stretch)
        if shown is not None and shown.get("page") == keys["page"]:
            # the page shows these very views (a repeated event: a box left unchanged, the video box's echo of an
            # example; the same content under another path): nothing is redrawn or sent
            return gr.skip() if shown.get("video") == video else {self.c["shown"]: {**shown, "video": video}}
        skip = frozenset(k for k, v in keys.items() if k != "page" and shown is not None and shown.get(k) == v)
        v = render_views(self.service.thumbnails(a.features, thumbnails), a.selection, stretch,
                         a.features.clip.timestamps, skip)
        summary = a.summary()
        summary["render_ms"] = round(v.render_ms, 1)
        summary["video"] = describe(a.features.clip)
        folder = self.out.folder()
        c = self.c
        out = {c["summary_md"]: summary_markdown(summary, [*lasting(a.notes), *v.notes]), c["budgets"]: v.budgets,
               c["summary"]: finite(summary), c["overlay"]: self.out.image(folder, "overlay", v.overlay)}
        for name in ("entropy", "gradient", "score"):
            img = getattr(v, name)
            if img is not None:
                out[c[name]] = self.out.image(folder, name, img)
        if files:
            out[c["json_file"]], out[c["npz_file"]] = self.downloads_of(a)
        if shown is not None:
            if not files:
                out[c["json_file"]] = out[c["npz_file"]] = None
            t = int(a.selection.grid_shape[0])
            frame = sent.get("frame_index") if sent else None
            frame = frame if isinstance(frame, (int, float)) and math.isfinite(frame) else 0
            out[c["frame_index"]] = gr.update(maximum=max(t - 1, 1), value=int(min(max(frame, 0), t - 1)),
                                              interactive=t > 1)
            if shown.get("video") != video and (preview := self.preview(video, a)) is not None:
                out[c["video"]] = preview
            out[c["shown"]] = {**keys, "video": video, "applied": self.page_of(p, stretch)}
        return out

    def page_of(self, p: Any, stretch: bool) -> dict[str, Any]:
        """The page's input values that show the settings `p` (log-scale knobs as their exponent, no cap as 0)."""
        vals: dict[str, Any] = {"retention": p.retention, "num_frames": p.num_frames, "stretch": stretch}
        for n, k in self.knobs.items():
            v = getattr(p, n)
            vals[n] = round(math.log10(v), 6) if k.log else (0 if v is None and k.optional else v)
        return vals

    def refused(self, e: Exception, video: str, shown: dict, sent: dict) -> dict:
        """The page's answer to settings the selector refuses (B_max too small for r, B_max < B_min …): the views
        on the page stay, the summary says that the new settings were not applied and why, and each input goes
        back to the value those views use; with no views of this video on the page, the sentence alone."""
        gr.Warning(f"Not applied: {e}")
        if not shown or shown.get("video") != video:
            return {self.c["summary_md"]: f"⚠️ **Not applied:** {e}. Change the settings named here to go on.",
                    self.c["shown"]: {"video": video}}
        out: dict[Any, Any] = {
            self.c["summary_md"]: f"⚠️ **Not applied:** {e}. The views below and the settings on the left are back "
                                  "to the last ones that worked.",
            # the summary no longer matches those settings: going back to them redraws it
            self.c["shown"]: {k: v for k, v in shown.items() if k != "page"}}
        for name, value in shown.get("applied", {}).items():
            if sent.get(name) != value:
                out[self.c[name]] = value
        return out

    def unreadable(self, e: Exception) -> dict:
        """The page's answer to a video that cannot be read: the page's first state (no views of another clip),
        the video box empty for the next upload, and the sentence saying why."""
        gr.Warning(str(e))
        return {**self.first_state(), self.c["video"]: None,
                self.c["summary_md"]: f"⚠️ **This video could not be analysed:** {e}",
                self.c["shown"]: {"error": str(e)}}

    def first_state(self) -> dict:
        """The views as a new page shows them (no video)."""
        from viz import empty_chart

        c = self.c
        out: dict[Any, Any] = {c[n]: None for n in ("overlay", "entropy", "gradient", "score", "summary", "json_file",
                                                     "npz_file")}
        out.update({c["summary_md"]: START, c["budgets"]: empty_chart("Frame budgets: pick an example or upload a "
                                                                      "video"),
                    c["frame_index"]: gr.update(value=0, maximum=max(DEFAULT_FRAMES - 1, 1), interactive=True),
                    c["shown"]: {}})
        return out

    def reset(self) -> dict:
        """The × of the video box: the whole page back to its first state, the other tabs' results too."""
        c = self.c
        cleared = ("frame_img", "lat_plot", "compare_gallery", "compare_json", "compare_table", "frame_rows_plot",
                   "sweep_plot", "compare_answers", "ask_json")
        return {**self.first_state(), **{c[n]: None for n in cleared + ("frame_drawn",)}, c["full_md"]: "",
                c["comp_md"]: "",
                c["compare_on"]: False}

    def downloads_of(self, a: Analysis) -> tuple[str, str]:
        folder = self.out.folder()
        stem = f"selection-{a.features.digest[:10]}"
        extra = {"encoder": a.features.encoder, "video_digest": a.features.digest}
        return (self.out.write(folder, f"{stem}.json", lambda p: to_json(a.selection, p, extra)),
                self.out.write(folder, f"{stem}.npz", lambda p: to_npz(a.selection, p, extra)))

    def _analyze(self, v: dict, progress: Any) -> dict:
        p = self.params(v)
        return self.views(v["video"], p, bool(v["stretch"]), progress)

    def _ui_run(self, v: dict, progress: Any) -> dict:
        """The page's path (a slider released, a field left or submitted, a box ticked, a new video, Analyze): the
        views, the download files when their tab is open, the frame slider's range; the frame view follows in a
        chained event. No video: the page's first state (or, after a video that could not be read, its sentence)."""
        shown = v.pop("shown") or {}
        downloads_open = bool(v.pop("downloads_open", False))
        if not v.get("video"):
            return gr.skip() if "error" in shown or not shown else self.first_state()
        u = self.page_values(tuple(v.values()))
        raw = {n.removeprefix("log_"): x for n, x in v.items()}  # the inputs as the page holds them
        video = self.uploaded(u["video"])
        try:
            for n, k in self.knobs.items():
                if k.ui == "number" and u.get(n) is None:  # an empty or unreadable field, not "no cap"
                    raise SelectorError(f"{n} needs a number ({k.label})")
            p = self.params(u)
        except SelectorError as e:
            return self.refused(e, video, shown, raw)
        return self.views(video, p, bool(u["stretch"]), progress, files=downloads_open, shown=shown, sent=raw)

    def _example_run(self, v: dict, progress: Any) -> dict:
        """A click on an example: the clip goes into the video box and its views come in the same answer (one
        round trip; the examples are warmed at start-up, so this is a cache lookup and the drawing). The video box's
        change event that follows finds these views on the page and sends nothing."""
        index = v.pop("example").index  # a gallery's select event gives the tile's position
        if not isinstance(index, int) or not 0 <= index < len(EXAMPLES):
            raise gr.Error("No such example.")
        v["video"] = str(EXAMPLES[index][0])
        out = self._ui_run(v, progress)
        return {self.c["video"]: v["video"], **(out if isinstance(out, dict) and out != gr.skip() else {})}

    def warm(self) -> threading.Thread | None:
        """Decode, encode and select the example clips with the page's defaults, and draw their views, in a
        background thread, so a visitor's first click on one is served from the caches (start-up itself does not
        wait)."""
        if not EXAMPLES:
            return None

        def run() -> None:
            t0 = time.perf_counter()
            for clip, _, _ in EXAMPLES:
                try:  # the click's own path once: analysis, thumbnails, drawing, the files and the chart's JSON
                    out = self.views(str(clip), self.Params(), STRETCH, files=False, shown={})
                    self.c["budgets"].postprocess(out[self.c["budgets"]])
                except Exception:  # a warm-up that fails leaves the first click to do the work
                    log.exception("warming the example %s failed", clip.name)
            log.info("examples ready in %.1f s", time.perf_counter() - t0)

        t = threading.Thread(target=run, name="warm-example", daemon=True)
        t.start()
        return t

    # ---- layout and events ------------------------------------------------------------------------------------

    def _knob_input(self, k: Knob, d: SelectorConfig) -> Any:
        value = getattr(d, k.name)
        if k.ui == "checkbox":
            return gr.Checkbox(value, label=k.label, info=k.help)
        if k.ui == "number":
            return gr.Number(0 if value is None else value, label=k.label, info=k.help,
                             precision=0 if k.kind == "int" else None)
        if k.log:
            assert k.ui_low is not None and k.ui_high is not None
            return gr.Slider(round(math.log10(k.ui_low), 2), round(math.log10(k.ui_high), 2), math.log10(value),
                             step=k.step, label=k.label, info=k.help)
        lo = k.low if k.ui_low is None else k.ui_low
        hi = k.high if k.ui_high is None else k.ui_high
        return gr.Slider(lo, hi, value, step=k.step, label=k.label, info=k.help)

    def _layout_settings(self) -> None:
        """The left column: the video box, the examples, every setting (generated from the knob table), Analyze."""
        c, d, ks = self.c, self.config_cls(), list(self.knobs.values())
        c["video"] = examples_as_they_are(gr.Video(label="Video", sources=["upload"], height=260,
                                                   elem_id="video-box"), self.is_preview)
        if EXAMPLES:
            c["examples"] = gr.Gallery([(str(t), cap) for _, t, cap in EXAMPLES], label="Examples: click one "
                                       "(Big Buck Bunny, CC-BY 3.0)", columns=len(EXAMPLES), rows=1, height=130,
                                       allow_preview=False, object_fit="cover", elem_id="examples", buttons=[])
        c["retention"] = gr.Slider(0.01, 1.0, 0.35, step=0.01, label="Retention r (fraction of tokens kept)")
        for k in ks:
            if k.section == "main" and k.ui != "number":
                c[k.name] = self._knob_input(k, d)
                if k.log:
                    c[k.name + "_text"] = gr.Markdown(f"{k.name} = {getattr(d, k.name):g}")
        with gr.Accordion("Windows, grid, frames, encoder", open=True, elem_classes="settings-acc"):
            for k in ks:
                if k.section != "main" and k.ui != "number":
                    c[k.name] = self._knob_input(k, d)
            c["num_frames"] = gr.Slider(4, self.service.max_frames, DEFAULT_FRAMES, step=1, label="Frames sampled")
            c["encoder"] = gr.Dropdown(self.encoder_choices(), value=self.settings.encoder, allow_custom_value=True,
                                       label="Encoder (offline: dinov2-s, efficientnet-lite0; others need the hub)")
        with gr.Accordion("Frame budgets: q, τ_alloc, B_min, B_max", open=False, elem_classes="settings-acc"):
            for k in ks:
                if k.ui == "number":
                    c[k.name] = self._knob_input(k, d)
        c["stretch"] = gr.Checkbox(STRETCH, label="Stretch colours to each map's own range (read flat maps; off: one "
                                                  "fixed [0, 1] scale)")
        c["run"] = gr.Button("Analyze", variant="primary")

    def _layout_maps(self) -> None:
        """The tabs of the kept-token overlay and the three maps."""
        c = self.c
        for tab, name, label in (("Kept tokens", "overlay", "Kept-token overlay"),
                                 ("Entropy Ĥ", "entropy", "Entropy heatmaps"),
                                 ("Gradient Ĝ", "gradient", "Gradient heatmaps"),
                                 ("Score S", "score", "Fused score heatmaps")):
            with gr.Tab(tab) as self.tabs[name]:
                c[name] = gr.Image(label=label, type="filepath", show_label=False,
                                   elem_id="overlay" if name == "overlay" else None)

    def _wire_views(self, ui_inputs: list, downloads_open: Any) -> None:
        """The page's path: every setting, the video box, Analyze and the examples run `ui_run` (then the frame
        view); the video box's × resets the page."""
        c, s, ks = self.c, self.settings, list(self.knobs.values())
        views = [c[n] for n in VIEWS]
        settings = [c["retention"], c["num_frames"], c["stretch"], *[c[k.name] for k in ks]]
        page_outputs = [c["video"], *views, c["frame_index"], *settings, c["shown"]]
        shown_on = [c[n] for n in VIEWS if n not in ("json_file", "npz_file", "summary")]  # progress only here
        triggers = [c["run"].click, c["video"].change, c["retention"].release, c["num_frames"].release,
                    c["encoder"].change, c["stretch"].change]
        for k in ks:
            comp = c[k.name]
            triggers += [comp.change] if k.ui == "checkbox" else [comp.submit, comp.blur] if k.ui == "number" \
                else [comp.release]
        frame = {"fn": self.frame_view, "inputs": [*ui_inputs, c["shown"], c["frame_drawn"]],
                 "outputs": [c["frame_img"], c["frame_drawn"]],
                 "api_visibility": "private", "show_progress": "hidden"}
        gr.on(triggers, self.ui_run, [*ui_inputs, c["shown"], downloads_open], page_outputs,
              api_visibility="private", concurrency_limit=s.concurrency, concurrency_id="compute",
              trigger_mode="always_last", time_limit=s.time_limit,
              # the runtime in a corner and gr.Progress's bar and text while they come, but no overlay on each
              # view: moves of τ reach the page sooner (docs/benchmarks.md)
              show_progress="minimal", show_progress_on=shown_on).then(**frame)
        if "examples" in c:
            c["examples"].select(self.example_run, [*ui_inputs, c["shown"], downloads_open], page_outputs,
                                 api_visibility="private", concurrency_limit=s.concurrency, concurrency_id="compute",
                                 time_limit=s.time_limit, show_progress="minimal", show_progress_on=shown_on
                                 ).then(**frame)
        # the × answers every component `reset` names (the page's views and the other tabs' results)
        c["video"].clear(self.reset, None, list(self.reset()), api_visibility="private", queue=False)

"""The web app: `create_demo()` builds the page from the knob table and wires its events.

`Explorer` holds what every tab shares (the service, the settings, the output files, the page's components in `c`,
the API endpoints, the rules for user input and errors); each tab is a module of its own that lays out its
components and wires its events (`tab_views`: the settings and the analysis views, the page's path; `tab_frame`,
`tab_latency`, `tab_ask`, `tab_compare`, `tab_downloads`). Handlers return dicts keyed by component, or gr.skip()
for "no change"; `Explorer.guard` turns the pipeline's user errors into the page's own sentences and enforces the
request time limit; every file handed out is written by `OutputFiles`. The pipeline is `service.Service`, the
pictures `viz`; the endpoints' signatures and API documentation are `api`, the page's shared pieces `page`.
"""

from __future__ import annotations

import functools
import inspect
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gradio as gr
import gradio.utils

from .. import SelectorConfig, SelectorError, hub
from ..compare import DEFAULT_METHODS
from ..config import Knob, knobs
from ..encoders import OFFLINE as OFFLINE_ENCODERS
from ..encoders import available_encoders, cpu_precision
from ..limits import time_limit
from ..lru import LRU
from ..video import browser_playable, write_preview
from ..vlm import known_vlms
from .api import ANALYZE_ORDER, ASK_ORDER, ordered, signature, with_signature
from .files import OutputFiles, sweep_gradio_cache
from .page import (
    EXAMPLES,
    FAMILY_LABELS,
    INTRO,
    ROOT,
    SAMPLE,
    START,
    STRETCH,
    USER_ERRORS,
    VIEWS,
    Blocks,
    no_change,
    show_log_value,
    user_error,
)
from .service import Analysis, Service, params_class
from .settings import Settings, current, model_key
from .tab_ask import AskTab
from .tab_compare import CompareTab, compare_answers_seconds
from .tab_downloads import DownloadsTab
from .tab_frame import FrameTab
from .tab_latency import LatencyTab
from .tab_views import ViewsTab
from .zerogpu import answer_seconds, by_signature, gpu_task

__all__ = ["Explorer", "create_demo", "launch", "EXAMPLES", "SAMPLE", "ROOT"]


class Explorer(ViewsTab, FrameTab, LatencyTab, AskTab, CompareTab, DownloadsTab):
    """The app's state and handlers: the service, the settings, the output files, the page's components (`c`),
    its tabs (`tabs`); each tab's handlers, layout and events come from its module."""

    def __init__(self, service: Service | None = None, settings: Settings | None = None,
                 config_cls: type = SelectorConfig) -> None:
        self.service = Service() if service is None else service  # each app its own caches
        self.settings = current() if settings is None else settings
        self.config_cls = config_cls
        self.knobs = {k.name: k for k in knobs(config_cls)}
        self.Params = params_class(config_cls)
        # every file handed out: written once, complete, private, under fresh names, kept output_ttl seconds
        self.out = OutputFiles(ttl=self.settings.output_ttl)
        #: previews the app made of videos a browser cannot play: file name → the upload it shows (handlers that
        #: receive the preview from the video box read the upload instead)
        self.previews = LRU(max_items=512)
        self._playable = LRU(max_items=512)  # real path → whether a browser plays it
        self.c: dict[str, Any] = {}  # the page's components by name
        self.tabs: dict[str, Any] = {}  # the page's tabs by name
        #: the page's inputs every UI handler takes, by name (the knobs with their page names)
        self.ui_fields = ("video", "retention", *[("log_" + n) if k.log else n for n, k in self.knobs.items()],
                          "num_frames", "encoder", "stretch", "frame_index")
        d = self.config_cls()
        # ZeroGPU: only encoding (in the service) and the VLM answers ask for the GPU (selector/app/zerogpu.py)
        self.analyze_endpoint = self.guard(with_signature(
            self._analyze, signature(["video", *ordered([*self.knobs, "retention", "num_frames", "encoder",
                                                           "stretch"], ANALYZE_ORDER)],
                                      {"retention": 0.35, "num_frames": 16, "encoder": self.settings.encoder,
                                       "stretch": STRETCH, **self._api_defaults(d)}),
            "analyze", "Decode + encode the video (cached by file content) and run ENTROPY-SELECT; returns the views "
            "and a JSON summary. Knobs take SelectorConfig's names and defaults; max_tokens 0 means no cap."))
        ask_sig = signature(["video", *ordered([*self.knobs, "question", "retention", "model", "num_frames",
                                                  "max_new_tokens"], ASK_ORDER)],
                             {"retention": 0.35, "model": "", "num_frames": 16, "max_new_tokens": 64,
                              **self._api_defaults(d)})
        ask = with_signature(
            self._ask_stream, ask_sig,
            "ask", "Answer a question about the video twice: with all video tokens and with the ENTROPY-SELECT "
            "ones, selected on the VLM's own video features with these knobs. Streams both answers as they are "
            "generated (a client's predict() gets the final one).")
        self.ask_endpoint = gpu_task("answer", by_signature(answer_seconds, ask_sig))(self.guard(ask))
        compare = with_signature(
            self._compare, signature(["video", "retention", "methods", "num_frames", "encoder"],
                                      {"retention": 0.35, "methods": ",".join(DEFAULT_METHODS), "num_frames": 16,
                                       "encoder": self.settings.encoder}),
            "compare", "Run several token-compression methods at the same retention on the video's (cached) features: "
            "methods is a comma-separated list of selector.compare.METHODS names. Returns one kept-token overlay per "
            "method and a JSON list (method, tokens_kept, merged, coverage, frames_covered, cells_covered, ms). "
            "Coverage is a proxy for what the kept rows represent, not accuracy.")
        self.compare_endpoint = self.guard(compare)
        self.sweep = self.guard(self._sweep, page=True)
        self.compare_answers = gpu_task("compare_answers", by_signature(
            compare_answers_seconds, inspect.signature(self._compare_answers)))(self.guard(self._compare_answers,
                                                                                             page=True))
        # the page's own Analyze, Compare and Ask buttons: the endpoints' work, with user errors as a toast and a
        # sentence on the page instead of gradio's "Error" badges (the API endpoints raise them for clients)
        self.compare_page = self.guard(compare, page=True)
        self.ask_page = gpu_task("ask_page", by_signature(answer_seconds, ask_sig))(
            self.guard(ask, page=True, say="full_md"))
        # the page's handlers, guarded. The slider path's parameters are the page's inputs by name (gradio finds
        # `progress` only among named parameters); the others take them positionally
        self.ui_run = self.guard(with_signature(
            self._ui_run, signature([*self.ui_fields, "shown", "downloads_open"], {"downloads_open": False}),
            "ui_run", self._ui_run.__doc__ or ""), page=True, say="summary_md")
        self.example_run = self.guard(with_signature(
            self._example_run, signature(["example", *self.ui_fields, "shown", "downloads_open"],
                                          {"downloads_open": False}), "example_run",
            self._example_run.__doc__ or "", {"example": gr.SelectData}), page=True, say="summary_md")
        self.frame_view = self.guard(self._frame_view, page=True)
        self.downloads = self.guard(self._downloads, page=True)
        self.latency = self.guard(self._latency, page=True)

    def _api_defaults(self, d: SelectorConfig) -> dict[str, Any]:
        return {n: 0 if k.optional and getattr(d, n) is None else getattr(d, n) for n, k in self.knobs.items()}

    def guard(self, fn: Callable, page: bool = False, say: str | None = None) -> Callable:
        """fn under the time limit, with the pipeline's user errors as gr.Error in their own words and anything
        else as a short internal-error sentence (the log keeps the traceback). An empty answer means "no change".

        `page`: an event of the page itself. A user error (a refused value, no video yet, a model that cannot load)
        is then a warning toast, and the sentence in component `say` when given, and every other output stays as it
        is: the page never shows gradio's "Error" badges for something a user did. Internal errors still raise."""
        def failed(e: Exception) -> Any:
            err = user_error(e)
            if not page or not (isinstance(e, (gr.Error, *USER_ERRORS))):
                raise err from None
            gr.Warning(err.message)
            return {self.c[say]: f"⚠️ {err.message}"} if say else gr.skip()

        if inspect.isgeneratorfunction(fn):  # streaming: the generator sets its own time limit (see _ask_stream)
            @functools.wraps(fn)
            def streaming(*args, **kwargs):
                try:
                    for item in fn(*args, **kwargs):
                        yield no_change(item)
                except Exception as e:
                    yield failed(e)
            return streaming

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            try:
                with time_limit(self.settings.time_limit):
                    return no_change(fn(*args, **kwargs))
            except Exception as e:
                return failed(e)
        return wrapper

    def allowed(self, kind: str, name: str, known: set[str]) -> str:
        """Public servers load only known encoders/models (or those the operator lists); never remote code. A hub
        id that cannot be loaded now (offline, not cached) is refused at once, saying how to provide it."""
        if self.settings.allow_any_model or name in known or model_key(name) in self.settings.extra_models:
            ident = name.split(":", 1)[1] if name.startswith("llava-onevision:") else name
            if name not in OFFLINE_ENCODERS and not hub.available(ident):
                note = "" if self.settings.allow_any_model else (
                    " This server loads only the models on its allowlist: start it with "
                    "ENTROPY_SELECT_MODEL_ALLOWLIST=DIR (several: comma-separated) so that it accepts the folder.")
                raise SelectorError(hub.unavailable_message(ident, kind) + note)
            return name
        allowed = ", ".join([*sorted(known), *sorted(self.settings.extra_models - set(known))])
        raise SelectorError(f"{kind} '{name}' is not on this server's allowlist ({allowed}); the "
                            "operator can add it with ENTROPY_SELECT_MODEL_ALLOWLIST or open the list with "
                            "ENTROPY_SELECT_ALLOW_ANY_MODEL=1")

    def encoder_choices(self) -> list[tuple[str, str]]:
        """(label, name) of the encoder menu, each label saying whether it can be loaded now."""
        def mark(name: str) -> str:
            if name in OFFLINE_ENCODERS:
                return f"offline, {cpu_precision(name=name)} on a CPU"  # (no CUDA query: ZeroGPU forbids one here)
            ident = name.split(":", 1)[1] if name.startswith("llava-onevision:") else name
            return "hub, cached" if hub.available(ident) and not hub.reachable() else \
                "hub" if hub.available(ident) else "needs the hub: unavailable now"
        return [(f"{name} ({mark(name)})", name) for name in available_encoders()]

    def model_choices(self) -> list[tuple[str, str]]:
        """(label, id) of the Ask tab's model menu: the default and every family's checkpoints, each saying whether
        it can load now (a local folder can be typed in)."""
        def mark(ident: str) -> str:
            return "local folder" if Path(ident).expanduser().is_dir() else \
                "hub, cached" if hub.available(ident) and not hub.reachable() else \
                "hub" if hub.available(ident) else "needs the hub: unavailable now"
        return [(f"{ident} ({mark(ident)})", ident) for ident in dict.fromkeys((self.settings.vlm, *known_vlms()))]

    def model_availability(self) -> str:
        """The Ask tab's line on which models can be loaded now."""
        if hub.reachable():
            return f"The hub is reachable: any {FAMILY_LABELS} id on the allowlist loads."
        ready = [m for m in (self.settings.vlm, *known_vlms()) if hub.available(m)]
        listed = "" if self.settings.allow_any_model else " (a folder must be on ENTROPY_SELECT_MODEL_ALLOWLIST)"
        return ("The hub is not reachable now: only local folders" + (" and the cached " + ", ".join(dict.fromkeys(
            ready)) if ready else "") + f" load{listed}.")

    def params(self, v: dict[str, Any]) -> Any:
        """Params from named values (knobs, retention, num_frames, encoder; a knob left out takes its default);
        SelectorError names a refused one."""
        enc = v.get("encoder")
        if enc is not None and not isinstance(enc, str):
            raise SelectorError(f"encoder must be the name of an encoder, got {type(enc).__name__} {enc!r}")
        retention = Knob("retention", 0.35, "float", "", "").parse(v["retention"])
        frames = Knob("num_frames", 16, "int", "", "").parse(v["num_frames"])
        default = self.settings.encoder
        encoder = self.allowed("encoder", (enc or default).strip(),
                               set(available_encoders()) | {default}) if "encoder" in v else default
        return self.Params(retention=retention, num_frames=frames, encoder=encoder,
                           **{n: k.parse(v.get(n, k.default)) for n, k in self.knobs.items()})

    def page_values(self, ui: tuple) -> dict[str, Any]:
        """The UI handlers' positional inputs by name, log-scale knobs turned into their values."""
        if len(ui) != len(self.ui_fields):
            raise TypeError(f"expected the {len(self.ui_fields)} page inputs {self.ui_fields}, got {len(ui)} values")
        u = dict(zip(self.ui_fields, ui, strict=True))
        for n, k in self.knobs.items():
            if k.log:
                x = u.pop("log_" + n)
                try:  # not a number: params() names the knob
                    u[n] = 10.0 ** float(x) if not isinstance(x, (bool, str)) and math.isfinite(x) else x
                except (TypeError, OverflowError):
                    u[n] = x
        return u

    def uploaded(self, video: Any) -> str:
        """The handlers read uploads (gradio's upload folder) and the bundled examples, nothing else: a client
        that names a server path gets a refusal that does not reveal whether the path exists."""
        if not video:
            raise gr.Error("Upload a video or pick an example first.")
        refused = gr.Error("Only uploaded files (or the bundled examples) can be analyzed.")
        if not isinstance(video, str) or "\0" in video:
            raise refused
        real = os.path.realpath(video)
        roots = [os.path.realpath(gradio.utils.get_upload_folder()), os.path.realpath(ROOT / "assets")]
        if not any(real.startswith(r + os.sep) for r in roots):
            raise refused
        original = self.previews.get(os.path.basename(real))
        return original if original is not None and os.path.exists(original) else real

    def is_preview(self, path: str) -> bool:
        """Whether `path` is (gradio's copy of) a preview this app made."""
        return os.path.basename(path) in self.previews

    def preview(self, video: str, a: Analysis) -> str | None:
        """A playable preview of the sampled frames for a video the browser cannot play itself, else None."""
        playable = self._playable.get(video)
        if playable is None:
            playable = browser_playable(video)
            self._playable.put(video, playable)
        if playable:
            return None
        name = f"preview-{a.features.digest[:12]}-{os.urandom(4).hex()}.mp4"
        path = self.out.write(self.out.folder(), name, lambda p: write_preview(a.features.clip, p))
        self.previews.put(name, video)
        return path

    def analysis(self, u: dict) -> Analysis | None:
        """The (cached) analysis for the page's values, None without a video."""
        return self.service.analyze(self.uploaded(u["video"]), self.params(u)) if u["video"] else None

    def on_page(self, ui: tuple, shown: dict | None) -> dict[str, Any]:
        """The page's values for the views it shows: the inputs, with the settings of the views on the page
        (`shown`) in place of inputs that were not applied."""
        u = self.page_values(ui)
        applied = dict((shown or {}).get("applied", {}))
        for n, k in self.knobs.items():
            if k.log and n in applied:
                applied[n] = 10.0 ** applied[n]
        return {**u, **applied}

    # ---- the page ---------------------------------------------------------------------------------------------

    def build(self) -> gr.Blocks:
        """The page: the settings column, the summary, the tabs (each laid out by its module), the budget chart."""
        from viz import empty_chart

        c = self.c
        ttl = self.settings.output_ttl  # gradio's copies of our files, and uploads: swept every 2·ttl, kept 4·ttl
        sweep = (max(1, round(2 * ttl)), max(1, round(4 * ttl)))
        with Blocks(title="ENTROPY-SELECT Explorer", delete_cache=sweep) as demo:
            gr.Markdown(INTRO)
            with gr.Row():
                with gr.Column(scale=1, min_width=320):
                    self._layout_settings()
                with gr.Column(scale=2):
                    c["summary_md"] = gr.Markdown(START, label="Summary (text)", elem_id="summary-md")
                    with gr.Tabs():
                        self._layout_maps()
                        for name, title, layout in (("frame", "Frame", self._layout_frame),
                                                    ("latency", "Latency", self._layout_latency),
                                                    ("ask", "Ask the video", self._layout_ask),
                                                    ("compare", "Compare", self._layout_compare),
                                                    ("downloads", "Downloads", self._layout_downloads)):
                            with gr.Tab(title) as self.tabs[name]:
                                layout()
                    c["budgets"] = gr.Plot(empty_chart("Frame budgets: pick an example or upload a video"),
                                           label="Frame budgets", elem_id="budgets")
            self.wire()
        demo.explorer = self  # type: ignore[attr-defined]  # tests and scripts reach the handlers through it
        self.out.on_sweep = lambda now: sweep_gradio_cache(demo, sweep[1], now)  # its own task can stop
        return demo

    def wire(self) -> None:
        """The page's state, the API endpoints (each on a trigger of its own: clients call them by name, the page's
        buttons run the page's handlers), then each tab's events. Every event names each output it answers."""
        c, s, d = self.c, self.settings, self.config_cls()
        c["shown"] = gr.State({})  # keys of the maps on the page and the settings they show (a few small values)
        downloads_open = gr.State(False)  # the Downloads tab is open: the page's path writes the files too
        c["compare_on"] = gr.State(False)  # the Compare tab shows results: a retention move re-runs the methods
        # the endpoints take explicit values of log-scale knobs: hidden numbers follow their sliders
        api = {n: c[n] for n in ("video", "retention", "num_frames", "encoder", "stretch", "question", "model")}
        for n, k in self.knobs.items():
            if k.log:
                api[n] = gr.Number(getattr(d, n), visible=False)
                c[n].change(show_log_value(n), c[n], [c[n + "_text"], api[n]], api_visibility="private",
                            queue=False)
            else:
                api[n] = c[n]
        api["max_new_tokens"] = gr.Number(64, visible=False, precision=0)
        api["methods"] = gr.Textbox(",".join(DEFAULT_METHODS), visible=False)
        outputs = {"analyze": [c[n] for n in VIEWS], "compare": [c["compare_gallery"], c["compare_json"]],
                   "ask": [c["full_md"], c["comp_md"], c["ask_json"]]}
        for name, fn in (("analyze", self.analyze_endpoint), ("compare", self.compare_endpoint),
                         ("ask", self.ask_endpoint)):
            gr.Button(visible=False).click(
                fn, [api[n] for n in inspect.signature(fn).parameters if n != "progress"], outputs[name],
                api_name=name, concurrency_limit=1 if name == "ask" else s.concurrency,
                concurrency_id="vlm" if name == "ask" else "compute", time_limit=s.time_limit)
        ui_inputs = [c[n.removeprefix("log_")] for n in self.ui_fields]
        self._wire_views(ui_inputs, downloads_open)
        self._wire_frame(ui_inputs)
        self._wire_latency(ui_inputs)
        self._wire_ask(api)
        self._wire_compare(api)
        self._wire_downloads(ui_inputs, downloads_open)


def create_demo(service: Service | None = None, settings: Settings | None = None,
                config_cls: type = SelectorConfig) -> gr.Blocks:
    """The app's gr.Blocks (its handlers on `demo.explorer`); launch it with `launch(demo)`."""
    explorer = Explorer(service, settings, config_cls)
    demo = explorer.build()
    if explorer.settings.warm:
        explorer.warm()
    return demo


def launch(demo: gr.Blocks, **kwargs: Any) -> None:
    s: Settings = demo.explorer.settings  # type: ignore[attr-defined]
    demo.queue(max_size=s.queue, default_concurrency_limit=s.concurrency).launch(
        max_file_size=s.max_upload, show_error=False, **kwargs)  # users see the app's own sentences, no internals

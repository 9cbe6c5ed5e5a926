"""The web app: `create_demo()` builds the page from the knob table and wires its events.

Handlers return dicts keyed by component (a component left out keeps what the page shows); `Explorer.guard`
turns the pipeline's user errors into the page's own sentences and enforces the request time limit; every file
handed out is written by `OutputFiles`. The pipeline is `service.Service`, the pictures `viz`.
"""

from __future__ import annotations

import contextvars
import dataclasses
import functools
import inspect
import logging
import math
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import gradio as gr
import gradio.utils
import torch

from .. import SelectorConfig, SelectorError, hub
from ..compare import DEFAULT_METHODS, METHODS, compress, parse_methods, result_row, rows_for
from ..config import Knob, knobs
from ..encoders import DEFAULT_ENCODER, EncoderError, available_encoders
from ..encoders import OFFLINE as OFFLINE_ENCODERS
from ..export import finite, to_json, to_npz
from ..limits import TimeLimitError, time_limit
from ..lru import LRU
from ..method.pipeline import MAP_FIELDS
from ..video import VideoError, browser_playable, describe, read_clip, write_preview
from ..vlm import DEFAULT_VLM, FAMILIES, VLMError, known_vlms, load_vlm
from .files import OutputFiles
from .service import DEFAULT, RETENTIONS, Analysis, Service, latency_rows, params_class
from .settings import Settings, model_key
from .zerogpu import answer_seconds, by_signature, gpu_task

log = logging.getLogger("entropy_select.app")
ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "assets" / "bigbuckbunny.mp4"
#: the examples shown above the settings: (clip, thumbnail, caption); the repository's clips (an installed package
#: without the repository has none, and shows no examples)
EXAMPLES = [(ROOT / "assets" / f"{n}.mp4", ROOT / "assets" / f"{n}.jpg", caption)
            for n, caption in (("bigbuckbunny", "Big Buck Bunny, 5.3 s"), ("bigbuckbunny-short", "Short clip, 2.4 s"))]
EXAMPLES = [e for e in EXAMPLES if e[0].exists() and e[1].exists()]
_EXAMPLE_CLIPS = frozenset(os.path.realpath(clip) for clip, _, _ in EXAMPLES)
#: the VLM families the Ask and Compare tabs drive ("LLaVA-OneVision, Qwen2.5-VL, Qwen3-VL or Qwen3-VL-MoE")
FAMILY_LABELS = ", ".join(f.label for f in list(FAMILIES.values())[:-1]) + f" or {list(FAMILIES.values())[-1].label}"
#: (the labels of the families registered when the app module loads; the model menu reads the registry each time)
USER_ERRORS = (SelectorError, VideoError, EncoderError, VLMError, TimeLimitError)
#: colours stretched to each map's own range by default: at the paper's τ = 1 the entropy map spans a few thousandths,
#: and a fixed [0, 1] scale shows one flat colour
STRETCH = True
#: frames sampled by default (the slider's start)
DEFAULT_FRAMES = 16
#: the summary before any video (and after the video is cleared)
START = "Upload a video or pick an example to start."


INTRO = """# ENTROPY-SELECT Explorer
Training-free video-token compression: every token is scored by the **entropy of its similarity to its
spatio-temporal neighbours** (Ĥ) fused with the **feature gradient** (Ĝ), frames get budgets by saliency,
and grid quotas keep coverage. Upload a video or pick an example, then move the sliders: only the
selector re-runs, on features computed once."""

#: positional order of the endpoints' inputs after `video`, kept for clients that call them by position; a knob
#: missing here (a new one) is appended after these in the knob table's order
ANALYZE_ORDER = ("retention", "alpha", "tau", "window", "temporal_window", "grid", "num_frames", "encoder",
                 "past_window", "rho", "grid_fusion", "stretch", "q", "tau_alloc", "min_tokens", "max_tokens")
ASK_ORDER = ("question", "retention", "model", "num_frames", "max_new_tokens", "alpha", "tau", "window",
             "temporal_window", "grid", "past_window", "rho", "grid_fusion", "q", "tau_alloc", "min_tokens",
             "max_tokens")
#: the /analyze outputs, in the order clients receive them (`out[6]` is the summary)
#: retentions of the Compare tab's sweep
SWEEP = (0.05, 0.1, 0.25, 0.5, 0.9)
VIEWS = ("summary_md", "overlay", "entropy", "gradient", "score", "budgets", "summary", "json_file", "npz_file")


def _ordered(names: list[str], legacy: tuple[str, ...]) -> list[str]:
    return [n for n in legacy if n in names] + [n for n in names if n not in legacy]


def _signature(names: list[str], defaults: dict[str, Any]) -> inspect.Signature:
    params = [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                default=defaults.get(n, inspect.Parameter.empty)) for n in names]
    params.append(inspect.Parameter("progress", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=gr.Progress()))
    return inspect.Signature(params)


KNOB_HELP = {k.name: k for k in knobs()}
#: what each endpoint parameter means, for the API page and the MCP tools (the knobs' lines come from the table)
PARAM_HELP = {
    "video": "the video file (mp4, webm, mov, mkv, ...), uploaded or a URL",
    "retention": "share r of the video tokens kept, in (0, 1] (0.35 keeps 35 %)",
    "num_frames": "frames sampled uniformly over the whole video",
    "encoder": "image encoder: dinov2-s (offline default), efficientnet-lite0 (offline), or a hub id on the server's "
               "allowlist",
    "stretch": "colour each map by its own range instead of a fixed scale (on by default: at the paper's τ = 1 the "
               "entropy map spans a few thousandths)",
    "question": "the question about the video",
    "model": f"{FAMILY_LABELS} checkpoint (hub id or local folder on the allowlist; empty: the default)",
    "max_new_tokens": "longest answer, in tokens",
    "methods": "comma-separated names of compression methods (entropy_select, random, frame_sample, uniform_pool, "
               "dycoke, vidcom2, fastvid, llava_scissor, tome, ...)",
}


def _api_doc(summary: str, sig: inspect.Signature, knob_table: dict[str, Knob]) -> str:
    """A docstring with an Args section (gradio reads it for the API page and the MCP tools' parameters)."""
    lines = [summary, "", "Args:"]
    for n in sig.parameters:
        if n != "progress":
            k = knob_table.get(n)
            what = PARAM_HELP.get(n) or (k.help + (" (0: no cap)" if k.optional else "") if k else n)
            lines.append(f"    {n}: {what}")
    return "\n".join(lines)


def _with_signature(fn: Callable[[dict, Any], Any], sig: inspect.Signature, name: str, doc: str,
                    annotations: dict[str, type] | None = None) -> Callable:
    """A function with the given parameters (gradio reads them for the API page) that calls fn(values, progress);
    `annotations` give parameters gradio fills itself (gr.SelectData: the event's data)."""
    def values_of(args: tuple, kwargs: dict) -> dict:
        bound = sig.bind(*args, **kwargs)
        bound.apply_defaults()
        return dict(bound.arguments)

    if inspect.isgeneratorfunction(fn):  # a streaming endpoint stays a generator for gradio
        def wrapper(*args, **kwargs):
            values = values_of(args, kwargs)
            yield from fn(values, values.pop("progress"))
    else:
        def wrapper(*args, **kwargs):
            values = values_of(args, kwargs)
            return fn(values, values.pop("progress"))
    wrapper.__signature__ = sig  # type: ignore[attr-defined]
    wrapper.__annotations__ = dict(annotations or {})
    wrapper.__name__ = wrapper.__qualname__ = name
    wrapper.__doc__ = doc if "Args:" in doc or name == "ui_run" else _api_doc(doc, sig, KNOB_HELP)
    return wrapper


def _lasting(notes: list[str]) -> list[str]:
    """The analysis notes the summary keeps showing (they also come as a pop-up when the video is first read): what
    was read differs from what was asked (fewer frames, a cap, another decoder). The downscaling note is left out:
    the summary's video line gives both sizes."""
    return [n for n in notes if not n.startswith("frames downscaled")]


def _examples_as_they_are(video: gr.Video, ours: Callable[[str], bool] = lambda path: False) -> gr.Video:
    """The video box, handing out the bundled examples (and the app's own previews, `ours`) as they are: gradio
    otherwise probes every video it sends with an ffprobe subprocess (~130 ms on 2 cores, on the example click's
    path) to convert those a browser cannot play; the examples and previews are H.264 in MP4 (a test probes them).
    Everything else goes through gradio's checks. (An instance attribute, not a subclass: gradio writes a .pyi stub
    beside the module of every component subclass.)"""
    from gradio.data_classes import FileData

    gradio_postprocess = video.postprocess

    def postprocess(value: Any) -> Any:
        if isinstance(value, (str, Path)) and (os.path.realpath(value) in _EXAMPLE_CLIPS or ours(str(value))) \
                and video.format is None and not video.watermark.watermark:
            return FileData(path=str(value), orig_name=Path(value).name)
        return gradio_postprocess(value)

    video.postprocess = postprocess  # type: ignore[method-assign]
    return video


#: The page's small script.
#: - A slider's number box applies what it shows: gradio's slider applies a typed value when the box is left (blur)
#:   but ignores Enter, and it answers a value outside the slider's range (or off its step, or not a number) with a
#:   toast while the box keeps it and the views keep the old one. So gradio reads the box only when it is settled
#:   (Enter or leaving it), and then a value the slider takes: brought into [min, max], onto the step grid, and back
#:   to the slider's own value when it is not a number; Enter then leaves the box, which applies it. Number fields
#:   (the frame budgets) handle Enter themselves.
#: - The video box plays what the browser can; for the codecs it cannot (MJPEG, FFV1, MS-MPEG4 ...) the server puts a
#:   playable preview of the sampled frames in the box, so the browser's "not playable" error is not shown as a toast.
HEAD = """<script>
(() => {
  const isSliderBox = (t) => t instanceof HTMLInputElement && t.type === "number"
    && (t.getAttribute("aria-label") || "").startsWith("number input for");
  const settle = (t) => {
    const lo = parseFloat(t.min), hi = parseFloat(t.max), step = parseFloat(t.step);
    const range = t.closest(".block, .form")?.querySelector("input[type=range]");
    let v = parseFloat(t.value);
    if (!Number.isFinite(v)) v = range ? parseFloat(range.value) : lo;
    if (Number.isFinite(lo) && v < lo) v = lo;
    if (Number.isFinite(hi) && v > hi) v = hi;
    if (Number.isFinite(step) && step > 0) {
      const base = Number.isFinite(lo) ? lo : 0;
      v = base + Math.round((v - base) / step) * step;
      if (Number.isFinite(hi) && v > hi + 1e-9) v -= step;
      const digits = (String(step).split(".")[1] || "").length;
      v = Number(v.toFixed(digits));
    }
    t.value = String(v);
    const settled = new Event("input", { bubbles: true });
    settled.settled = true;
    t.dispatchEvent(settled);
  };
  // keystrokes stay in the box until it is settled: gradio would otherwise take each partial value ("3" on the way
  // to "0.3") as the slider's, and its change events would carry values outside the slider's range
  document.addEventListener("input", (e) => {
    if (isSliderBox(e.target) && !e.settled) e.stopPropagation();
  }, true);
  document.addEventListener("keydown", (e) => {
    const t = e.target;
    if (e.key === "Enter" && isSliderBox(t)) { e.preventDefault(); settle(t); t.blur(); }
  }, true);
  document.addEventListener("blur", (e) => { if (isSliderBox(e.target)) settle(e.target); }, true);
  document.addEventListener("error", (e) => {
    if (e.target instanceof HTMLVideoElement && e.target.closest("#video-box")) e.stopPropagation();
  }, true);
})();
</script>"""
#: accordion headers in the narrow settings column: the label wraps, and the closed header's rotated arrow (it
#: reaches ~6 px past the header's edge) stays inside, so no sideways scrollbar appears
CSS = ".settings-acc .label-wrap { white-space: normal; padding-right: 10px; }"


class _Blocks(gr.Blocks):
    """gr.Blocks whose refusals of a request's raw inputs (wrong count, a path not uploaded, malformed file data)
    reach the user as the app's own sentences, never as gradio's internals (reprs, server paths, pydantic), and
    whose page carries the app's script and style however it is launched."""

    def launch(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("head", HEAD)
        kwargs.setdefault("css", CSS)
        if os.environ.get("GRADIO_MCP_SERVER", "").strip().lower() in ("1", "true", "yes", "on"):
            kwargs.setdefault("mcp_server", True)  # gradio itself reads only "true"
        return super().launch(*args, **kwargs)

    async def preprocess_data(self, block_fn, inputs, state, explicit_call=False):
        try:
            return await super().preprocess_data(block_fn, inputs, state, explicit_call)
        except gr.Error:
            raise
        except Exception as e:
            log.info("request inputs refused: %s: %s", type(e).__name__, e)
            raise gr.Error(_input_error(e, len(block_fn.inputs), len(inputs))) from None


def _input_error(e: Exception, wanted: int, got: int) -> str:
    if wanted != got:
        return (f"This endpoint takes {wanted} inputs and the request had {got}; gradio_client fills in the "
                "defaults, or see the API page for the full list.")
    if type(e).__name__ == "InvalidPathError":
        return "Only uploaded files (or the bundled examples) can be analyzed."
    return "The request's inputs could not be read: give each the type the API page lists (a video as an upload)."


#: the Compare tab's table columns (the /compare JSON's keys)
TABLE = ("method", "tokens_kept", "merged", "coverage", "frames_covered", "cells_covered", "ms")


def _compare_answers_seconds(model: Any = "", methods: Any = "", num_frames: Any = 16) -> int:
    """GPU seconds of the Compare tab's answers: the full answer and one per method."""
    return answer_seconds(num_frames, 64, model, 1 + max(1, len(str(methods or "x").split(","))))


def _user_error(e: Exception) -> gr.Error:
    """The error a user sees: the pipeline's user errors in their own words, anything else a short sentence (the
    log keeps the traceback)."""
    if isinstance(e, gr.Error):
        return e
    if isinstance(e, USER_ERRORS):
        return gr.Error(str(e))
    if isinstance(e, (MemoryError, torch.cuda.OutOfMemoryError)):
        return gr.Error("Out of memory for this request: try fewer frames or a smaller model.")
    log.error("request failed", exc_info=e)
    return gr.Error(f"Internal error ({type(e).__name__}); the server log has the details.")


def _streaming_md(title: str, text: str, ttft_ms: float | None, done: bool = False) -> str:
    status = "" if done else " · generating…"
    timing = "waiting for the first token" if ttft_ms is None else f"time to first token **{ttft_ms:.0f} ms**"
    return f"### {title}\n\n{text or '…'}{'' if done else ' ▌'}\n\n{timing}{status}"


def _table(rows: Any) -> list[list[Any]]:
    return [[row.get(k) for k in TABLE] for row in rows or []]


def _show_log_value(name: str) -> Callable[[float], Any]:
    def show(x: Any) -> Any:
        if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
            return gr.skip()  # not a number (yet): the text keeps the value the views use
        return f"{name} = {10 ** x:.3g}", 10 ** x
    return show


def _no_change(result: Any) -> Any:
    """gradio reads an empty dict as one value, not as "nothing changes": a handler's {} becomes gr.skip()."""
    return gr.skip() if isinstance(result, dict) and not result else result


def _answer_md(title: str, a) -> str:
    return (f"### {title}\n\n{a.text or '*(empty answer)*'}\n\n"
            f"visual tokens **{a.visual_tokens:,}** of {a.full_visual_tokens:,} · time to first token "
            f"**{a.prefill_ms:.0f} ms** · total {a.total_ms:.0f} ms for {a.new_tokens} tokens"
            + (f" · (+ {a.setup_ms:.0f} ms once: CUDA graph for this prompt length, not counted)"
               if a.setup_ms > 0 else ""))


def _answer_dict(a) -> dict:
    return {"text": a.text, "visual_tokens": a.visual_tokens, "full_visual_tokens": a.full_visual_tokens,
            "prefill_ms": round(a.prefill_ms, 2), "total_ms": round(a.total_ms, 2), "new_tokens": a.new_tokens,
            "setup_ms": round(a.setup_ms, 2)}


class Explorer:
    """The app's state and handlers: the service, the settings, the output files, the page's components (`c`)."""

    def __init__(self, service: Service | None = None, settings: Settings | None = None,
                 config_cls: type = SelectorConfig) -> None:
        self.service = DEFAULT if service is None else service
        self.settings = Settings.from_env() if settings is None else settings
        self.config_cls = config_cls
        self.knobs = {k.name: k for k in knobs(config_cls)}
        self.Params = params_class(config_cls)
        self.out = OutputFiles()  # every file handed out: written once, complete, private, under fresh names
        #: previews the app made of videos a browser cannot play: file name → the upload it shows (handlers that
        #: receive the preview from the video box read the upload instead)
        self.previews = LRU(max_items=512)
        self._playable = LRU(max_items=512)  # real path → whether a browser plays it
        self.c: dict[str, Any] = {}  # the page's components by name
        #: the page's inputs every UI handler takes, by name (the knobs with their page names)
        self.ui_fields = ("video", "retention", *[("log_" + n) if k.log else n for n, k in self.knobs.items()],
                          "num_frames", "encoder", "stretch", "frame_index")
        d = self.config_cls()
        # ZeroGPU: only encoding (in the service) and the VLM answers ask for the GPU (selector/app/zerogpu.py)
        self.analyze_endpoint = self.guard(_with_signature(
            self._analyze, _signature(["video", *_ordered([*self.knobs, "retention", "num_frames", "encoder",
                                                           "stretch"], ANALYZE_ORDER)],
                                      {"retention": 0.35, "num_frames": 16, "encoder": DEFAULT_ENCODER,
                                       "stretch": STRETCH, **self._api_defaults(d)}),
            "analyze", "Decode + encode the video (cached by file content) and run ENTROPY-SELECT; returns the views "
            "and a JSON summary. Knobs take SelectorConfig's names and defaults; max_tokens 0 means no cap."))
        ask_sig = _signature(["video", *_ordered([*self.knobs, "question", "retention", "model", "num_frames",
                                                  "max_new_tokens"], ASK_ORDER)],
                             {"retention": 0.35, "model": "", "num_frames": 16, "max_new_tokens": 64,
                              **self._api_defaults(d)})
        ask = _with_signature(
            self._ask_stream, ask_sig,
            "ask", "Answer a question about the video twice: with all video tokens and with the ENTROPY-SELECT "
            "ones, selected on the VLM's own video features with these knobs. Streams both answers as they are "
            "generated (a client's predict() gets the final one).")
        self.ask_endpoint = gpu_task("answer", by_signature(answer_seconds, ask_sig))(self.guard(ask))
        compare = _with_signature(
            self._compare, _signature(["video", "retention", "methods", "num_frames", "encoder"],
                                      {"retention": 0.35, "methods": ",".join(DEFAULT_METHODS), "num_frames": 16,
                                       "encoder": DEFAULT_ENCODER}),
            "compare", "Run several token-compression methods at the same retention on the video's (cached) features: "
            "methods is a comma-separated list of selector.compare.METHODS names. Returns one kept-token overlay per "
            "method and a JSON list (method, tokens_kept, merged, coverage, frames_covered, cells_covered, ms). "
            "Coverage is a proxy for what the kept rows represent, not accuracy.")
        self.compare_endpoint = self.guard(compare)
        self.sweep = self.guard(self._sweep, page=True)
        self.compare_answers = gpu_task("compare_answers", by_signature(
            _compare_answers_seconds, inspect.signature(self._compare_answers)))(self.guard(self._compare_answers,
                                                                                             page=True))
        # the page's own Analyze, Compare and Ask buttons: the endpoints' work, with user errors as a toast and a
        # sentence on the page instead of gradio's "Error" badges (the API endpoints raise them for clients)
        self.compare_page = self.guard(compare, page=True)
        self.ask_page = gpu_task("ask_page", by_signature(answer_seconds, ask_sig))(
            self.guard(ask, page=True, say="full_md"))
        # the page's handlers, guarded. The slider path's parameters are the page's inputs by name (gradio finds
        # `progress` only among named parameters); the others take them positionally
        self.ui_run = self.guard(_with_signature(
            self._ui_run, _signature([*self.ui_fields, "shown", "downloads_open"], {"downloads_open": False}),
            "ui_run", self._ui_run.__doc__ or ""), page=True, say="summary_md")
        self.example_run = self.guard(_with_signature(
            self._example_run, _signature(["example", *self.ui_fields, "shown", "downloads_open"],
                                          {"downloads_open": False}), "example_run",
            self._example_run.__doc__ or "", {"example": gr.SelectData}), page=True, say="summary_md")
        self.frame_view = self.guard(self._frame_view, page=True)
        self.downloads = self.guard(self._downloads, page=True)
        self.latency = self.guard(self._latency, page=True)

    def _api_defaults(self, d: SelectorConfig) -> dict[str, Any]:
        return {n: 0 if k.optional and getattr(d, n) is None else getattr(d, n) for n, k in self.knobs.items()}

    # ---- errors, limits, inputs -------------------------------------------------------------------------------

    def guard(self, fn: Callable, page: bool = False, say: str | None = None) -> Callable:
        """fn under the time limit, with the pipeline's user errors as gr.Error in their own words and anything
        else as a short internal-error sentence (the log keeps the traceback). An empty answer means "no change".

        `page`: an event of the page itself. A user error (a refused value, no video yet, a model that cannot load)
        is then a warning toast, and the sentence in component `say` when given, and every other output stays as it
        is: the page never shows gradio's "Error" badges for something a user did. Internal errors still raise."""
        def failed(e: Exception) -> Any:
            err = _user_error(e)
            if not page or not (isinstance(e, (gr.Error, *USER_ERRORS))):
                raise err from None
            gr.Warning(err.message)
            return {self.c[say]: f"⚠️ {err.message}"} if say else gr.skip()

        if inspect.isgeneratorfunction(fn):  # streaming: the generator sets its own time limit (see _ask_stream)
            @functools.wraps(fn)
            def streaming(*args, **kwargs):
                try:
                    for item in fn(*args, **kwargs):
                        yield _no_change(item)
                except Exception as e:
                    yield failed(e)
            return streaming

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            try:
                with time_limit(self.settings.time_limit):
                    return _no_change(fn(*args, **kwargs))
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
                return "offline"
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
        return [(f"{ident} ({mark(ident)})", ident) for ident in dict.fromkeys((DEFAULT_VLM, *known_vlms()))]

    def model_availability(self) -> str:
        """The Ask tab's line on which models can be loaded now."""
        if hub.reachable():
            return f"The hub is reachable: any {FAMILY_LABELS} id on the allowlist loads."
        ready = [m for m in (DEFAULT_VLM, *known_vlms()) if hub.available(m)]
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
        encoder = self.allowed("encoder", (enc or DEFAULT_ENCODER).strip(),
                               set(available_encoders()) | {DEFAULT_ENCODER}) if "encoder" in v else DEFAULT_ENCODER
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

    # ---- the analysis and its views ---------------------------------------------------------------------------

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
        if not a.features.from_cache or any("capped" in n for n in a.notes):
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
        out = {c["summary_md"]: summary_markdown(summary, [*_lasting(a.notes), *v.notes]), c["budgets"]: v.budgets,
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
        cleared = ("frame_img", "lat_plot", "compare_gallery", "compare_json", "compare_table", "sweep_plot",
                   "compare_answers", "ask_json")
        return {**self.first_state(), **{c[n]: None for n in cleared}, c["full_md"]: "", c["comp_md"]: "",
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

    def _ask_stream(self, v: dict, progress: Any) -> Iterator[dict]:
        """The answers as they are generated: all video tokens first, then the kept ones, side by side, each with
        its time to first token; the last update is `_ask`'s. The work runs in its own thread (under the time
        limit); this generator relays its tokens."""
        updates: queue.Queue = queue.Queue()
        result: dict[str, Any] = {}
        titles = {"full": "All video tokens"}

        def work() -> None:
            try:
                with time_limit(self.settings.time_limit):
                    result["out"] = self._ask(v, progress, lambda which, text, ttft: updates.put((which, text, ttft)))
            except BaseException as e:  # handed to the generator, which raises it in the request
                result["error"] = e
            finally:
                updates.put(None)

        threading.Thread(target=contextvars.copy_context().run, args=(work,), name="ask", daemon=True).start()
        shown = {"full": ("", None), "comp": ("", None)}
        comp_title = f"ENTROPY-SELECT, r = {v.get('retention')}"
        while (item := updates.get()) is not None:
            which, text, ttft = item
            shown["full" if which == "full" else "comp"] = (text, ttft)
            yield {self.c["full_md"]: _streaming_md(titles["full"], *shown["full"], done=which != "full"),
                   self.c["comp_md"]: _streaming_md(comp_title, *shown["comp"])}
        if "error" in result:
            raise result["error"]
        yield result["out"]

    def _ask(self, v: dict, progress: Any, on_token: Callable[[str, str, float], None] | None = None) -> dict:
        video = self.uploaded(v["video"])
        p = self.params({**v, "encoder": None})
        cfg = p.config()  # bad knobs are named before a model is loaded
        n_new = Knob("max_new_tokens", 64, "int", "", "").parse(v["max_new_tokens"])
        if not 1 <= n_new <= 512:
            raise SelectorError(f"max_new_tokens must be in [1, 512], got {v['max_new_tokens']}")
        model = v["model"]
        if model is not None and not isinstance(model, str):
            raise SelectorError(f"model must be a hub id or a folder, got {type(model).__name__}")
        name = self.allowed("model", (model or DEFAULT_VLM).strip(), {DEFAULT_VLM, *known_vlms()})
        progress(0.0, desc=f"loading {name}")
        vlm = load_vlm(name)
        clip = read_clip(video, min(p.num_frames, self.service.max_frames))
        progress(0.3, desc=f"answering with all video tokens, then with {p.retention:.0%} of them")
        full, comp = vlm.compare(clip.frames, v["question"], p.retention, cfg, max_new_tokens=n_new,
                                 on_token=on_token, timestamps=clip.timestamps)
        summary = {"model": vlm.name, "device": str(vlm.device),
                   "llm_prefill": "CUDA graphs" if vlm.prefill is not None else "stock forward",
                   "full": _answer_dict(full), "compressed": _answer_dict(comp), "retention": p.retention}
        if comp.selection is not None:  # what the compressed answer was given: the selector's config and budgets
            summary["config"] = dataclasses.asdict(comp.selection.config)
            summary["frame_budgets"] = [int(b) for b in comp.selection.budgets.tolist()]
        return {self.c["full_md"]: _answer_md("All video tokens", full),
                self.c["comp_md"]: _answer_md(f"ENTROPY-SELECT, r = {p.retention:g}", comp),
                self.c["ask_json"]: finite(summary)}

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
        name = self.allowed("model", (model or DEFAULT_VLM).strip() if isinstance(model, str) else DEFAULT_VLM,
                            {DEFAULT_VLM, *known_vlms()})
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

    # ---- the page ---------------------------------------------------------------------------------------------

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

    def ask_model_default(self) -> tuple[str, str]:
        """The Ask tab's model box: the default model when it can load here, else empty with a sentence saying what
        to give instead (shown before the first question)."""
        if hub.available(DEFAULT_VLM):
            return DEFAULT_VLM, ""
        return "", (f"⚠️ The default model `{DEFAULT_VLM}` cannot load here: {self.model_availability()} Give a "
                    f"local folder of a {FAMILY_LABELS} checkpoint in the box below.")

    def build(self) -> gr.Blocks:
        from viz import empty_chart

        c = self.c
        d = self.config_cls()
        ks = list(self.knobs.values())
        with _Blocks(title="ENTROPY-SELECT Explorer", delete_cache=(1800, 3600)) as demo:
            gr.Markdown(INTRO)
            with gr.Row():
                with gr.Column(scale=1, min_width=320):
                    c["video"] = _examples_as_they_are(gr.Video(label="Video", sources=["upload"], height=260,
                                                                elem_id="video-box"), self.is_preview)
                    if EXAMPLES:
                        examples = gr.Gallery([(str(t), cap) for _, t, cap in EXAMPLES], label="Examples: click one "
                                              "(Big Buck Bunny, CC-BY 3.0)", columns=len(EXAMPLES), rows=1,
                                              height=130, allow_preview=False, object_fit="cover",
                                              elem_id="examples", buttons=[])
                    c["retention"] = gr.Slider(0.01, 1.0, 0.35, step=0.01,
                                               label="Retention r (fraction of tokens kept)")
                    for k in ks:
                        if k.section == "main" and k.ui != "number":
                            c[k.name] = self._knob_input(k, d)
                            if k.log:
                                c[k.name + "_text"] = gr.Markdown(f"{k.name} = {getattr(d, k.name):g}")
                    with gr.Accordion("Windows, grid, frames, encoder", open=True, elem_classes="settings-acc"):
                        for k in ks:
                            if k.section != "main" and k.ui != "number":
                                c[k.name] = self._knob_input(k, d)
                        c["num_frames"] = gr.Slider(4, self.service.max_frames, DEFAULT_FRAMES, step=1,
                                                    label="Frames sampled")
                        c["encoder"] = gr.Dropdown(self.encoder_choices(), value=DEFAULT_ENCODER,
                                                   allow_custom_value=True,
                                                   label="Encoder (offline: dinov2-s, efficientnet-lite0; others "
                                                         "need the hub)")
                    with gr.Accordion("Frame budgets: q, τ_alloc, B_min, B_max", open=False,
                                      elem_classes="settings-acc"):
                        for k in ks:
                            if k.ui == "number":
                                c[k.name] = self._knob_input(k, d)
                    c["stretch"] = gr.Checkbox(STRETCH, label="Stretch colours to each map's own range (read flat "
                                                              "maps; off: one fixed [0, 1] scale)")
                    run = gr.Button("Analyze", variant="primary")
                with gr.Column(scale=2):
                    c["summary_md"] = gr.Markdown(START, label="Summary (text)", elem_id="summary-md")
                    with gr.Tabs():
                        with gr.Tab("Kept tokens") as first_tab:
                            c["overlay"] = gr.Image(label="Kept-token overlay", type="filepath", elem_id="overlay",
                                                    show_label=False)
                        with gr.Tab("Entropy Ĥ") as t_entropy:
                            c["entropy"] = gr.Image(label="Entropy heatmaps", type="filepath", show_label=False)
                        with gr.Tab("Gradient Ĝ") as t_gradient:
                            c["gradient"] = gr.Image(label="Gradient heatmaps", type="filepath", show_label=False)
                        with gr.Tab("Score S") as t_score:
                            c["score"] = gr.Image(label="Fused score heatmaps", type="filepath", show_label=False)
                        with gr.Tab("Frame") as t_frame:
                            c["frame_index"] = gr.Slider(0, DEFAULT_FRAMES - 1, 0, step=1, label="Frame",
                                                         elem_id="frame-index")
                            c["frame_img"] = gr.Image(label="One frame: maps and kept tokens", type="filepath",
                                                      show_label=False, elem_id="frame-img")
                        with gr.Tab("Latency") as t_latency:
                            lat_btn = gr.Button("Measure selection latency vs retention")
                            c["lat_plot"] = gr.Plot(label="Latency")
                        with gr.Tab("Ask the video") as t_ask:
                            gr.Markdown(f"A {FAMILY_LABELS} model answers twice: with every video token "
                                        "and with the ones ENTROPY-SELECT keeps at the retention and settings on the "
                                        "left (selected on the model's own video features). Needs the model's "
                                        "weights: a hub id on a machine with network access, or a local folder.")
                            model_value, model_note = self.ask_model_default()
                            gr.Markdown(model_note, visible=bool(model_note), elem_id="model-note")
                            c["question"] = gr.Textbox(label="Question", value="What happens in this video?")
                            c["model"] = gr.Dropdown(self.model_choices(), value=model_value,
                                                     allow_custom_value=True, label="Model (hub id or local folder)",
                                                     info=self.model_availability())
                            ask_btn = gr.Button("Ask", variant="primary")
                            with gr.Row():
                                c["full_md"] = gr.Markdown(label="Answer with all video tokens")
                                c["comp_md"] = gr.Markdown(label="Answer with the kept tokens")
                            c["ask_json"] = gr.JSON(label="Answers and timings")
                        with gr.Tab("Compare") as t_compare:
                            gr.Markdown("Other methods at the retention on the left, on the same features. "
                                        "**Coverage** = mean over all tokens of the best cosine similarity to a "
                                        "kept row: a proxy for what the rows still represent, not accuracy.")
                            c["methods"] = gr.CheckboxGroup(list(METHODS), value=list(DEFAULT_METHODS),
                                                            label="Methods")
                            with gr.Row():
                                compare_btn = gr.Button("Compare", variant="primary", elem_id="compare-btn")
                                sweep_btn = gr.Button("Sweep retention 0.05–0.9", elem_id="sweep-btn")
                                answers_btn = gr.Button("Answer with each method (the Ask tab's model)")
                            # the sweep's chart right under its button: its progress shows where the user looks
                            c["sweep_plot"] = gr.Plot(label="Coverage and time against retention", elem_id="sweep")
                            c["compare_table"] = gr.Dataframe(headers=list(TABLE), label="Methods at this retention",
                                                              interactive=False, elem_id="compare-table")
                            c["compare_json"] = gr.JSON(label="Methods at this retention (JSON)")
                            gr.Markdown("**Kept tokens per method**")
                            c["compare_gallery"] = gr.Gallery(label="Kept tokens per method", columns=1,
                                                              height="auto", show_label=False)
                            c["compare_answers"] = gr.JSON(label="Answers: KL of the first token from the full "
                                                                 "answer's, same answer, time to first token")
                        with gr.Tab("Downloads") as downloads_tab:
                            c["json_file"] = gr.File(label="Selection (JSON)", elem_id="json-file")
                            c["npz_file"] = gr.File(label="Selection (NPZ)", elem_id="npz-file")
                            c["summary"] = gr.JSON(label="Summary")
                    c["budgets"] = gr.Plot(empty_chart("Frame budgets: pick an example or upload a video"),
                                           label="Frame budgets", elem_id="budgets")
            self.wire(run, examples if EXAMPLES else None, downloads_tab,
                      [first_tab, t_entropy, t_gradient, t_score, t_frame, t_latency, t_ask, t_compare],
                      lat_btn, compare_btn, sweep_btn, answers_btn, ask_btn)
        demo.explorer = self  # type: ignore[attr-defined]  # tests and scripts reach the handlers through it
        return demo

    def wire(self, run: Any, examples: Any, downloads_tab: Any, other_tabs: list, lat_btn: Any, compare_btn: Any,
             sweep_btn: Any, answers_btn: Any, ask_btn: Any) -> None:
        """The page's events. Every event names each output it answers: a handler returns a value or gr.skip()
        for it (see `guard`)."""
        c, s, d = self.c, self.settings, self.config_cls()
        ks = list(self.knobs.values())
        views = [c[n] for n in VIEWS]
        c["shown"] = gr.State({})  # keys of the maps on the page and the settings they show (a few small values)
        downloads_open = gr.State(False)  # the Downloads tab is open: the page's path writes the files too
        c["compare_on"] = gr.State(False)  # the Compare tab shows results: a retention move re-runs the methods
        # the endpoints take explicit values of log-scale knobs: hidden numbers follow their sliders
        api = {n: c[n] for n in ("video", "retention", "num_frames", "encoder", "stretch", "question", "model")}
        for n, k in self.knobs.items():
            if k.log:
                api[n] = gr.Number(getattr(d, n), visible=False)
                c[n].change(_show_log_value(n), c[n], [c[n + "_text"], api[n]], api_visibility="private",
                            queue=False)
            else:
                api[n] = c[n]
        api["max_new_tokens"] = gr.Number(64, visible=False, precision=0)
        api["methods"] = gr.Textbox(",".join(DEFAULT_METHODS), visible=False)
        # the API endpoints, each on a trigger of its own (clients call them by name; the page's buttons below run
        # the page's own handlers)
        hidden = {name: gr.Button(visible=False) for name in ("analyze", "compare", "ask")}
        hidden["analyze"].click(self.analyze_endpoint,
                                [api[n] for n in inspect.signature(self.analyze_endpoint).parameters
                                 if n != "progress"], views, api_name="analyze", concurrency_limit=s.concurrency,
                                concurrency_id="compute", time_limit=s.time_limit)
        compare_inputs = [api[n] for n in inspect.signature(self.compare_endpoint).parameters if n != "progress"]
        compare_outputs = [c["compare_gallery"], c["compare_json"]]
        hidden["compare"].click(self.compare_endpoint, compare_inputs, compare_outputs, api_name="compare",
                                concurrency_limit=s.concurrency, concurrency_id="compute", time_limit=s.time_limit)
        ask_inputs = [api[n] for n in inspect.signature(self.ask_endpoint).parameters if n != "progress"]
        ask_outputs = [c["full_md"], c["comp_md"], c["ask_json"]]
        hidden["ask"].click(self.ask_endpoint, ask_inputs, ask_outputs, api_name="ask", concurrency_limit=1,
                            concurrency_id="vlm", time_limit=s.time_limit)

        # the page's path: every setting, the video box and Analyze run ui_run
        ui_inputs = [c[n.removeprefix("log_")] for n in self.ui_fields]
        settings = [c["retention"], c["num_frames"], c["stretch"], *[c[k.name] for k in ks]]
        page_outputs = [c["video"], *views, c["frame_index"], *settings, c["shown"]]
        shown_on = [c[n] for n in VIEWS if n not in ("json_file", "npz_file", "summary")]  # progress only here
        triggers = [run.click, c["video"].change, c["retention"].release, c["num_frames"].release,
                    c["encoder"].change, c["stretch"].change]
        for k in ks:
            comp = c[k.name]
            triggers += [comp.change] if k.ui == "checkbox" else [comp.submit, comp.blur] if k.ui == "number" \
                else [comp.release]
        gr.on(triggers, self.ui_run, [*ui_inputs, c["shown"], downloads_open], page_outputs,
              api_visibility="private", concurrency_limit=s.concurrency, concurrency_id="compute",
              trigger_mode="always_last", time_limit=s.time_limit,
              # the runtime in a corner and gr.Progress's bar and text while they come, but no overlay on each
              # view: moves of τ reach the page sooner (docs/benchmarks.md)
              show_progress="minimal", show_progress_on=shown_on).then(
            self.frame_view, [*ui_inputs, c["shown"]], c["frame_img"], api_visibility="private",
            show_progress="hidden")
        if examples is not None:
            examples.select(self.example_run, [*ui_inputs, c["shown"], downloads_open], page_outputs,
                            api_visibility="private", concurrency_limit=s.concurrency, concurrency_id="compute",
                            time_limit=s.time_limit, show_progress="minimal", show_progress_on=shown_on).then(
                self.frame_view, [*ui_inputs, c["shown"]], c["frame_img"], api_visibility="private",
                show_progress="hidden")
        c["video"].clear(self.reset, None, [*page_outputs[1:], c["frame_img"], c["lat_plot"], c["compare_gallery"],
                                            c["compare_json"], c["compare_table"], c["sweep_plot"],
                                            c["compare_answers"], *ask_outputs, c["compare_on"]],
                         api_visibility="private", queue=False)
        downloads_tab.select(lambda: True, None, downloads_open, api_visibility="private", queue=False).then(
            self.downloads, [*ui_inputs, c["shown"]], [c["json_file"], c["npz_file"]], api_visibility="private",
            concurrency_id="compute")
        for tab in other_tabs:
            tab.select(lambda: False, None, downloads_open, api_visibility="private", queue=False)
        c["frame_index"].release(self.frame_view, [*ui_inputs, c["shown"]], c["frame_img"],
                                 api_visibility="private", concurrency_id="compute")
        lat_btn.click(self.latency, ui_inputs, c["lat_plot"], api_visibility="private", concurrency_id="compute")

        # the Compare tab
        c["methods"].change(lambda m: ",".join(m), c["methods"], api["methods"], api_visibility="private",
                            queue=False)
        compare_btn.click(self.compare_page, compare_inputs, compare_outputs, api_visibility="private",
                          concurrency_limit=s.concurrency, concurrency_id="compute", time_limit=s.time_limit
                          ).then(lambda: True, None, c["compare_on"], api_visibility="private", queue=False)
        c["compare_json"].change(_table, c["compare_json"], c["compare_table"], api_visibility="private",
                                 queue=False)
        c["retention"].release(self.compare_if_shown, [c["compare_on"], *compare_inputs], compare_outputs,
                               api_visibility="private", concurrency_id="compute", show_progress="hidden")
        sweep_btn.click(self.sweep, [c["video"], api["methods"], c["num_frames"], c["encoder"]], c["sweep_plot"],
                        api_visibility="private", concurrency_id="compute", show_progress="full")
        answers_btn.click(self.compare_answers, [c["video"], c["question"], c["retention"], c["model"],
                                                 api["methods"], c["num_frames"]], c["compare_answers"],
                          api_visibility="private", concurrency_limit=1, concurrency_id="vlm",
                          time_limit=s.time_limit)
        ask_btn.click(self.ask_page, ask_inputs, ask_outputs, api_visibility="private", concurrency_limit=1,
                      concurrency_id="vlm", time_limit=s.time_limit)


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

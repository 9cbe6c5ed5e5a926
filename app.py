"""ENTROPY-SELECT Explorer: see, frame by frame, what the selector keeps and why.

UI wiring only: the pipeline is selector.service, the views are viz. Run: python app.py
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import os
import threading
from pathlib import Path
from typing import Any

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # offline by default: no calls home

import gradio as gr  # noqa: E402
import gradio.utils  # noqa: E402
import torch  # noqa: E402
from selector.core import MAP_FIELDS
from selector.service import MAX_FRAMES, RETENTIONS, Analysis, Params, analyze, latency_rows

from selector import SelectorConfig, SelectorError
from selector.app.files import OutputFiles
from selector.cpu_tuning import tune_malloc
from selector.encoders import DEFAULT_ENCODER, EncoderError, available_encoders
from selector.export import finite, to_json, to_npz
from selector.limits import TimeLimitError, time_limit
from selector.video import VideoError, describe, read_clip
from selector.vlm import DEFAULT_VLM, KNOWN_VLMS, VLMError, load_vlm
from viz import latency_chart, render_frame, render_views, summary_markdown, thumbnails

log = logging.getLogger("entropy_select.app")
ROOT = Path(__file__).resolve().parent
SAMPLE = ROOT / "assets" / "bigbuckbunny.mp4"
MAX_UPLOAD = os.environ.get("ENTROPY_SELECT_MAX_UPLOAD", "200mb")
QUEUE_SIZE = int(os.environ.get("ENTROPY_SELECT_QUEUE", "32"))
CONCURRENCY = int(os.environ.get("ENTROPY_SELECT_CONCURRENCY", "2"))
TIME_LIMIT = float(os.environ.get("ENTROPY_SELECT_TIME_LIMIT", "300"))  # seconds per compute request
OUT = OutputFiles()  # every file handed out: written once, complete, private (0700/0600), under fresh names
USER_ERRORS = (SelectorError, VideoError, EncoderError, VLMError, TimeLimitError)

try:  # on a Hugging Face ZeroGPU Space the compute runs inside spaces.GPU; elsewhere it is a no-op
    import spaces

    gpu = spaces.GPU
except ImportError:
    def gpu(fn):  # type: ignore[no-redef]
        return fn

INTRO = """# ENTROPY-SELECT Explorer
Training-free video-token compression: every token is scored by the **entropy of its similarity to its
spatio-temporal neighbours** (Ĥ) fused with the **feature gradient** (Ĝ), frames get budgets by saliency,
and grid quotas keep coverage. Upload a video or pick the example, then move the sliders: only the
selector re-runs, on features computed once."""


_THUMBS: dict[tuple, Any] = {}
_THUMBS_LOCK = threading.Lock()


def _thumbs(a: Analysis) -> Any:
    key = (a.features.digest, a.features.clip.frames.shape)
    with _THUMBS_LOCK:
        hit = _THUMBS.get(key)
    if hit is None:
        hit = thumbnails(a.features.clip.frames)
        with _THUMBS_LOCK:
            if len(_THUMBS) >= 8:
                _THUMBS.pop(next(iter(_THUMBS)))
            _THUMBS[key] = hit
    return hit


def _downloads(a: Analysis) -> tuple[str, str]:
    folder = OUT.folder()
    stem = f"selection-{a.features.digest[:10]}"
    extra = {"encoder": a.features.encoder, "video_digest": a.features.digest}
    return (OUT.write(folder, f"{stem}.json", lambda p: to_json(a.selection, p, extra)),
            OUT.write(folder, f"{stem}.npz", lambda p: to_npz(a.selection, p, extra)))


ALLOW_ANY_MODEL = os.environ.get("ENTROPY_SELECT_ALLOW_ANY_MODEL", "") == "1"
EXTRA_MODELS = {m.strip() for m in os.environ.get("ENTROPY_SELECT_MODEL_ALLOWLIST", "").split(",") if m.strip()}


def _allowed(kind: str, name: str, known: set[str]) -> str:
    """Public servers load only known encoders/models (or those the operator lists); never remote code."""
    if ALLOW_ANY_MODEL or name in known or name in EXTRA_MODELS:
        return name
    raise SelectorError(f"{kind} '{name}' is not on this server's allowlist ({', '.join(sorted(known))}); the "
                        "operator can add it with ENTROPY_SELECT_MODEL_ALLOWLIST or open the list with "
                        "ENTROPY_SELECT_ALLOW_ANY_MODEL=1")


_D = SelectorConfig()


def _params(retention, alpha, tau, window, temporal_window, grid, num_frames, encoder, past_window=_D.past_window,
            rho=_D.rho, grid_fusion=_D.grid_fusion, q=_D.q, tau_alloc=_D.tau_alloc, min_tokens=_D.min_tokens,
            max_tokens=0) -> Params:
    def whole(name: str, v: Any) -> int:
        if v is None or isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v != int(v):
            raise SelectorError(f"{name} must be a whole number, got {v!r}")
        return int(v)

    def real(name: str, v: Any) -> float:
        if v is None or isinstance(v, bool) or not isinstance(v, (int, float)):
            raise SelectorError(f"{name} must be a number, got {v!r}")
        return float(v)

    if encoder is not None and not isinstance(encoder, str):
        raise SelectorError(f"encoder must be the name of an encoder, got {type(encoder).__name__} {encoder!r}")
    return Params(retention=real("retention", retention), alpha=real("alpha", alpha), tau=real("tau", tau),
                  window=whole("window", window), temporal_window=whole("temporal_window", temporal_window),
                  past_window=whole("past_window", past_window), grid=whole("grid", grid), rho=real("rho", rho),
                  grid_fusion=bool(grid_fusion), q=real("q", q), tau_alloc=real("tau_alloc", tau_alloc),
                  min_tokens=whole("min_tokens", min_tokens),
                  max_tokens=None if max_tokens in (None, 0) else whole("max_tokens", max_tokens),
                  num_frames=whole("num_frames", num_frames),
                  encoder=_allowed("encoder", (encoder or DEFAULT_ENCODER).strip(),
                                   set(available_encoders()) | {DEFAULT_ENCODER}))


def _uploaded(video: str | None) -> str:
    """The handlers read uploads (gradio's upload folder) and the bundled examples, nothing else: a client
    that names a server path gets a refusal that does not reveal whether the path exists."""
    if not video:
        raise gr.Error("Upload a video or pick the example first.")
    refused = gr.Error("Only uploaded files (or the bundled example) can be analyzed.")
    if not isinstance(video, str) or "\0" in video:
        raise refused
    real = os.path.realpath(video)
    roots = [os.path.realpath(gradio.utils.get_upload_folder()), os.path.realpath(ROOT / "assets")]
    if not any(real.startswith(r + os.sep) for r in roots):
        raise refused
    return real


def _limited(fn):
    """Run a compute handler under the server's time limit (checked between decoded frames, encoder batches
    and generated tokens; gradio's own time_limit covers streaming events only)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with time_limit(TIME_LIMIT):
            return fn(*args, **kwargs)
    return wrapper


def _map_keys(a: Analysis, stretch: bool) -> dict[str, tuple]:
    """What the map images depend on: the entropy and gradient stay the same when only r, α, ρ or g move, the
    score S = αĤ + (1-α)Ĝ when only r, ρ, g or grid fusion move."""
    base = (a.features.digest, a.features.encoder, a.params.num_frames, stretch)
    entropy = (*base, *(getattr(a.params, f) for f in MAP_FIELDS))
    return {"entropy": entropy, "gradient": base, "score": (*entropy, a.params.alpha)}


def _run(video: str | None, p: Params, stretch: bool, progress: gr.Progress, files: bool = True,
         shown: dict | None = None) -> tuple[Analysis | None, list]:
    """Analysis + views. `shown` (UI only) holds the keys of the maps the page already shows (and the video
    they are of): those are neither redrawn nor re-sent (gr.skip), which keeps slider moves fast. With `shown`,
    settings the selector refuses for the video on the page keep its views (see _refused)."""
    video = _uploaded(video)
    try:
        a = analyze(video, p, progress=lambda f, msg: progress(f, desc=msg))
    except SelectorError as e:
        if shown is not None:
            return None, _refused(e, video, shown)
        raise gr.Error(str(e)) from None
    except USER_ERRORS as e:
        raise gr.Error(str(e)) from None
    except (MemoryError, torch.cuda.OutOfMemoryError):
        raise gr.Error("Out of memory for this video: try fewer frames or a smaller encoder.") from None
    except Exception as e:  # never a traceback in the page; the log keeps it
        log.exception("analysis failed")
        raise gr.Error(f"Internal error ({type(e).__name__}); the server log has the details.") from None
    if not a.features.from_cache or any("capped" in n for n in a.notes):
        for note in a.notes:
            gr.Warning(note)
    keys = _map_keys(a, stretch)
    skip = frozenset(k for k, v in keys.items() if shown is not None and shown.get(k) == v)
    v = render_views(_thumbs(a), a.selection, stretch, a.features.clip.timestamps, skip)
    summary = a.summary()
    summary["render_ms"] = round(v.render_ms, 1)
    summary["video"] = describe(a.features.clip)
    folder = OUT.folder()
    images = {"overlay": v.overlay, "entropy": v.entropy, "gradient": v.gradient, "score": v.score}
    paths = {k: gr.skip() if img is None else OUT.image(folder, k, img) for k, img in images.items()}
    outputs = [summary_markdown(summary, v.notes), paths["overlay"], paths["entropy"], paths["gradient"],
               paths["score"], v.budgets, finite(summary)]
    if files:
        outputs += list(_downloads(a))
    if shown is not None:
        outputs.append({**keys, "video": video})
    return a, outputs


def _refused(e: Exception, video: str | None, shown: dict) -> list:
    """The slider path's answer to settings the selector refuses (B_max too small for r, B_max < B_min, q ≤ 0 …):
    when the page already shows this video's views, they stay and the summary says that the new settings were not
    applied and why; with nothing (or another video) on the page, the error alone."""
    if not shown or shown.get("video") != video:
        raise gr.Error(str(e))
    gr.Warning(f"Not applied: {e}")
    note = (f"⚠️ **Not applied:** {e}. The views below still show the last settings that worked; change the "
            "settings named here to go on.")
    return [note, *[gr.skip()] * 6, shown]


@gpu
@_limited
def analyze_endpoint(video: str, retention: float = 0.35, alpha: float = _D.alpha, tau: float = _D.tau,
                     window: int = _D.window, temporal_window: int = _D.temporal_window, grid: int = _D.grid,
                     num_frames: int = 16, encoder: str = DEFAULT_ENCODER, past_window: int = _D.past_window,
                     rho: float = _D.rho, grid_fusion: bool = _D.grid_fusion, stretch: bool = False,
                     q: float = _D.q, tau_alloc: float = _D.tau_alloc, min_tokens: int = _D.min_tokens,
                     max_tokens: int = 0,
                     progress: gr.Progress = gr.Progress()) -> list:  # noqa: B008  (gradio's way to ask for progress)
    """Decode + encode (cached by file content) and run ENTROPY-SELECT; returns the views and a JSON summary.
    q, tau_alloc, min_tokens and max_tokens (0: no cap) are the frame-budget knobs (the page's "Frame budgets")."""
    try:
        p = _params(retention, alpha, tau, window, temporal_window, grid, num_frames, encoder, past_window, rho,
                    grid_fusion, q, tau_alloc, min_tokens, max_tokens)
    except USER_ERRORS as e:
        raise gr.Error(str(e)) from None
    _, outputs = _run(video, p, bool(stretch), progress)
    return outputs


#: the page's inputs that every UI handler takes, in this order (build_demo wires them by these names)
UI_FIELDS = ("video", "retention", "alpha", "log_tau", "window", "temporal_window", "grid", "num_frames", "encoder",
             "past_window", "rho", "grid_fusion", "stretch", "frame_index", "q", "tau_alloc", "min_tokens",
             "max_tokens")
#: the ones that decide the analysis (not how it is drawn)
PARAM_FIELDS = tuple(n for n in UI_FIELDS if n not in ("video", "stretch", "frame_index"))


def _ui_values(ui: tuple) -> dict:
    """The UI handlers' positional inputs by name (UI_FIELDS)."""
    if len(ui) != len(UI_FIELDS):
        raise TypeError(f"expected the {len(UI_FIELDS)} page inputs {UI_FIELDS}, got {len(ui)} values")
    return dict(zip(UI_FIELDS, ui, strict=True))


def _raw_params(u: dict) -> Params:
    """Params from the page's values by name (τ from its log10 slider); SelectorError names a refused value."""
    v = {n: u[n] for n in PARAM_FIELDS}
    v["tau"] = 10.0 ** float(v.pop("log_tau"))
    return _params(**v)


@_limited
def _ui_run(video, retention, alpha, log_tau, window, temporal_window, grid, num_frames, encoder, past_window, rho,
            grid_fusion, stretch, frame_index, q, tau_alloc, min_tokens, max_tokens, shown,
            progress: gr.Progress = gr.Progress()):  # noqa: B008
    """Slider path: views first; the frame view and the download files follow in a chained event. Its
    parameters are UI_FIELDS spelled out (gradio finds `progress` among positional parameters only)."""
    u = dict(zip(UI_FIELDS, (video, retention, alpha, log_tau, window, temporal_window, grid, num_frames, encoder,
                             past_window, rho, grid_fusion, stretch, frame_index, q, tau_alloc, min_tokens,
                             max_tokens), strict=True))
    shown = shown or {}
    try:
        p = _raw_params(u)
    except SelectorError as e:
        return _refused(e, _uploaded(video) if shown else None, shown)
    except USER_ERRORS as e:
        raise gr.Error(str(e)) from None
    return _run(video, p, bool(stretch), progress, files=False, shown=shown)[1]


def _analysis(u: dict) -> Analysis | None:
    """The (cached) analysis for the page's values, None without a video; raises USER_ERRORS unconverted."""
    return analyze(_uploaded(u["video"]), _raw_params(u)) if u["video"] else None


def _cached_analysis(u: dict) -> Analysis | None:
    try:
        return _analysis(u)
    except USER_ERRORS as e:
        raise gr.Error(str(e)) from None


@_limited
def _frame_view(*ui):
    u = _ui_values(ui)
    try:
        a = _analysis(u)
    except SelectorError:  # settings refused: the slider path's summary says so, and the frame shown stays
        return gr.skip()
    except USER_ERRORS as e:
        raise gr.Error(str(e)) from None
    if a is None:
        return None
    frames = a.features.clip.frames
    i = min(int(u["frame_index"]), len(frames) - 1)
    return OUT.image(OUT.folder(), f"frame-{i}", render_frame(frames[i], a.selection, i, bool(u["stretch"])))


@_limited
def _downloads_ui(*ui):
    """Download files for the selection now shown, written when the Downloads tab is opened (not on every
    slider move: they cost ~0.2 s of CPU that the views need more)."""
    a = _cached_analysis(_ui_values(ui))
    if a is None:
        return None, None
    return _downloads(a)


@_limited
def _latency(*ui):
    a = _cached_analysis(_ui_values(ui))
    if a is None:
        raise gr.Error("Upload a video or pick the example first.")
    try:
        rows = latency_rows(a.features, a.params.config())
    except USER_ERRORS as e:
        raise gr.Error(str(e)) from None
    left_out = [r for r in RETENTIONS if r not in {row["retention"] for row in rows}]
    note = (f"retention {', '.join(map(str, left_out))} left out: more tokens than B_max = {a.params.max_tokens} "
            "a frame allows" if left_out else "")
    return latency_chart(rows, note)


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


@gpu
@_limited
def ask_endpoint(video: str, question: str, retention: float = 0.35, model: str = "", num_frames: int = 16,
                 max_new_tokens: int = 64, alpha: float = _D.alpha, tau: float = _D.tau, window: int = _D.window,
                 temporal_window: int = _D.temporal_window, grid: int = _D.grid, past_window: int = _D.past_window,
                 rho: float = _D.rho, grid_fusion: bool = _D.grid_fusion, q: float = _D.q,
                 tau_alloc: float = _D.tau_alloc, min_tokens: int = _D.min_tokens, max_tokens: int = 0,
                 progress: gr.Progress = gr.Progress()) -> list:  # noqa: B008
    """Answer a question about the video twice: with all video tokens and with the ENTROPY-SELECT ones. The
    selector knobs are the page's (the sliders; SelectorConfig's defaults through the API unless given); the
    selection runs on the VLM's own video features, not on the views' encoder."""
    video = _uploaded(video)
    try:
        p = _params(retention, alpha, tau, window, temporal_window, grid, num_frames, None, past_window, rho,
                    grid_fusion, q, tau_alloc, min_tokens, max_tokens)
        cfg = p.config()  # bad knobs are named before a model is loaded
        n_new = int(max_new_tokens)
        if not 1 <= n_new <= 512:
            raise SelectorError(f"max_new_tokens must be in [1, 512], got {max_new_tokens}")
        name = _allowed("model", (model or DEFAULT_VLM).strip(), {DEFAULT_VLM, *KNOWN_VLMS})
        progress(0.0, desc=f"loading {name}")
        vlm = load_vlm(name)
        frames = read_clip(video, min(p.num_frames, MAX_FRAMES)).frames
        progress(0.3, desc=f"answering with all video tokens, then with {p.retention:.0%} of them")
        full, comp = vlm.compare(frames, question, p.retention, cfg, max_new_tokens=n_new)
    except USER_ERRORS as e:
        raise gr.Error(str(e)) from None
    except (MemoryError, torch.cuda.OutOfMemoryError):
        raise gr.Error("Out of memory while answering: try fewer frames or a smaller model.") from None
    except Exception as e:
        log.exception("ask failed")
        raise gr.Error(f"Internal error ({type(e).__name__}); the server log has the details.") from None
    summary = {"model": vlm.name, "device": str(vlm.device),
               "llm_prefill": "CUDA graphs" if vlm.prefill is not None else "stock forward", "full": _answer_dict(full),
               "compressed": _answer_dict(comp), "retention": p.retention}
    if comp.selection is not None:  # what the compressed answer was given: the selector's config and budgets
        summary["config"] = dataclasses.asdict(comp.selection.config)
        summary["frame_budgets"] = [int(b) for b in comp.selection.budgets.tolist()]
    return [_answer_md("All video tokens", full), _answer_md(f"ENTROPY-SELECT, r = {p.retention:g}", comp),
            finite(summary)]


def _example(video: str) -> list:
    return analyze_endpoint(video, encoder=DEFAULT_ENCODER)


class _Blocks(gr.Blocks):
    """gr.Blocks whose refusals of a request's raw inputs (wrong count, a path not uploaded, malformed file data)
    reach the user as the app's own sentences, never as gradio's internals (reprs, server paths, pydantic)."""

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
        return "Only uploaded files (or the bundled example) can be analyzed."
    return "The request's inputs could not be read: give each the type the API page lists (a video as an upload)."


def build_demo() -> gr.Blocks:
    encoders = list(available_encoders())
    with _Blocks(title="ENTROPY-SELECT Explorer", delete_cache=(1800, 3600)) as demo:
        gr.Markdown(INTRO)
        with gr.Row():
            with gr.Column(scale=1, min_width=320) as left:
                video = gr.Video(label="Video", sources=["upload"], height=260)
                retention = gr.Slider(0.01, 1.0, 0.35, step=0.01, label="Retention r (fraction of tokens kept)")
                alpha = gr.Slider(0.0, 1.0, 0.5, step=0.05, label="α: weight of entropy vs gradient")
                log_tau = gr.Slider(-2.0, 0.7, 0.0, step=0.05, label="log₁₀ τ (τ from 0.01 to 5; 0 → τ = 1)")
                tau_text = gr.Markdown("τ = 1")
                with gr.Accordion("Windows, grid, frames, encoder", open=True):
                    window = gr.Slider(3, 9, 5, step=2, label="Spatial window k (odd)")
                    temporal_window = gr.Slider(1, 4, 3, step=1, label="Temporal window K_t (past frames + 1)")
                    past_window = gr.Slider(1, 5, 3, step=2, label="Past-frame window k_past (odd)")
                    grid = gr.Slider(1, 8, 4, step=1, label="Grid g (g×g coverage cells)")
                    rho = gr.Slider(0.0, 1.0, 0.5, step=0.05, label="ρ: share of each budget spread over cells")
                    grid_fusion = gr.Checkbox(False, label="Grid fusion (merge each cell's dropped tokens)")
                    num_frames = gr.Slider(4, MAX_FRAMES, 16, step=1, label="Frames sampled")
                    encoder = gr.Dropdown(encoders, value=DEFAULT_ENCODER, allow_custom_value=True,
                                          label="Encoder (offline: dinov2-s, efficientnet-lite0; others need the hub)")
                with gr.Accordion("Frame budgets: q, τ_alloc, B_min, B_max (Enter or leave a field to apply)",
                                  open=False):
                    q_in = gr.Number(_D.q, label="q: share of a frame's best tokens in its saliency S̄_f")
                    tau_alloc_in = gr.Number(_D.tau_alloc, label="τ_alloc: temperature of the budget softmax")
                    min_tokens_in = gr.Number(_D.min_tokens, precision=0, label="B_min: tokens every frame keeps")
                    max_tokens_in = gr.Number(_D.max_tokens or 0, precision=0,
                                              label="B_max: most tokens a frame keeps (0: no cap)")
                stretch = gr.Checkbox(False, label="Stretch colours to each map's own range (read flat maps)")
                run = gr.Button("Analyze", variant="primary")
            with gr.Column(scale=2):
                summary_md = gr.Markdown("Upload a video or pick the example to start.")
                with gr.Tabs():
                    with gr.Tab("Kept tokens"):
                        overlay = gr.Image(label="Kept-token overlay", type="pil", format="jpeg", elem_id="overlay")
                    with gr.Tab("Entropy Ĥ"):
                        entropy = gr.Image(label="Entropy heatmaps", type="pil", format="jpeg")
                    with gr.Tab("Gradient Ĝ"):
                        gradient = gr.Image(label="Gradient heatmaps", type="pil", format="jpeg")
                    with gr.Tab("Score S"):
                        score = gr.Image(label="Fused score heatmaps", type="pil", format="jpeg")
                    with gr.Tab("Frame"):
                        frame_index = gr.Slider(0, MAX_FRAMES - 1, 0, step=1, label="Frame")
                        frame_img = gr.Image(label="One frame: maps and kept tokens", type="pil", format="jpeg")
                    with gr.Tab("Latency"):
                        lat_btn = gr.Button("Measure selection latency vs retention")
                        lat_plot = gr.Plot(label="Latency")
                    with gr.Tab("Ask the video"):
                        gr.Markdown("A LLaVA-OneVision or Qwen2.5-VL model answers twice: with every video token "
                                    "and with the ones ENTROPY-SELECT keeps at the retention and settings on the "
                                    "left (selected on the model's own video features). Needs the model's weights: "
                                    "a hub id on a machine with network access, or a local folder.")
                        question = gr.Textbox(label="Question", value="What happens in this video?")
                        vlm_id = gr.Textbox(label="Model (hub id or local folder)", value=DEFAULT_VLM)
                        ask_btn = gr.Button("Ask", variant="primary")
                        with gr.Row():
                            full_md = gr.Markdown()
                            comp_md = gr.Markdown()
                        ask_json = gr.JSON(label="Answers and timings")
                    with gr.Tab("Downloads") as downloads_tab:
                        json_file = gr.File(label="Selection (JSON)")
                        npz_file = gr.File(label="Selection (NPZ)")
                        summary_json = gr.JSON(label="Summary")
                budgets = gr.Plot(label="Frame budgets")

        views = [summary_md, overlay, entropy, gradient, score, budgets, summary_json, json_file, npz_file]
        with left:
            # computed on first use with the default parameters, then served from gradio's cache
            gr.Examples(examples=[[str(SAMPLE)]], inputs=[video], outputs=views, fn=_example,
                        label="Example (Big Buck Bunny, CC-BY 3.0)", cache_examples=True, cache_mode="lazy")
        shown = gr.State({})  # keys of the maps on the page (a few short tuples per session)
        budget_knobs = [q_in, tau_alloc_in, min_tokens_in, max_tokens_in]
        named = {"video": video, "retention": retention, "alpha": alpha, "log_tau": log_tau, "window": window,
                 "temporal_window": temporal_window, "grid": grid, "num_frames": num_frames, "encoder": encoder,
                 "past_window": past_window, "rho": rho, "grid_fusion": grid_fusion, "stretch": stretch,
                 "frame_index": frame_index, "q": q_in, "tau_alloc": tau_alloc_in, "min_tokens": min_tokens_in,
                 "max_tokens": max_tokens_in}
        ui_inputs = [named[n] for n in UI_FIELDS]  # the handlers read them by these names (_ui_values)
        # the scriptable endpoint: explicit τ, not its log
        api_tau = gr.Number(1.0, visible=False)
        run.click(analyze_endpoint, [video, retention, alpha, api_tau, window, temporal_window, grid, num_frames,
                                     encoder, past_window, rho, grid_fusion, stretch, *budget_knobs], views,
                  api_name="analyze",
                  concurrency_limit=CONCURRENCY, concurrency_id="compute", time_limit=TIME_LIMIT)
        log_tau.change(lambda x: (f"τ = {10 ** x:.3g}", 10 ** x), log_tau, [tau_text, api_tau],
                       api_visibility="private", queue=False)
        gr.on([video.change, retention.release, alpha.release, log_tau.release, window.release,
               temporal_window.release, past_window.release, grid.release, rho.release, num_frames.release,
               grid_fusion.change, stretch.change, encoder.change,
               *(ev for knob in budget_knobs for ev in (knob.submit, knob.blur))],
              _ui_run, [*ui_inputs, shown], [*views[:7], shown], api_visibility="private",
              concurrency_limit=CONCURRENCY, concurrency_id="compute", trigger_mode="always_last",
              time_limit=TIME_LIMIT,
              # the runtime in a corner and gr.Progress's bar and text (decoding, encoding frames k/n) while they
              # come, but no overlay on each view: moves of τ reach the page 50-100 ms sooner (docs/benchmarks.md)
              show_progress="minimal").then(
            _frame_view, ui_inputs, frame_img, api_visibility="private", show_progress="hidden")
        downloads_tab.select(_downloads_ui, ui_inputs, [json_file, npz_file], api_visibility="private",
                             concurrency_id="compute")
        frame_index.release(_frame_view, ui_inputs, frame_img, api_visibility="private",
                            concurrency_id="compute")
        lat_btn.click(_latency, ui_inputs, lat_plot, api_visibility="private", concurrency_id="compute")
        max_new = gr.Number(64, visible=False, precision=0)
        ask_btn.click(ask_endpoint, [video, question, retention, vlm_id, num_frames, max_new, alpha, api_tau, window,
                                     temporal_window, grid, past_window, rho, grid_fusion, *budget_knobs],
                      [full_md, comp_md, ask_json],
                      api_name="ask", concurrency_limit=1, concurrency_id="vlm", time_limit=TIME_LIMIT)
    return demo


tune_malloc()  # large new tensors reuse freed heap instead of fresh pages (selector/cpu_tuning.py)
demo = build_demo()

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    demo.queue(max_size=QUEUE_SIZE, default_concurrency_limit=CONCURRENCY).launch(
        max_file_size=MAX_UPLOAD, show_error=False)  # users see the app's own sentences (gr.Error), no internals

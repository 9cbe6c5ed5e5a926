"""What every tab shares: the examples, the page's script and style, the Blocks subclass that words refused
requests, and the small rules of the page's handlers (an empty answer is "no change", a user error is a sentence)."""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gradio as gr
import torch

from .. import SelectorError
from ..encoders import EncoderError
from ..limits import TimeLimitError
from ..video import VideoError
from ..vlm import FAMILIES, VLMError

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

VIEWS = ("summary_md", "overlay", "entropy", "gradient", "score", "budgets", "summary", "json_file", "npz_file")


def lasting(notes: list[str]) -> list[str]:
    """The analysis notes the summary keeps showing (they also come as a pop-up when the video is first read): what
    was read differs from what was asked (fewer frames, a cap, another decoder). The downscaling note is left out:
    the summary's video line gives both sizes."""
    return [n for n in notes if getattr(n, "kind", "") != "downscaled"]


def examples_as_they_are(video: gr.Video, ours: Callable[[str], bool] = lambda path: False) -> gr.Video:
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


class Blocks(gr.Blocks):
    """gr.Blocks whose refusals of a request's raw inputs (wrong count, a path not uploaded, malformed file data)
    reach the user as the app's own sentences, never as gradio's internals (reprs, server paths, pydantic), and
    whose page carries the app's script and style however it is launched."""

    def launch(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("head", HEAD)
        kwargs.setdefault("css", CSS)
        if os.environ.get("GRADIO_MCP_SERVER", "").strip().lower() in ("1", "true", "yes", "on"):
            kwargs.setdefault("mcp_server", True)  # gradio itself reads only "true"
        if kwargs.get("mcp_server"):
            _mcp_videos_are_local()
        return super().launch(*args, **kwargs)

    async def preprocess_data(self, block_fn, inputs, state, explicit_call=False):
        try:
            return await super().preprocess_data(block_fn, inputs, state, explicit_call)
        except gr.Error:
            raise
        except Exception as e:
            log.info("request inputs refused: %s: %s", type(e).__name__, e)
            raise gr.Error(input_error(e, len(block_fn.inputs), len(inputs))) from None


#: what an MCP tool's video argument may be, and how to upload one (the tools' descriptions say the same)
MCP_VIDEO = ("the URL of a video uploaded to this server (gradio's MCP upload tool upload_file_to_gradio, or POST "
             "/gradio_api/upload, then /gradio_api/file=<the returned path>), or a bundled example's name "
             f"({', '.join(clip.name for clip, _, _ in EXAMPLES)}); no other URL is fetched")


def mcp_video(value: str) -> str:
    """The local file an MCP tool's video argument names: an upload of this server given by its /gradio_api/file=
    URL (resolved to gradio's upload folder, no request made), or a bundled example by name; anything else is
    refused with a sentence that says how to upload (raises ValueError)."""
    from urllib.parse import unquote, urlsplit

    text = value.strip()
    for clip, _, _ in EXAMPLES:
        if text in (clip.name, clip.stem, str(clip)):
            return str(clip)
    marker = "/gradio_api/file="
    if text.startswith(("http://", "https://")) and marker in text:
        path = os.path.realpath(unquote(urlsplit(text).path.split(marker, 1)[1]))
        upload = os.path.realpath(gr.utils.get_upload_folder())
        if path.startswith(upload + os.sep) and os.path.isfile(path):
            return path
    raise ValueError(f"This server fetches no URLs: give the video as {MCP_VIDEO}.")


def _mcp_videos_are_local() -> None:
    """gradio's MCP server turns a file argument given as a URL into a download by the server; here the video
    arguments go through `mcp_video` first (this server's uploads and the examples, read locally), so no request
    leaves the server and anything else is refused with the sentence above."""
    import gradio.mcp
    from gradio_client import handle_file

    cls = gradio.mcp.GradioMCPServer
    if getattr(cls, "_entropy_select", False):
        return
    original = cls.convert_strings_to_filedata

    def convert(self: Any, value: Any, positions: list) -> Any:
        if isinstance(value, dict):
            value = {k: (handle_file(mcp_video(v)) if [k] in positions and isinstance(v, str)
                         and not v.startswith("data:") else v) for k, v in value.items()}
        return original(self, value, positions)

    cls.convert_strings_to_filedata = convert
    cls._entropy_select = True


def input_error(e: Exception, wanted: int, got: int) -> str:
    if wanted != got:
        return (f"This endpoint takes {wanted} inputs and the request had {got}; gradio_client fills in the "
                "defaults, or see the API page for the full list.")
    if type(e).__name__ == "InvalidPathError":
        return "Only uploaded files (or the bundled examples) can be analyzed."
    return "The request's inputs could not be read: give each the type the API page lists (a video as an upload)."


def user_error(e: Exception) -> gr.Error:
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


def show_log_value(name: str) -> Callable[[float], Any]:
    def show(x: Any) -> Any:
        if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
            return gr.skip()  # not a number (yet): the text keeps the value the views use
        return f"{name} = {10 ** x:.3g}", 10 ** x
    return show


def no_change(result: Any) -> Any:
    """gradio reads an empty dict as one value, not as "nothing changes": a handler's {} becomes gr.skip()."""
    return gr.skip() if isinstance(result, dict) and not result else result


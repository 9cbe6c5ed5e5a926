"""Ask the video: a VLM answers with all video tokens and with the kept ones."""

from __future__ import annotations

import contextvars
import dataclasses
import inspect
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

import gradio as gr

from .. import SelectorError, hub
from ..config import Knob
from ..export import finite
from ..limits import time_limit
from ..video import read_clip
from ..vlm import known_vlms, load_vlm
from .page import FAMILY_LABELS


def streaming_md(title: str, text: str, ttft_ms: float | None, done: bool = False) -> str:
    status = "" if done else " · generating…"
    timing = "waiting for the first token" if ttft_ms is None else f"time to first token **{ttft_ms:.0f} ms**"
    return f"### {title}\n\n{text or '…'}{'' if done else ' ▌'}\n\n{timing}{status}"


def answer_md(title: str, a) -> str:
    return (f"### {title}\n\n{a.text or '*(empty answer)*'}\n\n"
            f"visual tokens **{a.visual_tokens:,}** of {a.full_visual_tokens:,} · time to first token "
            f"**{a.prefill_ms:.0f} ms** · "
            + (f"**{a.tokens_per_s:.0f} tokens/s** after it ({a.ms_per_token:.1f} ms a token, {a.decode_path}) · "
               if a.tokens_per_s else "")
            + f"total {a.total_ms:.0f} ms for {a.new_tokens} tokens"
            + (f" · (+ {a.setup_ms:.0f} ms once: CUDA graphs for this length, not counted)"
               if a.setup_ms > 0 else ""))


def answer_dict(a) -> dict:
    return {"text": a.text, "visual_tokens": a.visual_tokens, "full_visual_tokens": a.full_visual_tokens,
            "prefill_ms": round(a.prefill_ms, 2), "total_ms": round(a.total_ms, 2), "new_tokens": a.new_tokens,
            "setup_ms": round(a.setup_ms, 2), "decode_ms_per_token": None if a.ms_per_token is None
            else round(a.ms_per_token, 3), "tokens_per_s": None if a.tokens_per_s is None else round(a.tokens_per_s, 1),
            "decode_path": a.decode_path}


class AskTab:
    """A part of `Explorer` (it reads and fills the page's components in `self.c`): the handlers,
    layout and events of this tab."""

    def ask_model_default(self) -> tuple[str, str]:
        """The Ask tab's model box: the default model when it can load here, else empty with a sentence saying what
        to give instead (shown before the first question)."""
        if hub.available(self.settings.vlm):
            return self.settings.vlm, ""
        return "", (f"⚠️ The default model `{self.settings.vlm}` cannot load here: {self.model_availability()} Give a "
                    f"local folder of a {FAMILY_LABELS} checkpoint in the box below.")

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
            yield {self.c["full_md"]: streaming_md(titles["full"], *shown["full"], done=which != "full"),
                   self.c["comp_md"]: streaming_md(comp_title, *shown["comp"])}
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
        name = self.allowed("model", (model or self.settings.vlm).strip(), {self.settings.vlm, *known_vlms()})
        progress(0.0, desc=f"loading {name}")
        vlm = load_vlm(name)
        clip = read_clip(video, min(p.num_frames, self.service.max_frames))
        progress(0.3, desc=f"answering with all video tokens, then with {p.retention:.0%} of them")
        full, comp = vlm.compare(clip.frames, v["question"], p.retention, cfg, max_new_tokens=n_new,
                                 on_token=on_token, timestamps=clip.timestamps)
        summary = {"model": vlm.name, "device": str(vlm.device),
                   "llm_prefill": "CUDA graphs" if vlm.prefill is not None else "stock forward",
                   "full": answer_dict(full), "compressed": answer_dict(comp), "retention": p.retention}
        if comp.selection is not None:  # what the compressed answer was given: the selector's config and budgets
            summary["config"] = dataclasses.asdict(comp.selection.config)
            summary["frame_budgets"] = [int(b) for b in comp.selection.budgets.tolist()]
        return {self.c["full_md"]: answer_md("All video tokens", full),
                self.c["comp_md"]: answer_md(f"ENTROPY-SELECT, r = {p.retention:g}", comp),
                self.c["ask_json"]: finite(summary)}

    def _layout_ask(self) -> None:
        c = self.c
        gr.Markdown(f"A {FAMILY_LABELS} model answers twice: with every video token and with the ones "
                    "ENTROPY-SELECT keeps at the retention and settings on the left (selected on the model's own "
                    "video features). Needs the model's weights: a hub id on a machine with network access, or a "
                    "local folder.")
        model_value, model_note = self.ask_model_default()
        gr.Markdown(model_note, visible=bool(model_note), elem_id="model-note")
        c["question"] = gr.Textbox(label="Question", value="What happens in this video?")
        c["model"] = gr.Dropdown(self.model_choices(), value=model_value, allow_custom_value=True,
                                 label="Model (hub id or local folder)", info=self.model_availability())
        c["ask_btn"] = gr.Button("Ask", variant="primary")
        with gr.Row():
            c["full_md"] = gr.Markdown(label="Answer with all video tokens")
            c["comp_md"] = gr.Markdown(label="Answer with the kept tokens")
        c["ask_json"] = gr.JSON(label="Answers and timings")

    def _wire_ask(self, api: dict) -> None:
        c, s = self.c, self.settings
        ask_inputs = [api[n] for n in inspect.signature(self.ask_endpoint).parameters if n != "progress"]
        c["ask_btn"].click(self.ask_page, ask_inputs, [c["full_md"], c["comp_md"], c["ask_json"]],
                           api_visibility="private", concurrency_limit=1, concurrency_id="vlm",
                           time_limit=s.time_limit)

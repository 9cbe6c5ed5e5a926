"""Ask a video: a stock LLaVA-OneVision or Qwen2.5-VL (transformers) answers with the ENTROPY-SELECT tokens.

Route, with no patching of library classes: the model's own `get_video_features` gives the pooled
video tokens (LLaVA-OneVision: T·h'·w' rows + one newline row); `select_tokens` runs on exactly those, viewed as
(T, h', w', D); the prompt's run of `<video>` placeholders is shortened to K + 1, embedded with the model's own
embedding table, and the kept rows (in temporal-raster order) plus the newline are written over the
placeholder embeddings, as the stock forward does for the full run; the stock forward then gets
`inputs_embeds`. Qwen2 uses 1-D RoPE, so the shorter sequence is a valid input. Qwen2.5-VL (3-D M-RoPE, merged
2×2 patches, two frames per temporal patch): the grid is (T/2, h', w'), and the kept tokens are given their
original 3-D positions (`VLM._video_grid`). Decoding is greedy, token by token on the KV cache, which gives an
exact time to first token.
"""

from __future__ import annotations

import functools
import inspect
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import SelectorConfig, select_tokens
from .limits import check
from .method.pipeline import Selection

__all__ = ["VLM", "VLMError", "Answer", "load_vlm", "DEFAULT_VLM", "KNOWN_VLMS"]

DEFAULT_VLM = os.environ.get("ENTROPY_SELECT_VLM", "llava-hf/llava-onevision-qwen2-0.5b-ov-hf")
MAX_QUESTION_CHARS = 2000
#: model types this module drives, and their transformers classes
FAMILIES = {"llava_onevision": "LlavaOnevisionForConditionalGeneration",
            "qwen2_5_vl": "Qwen2_5_VLForConditionalGeneration"}
KNOWN_VLMS = ("llava-hf/llava-onevision-qwen2-0.5b-ov-hf", "llava-hf/llava-onevision-qwen2-7b-ov-hf",
              "Qwen/Qwen2.5-VL-3B-Instruct", "Qwen/Qwen2.5-VL-7B-Instruct")


class VLMError(ValueError):
    """A model that cannot be loaded or a request it cannot answer; the message says what to do."""


@dataclass(frozen=True)
class Answer:
    text: str
    visual_tokens: int  # video tokens the language model received (kept + newline)
    full_visual_tokens: int  # what the stock model would receive
    prefill_ms: float  # time to first token: vision tower + selection + prefill
    total_ms: float
    new_tokens: int
    selection: Selection | None
    stages_ms: dict[str, float]  # vision (tower + projector + pooling), select, llm_prefill
    first_logits: torch.Tensor  # logits of the first generated token (for checks)
    #: one-time set-up left out of prefill_ms and total_ms: capturing the CUDA graph of a new prompt-length
    #: bucket (the first question of that length; later ones replay it)
    setup_ms: float = 0.0
    prompt_tokens: int = 0  # tokens the language model received (text + video), the answer not counted


@dataclass
class VLM:
    name: str
    model: Any
    processor: Any
    device: torch.device
    dtype: torch.dtype
    lock: threading.Lock
    family: str = "llava_onevision"  # or "qwen2_5_vl"
    #: LLaVA-OneVision on a GPU: the LLM prefill replayed from CUDA graphs (`prefill.GraphPrefill`); None: stock
    prefill: Any = None

    @property
    def video_token_id(self) -> int:
        return int(self.model.config.video_token_id)

    def prepare(self, frames: np.ndarray, question: str) -> dict[str, torch.Tensor]:
        """The stock processor's inputs for one video and one question (chat template applied)."""
        _check_inputs(frames, question)
        conv = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": question}]}]
        prompt = self.processor.apply_chat_template(conv, add_generation_prompt=True)
        return self.processor(text=prompt, videos=[np.ascontiguousarray(frames)], return_tensors="pt")

    def answer(self, frames: np.ndarray, question: str, retention: float = 1.0, config: SelectorConfig | None = None,
               max_new_tokens: int = 64, method: str = "entropy_select",
               on_token: Callable[[str, float], None] | None = None) -> Answer:
        """The answer with the video tokens `method` (any name of selector.compare.METHODS) keeps at `retention`
        from the model's own video features: its K rows, at their positions (a merged row at its anchor's).
        on_token(text so far, time to first token in ms) is called after each generated token (streaming)."""
        inputs = self.prepare(frames, question)
        with self.lock, torch.inference_mode():
            return self._answer(inputs, frames.shape[0], retention, config, max_new_tokens, method=method,
                                on_token=on_token)

    def compare(self, frames: np.ndarray, question: str, retention: float, config: SelectorConfig | None = None,
                max_new_tokens: int = 64, method: str = "entropy_select",
                on_token: Callable[[str, str, float], None] | None = None) -> tuple[Answer, Answer]:
        """(stock answer with all video tokens, ENTROPY-SELECT answer at `retention`), with the vision tower run
        once: both times to first token count the same measured tower time (the app's side-by-side view).
        on_token("full" or the method, text so far, time to first token in ms) streams both answers."""
        full, (comp,) = self._full_and(frames, question, retention, config, max_new_tokens, [method], on_token)
        return full, comp

    def _full_and(self, frames: np.ndarray, question: str, retention: float, config: SelectorConfig | None,
                  max_new_tokens: int, methods: list[str],
                  on_token: Callable[[str, str, float], None] | None = None) -> tuple[Answer, list[Answer]]:
        """The answer with all video tokens and one per method at `retention`, the vision tower run once."""
        def relay(which: str) -> Callable[[str, float], None] | None:
            return None if on_token is None else (lambda text, ttft: on_token(which, text, ttft))

        inputs = self.prepare(frames, question)
        with self.lock, torch.inference_mode():
            video = self._vision(inputs, frames.shape[0])
            full = self._answer(inputs, frames.shape[0], 1.0, None, max_new_tokens, video, on_token=relay("full"))
            return full, [self._answer(inputs, frames.shape[0], retention, config, max_new_tokens, video, method=m,
                                       on_token=relay(m)) for m in methods]

    def compare_methods(self, frames: np.ndarray, question: str, retention: float, methods: list[str],
                        config: SelectorConfig | None = None, max_new_tokens: int = 64) -> list[dict[str, Any]]:
        """The answer with all video tokens, then with each method's rows at `retention` (vision tower run once):
        per method the text, KL(full ‖ method) of the first answer token's distribution (nats), whether the
        greedy answer equals the full one, and the time to first token."""
        full, answers = self._full_and(frames, question, retention, config, max_new_tokens, methods)
        p_full = torch.log_softmax(full.first_logits.double(), -1)
        out = [{"method": "all tokens", "text": full.text, "visual_tokens": full.visual_tokens, "kl_first_token": 0.0,
                "same_answer": True, "ttft_ms": round(full.prefill_ms, 2)}]
        for name, a in zip(methods, answers, strict=True):
            p = torch.log_softmax(a.first_logits.double(), -1)
            out.append({"method": name, "text": a.text, "visual_tokens": a.visual_tokens,
                        "kl_first_token": round(float((p_full.exp() * (p_full - p)).sum()), 6),
                        "same_answer": a.text == full.text, "ttft_ms": round(a.prefill_ms, 2)})
        return out

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _vision(self, inputs: dict, t_: int) -> tuple[torch.Tensor, torch.Tensor, float]:
        """(grid, tail, ms): `_video_grid` and its wall time."""
        self._sync()
        t0 = time.perf_counter()
        grid, tail = self._video_grid(inputs, t_)
        self._sync()
        return grid, tail, (time.perf_counter() - t0) * 1e3

    def _answer(self, inputs: dict, t_: int, retention: float, config: SelectorConfig | None,
                max_new_tokens: int, video: tuple[torch.Tensor, torch.Tensor, float] | None = None,
                method: str = "entropy_select", on_token: Callable[[str, float], None] | None = None) -> Answer:
        """One answer; `video` = (grid, tail, vision ms) from `_vision` when the tower already ran on this clip."""
        dev = self.device
        check("answering")
        ids = inputs["input_ids"].to(dev)
        grid, tail, vision_ms = video if video is not None else self._vision(inputs, t_)
        sync = self._sync
        t1 = time.perf_counter()
        if method == "entropy_select":
            sel = select_tokens(grid, retention, config or SelectorConfig(), timed=False, cuda_graph=grid.is_cuda)
            kept, rows = sel.keep.reshape(-1), None
        else:  # another method of the registry: its rows, at their positions
            from .compare import compress

            comp = compress(method, grid, retention)
            sel = None
            kept = torch.zeros(grid.shape[0] * grid.shape[1] * grid.shape[2], dtype=torch.bool, device=grid.device)
            kept[comp.positions] = True
            rows = comp.tokens
        sync()
        t2 = time.perf_counter()
        mask = ids[0] == self.video_token_id
        where = torch.nonzero(mask).flatten()
        full = int(mask.sum())
        n_grid = grid.shape[0] * grid.shape[1] * grid.shape[2]
        if full != n_grid + tail.shape[0] or int(where[-1] - where[0]) + 1 != full:
            plus = f" + {tail.shape[0]}" if tail.shape[0] else ""
            raise VLMError(f"the prompt has {full} video placeholders for {n_grid}{plus} video features")
        start = int(where[0])
        keep = torch.ones(ids.shape[1], dtype=torch.bool, device=dev)
        keep[start : start + n_grid] = kept
        short = ids[:, keep]
        embeds = self.model.get_input_embeddings()(short)
        # the run of video placeholders: the grid's kept tokens in temporal-raster order, then the tail rows
        # (LLaVA-OneVision's newline); the dropped ones left the sequence. The kept rows are copied once,
        # straight from the features into the embeddings
        k = int(kept.sum())
        run = embeds[0, start : start + k + tail.shape[0]]
        if rows is not None:
            run[:k] = rows.to(embeds.dtype)
        elif grid.dtype == embeds.dtype:
            assert sel is not None
            sel.gather_into(run[:k])
        else:
            assert sel is not None
            run[:k] = sel.tokens.to(embeds.dtype)
        run[k:] = tail.to(embeds.dtype)
        extra, next_position = {}, None
        if self.family == "qwen2_5_vl":  # 3-D M-RoPE: the kept tokens at their original positions
            extra["position_ids"] = _rope_positions(self.model, inputs, dev)[:, :, keep]
            next_position = int(extra["position_ids"][:, 0, -1].max()) + 1
        graphed = self.prefill is not None and not extra  # (3-D positions go through the stock forward)
        events = [torch.cuda.Event(enable_timing=True) for _ in range(2)] if dev.type == "cuda" else None
        if events:
            events[0].record()
        if graphed:
            out = self.prefill(embeds)
        else:
            out = self.model(inputs_embeds=embeds, attention_mask=torch.ones_like(short), use_cache=True,
                             logits_to_keep=1, **extra)
        first_logits = out.logits[0, -1].float()
        token = first_logits.argmax()
        if events:
            events[1].record()
        sync()
        t3 = time.perf_counter()
        setup = self.prefill.last_capture_ms if graphed else 0.0
        # LLM prefill: GPU time between CUDA events (a first capture of a graph bucket: wall time less the capture)
        prefill_ms = events[0].elapsed_time(events[1]) if events and not setup else (t3 - t2) * 1e3 - setup
        stages = {"vision": vision_ms, "select": (t2 - t1) * 1e3, "llm_prefill": prefill_ms}
        ttft = vision_ms + (t3 - t1) * 1e3 - setup
        emit = None if on_token is None else \
            (lambda ids: on_token(self.processor.decode(ids, skip_special_tokens=True).strip(), ttft))
        generated = self._decode(out, token, short.shape[1], max_new_tokens, next_position, emit)
        sync()
        total_ms = vision_ms + (time.perf_counter() - t1) * 1e3 - setup
        text = self.processor.decode(generated, skip_special_tokens=True).strip()
        return Answer(text, k + int(tail.shape[0]), full, ttft, total_ms, len(generated),
                      sel, stages, first_logits.cpu(), setup, int(short.shape[1]))

    def _video_grid(self, inputs: dict, t_: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The model's own video tokens as a (T', h', w', D) grid, and the rows that follow the grid in the
        placeholder run (LLaVA-OneVision: the newline; Qwen2.5-VL: none).

        Qwen2.5-VL: the merged tokens (2 frames per temporal patch, 2×2 patches per token, temporal-raster
        order) form a (T/2, h/28, w/28) grid; `_answer` gives the kept ones their original 3-D RoPE positions
        (the stock model's `get_rope_index` on the full prompt, the dropped positions removed), so every kept
        token keeps its time, row and column, and decoding continues from the last text position."""
        dev = self.device
        pix = inputs["pixel_values_videos"].to(dev, self.dtype)
        if self.family == "qwen2_5_vl":
            thw = inputs["video_grid_thw"].to(dev)
            feats = self.model.model.get_video_features(pix, thw, return_dict=True).pooler_output
            feats = torch.cat(list(feats), dim=0) if isinstance(feats, (list, tuple)) else feats
            merge = self.model.config.vision_config.spatial_merge_size
            t_, h_, w_ = (int(v) for v in thw[0])
            n_grid = t_ * (h_ // merge) * (w_ // merge)
            if feats.shape[0] != n_grid:
                raise VLMError(f"video features have {feats.shape[0]} rows, expected {n_grid}")
            return feats.reshape(t_, h_ // merge, w_ // merge, -1), feats[:0]
        # positional: the keyword is pixel_values_videos in transformers 5.23, pixel_values in 5.17
        feats = self.model.get_video_features(pix, return_dict=True).pooler_output
        feats = feats.reshape(-1, feats.shape[-1])
        vcfg = self.model.config.vision_config
        side = -(-(vcfg.image_size // vcfg.patch_size) // 2)  # bilinear 2× pooling rounds up: 27 → 14
        n_grid = t_ * side * side
        if feats.shape[0] == n_grid:  # transformers 5.17 leaves the newline row out of pooler_output
            newline = self.model.model.image_newline[None].to(feats.dtype)
        elif feats.shape[0] == n_grid + 1:  # 5.23 appends it
            newline = feats[-1:]
        else:
            raise VLMError(f"video features have {feats.shape[0]} rows, expected {n_grid} (+1)")
        return feats[:n_grid].reshape(t_, side, side, -1), newline

    def _decode(self, out: Any, token: torch.Tensor, length: int, max_new_tokens: int,
                next_position: int | None = None, emit: Callable[[list[int]], None] | None = None) -> list[int]:
        """Greedy decoding on the KV cache after the prefill `out`; with next_position (3-D RoPE models
        given explicit positions), each new token gets the next text position on all three axes."""
        generated = [int(token)]
        if emit is not None:
            emit(generated)
        past = out.past_key_values
        eos = _eos_ids(self.model, self.processor)
        while len(generated) < max_new_tokens and generated[-1] not in eos:
            check(f"generating the answer ({len(generated)} tokens so far)")
            length += 1
            extra = {}
            if next_position is not None:
                extra["position_ids"] = torch.full((3, 1, 1), next_position, dtype=torch.long, device=self.device)
                next_position += 1
            step = self.model(input_ids=token.view(1, 1), past_key_values=past, use_cache=True, logits_to_keep=1,
                              attention_mask=torch.ones((1, length), dtype=torch.long, device=self.device), **extra)
            past = step.past_key_values
            token = step.logits[0, -1].argmax()
            generated.append(int(token))
            if emit is not None:
                emit(generated)
        return generated


def _rope_positions(model: Any, inputs: dict, dev: torch.device) -> torch.Tensor:
    """3-D RoPE positions (3, 1, L) of the full prompt from the model's own `get_rope_index`, given the
    processor outputs it takes (their names differ between transformers versions)."""
    fn = model.model.get_rope_index
    accepted = inspect.signature(fn).parameters
    kwargs = {k: (v.to(dev) if isinstance(v, torch.Tensor) else v) for k, v in inputs.items()
              if k in accepted and k != "input_ids"}
    if "second_per_grid_ts" in kwargs and not isinstance(kwargs["second_per_grid_ts"], torch.Tensor):
        kwargs["second_per_grid_ts"] = torch.tensor(kwargs["second_per_grid_ts"], device=dev)
    return fn(inputs["input_ids"].to(dev), **kwargs)[0]


def _eos_ids(model: Any, processor: Any) -> set[int]:
    ids = model.generation_config.eos_token_id if model.generation_config is not None else None
    ids = ids if isinstance(ids, list) else [ids]
    tok = getattr(processor, "tokenizer", None)
    if tok is not None and tok.eos_token_id is not None:
        ids.append(tok.eos_token_id)
    return {int(i) for i in ids if i is not None}


def _check_inputs(frames: object, question: object) -> None:
    if not isinstance(frames, np.ndarray) or frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise VLMError(f"frames must be a uint8 array (T, H, W, 3), got {getattr(frames, 'shape', type(frames))}")
    if not isinstance(question, str) or not question.strip():
        raise VLMError("ask a question: the question is empty")
    if len(question) > MAX_QUESTION_CHARS:
        raise VLMError(f"the question is {len(question)} characters long; the limit is {MAX_QUESTION_CHARS}")


def _how_to_connect(ident: str) -> str:
    return (f"No LLaVA-OneVision or Qwen2.5-VL model could be loaded from '{ident}' on this machine (no network "
            "access to the Hugging Face hub, and no such local folder). To connect one: run on a machine with "
            f"network access (e.g. a Hugging Face Space) with the id '{DEFAULT_VLM}', or download it elsewhere "
            f"(huggingface-cli download {DEFAULT_VLM} --local-dir DIR), copy DIR here and give DIR as the model.")


_LOCK = threading.Lock()


def load_vlm(model_id_or_path: str | None = None, device: str | torch.device | None = None,
             dtype: torch.dtype | None = None, prefill: str | None = None) -> VLM:
    """Load (once, then cached) a LLaVA-OneVision or Qwen2.5-VL checkpoint: bf16 on a GPU (fp16 if bf16 is
    missing), fp32 on CPU.

    prefill: "graph" replays the LLM prefill of LLaVA-OneVision from CUDA graphs (`selector.prefill`; the
    default on a GPU), "compiled" captures the graphs of the torch.compile'd forward (~30 % faster prefill, about
    a minute of compilation at the first question, bf16 rounding no longer that of the stock forward), "eager"
    keeps the stock forward (the default on a CPU, and always for Qwen2.5-VL, whose
    3-D positions the graphs do not take). Default from the environment variable ENTROPY_SELECT_PREFILL."""
    ident = (model_id_or_path or DEFAULT_VLM).strip()
    prefill = (prefill or os.environ.get("ENTROPY_SELECT_PREFILL") or "auto").strip().lower()
    if prefill not in ("auto", "graph", "compiled", "eager"):
        raise VLMError(f"prefill must be 'graph', 'compiled', 'eager' or 'auto', got {prefill!r}")
    dev = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if dtype is None:
        dtype = (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16) if dev.type == "cuda" \
            else torch.float32
    if prefill in ("graph", "compiled") and dev.type != "cuda":
        raise VLMError(f"prefill='{prefill}' needs a CUDA device (CUDA graphs); use 'eager' on a CPU")
    with _LOCK:
        return _load(ident, str(dev), dtype, prefill)


@functools.lru_cache(maxsize=2)
def _load(ident: str, device: str, dtype: torch.dtype, prefill: str = "auto") -> VLM:
    from transformers import AutoConfig, AutoProcessor

    from . import hub

    if not hub.available(ident):  # offline: refused at once, not after the hub client's retries
        raise VLMError(hub.unavailable_message(ident, "model"))
    try:
        cfg = AutoConfig.from_pretrained(ident, trust_remote_code=False)
    except (OSError, ValueError):
        if Path(ident).is_dir():
            raise VLMError(f"{ident} is not a model folder (no usable config.json)") from None
        raise VLMError(_how_to_connect(ident)) from None
    if cfg.model_type not in FAMILIES:
        raise VLMError(f"'{ident}' is a {cfg.model_type!r} model; this panel needs a LLaVA-OneVision or a "
                       "Qwen2.5-VL checkpoint")
    import transformers

    cls = getattr(transformers, FAMILIES[cfg.model_type])
    try:
        processor = AutoProcessor.from_pretrained(ident, trust_remote_code=False)
        model = cls.from_pretrained(ident, dtype=dtype, trust_remote_code=False)
    except (OSError, ValueError) as e:
        raise VLMError(f"could not load '{ident}': {str(e).splitlines()[0]}") from None
    model = model.eval().to(device)
    return VLM(ident, model, processor, torch.device(device), dtype, threading.Lock(), cfg.model_type,
               graph_prefill(model, cfg.model_type, prefill))


def graph_prefill(model: Any, family: str, prefill: str = "auto") -> Any:
    """The `VLM.prefill` for a model: a GraphPrefill where "graph" (or "auto" on a GPU) applies, else None."""
    from .prefill import GraphPrefill

    on_gpu = next(model.parameters()).device.type == "cuda"
    if family != "llava_onevision" or prefill == "eager" or (prefill == "auto" and not on_gpu):
        return None
    try:
        return GraphPrefill(model, graphs=on_gpu, compile=prefill == "compiled")
    except ValueError as e:  # an LLM with sliding-window layers or eager attention: the stock forward
        if prefill in ("graph", "compiled"):
            raise VLMError(f"prefill='{prefill}' is not possible for this model: {e}") from None
        return None

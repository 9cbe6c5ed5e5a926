"""Ask a video: a stock LLaVA-OneVision, Qwen2.5-VL or Qwen3-VL (transformers) answers with the selected tokens.

Route, with no patching of library classes: the model's own video features (`Family.features`) give the tokens the
language model would receive; `select_tokens` (or another method of `selector.compare`) runs on exactly those,
viewed as the (T', h', w', D) grid they form; the unselected video rows leave the prompt (every other token stays:
timestamps, start/end tokens, the text), the short prompt is embedded with the model's own table and the kept rows
are written over their placeholders, as the stock forward does for the full prompt. Each family (one module in
this package, `family.FAMILIES`) says what else is sliced with the kept rows (Qwen3-VL's DeepStack features),
which positions the kept rows and the text after them get (3-D M-RoPE for the Qwen families: the full prompt's own
positions, sliced), and how its prefill and decode step run. Decoding is greedy, token by token on the KV cache,
which gives an exact time to first token.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import SelectorConfig, select_tokens
from ..limits import check
from ..method.pipeline import Selection
from ..settings import current, module_settings

__all__ = ["VLM", "VLMError", "Answer", "load_vlm", "default_vlm", "KNOWN_VLMS", "FAMILIES", "known_vlms"]


def default_vlm() -> str:
    """The VLM load_vlm() loads when none is named: ENTROPY_SELECT_VLM (`settings`), else LLaVA-OneVision 0.5B."""
    return current().vlm


__getattr__ = module_settings(__name__, {"DEFAULT_VLM": "vlm"})  # the setting as it is now


MAX_QUESTION_CHARS = 2000


from . import llava_onevision, qwen2_5_vl, qwen3_vl  # noqa: E402,F401  (each registers its family)
from .family import FAMILIES, Family, Video, VLMError, family_of, rope_positions  # noqa: E402


def known_vlms() -> tuple[str, ...]:
    """The checkpoints offered in the app's model menu: every registered family's."""
    return tuple(i for f in FAMILIES.values() for i in f.hub_ids)


#: the checkpoints of the families registered at import (`known_vlms()` also sees families registered later)
KNOWN_VLMS = known_vlms()


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
    #: wall ms from the first token to the last (the tokens after the first), one-time set-up left out
    decode_ms: float = 0.0
    #: "graph": static cache, CUDA-graph step (`selector.decode`); "static": the same step eagerly; "eager": the loop
    decode_path: str = "eager"

    @property
    def ms_per_token(self) -> float | None:
        """Decode time per generated token after the first (None for a one-token answer)."""
        return self.decode_ms / (self.new_tokens - 1) if self.new_tokens > 1 else None

    @property
    def tokens_per_s(self) -> float | None:
        per = self.ms_per_token
        return 1e3 / per if per else None


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
    #: on a GPU: the static-cache, CUDA-graph decode (`decode.StaticDecoder`); None: the eager loop
    decoder: Any = None

    @property
    def video_token_id(self) -> int:
        return int(self.model.config.video_token_id)

    @property
    def fam(self) -> Family:
        return family_of(self.family)

    def prepare(self, frames: np.ndarray, question: str, timestamps: np.ndarray | None = None) -> dict:
        """The stock processor's inputs for one video and one question (chat template applied); `timestamps`:
        each frame's time in the video, in seconds (Qwen3-VL writes them into the prompt)."""
        _check_inputs(frames, question)
        return self.fam.prepare(self, frames, question, timestamps)

    def answer(self, frames: np.ndarray, question: str, retention: float = 1.0, config: SelectorConfig | None = None,
               max_new_tokens: int = 64, method: str = "entropy_select",
               on_token: Callable[[str, float], None] | None = None, timestamps: np.ndarray | None = None) -> Answer:
        """The answer with the video tokens `method` (any name of selector.compare.METHODS) keeps at `retention`
        from the model's own video features: its K rows, at their positions (a merged row at its anchor's).
        on_token(text so far, time to first token in ms) is called after each generated token (streaming)."""
        inputs = self.prepare(frames, question, timestamps)
        with self.lock, torch.inference_mode():
            return self._answer(inputs, frames.shape[0], retention, config, max_new_tokens, method=method,
                                on_token=on_token)

    def compare(self, frames: np.ndarray, question: str, retention: float, config: SelectorConfig | None = None,
                max_new_tokens: int = 64, method: str = "entropy_select",
                on_token: Callable[[str, str, float], None] | None = None,
                timestamps: np.ndarray | None = None) -> tuple[Answer, Answer]:
        """(stock answer with all video tokens, ENTROPY-SELECT answer at `retention`), with the vision tower run
        once: both times to first token count the same measured tower time (the app's side-by-side view).
        on_token("full" or the method, text so far, time to first token in ms) streams both answers."""
        full, (comp,) = self._full_and(frames, question, retention, config, max_new_tokens, [method], on_token,
                                       timestamps)
        return full, comp

    def _full_and(self, frames: np.ndarray, question: str, retention: float, config: SelectorConfig | None,
                  max_new_tokens: int, methods: list[str],
                  on_token: Callable[[str, str, float], None] | None = None,
                  timestamps: np.ndarray | None = None) -> tuple[Answer, list[Answer]]:
        """The answer with all video tokens and one per method at `retention`, the vision tower run once."""
        def relay(which: str) -> Callable[[str, float], None] | None:
            return None if on_token is None else (lambda text, ttft: on_token(which, text, ttft))

        inputs = self.prepare(frames, question, timestamps)
        with self.lock, torch.inference_mode():
            video = self._vision(inputs, frames.shape[0])
            full = self._answer(inputs, frames.shape[0], 1.0, None, max_new_tokens, video, on_token=relay("full"))
            return full, [self._answer(inputs, frames.shape[0], retention, config, max_new_tokens, video, method=m,
                                       on_token=relay(m)) for m in methods]

    def compare_methods(self, frames: np.ndarray, question: str, retention: float, methods: list[str],
                        config: SelectorConfig | None = None, max_new_tokens: int = 64,
                        timestamps: np.ndarray | None = None) -> list[dict[str, Any]]:
        """The answer with all video tokens, then with each method's rows at `retention` (vision tower run once):
        per method the text, KL(full ‖ method) of the first answer token's distribution (nats), whether the
        greedy answer equals the full one, and the time to first token."""
        full, answers = self._full_and(frames, question, retention, config, max_new_tokens, methods,
                                       timestamps=timestamps)
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

    def _vision(self, inputs: dict, t_: int) -> Video:
        """The family's video features, with their wall time in `ms`."""
        self._sync()
        t0 = time.perf_counter()
        video = self.fam.features(self, inputs, t_)
        self._sync()
        video.ms = (time.perf_counter() - t0) * 1e3
        return video

    def _kept(self, video: Video, retention: float, config: SelectorConfig | None,
              method: str) -> tuple[torch.Tensor, torch.Tensor, Selection | None]:
        """(kept mask over the grid in the placeholders' order, the kept rows in that order, the Selection)."""
        grid = video.grid
        if method == "entropy_select":
            sel = select_tokens(grid, retention, config or SelectorConfig(), timed=False, cuda_graph=grid.is_cuda)
            kept, rows = sel.keep.reshape(-1), sel.tokens
        else:  # another method of the registry: its rows, at their positions
            from ..compare import compress

            comp = compress(method, grid, retention)
            sel = None
            kept = torch.zeros(grid.shape[0] * grid.shape[1] * grid.shape[2], dtype=torch.bool, device=grid.device)
            kept[comp.positions] = True
            # rows in the placeholders' (temporal-raster) order, each at its position
            rows = comp.tokens[torch.argsort(comp.positions)]
        floor = self.fam.min_rows_per_patch
        if floor and int(kept.view(grid.shape[0], -1).sum(1).min()) < floor:
            raise VLMError(f"{method} at retention {retention:g} keeps {int(kept.sum())} rows and leaves a temporal "
                           f"patch of this {self.fam.label} prompt without any, while each patch keeps its "
                           f"timestamp: use a retention that keeps at least {floor * grid.shape[0]} rows "
                           f"({floor} for each of the {grid.shape[0]} patches)")
        return kept, rows, sel

    def _splice(self, ids: torch.Tensor, video: Video, kept: torch.Tensor,
                rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(keep mask over the prompt, the short prompt's embeddings with the kept rows and the tail in place,
        the video rows' mask in the short prompt, the kept rows' grid indices)."""
        mask = ids[0] == self.video_token_id
        n_grid = kept.numel()
        if int(mask.sum()) != n_grid + video.tail.shape[0]:
            plus = f" + {video.tail.shape[0]}" if video.tail.shape[0] else ""
            raise VLMError(f"the prompt has {int(mask.sum())} video placeholders for {n_grid}{plus} video features")
        keep = torch.ones(ids.shape[1], dtype=torch.bool, device=ids.device)
        keep[mask] = torch.cat([kept, torch.ones(video.tail.shape[0], dtype=torch.bool, device=kept.device)])
        short = ids[:, keep]
        embeds = self.model.get_input_embeddings()(short)
        video_mask = short[0] == self.video_token_id
        embeds[0, video_mask] = torch.cat([rows.to(embeds.dtype), video.tail.to(embeds.dtype)])
        return keep, embeds, video_mask, torch.nonzero(kept).flatten()

    def _answer(self, inputs: dict, t_: int, retention: float, config: SelectorConfig | None,
                max_new_tokens: int, video: Video | None = None, method: str = "entropy_select",
                on_token: Callable[[str, float], None] | None = None) -> Answer:
        """One answer: the kept rows, the splice, the positions, the prefill, the decode. `video`: from `_vision`
        when the tower already ran on this clip."""
        check("answering")
        ids = inputs["input_ids"].to(self.device)
        video = video if video is not None else self._vision(inputs, t_)
        t1 = time.perf_counter()
        kept, rows, sel = self._kept(video, retention, config, method)
        self._sync()
        t2 = time.perf_counter()
        keep, embeds, video_mask, kept_rows = self._splice(ids, video, kept, rows)
        positions, next_position = self.fam.positions(self, inputs, keep)
        out, token, gpu_ms, setup = self._prefill(embeds, positions, video, video_mask, kept_rows)
        first_logits = out.logits[0, -1].float()
        t3 = time.perf_counter()
        # LLM prefill: GPU time between CUDA events, else wall time of the splice, positions and prefill
        prefill_ms = gpu_ms if gpu_ms is not None else (t3 - t2) * 1e3 - setup
        ttft = video.ms + (t3 - t1) * 1e3 - setup
        emit = None if on_token is None else \
            (lambda ids: on_token(self.processor.decode(ids, skip_special_tokens=True).strip(), ttft))
        t4 = time.perf_counter()
        generated, path, capture = self._decode(out, token, embeds.shape[1], max_new_tokens, next_position, emit)
        self._sync()
        t5 = time.perf_counter()
        setup += capture
        total_ms = video.ms + (t5 - t1) * 1e3 - setup
        k = int(kept.sum())
        return Answer(text=self.processor.decode(generated, skip_special_tokens=True).strip(),
                      visual_tokens=k + int(video.tail.shape[0]), full_visual_tokens=kept.numel() + video.tail.shape[0],
                      prefill_ms=ttft, total_ms=total_ms, new_tokens=len(generated), selection=sel,
                      stages_ms={"vision": video.ms, "select": (t2 - t1) * 1e3, "llm_prefill": prefill_ms},
                      first_logits=first_logits.cpu(), setup_ms=setup, prompt_tokens=int(embeds.shape[1]),
                      decode_ms=(t5 - t4) * 1e3 - capture, decode_path=path)

    def _prefill(self, embeds: torch.Tensor, positions: torch.Tensor | None, video: Video, video_mask: torch.Tensor,
                 kept_rows: torch.Tensor) -> tuple[Any, torch.Tensor, float | None, float]:
        """(the family's prefill output, the first token, its GPU time in ms between CUDA events or None (a CPU, or
        the first capture of a graph bucket: the caller counts wall time less the capture), one-time set-up ms)."""
        events = [torch.cuda.Event(enable_timing=True) for _ in range(2)] if self.device.type == "cuda" else None
        if events:
            events[0].record()
        out = self.fam.prefill(self, embeds, positions, video, video_mask, kept_rows)
        token = out.logits[0, -1].argmax()
        if events:
            events[1].record()
        self._sync()
        setup = self.prefill.last_capture_ms if self.prefill is not None and self.family == "llava_onevision" \
            else 0.0
        return out, token, events[0].elapsed_time(events[1]) if events and not setup else None, setup

    def _decode(self, out: Any, token: torch.Tensor, length: int, max_new_tokens: int,
                next_position: int | None = None,
                emit: Callable[[list[int]], None] | None = None) -> tuple[list[int], str, float]:
        """(greedy tokens, "graph" or "eager", ms spent capturing a new graph) after the prefill `out`: on the
        static-cache graph decoder where it applies, else the eager loop."""
        d = self.decoder
        if d is not None and d.fits(length, max_new_tokens):
            try:
                tokens = d.decode(out.past_key_values, token, length, max_new_tokens, next_position,
                                  _eos_ids(self.model, self.processor), emit, check)
                return tokens, "graph" if d.graphs else "static", d.last_capture_ms
            except RuntimeError as e:  # no graph for this model or no memory for one more: the eager loop answers
                if d.disabled is None and not isinstance(e, torch.cuda.OutOfMemoryError):
                    raise
        return self._decode_eager(out, token, length, max_new_tokens, next_position, emit), "eager", 0.0

    def _decode_eager(self, out: Any, token: torch.Tensor, length: int, max_new_tokens: int,
                      next_position: int | None = None, emit: Callable[[list[int]], None] | None = None) -> list[int]:
        """Greedy decoding on the KV cache after the prefill `out`, one eager forward a token; with next_position
        (3-D RoPE models given explicit positions), each new token gets the next text position on all three axes."""
        generated = [int(token)]
        if emit is not None:
            emit(generated)
        past = out.past_key_values
        eos = _eos_ids(self.model, self.processor)
        while len(generated) < max_new_tokens and generated[-1] not in eos:
            check(f"generating the answer ({len(generated)} tokens so far)")
            length += 1
            step = self.fam.step(self, token, past, length, next_position)
            if next_position is not None:
                next_position += 1
            past = step.past_key_values
            token = step.logits[0, -1].argmax()
            generated.append(int(token))
            if emit is not None:
                emit(generated)
        return generated


_rope_positions = rope_positions  # the name the benchmarks and older scripts use


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
    return (f"No {', '.join(f.label for f in FAMILIES.values())} model could be loaded from '{ident}' on this "
            "machine (no network access to the Hugging Face hub, and no such local folder). To connect one: run on "
            f"a machine with network access (e.g. a Hugging Face Space) with the id '{default_vlm()}', or download it "
            f"elsewhere (huggingface-cli download {default_vlm()} --local-dir DIR), copy DIR here and give DIR as the "
            "model.")


_LOCK = threading.Lock()


def load_vlm(model_id_or_path: str | None = None, device: str | torch.device | None = None,
             dtype: torch.dtype | None = None, prefill: str | None = None) -> VLM:
    """Load (once, then cached) a checkpoint of a registered family (LLaVA-OneVision, Qwen2.5-VL, Qwen3-VL): bf16
    on a GPU (fp16 if bf16 is missing), fp32 on CPU.

    prefill: "graph" replays the LLM prefill of LLaVA-OneVision from CUDA graphs (`selector.prefill`) and every
    family's answer loop from a CUDA graph on a static KV cache (`selector.decode`): the default on a GPU;
    "compiled" captures the graphs of the torch.compile'd forward and decode step (~30 % faster prefill, about
    half the decode time of "graph", compilation at the first question of a length bucket, bf16 rounding no longer
    that of the stock forward); "eager" keeps the stock forward and the eager answer loop (the default on a CPU;
    the Qwen families' prefill is always the stock one). Default from ENTROPY_SELECT_PREFILL."""
    ident = (model_id_or_path or default_vlm()).strip()
    prefill = (prefill or current().prefill).strip().lower()
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

    from .. import hub

    if not hub.available(ident):  # offline: refused at once, not after the hub client's retries
        raise VLMError(hub.unavailable_message(ident, "model"))
    try:
        cfg = AutoConfig.from_pretrained(ident, trust_remote_code=False)
    except (OSError, ValueError):
        if Path(ident).is_dir():
            raise VLMError(f"{ident} is not a model folder (no usable config.json)") from None
        raise VLMError(_how_to_connect(ident)) from None
    if cfg.model_type not in FAMILIES:
        raise VLMError(f"'{ident}' is a {cfg.model_type!r} model; the project drives "
                       f"{', '.join(f.label for f in FAMILIES.values())} checkpoints")
    import transformers

    cls = getattr(transformers, FAMILIES[cfg.model_type].class_name)
    family = FAMILIES[cfg.model_type]
    try:
        processor = AutoProcessor.from_pretrained(ident, trust_remote_code=False)
        if family.processor_class and type(processor).__name__ != family.processor_class:
            raise VLMError(f"'{ident}' is a {family.label} model, but its processor files give a "
                           f"{type(processor).__name__}, not a {family.processor_class}: the folder's processor "
                           "files belong to another model")
        model = cls.from_pretrained(ident, dtype=dtype, trust_remote_code=False)
    except VLMError:
        raise
    except (OSError, ValueError) as e:
        raise VLMError(f"could not load '{ident}': {str(e).splitlines()[0]}") from None
    model = model.eval().to(device)
    return VLM(ident, model, processor, torch.device(device), dtype, threading.Lock(), cfg.model_type,
               graph_prefill(model, cfg.model_type, prefill), graph_decoder(model, prefill))


def graph_decoder(model: Any, prefill: str = "auto") -> Any:
    """The `VLM.decoder` for a model: a StaticDecoder on a GPU (prefill="compiled": its step through torch.compile,
    "eager": every stage eager), else None (a CPU, or a model whose layers the static cache does not take: the eager
    loop)."""
    from ..decode import StaticDecoder

    if prefill == "eager" or next(model.parameters()).device.type != "cuda":
        return None
    try:
        return StaticDecoder(model, compile=prefill == "compiled")
    except ValueError:
        return None


def graph_prefill(model: Any, family: str, prefill: str = "auto") -> Any:
    """The `VLM.prefill` for a model: a GraphPrefill where "graph" (or "auto" on a GPU) applies, else None."""
    from ..prefill import GraphPrefill

    on_gpu = next(model.parameters()).device.type == "cuda"
    if family != "llava_onevision" or prefill == "eager" or (prefill == "auto" and not on_gpu):
        return None
    try:
        return GraphPrefill(model, graphs=on_gpu, compile=prefill == "compiled")
    except ValueError as e:  # an LLM with sliding-window layers or eager attention: the stock forward
        if prefill in ("graph", "compiled"):
            raise VLMError(f"prefill='{prefill}' is not possible for this model: {e}") from None
        return None

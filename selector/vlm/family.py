"""What the answer path asks a VLM family, and the registry of the families (keyed by the checkpoint's model_type).

A family answers five questions (ToMe's `tome/patch/*.py` layout: one small module a family, the algorithm never
names a model): how the stock processor is called (`prepare`), which (T', h', w') grid the model's own video
features form and what else comes with them (`features`), which positions the kept rows and the text after them get
(`positions`), and how the prefill and one decode step run (`prefill`, `step`). Adding a family is one module with
a `Family` subclass and one `register(...)` line; `load_vlm`, the app's model menu and the lmms-eval models read the
registry (random-weight builders for tests live in `selector.bench.models.BUILDERS`).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

__all__ = ["Family", "Video", "VLMError", "FAMILIES", "register", "family_of"]


class VLMError(ValueError):
    """A model that cannot be loaded or a request it cannot answer; the message says what to do."""


@dataclass
class Video:
    """The model's own video features for one clip: `grid` (T', h', w', D) in the placeholders' order, `tail` rows
    that follow the grid in the placeholder run (LLaVA-OneVision's newline; none elsewhere), and `extra` rows that
    must be sliced with the kept rows (Qwen3-VL's DeepStack features: one (T'·h'·w', D) tensor per layer)."""

    grid: torch.Tensor
    tail: torch.Tensor
    extra: list[torch.Tensor] = field(default_factory=list)
    ms: float = 0.0


class Family:
    """The stock-model behaviour of one VLM family (override what differs)."""

    model_type: str = ""
    class_name: str = ""  # the transformers class
    processor_class: str = ""  # the transformers processor its checkpoints come with
    label: str = ""  # for people: "Qwen3-VL"
    hub_ids: tuple[str, ...] = ()  # checkpoints offered in the app's model menu
    eval_class: str = ""  # its lmms-eval chat model in selector.eval.models (made from this registry)
    #: video rows every temporal patch keeps (Qwen3-VL: each patch sits between its own timestamp and start/end
    #: tokens, and an empty pair would be a patch the model never saw)
    min_rows_per_patch: int = 0

    def prepare(self, vlm: Any, frames: np.ndarray, question: str, timestamps: np.ndarray | None) -> dict:
        """The stock processor's inputs for one video and one question (chat template applied)."""
        conv = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": question}]}]
        prompt = vlm.processor.apply_chat_template(conv, add_generation_prompt=True)
        return vlm.processor(text=prompt, videos=[np.ascontiguousarray(frames)], return_tensors="pt")

    def features(self, vlm: Any, inputs: dict, t_: int) -> Video:
        raise NotImplementedError

    def positions(self, vlm: Any, inputs: dict, keep: torch.Tensor) -> tuple[torch.Tensor | None, int | None]:
        """(position ids of the kept sequence, the first generated token's position); (None, None): 1-D positions
        the model counts itself."""
        return None, None

    def prefill(self, vlm: Any, embeds: torch.Tensor, positions: torch.Tensor | None, video: Video,
                video_mask: torch.Tensor, kept_rows: torch.Tensor) -> Any:
        """The language model over the spliced sequence: an object with `logits` (of the last token) and
        `past_key_values`. `video_mask` marks the video rows in the sequence, `kept_rows` their grid indices."""
        extra = {} if positions is None else {"position_ids": positions}
        return vlm.model(inputs_embeds=embeds, attention_mask=torch.ones(embeds.shape[:2], dtype=torch.long,
                                                                         device=embeds.device),
                         use_cache=True, logits_to_keep=1, **extra)

    def step(self, vlm: Any, token: torch.Tensor, past: Any, length: int, position: int | None) -> Any:
        """One greedy decode step on the KV cache: `length` tokens in the sequence with this one."""
        extra = {} if position is None else {
            "position_ids": torch.full((3, 1, 1), position, dtype=torch.long, device=vlm.device)}
        return vlm.model(input_ids=token.view(1, 1), past_key_values=past, use_cache=True, logits_to_keep=1,
                         attention_mask=torch.ones((1, length), dtype=torch.long, device=vlm.device), **extra)


FAMILIES: dict[str, Family] = {}


def register(family: Family) -> Family:
    FAMILIES[family.model_type] = family
    return family


def family_of(model_type: str) -> Family:
    if model_type not in FAMILIES:
        labels = ", ".join(f.label for f in FAMILIES.values())
        raise VLMError(f"this is a {model_type!r} model; the project drives {labels} checkpoints")
    return FAMILIES[model_type]


def rope_positions(model: Any, inputs: dict, dev: torch.device) -> torch.Tensor:
    """3-D RoPE positions (3, 1, L) of the full prompt from the model's own `get_rope_index`, given the
    processor outputs it takes (their names differ between transformers versions)."""
    fn = model.model.get_rope_index
    accepted = inspect.signature(fn).parameters
    kwargs = {k: (v.to(dev) if isinstance(v, torch.Tensor) else v) for k, v in inputs.items()
              if k in accepted and k != "input_ids"}
    if "second_per_grid_ts" in kwargs and not isinstance(kwargs["second_per_grid_ts"], torch.Tensor):
        kwargs["second_per_grid_ts"] = torch.tensor(kwargs["second_per_grid_ts"], device=dev)
    return fn(inputs["input_ids"].to(dev), **kwargs)[0]


def lm_output(hidden: torch.Tensor, past: Any, lm_head: Any) -> Any:
    """What `prefill` and `step` return when they run a language model without its head: the last token's logits."""
    return SimpleNamespace(logits=lm_head(hidden[:, -1:]), past_key_values=past)

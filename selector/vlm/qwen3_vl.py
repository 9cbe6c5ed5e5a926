"""Qwen3-VL (and its MoE checkpoints, same layout): each temporal patch (2 frames) of merged 2×2 patches is written
as `<t.t seconds><|vision_start|> rows <|vision_end|>`, positions are 3-D (time, row, column) with the text after
each patch continuing from it, and DeepStack adds intermediate vision features to the first decoder layers at the
visual places.

Compression keeps every timestamp and start/end token and drops only unselected rows: the positions are the model's
own `get_rope_index` over the full prompt, sliced with the same keep index (so the text after the video and every
generated token sit where the full prompt puts them); the DeepStack rows are sliced with the kept rows and given
the compacted visual mask; the model's cached `rope_deltas` is cleared for every request. The language model runs
without the top-level forward, which would recompute positions and DeepStack from pixels. The video's real frame
times reach the processor as `video_metadata` (without them it assumes 24 fps and warns).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .family import Video, VLMError, lm_output, register
from .qwen2_5_vl import Qwen2_5_VL, merged_grid

#: frames per second assumed when the caller gives no frame times: Qwen3-VL's own sampling rate for videos
DEFAULT_FPS = 2.0


class Qwen3_VL(Qwen2_5_VL):
    """Qwen2.5-VL's grid and positions, with its own prompt (timestamps), DeepStack and language-model calls."""

    model_type = "qwen3_vl"
    class_name = "Qwen3VLForConditionalGeneration"
    processor_class = "Qwen3VLProcessor"
    label = "Qwen3-VL"
    eval_class = "EntropySelectQwen3VL"
    hub_ids = ("Qwen/Qwen3-VL-2B-Instruct", "Qwen/Qwen3-VL-4B-Instruct", "Qwen/Qwen3-VL-8B-Instruct")
    min_rows_per_patch = 1

    def prepare(self, vlm: Any, frames: np.ndarray, question: str, timestamps: np.ndarray | None) -> dict:
        from transformers.video_utils import VideoMetadata

        conv = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": question}]}]
        prompt = vlm.processor.apply_chat_template(conv, add_generation_prompt=True)
        t = frames.shape[0]
        if timestamps is None or len(timestamps) != t:
            fps, idx = DEFAULT_FPS, np.arange(t)
        else:  # frame times in milliseconds: index / fps gives each frame's own time
            fps, idx = 1000.0, np.round(np.asarray(timestamps, float) * 1000).astype(int)
        meta = VideoMetadata(total_num_frames=int(idx.max()) + 1, fps=fps, frames_indices=idx.tolist(),
                             height=int(frames.shape[1]), width=int(frames.shape[2]))
        try:
            return vlm.processor(text=prompt, videos=[np.ascontiguousarray(frames)], video_metadata=[meta],
                                 do_sample_frames=False, return_tensors="pt")
        except ValueError as e:  # the processor's own refusals (a single frame: fewer than one temporal patch)
            raise VLMError(f"{self.label}'s processor refused this video of {t} frame(s): {e}") from None

    def features(self, vlm: Any, inputs: dict, t_: int) -> Video:
        pix = inputs["pixel_values_videos"].to(vlm.device, vlm.dtype)
        thw = inputs["video_grid_thw"].to(vlm.device)
        out = vlm.model.model.get_video_features(pix, thw, return_dict=True)
        feats, deep = (out.pooler_output, out.deepstack_features) if hasattr(out, "pooler_output") else out
        return merged_grid(vlm, feats, thw, list(deep))

    def positions(self, vlm: Any, inputs: dict, keep: torch.Tensor) -> tuple[torch.Tensor | None, int | None]:
        vlm.model.model.rope_deltas = None  # a value cached by an earlier call would shift this request
        return super().positions(vlm, inputs, keep)

    def prefill(self, vlm: Any, embeds: torch.Tensor, positions: torch.Tensor | None, video: Video,
                video_mask: torch.Tensor, kept_rows: torch.Tensor) -> Any:
        lm = vlm.model.model.language_model
        out = lm(inputs_embeds=embeds, position_ids=positions, use_cache=True,
                 attention_mask=torch.ones(embeds.shape[:2], dtype=torch.long, device=embeds.device),
                 visual_pos_masks=video_mask[None], deepstack_visual_embeds=[d[kept_rows] for d in video.extra])
        return lm_output(out.last_hidden_state, out.past_key_values, vlm.model.lm_head)

    def step(self, vlm: Any, token: torch.Tensor, past: Any, length: int, position: int | None) -> Any:
        lm = vlm.model.model.language_model
        out = lm(inputs_embeds=vlm.model.get_input_embeddings()(token.view(1, 1)), past_key_values=past,
                 position_ids=torch.full((3, 1, 1), position, dtype=torch.long, device=vlm.device), use_cache=True,
                 attention_mask=torch.ones((1, length), dtype=torch.long, device=vlm.device))
        return lm_output(out.last_hidden_state, out.past_key_values, vlm.model.lm_head)



class Qwen3_VL_MoE(Qwen3_VL):
    """The MoE checkpoints share the layout: the same adapter serves them."""

    model_type = "qwen3_vl_moe"
    class_name = "Qwen3VLMoeForConditionalGeneration"
    label = "Qwen3-VL-MoE"
    eval_class = "EntropySelectQwen3VLMoe"
    hub_ids = ("Qwen/Qwen3-VL-30B-A3B-Instruct",)


register(Qwen3_VL())
register(Qwen3_VL_MoE())

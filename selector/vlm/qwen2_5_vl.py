"""Qwen2.5-VL: merged 2×2 patches, two frames per temporal patch, one contiguous run of video rows between
<|vision_start|> and <|vision_end|>; 3-D M-RoPE, so the kept rows keep the positions the full prompt gives them
(the model's own `get_rope_index`, the dropped places removed) and decoding continues from the last text position."""

from __future__ import annotations

from typing import Any

import torch

from .family import Family, Video, VLMError, register, rope_positions


class Qwen2_5_VL(Family):
    model_type = "qwen2_5_vl"
    class_name = "Qwen2_5_VLForConditionalGeneration"
    processor_class = "Qwen2_5_VLProcessor"
    label = "Qwen2.5-VL"
    eval_class = "EntropySelectQwen25VL"
    hub_ids = ("Qwen/Qwen2.5-VL-3B-Instruct", "Qwen/Qwen2.5-VL-7B-Instruct")

    def features(self, vlm: Any, inputs: dict, t_: int) -> Video:
        pix = inputs["pixel_values_videos"].to(vlm.device, vlm.dtype)
        thw = inputs["video_grid_thw"].to(vlm.device)
        return merged_grid(vlm, vlm.model.model.get_video_features(pix, thw, return_dict=True).pooler_output, thw)

    def positions(self, vlm: Any, inputs: dict, keep: torch.Tensor) -> tuple[torch.Tensor | None, int | None]:
        pos = rope_positions(vlm.model, inputs, vlm.device)[:, :, keep]
        return pos, int(pos.max()) + 1



def merged_grid(vlm: Any, feats: Any, thw: torch.Tensor, extra: list | None = None) -> Video:
    """The merged video rows of one clip (a tensor, or one per video) as its (T', h', w', D) grid, with `extra`
    rows of the same places (Qwen3-VL's DeepStack features); VLMError when the counts do not match the grid."""
    def rows(x: Any) -> torch.Tensor:
        return torch.cat(list(x), dim=0) if isinstance(x, (list, tuple)) else x

    feats, extra = rows(feats), [rows(x) for x in extra or []]
    merge = vlm.model.config.vision_config.spatial_merge_size
    t_, h_, w_ = (int(v) for v in thw[0])
    n_grid = t_ * (h_ // merge) * (w_ // merge)
    if feats.shape[0] != n_grid or any(x.shape[0] != n_grid for x in extra):
        raise VLMError(f"video features have {feats.shape[0]} rows, expected {n_grid}")
    return Video(feats.reshape(t_, h_ // merge, w_ // merge, -1), feats[:0], extra)


register(Qwen2_5_VL())

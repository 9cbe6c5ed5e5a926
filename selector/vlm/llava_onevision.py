"""LLaVA-OneVision: SigLIP features pooled 2× into T·h'·w' rows plus one newline row; Qwen2 with 1-D positions, so
the shortened sequence is a valid input as it is; the prefill may be replayed from CUDA graphs (`selector.prefill`)."""

from __future__ import annotations

from typing import Any

import torch

from .family import Family, Video, VLMError, register


class LlavaOnevision(Family):
    model_type = "llava_onevision"
    class_name = "LlavaOnevisionForConditionalGeneration"
    processor_class = "LlavaOnevisionProcessor"
    label = "LLaVA-OneVision"
    eval_class = "EntropySelectLlavaOneVision"
    hub_ids = ("llava-hf/llava-onevision-qwen2-0.5b-ov-hf", "llava-hf/llava-onevision-qwen2-7b-ov-hf")

    def features(self, vlm: Any, inputs: dict, t_: int) -> Video:
        pix = inputs["pixel_values_videos"].to(vlm.device, vlm.dtype)
        # positional: the keyword is pixel_values_videos in transformers 5.23, pixel_values in 5.17
        feats = vlm.model.get_video_features(pix, return_dict=True).pooler_output
        feats = feats.reshape(-1, feats.shape[-1])
        vcfg = vlm.model.config.vision_config
        side = -(-(vcfg.image_size // vcfg.patch_size) // 2)  # bilinear 2× pooling rounds up: 27 → 14
        n_grid = t_ * side * side
        if feats.shape[0] == n_grid:  # transformers 5.17 leaves the newline row out of pooler_output
            newline = vlm.model.model.image_newline[None].to(feats.dtype)
        elif feats.shape[0] == n_grid + 1:  # 5.23 appends it
            newline = feats[-1:]
        else:
            raise VLMError(f"video features have {feats.shape[0]} rows, expected {n_grid} (+1)")
        return Video(feats[:n_grid].reshape(t_, side, side, -1), newline)

    def prefill(self, vlm: Any, embeds: torch.Tensor, positions: torch.Tensor | None, video: Video,
                video_mask: torch.Tensor, kept_rows: torch.Tensor) -> Any:
        if vlm.prefill is not None:  # CUDA graphs of the language model's prefill
            return vlm.prefill(embeds)
        return super().prefill(vlm, embeds, positions, video, video_mask, kept_rows)



register(LlavaOnevision())

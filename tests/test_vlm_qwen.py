"""Ask the video with the second family: a tiny random Qwen2.5-VL (3-D M-RoPE positions, 2×2 merged patches,
two frames per temporal patch) built here, saved and loaded back (no hub)."""

from __future__ import annotations

import media
import pytest
import torch

from selector import SelectorConfig
from selector.bench.models import build
from selector.vlm import load_vlm


@pytest.fixture(scope="module")
def vlm(tmp_path_factory):
    folder = build(tmp_path_factory.mktemp("tiny-qwen25vl"), family="qwen2_5_vl")
    return load_vlm(str(folder), "cpu")


@pytest.fixture(scope="module")
def frames():
    return media.pattern(4, 112, 112)


def test_loads_as_the_qwen_family(vlm):
    assert vlm.family == "qwen2_5_vl" and type(vlm.model).__name__ == "Qwen2_5_VLForConditionalGeneration"


def test_full_retention_first_logits_equal_stock_forward(vlm, frames):
    a = vlm.answer(frames, "what is in the video", retention=1.0, max_new_tokens=3)
    inputs = vlm.prepare(frames, "what is in the video")
    with torch.inference_mode():
        stock = vlm.model(**inputs).logits[0, -1].float()
    t_, h_, w_ = (int(v) for v in inputs["video_grid_thw"][0])
    assert a.selection.grid_shape == (t_, h_ // 2, w_ // 2) == (2, 4, 4)  # 4 frames → 2 temporal patches
    assert a.full_visual_tokens == a.visual_tokens == 32
    assert float((stock - a.first_logits).abs().max()) < 1e-5
    assert a.new_tokens >= 1 and a.total_ms >= a.prefill_ms > 0


def test_decoding_matches_stock_generate_at_full_retention(vlm, frames):
    """Greedy tokens after the first one use explicit next positions; at r = 1 they equal the stock
    generate(), which tracks the 3-D RoPE offset itself."""
    a = vlm.answer(frames, "who is there", retention=1.0, max_new_tokens=6)
    inputs = vlm.prepare(frames, "who is there")
    with torch.inference_mode():
        out = vlm.model.generate(**inputs, max_new_tokens=6, do_sample=False)
    stock = vlm.processor.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True).strip()
    assert a.text == stock


@pytest.mark.parametrize("r", [0.5, 0.1])
def test_compressed_input_keeps_original_positions(vlm, frames, r):
    seen = []
    hook = vlm.model.model.language_model.register_forward_hook(
        lambda mod, args, kwargs, out: seen.append((kwargs["inputs_embeds"].shape[1], kwargs["position_ids"])),
        with_kwargs=True)
    try:
        full = vlm.answer(frames, "how many", 1.0, max_new_tokens=1)
        comp = vlm.answer(frames, "how many", r, SelectorConfig(tau=0.1), max_new_tokens=1)
    finally:
        hook.remove()
    (n_full, pos_full), (n_comp, pos_comp) = seen[0], seen[1]
    k = max(1, int(r * 32 + 1e-9))
    assert comp.visual_tokens == comp.selection.num_tokens == k
    assert n_full - n_comp == full.visual_tokens - comp.visual_tokens == 32 - k
    # the kept tokens keep their (time, row, column) positions; text positions do not move
    inputs = vlm.prepare(frames, "how many")
    ids = inputs["input_ids"][0]
    keep = torch.ones(ids.shape[0], dtype=torch.bool)
    start = int(torch.nonzero(ids == vlm.video_token_id)[0])
    keep[start : start + 32] = comp.selection.keep.reshape(-1)
    assert torch.equal(pos_comp, pos_full[:, :, keep])
    idx = comp.selection.indices  # raster index over (T', 4, 4): the row and column axes follow it
    video = pos_comp[:, 0, start : start + k] - pos_full[:, 0, start : start + 1]
    assert torch.equal(video[1], (idx // 4) % 4) and torch.equal(video[2], idx % 4)


def test_a_merged_method_keeps_its_rows_at_their_anchor_positions(vlm, frames):
    from selector.compare import compress

    seen = []
    hook = vlm.model.model.language_model.register_forward_hook(
        lambda mod, args, kwargs, out: seen.append(kwargs["position_ids"]), with_kwargs=True)
    try:
        vlm.answer(frames, "how many", 1.0, max_new_tokens=1)
        comp = vlm.answer(frames, "how many", 0.25, max_new_tokens=1, method="tome")
    finally:
        hook.remove()
    inputs = vlm.prepare(frames, "how many")
    with torch.inference_mode():
        grid = vlm._vision(inputs, 4).grid
    want = compress("tome", grid, 0.25)
    assert comp.visual_tokens == want.num_tokens == 8
    ids = inputs["input_ids"][0]
    start = int(torch.nonzero(ids == vlm.video_token_id)[0])
    keep = torch.ones(ids.shape[0], dtype=torch.bool)
    keep[start:start + 32] = False
    keep[start + want.positions] = True
    assert torch.equal(seen[1], seen[0][:, :, keep])  # each row at its anchor's (time, row, column)

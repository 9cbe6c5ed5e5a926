"""Ask the video: a tiny random LLaVA-OneVision built here, saved and loaded back (no hub)."""

from __future__ import annotations

import media
import numpy as np
import pytest
import torch

from selector import SelectorConfig
from selector.tiny_vlm import build
from selector.vlm import VLMError, load_vlm


@pytest.fixture(scope="module")
def vlm(tmp_path_factory):
    folder = build(tmp_path_factory.mktemp("tiny-llava-ov"))
    return load_vlm(str(folder), "cpu")


@pytest.fixture(scope="module")
def frames():
    return media.pattern(4, 72, 96)


def test_full_retention_first_logits_equal_stock_forward(vlm, frames):
    a = vlm.answer(frames, "what is in the video", retention=1.0, max_new_tokens=3)
    inputs = vlm.prepare(frames, "what is in the video")
    with torch.inference_mode():
        stock = vlm.model(**inputs).logits[0, -1].float()
    assert a.full_visual_tokens == a.visual_tokens == 4 * 4 * 4 + 1
    assert float((stock - a.first_logits).abs().max()) < 1e-5
    assert a.new_tokens >= 1 and a.prefill_ms > 0 and a.total_ms >= a.prefill_ms
    assert set(a.stages_ms) == {"vision", "select", "llm_prefill"}
    assert sum(a.stages_ms.values()) == pytest.approx(a.prefill_ms, rel=1e-6)


@pytest.mark.parametrize("r", [0.35, 0.1, 0.02])
def test_compressed_input_is_shorter_by_exactly_the_dropped_count(vlm, frames, r):
    lengths = []
    hook = vlm.model.model.language_model.register_forward_hook(
        lambda mod, args, kwargs, out: lengths.append(kwargs["inputs_embeds"].shape[1]), with_kwargs=True)
    try:
        full = vlm.answer(frames, "how many", 1.0, max_new_tokens=1)
        n_full = lengths[0]
        comp = vlm.answer(frames, "how many", r, SelectorConfig(tau=0.1), max_new_tokens=1)
        n_comp = lengths[1]
    finally:
        hook.remove()
    k = max(1, int(r * 64 + 1e-9))
    assert comp.visual_tokens == k + 1 and comp.selection.num_tokens == k
    assert n_full - n_comp == full.visual_tokens - comp.visual_tokens == 64 - k
    # the kept rows are the model's own pooled features at the selected positions, in temporal-raster order
    idx = comp.selection.indices
    assert bool((idx[1:] > idx[:-1]).all())


def test_selection_runs_on_the_models_features(vlm, frames):
    a = vlm.answer(frames, "what happens next", 0.5, max_new_tokens=1)
    assert a.selection.grid_shape == (4, 4, 4) and a.selection.tokens.shape == (32, 64)


@pytest.mark.parametrize("q,msg", [("", "question is empty"), ("   ", "question is empty"), ("x" * 3000, "limit")])
def test_bad_questions(vlm, frames, q, msg):
    with pytest.raises(VLMError, match=msg):
        vlm.answer(frames, q)


def test_bad_frames(vlm):
    with pytest.raises(VLMError, match="uint8"):
        vlm.answer(np.zeros((2, 8, 8), np.uint8), "what")


def test_missing_model_says_how_to_connect(tmp_path):
    with pytest.raises(VLMError, match="To connect one"):
        load_vlm("no-such-org/no-such-llava", "cpu")
    with pytest.raises(VLMError, match="not a model folder"):
        load_vlm(str(tmp_path), "cpu")

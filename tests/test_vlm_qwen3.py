"""Qwen3-VL through its family adapter, on a tiny random checkpoint built on the spot: at r = 1 the stock model's
logits and greedy answer; at r < 1 exactly the kept rows reach the language model, with the stock model's own
features, positions and DeepStack rows of those places, and every timestamp and start/end token kept."""

from __future__ import annotations

import pytest
import torch
from conftest import SAMPLE

from selector.compare import METHODS
from selector.video import read_clip
from selector.vlm import VLMError, load_vlm

Q = "what is in the video"


@pytest.fixture(scope="module", params=["qwen3_vl", "qwen3_vl_moe"])
def vlm(tmp_path_factory, request):
    """A tiny Qwen3-VL, and a tiny Qwen3-VL-MoE: the same adapter serves both."""
    from selector.bench.models import build

    return load_vlm(str(build(tmp_path_factory.mktemp(request.param), family=request.param)), device="cpu")


@pytest.fixture(scope="module")
def clip():
    return read_clip(SAMPLE, 6)


def _record(module):
    """Calls of `module.forward` (its keyword arguments), recorded while the original runs."""
    calls = []
    original = module.forward

    def forward(*args, **kwargs):
        calls.append(kwargs)
        return original(*args, **kwargs)

    module.forward = forward
    return calls, lambda: setattr(module, "forward", original)


def test_family_and_real_frame_times_reach_the_prompt(vlm, clip):
    assert type(vlm.model).__name__ == {"qwen3_vl": "Qwen3VLForConditionalGeneration",
                                        "qwen3_vl_moe": "Qwen3VLMoeForConditionalGeneration"}[vlm.family]
    inputs = vlm.prepare(clip.frames, Q, clip.timestamps)
    text = vlm.processor.tokenizer.decode(inputs["input_ids"][0])
    # each temporal patch (2 frames) is written at the mean time of its frames
    want = [f"{(a + b) / 2:.1f}" for a, b in zip(clip.timestamps[::2], clip.timestamps[1::2], strict=True)]
    stamps = [f"<{t} seconds>" for t in want]
    tok = vlm.processor.tokenizer
    assert tok.decode(tok(stamps[1])["input_ids"]) in text.replace("  ", " ")
    assert int(inputs["video_grid_thw"][0][0]) == len(want) == 3


def test_full_retention_equals_the_stock_model(vlm, clip):
    inputs = vlm.prepare(clip.frames, Q, clip.timestamps)
    a = vlm.answer(clip.frames, Q, 1.0, max_new_tokens=8, timestamps=clip.timestamps)
    with torch.inference_mode():
        ref = vlm.model(**inputs).logits[0, -1].float()
        gen = vlm.model.generate(**inputs, max_new_tokens=8, do_sample=False)
    torch.testing.assert_close(a.first_logits, ref, atol=1e-5, rtol=1e-5)
    stock = vlm.processor.decode(gen[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True).strip()
    assert a.text == stock and a.visual_tokens == a.full_visual_tokens == int((inputs["input_ids"] ==
                                                                               vlm.video_token_id).sum())


def test_compressed_prompt_gets_the_stock_rows_positions_and_deepstack_of_the_kept_places(vlm, clip):
    inputs = vlm.prepare(clip.frames, Q, clip.timestamps)
    ids = inputs["input_ids"][0]
    lm = vlm.model.model.language_model
    calls, restore = _record(lm)
    try:
        with torch.inference_mode():
            vlm.model(**inputs)  # the stock forward: what the language model gets for the full prompt
        full = calls[0]
        vlm.model.model.rope_deltas = torch.tensor([[12345]])  # stale state of an earlier call must not matter
        calls.clear()
        a = vlm.answer(clip.frames, Q, 0.3, max_new_tokens=3, timestamps=clip.timestamps)
        got = calls[0]  # the prefill; the decode steps follow
    finally:
        restore()
    video = ids == vlm.video_token_id
    kept = a.selection.keep.reshape(-1)
    keep = torch.ones_like(video)
    keep[video] = kept
    assert int(kept.sum()) == a.visual_tokens < a.full_visual_tokens
    # every non-video token stays: timestamps, start/end tokens and the text
    assert got["inputs_embeds"].shape[1] == int(keep.sum()) == len(ids) - int((~kept).sum())
    torch.testing.assert_close(got["inputs_embeds"][0], full["inputs_embeds"][0][keep])
    torch.testing.assert_close(got["position_ids"], full["position_ids"][:, :, keep])
    assert torch.equal(got["visual_pos_masks"][0], full["visual_pos_masks"][0][keep])
    rows = torch.nonzero(kept).flatten()
    assert len(got["deepstack_visual_embeds"]) == len(full["deepstack_visual_embeds"]) == 2
    for g, f in zip(got["deepstack_visual_embeds"], full["deepstack_visual_embeds"], strict=True):
        torch.testing.assert_close(g, f[rows])
    # the first generated token sits where the full prompt's next token would
    step = calls[1]
    assert int(step["position_ids"].flatten()[0]) == int(full["position_ids"].max()) + 1
    per_patch = kept.view(3, -1).sum(1)
    assert int(per_patch.min()) >= 1


def test_every_method_answers_or_is_refused_with_a_sentence(vlm, clip):
    answered = []
    for name in METHODS:
        try:
            a = vlm.answer(clip.frames, Q, 0.25, max_new_tokens=2, method=name, timestamps=clip.timestamps)
        except VLMError as e:
            assert "temporal patch" in str(e) and name in str(e), (name, e)
        else:
            assert 0 < a.visual_tokens < a.full_visual_tokens and a.text is not None, name
            answered.append(name)
    assert {"entropy_select", "random", "uniform_pool"} <= set(answered)
    with pytest.raises(VLMError, match="at least 3 rows"):  # fewer rows than temporal patches
        vlm.answer(clip.frames, Q, 2 / 459, max_new_tokens=2, timestamps=clip.timestamps)


def test_one_frame_is_refused_as_the_processor_refuses_it(vlm):
    frames = read_clip(SAMPLE, 1).frames
    with pytest.raises(VLMError, match="refused this video of 1 frame"):
        vlm.answer(frames, Q, 1.0, max_new_tokens=2)


@pytest.mark.parametrize("n", [2, 5])
def test_odd_frame_counts_are_padded_as_the_processor_pads_them(vlm, n):
    frames = read_clip(SAMPLE, n).frames
    inputs = vlm.prepare(frames, Q)
    a = vlm.answer(frames, Q, 1.0, max_new_tokens=4)
    with torch.inference_mode():
        ref = vlm.model(**inputs).logits[0, -1].float()
    torch.testing.assert_close(a.first_logits, ref, atol=1e-5, rtol=1e-5)
    assert int(inputs["video_grid_thw"][0][0]) == (n + 1) // 2
    b = vlm.answer(frames, Q, 0.5, max_new_tokens=2)
    assert b.visual_tokens < a.visual_tokens


def test_time_limit_stops_the_answer_between_tokens(vlm, clip, monkeypatch):
    import time

    import selector.vlm
    from selector.limits import TimeLimitError, time_limit

    seen = []

    def slow(text, ttft):  # each token takes 0.1 s more: the 0.35 s limit falls after a few tokens
        seen.append(text)
        time.sleep(0.1)

    monkeypatch.setattr(selector.vlm, "_eos_ids", lambda *a: set())  # no early end: only the limit stops it
    with pytest.raises(TimeLimitError, match="generating the answer"), time_limit(0.35):
        vlm.answer(clip.frames, Q, 0.5, max_new_tokens=64, on_token=slow, timestamps=clip.timestamps)
    assert 1 <= len(seen) < 64


def test_an_unknown_family_is_named_with_the_ones_driven(tmp_path):
    import json

    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(VLMError, match="LLaVA-OneVision, Qwen2.5-VL, Qwen3-VL"):
        load_vlm(str(tmp_path), device="cpu")


def test_a_missing_or_mismatched_processor_is_named(vlm, tmp_path):
    import shutil

    from selector.bench.models import build

    folder = tmp_path / "no-processor"
    shutil.copytree(vlm.name, folder)
    (folder / "processor_config.json").unlink()
    with pytest.raises(VLMError, match="could not load"):
        load_vlm(str(folder), device="cpu")
    other = build(tmp_path / "qwen25", family="qwen2_5_vl")
    mixed = tmp_path / "mixed"
    shutil.copytree(vlm.name, mixed)
    for f in ("processor_config.json", "preprocessor_config.json", "video_preprocessor_config.json"):
        (mixed / f).unlink(missing_ok=True)
        if (other / f).exists():
            shutil.copy(other / f, mixed / f)
    with pytest.raises(VLMError, match="Qwen3-VL(-MoE)? model, but its processor files give a Qwen2_5_VLProcessor"):
        load_vlm(str(mixed), device="cpu")

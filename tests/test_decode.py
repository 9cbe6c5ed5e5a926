"""The static-cache decode (selector/decode.py) of every family: the same greedy tokens as the eager loop and, with
every video token, as the stock `generate`; the fall-backs to the eager loop. Tiny random models on a CPU (the step
runs eagerly there); the CUDA-graph replay is checked on a GPU."""

from __future__ import annotations

import dataclasses

import media
import pytest
import torch

from selector.bench.models import BUILDERS, build
from selector.decode import StaticDecoder
from selector.vlm import load_vlm

FAMILIES = [f for f in BUILDERS if f != "qwen3_vl_moe"]
QUESTION = "what is in the video"


@pytest.fixture(scope="module", params=FAMILIES)
def vlm(tmp_path_factory, request):
    return load_vlm(str(build(tmp_path_factory.mktemp(request.param), family=request.param)), "cpu")


@pytest.fixture(scope="module")
def frames():
    return media.pattern(4, 72, 96)


def _static(vlm, **kw):
    return dataclasses.replace(vlm, decoder=StaticDecoder(vlm.model, graphs=False, **kw))


def _no_eos(vlm, monkeypatch):
    """The tiny models' answers run to max_new_tokens (no end-of-text token), so every step is compared."""
    import selector.vlm as v

    monkeypatch.setattr(v, "_eos_ids", lambda model, processor: set())


@pytest.mark.parametrize("r", [1.0, 0.35])
def test_static_cache_decode_gives_the_eager_loops_tokens(vlm, frames, r, monkeypatch):
    _no_eos(vlm, monkeypatch)
    eager = vlm.answer(frames, QUESTION, r, max_new_tokens=20)
    static = _static(vlm).answer(frames, QUESTION, r, max_new_tokens=20)
    assert eager.decode_path == "eager" and static.decode_path == "static"
    assert static.new_tokens == eager.new_tokens == 20
    assert static.text == eager.text and static.visual_tokens == eager.visual_tokens
    assert static.decode_ms > 0 and static.ms_per_token == pytest.approx(static.decode_ms / 19)


def test_full_retention_answer_equals_the_stock_generate(vlm, frames, monkeypatch):
    _no_eos(vlm, monkeypatch)
    a = _static(vlm).answer(frames, QUESTION, 1.0, max_new_tokens=16)
    inputs = {k: v for k, v in vlm.prepare(frames, QUESTION).items()}
    with torch.inference_mode():
        out = vlm.model.generate(**inputs, max_new_tokens=16, do_sample=False, eos_token_id=None,
                                 pad_token_id=0, min_new_tokens=16)
    stock = vlm.processor.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True).strip()
    assert a.new_tokens == 16 and a.text == stock


def test_streaming_and_the_end_token_are_as_in_the_eager_loop(vlm, frames, monkeypatch):
    seen: list[str] = []
    eager = vlm.answer(frames, QUESTION, 0.35, max_new_tokens=8)
    static = _static(vlm).answer(frames, QUESTION, 0.35, max_new_tokens=8, on_token=lambda t, ttft: seen.append(t))
    assert static.text == eager.text and static.new_tokens == eager.new_tokens
    assert len(seen) == static.new_tokens and seen[-1] == static.text  # one growing prefix per token
    # an end-of-text token stops the answer where the eager loop stops: make the answer's 3rd token the end
    import selector.vlm as v

    _no_eos(vlm, monkeypatch)
    ids = vlm.processor.tokenizer(_static(vlm).answer(frames, QUESTION, 0.35, max_new_tokens=8).text,
                                  add_special_tokens=False)["input_ids"]
    if len(ids) >= 3:
        monkeypatch.setattr(v, "_eos_ids", lambda model, processor: {ids[2]})
        a = _static(vlm).answer(frames, QUESTION, 0.35, max_new_tokens=8)
        b = vlm.answer(frames, QUESTION, 0.35, max_new_tokens=8)
        assert (a.text, a.new_tokens) == (b.text, b.new_tokens) and a.new_tokens < 8  # stopped early


def test_an_answer_that_does_not_fit_falls_back_to_the_eager_loop(vlm, frames, monkeypatch):
    _no_eos(vlm, monkeypatch)
    small = _static(vlm, max_rows=16)  # the prompt alone is longer
    a = small.answer(frames, QUESTION, 0.35, max_new_tokens=6)
    assert a.decode_path == "eager" and a.text == vlm.answer(frames, QUESTION, 0.35, max_new_tokens=6).text


def test_buckets_are_bounded_and_reused(vlm, frames, monkeypatch):
    _no_eos(vlm, monkeypatch)
    s = _static(vlm, max_graphs=2)
    for n in (4, 4, 40, 200):
        s.answer(frames, QUESTION, 0.35, max_new_tokens=n)
    assert len(s.decoder._slots) == 2  # three buckets asked for, two kept (least recently used dropped)


def test_models_the_static_cache_cannot_take_keep_the_eager_loop(tmp_path):
    from selector.bench.models import make_qwen
    from selector.vlm import graph_decoder

    model, _ = make_qwen()
    model.config.get_text_config()._attn_implementation = "eager"
    with pytest.raises(ValueError, match="needs full causal attention through SDPA"):
        StaticDecoder(model, graphs=False)
    assert graph_decoder(model) is None  # and a CPU model never gets one by default


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
@pytest.mark.parametrize("family", FAMILIES)
def test_cuda_graph_decode_gives_the_eager_loops_tokens(tmp_path, frames, family, monkeypatch):
    folder = build(tmp_path / family, family=family)
    graph = load_vlm(str(folder), "cuda", torch.float32)
    eager = dataclasses.replace(graph, decoder=None)
    import selector.vlm as v

    monkeypatch.setattr(v, "_eos_ids", lambda model, processor: set())
    for r in (1.0, 0.35, 1.0):
        a, b = eager.answer(frames, QUESTION, r, max_new_tokens=24), graph.answer(frames, QUESTION, r,
                                                                                 max_new_tokens=24)
        assert b.decode_path == "graph" and (a.text, a.new_tokens) == (b.text, b.new_tokens)
    assert graph.decoder.captures == len(graph.decoder._slots) >= 1 and graph.decoder.disabled is None


def test_the_ask_tab_shows_time_to_first_token_and_tokens_per_second(vlm, frames, monkeypatch):
    from selector.app.tab_ask import answer_dict, answer_md

    _no_eos(vlm, monkeypatch)
    a = vlm.answer(frames, QUESTION, 0.35, max_new_tokens=6)
    md = answer_md("Compressed", a)
    assert f"**{a.tokens_per_s:.0f} tokens/s**" in md and f"time to first token **{a.prefill_ms:.0f} ms**" in md
    d = answer_dict(a)
    assert d["tokens_per_s"] == round(a.tokens_per_s, 1) and d["decode_path"] == "eager" and d["new_tokens"] == 6
    one = vlm.answer(frames, QUESTION, 0.35, max_new_tokens=1)  # one token: no rate to show
    assert one.ms_per_token is None and "tokens/s" not in answer_md("Compressed", one)


def test_the_language_model_receives_the_models_own_features_at_the_kept_places(vlm, frames):
    """For every family: the rows the language model receives in place of the video are the model's own video
    features at the places ENTROPY-SELECT kept (selected on those very features), in order, then the family's tail."""
    from selector import select_tokens

    seen = []
    hook = vlm.model.model.language_model.register_forward_hook(
        lambda mod, args, kwargs, out: seen.append(kwargs["inputs_embeds"].detach().clone()), with_kwargs=True)
    try:
        a = vlm.answer(frames, QUESTION, 0.35, max_new_tokens=1)
    finally:
        hook.remove()
    embeds = seen[0][0]
    with torch.inference_mode():
        video = vlm._vision(vlm.prepare(frames, QUESTION), frames.shape[0])
        assert torch.equal(a.selection.indices, select_tokens(video.grid, 0.35).indices)
    grid = video.grid.reshape(-1, video.grid.shape[-1])
    want = torch.cat([grid[a.selection.indices], video.tail]).to(embeds.dtype)
    # each row is in the prompt, exactly, in order (Qwen3-VL puts timestamp text between temporal patches)
    where = [(embeds == row).all(-1).nonzero().flatten().tolist() for row in want]
    assert all(where), "a kept row is not in the language model's input"
    at = [w[0] for w in where]
    assert at == sorted(at) and len(set(at)) == len(at)
    assert embeds.shape[0] == a.prompt_tokens and want.shape[0] == a.visual_tokens

"""Ask the video: a tiny random LLaVA-OneVision built here, saved and loaded back (no hub)."""

from __future__ import annotations

import media
import numpy as np
import pytest
import torch

from selector import SelectorConfig
from selector.bench.models import build
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
    assert set(a.stages_ms) == {"vision", "select", "llm_prefill"} and a.setup_ms == 0
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
    # kept positions ascend (temporal-raster order); the rows themselves are checked against the model's features in
    # tests/test_decode.py, for every family
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
    with pytest.raises(VLMError, match="comes from the Hugging Face hub.*--local-dir DIR"):
        load_vlm("no-such-org/no-such-llava", "cpu")
    with pytest.raises(VLMError, match="not a model folder"):
        load_vlm(str(tmp_path), "cpu")


# --- the LLM prefill from CUDA graphs (selector.prefill): padding to a bucket, cache hand-over ---------------

def _with_prefill(vlm, graphs):
    import dataclasses

    from selector.prefill import GraphPrefill

    return dataclasses.replace(vlm, prefill=GraphPrefill(vlm.model, graphs=graphs))


def test_bucket_rounds_up_with_little_padding():
    from selector.prefill import bucket

    sizes = {n: bucket(n) for n in range(1, 20000)}
    assert all(s >= n for n, s in sizes.items())
    assert all(sizes[n + 1] >= sizes[n] for n in range(1, 19999))  # a longer prompt never gets a smaller buffer
    assert all((sizes[n] - n) / n < 1 / 16 for n in range(1024, 20000))
    assert len({sizes[n] for n in range(1025, 2049)}) == 16  # n = 1025..2048: 16 buckets per doubling
    assert (bucket(324), bucket(1108), bucket(3147), bucket(6283)) == (384, 1152, 3200, 6400)
    with pytest.raises(ValueError):
        bucket(0)


@pytest.mark.parametrize("r", [1.0, 0.35])
def test_padded_prefill_equals_the_stock_forward_and_decodes_the_same(vlm, frames, r):
    """The bucketed prefill (here eager, so that it runs on a CPU) pads the prompt at the end; causal attention
    leaves the real rows unchanged, and the cache handed to decoding holds the real rows only."""
    padded = _with_prefill(vlm, graphs=False)
    seen = []
    hook = vlm.model.model.language_model.register_forward_hook(
        lambda mod, args, kwargs, out: seen.append(kwargs["inputs_embeds"].shape[1]), with_kwargs=True)
    try:
        stock = vlm.answer(frames, "what is in the video", r, max_new_tokens=6)
        ours = padded.answer(frames, "what is in the video", r, max_new_tokens=6)
    finally:
        hook.remove()
    from selector.prefill import bucket

    n = seen[0]  # the stock prefill's length; then its decode steps (1 row each), then ours
    assert seen[stock.new_tokens] == bucket(n) > n
    assert float((stock.first_logits - ours.first_logits).abs().max()) < 1e-5
    assert (ours.text, ours.new_tokens, ours.visual_tokens) == (stock.text, stock.new_tokens, stock.visual_tokens)


def test_padded_prefill_cache_continues_like_the_stock_cache(vlm, frames):
    """Decoding on the handed-over cache gives the stock next-token logits (a cache that kept the padded rows
    would shift every later position)."""
    from selector.prefill import GraphPrefill

    inputs = vlm.prepare(frames, "and then")
    ids = inputs["input_ids"]
    with torch.inference_mode():
        embeds = vlm.model.model.get_input_embeddings()(ids)
        stock = vlm.model(inputs_embeds=embeds, attention_mask=torch.ones_like(ids), use_cache=True)
        ours = GraphPrefill(vlm.model, graphs=False)(embeds)
        assert ours.past_key_values.get_seq_length() == ids.shape[1]  # (decoding below appends to it)
        nxt = torch.tensor([[5]])
        mask = torch.ones((1, ids.shape[1] + 1), dtype=torch.long)
        a = vlm.model(input_ids=nxt, past_key_values=stock.past_key_values, attention_mask=mask).logits
        b = vlm.model(input_ids=nxt, past_key_values=ours.past_key_values, attention_mask=mask).logits
    assert float((a - b).abs().max()) < 1e-5


def test_prefill_option_is_checked(tmp_path):
    with pytest.raises(VLMError, match="prefill must be"):
        load_vlm("anything", "cpu", prefill="fast")
    with pytest.raises(VLMError, match="needs a CUDA device"):
        load_vlm("anything", "cpu", prefill="graph")


def test_cpu_model_keeps_the_stock_prefill(vlm):
    assert vlm.prefill is None  # "auto" on a CPU: no graphs, the stock forward


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_cuda_graph_prefill_answers_like_the_stock_forward(tmp_path, frames):
    folder = build(tmp_path / "m")
    stock = load_vlm(str(folder), "cuda", torch.float32, prefill="eager")
    graph = load_vlm(str(folder), "cuda", torch.float32, prefill="graph")
    assert stock.prefill is None and graph.prefill is not None
    setups = []
    for r in (1.0, 0.35, 0.1, 0.35):
        a = stock.answer(frames, "what is in the video", r, max_new_tokens=6)
        b = graph.answer(frames, "what is in the video", r, max_new_tokens=6)
        assert float((a.first_logits - b.first_logits).abs().max()) < 1e-4
        assert (a.text, a.new_tokens, a.visual_tokens) == (b.text, b.new_tokens, b.visual_tokens)
        assert a.setup_ms == 0 and b.total_ms >= b.prefill_ms > 0
        setups.append(b.setup_ms)
    assert setups[0] > 0 and setups[-1] == 0  # the capture is reported apart, once per bucket
    full, comp = graph.compare(frames, "what is in the video", 0.1, max_new_tokens=6)
    ref = stock.answer(frames, "what is in the video", 0.1, max_new_tokens=6)
    assert (comp.text, comp.visual_tokens) == (ref.text, ref.visual_tokens) and full.visual_tokens == 65
    assert float((comp.first_logits - ref.first_logits).abs().max()) < 1e-4
    assert graph.prefill.disabled is None
    assert graph.prefill.captures == len(graph.prefill._slots) >= 1  # one capture per bucket, replayed after


def test_padded_prefill_refuses_models_it_would_answer_wrongly(tmp_path):
    """Eager attention ignores a missing mask (it would attend to later rows), and sliding-window layers need
    their own masks: no graphs for those, the stock forward answers."""
    from selector.bench.models import make
    from selector.prefill import GraphPrefill

    model, _ = make()
    model.config.text_config._attn_implementation = "eager"
    with pytest.raises(ValueError, match="attention 'eager'"):
        GraphPrefill(model, graphs=False)
    model.config.text_config._attn_implementation = "sdpa"
    model.config.text_config.layer_types = ["full_attention", "sliding_attention"]
    with pytest.raises(ValueError, match="sliding_attention"):
        GraphPrefill(model, graphs=False)


@pytest.mark.parametrize("error,disabled", [(torch.cuda.OutOfMemoryError("CUDA out of memory"), False),
                                            (RuntimeError("operation not permitted when stream is capturing"), True)])
def test_failed_capture_answers_with_the_stock_forward(vlm, frames, monkeypatch, error, disabled):
    """A capture that runs out of GPU memory frees the graphs and answers this prompt eagerly (the next one tries
    again); any other capture error turns the graphs off for good. Either way the answer is the stock one.
    (The capture itself cannot fail here on a CPU, so `_slot` is made to raise.)"""
    padded = _with_prefill(vlm, graphs=False)
    ok = padded.answer(frames, "what is in the video", 0.35, max_new_tokens=4)  # a bucket in the cache
    assert len(padded.prefill._slots) == 1

    def fail(rows, like):
        raise error

    monkeypatch.setattr(padded.prefill, "_slot", fail)
    with pytest.warns(RuntimeWarning, match="turned off" if disabled else "out of GPU memory"):
        got = padded.answer(frames, "what is in the video", 0.35, max_new_tokens=4)
    assert (got.text, got.new_tokens) == (ok.text, ok.new_tokens)
    assert float((got.first_logits - ok.first_logits).abs().max()) < 1e-5
    assert padded.prefill._slots == {} and (padded.prefill.disabled is not None) == disabled


def test_compiled_padded_prefill_equals_the_stock_forward(vlm, frames):
    """prefill='compiled' runs the padded forward through torch.compile (dynamic lengths) before capturing it;
    here without graphs, on a CPU: same first-token logits and answer as the stock forward, and a second length
    bucket reuses the compilation."""
    import dataclasses

    from selector.prefill import GraphPrefill

    comp = dataclasses.replace(vlm, prefill=GraphPrefill(vlm.model, graphs=False, compile=True))
    for r in (1.0, 0.1):
        a = vlm.answer(frames, "what is in the video", r, max_new_tokens=4)
        b = comp.answer(frames, "what is in the video", r, max_new_tokens=4)
        assert float((a.first_logits - b.first_logits).abs().max()) < 1e-5
        assert (a.text, a.new_tokens) == (b.text, b.new_tokens)


def test_compare_runs_the_vision_tower_once_and_answers_as_answer_does(vlm, frames):
    calls = []
    hook = vlm.model.model.vision_tower.register_forward_hook(lambda *a: calls.append(1))
    try:
        full, comp = vlm.compare(frames, "what is in the video", 0.35, SelectorConfig(tau=0.1), max_new_tokens=4)
        n_compare = len(calls)
        one = vlm.answer(frames, "what is in the video", 0.35, SelectorConfig(tau=0.1), max_new_tokens=4)
        stock = vlm.answer(frames, "what is in the video", 1.0, max_new_tokens=4)
    finally:
        hook.remove()
    assert n_compare == 1 and len(calls) == 3  # compare: once for both answers; answer: once each
    for a, b in ((full, stock), (comp, one)):
        assert (a.text, a.visual_tokens, a.new_tokens) == (b.text, b.visual_tokens, b.new_tokens)
        assert float((a.first_logits - b.first_logits).abs().max()) < 1e-5
    # both times to first token count the one measured tower time
    assert full.stages_ms["vision"] == comp.stages_ms["vision"] > 0
    assert comp.prefill_ms == pytest.approx(sum(comp.stages_ms.values()), rel=1e-6)


@pytest.mark.parametrize("method", ["random", "uniform_pool", "tome", "vidcom2"])
def test_any_method_of_the_registry_feeds_its_rows(vlm, frames, method):
    """K rows in (the input shorter by exactly the dropped count, the embeddings at the video run equal to the
    method's rows in position order); at retention 1.0 the stock forward's logits."""
    from selector.compare import compress

    seen = []
    hook = vlm.model.model.language_model.register_forward_hook(
        lambda mod, args, kwargs, out: seen.append(kwargs["inputs_embeds"].detach().clone()), with_kwargs=True)
    try:
        full = vlm.answer(frames, "what is in the video", 1.0, max_new_tokens=1, method=method)
        comp = vlm.answer(frames, "what is in the video", 0.25, max_new_tokens=1, method=method)
    finally:
        hook.remove()
    inputs = vlm.prepare(frames, "what is in the video")
    with torch.inference_mode():
        stock = vlm.model(**inputs).logits[0, -1].float()
        grid = vlm._vision(inputs, 4).grid
    assert float((stock - full.first_logits).abs().max()) < 1e-5
    want = compress(method, grid, 0.25)
    assert comp.visual_tokens == want.num_tokens + 1 == 16 + 1 and comp.selection is None
    assert seen[0].shape[1] - seen[1].shape[1] == 64 - 16
    start = int(torch.nonzero(inputs["input_ids"][0] == vlm.video_token_id)[0])
    torch.testing.assert_close(seen[1][0, start:start + 16], want.tokens.to(seen[1].dtype))
    with pytest.raises(Exception, match="unknown method"):
        vlm.answer(frames, "what", 0.5, max_new_tokens=1, method="nope")


def test_compare_methods_reports_kl_and_agreement(vlm, frames):
    rows = vlm.compare_methods(frames, "what is in the video", 1.0, ["random", "tome"], max_new_tokens=2)
    assert [r["method"] for r in rows] == ["all tokens", "random", "tome"]
    assert all(abs(r["kl_first_token"]) < 1e-6 and r["same_answer"] for r in rows)  # nothing dropped at r = 1
    rows = vlm.compare_methods(frames, "what is in the video", 0.1, ["random", "frame_sample"], max_new_tokens=2)
    assert all(r["kl_first_token"] >= 0 and r["ttft_ms"] > 0 for r in rows)
    assert rows[1]["visual_tokens"] == max(1, int(0.1 * 64)) + 1
    assert any(r["kl_first_token"] > 0 for r in rows[1:])  # dropping 90 % changes the distribution


def test_on_token_streams_growing_prefixes_of_the_answer(vlm, frames):
    seen: list[tuple[str, float]] = []
    a = vlm.answer(frames, "what is in the video", 0.5, max_new_tokens=10, on_token=lambda t, ttft: seen.append((t, ttft)))
    assert len(seen) == a.new_tokens
    assert seen[-1][0] == a.text
    assert all(ttft == a.prefill_ms for _, ttft in seen)  # the time to first token, known from the first call
    texts = [t for t, _ in seen]
    assert all(len(x) <= len(y) for x, y in zip(texts, texts[1:], strict=False))
    both: list[str] = []
    full, comp = vlm.compare(frames, "what", 0.5, max_new_tokens=6, on_token=lambda w, t, ttft: both.append(w))
    assert both == ["full"] * full.new_tokens + ["entropy_select"] * comp.new_tokens

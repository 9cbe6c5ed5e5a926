"""Encoders: the DINOv2 conversion against the ONNX graph, shapes, hub path on tiny local models, cache, CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import media
import numpy as np
import pytest
import torch
from conftest import ROOT, SAMPLE

from selector.encoders import EncoderError, _dinov2_model, _onnx_path, load_encoder
from selector.features import FeatureCache, extract


def test_dinov2_conversion_matches_onnx_graph():
    import onnx
    from onnx.reference import ReferenceEvaluator

    model = onnx.load(str(_onnx_path()))
    name = "/backbone/layernorm/Add_1_output_0"  # the backbone's last hidden state inside the graph
    model.graph.output.insert(0, onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    x = np.random.RandomState(0).randn(1, 3, 224, 224).astype(np.float32)
    ref = ReferenceEvaluator(model).run([name], {"input_image": x})[0]
    with torch.inference_mode():
        ours = _dinov2_model(torch.device("cpu"))(pixel_values=torch.from_numpy(x)).last_hidden_state.numpy()
    assert ours.shape == ref.shape == (1, 257, 384)
    assert np.abs(ours - ref).max() < 1e-4


@pytest.mark.parametrize("name,grid,dim", [("dinov2-s", (27, 27), 384), ("efficientnet-lite0", (12, 12), 1280)])
@pytest.mark.parametrize("hw", [(96, 160), (200, 60)])
def test_offline_encoders_any_aspect(name, grid, dim, hw):
    enc = load_encoder(name, "cpu")
    frames = media.pattern(3, *hw)
    seen = []
    x = enc.encode(frames, progress=lambda d, t: seen.append((d, t)))
    assert x.shape == (3, *grid, dim) and x.dtype == torch.float32 and torch.isfinite(x).all()
    assert seen[-1] == (3, 3)
    # different frames give different tokens; the encoder is deterministic
    assert not torch.allclose(x[0], x[2]) and torch.equal(x, enc.encode(frames))


def test_dinov2_patch_tokens_follow_the_image():
    enc = load_encoder("dinov2-s", "cpu")
    f = np.full((1, 378, 378, 3), 40, np.uint8)
    f[0, 140:240, 140:240] = 230  # a bright square in the middle
    x = enc.encode(f)[0]
    xn = x / x.norm(dim=-1, keepdim=True)
    centre, corner = xn[13, 13], xn[1, 1]
    assert float(centre @ xn[12, 12]) > float(centre @ corner)


@pytest.mark.parametrize("bad", [np.zeros((2, 8, 8), np.uint8), np.zeros((2, 8, 8, 3), np.float32),
                                 np.zeros((0, 8, 8, 3), np.uint8), [[1, 2]]])
def test_encode_rejects_bad_frames(bad):
    with pytest.raises(EncoderError, match="frames"):
        load_encoder("efficientnet-lite0", "cpu").encode(bad)


@pytest.mark.parametrize("name,msg", [("", "non-empty"), ("no-such-org/no-such-model", "comes from the Hugging Face hub"),
                                      ("   ", "non-empty")])
def test_unknown_or_unreachable_encoder(name, msg):
    with pytest.raises(EncoderError, match=msg):
        load_encoder(name, "cpu")


def _save_tiny(kind: str, d):
    from transformers import (
        CLIPVisionConfig,
        CLIPVisionModel,
        Dinov2Config,
        Dinov2Model,
        SiglipImageProcessor,
        SiglipVisionConfig,
        SiglipVisionModel,
    )

    torch.manual_seed(0)
    if kind == "siglip":
        m = SiglipVisionModel(SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                                 num_attention_heads=2, image_size=56, patch_size=14))
    elif kind == "clip":
        m = CLIPVisionModel(CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                             num_attention_heads=2, image_size=56, patch_size=14))
    else:
        m = Dinov2Model(Dinov2Config(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                     num_attention_heads=2, image_size=56, patch_size=14))
    m.save_pretrained(d)
    SiglipImageProcessor(size={"height": 56, "width": 56}).save_pretrained(d)
    return m


@pytest.mark.parametrize("kind", ["siglip", "clip", "dinov2"])
def test_hub_path_with_tiny_local_models(kind, tmp_path):
    m = _save_tiny(kind, tmp_path)
    enc = load_encoder(str(tmp_path), "cpu")
    assert enc.grid == (4, 4) and enc.dim == 32
    frames = media.pattern(2, 56, 56)
    x = enc.encode(frames)
    assert x.shape == (2, 4, 4, 32)
    with torch.inference_mode():
        ref = m(pixel_values=enc.preprocess(frames)).last_hidden_state
    prefix = 0 if kind == "siglip" else 1
    torch.testing.assert_close(x.reshape(2, 16, 32), ref[:, prefix:], atol=1e-5, rtol=1e-5)


def test_llava_onevision_tokens_are_the_pooled_projected_features(tmp_path):
    from transformers import (
        LlavaOnevisionConfig,
        LlavaOnevisionForConditionalGeneration,
        Qwen2Config,
        SiglipVisionConfig,
    )

    torch.manual_seed(0)
    cfg = LlavaOnevisionConfig(
        vision_config=SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=2, image_size=56, patch_size=14).to_dict(),
        text_config=Qwen2Config(hidden_size=48, intermediate_size=96, num_hidden_layers=1, num_attention_heads=4,
                                num_key_value_heads=2, vocab_size=128).to_dict(),
        vision_feature_layer=-1,
    )
    model = LlavaOnevisionForConditionalGeneration(cfg).eval()
    model.save_pretrained(tmp_path)
    enc = load_encoder(f"llava-onevision:{tmp_path}", "cpu")
    frames = media.pattern(3, 56, 56)
    x = enc.encode(frames)
    assert x.shape == (3, 2, 2, 48) and enc.grid == (2, 2)
    with torch.inference_mode():
        out = model.model.get_video_features(pixel_values_videos=enc.preprocess(frames)[None])
    feats = out.pooler_output if hasattr(out, "pooler_output") else out
    feats = torch.cat(list(feats)) if isinstance(feats, (list, tuple)) else feats
    torch.testing.assert_close(x.reshape(-1, 48), feats.reshape(-1, 48)[:12], atol=1e-5, rtol=1e-5)


def test_feature_cache_hits_by_content_and_stays_bounded(tmp_path):
    a = media.write(tmp_path / "a.mp4", media.pattern(6, 64, 64))
    b = tmp_path / "b_same_content.mp4"
    b.write_bytes(a.read_bytes())
    c = media.write(tmp_path / "c.mp4", media.pattern(6, 64, 64, seed=99))
    cache = FeatureCache(max_bytes=10**9)
    f1 = extract(a, "efficientnet-lite0", 4, cache=cache)
    f2 = extract(b, "efficientnet-lite0", 4, cache=cache)
    assert f2.tokens is f1.tokens and f2.from_cache and not f1.from_cache and cache.hits == 1
    f3 = extract(c, "efficientnet-lite0", 4, cache=cache)
    assert not f3.from_cache and not torch.equal(f3.tokens, f1.tokens)
    assert not extract(a, "efficientnet-lite0", 3, cache=cache).from_cache  # frames are part of the key
    small = FeatureCache(max_bytes=f1.nbytes + 1)
    extract(a, "efficientnet-lite0", 4, cache=small)
    extract(c, "efficientnet-lite0", 4, cache=small)
    assert len(small) == 1 and small.nbytes <= f1.nbytes + 1


def test_cli_writes_json_and_npz(tmp_path):
    for suffix in (".json", ".npz"):
        out = tmp_path / f"r{suffix}"
        r = subprocess.run([sys.executable, "-m", "selector", str(SAMPLE), "--encoder", "efficientnet-lite0",
                            "--frames", "4", "--retention", "0.2", "--out", str(out)],
                           capture_output=True, text=True, cwd=ROOT, timeout=300)
        assert r.returncode == 0, r.stderr
        assert "encoding frames" in r.stderr and "kept 115 of 576" in r.stdout
        if suffix == ".json":
            d = json.loads(out.read_text())
            assert d["tokens_kept"] == 115 and sum(d["budgets"]) == 115 and d["grid"] == [4, 12, 12]
            assert len(d["indices"]) == 115 and np.asarray(d["entropy"]).shape == (4, 12, 12)
        else:
            z = np.load(out, allow_pickle=False)
            assert z["indices"].shape == (115,) and z["score"].shape == (4, 12, 12)
            assert json.loads(str(z["summary"]))["encoder"] == "efficientnet-lite0"


def test_cli_has_a_flag_for_every_knob_and_sweeps_retentions_on_one_computation_of_the_maps(tmp_path):
    """Every SelectorConfig field is a flag; the flags reach the selection; several retentions write one file
    each, the later ones on the first one's maps, and select what select_tokens selects on the same features."""
    from dataclasses import fields

    from selector import SelectorConfig, select_tokens
    from selector.config import knobs as table

    flags = {"--" + k.name.replace("_", "-"): k.name for k in table() if k.kind != "bool"}
    assert set(flags.values()) | {"grid_fusion", "invert_entropy"} == {f.name for f in fields(SelectorConfig)}
    knobs = {"--alpha": 0.7, "--tau": 0.05, "--window": 3, "--temporal-window": 2, "--past-window": 5, "--grid": 3,
             "--rho": 0.8, "--q": 0.5, "--tau-alloc": 0.2, "--min-tokens": 2, "--max-tokens": 100}
    assert set(knobs) == set(flags)
    out = tmp_path / "sweep.npz"
    args = [a for kv in knobs.items() for a in map(str, kv)]
    r = subprocess.run([sys.executable, "-m", "selector", str(SAMPLE), "--encoder", "efficientnet-lite0", "--frames",
                        "4", "--retention", "0.1", "0.35", *args, "--out", str(out)],
                       capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("(maps reused)") == 1 and "r=0.35: kept 201 of 576" in r.stdout, r.stdout
    cfg = SelectorConfig(**{f: knobs[flag] for flag, f in flags.items()})
    feats = extract(SAMPLE, "efficientnet-lite0", 4, cache=None)
    saved = {}
    for ret in (0.1, 0.35):
        z = np.load(tmp_path / f"sweep-r{ret}.npz", allow_pickle=False)
        assert json.loads(str(z["summary"]))["config"] == {f.name: getattr(cfg, f.name) for f in fields(cfg)}
        want = select_tokens(feats.tokens, ret, cfg)
        assert np.array_equal(z["indices"], want.indices.numpy()) and np.array_equal(z["budgets"], want.budgets)
        saved[ret] = z["entropy"]
    assert np.array_equal(saved[0.1], saved[0.35]) and not out.exists()


def test_cli_bad_input_is_one_clear_line(tmp_path):
    bad = tmp_path / "x.mp4"
    bad.write_text("nope")
    (tmp_path / "taken.npz").mkdir()  # a folder where the output file should go
    for args, msg in [([str(bad)], "not a video"), ([str(SAMPLE), "--retention", "2"], "retention must be in"),
                      ([str(bad), "--retention", "0.2", "nan"], "retention must be in (0, 1], got nan"),
                      ([str(SAMPLE), "--out", str(tmp_path / "none" / "r.npz")], "does not exist"),
                      ([str(tmp_path / "missing.mp4")], "missing.mp4: no such file"),
                      ([str(SAMPLE), "--frames", "2", "--out", str(tmp_path / "taken.npz")], "could not write"),
                      ([str(SAMPLE), "--frames", "2", "--retention", "0.1", "0.9", "--max-tokens", "20"],
                       "r=0.9: max_tokens=20"),
                      ([str(SAMPLE), "--window", "4"], "window must be odd"), ([str(SAMPLE), "--out", "r.txt"], ".npz")]:
        r = subprocess.run([sys.executable, "-m", "selector", *args, "--encoder", "efficientnet-lite0"],
                           capture_output=True, text=True, cwd=ROOT, timeout=300)
        assert r.returncode == 2 and msg in r.stderr and "Traceback" not in r.stderr, r.stderr


@pytest.mark.parametrize("size", [378, 224, 518])
def test_torch_dinov2_equals_transformers_dinov2_model(size):
    """The offline encoder's own DINOv2 module computes what transformers' Dinov2Model computes with the same
    weights, at the encoder's size, a smaller one (position embeddings resized) and the native one (not resized)."""
    from safetensors.torch import load_file
    from transformers import Dinov2Config, Dinov2Model

    from selector.encoders import _dinov2_model, cache_dir

    ours = _dinov2_model(torch.device("cpu"))
    ref = Dinov2Model(Dinov2Config(hidden_size=384, num_hidden_layers=12, num_attention_heads=6,
                                   intermediate_size=1536, patch_size=14, image_size=518, layerscale_value=1.0,
                                   layer_norm_eps=1e-6)).eval()
    missing, unexpected = ref.load_state_dict(load_file(str(next(cache_dir().glob("dinov2-s-*.safetensors")))),
                                              strict=False)
    assert not unexpected and all(m.startswith("pooler") for m in missing)
    x = torch.from_numpy(np.random.RandomState(size).randn(2, 3, size, size).astype(np.float32))
    with torch.inference_mode():
        a, b = ours(pixel_values=x).last_hidden_state, ref(pixel_values=x).last_hidden_state
    assert a.shape == b.shape == (2, (size // 14) ** 2 + 1, 384)
    assert (a - b).abs().max().item() < 1e-4


def _agreement(a: torch.Tensor, b: torch.Tensor) -> tuple[float, float, list[float]]:
    from selector import select_tokens

    cos = torch.nn.functional.cosine_similarity(a.reshape(-1, a.shape[-1]), b.reshape(-1, b.shape[-1]), dim=-1)
    same = [float((select_tokens(a, r).keep == select_tokens(b, r).keep).float().mean()) for r in (0.1, 0.35, 0.5)]
    return float(cos.mean()), float(torch.quantile(cos, 0.001)), same


@pytest.mark.parametrize("clip", ["bundled", "pattern"])
def test_bf16_dinov2_keeps_the_selections_of_fp32(clip):
    """The low-precision default encoder: token cosine to fp32 ≥ 0.999 on average (≥ 0.99 for the 0.1 % least
    alike) and ≥ 99 % of the kept/dropped decisions of fp32 at r = 0.1, 0.35 and 0.5, on the bundled clip and the
    test media's moving pattern."""
    from selector.video import read_clip

    frames = read_clip(SAMPLE, 6).frames if clip == "bundled" else media.pattern(6, 144, 192, seed=3)
    ref = load_encoder("dinov2-s", "cpu", "fp32").encode(frames)
    low = load_encoder("dinov2-s", "cpu", "bf16")
    assert low.precision == "bf16" and low.key == "dinov2-s@bf16"
    mean, tail, same = _agreement(ref, low.encode(frames))
    assert mean >= 0.999 and tail >= 0.99 and min(same) >= 0.99, (mean, tail, same)


def test_precision_is_chosen_from_the_cpu_and_the_setting(monkeypatch):
    from selector import encoders, settings

    monkeypatch.setattr(encoders, "bf16_instructions", lambda: True)
    assert encoders.cpu_precision("auto") == "bf16" and encoders.cpu_precision("auto", "efficientnet-lite0") == "fp32"
    assert encoders.cpu_precision("fp32") == "fp32" and encoders.cpu_precision("bf16", "efficientnet-lite0") == "bf16"
    monkeypatch.setattr(encoders, "bf16_instructions", lambda: False)
    assert encoders.cpu_precision("auto") == "fp32"  # no bf16 instructions: emulated bf16 would be slower
    monkeypatch.setenv("ENTROPY_SELECT_ENCODER_PRECISION", "fp32")
    settings.reload()
    monkeypatch.setattr(encoders, "bf16_instructions", lambda: True)
    assert load_encoder("dinov2-s", "cpu").precision == "fp32"  # the setting forces fp32
    with pytest.raises(EncoderError, match="precision must be 'fp32' or 'bf16'"):
        load_encoder("dinov2-s", "cpu", "int4")
    monkeypatch.setenv("ENTROPY_SELECT_ENCODER_PRECISION", "half")
    with pytest.raises(ValueError, match="ENTROPY_SELECT_ENCODER_PRECISION must be auto, fp32 or bf16"):
        settings.reload()


def test_features_are_cached_per_precision_and_say_which(tmp_path):
    cache = FeatureCache(1 << 30)
    path = media.write(tmp_path / "p.mp4", media.pattern(6, 96, 128))
    fp32 = extract(path, "efficientnet-lite0", 4, cache)
    from selector import encoders

    bf16 = encoders._load("efficientnet-lite0", "cpu", "bf16")
    assert fp32.precision in ("fp32", "bf16") and bf16.key == "efficientnet-lite0@bf16"
    other = "bf16" if fp32.precision == "fp32" else "fp32"
    import unittest.mock

    with unittest.mock.patch.object(encoders, "cpu_precision", lambda setting=None, name="": other):
        again = extract(path, "efficientnet-lite0", 4, cache)
    assert not again.from_cache and again.precision == other  # another precision is not served from the cache
    assert extract(path, "efficientnet-lite0", 4, cache).from_cache  # the first one still is

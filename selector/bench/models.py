"""Build LLaVA-OneVision checkpoints with random weights, offline: a tiny one for tests, and one with the
real 0.5B sizes (SigLIP-SO400M + Qwen2-0.5B) for honest timings (never honest answers); and a tiny Qwen2.5-VL."""

from __future__ import annotations

from pathlib import Path

WORDS = ("what is in the video a rabbit tree sky grass big small yes no who where red green blue how many "
         "one two three happens next").split()
TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }} {% for c in m['content'] %}"
            "{% if c['type'] == 'video' %}<video> {% elif c['type'] == 'image' %}<image> "
            "{% else %}{{ c['text'] }} {% endif %}{% endfor %}<|im_end|> {% endfor %}"
            "{% if add_generation_prompt %}<|im_start|>assistant {% endif %}")


def build(folder: str | Path, real_sizes: bool = False, seed: int = 0, family: str = "llava_onevision",
          device: str = "cpu", dtype=None, size: str = "2b") -> Path:
    """Save a random checkpoint (model + processor) of a family of BUILDERS to `folder`, loadable with
    `load_vlm(folder)`: LLaVA-OneVision (real sizes: 0.5B), Qwen2.5-VL (3B), Qwen3-VL (`size` "2b" or "8b"), a
    tiny Qwen3-VL-MoE. The weights are initialized on `device` in `dtype` (real sizes: a GPU and bfloat16 make it
    quick)."""
    if family not in BUILDERS:
        raise ValueError(f"no random-weight builder for the family {family!r} ({', '.join(BUILDERS)})")
    model, processor = BUILDERS[family](real_sizes, seed, device, dtype, size)
    folder = Path(folder)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


#: Qwen2 language-model sizes of the LLaVA-OneVision checkpoints (config.json of the hub models)
LLM_SIZES = {
    "0.5b": dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                 num_key_value_heads=2, vocab_size=151936),
    "7b": dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
               num_key_value_heads=4, vocab_size=152064),
}


def make(real_sizes: bool = False, seed: int = 0, device: str = "cpu", llm: str = "0.5b",
         dtype=None):
    """(model, processor) with random weights; `device` is where the weights are initialized, in `dtype`
    (default float32). `llm` picks the language model's sizes when real_sizes is set ("0.5b" or "7b")."""
    from transformers import (
        LlavaOnevisionConfig,
        LlavaOnevisionForConditionalGeneration,
        LlavaOnevisionImageProcessor,
        LlavaOnevisionProcessor,
        LlavaOnevisionVideoProcessor,
        Qwen2Config,
        SiglipVisionConfig,
    )

    tokenizer, vocab = _tokenizer(["<|im_start|>", "<|im_end|>", "<image>", "<video>"],
                                  ["<|im_start|>", "<image>", "<video>"])
    if real_sizes:
        vision = SiglipVisionConfig(hidden_size=1152, intermediate_size=4304, num_hidden_layers=26,
                                    num_attention_heads=16, image_size=384, patch_size=14)
        text = Qwen2Config(**LLM_SIZES[llm], max_position_embeddings=32768)
    else:
        vision = SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                                    image_size=112, patch_size=14)
        text = Qwen2Config(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                           num_key_value_heads=2, vocab_size=len(vocab), max_position_embeddings=4096)
    cfg = LlavaOnevisionConfig(vision_config=vision.to_dict(), text_config=text.to_dict(),
                               image_token_id=vocab["<image>"], video_token_id=vocab["<video>"],
                               vision_feature_layer=-1, vision_feature_select_strategy="full")
    model = _init(LlavaOnevisionForConditionalGeneration, cfg, seed, device, dtype)
    model.generation_config.eos_token_id = vocab["<|im_end|>"]
    size = {"height": vision.image_size, "width": vision.image_size}
    processor = LlavaOnevisionProcessor(
        image_processor=LlavaOnevisionImageProcessor(size=size), tokenizer=tokenizer,
        video_processor=LlavaOnevisionVideoProcessor(size=size),
        num_image_tokens=(vision.image_size // vision.patch_size) ** 2, vision_feature_select_strategy="full",
        chat_template=TEMPLATE)
    return model, processor


QWEN_TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }} {% for c in m['content'] %}"
                 "{% if c['type'] == 'video' %}<|vision_start|><|video_pad|><|vision_end|> "
                 "{% elif c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|> "
                 "{% else %}{{ c['text'] }} {% endif %}{% endfor %}<|im_end|> {% endfor %}"
                 "{% if add_generation_prompt %}<|im_start|>assistant {% endif %}")


#: Qwen2.5-VL-3B-Instruct sizes (config.json of the hub model)
QWEN_3B = dict(
    vision=dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, patch_size=14,
                spatial_merge_size=2, temporal_patch_size=2, out_hidden_size=2048, window_size=112,
                fullatt_block_indexes=[7, 15, 23, 31], tokens_per_second=2, in_channels=3),
    text=dict(hidden_size=2048, intermediate_size=11008, num_hidden_layers=36, num_attention_heads=16,
              num_key_value_heads=2, vocab_size=151936, max_position_embeddings=128000, rope_theta=1000000.0,
              rope_scaling={"type": "mrope", "mrope_section": [16, 24, 24]}, tie_word_embeddings=True))


def make_qwen(seed: int = 0, real_sizes: bool = False, device: str = "cpu", dtype=None):
    """(model, processor): a tiny Qwen2.5-VL with random weights (3-D M-RoPE positions, 2×2 patch merging,
    two frames per temporal patch), for tests of the second model family; with real_sizes the
    Qwen2.5-VL-3B sizes (for timings; frames up to 448×448), initialized on `device` in `dtype`."""
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
        Qwen2VLImageProcessor,
        Qwen2VLVideoProcessor,
    )

    specials = ["<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]
    tokenizer, vocab = _tokenizer(specials, specials)
    vision = dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, patch_size=14, spatial_merge_size=2,
                  temporal_patch_size=2, out_hidden_size=64, window_size=56, fullatt_block_indexes=[1],
                  tokens_per_second=2, in_channels=3)
    text = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, vocab_size=len(vocab), max_position_embeddings=4096,
                rope_scaling={"type": "mrope", "mrope_section": [2, 3, 3]})
    if real_sizes:
        vision, text = QWEN_3B["vision"], QWEN_3B["text"]
    cfg = Qwen2_5_VLConfig(vision_config=vision, text_config=text, image_token_id=vocab["<|image_pad|>"],
                           video_token_id=vocab["<|video_pad|>"], vision_start_token_id=vocab["<|vision_start|>"],
                           vision_end_token_id=vocab["<|vision_end|>"])
    model = _init(Qwen2_5_VLForConditionalGeneration, cfg, seed, device, dtype)
    model.generation_config.eos_token_id = vocab["<|im_end|>"]
    pixels = dict(min_pixels=56 * 56, max_pixels=(448 if real_sizes else 112) ** 2)
    processor = Qwen2_5_VLProcessor(image_processor=Qwen2VLImageProcessor(**pixels), tokenizer=tokenizer,
                                    video_processor=Qwen2VLVideoProcessor(**pixels), chat_template=QWEN_TEMPLATE)
    return model, processor


#: Qwen3-VL sizes (config.json of Qwen/Qwen3-VL-2B-Instruct and -8B-Instruct)
QWEN3_SIZES = {
    "2b": dict(vision=dict(depth=24, hidden_size=1024, intermediate_size=4096, num_heads=16, out_hidden_size=2048,
                           deepstack_visual_indexes=[5, 11, 17]),
               text=dict(hidden_size=2048, intermediate_size=6144, num_hidden_layers=28, num_attention_heads=16,
                         num_key_value_heads=8, head_dim=128, tie_word_embeddings=True)),
    "8b": dict(vision=dict(depth=27, hidden_size=1152, intermediate_size=4304, num_heads=16, out_hidden_size=4096,
                           deepstack_visual_indexes=[8, 16, 24]),
               text=dict(hidden_size=4096, intermediate_size=12288, num_hidden_layers=36, num_attention_heads=32,
                         num_key_value_heads=8, head_dim=128, tie_word_embeddings=False)),
}


def make_qwen3(seed: int = 0, real_sizes: bool = False, device: str = "cpu", dtype=None, size: str = "2b",
               moe: bool = False):
    """(model, processor): a tiny Qwen3-VL with random weights (timestamps between temporal patches, DeepStack
    features, interleaved 3-D M-RoPE), for tests; with real_sizes the Qwen3-VL-2B or -8B sizes (for timings;
    frames up to 448×448). `moe`: a tiny Qwen3-VL-MoE (4 experts, 2 a token; tests only)."""
    import transformers
    from transformers import Qwen2VLImageProcessor, Qwen3VLProcessor, Qwen3VLVideoProcessor

    if moe and real_sizes:
        raise ValueError("the MoE checkpoints have no real-size builder here")
    prefix = "Qwen3VLMoe" if moe else "Qwen3VL"
    config_cls = getattr(transformers, f"{prefix}Config")
    model_cls = getattr(transformers, f"{prefix}ForConditionalGeneration")

    specials = ["<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]
    tokenizer, vocab = _tokenizer(specials, specials)
    vision = dict(depth=3, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64,
                  deepstack_visual_indexes=[0, 1], num_position_embeddings=64)
    text = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4,
                num_key_value_heads=2, head_dim=16, vocab_size=len(vocab), tie_word_embeddings=False)
    if moe:
        text.update(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32, decoder_sparse_step=1)
    rope = {"rope_type": "default", "rope_theta": 5000000.0, "mrope_section": [4, 2, 2], "mrope_interleaved": True}
    if real_sizes:
        vision, text = dict(QWEN3_SIZES[size]["vision"]), dict(QWEN3_SIZES[size]["text"])
        vision["num_position_embeddings"] = 2304
        text["vocab_size"] = 151936
        rope = {**rope, "mrope_section": [24, 20, 20]}
    vision.update(patch_size=16, spatial_merge_size=2, temporal_patch_size=2)
    text.update(max_position_embeddings=32768, rope_parameters=rope)
    cfg = config_cls(vision_config=vision, text_config=text, image_token_id=vocab["<|image_pad|>"],
                        video_token_id=vocab["<|video_pad|>"], vision_start_token_id=vocab["<|vision_start|>"],
                        vision_end_token_id=vocab["<|vision_end|>"], tie_word_embeddings=text["tie_word_embeddings"])
    model = _init(model_cls, cfg, seed, device, dtype)
    model.generation_config.eos_token_id = vocab["<|im_end|>"]
    side = 448 if real_sizes else 128
    pixels = {"shortest_edge": 32 * 32, "longest_edge": side * side}
    video_pixels = {"shortest_edge": 32 * 32, "longest_edge": side * side * 64}
    processor = Qwen3VLProcessor(image_processor=Qwen2VLImageProcessor(size=pixels, patch_size=16),
                                 tokenizer=tokenizer,
                                 video_processor=Qwen3VLVideoProcessor(size=video_pixels, patch_size=16),
                                 chat_template=QWEN_TEMPLATE)
    return model, processor


def _init(cls, cfg, seed: int, device: str, dtype):
    """cls(cfg) with random weights (seeded), built on `device` in `dtype` (a 7B model is initialized directly
    in bf16), in eval mode."""
    import torch

    torch.manual_seed(seed)
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype or torch.float32)
    try:
        with torch.device(device):
            return cls(cfg).eval()
    finally:
        torch.set_default_dtype(old)


def _tokenizer(specials: list[str], additional: list[str]):
    """(tokenizer, vocab): a whitespace word-level tokenizer over <unk>, <pad>, `specials`, the two roles and
    WORDS; <|im_end|> is the end of sequence, `additional` are its special tokens."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["<unk>", "<pad>", *specials, "user", "assistant", *WORDS])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", eos_token="<|im_end|>",
                                   additional_special_tokens=additional), vocab


#: random-weight builders by the families' model_type: (real_sizes, seed, device, dtype, size) → (model, processor);
#: `python -m selector.eval tiny-model --family` and `python -m selector.bench_vlm --family` offer these
BUILDERS = {
    "llava_onevision": lambda real, seed, device, dtype, size: make(real, seed, device,
                                                                    llm=size if size in LLM_SIZES else "0.5b",
                                                                    dtype=dtype),
    "qwen2_5_vl": lambda real, seed, device, dtype, size: make_qwen(seed, real, device, dtype),
    "qwen3_vl": lambda real, seed, device, dtype, size: make_qwen3(seed, real, device, dtype,
                                                                   size if size in QWEN3_SIZES else "2b"),
    "qwen3_vl_moe": lambda real, seed, device, dtype, size: make_qwen3(seed, real, device, dtype, moe=True),
}

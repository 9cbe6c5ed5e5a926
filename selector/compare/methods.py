"""The methods of the registry, each on a (T, H, W, D) grid and a budget of exactly K rows (torch only).

Every `run_*` returns (rows (K, D), flat positions (K,), merged (K,) bool), in any order (`compress` sorts them).
Re-implementations follow the papers and their public code, on the encoder's features only; how each is made to
return exactly K rows is said in its docstring. Methods that need the LLM's or the vision tower's attention
(FastV, VisionZip's attention scores, FastVID's attention token selection) are out of scope.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from ..config import SelectorConfig, SelectorError
from .holitom import holitom as _holitom
from .scissor import llava_scissor as _llava_scissor
from .shared import density_scores, quota

__all__ = ["ALL", "Method"]


@dataclass(frozen=True)
class Method:
    """One method: `run(tokens, k, **options) -> (rows, positions, merged)`, what it is, where it comes from."""

    name: str
    run: Callable[..., tuple[torch.Tensor, torch.Tensor, torch.Tensor]]
    description: str
    reference: str
    options: tuple[str, ...] = ()


def _spread(n: int, k: int, device: Any = None) -> torch.Tensor:
    """k indices spread evenly over range(n): the centres of k equal slices (k <= n)."""
    return ((torch.arange(k, device=device, dtype=torch.float64) + 0.5) * n / k).floor().long().clamp_(max=n - 1)


def _gather(tokens: torch.Tensor, pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    flat = tokens.reshape(-1, tokens.shape[-1])
    return flat[pos], pos, torch.zeros(pos.numel(), dtype=torch.bool, device=pos.device)


_quota, _density_scores = quota, density_scores


# ---- ENTROPY-SELECT ----------------------------------------------------------------------------------------------

def _entropy_select(tokens: torch.Tensor, k: int, config: SelectorConfig | None = None) -> tuple:
    from ..method.select import select_tokens

    n = tokens.shape[0] * tokens.shape[1] * tokens.shape[2]
    sel = select_tokens(tokens, k / n, config or SelectorConfig(), timed=False)
    return sel.tokens, sel.indices, sel.fused


def _variant(**knobs: Any):
    def run(tokens: torch.Tensor, k: int) -> tuple:
        return _entropy_select(tokens, k, SelectorConfig(**knobs))
    return run


# ---- baselines ---------------------------------------------------------------------------------------------------

def _random(tokens: torch.Tensor, k: int, seed: int = 0) -> tuple:
    """K positions drawn uniformly without replacement (torch.Generator seeded with `seed`)."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise SelectorError(f"seed must be an int, got {seed!r}")
    n = tokens.shape[0] * tokens.shape[1] * tokens.shape[2]
    pos = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:k].to(tokens.device)
    return _gather(tokens, pos)


def _frame_sample(tokens: torch.Tensor, k: int) -> tuple:
    """Whole frames, uniformly spaced (the centres of floor(K/M) equal slices of the clip), and the K mod M rest
    spread evenly over the first frame after the first sampled one that is not sampled (the middle frame when no
    whole frame fits)."""
    t_, h_, w_, _ = tokens.shape
    m = h_ * w_
    whole, rest = divmod(k, m)
    frames = _spread(t_, whole).tolist() if whole else []
    pos = [torch.arange(f * m, (f + 1) * m) for f in frames]
    if rest:
        start = frames[0] if frames else t_ // 2
        nxt = next((f for f in list(range(start, t_)) + list(range(start)) if f not in frames), None)
        assert nxt is not None
        pos.append(nxt * m + _spread(m, rest))
    return _gather(tokens, torch.cat(pos).to(tokens.device))


def _uniform_pool(tokens: torch.Tensor, k: int) -> tuple:
    """Spatial average pooling of every frame to its share of K, as LLaVA-OneVision pools its video tokens
    (`get_2dPool` in LLaVA-NeXT's llava_arch.py: 2×2 pooling of each frame's grid). Each frame gets K/T rows (the
    remainder to the first frames); its grid is pooled adaptively (`adaptive_avg_pool2d`) to the h'×w' cells
    nearest its aspect with h'·w' >= its share, and that many cells spread evenly are kept. A row is anchored at
    the token under its window's centre; it is merged unless its window is one token."""
    t_, h_, w_, d_ = tokens.shape
    share = torch.full((t_,), k // t_, dtype=torch.long)
    share[: k % t_] += 1
    rows, pos, merged = [], [], []
    for kf in sorted(set(share.tolist())):
        if kf == 0:
            continue
        frames = torch.nonzero(share == kf).flatten()
        hp = min(h_, max(1, round(math.sqrt(kf * h_ / w_))))
        wp = min(w_, math.ceil(kf / hp))
        hp = min(h_, max(hp, math.ceil(kf / wp)))
        x = tokens[frames.to(tokens.device)].permute(0, 3, 1, 2).float()
        pooled = F.adaptive_avg_pool2d(x, (hp, wp)).permute(0, 2, 3, 1).reshape(len(frames), hp * wp, d_)
        cells = _spread(hp * wp, kf, tokens.device)
        ci, cj = cells // wp, cells % wp
        r = ((ci.double() + 0.5) * h_ / hp).floor().long()
        c = ((cj.double() + 0.5) * w_ / wp).floor().long()
        size = ((ci + 1) * h_ + hp - 1) // hp - ci * h_ // hp, ((cj + 1) * w_ + wp - 1) // wp - cj * w_ // wp
        single = (size[0] * size[1]) == 1
        for i, f in enumerate(frames.tolist()):
            rows.append(pooled[i, cells].to(tokens.dtype))
            pos.append(f * h_ * w_ + r * w_ + c)
            merged.append(~single)
    return torch.cat(rows), torch.cat(pos), torch.cat(merged)


# ---- DyCoke --------------------------------------------------------------------------------------------------------

def _dycoke(tokens: torch.Tensor, k: int, window: int = 4) -> tuple:
    """DyCoke's first stage, temporal token merging (Tao et al., CVPR 2025, Sec. 3.2; `dycoke_ttm` in
    KD-TAO/DyCoke llava/model/llava_arch.py): in windows of 4 frames, frame 1 is compared with frame 0 and frame 3
    with frame 2 token by token at the same position, then frame 2 with frame 0 (not in the last window); the
    compared frame keeps its tokens least similar to their counterpart and drops the rest; frames 0 (and the
    last window's frame 2) stay whole. The public code drops rather than averages, and so do we (no merged rows).
    Exactly K: the budget left after the whole frames is split evenly over the compared frames (DyCoke keeps the
    same share of each). When K is below the whole frames' tokens, the whole frames are split evenly too and each
    keeps the tokens least similar to the same place in the previous whole frame (the first keeps an even spread)."""
    if isinstance(window, bool) or not isinstance(window, int) or window != 4:
        raise SelectorError(f"window must be 4 (DyCoke's), got {window!r}")
    t_, h_, w_, d_ = tokens.shape
    m = h_ * w_
    x = F.normalize(tokens.reshape(t_, m, d_).float(), dim=-1)
    ref_of = {}
    for t in range(t_):
        if t % 4 in (1, 3):
            ref_of[t] = t - 1
        elif t % 4 == 2 and t - 2 < t_ - 4:
            ref_of[t] = t - 2
    whole = [t for t in range(t_) if t not in ref_of]
    compared = sorted(ref_of)
    pos = []

    def least_similar(t: int, other: int | None, n: int) -> torch.Tensor:
        if n <= 0:
            return torch.zeros(0, dtype=torch.long, device=tokens.device)
        if other is None:
            return t * m + _spread(m, n, tokens.device)
        sim = (x[t] * x[other]).sum(-1)
        return t * m + torch.topk(sim, n, largest=False, sorted=False).indices

    if k >= len(whole) * m:
        pos += [torch.arange(t * m, (t + 1) * m, device=tokens.device) for t in whole]
        quota: Any = _quota(torch.ones(len(compared)), k - len(whole) * m, m) if compared else []
        pos += [least_similar(t, ref_of[t], int(q)) for t, q in zip(compared, quota, strict=True)]
    else:
        quota = _quota(torch.ones(len(whole)), k, m)
        pos += [least_similar(t, whole[i - 1] if i else None, int(q)) for i, (t, q) in enumerate(zip(whole, quota,
                                                                                                    strict=True))]
    return _gather(tokens, torch.cat(pos))


# ---- VidCom2 -------------------------------------------------------------------------------------------------------

def _vidcom2(tokens: torch.Tensor, k: int) -> tuple:
    """VidCom2 (Liu et al., 2025; xuyang-liu16/VidCom2 token_compressor/vidcom2/vidcom2.py `vidcom2_compression`):
    the half of the channels with the lowest variance over the clip; per token, multi-scale Gaussian similarities
    (bandwidths 2^-3 … 2^1) of its unit feature to the clip's mean and to its frame's mean; frames that differ
    from the clip get larger shares (scale = r·(1 + p_f − mean p), p = softmax(−mean video similarity / 0.01));
    each frame keeps its most distinctive tokens (lowest summed similarity). Exactly K: the scales become integer
    quotas summing to K (largest remainder, at most a frame's tokens each, at least one while K >= T)."""
    t_, h_, w_, d_ = tokens.shape
    m = h_ * w_
    flat = tokens.reshape(-1, d_).float()
    var = flat.var(dim=0, unbiased=False)
    chans = torch.topk(var, max(1, d_ // 2), largest=False).indices
    frames = F.normalize(flat[:, chans].reshape(t_, m, -1), dim=-1)
    vid_c = frames.mean(dim=(0, 1), keepdim=True)
    frame_c = frames.mean(dim=1, keepdim=True)
    alphas = [2.0**e for e in range(-3, 2)]

    def gauss(c: torch.Tensor) -> torch.Tensor:
        d2 = ((frames - c) ** 2).sum(-1)
        return torch.stack([torch.exp(-d2 / (2 * a)) for a in alphas]).sum(0)

    v, f = gauss(vid_c), gauss(frame_c)
    s = -v.mean(dim=-1)
    p = F.softmax((s - s.max()) / 0.01, dim=0)
    scales = (k / (t_ * m)) * (1 + p - p.mean())
    if k >= t_:
        quota = _quota(scales.clamp_min(0) * m - 1, k - t_, m - 1) + 1
    else:
        quota = torch.zeros(t_, dtype=torch.long)
        quota[torch.topk(scales, k).indices.cpu()] = 1
    score = v + f
    pos = [t * m + torch.topk(score[t], int(q), largest=False, sorted=False).indices
           for t, q in enumerate(quota.tolist()) if q > 0]
    return _gather(tokens, torch.cat(pos))


# ---- FastVID -------------------------------------------------------------------------------------------------------

def _dyseg(frame_feats: torch.Tensor, c: int, tau: float) -> list[int]:
    """Segment lengths: cut after the c-1 lowest adjacent-frame cosine similarities and wherever one is below tau."""
    t_ = frame_feats.shape[0]
    if t_ == 1:
        return [1]
    g = F.normalize(frame_feats, dim=-1)
    sim = (g[:-1] * g[1:]).sum(-1)
    cuts = set(torch.topk(sim, min(max(c - 1, 0), t_ - 1), largest=False).indices.tolist())
    cuts |= set(torch.nonzero(sim < tau).flatten().tolist())
    bounds = [-1, *sorted(cuts), t_ - 1]
    return [b - a for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a]


def _fastvid(tokens: torch.Tensor, k: int, c: int = 8, tau: float = 0.9, p: int = 4, alpha: float = 0.6,
             knn: int = 4) -> tuple:
    """FastVID (Shen et al., 2025; DySeg and the density-based part of STPrune, `dyseg` / `dtm` /
    `calc_density_score` of its public code): frames are cut into segments where adjacent frame features
    (frame-mean tokens here: features only) are least similar (c-1 cuts) or below tau; in each segment every p-th
    frame is an anchor frame whose highest DPC-kNN scores become anchor tokens; every token of the segment joins
    its most similar anchor token, and a row is α'·anchor + (1−α')·mean(its tokens), α' = max(1/(n+1), alpha).
    FastVID's attention token selection (the [CLS] attention of SigLIP) is out of scope: every token goes to the
    density part. Features are averaged as they are (FastVID averages unit vectors; we keep the features' scale).
    Exactly K: segments get K by length (largest remainder), each anchor frame an even share (all frames become
    anchors when the anchors alone cannot hold the segment's share)."""
    for name, v, lo in (("c", c, 1), ("p", p, 1), ("knn", knn, 1)):
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise SelectorError(f"{name} must be an int >= {lo}, got {v!r}")
    if not isinstance(tau, (int, float)) or not -1 <= tau <= 1:
        raise SelectorError(f"tau must be in [-1, 1], got {tau!r}")
    if not isinstance(alpha, (int, float)) or not 0 <= alpha <= 1:
        raise SelectorError(f"alpha must be in [0, 1], got {alpha!r}")
    t_, h_, w_, d_ = tokens.shape
    m = h_ * w_
    x = tokens.reshape(t_, m, d_)
    lengths = _dyseg(x.float().mean(1), c, float(tau))
    # largest remainder gives a segment of L frames floor(k·L/T) or one more: never more than its L·m tokens
    seg_quota = _quota(torch.tensor(lengths, dtype=torch.float64), k, m * max(lengths))
    # segments with the same length and the same anchor plan are processed together (batched)
    groups: dict[tuple, list[int]] = {}
    start = 0
    for length, q in zip(lengths, seg_quota.tolist(), strict=True):
        if q > 0:
            step = p if q <= -(-length // p) * m else 1
            anchors = tuple(range(0, length, step))
            share = tuple(_quota(torch.ones(len(anchors)), q, m).tolist())
            groups.setdefault((length, anchors, share), []).append(start)
        start += length
    rows, pos, merged = [], [], []
    for (length, anchors, share), starts in groups.items():
        n_seg = len(starts)
        frame_idx = torch.tensor(starts)[:, None] + torch.arange(length)  # (S, L)
        seg = x[frame_idx.to(x.device)]  # (S, L, M, D)
        scores = _density_scores(seg[:, list(anchors)].reshape(n_seg * len(anchors), m, d_), knn)
        scores = scores.reshape(n_seg, len(anchors), m)
        a_rows, a_pos = [], []
        for i, (f, n) in enumerate(zip(anchors, share, strict=True)):
            if n:
                top = torch.topk(scores[:, i], n, dim=-1).indices  # (S, n)
                a_rows.append(torch.gather(seg[:, f], 1, top[..., None].expand(-1, -1, d_)))
                a_pos.append((frame_idx[:, f].to(x.device)[:, None]) * m + top)
        anchor = torch.cat(a_rows, dim=1).float()  # (S, n_total, D)
        members = seg.reshape(n_seg, length * m, d_).float()
        sim = torch.bmm(F.normalize(members, dim=-1), F.normalize(anchor, dim=-1).transpose(1, 2))
        owner = sim.argmax(-1)  # (S, L·M)
        counts = torch.zeros(anchor.shape[:2], device=x.device).scatter_add_(1, owner, torch.ones_like(owner,
                                                                                                      dtype=torch.float))
        sums = torch.zeros_like(anchor).scatter_add_(1, owner[..., None].expand(-1, -1, d_), members)
        mean = sums / counts.clamp_min(1)[..., None]
        a = torch.clamp(1.0 / (counts + 1), min=float(alpha))[..., None]
        row = torch.where((counts > 1)[..., None], a * anchor + (1 - a) * mean, anchor)  # alone: the token itself
        rows.append(row.reshape(-1, d_).to(tokens.dtype))
        pos.append(torch.cat(a_pos, dim=1).reshape(-1))
        merged.append((counts > 1).reshape(-1))
    return torch.cat(rows), torch.cat(pos), torch.cat(merged)


# ---- ToMe ----------------------------------------------------------------------------------------------------------

def _tome(tokens: torch.Tensor, k: int) -> tuple:
    """ToMe's bipartite soft matching (Bolya et al., ICLR 2023, Sec. 3; facebookresearch/ToMe tome/merge.py
    `bipartite_soft_matching` and `merge_wavg`) on all tokens of the clip in temporal-raster order: alternate
    tokens form sets A and B, each A token's most similar B token (cosine) is its edge, the r most similar edges
    merge their A token into the B token (size-weighted mean). Rounds repeat with r = min(N − K, |A|) until K rows
    remain (ToMe merges r per layer; here the rounds stand for the layers). A row keeps its B token's position."""
    t_, h_, w_, d_ = tokens.shape
    x = tokens.reshape(-1, d_).float()
    pos = torch.arange(x.shape[0], device=tokens.device)
    size = torch.ones(x.shape[0], device=tokens.device)
    while x.shape[0] > k:
        a, b = x[0::2], x[1::2]
        r = min(x.shape[0] - k, a.shape[0])
        an, bn = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
        best, idx = [], []
        for i in range(0, an.shape[0], 2048):
            s = an[i:i + 2048] @ bn.T
            v, j = s.max(dim=1)
            best.append(v)
            idx.append(j)
        node_max, node_idx = torch.cat(best), torch.cat(idx)
        edge = torch.argsort(node_max, descending=True, stable=True)
        src, keep_a = edge[:r], edge[r:]
        dst = node_idx[src]
        sa, sb = size[0::2], size[1::2]
        b_sum = (b * sb[:, None]).index_add(0, dst, a[src] * sa[src][:, None])
        sb_new = sb.index_add(0, dst, sa[src])
        b_new = b_sum / sb_new[:, None]
        x = torch.cat([a[keep_a], b_new])
        size = torch.cat([sa[keep_a], sb_new])
        pos = torch.cat([pos[0::2][keep_a], pos[1::2]])
        order = torch.argsort(pos)
        x, size, pos = x[order], size[order], pos[order]
    return x.to(tokens.dtype), pos, size > 1


# ---- EVS (serving engines) ---------------------------------------------------------------------------------------

def _evs(tokens: torch.Tensor, k: int) -> tuple:
    """Efficient Video Sampling, the video pruning built into vLLM (`--video-pruning-rate`) and SGLang: each token's
    dissimilarity 1 − cos to the token at the same place in the previous frame, the first frame's tokens first
    (dissimilarity 255), a stable descending sort, the top K (vllm/multimodal/evs.py, compute_retention_mask). Same
    arithmetic, in the input's dtype. Where K ≥ one frame's tokens this is vLLM's mask for q = 1 − K/N. vLLM never
    keeps less than one whole frame (max(tokens_per_frame, int(N·(1 − q)))); the registry keeps exactly K rows, so
    below one frame these are the first K tokens of the first frame in raster order, which is what the stable order
    puts first."""
    sim = F.cosine_similarity(tokens[1:], tokens[:-1], dim=-1)
    first = torch.full_like(sim[:1] if sim.shape[0] else tokens[:1, :, :, 0], 255)
    dissimilarity = torch.cat([first, 1 - sim], dim=0).reshape(-1)
    order = torch.argsort(dissimilarity, descending=True, stable=True)
    return _gather(tokens, order[:k])


def _m(name: str, run, description: str, reference: str, options: tuple[str, ...] = ()) -> Method:
    return Method(name, run, description, reference, options)


def _methods() -> list:
    return [
        _m("entropy_select", _entropy_select, "ENTROPY-SELECT with the given SelectorConfig (default: the paper's)",
           "this project: select_tokens (paper Algorithm 1)", ("config",)),
        _m("entropy_select_paper", _variant(), "ENTROPY-SELECT with the paper's defaults (τ = 1)",
           "ENTROPY-SELECT paper, Sec. 3 and Tables 5, 6, 8"),
        _m("entropy_select_tau005", _variant(tau=0.05), "ENTROPY-SELECT at an informative τ = 0.05",
           "ENTROPY-SELECT, Eq. 2 with τ = 0.05"),
        _m("entropy_select_inverted", _variant(tau=0.05, invert_entropy=True),
           "ENTROPY-SELECT at τ = 0.05 with Ĥ inverted in the score (1 − Ĥ: boundaries rank high)",
           "variant of the paper's score S = α·Ĥ + (1−α)·Ĝ"),
        _m("random", _random, "K tokens drawn uniformly at random (seeded)", "baseline", ("seed",)),
        _m("frame_sample", _frame_sample, "whole frames, uniformly spaced; the rest from the next frame",
           "baseline: frame sampling"),
        _m("uniform_pool", _uniform_pool, "each frame average-pooled to its share of K",
           "LLaVA-OneVision's 2×2 video pooling (LLaVA-NeXT llava_arch.py get_2dPool), adaptive"),
        _m("dycoke", _dycoke, "DyCoke temporal token merging: drop tokens similar to the same place in a key frame",
           "Tao et al., DyCoke, CVPR 2025, Sec. 3.2; KD-TAO/DyCoke llava_arch.py dycoke_ttm", ("window",)),
        _m("vidcom2", _vidcom2, "VidCom2: frame shares by uniqueness, the most distinctive tokens per frame",
           "Liu et al., VidCom2, 2025; xuyang-liu16/VidCom2 token_compressor/vidcom2/vidcom2.py"),
        _m("fastvid", _fastvid, "FastVID: dynamic segments, density-based anchor tokens with merging",
           "Shen et al., FastVID, 2025: DySeg + density part of STPrune (dyseg, dtm, calc_density_score)",
           ("c", "tau", "p", "alpha", "knn")),
        _m("llava_scissor", _llava_scissor, "LLaVA-Scissor: semantic connected components, spatial then temporal",
           "Sun et al., LLaVA-Scissor, 2025; HumanMLLM/LLaVA-Scissor llava_arch_zip.py"),
        _m("holitom", _holitom, "HoliTom: global static windows merged, then density-based merging per frame",
           "Shao et al., HoliTom, NeurIPS 2025; cokeshao/HoliTom holitom/llava_arch.py (embedding part)",
           ("tau", "beta", "knn", "max_window")),
        _m("evs", _evs, "EVS (vLLM / SGLang): tokens least like the same place in the previous frame, first frame "
           "first", "Efficient Video Sampling, arXiv 2510.14624; vllm/multimodal/evs.py compute_retention_mask"),
        _m("tome", _tome, "ToMe bipartite soft matching, repeated to K rows",
           "Bolya et al., Token Merging, ICLR 2023, Sec. 3; facebookresearch/ToMe tome/merge.py"),
    ]


ALL = _methods()

"""HoliTom's embedding part (Shao et al., HoliTom: Holistic Token Merging for Fast Video LLMs, NeurIPS 2025;
cokeshao/HoliTom holitom/llava_arch.py), written for the methods registry.

1. Global temporal segmentation (`select_static_windows`): sim[t, p] = cos(x[t, p], x[t+1, p]) at each place p. A
   window of frames s..e saves count(s, e)·(e − s) rows, where count(s, e) is the number of places whose every
   consecutive similarity inside the window is above τ (they are merged into one row). A dynamic programme over
   the frames picks the windows (single frames cost nothing) that save the most: dp[i] = max(dp[i−1], max over
   window sizes w = 2..max_window of dp[i−w] + saved(i−w+1, i)), the smallest window winning ties, as the public
   code's strict `>` over ascending sizes does.
2. In each window of several frames the static places (`get_static_dynamic_features`) become one row each, the mean
   of their frames; the other ("dynamic") tokens stay per frame.
3. Density-based merging (`cluster_dpc_knn`, `merge_tokens_by_clustering`): in each group (a window's static rows,
   a frame's dynamic tokens) DPC-kNN picks the centres (density ρ = exp(−mean d² to the k nearest), δ = distance to
   the nearest denser token, the top ρ·δ), every other token joins its nearest centre, and a centre's row is
   β·centre + (1 − β)·mean(its members) (β = 0.6; a centre without members stays itself).

What differs, and why: the attention-based "dominant" tokens (HoliTom's D > 0, which needs the vision tower's
attention) are out of scope, as for FastVID: every row comes from the density part (D = 1). Exactly K rows: the
public code keeps ceil(n·r') of a frame's dynamic tokens and round(n·r') of a window's static rows, r' = r·N / (N −
saved); here the K rows are shared among the groups in proportion to their sizes by largest remainder (the same
rule, summing to K). Where the static merge leaves fewer than K rows, it is not applied (every frame a group of its
own). Density ties go to the lower index (the public code adds random noise). A static row is anchored at its
place in the window's first frame, a centre at its own position.
"""

from __future__ import annotations

import math

import torch

from .shared import density_scores, quota

__all__ = ["static_windows", "holitom"]


def static_windows(sim: torch.Tensor, tau: float, max_window: int = 1024) -> list[tuple[int, int]]:
    """The windows (first frame, last frame) of the segmentation, in order, from sim (T−1, M) of consecutive
    frames at each place."""
    t_ = sim.shape[0] + 1
    above = (sim > tau).to(torch.int32)
    saved = [[0.0] * t_ for _ in range(t_)]  # saved[s][e], e > s
    for s in range(t_ - 1):
        static = torch.cumprod(above[s:], dim=0).sum(-1).tolist()  # places static over s..e, e = s+1..T−1
        for i, count in enumerate(static):
            e = s + 1 + i
            saved[s][e] = float(count) * (e - s)
    dp, prev = [0.0] * t_, [0] * t_
    for i in range(t_):
        best, start = (dp[i - 1] if i > 0 else 0.0), i
        for w in range(2, min(i + 1, max_window) + 1):
            j = i - w
            val = (dp[j] if j >= 0 else 0.0) + saved[j + 1][i]
            if val > best:
                best, start = val, j + 1
        dp[i], prev[i] = best, start
    out, i = [], t_ - 1
    while i >= 0:
        out.append((prev[i], i))
        i = prev[i] - 1
    return out[::-1]


def _centres(x: torch.Tensor, q: int, knn: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(indices of the q DPC-kNN centres of the rows x (n, D), ascending; distances (n, n))."""
    n, d_ = x.shape
    score = density_scores(x[None], min(knn, q))[0]
    centres = torch.sort(torch.argsort(score, descending=True, stable=True)[:q]).values
    return centres, torch.cdist(x.float(), x.float()) / math.sqrt(d_)


def _merge(x: torch.Tensor, centres: torch.Tensor, dist: torch.Tensor, beta: float) -> tuple:
    """Rows β·centre + (1 − β)·mean(members) (a centre without members: itself), and whether each has members."""
    n = x.shape[0]
    is_centre = torch.zeros(n, dtype=torch.bool, device=x.device)
    is_centre[centres] = True
    owner = dist[:, centres].argmin(1)  # nearest centre, ties to the lower one
    members = ~is_centre
    q = centres.numel()
    counts = torch.bincount(owner[members], minlength=q)
    sums = torch.zeros(q, x.shape[1], device=x.device, dtype=torch.float32).index_add_(
        0, owner[members], x[members].float())
    mean = sums / counts.clamp_min(1)[:, None]
    rows = torch.where((counts > 0)[:, None], beta * x[centres].float() + (1 - beta) * mean, x[centres].float())
    return rows, counts > 0


def _merge_batch(x: torch.Tensor, q: torch.Tensor, knn: int, beta: float) -> tuple:
    """`_centres` and `_merge` of G groups of the same size at once: x (G, n, D), q (G,) centres each (knn the
    same for all). Returns (rows, centre mask (G, n), has members), rows and flags in the order of the mask's
    True entries (group by group, ascending index), as the per-group path gives them."""
    g_, n, d_ = x.shape
    xf = x.float()
    score = density_scores(xf, knn)
    order = torch.argsort(score, dim=1, descending=True, stable=True)
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(n, device=x.device).expand(g_, n))
    is_centre = rank < q.to(x.device)[:, None]
    dist = torch.cdist(xf, xf) / math.sqrt(d_)
    owner = dist.masked_fill(~is_centre[:, None, :], float("inf")).argmin(-1)  # nearest centre, ties: lower
    members = ~is_centre
    slot = (torch.arange(g_, device=x.device)[:, None] * n + owner)[members]
    counts = torch.bincount(slot, minlength=g_ * n).view(g_, n)
    sums = torch.zeros(g_ * n, d_, device=x.device).index_add_(0, slot, xf[members]).view(g_, n, d_)
    mean = sums / counts.clamp_min(1)[..., None]
    rows = torch.where((counts > 0)[..., None], beta * xf + (1 - beta) * mean, xf)
    return rows[is_centre], is_centre, (counts > 0)[is_centre]


def holitom(tokens: torch.Tensor, k: int, tau: float = 0.8, beta: float = 0.6, knn: int = 7,
            max_window: int = 1024) -> tuple:
    """HoliTom's embedding part on a (T, H, W, D) grid: exactly k rows (see the module notes)."""
    t_, h_, w_, d_ = tokens.shape
    m = h_ * w_
    x = tokens.reshape(t_, m, d_)
    unit = torch.nn.functional.normalize(x.float(), dim=-1)
    sim = (unit[:-1] * unit[1:]).sum(-1)  # (T−1, M)
    host = sim.cpu()  # the segmentation and the masks on the host: one transfer instead of a wait per frame
    windows = static_windows(host, tau, max_window) if t_ > 1 else [(0, 0)]
    groups: list[tuple[torch.Tensor, torch.Tensor, bool]] = []  # (rows, their flat anchors, rows are means)

    def where(mask: torch.Tensor) -> torch.Tensor:
        return torch.nonzero(mask).flatten().to(tokens.device)

    for s, e in windows:
        static = torch.ones(m, dtype=torch.bool)
        if e > s:
            static = (host[s:e] > tau).all(0)
            if bool(static.any()):
                idx = where(static)
                groups.append((x[s:e + 1, idx].float().mean(0), s * m + idx, True))
        dyn = where(~static if e > s else static)
        if dyn.numel():
            groups.extend((x[f, dyn], f * m + dyn, False) for f in range(s, e + 1))
    if sum(g[0].shape[0] for g in groups) < k:  # the static merge leaves too few rows: every frame a group
        places = torch.arange(m, device=tokens.device)
        groups = [(x[f], f * m + places, False) for f in range(t_)]
    sizes = torch.tensor([g[0].shape[0] for g in groups], dtype=torch.float64)
    shares = quota(sizes, k, int(sizes.max())).tolist()
    rows, anchors, merged = [], [], []
    buckets: dict[tuple[int, int], list[int]] = {}  # groups of one size (and one knn) are merged in one batch
    for i, ((feats, _, _), q) in enumerate(zip(groups, shares, strict=True)):
        if q > 0:
            buckets.setdefault((feats.shape[0], min(knn, q)), []).append(i)
    for (_, kk), members in buckets.items():
        if len(members) == 1:
            feats, pos, means = groups[members[0]]
            centres, dist = _centres(feats, shares[members[0]], knn)
            r, has = _merge(feats, centres, dist, beta)
            rows.append(r)
            anchors.append(pos[centres])
            merged.append(has | means)
            continue
        r, is_centre, has = _merge_batch(torch.stack([groups[i][0] for i in members]),
                                         torch.tensor([shares[i] for i in members]), kk, beta)
        rows.append(r)
        anchors.append(torch.stack([groups[i][1] for i in members])[is_centre])
        means = torch.tensor([groups[i][2] for i in members], device=tokens.device)
        merged.append(has | means[:, None].expand_as(is_centre)[is_centre])
    rows_t, pos_t, merged_t = torch.cat(rows), torch.cat(anchors), torch.cat(merged)
    order = torch.argsort(pos_t)
    out = rows_t[order].to(tokens.dtype)
    merged_t = merged_t[order]
    flat = tokens.reshape(-1, d_)
    out = torch.where(merged_t[:, None], out, flat[pos_t[order]])  # unmerged rows are the input's own, bit for bit
    return out, pos_t[order], merged_t

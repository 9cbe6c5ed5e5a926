"""Small pieces several re-implementations share: quotas by largest remainder, DPC-kNN scores. Imports torch only."""

from __future__ import annotations

import math

import torch

__all__ = ["quota", "density_scores"]


def quota(weights: torch.Tensor, total: int, cap: int) -> torch.Tensor:
    """Integers q_i <= cap summing to `total` (<= len·cap), proportional to `weights` (largest remainder; what a
    cap cuts goes to the others by weight)."""
    w = weights.double().clamp_min(0)
    w = w if float(w.sum()) > 0 else torch.ones_like(w)
    q = torch.zeros_like(w, dtype=torch.long)
    free = torch.ones_like(w, dtype=torch.bool)
    left = total
    while left > 0:
        share = w * free
        share = share / share.sum() * left
        add = share.floor().long().clamp(max=cap - q)
        rem = left - int(add.sum())
        if rem > 0:  # largest remainders first, among entries below the cap
            frac = torch.where(free & (q + add < cap), share - share.floor(), torch.full_like(share, -1.0))
            order = torch.argsort(frac, descending=True, stable=True)[:rem]
            order = order[frac[order] >= 0]
            add[order] += 1
        q += add
        left = total - int(q.sum())
        free = q < cap
        if not bool(free.any()):
            break
    return q


def density_scores(x: torch.Tensor, knn: int) -> torch.Tensor:
    """DPC-kNN score per token of each frame (T', M, D): local density ρ = exp(−mean d² to its knn nearest), as in
    DPC-kNN and FastVID's Eq. for ρ, times δ, the distance to the nearest denser token (the largest distance for
    the densest); ties of density are broken by index instead of FastVID's random noise."""
    t_, m, d_ = x.shape
    dist = torch.cdist(x.float(), x.float()) / math.sqrt(d_)
    kk = min(knn, m)
    near = torch.topk(dist, kk, dim=-1, largest=False).values
    dens = torch.exp(-(near**2).mean(-1))
    idx = torch.arange(m, device=x.device)
    # denser: higher ρ, or equal ρ and an earlier index (deterministic)
    denser = (dens[:, None, :] > dens[:, :, None]) | ((dens[:, None, :] == dens[:, :, None])
                                                      & (idx[None, None, :] < idx[None, :, None]))
    far = dist.reshape(t_, -1).amax(-1).view(-1, 1, 1)
    delta = torch.where(denser, dist, far).amin(-1)
    return delta * dens

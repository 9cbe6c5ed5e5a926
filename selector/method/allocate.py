"""Frame budgets (Sec. 3.4), grid quotas and the final pick (Sec. 3.3), optional grid fusion.

Everything here is branch-free tensor code: no loop whose length depends on K or on the
retention, no host synchronisation, and the pick itself is two stable sorts.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import torch

from ..config import SelectorConfig, SelectorError

__all__ = ["frame_budgets", "spread_budgets", "cell_ids", "pick", "fuse", "flat_indices"]

_MAX_BITS = 0x7FFFFFFF


def _desc_bits(score: torch.Tensor) -> torch.Tensor:
    """int64 key that sorts non-negative float32 scores in descending order (exact, tie-stable)."""
    s = score.float().clamp_min(0.0) + 0.0  # + 0.0 turns -0.0 into 0.0
    return _MAX_BITS - s.contiguous().view(torch.int32).to(torch.int64)


def _inverse(order: torch.Tensor) -> torch.Tensor:
    inv = torch.empty_like(order)
    inv[order] = torch.arange(order.numel(), device=order.device)
    return inv


def _round_robin(cap: torch.Tensor, order: torch.Tensor, amount: torch.Tensor, m: int) -> torch.Tensor:
    """Hand out `amount` units one per frame per pass, frames visited in `order`, frame f taking at
    most cap[f]. Equivalent to the paper's iterative loop, computed without iterating over units: the
    number L of full passes is the largest L with sum(min(cap, L)) <= amount (evaluated for every L in
    [0, m] at once), then the first eligible frames get one more. Requires amount <= cap.sum()."""
    c = cap[order]
    passes = torch.arange(m + 1, device=cap.device)
    given = torch.minimum(c[None, :], passes[:, None]).sum(1)  # units after L full passes, for every L
    full = (given <= amount).sum() - 1
    extra = torch.minimum(c, full)
    left = amount - extra.sum()
    eligible = c > full
    rank = torch.cumsum(eligible.to(torch.int64), 0) - 1
    extra = extra + (eligible & (rank < left)).to(torch.int64)
    out = torch.empty_like(extra)
    out[order] = extra
    return out


Spread = Callable[[torch.Tensor, int, int, int, int], torch.Tensor]


def frame_budgets(
    score: torch.Tensor, k: int, cfg: SelectorConfig, saliency: torch.Tensor | None = None,
    spread: Spread | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-frame budgets B_f (sum exactly k), frame saliency S̄_f and softmax weights w_f.

    S̄_f is the mean of the ceil(q·m) best scores of frame f; w = softmax(S̄/τ_alloc) (Eq. 4);
    B_f = clamp(floor(w_f·K), B_min, B_max), then the difference to K is handed out one token per
    frame per pass: missing tokens to the highest-weight frames below B_max, surplus tokens taken
    from the lowest-weight frames above B_min. When K < T·B_min no allocation can honour B_min;
    then every frame gets floor(K/T) and the K mod T highest-weight frames one more. `saliency`, when
    given, is S̄_f already computed (the fused GPU path computes it with the scores); `spread`, when given,
    replaces `spread_budgets` (a backend's kernel for the same rule).

    >>> s = torch.tensor([[0.9, 0.8, 0.1, 0.0], [0.2, 0.1, 0.0, 0.0]])
    >>> b, sal, w = frame_budgets(s, 4, SelectorConfig(min_tokens=1))
    >>> b.tolist(), round(float(sal[0]), 2)
    ([3, 1], 0.85)
    """
    t_, m = score.shape
    b_max = m if cfg.max_tokens is None else min(cfg.max_tokens, m)
    if b_max * t_ < k:
        raise SelectorError(
            f"max_tokens={cfg.max_tokens} allows at most {b_max * t_} tokens over {t_} frames of "
            f"{m} tokens, fewer than K={k}; raise max_tokens or lower the retention"
        )
    b_min = min(cfg.min_tokens, m)
    if k < t_ * b_min:
        # B_min cannot hold for every frame: spread K as evenly as possible instead, the
        # remainder going to the highest-weight frames (budgets floor(K/T) or ceil(K/T)).
        b_min, b_max = k // t_, min(b_max, -(-k // t_))
    if saliency is None:
        nq = max(1, math.ceil(cfg.q * m))
        saliency = score.topk(nq, dim=1).values.mean(1)
    weights = torch.softmax(saliency / cfg.tau_alloc, dim=0)
    return (spread or spread_budgets)(weights, k, b_min, b_max, m), saliency, weights


def spread_budgets(weights: torch.Tensor, k: int, b_min: int, b_max: int, m: int) -> torch.Tensor:
    """B_f = clamp(floor(w_f·K), b_min, b_max), then the difference to K handed out one token per frame per
    pass (missing tokens to the highest weights below b_max, surplus taken from the lowest above b_min)."""
    budgets = torch.floor(weights.double() * k).to(torch.int64).clamp(b_min, b_max)
    # highest weight first, ties by frame index; a stable sort keeps that order
    desc = torch.sort(-weights, stable=True).indices
    asc = torch.flip(desc, [0])
    diff = k - budgets.sum()
    add = _round_robin(b_max - budgets, desc, diff.clamp_min(0), m)
    cut = _round_robin(budgets - b_min, asc, (-diff).clamp_min(0), m)
    return budgets + add - cut


def cell_ids(h: int, w: int, g: int, device: torch.device) -> torch.Tensor:
    """Grid cell of each position of an h×w frame, row-major over g×g cells: rows split at
    floor(r·g/h), so 27 rows and g = 4 give cells of 7, 7, 7, 6 rows. With h < g some cells are
    empty; coverage then means one token per non-empty cell.

    >>> cell_ids(2, 4, 2, torch.device("cpu")).tolist()
    [0, 0, 1, 1, 2, 2, 3, 3]
    """
    r = torch.arange(h, device=device) * g // h
    c = torch.arange(w, device=device) * g // w
    return (r[:, None] * g + c[None, :]).reshape(-1)


def _cell_starts(cells: torch.Tensor, g2: int, t_: int) -> torch.Tensor:
    """Start of every (frame, cell) segment in (frame, cell)-sorted order. Cell sizes follow from the
    shape alone, so no data-dependent bincount (which would synchronise a GPU) is needed."""
    counts = torch.zeros(g2, dtype=torch.int64, device=cells.device).index_add_(0, cells, torch.ones_like(cells))
    counts = counts.repeat(t_)
    return torch.cumsum(counts, 0) - counts


@functools.lru_cache(maxsize=32)
def _cell_table(h: int, w: int, g: int, device: str) -> torch.Tensor:
    """(g², L) positions of each cell's tokens in ascending order, padded with m = h·w (L = largest cell)."""
    cells = cell_ids(h, w, g, torch.device("cpu"))
    members = [torch.nonzero(cells == c).flatten() for c in range(g * g)]
    size = max(len(mm) for mm in members)
    table = torch.full((g * g, size), h * w, dtype=torch.int64)
    for c, mm in enumerate(members):
        table[c, : len(mm)] = mm
    return table.to(device)


def _asc_bits32(score: torch.Tensor) -> torch.Tensor:
    """int32 key that orders non-negative float32 scores like the floats (exact; at most 0x3F800000)."""
    return (score.float().clamp(0.0, 1.0) + 0.0).contiguous().view(torch.int32)


def _row_ranks(order: torch.Tensor) -> torch.Tensor:
    """Inverse permutation of each row: rank[t, order[t, i]] = i."""
    ar = torch.arange(order.shape[-1], device=order.device).expand_as(order)
    return torch.empty_like(order).scatter_(-1, order, ar)


def pick(
    score: torch.Tensor, budgets: torch.Tensor, hw: tuple[int, int], cfg: SelectorConfig
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Keep mask (T, m), rank of each token in its frame's priority order, and the quota mask.

    Priority within a frame: first the quota picks (the k_region best tokens of every grid cell,
    k_region = max(1, floor(B_f·ρ/g²))) by score, then all others by score; a frame keeps its first
    B_f. If B_f is below the number of non-empty cells, only the B_f best cell winners stay.
    Two segmented sorts on 32-bit keys: one inside every (frame, cell), one inside every frame;
    ties go to the lower index (stable sorts over ascending positions).
    """
    t_, m = score.shape
    g2 = cfg.grid * cfg.grid
    table = _cell_table(hw[0], hw[1], cfg.grid, str(score.device))
    bits = _asc_bits32(score)
    padded = torch.cat([bits, torch.full((t_, 1), -1, dtype=torch.int32, device=score.device)], dim=1)
    keys = padded[:, table]  # (T, g², L); padding sorts last
    order = torch.sort(keys, dim=-1, descending=True, stable=True).indices
    pos = torch.gather(table.expand(t_, -1, -1), 2, order).reshape(t_, -1)
    lrank = torch.arange(table.shape[1], device=score.device).expand(t_, g2, -1).reshape(t_, -1)
    rank_in_cell = torch.empty((t_, m + 1), dtype=torch.int64, device=score.device).scatter_(1, pos, lrank)[:, :m]
    k_region = torch.clamp(torch.floor(budgets.double() * cfg.rho / g2).to(torch.int64), min=1)
    quota = rank_in_cell < k_region[:, None]
    key2 = bits + quota.to(torch.int32) * (1 << 30)
    order2 = torch.sort(key2, dim=1, descending=True, stable=True).indices
    rank = _row_ranks(order2)
    keep = rank < budgets[:, None]
    return keep, rank, quota


def fuse(
    x: torch.Tensor,
    score: torch.Tensor,
    keep: torch.Tensor,
    rank: torch.Tensor,
    quota: torch.Tensor,
    budgets: torch.Tensor,
    cells: torch.Tensor,
    g2: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Grid fusion. Returns (keep, anchor mask, fused feature per position), all (T, m[, D]).

    Per frame, F_f = min(cells with a discarded token, B_f - kept quota picks) fused tokens replace
    the F_f lowest-priority picks (never a coverage pick). The cells that get one are those with the
    largest discarded score mass. A fused token is the score-weighted mean of all tokens of its cell
    that are not kept (uniform weights if all those scores are 0) and sits at the best of them.
    """
    t_, m = score.shape
    device = score.device
    seg = (torch.arange(t_, device=device)[:, None] * g2 + cells[None, :]).reshape(-1)
    disc = ~keep.reshape(-1)
    s = score.reshape(-1)
    nseg = t_ * g2
    mass = torch.zeros(nseg, device=device).index_add_(0, seg, s * disc)
    has = torch.zeros(nseg, dtype=torch.int64, device=device).index_add_(0, seg, disc.to(torch.int64)) > 0
    n_cells = has.view(t_, g2).sum(1)
    kept_quota = (keep & quota).sum(1)
    f_count = torch.minimum(n_cells, budgets - kept_quota).clamp_min(0)
    # choose cells: frame-major, eligible first, larger mass first
    cell_frame = torch.arange(nseg, device=device) // g2
    key = (cell_frame * 2 + (~has).to(torch.int64)) << 32 | _desc_bits(mass)
    order = torch.sort(key, stable=True).indices
    cell_rank = _inverse(order) - cell_frame * g2
    chosen = has & (cell_rank < f_count[cell_frame])
    # the F_f lowest-priority picks make room
    keep = keep & (rank < (budgets - f_count)[:, None])
    disc = ~keep.reshape(-1) & chosen[seg]
    w = torch.where(mass[seg] > 0, s, torch.ones_like(s)) * disc
    xf = x.reshape(t_ * m, -1).float()
    wsum = torch.zeros(nseg, device=device).index_add_(0, seg, w)
    fused = torch.zeros(nseg, xf.shape[1], device=device).index_add_(0, seg, xf * w[:, None])
    fused = fused / wsum.clamp_min(1e-30)[:, None]
    # anchor: best discarded score in the cell, ties to the lower index
    bits = torch.where(disc, _desc_bits(s), torch.full_like(s, 2**31, dtype=torch.int64))
    order = torch.sort((seg << 32) | bits, stable=True).indices
    start = _cell_starts(cells, g2, t_)
    first = order[start.clamp_max(t_ * m - 1)]
    # index_add, not assignment: an empty cell's start equals its neighbour's, and duplicate writes race
    anchor = torch.zeros(t_ * m, dtype=torch.int64, device=device).index_add_(0, first, chosen.to(torch.int64)) > 0
    return keep | anchor.view(t_, m), anchor.view(t_, m), fused[seg].view(t_, m, -1)


def flat_indices(keep: torch.Tensor, k: int) -> torch.Tensor:
    """Ascending positions of the k True entries of a flat mask, without a host sync (k is known)."""
    pos = torch.cumsum(keep.to(torch.int64), 0) - 1
    target = torch.where(keep, pos, torch.full_like(pos, k))
    out = torch.empty(k + 1, dtype=torch.int64, device=keep.device)
    out.scatter_(0, target, torch.arange(keep.numel(), device=keep.device))
    return out[:k]

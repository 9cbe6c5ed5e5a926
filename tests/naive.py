"""Per-token Python loops that spell out the paper's formulas, one token at a time.

They are slow on purpose: every vectorized stage of `selector` is compared against them.
"""

from __future__ import annotations

import math

import torch

from selector import SelectorConfig


def neighbours(t: int, r: int, c: int, shape: tuple[int, int, int], cfg: SelectorConfig):
    """Positions in N_{t,r,c}: k×k in frame t without the centre, k_past×k_past in K_t-1 past frames."""
    nt, nh, nw = shape
    out = []
    for dt in range(-(cfg.temporal_window - 1), 1):
        tt = t + dt
        if tt < 0:
            continue
        rad = (cfg.window if dt == 0 else cfg.past_window) // 2
        for rr in range(r - rad, r + rad + 1):
            for cc in range(c - rad, c + rad + 1):
                if 0 <= rr < nh and 0 <= cc < nw and (tt, rr, cc) != (t, r, c):
                    out.append((tt, rr, cc))
    return out


def entropy(x: torch.Tensor, cfg: SelectorConfig) -> torch.Tensor:
    x = x.double()
    nt, nh, nw, _ = x.shape
    out = torch.zeros(nt, nh, nw, dtype=torch.float64)
    for t in range(nt):
        for r in range(nh):
            for c in range(nw):
                a = x[t, r, c]
                sims = []
                for tt, rr, cc in neighbours(t, r, c, (nt, nh, nw), cfg):
                    b = x[tt, rr, cc]
                    den = max(float(a.norm()), 1e-12) * max(float(b.norm()), 1e-12)
                    sims.append(float(a @ b) / den)
                n = len(sims)
                if n < 2:
                    continue
                z = [math.exp(s / cfg.tau) for s in sims]
                p = [v / sum(z) for v in z]
                h = -sum(pi * math.log(pi) for pi in p if pi > 0)
                out[t, r, c] = h / math.log(n)
    return out


def gradient(x: torch.Tensor) -> torch.Tensor:
    x = x.double()
    nt, nh, nw, _ = x.shape
    g = torch.zeros(nt, nh, nw, dtype=torch.float64)

    def diff(t, r, c, axis):
        size = nh if axis == 0 else nw
        i = r if axis == 0 else c
        if size == 1:
            return torch.zeros(x.shape[-1], dtype=torch.float64)

        def at(j):
            return x[t, j, c] if axis == 0 else x[t, r, j]

        if i == 0:
            return at(1) - at(0)
        if i == size - 1:
            return at(size - 1) - at(size - 2)
        return (at(i + 1) - at(i - 1)) / 2

    for t in range(nt):
        for r in range(nh):
            for c in range(nw):
                gx, gy = diff(t, r, c, 1), diff(t, r, c, 0)
                g[t, r, c] = math.sqrt(float(gx @ gx) + float(gy @ gy))
    lo, hi = float(g.min()), float(g.max())
    return (g - lo) / (hi - lo) if hi > lo else torch.zeros_like(g)


def budgets(score: torch.Tensor, k: int, cfg: SelectorConfig) -> list[int]:
    """Literal Sec. 3.4 with the documented redistribution: one token per frame per pass."""
    nt, m = score.shape
    hi = m if cfg.max_tokens is None else min(cfg.max_tokens, m)
    lo = min(cfg.min_tokens, m)
    if k < nt * lo:
        lo, hi = k // nt, min(hi, -(-k // nt))
    nq = max(1, math.ceil(cfg.q * m))
    sal = [sum(sorted(score[f].tolist(), reverse=True)[:nq]) / nq for f in range(nt)]
    z = [math.exp(s / cfg.tau_alloc - max(sal) / cfg.tau_alloc) for s in sal]
    w = [v / sum(z) for v in z]
    b = [min(max(math.floor(wf * k), lo), hi) for wf in w]
    order = sorted(range(nt), key=lambda f: (-w[f], f))
    while sum(b) < k:
        for f in order:
            if sum(b) < k and b[f] < hi:
                b[f] += 1
    while sum(b) > k:
        for f in reversed(order):
            if sum(b) > k and b[f] > lo:
                b[f] -= 1
    return b


def cell_of(r: int, c: int, h: int, w: int, g: int) -> int:
    return (r * g // h) * g + (c * g // w)


def pick(score: torch.Tensor, budgets_: list[int], cfg: SelectorConfig) -> torch.Tensor:
    """Per frame: top-k_region of each grid cell, then the best remaining; keep the first B_f."""
    nt, nh, nw = score.shape
    g = cfg.grid
    keep = torch.zeros(nt, nh, nw, dtype=torch.bool)
    for f in range(nt):
        bf = budgets_[f]
        k_region = max(1, math.floor(bf * cfg.rho / (g * g)))
        cells: dict[int, list[tuple[float, int]]] = {}
        for r in range(nh):
            for c in range(nw):
                cells.setdefault(cell_of(r, c, nh, nw, g), []).append((float(score[f, r, c]), r * nw + c))
        quota = []
        for members in cells.values():
            members.sort(key=lambda sv: (-sv[0], sv[1]))
            quota += members[:k_region]
        quota.sort(key=lambda sv: (-sv[0], sv[1]))
        chosen = [i for _, i in quota[:bf]]
        rest = sorted(
            ((float(score[f].reshape(-1)[i]), i) for i in range(nh * nw) if i not in set(chosen)),
            key=lambda sv: (-sv[0], sv[1]),
        )
        chosen += [i for _, i in rest[: bf - len(chosen)]]
        for i in chosen:
            keep[f].view(-1)[i] = True
    return keep


def fuse(x: torch.Tensor, score: torch.Tensor, keep: torch.Tensor, rank: torch.Tensor, quota: torch.Tensor,
         budgets_: list[int], cells: list[int], g2: int) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Grid fusion as the method states it, frame by frame: the cells with a discarded token, the F_f =
    min(those cells, B_f − kept quota picks) of them with the largest discarded score mass (ties: lower cell) get a
    fused token; the F_f lowest-priority picks make room; a fused token is the score-weighted mean of its cell's
    tokens not kept (uniform where the cell's discarded mass was 0) at the best of them (ties: lower index).
    Returns (keep, anchor) as (T, m) and {(frame, anchor): fused row}."""
    t_, m = score.shape
    xf = x.reshape(t_, m, -1).double()
    keep_out = torch.zeros(t_, m, dtype=torch.bool)
    anchor = torch.zeros(t_, m, dtype=torch.bool)
    rows = {}
    for f in range(t_):
        s = [float(v) for v in score[f]]
        dropped = [p for p in range(m) if not keep[f, p]]
        mass = {c: sum(s[p] for p in dropped if cells[p] == c) for c in range(g2)}
        eligible = sorted({cells[p] for p in dropped})
        kept_quota = sum(1 for p in range(m) if keep[f, p] and quota[f, p])
        n_fused = max(0, min(len(eligible), budgets_[f] - kept_quota))
        chosen = sorted(eligible, key=lambda c: (-mass[c], c))[:n_fused]
        kept = [bool(keep[f, p]) and int(rank[f, p]) < budgets_[f] - n_fused for p in range(m)]
        for c in chosen:
            members = [p for p in range(m) if cells[p] == c and not kept[p]]
            w = [s[p] if mass[c] > 0 else 1.0 for p in members]
            total = sum(w)
            row = sum(wi * xf[f, p] for wi, p in zip(w, members, strict=True))
            best = max(members, key=lambda p: (s[p], -p))
            rows[(f, best)] = row / total if total > 0 else row * 0
            anchor[f, best] = True
        keep_out[f] = torch.tensor(kept) | anchor[f]
    return keep_out, anchor, rows


def scissor_pass(xs: torch.Tensor, frames: torch.Tensor, tau: float, max_edges: int = 4_000_000,
                 **_: object) -> tuple | None:
    """LLaVA-Scissor's two component steps at tau as first written: every edge of every frame and of all
    component averages computed afresh (both directions), no shortcut; the reference of the fast pass."""
    import torch.nn.functional as F

    from selector.compare.scissor import _edges, _labels

    t_, m, d_ = xs.shape
    e = _edges(xs, tau, max_edges)
    if e is None:
        return None
    _, inv = torch.unique(_labels(e[0], e[1], t_ * m), return_inverse=True)
    n1 = int(inv.max()) + 1
    reps = torch.zeros(n1, d_, device=xs.device).index_add_(0, inv, frames.reshape(-1, d_))
    reps = F.normalize(reps / torch.bincount(inv, minlength=n1)[:, None], dim=-1)
    e = _edges(reps, tau, max_edges)
    if e is None:
        return None
    uniq, inv2 = torch.unique(_labels(e[0], e[1], n1), return_inverse=True)
    return inv2[inv], len(uniq)

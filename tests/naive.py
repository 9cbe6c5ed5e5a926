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

    t_, m, d_ = xs.shape
    first = spatial_step(xs, tau, max_edges)
    if first is None:
        return None
    inv, n1 = first
    reps = torch.zeros(n1, d_, device=xs.device).index_add_(0, inv, frames.reshape(-1, d_))
    reps = F.normalize(reps / torch.bincount(inv, minlength=n1)[:, None], dim=-1)
    above = reps @ reps.T > tau
    if int(above.sum()) > max_edges:
        return None
    i, j = torch.nonzero(above, as_tuple=True)
    uniq, inv2 = torch.unique(_min_labels(i, j, n1), return_inverse=True)
    return inv2[inv], len(uniq)


def spatial_step(xs: torch.Tensor, tau: float, max_edges: int = 4_000_000) -> tuple | None:
    """LLaVA-Scissor's spatial step at tau: the components of every frame's graph "cosine > tau" (unit rows xs,
    (T, M, D)), numbered by their first token, and their number; None past max_edges edges (both directions, each
    token with itself)."""
    t_, m, _ = xs.shape
    above = torch.bmm(xs, xs.transpose(1, 2)) > tau  # every frame's edges, both directions, each token with itself
    if int(above.sum()) > max_edges:
        return None
    f, i, j = torch.nonzero(above, as_tuple=True)
    _, inv = torch.unique(_min_labels(f * m + i, f * m + j, t_ * m), return_inverse=True)
    return inv, int(inv.max()) + 1


def _min_labels(src: torch.Tensor, dst: torch.Tensor, n: int) -> torch.Tensor:
    """Each node's smallest reachable index over the edges src → dst (given both ways): one hop per round until
    nothing changes."""
    label = torch.arange(n, device=src.device)
    while True:
        new = label.scatter_reduce(0, src, label[dst], reduce="amin")
        if torch.equal(new, label):
            return label
        label = new


def _unit(v: list[float]) -> list[float]:
    n = math.sqrt(sum(a * a for a in v))
    return [a / n for a in v]


def _even_quota(n_parts: int, total: int, cap: int) -> list[int]:
    """`total` split over n_parts equal shares, at most cap each: the shares that get one more are the first ones
    (largest remainder with equal remainders, ties by index)."""
    from selector.compare.shared import quota

    return [int(q) for q in quota(torch.ones(n_parts), total, cap)] if n_parts else []


def vidcom2(tokens: torch.Tensor, k: int) -> list[int]:
    """VidCom2's kept places (xuyang-liu16/VidCom2 vidcom2.py, as selector/compare/methods.py `_vidcom2` states it),
    one token and one channel at a time in float64; the integer shares by the project's largest remainder."""
    from selector.compare.shared import quota

    t_, h_, w_, d_ = tokens.shape
    m, n = h_ * w_, t_ * h_ * w_
    rows = tokens.reshape(n, d_).double().tolist()
    mean = [sum(r[c] for r in rows) / n for c in range(d_)]
    var = [sum((r[c] - mean[c]) ** 2 for r in rows) / n for c in range(d_)]
    chans = sorted(range(d_), key=lambda c: var[c])[:max(1, d_ // 2)]
    f = [_unit([r[c] for c in chans]) for r in rows]
    dims = len(chans)
    vid_c = [sum(v[j] for v in f) / n for j in range(dims)]
    frame_c = [[sum(f[t * m + i][j] for i in range(m)) / m for j in range(dims)] for t in range(t_)]

    def gauss(v: list[float], c: list[float]) -> float:
        d2 = sum((a - b) ** 2 for a, b in zip(v, c, strict=True))
        return sum(math.exp(-d2 / (2 * 2.0**e)) for e in range(-3, 2))

    vid = [gauss(f[i], vid_c) for i in range(n)]
    fr = [gauss(f[i], frame_c[i // m]) for i in range(n)]
    s = [-sum(vid[t * m:(t + 1) * m]) / m for t in range(t_)]
    top = max(s)
    e = [math.exp((v - top) / 0.01) for v in s]
    p = [v / sum(e) for v in e]
    scales = [k / n * (1 + p[t] - sum(p) / t_) for t in range(t_)]
    if k >= t_:
        weights = torch.tensor([max(v, 0.0) * m - 1 for v in scales])
        q = [int(v) + 1 for v in quota(weights, k - t_, m - 1)]
    else:
        first = sorted(range(t_), key=lambda t: -scales[t])[:k]
        q = [1 if t in first else 0 for t in range(t_)]
    keep = []
    for t in range(t_):
        order = sorted(range(m), key=lambda i: vid[t * m + i] + fr[t * m + i])
        keep += [t * m + i for i in order[:q[t]]]
    return sorted(keep)


def dycoke(tokens: torch.Tensor, k: int) -> list[int]:
    """DyCoke's temporal merging (KD-TAO/DyCoke llava_arch.py `dycoke_ttm`, as selector/compare/methods.py
    `_dycoke` states it), one token at a time in float64."""
    t_, h_, w_, d_ = tokens.shape
    m = h_ * w_
    f = [[_unit(v) for v in frame] for frame in tokens.reshape(t_, m, d_).double().tolist()]
    ref_of = {}
    for t in range(t_):
        if t % 4 in (1, 3):
            ref_of[t] = t - 1
        elif t % 4 == 2 and t - 2 < t_ - 4:
            ref_of[t] = t - 2
    whole = [t for t in range(t_) if t not in ref_of]
    compared = [t for t in range(t_) if t in ref_of]

    def least_similar(t: int, other: int | None, n: int) -> list[int]:
        if other is None:  # an even spread: the centres of n equal slices
            return [t * m + min(m - 1, int((j + 0.5) * m / n)) for j in range(n)]
        sim = [sum(a * b for a, b in zip(f[t][i], f[other][i], strict=True)) for i in range(m)]
        return [t * m + i for i in sorted(range(m), key=lambda i: sim[i])[:n]]

    keep = []
    if k >= len(whole) * m:
        for t in whole:
            keep += range(t * m, (t + 1) * m)
        for t, q in zip(compared, _even_quota(len(compared), k - len(whole) * m, m), strict=True):
            keep += least_similar(t, ref_of[t], q)
    else:
        for i, (t, q) in enumerate(zip(whole, _even_quota(len(whole), k, m), strict=True)):
            keep += least_similar(t, whole[i - 1] if i else None, q)
    return sorted(keep)


def uniform_pool(tokens: torch.Tensor, k: int) -> tuple[list[list[float]], list[int], list[bool]]:
    """Each frame average-pooled to its share of K (selector/compare/methods.py `_uniform_pool`), one window at a
    time: adaptive pooling's window i of n over L places is [floor(i·L/n), ceil((i+1)·L/n)); the kept cells spread
    evenly; a row's place is the token under its cell's centre, merged unless its window is one token.
    (rows in float64, places, merged flags) in the method's order (frames of one share together)."""
    t_, h_, w_, d_ = tokens.shape
    x = tokens.double().tolist()
    share = [k // t_ + (1 if t < k % t_ else 0) for t in range(t_)]
    rows, places, merged = [], [], []
    for kf in sorted(set(share)):
        if kf == 0:
            continue
        hp = min(h_, max(1, round(math.sqrt(kf * h_ / w_))))
        wp = min(w_, math.ceil(kf / hp))
        hp = min(h_, max(hp, math.ceil(kf / wp)))
        cells = [min(hp * wp - 1, int((j + 0.5) * hp * wp / kf)) for j in range(kf)]
        for t in (t for t in range(t_) if share[t] == kf):
            for cell in cells:
                ci, cj = divmod(cell, wp)
                r0, r1 = ci * h_ // hp, -(-(ci + 1) * h_ // hp)
                c0, c1 = cj * w_ // wp, -(-(cj + 1) * w_ // wp)
                window = [x[t][r][c] for r in range(r0, r1) for c in range(c0, c1)]
                rows.append([sum(v[i] for v in window) / len(window) for i in range(d_)])
                places.append(t * h_ * w_ + int((ci + 0.5) * h_ / hp) * w_ + int((cj + 0.5) * w_ / wp))
                merged.append(len(window) > 1)
    return rows, places, merged


def tome(tokens: torch.Tensor, k: int) -> tuple[list[list[float]], list[int], list[bool]]:
    """ToMe's bipartite soft matching repeated to k rows (facebookresearch/ToMe merge.py, as
    selector/compare/methods.py `_tome` states it), one token at a time in float64: (rows, places, merged flags)."""
    d_ = tokens.shape[-1]
    rows = [(v, 1.0, p) for p, v in enumerate(tokens.reshape(-1, d_).double().tolist())]  # (feature, size, place)
    while len(rows) > k:
        a, b = rows[0::2], rows[1::2]
        r = min(len(rows) - k, len(a))
        bu = [_unit(v) for v, _, _ in b]
        edges = []
        for i, (v, _, _) in enumerate(a):
            au = _unit(v)
            sims = [sum(x * y for x, y in zip(au, w, strict=True)) for w in bu]
            j = max(range(len(b)), key=lambda j: (sims[j], -j))  # the first most similar
            edges.append((sims[j], i, j))
        order = sorted(range(len(a)), key=lambda i: -edges[i][0])  # stable: ties keep A's order
        merged_into: dict[int, list[int]] = {}
        for i in order[:r]:
            merged_into.setdefault(edges[i][2], []).append(i)
        new_b = []
        for j, (v, s, p) in enumerate(b):
            parts = [(v, s)] + [(a[i][0], a[i][1]) for i in merged_into.get(j, [])]
            total = sum(w for _, w in parts)
            new_b.append(([sum(x[c] * w for x, w in parts) / total for c in range(d_)], total, p))
        rows = sorted([a[i] for i in order[r:]] + new_b, key=lambda row: row[2])
    return [v for v, _, _ in rows], [p for _, _, p in rows], [s > 1 for _, s, _ in rows]


def density_scores(frame: list[list[float]], knn: int) -> list[float]:
    """DPC-kNN scores ρ·δ of one group of rows (selector/compare/shared.py `density_scores`), one pair at a time in
    float64: d = Euclidean distance / √D, ρ = exp(−mean of the knn smallest d² (the row itself included)), δ = the
    distance to the nearest denser row (denser: higher ρ, or equal ρ and a lower index), the largest distance of the
    group for the densest."""
    n, d_ = len(frame), len(frame[0])
    dist = [[math.sqrt(sum((a - b) ** 2 for a, b in zip(u, v, strict=True))) / math.sqrt(d_) for v in frame]
            for u in frame]
    kk = min(knn, n)
    dens = [math.exp(-sum(v * v for v in sorted(row)[:kk]) / kk) for row in dist]
    far = max(max(row) for row in dist)
    out = []
    for i in range(n):
        denser = [dist[i][j] for j in range(n) if dens[j] > dens[i] or (dens[j] == dens[i] and j < i)]
        out.append(min(denser, default=far) * dens[i])
    return out


def _cos(u: list[float], v: list[float]) -> float:
    return sum(a * b for a, b in zip(_unit(u), _unit(v), strict=True))


def fastvid(tokens: torch.Tensor, k: int, c: int = 8, tau: float = 0.9, p: int = 4, alpha: float = 0.6,
            knn: int = 4) -> tuple[list[list[float]], list[int], list[bool]]:
    """FastVID's DySeg and density merging (selector/compare/methods.py `_fastvid` states the rules), one segment,
    frame and token at a time in float64: (rows, places, merged flags) in the order of their places."""
    from selector.compare.shared import quota

    t_, h_, w_, d_ = tokens.shape
    m = h_ * w_
    x = tokens.reshape(t_, m, d_).double().tolist()
    frame_mean = [[sum(v[i] for v in x[t]) / m for i in range(d_)] for t in range(t_)]
    sim = [_cos(frame_mean[t], frame_mean[t + 1]) for t in range(t_ - 1)]
    cuts = set(sorted(range(t_ - 1), key=lambda t: sim[t])[:max(c - 1, 0)]) | {t for t in range(t_ - 1)
                                                                                if sim[t] < tau}
    bounds = [-1, *sorted(cuts), t_ - 1]
    lengths = [b - a for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    seg_q = [int(q) for q in quota(torch.tensor(lengths, dtype=torch.float64), k, m * max(lengths))]
    assert all(q <= n * m for q, n in zip(seg_q, lengths, strict=True))  # no segment gets more than its tokens
    out = []
    start = 0
    for length, q in zip(lengths, seg_q, strict=True):
        frames = list(range(start, start + length))
        start += length
        if q == 0:
            continue
        step = p if q <= -(-length // p) * m else 1
        anchor_frames = frames[::step]
        shares = [int(v) for v in quota(torch.ones(len(anchor_frames)), q, m)]
        anchors = []  # (flat place, feature)
        for f, n in zip(anchor_frames, shares, strict=True):
            score = density_scores(x[f], knn)
            for i in sorted(range(m), key=lambda i: -score[i])[:n]:
                anchors.append((f * m + i, x[f][i]))
        members: list[list[list[float]]] = [[] for _ in anchors]
        for f in frames:
            for v in x[f]:
                sims = [_cos(v, a) for _, a in anchors]
                members[max(range(len(anchors)), key=lambda j: (sims[j], -j))].append(v)
        for (place, a), got in zip(anchors, members, strict=True):
            n = len(got)
            if n > 1:
                w = max(1.0 / (n + 1), alpha)
                row = [w * a[i] + (1 - w) * sum(v[i] for v in got) / n for i in range(d_)]
            else:
                row = list(a)
            out.append((place, row, n > 1))
    out.sort()
    return [r for _, r, _ in out], [p_ for p_, _, _ in out], [f for _, _, f in out]


def holitom(tokens: torch.Tensor, k: int, tau: float = 0.8, beta: float = 0.6,
            knn: int = 7) -> tuple[list[list[float]], list[int], list[bool]]:
    """HoliTom's embedding part (selector/compare/holitom.py states the rules), one window, place and token at a
    time in float64: the static windows by trying every segmentation of the frames (the most rows saved, ties to
    the segmentation whose windows end earliest, compared from the last), static places averaged over their window,
    DPC-kNN centres and β-merges per group. (rows, places, merged flags) in the order of their places."""
    from selector.compare.shared import quota

    t_, h_, w_, d_ = tokens.shape
    m = h_ * w_
    x = tokens.reshape(t_, m, d_).double().tolist()
    above = [[_cos(x[t][i], x[t + 1][i]) > tau for i in range(m)] for t in range(t_ - 1)]

    def static_places(s: int, e: int) -> list[int]:
        return [i for i in range(m) if all(above[t][i] for t in range(s, e))]

    def saved(windows: list[tuple[int, int]]) -> int:
        return sum(len(static_places(s, e)) * (e - s) for s, e in windows if e > s)

    def segmentations(first: int):
        if first == t_:
            yield []
            return
        for last in range(first, t_):
            for rest in segmentations(last + 1):
                yield [(first, last), *rest]

    # the dynamic programme's choice: the most saved, and among equals the one whose last window is shortest, then
    # the same for the frames before it
    def key(ws: list[tuple[int, int]]) -> tuple:
        return (saved(ws), *[s for s, _ in reversed(ws)])

    windows = max(segmentations(0), key=key)
    groups = []  # (rows, places, rows are means)
    for s, e in windows:
        static = static_places(s, e) if e > s else []
        if static:
            groups.append(([[sum(x[t][i][c] for t in range(s, e + 1)) / (e - s + 1) for c in range(d_)]
                            for i in static], [s * m + i for i in static], True))
        dyn = [i for i in range(m) if i not in static]
        groups.extend(([x[f][i] for i in dyn], [f * m + i for i in dyn], False) for f in range(s, e + 1) if dyn)
    if sum(len(g[0]) for g in groups) < k:
        groups = [(x[f], [f * m + i for i in range(m)], False) for f in range(t_)]
    shares = quota(torch.tensor([float(len(g[0])) for g in groups], dtype=torch.float64), k,
                   max(len(g[0]) for g in groups))
    out = []
    for (rows, places, means), q in zip(groups, shares.tolist(), strict=True):
        if q == 0:
            continue
        score = density_scores(rows, min(knn, q))
        centres = sorted(sorted(range(len(rows)), key=lambda i: -score[i])[:q])
        dist = [[math.sqrt(sum((a - b) ** 2 for a, b in zip(rows[i], rows[c], strict=True))) for c in centres]
                for i in range(len(rows))]
        members: list[list[list[float]]] = [[] for _ in centres]
        for i in range(len(rows)):
            if i not in centres:
                members[min(range(len(centres)), key=lambda j: (dist[i][j], j))].append(rows[i])
        for c, got in zip(centres, members, strict=True):
            row = rows[c]
            if got:
                row = [beta * row[i] + (1 - beta) * sum(v[i] for v in got) / len(got) for i in range(d_)]
            out.append((places[c], row, bool(got) or means))
    out.sort()
    return [r for _, r, _ in out], [p_ for p_, _, _ in out], [f for _, _, f in out]


def llava_scissor(tokens: torch.Tensor, k: int) -> tuple[list[list[float]], list[int]]:
    """LLaVA-Scissor with exactly k rows (selector/compare/scissor.py `llava_scissor` states the rules): τ by the
    8-step bisection over [−1, 1] with `scissor_pass` above, then one token at a time in float64: the k largest
    components (ties: the earlier first token), each one's average, every token joining the most similar average
    (cosine; ties: the first), a row (average + its tokens) / (n + 1) at its component's first token. (rows,
    places) in the order of their places."""
    import torch.nn.functional as F

    t_, h_, w_, d_ = tokens.shape
    n = t_ * h_ * w_
    frames = tokens.reshape(t_, h_ * w_, d_).float()
    xs = F.normalize(frames, dim=-1)
    lo, hi, best = -1.0, 1.0, None
    for _ in range(8):
        mid = (lo + hi) / 2
        out = scissor_pass(xs, frames, mid)
        if out is not None and out[1] >= k:
            best, hi = out, mid
        else:
            lo = mid
    comp = best[0].tolist() if best is not None else list(range(n))
    x = tokens.reshape(n, d_).double().tolist()
    members: dict[int, list[int]] = {}
    for i, c in enumerate(comp):
        members.setdefault(c, []).append(i)
    kept = sorted(members.values(), key=lambda ms: (-len(ms), ms[0]))[:k]
    kept.sort(key=lambda ms: ms[0])
    avgs = [[sum(x[i][c] for i in ms) / len(ms) for c in range(d_)] for ms in kept]
    units = [_unit(a) for a in avgs]
    owned: list[list[int]] = [[] for _ in kept]
    for i in range(n):
        u = _unit(x[i])
        sims = [sum(a * b for a, b in zip(u, v, strict=True)) for v in units]
        owned[max(range(len(kept)), key=lambda j: (sims[j], -j))].append(i)
    rows = [[(a[c] + sum(x[i][c] for i in got)) / (len(got) + 1) for c in range(d_)] for a, got in zip(avgs, owned,
                                                                                                      strict=True)]
    return rows, [ms[0] for ms in kept]

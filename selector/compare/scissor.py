"""LLaVA-Scissor (Sun et al., 2025; HumanMLLM/LLaVA-Scissor llava/model/llava_arch_zip.py) on the encoder's
features, returning exactly K rows (torch only).

Semantic connected components of the graph "cosine similarity > τ": first within each frame (each component
averaged), then over all frames' averages; every token then joins its most similar kept component, and a row is
(component average + its tokens) / (n + 1). The public code fixes τ = 0.95 and lets the count follow; for exactly K
rows τ is searched by bisection (8 steps over [-1, 1]) for the fewest components >= K, and the K largest are kept.

The search is exact and shares its work across τ:
- the spatial step's components at every τ come from one maximum spanning forest of the frames' similarities
  (`_Spatial`): the components of "cosine > τ" are those of the tree edges above τ (single linkage), so a count is
  the number of tree edges at or below τ, and a step's labels a few rounds of pointer doubling up the trees;
- the spatial count only grows with τ, so a bisection on it alone finds the lowest τ any temporal step can run at
  (`floor`): a temporal step runs only where the spatial one leaves at least K components;
- the temporal step compares component averages; an average of one token is that token, so the pairs of tokens
  above `floor` are found once (`_TokenPairs`) and each τ computes only the rows of components with several tokens.
- on a GPU, products are screened in fp16 (summed in fp32: within `_margin` of fp32's) and those within the margin
  of τ recomputed in fp32; the last step's nearest component likewise. With Triton, kernels (`scissor_kernels`)
  grow the frames' trees, screen the pairs tile by tile returning only the candidates (one wait per pass instead of
  one per block) and recompute the candidates; without it, with ENTROPY_SELECT_TRITON=0, or where one fails (said
  once), torch does the same block by block.
Every τ gives the components, counts and refusals (too many edges) of the pass that recomputes every edge in fp32
(tests/naive.py `scissor_pass`); pairs whose cosine lies within fp32's rounding (~1e-6) of τ may fall either way
between two fp32 computations in different orders, this one's and the reference's.
"""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F

from ..settings import current

MAX_EDGES = 4_000_000
_STEPS = 8
# How far an fp16 product of two unit rows a, b of length d can be from fp32's: rounding each factor to fp16 moves it
# by at most u|a_i| (u = 2⁻¹¹; a subnormal by 2⁻²⁵), so the exact product of the rounded rows is within
# 2u(1 + u) Σ|a_i b_i| <= 9.8e-4 of a·b (Σ|a_i b_i| <= |a||b| = 1), subnormals adding at most 2·2⁻²⁵ √d (4e-6 for
# d <= 4096); fp32 sums the d products, at most d·2⁻²⁴ off even one by one. Products screened above τ − margin are
# the candidates; those above τ + margin are above τ in fp32 too, the rest are recomputed in fp32.


def _margin(d: int) -> float:
    """How far a screened (fp16) product of two unit rows of length d may be from fp32's."""
    return 1e-3 + 6e-8 * d


def _fp16(x: torch.Tensor) -> torch.Tensor:
    return x.half().contiguous()


def _mm16(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a @ b.T of fp16 rows, summed in fp32 (on a CPU, where fp16 products into fp32 are missing, in fp32)."""
    if a.is_cuda:
        return torch.mm(a, b.T, out_dtype=torch.float32)
    return a.float() @ b.float().T


@functools.cache
def _fp16_works(device: torch.device) -> bool:
    """Whether this GPU multiplies fp16 into fp32 (torch.mm's out_dtype)."""
    try:
        one = torch.ones(1, 16, device=device, dtype=torch.float16)
        return bool(torch.mm(one, one.T, out_dtype=torch.float32).item() == 16.0)
    except (RuntimeError, NotImplementedError, TypeError):
        return False


def _counts(index: torch.Tensor, n: int) -> torch.Tensor:
    """How often each of 0..n-1 occurs in index (bincount without its wait for the largest index on a GPU)."""
    return torch.zeros(n, dtype=torch.long, device=index.device).scatter_add_(0, index, torch.ones_like(index))


def _labels(src: torch.Tensor, dst: torch.Tensor, n: int) -> torch.Tensor:
    """Connected-component label (the smallest member index) of n nodes joined by the edges src–dst."""
    label = torch.arange(n, device=src.device)
    while True:  # min-label propagation with pointer jumping, two rounds per check of the host
        new = label
        for _ in range(2):
            new = new.scatter_reduce(0, src, new[dst], reduce="amin")
            new = new[new]
        if torch.equal(new, label):
            return label
        label = new


def _frame_sims(xs: torch.Tensor, chunk: int = 2048):
    """The frames' (f, M, M) cosine similarities of the unit rows xs (T, M, D), a few frames at a time (at most
    chunk² products per piece): (first frame, similarities) pairs."""
    t_, m, _ = xs.shape
    step = max(1, (chunk * chunk) // max(1, m * m))
    for f in range(0, t_, step):
        yield f, torch.bmm(xs[f:f + step], xs[f:f + step].transpose(1, 2))


def _prim(sims: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`scissor_kernels.forest_kernel` in torch: each frame's maximum spanning tree over its (f, M, M) similarities,
    grown from its first token; (parent within the frame, similarity of the tree edge; the root's -inf)."""
    f_, m, _ = sims.shape
    at = torch.arange(f_, device=sims.device)
    best = sims[:, 0].clone()  # each token's best link into the tree so far
    parent = torch.zeros(f_, m, dtype=torch.long, device=sims.device)
    done = torch.zeros(f_, m, dtype=torch.bool, device=sims.device)
    done[:, 0] = True
    for _ in range(m - 1):
        v = best.masked_fill(done, -torch.inf).argmax(1)  # the token with the best link joins
        done[at, v] = True
        row = sims[at, v]
        better = (row > best) & ~done  # a joined token's link stays the one it joined by
        best = torch.where(better, row, best)
        parent = torch.where(better, v[:, None], parent)
    best[:, 0] = -torch.inf
    return parent, best


_FOREST_BLOCK = 8192  # the kernel keeps a frame's row in registers: frames of at most this many tokens


def _forest(xs: torch.Tensor, sims: torch.Tensor | None, chunk: int = 2048) -> tuple[torch.Tensor, torch.Tensor]:
    """A maximum spanning forest of the frames' similarity graphs (one tree per frame): each token's parent (flat
    index) and the similarity of its tree edge (roots: -inf). The edges above any τ join the tokens the graph
    "cosine > τ" joins (a cut of the forest is a single-linkage clustering). Without `sims`, the similarities
    are computed a few frames at a time (`_frame_sims`)."""
    m = xs.shape[1]
    pieces = [(0, sims)] if sims is not None else _frame_sims(xs, chunk)
    parents, weights = [], []
    for f, s in pieces:
        got = _kernel(_forest_fused, s.contiguous()) if _fused(s) and m <= _FOREST_BLOCK else _FAILED
        if got is not _FAILED:
            parents.append(got[0] + f * m)
            weights.append(got[1])
            continue
        parent, weight = _prim(s)
        parents.append((parent + m * torch.arange(f, f + s.shape[0], device=xs.device)[:, None]).flatten())
        weights.append(weight.flatten())
    return torch.cat(parents), torch.cat(weights)


def _forest_fused(sims: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    from . import scissor_kernels as kern

    f_, m, _ = sims.shape
    parent = torch.empty(f_ * m, dtype=torch.long, device=sims.device)
    weight = torch.empty(f_ * m, dtype=torch.float32, device=sims.device)
    block = max(16, 1 << (m - 1).bit_length())
    kern.forest_kernel[(f_,)](sims, parent, weight, m, BLOCK=block, num_warps=4 if block <= 1024 else 8)
    return parent, weight


class _Step(NamedTuple):
    """The spatial step at one τ: each token's component (numbered by first token), their number, each
    component's first token, and whether each token is the first in its component."""

    inv: torch.Tensor
    count: int
    firsts: torch.Tensor
    lead: torch.Tensor


class _Spatial:
    """The spatial step at any τ: the components of each frame's graph "cosine > τ", from one maximum spanning
    forest (`_forest`); the number of edges (both directions, each token with itself) counted per τ, for the
    refusal past max_edges."""

    def __init__(self, xs: torch.Tensor, max_edges: int = MAX_EDGES, kept: int = 64 << 20, chunk: int = 2048):
        t_, m, _ = xs.shape
        self.xs, self.max_edges, self.chunk = xs, max_edges, chunk
        # the similarities kept for every τ where they are at most `kept` (≤ 256 MB), else recomputed per τ
        self.sims = torch.bmm(xs, xs.transpose(1, 2)) if t_ * m * m <= kept else None
        self.parent, self.weight = _forest(xs, self.sims, chunk)
        self.sorted = torch.sort(self.weight).values.cpu()  # the counts at every τ without a wait for the GPU
        self.steps: dict[float, tuple | None] = {}
        # the edges only decrease with τ: refused at and below `no`, not at and above `ok`
        self.no, self.ok = -torch.inf, (-torch.inf if t_ * m * m <= max_edges else torch.inf)

    def edges(self, tau: float) -> int:
        if self.sims is not None:
            return int(torch.count_nonzero(self.sims > tau))
        count = 0
        for _, s in _frame_sims(self.xs, self.chunk):
            count += int(torch.count_nonzero(s > tau))
            if count > self.max_edges:
                break
        return count

    def refused(self, tau: float) -> bool:
        """Whether the edges at tau are more than max_edges."""
        if self.no < tau < self.ok:
            if self.edges(tau) > self.max_edges:
                self.no = tau
            else:
                self.ok = tau
        return tau <= self.no

    def count(self, tau: float, k: int | None = None) -> int | None:
        """The number of components at tau (the tokens less the tree edges above tau), or None (too many edges);
        with k, a count below k comes back unchecked (for a search, too many edges and too few components are the
        same answer)."""
        n = int(torch.searchsorted(self.sorted, torch.tensor([tau]), right=True))
        return None if (k is None or n >= k) and self.refused(tau) else n

    def __call__(self, tau: float) -> tuple | None:
        """The step at tau (`_Step`: components numbered by their first token), or None (too many edges)."""
        if tau not in self.steps:
            self.steps[tau] = self._step(tau)
        return self.steps[tau]

    def _step(self, tau: float) -> tuple | None:
        n = self.count(tau)
        if n is None:
            return None
        at = torch.arange(self.parent.numel(), device=self.parent.device)
        up = torch.where(self.weight > tau, self.parent, at)  # each token's parent within its component, roots up
        for _ in range(self.xs.shape[1].bit_length()):  # pointer doubling: a tree's depth is below M
            up = up[up]
        label = torch.full_like(at, at.numel()).scatter_reduce(0, up, at, reduce="amin")[up]  # the first token
        lead = label == at
        inv = (torch.cumsum(lead, 0) - 1)[label]
        return _Step(inv, n, torch.nonzero(lead).flatten(), lead)


def _screen(x: torch.Tensor) -> bool:
    """Whether products on x's device are screened in fp16: on a GPU that multiplies fp16 into fp32; not on a
    CPU, where the candidates' recomputation costs more than lower-precision products save (measured: the token
    pairs of 16×27×27×384 random features took 0.94 s screened in bf16 against 0.4–0.55 s in fp32)."""
    return x.is_cuda and _fp16_works(x.device)


def _rows_per_block(a: torch.Tensor, cols: int, entries: int = 1 << 27) -> int:
    """Rows of a per block of products: 2048 on a CPU (cache-sized); on a GPU as many as keep a block within
    `entries` (2²⁷: 512 MB in fp32), since every block costs a wait for the host."""
    return 2048 if not a.is_cuda else max(2048, entries // max(1, cols))


def _roomy(x: torch.Tensor) -> bool:
    """Whether x's GPU has 24 GB free: room for blocks of 2³⁰ products (4 GB) and their scans."""
    try:
        return x.is_cuda and torch.cuda.mem_get_info(x.device)[0] >= 24 << 30
    except RuntimeError:
        return False


def _settle(a: torch.Tensor, b: torch.Tensor, r: torch.Tensor, c: torch.Tensor, v: torch.Tensor, tau: float,
            margin: float) -> tuple:
    """The screened candidates (r, c, v) of rows of a and b settled against tau: those within `margin` of it
    recomputed in fp32 and kept where above; (r, c, v, exact), `exact` marking the fp32 cosines."""
    if margin == 0.0:
        return r, c, v, torch.ones_like(v, dtype=torch.bool)
    sure = v > tau + margin
    band = torch.nonzero(~sure).flatten()
    fine = _dots(a, b, r[band], c[band])
    v[band] = fine
    keep = sure.clone()
    keep[band] = fine > tau
    at = torch.nonzero(keep).flatten()
    return r[at], c[at], v[at], ~sure[at]


def _dots(a: torch.Tensor, b: torch.Tensor, r: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """The fp32 products a[r] · b[c] (by `scissor_kernels.dots_kernel` where `_fused` says so, else by torch a
    slice of pairs at a time)."""
    if r.numel() == 0:
        return torch.empty(0, device=a.device)
    got = _kernel(_dots_fused, a, b, r, c) if _fused(a) else _FAILED
    if got is not _FAILED:
        return got
    return torch.cat([(a[r[p]] * b[c[p]]).sum(-1) for p in torch.arange(r.numel(), device=r.device).split(1 << 16)])


def _dots_fused(a: torch.Tensor, b: torch.Tensor, r: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    from . import scissor_kernels as kern

    out = torch.empty(r.numel(), device=a.device)
    kern.dots_kernel[(_cdiv(r.numel(), 32),)](a.contiguous(), b.contiguous(), r, c, out, r.numel(), a.shape[1],
                                              BP=32, BD=128, num_warps=4)
    return out


def _empty_pairs(device: torch.device) -> tuple:
    e = torch.empty(0, dtype=torch.long, device=device)
    return e, e, torch.empty(0, device=device), torch.empty(0, dtype=torch.bool, device=device)


def _pairs_above(a: torch.Tensor, b: torch.Tensor, tau: float, limit: int, upper_from: int | None = None,
                 chunk: int | None = None) -> tuple | None:
    """(i, j, cosine, exact) of the rows of a and b (unit rows) with fp32 cosine > tau; with `upper_from` = s, a is
    b[s:] and only pairs j > s + i come back (each pair once, none with itself). None past `limit` pairs. Where
    `_screen` says so the products are screened in fp16 (by `_pairs_fused` where `_fused` says so), the
    candidates within `_margin` of tau recomputed in fp32; `exact` says which cosines are fp32's (the others are
    the screened ones, more than tau + margin)."""
    got = _kernel(_pairs_fused, a, b, tau, limit, upper_from) if _fused(a) else _FAILED
    if got is not _FAILED and got is not False:
        return got
    src, dst, val, flags, count = [], [], [], [], 0
    screen = _screen(a)
    margin = _margin(a.shape[1]) if screen else 0.0
    if screen:
        a_, b_ = _fp16(a), _fp16(b)
    chunk = chunk or _rows_per_block(a, b.shape[0])
    for i in range(0, a.shape[0], chunk):
        j0 = 0 if upper_from is None else upper_from + i
        block = _mm16(a_[i:i + chunk], b_[j0:]) if screen else a[i:i + chunk] @ b[j0:].T
        if upper_from is not None:
            block[:, :block.shape[0]].diagonal().fill_(-2.0)  # each row with itself
        cut = tau - margin
        rows = torch.nonzero(block.amax(1) > cut).flatten()  # most rows have no pair at a high tau
        if rows.numel() == 0:
            continue
        if 2 * rows.numel() > block.shape[0]:  # most rows: scan the block as it is rather than copy them
            hit = torch.nonzero(block > cut)
            r, c = hit[:, 0], hit[:, 1]
        else:
            hit = torch.nonzero(block[rows] > cut)
            r, c = rows[hit[:, 0]], hit[:, 1]
        if upper_from is not None:
            keep = c > r
            r, c = r[keep], c[keep]
        r, c, v, exact = _settle(a, b, r + i, c + j0, block[r, c], tau, margin)
        count += r.shape[0]
        if count > limit:
            return None
        src.append(r)
        dst.append(c)
        val.append(v)
        flags.append(exact)
    if not src:
        return _empty_pairs(a.device)
    return torch.cat(src), torch.cat(dst), torch.cat(val), torch.cat(flags)


# the tiles of `pairs_kernel`: (BM, BN, BK, warps, stages, tile rows per group) (H100, the pairs of 46,656 1152-d
# tokens above 0.086, 1.9 M: 10.6-11.3 ms, the same within 0.5 ms with 128×64 tiles on 4 warps, 4 stages, groups of
# 4 or 16; 27-31 ms with BN = 256 or 4 warps and 4 stages)
PAIRS_TILE = (128, 128, 64, 8, 3, 8)


@functools.cache
def _triton_present() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


_KERNELS = {"failed": None}  # the first error of the kernel in this process, if any


def _fused(x: torch.Tensor) -> bool:
    """Whether the Triton kernels (`scissor_kernels`) do x's work: where products are screened in fp16, on a GPU
    (or in Triton's interpreter, TRITON_INTERPRET=1) with Triton present, unless ENTROPY_SELECT_TRITON=0 or one
    failed once in this process."""
    return (_screen(x) and (x.is_cuda or os.environ.get("TRITON_INTERPRET") == "1") and _triton_present()
            and current().triton and _KERNELS["failed"] is None)


_FAILED = object()


def _kernel(launch, *args):
    """launch(*args), one of the `_*_fused` launchers, or _FAILED where its kernel could not be built or run here:
    said once (a RuntimeWarning), and torch does the kernels' work from then on in this process."""
    try:
        return launch(*args)
    except Exception as error:  # noqa: BLE001 -- a Triton that cannot build or run them here
        _KERNELS["failed"] = error
        warnings.warn(f"LLaVA-Scissor's Triton kernel failed here ({type(error).__name__}: {str(error)[:300]}); "
                      "the torch path does its work instead (same results, slower)", RuntimeWarning, stacklevel=4)
        return _FAILED


def _cdiv(n: int, d: int) -> int:
    return -(-n // d)


def _pairs_fused(a: torch.Tensor, b: torch.Tensor, tau: float, limit: int,
                 upper_from: int | None = None) -> tuple | None | bool:
    """`_pairs_above` by `pairs_kernel` (on any device Triton runs on, its interpreter's CPU included): one launch,
    one wait for the candidates' count, then settled as there; pairs in (i, j) order. False where the candidates
    outgrew their buffer (limit + 1/8 + 1024) although the pairs may not (the caller goes block by block)."""
    from . import scissor_kernels as kern

    if a.shape[0] == 0 or b.shape[0] == 0:
        return _empty_pairs(a.device)
    bm, bn, bk, warps, stages, group = PAIRS_TILE
    margin = _margin(a.shape[1])
    ah, bh = _fp16(a), _fp16(b)
    cap = limit + limit // 8 + 1024
    out_r = torch.empty(cap, dtype=torch.int32, device=a.device)
    out_c = torch.empty(cap, dtype=torch.int32, device=a.device)
    out_v = torch.empty(cap, dtype=torch.float32, device=a.device)
    count = torch.zeros(1, dtype=torch.int64, device=a.device)
    grid = (_cdiv(a.shape[0], bm) * _cdiv(b.shape[0], bn),)
    kern.pairs_kernel[grid](ah, bh, a.shape[0], b.shape[0], a.shape[1], tau - margin,
                            0 if upper_from is None else upper_from, out_r, out_c, out_v, count, cap,
                            UPPER=upper_from is not None, BM=bm, BN=bn, BK=bk, GROUP=group,
                            EVEN_K=a.shape[1] % bk == 0, num_warps=warps, num_stages=stages)
    n = int(count.item())
    if n > cap:
        return False
    r, c, v = out_r[:n].long(), out_c[:n].long(), out_v[:n]
    order = torch.argsort(r * b.shape[0] + c)
    r, c, v, exact = _settle(a, b, r[order], c[order], v[order], tau, margin)
    return None if r.shape[0] > limit else (r, c, v, exact)


def _nearest(x: torch.Tensor, c: torch.Tensor, chunk: int | None = None) -> torch.Tensor:
    """For each unit row of x, the index of the most similar unit row of c (fp32 cosine; ties: the first). Where
    `_screen` says so the products are screened in fp16: a row whose screened best is the only column within
    twice the margin of it has that column (fp32's best is within that band); the other rows recompute the
    columns of their band in fp32."""
    if not _screen(x):
        return (x @ c.T).argmax(1)
    xs, cs = _fp16(x), _fp16(c)
    chunk = chunk or _rows_per_block(x, c.shape[0], 1 << 30 if _roomy(x) else 1 << 27)
    band = 2 * _margin(x.shape[1])
    out = []
    for i in range(0, x.shape[0], chunk):
        block = _mm16(xs[i:i + chunk], cs)
        n = block.shape[0]
        top, owner = block.max(1)
        block.scatter_(1, owner[:, None], -torch.inf)
        rows = torch.nonzero(block.amax(1) >= top - band).flatten()  # another column within the band
        if rows.numel():
            sub = block[rows].scatter_(1, owner[rows, None], top[rows, None])
            near = torch.nonzero(sub >= top[rows, None] - band)
            r, j = rows[near[:, 0]], near[:, 1]
            v = _dots(x, c, r + i, j)
            best = torch.full((n,), -3.0, device=x.device).scatter_reduce(0, r, v, reduce="amax")
            top_ = v == best[r]
            first = torch.full((n,), c.shape[0], device=x.device, dtype=torch.long).scatter_reduce(
                0, r[top_], j[top_], reduce="amin")
            owner[rows] = first[rows]
        out.append(owner)
    return torch.cat(out)


class _TokenPairs:
    """Every pair of tokens (i < j, flat indices) whose cosine exceeds `floor`, found once per clip when first asked
    for: the temporal step's pairs of one-token components at any τ >= floor. `pairs` is None where they are too
    many to keep."""

    def __init__(self, xs: torch.Tensor, floor: float, limit: int = MAX_EDGES):
        self.flat = xs.reshape(-1, xs.shape[-1])
        self.floor, self.limit = floor, limit
        self.margin = _margin(self.flat.shape[1]) if _screen(self.flat) else 0.0
        self.found = False
        self._pairs: tuple | None = None

    @property
    def pairs(self) -> tuple | None:
        if not self.found:
            self._pairs = _pairs_above(self.flat, self.flat, self.floor, self.limit, upper_from=0)
            self.found = True
        return self._pairs

    def pays(self, components: int, several: int) -> bool:
        """Whether a temporal step over `components` averages, `several` of them of several tokens, should take its
        one-token pairs from here: most components are single tokens, and the pairs are found already or the step
        is large (half of all tokens or more: a step over n averages costs (n / N)² of finding every pair)."""
        return 2 * several < components and (self.found or 2 * components >= self.flat.shape[0])

    def above(self, tau: float) -> tuple[torch.Tensor, torch.Tensor]:
        """The pairs (i, j) whose fp32 cosine exceeds tau (>= floor)."""
        s, d, v, exact = self.pairs
        unsure = torch.nonzero(~exact & (v > tau - self.margin) & (v <= tau + self.margin)).flatten()
        if unsure.numel():  # recomputed in fp32 once, for this τ and the next
            v[unsure] = _dots(self.flat, self.flat, s[unsure], d[unsure])
            exact[unsure] = True
        at = torch.nonzero(torch.where(exact, v > tau, v > tau + self.margin)).flatten()
        return s[at], d[at]


def _temporal_edges(reps: Callable[[], torch.Tensor], inv: torch.Tensor, size: torch.Tensor, tau: float, max_edges: int,
                    tokens: _TokenPairs | None) -> tuple | None:
    """Edges (both directions) of cosine > tau between the averages (unit rows, `reps()`, computed only where
    needed) of components of `size` tokens, each pair counted once against max_edges; pairs of one-token components
    come from `tokens` where it covers tau."""
    n1 = size.numel()
    if tokens is not None and tau >= tokens.floor:
        several = torch.nonzero(size > 1).flatten()
        if tokens.pays(n1, several.numel()) and tokens.pairs is not None:
            s, d = tokens.above(tau)
            single = size == 1
            cs, cd = inv[s], inv[d]
            both = torch.nonzero(single[cs] & single[cd]).flatten()
            src, dst = [cs[both]], [cd[both]]
            count = both.numel()
            if count > max_edges:
                return None
            if several.numel():
                # rows of the several-token components against every component; a pair of two such is kept once
                # (raw hits: at most twice the pairs, plus each row with itself)
                got = _pairs_above(reps()[several], reps(), tau, 2 * max_edges + several.numel())
                if got is None:
                    return None
                r, c = got[0], got[1]
                r = several[r]
                ok = torch.nonzero((r != c) & (single[c] | (c > r))).flatten()
                src.append(r[ok])
                dst.append(c[ok])
                count += ok.numel()
                if count > max_edges:
                    return None
            s, d = torch.cat(src), torch.cat(dst)
            return torch.cat([s, d]), torch.cat([d, s])
    got = _pairs_above(reps(), reps(), tau, max_edges, upper_from=0)
    if got is None:
        return None
    s, d = got[0], got[1]
    return torch.cat([s, d]), torch.cat([d, s])


def _components(e: tuple, n: int, inv: torch.Tensor) -> tuple:
    """(component of each token, number of components) of the temporal edges e over n averages, tokens in inv."""
    uniq, inv2 = torch.unique(_labels(e[0], e[1], n), return_inverse=True)
    return inv2[inv], len(uniq)


def _scissor_pass(xs: torch.Tensor, frames: torch.Tensor, tau: float, max_edges: int = MAX_EDGES,
                  k: int | None = None, spatial: _Spatial | None = None,
                  tokens: _TokenPairs | None = None) -> tuple | None:
    """The two SCC steps at tau: spatial within every frame (`spatial`, built here if not given), then temporal
    over all frames' component averages; returns (component of each token, number of components) or None (too
    many edges). `tokens`: the token pairs above some floor.
    With `k`, what the search needs to compare the count with k, computed no further than that: when the spatial
    step leaves fewer than k components the temporal one (which only joins) cannot reach k, and (None, that count)
    comes back; when the temporal edges alone settle it (n averages and E edges leave at least n − E components;
    with i of them isolated, at most i + (n − i) // 2) the count is that bound (on the same side of k) and the
    components a function that computes them."""
    t_, m, d_ = xs.shape
    spatial = spatial or _Spatial(xs, max_edges)
    if k is not None:
        n1 = spatial.count(tau, k)
        if n1 is not None and n1 < k:
            return None, n1
    first = spatial(tau)
    if first is None:
        return None
    inv, n1 = first.inv, first.count
    size = _counts(inv, n1)

    @functools.cache
    def reps() -> torch.Tensor:
        """The components' averages as unit rows: each component's sum its first token, then the others added in
        order (what adding all to zeros gives)."""
        flat = frames.reshape(-1, d_)
        rest = torch.nonzero(~first.lead).flatten()
        sums = flat[first.firsts].index_add_(0, inv[rest], flat[rest])
        return F.normalize(sums / size[:, None], dim=-1)

    e = _temporal_edges(reps, inv, size, tau, max_edges, tokens)
    if e is None:
        return None
    if k is not None:
        least = n1 - e[0].numel() // 2  # each pair once per direction
        if least >= k:
            return (lambda: _components(e, n1, inv)), least
        iso = int((_counts(e[0], n1) == 0).sum())
        most = iso + (n1 - iso) // 2
        if most < k:
            return None, most
    return _components(e, n1, inv)


def llava_scissor(tokens: torch.Tensor, k: int) -> tuple:
    """LLaVA-Scissor on a (T, H, W, D) grid, exactly k rows: the module's docstring says how. Keeps the K largest
    components (ties: earlier anchor); components are exact (the public code samples nodes, ε = 0.05). A row is
    anchored at its component's first token."""
    t_, h_, w_, d_ = tokens.shape
    m = h_ * w_
    frames = tokens.reshape(t_, m, d_).float()
    xs = F.normalize(frames, dim=-1)
    spatial = _Spatial(xs)
    lo, hi = -1.0, 1.0  # the spatial count alone: the lowest τ of the grid where it reaches k
    for _ in range(_STEPS):
        mid = (lo + hi) / 2
        count = spatial.count(mid, k)
        if count is not None and count >= k:
            hi = mid
        else:
            lo = mid
    pairs = _TokenPairs(xs, hi) if hi < 1.0 else None
    lo, hi = -1.0, 1.0  # count(τ) grows with τ; count(1) = N >= K
    best = None
    for _ in range(_STEPS):
        mid = (lo + hi) / 2
        out = _scissor_pass(xs, frames, mid, k=k, spatial=spatial, tokens=pairs)
        if out is not None and out[1] >= k:
            best, hi = out, mid
        else:
            lo = mid
    if best is None:
        best = (torch.arange(t_ * m, device=tokens.device), t_ * m)
    comp, n = best[0]() if callable(best[0]) else best
    flat = frames.reshape(-1, d_)
    size = _counts(comp, n)
    first = torch.full((n,), t_ * m, dtype=torch.long, device=tokens.device).scatter_reduce(
        0, comp, torch.arange(t_ * m, device=tokens.device), reduce="amin")
    # the k largest, ties to the earlier anchor: one sort on (−size, first), first < t·m + 1
    keep = torch.sort(torch.argsort(-size * (t_ * m + 1) + first)[:k]).values
    avg = torch.zeros(n, d_, device=tokens.device).index_add_(0, comp, flat) / size.clamp_min(1)[:, None]
    rep = avg[keep]
    owner = _nearest(F.normalize(flat, dim=-1), F.normalize(rep, dim=-1))
    counts = _counts(owner, len(keep)).to(rep.dtype)
    rows = (rep + torch.zeros_like(rep).index_add_(0, owner, flat)) / (counts + 1)[:, None]
    merged = torch.ones(len(keep), dtype=torch.bool, device=tokens.device)
    return rows.to(tokens.dtype), first[keep], merged

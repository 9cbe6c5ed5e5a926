"""Per-token maps of ENTROPY-SELECT: local window entropy (Sec. 3.2) and gradient magnitude (Eq. 3).

Portable implementation: one tensor operation per window offset. It is the reference the fast paths
(`selector.backends`) are checked against.
"""

from __future__ import annotations

import functools

import torch

from ..config import SelectorConfig

__all__ = ["stencil", "normalize", "entropy_map", "gradient_map", "gradient_magnitude", "minmax", "entropy_from_logits"]


@functools.lru_cache(maxsize=64)
def stencil(window: int, temporal_window: int, past_window: int) -> tuple[tuple[int, int, int], ...]:
    """Offsets (dt, dr, dc) of the 3-D neighbourhood, centre excluded in the current frame only.

    >>> len(stencil(5, 3, 3))  # (k²-1) + (K_t-1)·k_past², Eq. (1)
    42
    >>> (0, 0, 0) in stencil(5, 3, 3), (-1, 0, 0) in stencil(5, 3, 3)
    (False, True)
    """
    offsets: list[tuple[int, int, int]] = []
    for dt in range(-(temporal_window - 1), 1):
        side = window if dt == 0 else past_window
        rad = side // 2
        for dr in range(-rad, rad + 1):
            for dc in range(-rad, rad + 1):
                if (dt, dr, dc) != (0, 0, 0):
                    offsets.append((dt, dr, dc))
    return tuple(offsets)


def normalize(x: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """Unit-length features t̂ (fp32); an all-zero token stays zero (cosine 0 with everything)."""
    x = x.float()
    return torch.div(x, x.norm(dim=-1, keepdim=True).clamp_min(1e-12), out=out)


def _shift_slices(size: int, d: int) -> tuple[slice, slice]:
    """Slices (dst, src) so that dst[i] pairs with src[i + d], truncated at the borders."""
    if d >= 0:
        return slice(0, max(size - d, 0)), slice(d, size)
    return slice(-d, size), slice(0, max(size + d, 0))


def entropy_from_logits(logits: torch.Tensor, valid: torch.Tensor, n_valid: torch.Tensor) -> torch.Tensor:
    """Normalized Shannon entropy Ĥ = H / log(n) over the last axis of masked logits.

    Ambiguity (FACTS): the paper divides by log(|N_i| - 1); we divide by log(n) where n is the
    number of neighbours that are in bounds after truncation (the centre never counts). This is
    the true maximum of H, so Ĥ is in [0, 1] at borders too. With n <= 1 the distribution is
    certain and Ĥ = 0.
    """
    logits = logits.masked_fill(~valid, float("-inf"))
    lse = torch.logsumexp(logits, dim=-1, keepdim=True)
    logp = logits - lse
    p = logp.exp()
    h = -(p * logp.masked_fill(~valid, 0.0)).sum(-1)
    denom = n_valid.clamp_min(2).log()
    return torch.where(n_valid >= 2, h / denom, torch.zeros_like(h)).clamp_(0.0, 1.0)


def entropy_map(xn: torch.Tensor, cfg: SelectorConfig) -> torch.Tensor:
    """Ĥ for every token of unit features xn (T, H, W, D): one op per offset of the stencil."""
    t_, h_, w_, _ = xn.shape
    offs = stencil(cfg.window, cfg.temporal_window, cfg.past_window)
    sims = xn.new_zeros((t_, h_, w_, len(offs)))
    valid = torch.zeros((t_, h_, w_, len(offs)), dtype=torch.bool, device=xn.device)
    for i, (dt, dr, dc) in enumerate(offs):
        td, tsrc = _shift_slices(t_, dt)
        hd, hsrc = _shift_slices(h_, dr)
        wd, wsrc = _shift_slices(w_, dc)
        sims[td, hd, wd, i] = (xn[td, hd, wd] * xn[tsrc, hsrc, wsrc]).sum(-1)
        valid[td, hd, wd, i] = True
    n_valid = valid.sum(-1)
    return entropy_from_logits(sims / cfg.tau, valid, n_valid)


def gradient_map(x: torch.Tensor) -> torch.Tensor:
    """Ĝ: min-max normalized L2 gradient magnitude of the raw features (Eq. 3).

    Ambiguities (FACTS): differences are central, (t[c+1] - t[c-1]) / 2, and one-sided at the
    borders (numpy.gradient's rule), so an edge between two tokens marks both of them and no map
    is shifted by half a token; an axis of length 1 has zero gradient. Min-max runs over the whole
    video, not per frame, so frames stay comparable for the budget step. A constant map gives 0.
    """
    return minmax(gradient_magnitude(x))


#: bytes of fp32 features per chunk of frames on a CPU (`gradient_magnitude`, `backends.cpu.entropy_banded`)
CHUNK_BYTES = 16 << 20


def frames_per_chunk(x: torch.Tensor) -> int:
    """Frames per chunk of the CPU paths: ~CHUNK_BYTES of fp32 features, so their buffers are reused and
    warm instead of fresh temporaries (page faults); on a GPU the whole video is one chunk."""
    t_, h_, w_, d_ = x.shape
    if x.device.type != "cpu":
        return t_
    return max(1, min(t_, CHUNK_BYTES // max(1, h_ * w_ * d_ * 4)))


def gradient_magnitude(x: torch.Tensor) -> torch.Tensor:
    """sqrt(|∇x t|² + |∇y t|²) per token, before normalization (one pass per difference).

    On a CPU the frames go in chunks of ~16 MB through one reused difference buffer: fresh 50 MB
    temporaries cost more in page faults than the arithmetic. Same operations, same values."""
    t_, h_, w_, d_ = x.shape
    g2 = torch.zeros((t_, h_, w_), dtype=torch.float32, device=x.device)
    chunk = frames_per_chunk(x)
    scratch = torch.empty(chunk * h_ * w_ * d_, dtype=torch.float32, device=x.device)
    for t0 in range(0, t_, chunk):
        xc = x[t0 : t0 + chunk].float()
        gc = g2[t0 : t0 + chunk]
        for axis in (1, 2):
            n = xc.shape[axis]
            if n == 1:
                continue
            if n > 2:
                a, b = xc.narrow(axis, 2, n - 2), xc.narrow(axis, 0, n - 2)
                inner = torch.sub(a, b, out=scratch[: a.numel()].view(a.shape))
                gc.narrow(axis, 1, n - 2).add_(torch.linalg.vector_norm(inner, dim=-1).square_().mul_(0.25))
            for at, i, j in ((0, 1, 0), (n - 1, n - 1, n - 2)):  # one-sided at both borders
                edge = xc.narrow(axis, i, 1) - xc.narrow(axis, j, 1)
                gc.narrow(axis, at, 1).add_(torch.linalg.vector_norm(edge, dim=-1).square_())
    return g2.sqrt()


def minmax(g: torch.Tensor) -> torch.Tensor:
    """(g - min) / (max - min) over the whole tensor; a constant map gives 0."""
    lo, hi = g.min(), g.max()
    span = hi - lo
    return torch.where(span > 0, (g - lo) / span.clamp_min(1e-30), torch.zeros_like(g))

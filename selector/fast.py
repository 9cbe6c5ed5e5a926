"""Fast paths: banded-matmul window entropy (CPU and GPU) and CUDA-graph replay of the whole selector.

The reference (`maps.entropy_map`) does one tensor op per window offset, reading the features ~42 times.
Here every row of tokens is multiplied once against the band of rows its windows can reach, as one strided
batched GEMM per temporal offset: with the token grid flattened and zero-padded, the band of row (t, r) in
frame t+dt starts at a fixed stride from the band of row (t, r+1), so a single `as_strided` view feeds
`bmm` without copying. The wanted diagonals are then gathered and masked by index arithmetic.
Imports torch only.
"""

from __future__ import annotations

import functools

import torch

from .config import SelectorConfig
from .maps import entropy_from_logits, frames_per_chunk, normalize

__all__ = ["entropy_banded", "entropy_banded_raw", "band_layout"]


@functools.lru_cache(maxsize=32)
def band_layout(t_: int, h_: int, w_: int, window: int, temporal_window: int, past_window: int,
                device: str) -> tuple[list[tuple[int, int, torch.Tensor]], torch.Tensor, torch.Tensor, int]:
    """Per temporal offset: (dt, rows in band, gather index (W, n)); validity (T·H, W, n_total); n_valid;
    front padding in tokens. Depends on shapes only, so it is cached."""
    dev = torch.device(device)
    parts = []
    valids = []
    rmax = max(window, past_window) // 2
    front = (temporal_window - 1) * h_ * w_ + rmax * w_
    t = torch.arange(t_, device=dev).repeat_interleave(h_)  # batch b = t·H + r
    r = torch.arange(h_, device=dev).repeat(t_)
    c = torch.arange(w_, device=dev)
    for dt in range(-(temporal_window - 1), 1):
        rad = (window if dt == 0 else past_window) // 2
        nrows = 2 * rad + 1
        dr = torch.arange(-rad, rad + 1, device=dev).repeat_interleave(nrows)  # offset list: (dr, dc) row-major
        dc = torch.arange(-rad, rad + 1, device=dev).repeat(nrows)
        j = dr + rad
        col = (j * w_ + dc)[None, :] + c[:, None]  # (W, n): column of S holding (dr, dc) for query column c
        ok_c = (c[:, None] + dc[None, :] >= 0) & (c[:, None] + dc[None, :] < w_)
        ok_r = (r[:, None] + dr[None, :] >= 0) & (r[:, None] + dr[None, :] < h_)
        ok_t = (t + dt >= 0)[:, None]
        ok = ok_c[None] & (ok_r & ok_t)[:, None, :]
        if dt == 0:
            ok = ok & ~((dr == 0) & (dc == 0))[None, None, :]
        parts.append((dt, nrows, col.clamp(0, nrows * w_ - 1)))
        valids.append(ok)
    valid = torch.cat(valids, dim=-1)
    return parts, valid, valid.sum(-1), front


def entropy_banded(xn: torch.Tensor, cfg: SelectorConfig) -> torch.Tensor:
    """Ĥ for unit features xn (T, H, W, D); equal to `maps.entropy_map` up to float rounding."""
    return _banded(xn, cfg, normalized=True)


def entropy_banded_raw(x: torch.Tensor, cfg: SelectorConfig) -> torch.Tensor:
    """Ĥ for raw features: normalizes straight into the padded buffer (one pass fewer)."""
    return _banded(x, cfg, normalized=False)


def _banded(x: torch.Tensor, cfg: SelectorConfig, normalized: bool) -> torch.Tensor:
    t_, h_, w_, d_ = x.shape
    parts, valid, n_valid, pre = band_layout(t_, h_, w_, cfg.window, cfg.temporal_window, cfg.past_window,
                                             str(x.device))
    m = h_ * w_
    halo = cfg.temporal_window - 1
    rmax = max(cfg.window, cfg.past_window) // 2
    # frames go in chunks through one zero-padded buffer: [rmax rows of zeros | halo frames | chunk frames |
    # tail padding]; `pre` (band_layout's front padding) tokens precede the chunk
    chunk = frames_per_chunk(x)
    buf = torch.empty((pre + chunk * m + rmax * w_ + w_, d_), dtype=torch.float32, device=x.device)
    buf[:pre].zero_()
    flat = x.reshape(t_ * m, d_)
    out = torch.empty((t_ * h_, w_), dtype=torch.float32, device=x.device)
    for t0 in range(0, t_, chunk):
        c = min(chunk, t_ - t0)
        if t0 > 0:  # the previous chunk's last frames become this chunk's past frames
            lo = max(0, t0 - halo)
            if chunk >= halo:
                buf[pre - (t0 - lo) * m : pre] = buf[pre + (chunk - (t0 - lo)) * m : pre + chunk * m]
            else:
                _fill(buf[pre - (t0 - lo) * m : pre], flat[lo * m : t0 * m], normalized)
        _fill(buf[pre : pre + c * m], flat[t0 * m : (t0 + c) * m], normalized)
        buf[pre + c * m :].zero_()
        q = buf[pre : pre + c * m].view(c * h_, w_, d_)
        sims = []
        for dt, nrows, col in parts:
            start = pre + dt * m - (nrows // 2) * w_
            band = buf.as_strided((c * h_, nrows * w_, d_), (w_ * d_, d_, 1), start * d_)
            s = torch.bmm(q, band.transpose(1, 2))  # (c·H, W, nrows·W)
            sims.append(torch.gather(s, 2, col.expand(c * h_, -1, -1)))
        logits = torch.cat(sims, dim=-1) / cfg.tau
        rows = slice(t0 * h_, (t0 + c) * h_)
        out[rows] = entropy_from_logits(logits, valid[rows], n_valid[rows])
    return out.view(t_, h_, w_)


def _fill(dst: torch.Tensor, src: torch.Tensor, normalized: bool) -> None:
    if normalized:
        dst.copy_(src)
    else:
        normalize(src, out=dst)

"""Banded backend: banded-matmul window entropy (Eq. 2) on a CPU, and on a GPU for grids the Triton path does not take.

The reference (`maps.entropy_map`) does one tensor op per window offset, reading the features ~42 times.
Here a run of query tokens is multiplied once against the band of tokens its windows can reach, as one
strided batched GEMM per temporal offset; the wanted diagonals are then gathered and masked by index
arithmetic. The unit features are first laid out in *strips*: each frame's columns are cut into S strips of
b query columns, each strip stored row by row with its halo columns (rmax = the larger window radius on each
side) and followed by rmax rows of zeros. The band of query row (t, s, r) in frame t+dt then starts at a
fixed stride from the band of row (t, s, r+1), so one `as_strided` view feeds `bmm` without copying, and a
query meets (2·rad+1)·(b+2·rmax) keys instead of a whole band of grid rows. Narrow strips mean fewer wasted
products but smaller GEMMs, and which width is fastest depends on the CPU's GEMM kernels: the candidates are timed
once per grid at its first call (`strip_choice`; on a GPU: one strip, the grid rows themselves).
Imports torch only.
"""

from __future__ import annotations

import functools
import math
import threading
import time

import torch

from ..config import SelectorConfig
from ..method.maps import entropy_from_logits, frames_per_chunk
from ..settings import current
from .graphs import Graphed
from .triton import budgets_on_device

__all__ = ["Banded", "entropy_banded", "entropy_banded_raw", "band_layout", "strip_plan", "strip_choice",
           "pinned_strip_cols", "release_scratch"]

_scratch = threading.local()  # per thread on a CPU: the last layout's ring buffers (see _ring)

#: query columns per strip on a CPU when none is tuned or pinned (strip_plan's default)
DEFAULT_STRIP_COLS = 9
#: pins the query columns per strip on a CPU (any int >= 1; the grid width or more = one strip); None: the
#: fastest of STRIP_CANDIDATES is measured at a grid's first call (see `strip_choice`). The environment
#: variable ENTROPY_SELECT_STRIP_COLS pins it too.
STRIP_COLS: int | None = None
#: strip widths timed at a grid's first CPU call (a width the grid is too narrow for means one strip). The
#: best one depends on the CPU's GEMM kernels: on 16×27×27×1152, 9 columns was best on a 2-core Xeon with
#: AVX-512 (one strip slower), one strip or 7 columns on a 2-core AMD EPYC with AVX2 (9 columns 15 % slower)
STRIP_CANDIDATES = (7, 9, 1 << 30)
#: frames the candidates are timed on (the first ones of the clip): a few GEMM batches, not the whole video
TUNE_FRAMES = 8

_tuned: dict[tuple, int] = {}
_tune_lock = threading.Lock()


def strip_plan(w_: int, rmax: int, device_type: str, strip_cols: int = DEFAULT_STRIP_COLS) -> tuple[int, int, int]:
    """(strips S, query columns b, halo columns hc) for rows of w_ tokens, ~strip_cols query columns a strip.

    A single strip (b = w_) needs no halo columns: a window that runs off a grid row reads the neighbouring
    row's tokens, which the validity mask drops. Narrow strips can pay off on a CPU when the grid is wide
    (fewer wasted products, but GEMM efficiency falls for small blocks: on 2 cores b = 9 was best for W = 27
    on a Xeon with AVX-512, one strip or b = 7 on an AMD EPYC with AVX2; one strip for W = 14 on both); on a
    GPU the whole row is one block."""
    if device_type != "cpu" or w_ < 2 * strip_cols + 2 * rmax:
        return 1, w_, 0
    b = math.ceil(w_ / max(1, round(w_ / strip_cols)))
    return math.ceil(w_ / b), b, rmax


@functools.lru_cache(maxsize=32)
def band_layout(t_: int, h_: int, w_: int, window: int, temporal_window: int, past_window: int,
                device: str, strip_cols: int = DEFAULT_STRIP_COLS) -> tuple:
    """Shape-only plan of the banded entropy (cached): (parts, key_idx, frame_step, valid, n_valid, plan).

    parts: per temporal offset dt, (dt, first band row relative to the query row, band rows). The current
    frame's band covers rows r..r+rad only: sim(a, b) = sim(b, a), so an offset (dr < 0, dc) of token
    (r, c) is read from the result of token (r+dr, c+dc) at offset (-dr, -dc) (one frame, one chunk).
    key_idx (H·W, n_total): for every token and neighbour, the flat position of its similarity in one
    frame's GEMM outputs, which lie part after part (part p of frame f at f·frame_step[p] + chunk·part_base[p],
    see `_banded`); returned as (local, frame_step, part_base) tensors of shape (H·W, n_total).
    valid (T·H, W, n_total), n_valid: neighbours inside the grid (the centre excluded); plan (S, b, hc)."""
    dev = torch.device(device)
    rmax = max(window, past_window) // 2
    s_, b, hc = strip_plan(w_, rmax, dev.type, strip_cols)
    sw = b + 2 * hc
    p_ = h_ + (rmax if s_ > 1 else 0)  # buffer rows per strip (see _banded)
    qrow = s_ * p_ * b  # GEMM output rows (queries) per frame
    parts, valids, locals_, steps, bases = [], [], [], [], []
    t = torch.arange(t_, device=dev).repeat_interleave(h_)  # row index t·H + r
    r = torch.arange(h_, device=dev).repeat(t_)
    gr = torch.arange(h_, device=dev).repeat_interleave(w_)[:, None]  # (H·W, 1) token row / column
    gc = torch.arange(w_, device=dev).repeat(h_)[:, None]
    c = torch.arange(w_, device=dev)
    base = 0  # sum of the earlier parts' keys per query
    for dt in range(-(temporal_window - 1), 1):
        rad = (window if dt == 0 else past_window) // 2
        side = 2 * rad + 1
        dr = torch.arange(-rad, rad + 1, device=dev).repeat_interleave(side)  # offset list: (dr, dc) row-major
        dc = torch.arange(-rad, rad + 1, device=dev).repeat(side)
        ok_c = (c[:, None] + dc[None, :] >= 0) & (c[:, None] + dc[None, :] < w_)
        ok_r = (r[:, None] + dr[None, :] >= 0) & (r[:, None] + dr[None, :] < h_)
        ok_t = (t + dt >= 0)[:, None]
        ok = ok_c[None] & (ok_r & ok_t)[:, None, :]
        row0, nrows = (0, rad + 1) if dt == 0 else (-rad, side)
        if dt == 0:
            ok = ok & ~((dr == 0) & (dc == 0))[None, None, :]
            mirror = dr < 0
            src_r = torch.where(mirror, gr + dr, gr)  # the token whose GEMM row holds the value
            src_c = torch.where(mirror, gc + dc, gc)
            kdr, kdc = torch.where(mirror, -dr, dr), torch.where(mirror, -dc, dc)
        else:
            src_r, src_c, kdr, kdc = gr.expand(-1, side * side), gc.expand(-1, side * side), dr, dc
        inside = (src_r >= 0) & (src_r < h_) & (src_c >= 0) & (src_c < w_)
        src_r, src_c = src_r.clamp(0, h_ - 1), src_c.clamp(0, w_ - 1)  # outside: masked, any finite value
        strip, i = src_c // b, src_c % b
        nk = nrows * sw
        key = ((kdr - row0) * sw + hc + kdc + i).clamp(0, nk - 1)  # one strip: off-row columns are masked
        local = ((strip * p_ + src_r) * b + i) * nk + key
        locals_.append(torch.where(inside, local, torch.zeros_like(local)))
        steps.append(torch.full_like(local, qrow * nk))
        bases.append(torch.full_like(local, qrow * base))
        base += nk
        parts.append((dt, row0, nrows))
        valids.append(ok)
    valid = torch.cat(valids, dim=-1)
    key_idx = tuple(torch.cat(v, dim=-1) for v in (locals_, steps, bases))
    return parts, key_idx, valid, valid.sum(-1), (s_, b, hc)


def entropy_banded(xn: torch.Tensor, cfg: SelectorConfig) -> torch.Tensor:
    """Ĥ for unit features xn (T, H, W, D); equal to `maps.entropy_map` up to float rounding."""
    return _banded(xn, cfg, normalized=True)


def entropy_banded_raw(x: torch.Tensor, cfg: SelectorConfig) -> torch.Tensor:
    """Ĥ for raw features: normalizes straight into the padded buffer (one pass fewer)."""
    return _banded(x, cfg, normalized=False)


def pinned_strip_cols() -> int | None:
    """The pinned query columns per strip (STRIP_COLS, else ENTROPY_SELECT_STRIP_COLS), or None: tuned."""
    if STRIP_COLS is not None:
        return STRIP_COLS
    return current().strip_cols


def _tune_key(h_: int, w_: int, d_: int, cfg: SelectorConfig) -> tuple:
    """What a tuned strip width holds for: the grid's row shape, the feature size and the windows."""
    return (h_, w_, d_, cfg.window, cfg.temporal_window, cfg.past_window)


def strip_choice(h_: int, w_: int, d_: int, cfg: SelectorConfig) -> int | None:
    """Query columns per strip the CPU entropy uses for this grid and window: the pinned value, the tuned one,
    or None when neither is set yet (the next call of that grid times the candidates)."""
    pinned = pinned_strip_cols()
    if pinned is not None:
        return pinned
    return _tuned.get(_tune_key(h_, w_, d_, cfg))


def _banded(x: torch.Tensor, cfg: SelectorConfig, normalized: bool) -> torch.Tensor:
    """The banded entropy with the strip width for this CPU: pinned, tuned earlier, or tuned now. Tuning (once
    per process, grid and window) times every distinct layout of STRIP_CANDIDATES on the clip's first
    TUNE_FRAMES frames, each after a warm-up call (its buffers, its index cache), and keeps the fastest. The
    layouts compute the same dot products; their maps agree to float rounding (bit for bit where the BLAS
    sums each dot product in the same order, as measured on the AMD EPYC of docs/benchmarks.md)."""
    if x.device.type != "cpu":
        return _banded_cols(x, cfg, normalized, DEFAULT_STRIP_COLS)  # one strip on a GPU anyway
    t_, h_, w_, d_ = x.shape
    cols = strip_choice(h_, w_, d_, cfg)
    if cols is not None:
        return _banded_cols(x, cfg, normalized, cols)
    key = _tune_key(h_, w_, d_, cfg)
    rmax = max(cfg.window, cfg.past_window) // 2
    layouts: dict[tuple[int, int, int], int] = {}
    for c in STRIP_CANDIDATES:
        layouts.setdefault(strip_plan(w_, rmax, "cpu", c), c)
    if len(layouts) == 1:
        _tuned[key] = next(iter(layouts.values()))
        return _banded_cols(x, cfg, normalized, _tuned[key])
    with _tune_lock:
        if key not in _tuned:
            sample = x[:TUNE_FRAMES]
            best: tuple[float, int] | None = None
            for c in layouts.values():
                _banded_cols(sample, cfg, normalized, c)
                t0 = time.perf_counter()
                _banded_cols(sample, cfg, normalized, c)
                took = time.perf_counter() - t0
                if best is None or took < best[0]:
                    best = (took, c)
            assert best is not None
            _tuned[key] = best[1]
    return _banded_cols(x, cfg, normalized, _tuned[key])


def _banded_cols(x: torch.Tensor, cfg: SelectorConfig, normalized: bool, strip_cols: int) -> torch.Tensor:
    t_, h_, w_, d_ = x.shape
    parts, (local, step, part_base), valid, n_valid, (s_, b, hc) = band_layout(
        t_, h_, w_, cfg.window, cfg.temporal_window, cfg.past_window, str(x.device), strip_cols)
    rmax = max(cfg.window, cfg.past_window) // 2
    sw = b + 2 * hc  # tokens per buffer row
    pad = rmax if s_ > 1 else 0  # zero rows after each strip (one strip: the next frame's rows, masked)
    p_ = h_ + pad
    fr = s_ * p_  # buffer rows per frame
    halo = cfg.temporal_window - 1
    # frames go in chunks through a ring of buffers, each [rmax lead rows | chunk frames | rmax tail rows]:
    # a chunk's past frames are read where the earlier chunks left them (no copy). The lead, the tail, the
    # pad rows and the halo columns outside the grid are zero (written once; the fills never touch them).
    chunk = frames_per_chunk(x)
    ring, sims = _ring(x.device, (s_, b, hc, p_, h_, w_, d_, rmax, chunk, 1 + -(-halo // chunk)),
                       chunk * fr * b * sum(nrows for _, _, nrows in parts) * sw)

    def fill(dst: torch.Tensor, src: torch.Tensor) -> None:  # frames src (n, H, W, D) into dst (n, S, P, sw, D)
        nrm = None if normalized else torch.linalg.vector_norm(src, dim=-1, keepdim=True).clamp_min_(1e-12)
        for s in range(s_):
            lo = s * b - hc
            c0, c1 = max(lo, 0), min(lo + sw, w_)
            d = dst[:, s, :h_, c0 - lo : c1 - lo]
            if nrm is None:
                d.copy_(src[:, :, c0:c1])
            else:  # normalize() into the strip: same division, same values
                torch.div(src[:, :, c0:c1], nrm[:, :, c0:c1], out=d)

    def rows_at(buf: torch.Tensor, frame: int, n_frames: int, row0: int, width: int, col0: int) -> torch.Tensor:
        """(n_frames·fr, width, D) view: one block of `width` tokens per buffer row, from row0 rows above."""
        start = ((rmax + frame * fr + row0) * sw + col0) * d_
        return buf.as_strided((n_frames * fr, width, d_), (sw * d_, d_, 1), start)

    frame_no = torch.arange(chunk, device=x.device)[:, None, None]
    take_idx: dict[int, torch.Tensor] = {}
    out = torch.empty((t_ * h_, w_), dtype=torch.float32, device=x.device)
    for k, t0 in enumerate(range(0, t_, chunk)):
        c = min(chunk, t_ - t0)
        buf, grid = ring[k % len(ring)]
        fill(grid[:c], x[t0 : t0 + c].float())
        at = 0
        for dt, row0, nrows in parts:
            nk = nrows * sw
            f = max(0, -t0 - dt)  # earlier frames have no past frame dt: left unset, masked
            while f < c:  # runs of query frames whose past frames lie in one chunk's buffer
                g = t0 + f + dt
                src_buf = ring[(g // chunk) % len(ring)][0]
                n = min(c - f, chunk - g % chunk)
                o = at + f * fr * b * nk
                # one GEMM row block per buffer row (the pad rows give junk that is never read)
                torch.bmm(rows_at(buf, f, n, 0, b, hc), rows_at(src_buf, g % chunk, n, row0, nk, 0).transpose(1, 2),
                          out=sims[o : o + n * fr * b * nk].view(n * fr, b, nk))
                f += n
            at += c * fr * b * nk
        if c not in take_idx:  # flat positions in sims of every token's neighbours: (c, H·W, n)
            take_idx[c] = local + step * frame_no[:c] + part_base * c
        logits = sims[:at].take(take_idx[c]).view(c * h_, w_, -1).div_(cfg.tau)
        rows = slice(t0 * h_, (t0 + c) * h_)
        out[rows] = entropy_from_logits(logits, valid[rows], n_valid[rows])
    return out.view(t_, h_, w_)


def _ring(device: torch.device, key: tuple,
          n_sims: int) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], torch.Tensor]:
    """The ring of zero-padded strip buffers and the GEMM output buffer of `_banded` for one layout.

    Each buffer is [rmax lead rows | chunk frames | rmax tail rows] of (S, P, sw) token blocks; the lead, the
    tail, the pad rows and the halo columns outside the grid are zeroed here and never written by the fills.
    On a CPU the last layout's buffers are kept per thread: fresh ~20 MB buffers cost more in page faults
    (measured ~10k faults, ~25 ms per 16×27×27×1152 call on 2 cores) than the arithmetic. `release_scratch()`
    frees them."""
    cpu = device.type == "cpu"
    if cpu and getattr(_scratch, "key", None) == (key, n_sims):
        return _scratch.ring, _scratch.sims
    s_, b, hc, p_, h_, w_, d_, rmax, chunk, n_ring = key
    sw = b + 2 * hc
    fr = s_ * p_
    ring = []
    for _ in range(n_ring):
        buf = torch.empty(((rmax + chunk * fr + rmax) * sw, d_), dtype=torch.float32, device=device)
        grid = buf[rmax * sw : (rmax + chunk * fr) * sw].view(chunk, s_, p_, sw, d_)
        buf[: rmax * sw].zero_()
        buf[(rmax + chunk * fr) * sw :].zero_()
        grid[:, :, h_:].zero_()
        for s in range(s_):
            lo = s * b - hc
            if lo < 0:
                grid[:, s, :h_, : -lo].zero_()
            if lo + sw > w_:
                grid[:, s, :h_, max(0, w_ - lo) :].zero_()
        ring.append((buf, grid))
    sims = torch.empty(n_sims, dtype=torch.float32, device=device)
    if cpu:
        _scratch.key, _scratch.ring, _scratch.sims = (key, n_sims), ring, sims
    return ring, sims


def release_scratch() -> None:
    """Free this thread's cached CPU buffers of the banded entropy (they are reused by the next call with
    the same grid and window; a call with another layout replaces them)."""
    _scratch.__dict__.clear()


class Banded(Graphed):
    """The banded entropy and the gradient in torch: every device, every grid (budgets by kernel on a GPU)."""

    name = "banded"
    priority = 10

    def entropy(self, tokens: torch.Tensor, cfg: SelectorConfig) -> torch.Tensor:
        return entropy_banded_raw(tokens, cfg)

    def budgets(self, weights: torch.Tensor, k: int, b_min: int, b_max: int, m: int) -> torch.Tensor:
        return budgets_on_device(weights, k, b_min, b_max, m)

"""Process-wide CPU setting for the app, the command line and the benchmark (not imported by the selector core).

glibc serves every allocation above its mmap threshold (at most 32 MB by default) with fresh pages from the
kernel and returns them when the tensor is freed, so each call that writes a large new tensor (the kept rows
of a 16×27×27×1152 clip at r = 0.9 are 48 MB) pays ~12 000 page faults and the kernel's zeroing: measured on
this 2-core VM, `x.index_select` into a fresh 48 MB tensor took 26 ms against 6 ms into a reused one. Raising
the mmap and trim thresholds (`mallopt`, the in-process form of MALLOC_MMAP_THRESHOLD_ /
MALLOC_TRIM_THRESHOLD_, as PyTorch's CPU performance guides advise with jemalloc or tcmalloc) lets freed
buffers be reused: 5 ms. torch allocates with 64-byte alignment (posix_memalign), which leaves holes the first
few times, so the heap settles at a few times the largest tensor before every new one reuses freed pages
(measured: fresh pages for the first 2-4 tensors of 48 MB, none after). The cost: the process keeps that heap
instead of returning it to the system. The reference implementation gains more from it than the fast path
(its many temporaries: 1.1 s → 0.5 s on 16×27×27×1152), so `python -m selector.bench` leaves it off unless
given --malloc-tuning.

It also asks PyTorch's CPU allocator for transparent huge pages (THP_MEM_ALLOC_ENABLE=1: buffers of 2 MB or more
aligned to 2 MB and madvise'd, where the kernel's THP mode is `madvise` or `always`): a 48 MB tensor then takes
~24 page faults instead of ~12 000, and the GEMMs fewer TLB misses. Measured on 16×27×27×1152 with the 2-core AMD
EPYC of docs/benchmarks.md: the selector 92–96 ms with the malloc setting alone, 85 with both (81 with huge pages
alone, 85–86 with neither). PyTorch reads the variable once, at its first allocation of 2 MB or more, so
tune_malloc must run before that (the app and the command line call it first); a value the user set is kept.
Linux with glibc only; ENTROPY_SELECT_MALLOC_TUNING=0 switches both off.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

from .settings import current

__all__ = ["tune_malloc", "MALLOC_TUNED", "huge_pages_asked"]

_M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
_M_MMAP_THRESHOLD = -3
#: allocations up to this size come from the heap and are reused after being freed
THRESHOLD = 1 << 30
#: PyTorch's switch for 2 MB-aligned, madvise(MADV_HUGEPAGE) CPU buffers (c10/core/impl/alloc_cpu.cpp)
THP_ENV = "THP_MEM_ALLOC_ENABLE"

MALLOC_TUNED = False


def tune_malloc() -> bool:
    """Raise glibc's mmap and trim thresholds to 1 GiB for this process (once); True if they are set."""
    global MALLOC_TUNED
    if MALLOC_TUNED:
        return True
    if not current().malloc_tuning or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl or another libc: nothing to tune
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    MALLOC_TUNED = bool(mallopt(_M_MMAP_THRESHOLD, THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, THRESHOLD))
    if MALLOC_TUNED:
        os.environ.setdefault(THP_ENV, "1")
    return MALLOC_TUNED


def huge_pages_asked() -> bool:
    """Whether PyTorch's CPU allocator is asked for transparent huge pages (THP_MEM_ALLOC_ENABLE=1); they are
    granted where the kernel's THP mode is `madvise` or `always`."""
    return os.environ.get(THP_ENV, "").strip() == "1"

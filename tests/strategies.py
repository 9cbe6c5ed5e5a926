"""Shared test inputs: hypothesis strategies for configs and grids, seeded tensors, the CUDA skip marker."""

from __future__ import annotations

import pytest
import torch
from hypothesis import strategies as st

from selector import SelectorConfig

odd = st.sampled_from([1, 3, 5, 7])
configs = st.builds(
    SelectorConfig,
    alpha=st.floats(0, 1),
    tau=st.floats(0.01, 5),
    window=odd,
    temporal_window=st.integers(1, 4),
    past_window=odd,
    grid=st.integers(1, 5),
    rho=st.floats(0, 1),
    q=st.floats(0.01, 1),
    tau_alloc=st.floats(0.01, 2),
    min_tokens=st.integers(0, 8),
    grid_fusion=st.booleans(),
)
shapes = st.tuples(st.integers(1, 5), st.integers(1, 9), st.integers(1, 9), st.integers(1, 6))
def cuda_only(test):
    """Marks a test `cuda` (selected by `pytest -m cuda`) and skips it where there is no CUDA device."""
    return pytest.mark.cuda(pytest.mark.skipif(not torch.cuda.is_available(),
                                               reason="no CUDA device on this machine")(test))


def tensor(shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))

"""The method/backend seam (selector/method/stages.py): backends are objects chosen in one place, a new one is
registered with one line and runs every stage it provides, the caller's maps (hooks, reuse) sit in front of the
chosen backend's other stages, and every path gives the reference's selection."""

from __future__ import annotations

import pytest
import torch
from strategies import tensor

from selector import SelectorConfig, SelectorError, backends, select_tokens
from selector.method import allocate, maps, stages


def _reference(x, r, cfg):
    return select_tokens(x, r, cfg, entropy_fn=maps.entropy_map, gradient_fn=maps.gradient_map)


def test_on_a_cpu_the_banded_backend_runs_and_matches_the_reference():
    x, cfg = tensor((5, 9, 11, 16), 1), SelectorConfig()
    chosen = backends.choose(x, cfg)
    assert chosen.name == "banded" and isinstance(chosen, stages.Backend)
    assert [b.name for b in backends.registered()] == ["triton", "banded"]  # highest priority first
    assert torch.equal(select_tokens(x, 0.3, cfg).indices, _reference(x, 0.3, cfg).indices)


def test_a_registered_backend_is_chosen_and_runs_each_stage_it_provides(monkeypatch):
    monkeypatch.setattr(stages, "_REGISTRY", list(stages._REGISTRY))
    calls: list[str] = []

    class Counting(stages.Backend):  # the portable stages, counted; takes grids 7 tokens wide only
        name, priority = "counting", 99

        def usable(self, tokens, cfg):
            return tokens.shape[2] == 7

        def maps(self, tokens, cfg, clock):
            calls.append("maps")
            return super().maps(tokens, cfg, clock)

        def budgets(self, weights, k, b_min, b_max, m):
            calls.append("budgets")
            return super().budgets(weights, k, b_min, b_max, m)

        def pick(self, score, budgets, hw, cfg):
            calls.append("pick")
            return super().pick(score, budgets, hw, cfg)

        def indices(self, keep, budgets, k):
            calls.append("indices")
            return super().indices(keep, budgets, k)

    backends.register(Counting())
    cfg = SelectorConfig()
    x = tensor((3, 6, 7, 8), 2)
    sel = select_tokens(x, 0.4, cfg)
    assert calls == ["maps", "budgets", "pick", "indices"]  # each stage once: the backend is chosen once
    assert torch.equal(sel.indices, _reference(x, 0.4, cfg).indices)
    calls.clear()
    select_tokens(tensor((3, 6, 8, 8), 2), 0.4, cfg)  # not 7 wide: the next backend takes it
    assert calls == []
    select_tokens(x, 0.4, SelectorConfig(grid_fusion=True))
    assert calls == ["maps", "budgets", "pick"]  # grid fusion computes its own indices


def test_hooks_and_reuse_keep_the_chosen_backends_other_stages(monkeypatch):
    monkeypatch.setattr(stages, "_REGISTRY", list(stages._REGISTRY))
    picks: list[int] = []

    class Picky(stages.Backend):
        name, priority = "picky", 99

        def pick(self, score, budgets, hw, cfg):
            picks.append(1)
            return super().pick(score, budgets, hw, cfg)

    backends.register(Picky())
    x, cfg = tensor((4, 6, 6, 8), 3), SelectorConfig()
    first = select_tokens(x, 0.3, cfg, gradient_fn=maps.gradient_map)  # gradient hook, the backend's entropy
    again = select_tokens(x, 0.5, cfg, reuse=first)
    assert len(picks) == 2
    assert torch.equal(again.entropy, first.entropy) and torch.equal(again.indices, _reference(x, 0.5, cfg).indices)


def test_the_portable_reference_takes_what_no_backend_does(monkeypatch):
    monkeypatch.setattr(stages, "_REGISTRY", [])
    x, cfg = tensor((3, 5, 5, 8), 4), SelectorConfig()
    assert isinstance(backends.choose(x, cfg), stages.Reference)
    sel = select_tokens(x, 0.3, cfg, cuda_graph=True)  # no graph runner on a CPU: eager
    monkeypatch.undo()
    assert torch.equal(sel.indices, select_tokens(x, 0.3, cfg).indices)


def test_register_takes_backend_objects_only():
    with pytest.raises(TypeError, match="Backend instance"):
        backends.register(stages.Reference)  # the class, not an instance


def test_budgets_from_a_backend_kernel_replace_the_torch_rule():
    score = torch.rand(6, 20, generator=torch.Generator().manual_seed(0))
    cfg = SelectorConfig(min_tokens=1)
    want = allocate.frame_budgets(score, 30, cfg)[0]
    got = allocate.frame_budgets(score, 30, cfg, spread=lambda w, k, lo, hi, m: torch.full_like(want, 5))[0]
    assert int(want.sum()) == 30 and got.tolist() == [5] * 6
    with pytest.raises(SelectorError, match="max_tokens"):
        allocate.frame_budgets(score, 30, SelectorConfig(max_tokens=2))
